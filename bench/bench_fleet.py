"""Fleet scale: playbooks/site.yml converging N namespace nodes from intents of growing size.

Each node is a network namespace with eth0 (a veth whose peer stays inside) holding its
node IPs; the inventory host runs modules through a two-line wrapper interpreter
(`exec ip netns exec NS ... /usr/bin/python3 "$@"`, connection local, with the node's own
/run/lock bind-mounted in a private mount namespace: one host lock per node), so the whole
controller-side cost of a real fleet is paid and no container is needed. The N
converged nodes are the first N of the intent's nodes (they include every FIP gateway);
the others exist only in the intent.

Per intent size it prints wall time and CPU per node (user+sys of the ansible-playbook
process tree) for the first run and the no-change run, their ratio against the
3-node intent, and the Ansible floor (one ping per host through the same inventory).
After each run every converged node's kernel state is read back and compared with what
the intent says (computed here from the address plan, not by the code under test), and
the no-change run must report changed=0 on every host. Targets (no-change CPU per node
against the 3-node intent): <= 1.5x at 1,000 nodes, <= 2.5x at 3,000; the 10,000-node
intent is printed only. The vip and ipset modules are also timed alone at the largest
size (no change, one service added), through Ansible and in-process under cProfile.

Exits non-zero on a wrong kernel state or a failed play; on a missed target only with
--strict. --quick: one run, sizes 3 and 1,000. Namespaces are removed on any exit.
"""

import argparse
import contextlib
import cProfile
import ipaddress
import json
import os
import pstats
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests'))

from harness import VENV_BIN, ansible_env, link_collection  # noqa: E402

SIZES = (3, 1000, 3000)
PRINTED_ONLY = (10000,)
TARGETS = {1000: 1.5, 3000: 2.5}
PODS_PER_NODE = 10
PORTS = (('tcp', 80), ('tcp', 443))
GATEWAYS = 3  # the first nodes each carry one FIP per family

# The address plan: every address of the intent is a function of an index, so the
# expected state of a node is computed from the plan, independently of node_state.
CLUSTER_NETS = (ipaddress.ip_network('10.0.0.0/10'), ipaddress.ip_network('2001:db8:42::/48'))
SERVICE_NETS = (ipaddress.ip_network('10.96.0.0/12'), ipaddress.ip_network('2001:db8:43::/112'))
NODE_NETS = (ipaddress.ip_network('10.128.0.0/16'), ipaddress.ip_network('fd00:50::/64'))
FIP_NETS = (ipaddress.ip_network('198.51.100.0/24'), ipaddress.ip_network('2001:db8:100::/64'))
MAX_NODES = 16384  # /24 pod CIDRs in 10.0.0.0/10
SET_SUFFIXES = ('pod-subnets', 'node-ips', 'svip', 'svip-prt', 'local-pods')
PREFIX = 'cn-'
VIP_IF = 'kube-dummy-if'
MASQ = '-m comment --comment "clusternet masq"'
MASQ_CHAIN = 'CLUSTERNET-POSTRTG'
FIP_JUMPS = tuple('-A %s -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-%s' % pair
                  for pair in (('PREROUTING', 'DNAT'), ('OUTPUT', 'DNAT'), ('POSTROUTING', 'SNAT')))
# The rule that marks a chain as the module's own (no target: it does nothing to a packet).
FIP_MARKS = tuple('-A CLUSTERNET-FIP-%s -m comment --comment "clusternet.node fip chain"' % chain for chain in ('DNAT', 'SNAT'))
MASQ_MARK = '-A %s -m comment --comment "clusternet.node masquerade chain"' % MASQ_CHAIN
PLAYBOOK = os.path.join(REPO, 'playbooks', 'site.yml')
RECAP = re.compile(r'^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


# ---------------------------------------------------------------- the intent (pure)

def node_name(i):
    return 'n%05d' % i


def node_ips(i):
    return tuple(str(net.network_address + i + 1) for net in NODE_NETS)


def pod_cidrs(i):
    return (str(ipaddress.ip_network((int(CLUSTER_NETS[0].network_address) + 256 * i, 24))),
            str(ipaddress.ip_network((int(CLUSTER_NETS[1].network_address) + (i << 64), 64))))


def pod_ips(i, j):
    return tuple(str(ipaddress.ip_network(cidr).network_address + j + 2) for cidr in pod_cidrs(i))


def service_ips(k):
    return tuple(str(net.network_address + k + 1) for net in SERVICE_NETS)


def fips(nodes):
    """[(gateway index, external, internal)]: one FIP per family on each of the first GATEWAYS nodes."""
    return [(g, str(FIP_NETS[f].network_address + g + 10), pod_ips(g, 0)[f])
            for g in range(min(GATEWAYS, nodes)) for f in (0, 1)]


def intent(nodes, services=None):
    """The clusternet_cluster of a fleet: PODS_PER_NODE pods per node, `services` (default: as many
    as nodes) dual-stack services with PORTS."""
    if not 0 < nodes <= MAX_NODES:
        raise ValueError('nodes must be 1 to %d, got %r' % (MAX_NODES, nodes))
    services = nodes if services is None else services
    return {
        'cluster_cidrs': [str(net) for net in CLUSTER_NETS],
        'service_cidrs': [str(net) for net in SERVICE_NETS],
        'nodes': dict((node_name(i), {'node_ips': list(node_ips(i)), 'pod_cidrs': list(pod_cidrs(i))}) for i in range(nodes)),
        'services': [{'name': 's%05d' % k, 'namespace': 'bench', 'cluster_ips': list(service_ips(k)),
                      'ports': [{'protocol': proto, 'port': port} for proto, port in PORTS]} for k in range(services)],
        'pods': [{'name': 'p%05d-%d' % (i, j), 'namespace': 'bench', 'node': node_name(i), 'ips': list(pod_ips(i, j))}
                 for i in range(nodes) for j in range(PODS_PER_NODE)],
        'floating_ips': [{'external_ip': ext, 'internal_ip': internal, 'gateway': node_name(g)} for g, ext, internal in fips(nodes)],
    }


def intent_yaml(cluster):
    """clusternet_cluster as YAML an operator could have written: block lists, one flow item per line.

    Hand-rendered because PyYAML's emitter needs minutes for 100k pods; every scalar is
    JSON-quoted, which YAML reads as the same string."""
    q = json.dumps
    lines = ['clusternet_cluster:',
             '  cluster_cidrs: %s' % q(cluster['cluster_cidrs']),
             '  service_cidrs: %s' % q(cluster['service_cidrs']),
             '  nodes:']
    lines += ['    %s: {node_ips: %s, pod_cidrs: %s}' % (q(name), q(spec['node_ips']), q(spec['pod_cidrs']))
              for name, spec in cluster['nodes'].items()]
    for key in ('services', 'pods', 'floating_ips'):
        lines.append('  %s:%s' % (key, '' if cluster[key] else ' []'))
        lines += ['    - %s' % q(item, separators=(', ', ': ')) for item in cluster[key]]
    return '\n'.join(lines) + '\n'


def expected_state(nodes, i, services=None):
    """What node i's kernel must hold under intent(nodes, services), from the address plan.

    sets: {set name: entries as `ipset save` prints them}; vips: {VIP: node IP that sources
    its local route}; masq: (IPv4 rules, IPv6 rules) of our chain with the jump first;
    fip: sorted FIP rules and jumps of both families (none on a node that is no gateway)."""
    services = nodes if services is None else services
    svc = [service_ips(k) for k in range(services)]
    per_family = {
        'pod-subnets': [[pod_cidrs(n)[f] for n in range(nodes)] for f in (0, 1)],
        'node-ips': [[node_ips(n)[f] for n in range(nodes)] for f in (0, 1)],
        'svip': [[ips[f] for ips in svc] for f in (0, 1)],
        'svip-prt': [['%s,%s:%d' % (ips[f], proto, port) for ips in svc for proto, port in PORTS] for f in (0, 1)],
        'local-pods': [[pod_ips(i, j)[f] for j in range(PODS_PER_NODE)] for f in (0, 1)],
    }
    sets = {}
    for suffix in SET_SUFFIXES:
        sets[PREFIX + suffix] = set(per_family[suffix][0])
        sets['inet6:' + PREFIX + suffix] = set(per_family[suffix][1])
    own = node_ips(i)
    vips = dict((ips[f], own[f]) for ips in svc for f in (0, 1))
    cidrs = pod_cidrs(i)
    masq = tuple(masq_rules(str(CLUSTER_NETS[f]), cidrs[f], ('224.0.0.0/4', 'ff00::/8')[f]) for f in (0, 1))
    fip = []
    for gateway, external, internal in fips(nodes):
        if gateway == i:
            host = '/128' if ':' in external else '/32'
            fip += ['-A CLUSTERNET-FIP-DNAT -d %s%s -m comment --comment "clusternet fip %s" -j DNAT --to-destination %s'
                    % (external, host, external, internal),
                    '-A CLUSTERNET-FIP-SNAT -s %s%s -m comment --comment "clusternet fip %s" -j SNAT --to-source %s'
                    % (internal, host, external, external)]
    if fip:
        fip += list(FIP_JUMPS + FIP_MARKS) * 2
    return {'sets': sets, 'vips': vips, 'masq': masq, 'fip': sorted(fip)}


def masq_rules(cluster, pod, multicast):
    """Flannel's rule set (FIELD_NOTES section 2) in our chain, after the jump to it."""
    chain = '-A %s' % MASQ_CHAIN
    return ['-A POSTROUTING %s -j %s' % (MASQ, MASQ_CHAIN), MASQ_MARK,
            '%s -m mark --mark 0x4000/0x4000 %s -j RETURN' % (chain, MASQ),
            '%s -s %s -d %s %s -j RETURN' % (chain, pod, cluster, MASQ),
            '%s -s %s -d %s %s -j RETURN' % (chain, cluster, pod, MASQ),
            '%s ! -s %s -d %s %s -j RETURN' % (chain, cluster, pod, MASQ),
            '%s -s %s ! -d %s %s -j MASQUERADE --random-fully' % (chain, cluster, multicast, MASQ),
            '%s ! -s %s -d %s %s -j MASQUERADE --random-fully' % (chain, cluster, cluster, MASQ)]


def node_module_args(nodes, i, services=None):
    """The vip and ipset arguments node i gets (as node_network passes them), for the engine runs."""
    services = nodes if services is None else services
    state = expected_state(nodes, i, services)
    svc = [service_ips(k) for k in range(services)]
    types = {'pod-subnets': 'hash:net', 'node-ips': 'hash:ip', 'svip': 'hash:ip', 'svip-prt': 'hash:ip,port', 'local-pods': 'hash:ip'}
    sets = [{'name': PREFIX + suffix, 'set_type': types[suffix], 'families': ['ipv4', 'ipv6'],
             'entries': sorted(state['sets'][PREFIX + suffix]) + sorted(state['sets']['inet6:' + PREFIX + suffix])}
            for suffix in SET_SUFFIXES]
    vip = {'addresses': [ip for ips in svc for ip in ips], 'node_ips': list(node_ips(i)), 'link_kind': 'ifb'}
    return vip, sets


# ------------------------------------------------------------- comparing (pure)

def compare_state(want, have):
    """Differences between an expected_state and a read_state, as messages (empty: equal)."""
    problems = []
    for name in sorted(set(want['sets']) | set(have['sets'])):
        w, h = want['sets'].get(name), have['sets'].get(name)
        if w is None or h is None:
            problems.append('set %s %s' % (name, 'should not exist' if w is None else 'is missing'))
        elif w != h:
            problems.append('set %s: %d entries, want %d; missing %s, extra %s' % (
                name, len(h), len(w), sorted(w - h)[:3], sorted(h - w)[:3]))
    if have['addresses'] != set(want['vips']):
        problems.append('%s addresses: missing %s, extra %s' % (
            VIP_IF, sorted(set(want['vips']) - have['addresses'])[:3], sorted(have['addresses'] - set(want['vips']))[:3]))
    bad = [(vip, have['routes'].get(vip, [])) for vip, src in sorted(want['vips'].items())
           if have['routes'].get(vip, []) != [('local', 'local', VIP_IF, src, 'kernel')]]
    if bad:
        problems.append('%d VIPs without exactly their local route, e.g. %s' % (len(bad), bad[:2]))
    strays = sorted(set(have['routes']) - set(want['vips']))
    if strays:
        problems.append('routes on %s to non-VIPs: %s' % (VIP_IF, strays[:3]))
    for family, rules in zip((4, 6), have['masq']):
        if rules != want['masq'][family == 6]:
            problems.append('IPv%d masquerade rules differ: %s' % (family, rules))
    if sorted(have['fip']) != want['fip']:
        problems.append('FIP rules differ: %s' % sorted(have['fip']))
    return problems


def parse_recap(stdout):
    """host -> {'ok', 'changed', 'unreachable', 'failed'} from the default callback's PLAY RECAP."""
    text = stdout[stdout.rfind('PLAY RECAP'):] if 'PLAY RECAP' in stdout else ''
    return dict((m.group(1), dict(zip(('ok', 'changed', 'unreachable', 'failed'), map(int, m.groups()[1:]))))
                for m in RECAP.finditer(text))


def verdict(ratio, target):
    if target is None or ratio is None:
        return '-'
    return '<= %.1fx %s' % (target, 'PASS' if ratio <= target else 'FAIL')


def render_table(rows, baseline):
    """rows: dicts with size, run, runs, wall, cpu, floor (per node); baseline: {run: 3-node cpu}.

    Returns (markdown text, [failed target descriptions])."""
    out = ['| intent nodes | run | runs | wall s | CPU s/node | x 3-node | floor CPU s/node | target |',
           '|---|---|---|---|---|---|---|---|']
    failed = []
    for row in rows:
        base = baseline.get(row['run'])
        ratio = row['cpu'] / base if base else None
        target = TARGETS.get(row['size']) if row['run'] == 'no change' else None
        check = verdict(ratio, target)
        if check.endswith('FAIL'):
            failed.append('%s nodes %s: %.2fx > %.1fx' % (row['size'], row['run'], ratio, target))
        out.append('| %s | %s | %d | %.1f | %.2f | %s | %s | %s |' % (
            '{:,}'.format(row['size']), row['run'], row['runs'], row['wall'], row['cpu'],
            '%.2fx' % ratio if ratio else '-', '%.2f' % row['floor'] if row.get('floor') is not None else '-', check))
    return '\n'.join(out), failed


# --------------------------------------------------------- the kernel (impure)

def sh(ns, cmd, input=None):
    proc = subprocess.run(['ip', 'netns', 'exec', ns, 'sh', '-c', cmd], capture_output=True, text=True, input=input, check=False)
    if proc.returncode:
        raise RuntimeError('in %s: %s failed (%d): %s' % (ns, cmd, proc.returncode, proc.stderr.strip()))
    return proc.stdout


def read_state(ns):
    """The kernel state compare_state checks, read from namespace ns."""
    sets = {}
    for line in sh(ns, 'ipset save').splitlines():
        words = line.split()
        if words[0] == 'create':
            sets[words[1]] = set()
        elif words[0] == 'add':
            sets[words[1]].add(words[2])
    addresses, routes = set(), {}
    if subprocess.run(['ip', '-n', ns, 'link', 'show', VIP_IF], capture_output=True, check=False).returncode == 0:
        info = json.loads(sh(ns, 'ip -j addr show dev %s' % VIP_IF))[0]
        addresses = set(entry['local'] for entry in info['addr_info'] if entry['scope'] != 'link')
        for family in ('-4', '-6'):
            for route in json.loads(sh(ns, 'ip -j %s route show table all' % family)):
                dst = route['dst'].split('/')[0]
                if route.get('dev') == VIP_IF and not dst.startswith('fe80') and dst not in ('ff00::', 'multicast'):
                    routes.setdefault(dst, []).append((route.get('type', 'unicast'), route.get('table', 'main'), route['dev'],
                                                       route.get('prefsrc'), route.get('protocol')))
                elif dst in addresses:
                    routes.setdefault(dst, []).append((route.get('type', 'unicast'), route.get('table', 'main'), route.get('dev'),
                                                       route.get('prefsrc'), route.get('protocol')))
    nat = [[line for line in sh(ns, '%s -t nat' % tool).splitlines() if line.startswith('-A ')]
           for tool in ('iptables-save', 'ip6tables-save')]
    return {'sets': sets, 'addresses': addresses, 'routes': routes,
            'masq': [[rule for rule in rules if (MASQ_CHAIN + ' ') in rule + ' '] for rules in nat],
            'fip': [rule for rules in nat for rule in rules if 'CLUSTERNET-FIP-' in rule]}


class Fleet(object):
    """N namespace nodes and an inventory for them, for one intent; delete() removes every namespace."""

    live = []

    def __init__(self, count, size, workdir, source='file'):
        self.count, self.size, self.source = count, size, source
        self.dir = tempfile.mkdtemp(prefix='fleet-%d-' % size, dir=workdir)
        token = uuid.uuid4().hex[:6]
        self.namespaces = []
        hosts = {}
        for i in range(count):
            ns = 'cnf-%s-%d' % (token, i)
            subprocess.run(['ip', 'netns', 'add', ns], check=True)
            self.namespaces.append(ns)
            Fleet.live.append(ns)
            ip4, ip6 = node_ips(i)
            sh(ns, 'ip link set lo up && ip link add eth0 type veth peer name eth0p && ip link set eth0p up'
                   ' && ip addr add %s/%d dev eth0 && ip addr add %s/%d dev eth0 nodad && ip link set eth0 up'
                   % (ip4, NODE_NETS[0].prefixlen, ip6, NODE_NETS[1].prefixlen))
            wrapper = os.path.join(self.dir, 'python-%s' % ns)
            lock_dir = os.path.join(self.dir, 'lock-%s' % ns)
            os.mkdir(lock_dir)
            with open(wrapper, 'w') as handle:
                handle.write(wrapper_script(ns, lock_dir))
            os.chmod(wrapper, 0o755)
            hosts[node_name(i)] = {'ansible_connection': 'local', 'ansible_python_interpreter': wrapper}
        self.inventory = os.path.join(self.dir, 'inventory')
        os.makedirs(os.path.join(self.inventory, 'group_vars', 'all'))
        with open(os.path.join(self.inventory, 'hosts.yml'), 'w') as handle:
            json.dump({'all': {'children': {'clusternet_nodes': {'hosts': hosts}}}}, handle, indent=1)
        with open(os.path.join(self.inventory, 'group_vars', 'all', 'fleet.yml'), 'w') as handle:
            # Namespace nodes share the host's files: nothing is persisted (the lab's nodes persist).
            handle.write('clusternet_vip_link_kind: ifb\nclusternet_persist: false\n')
        self.write_intent(intent(size))

    def write_intent(self, cluster):
        """source 'file': a JSON file named by clusternet_cluster_file (the large-fleet guide's
        layout); 'inventory': clusternet_cluster in group_vars YAML, as the lab's inventory has it."""
        if self.source == 'file':
            path = os.path.join(self.dir, 'cluster.json')
            with open(path, 'w') as handle:
                json.dump(cluster, handle)
            text = 'clusternet_cluster_file: %s\n' % json.dumps(path)
        else:
            text = intent_yaml(cluster)
        with open(os.path.join(self.inventory, 'group_vars', 'all', 'cluster.yml'), 'w') as handle:
            handle.write(text)

    def playbook(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, 'w') as handle:
            handle.write(text)
        return path

    def run(self, playbook, extra=(), env=None):
        """One ansible-playbook run: (wall s, CPU s of its process tree, recap, stdout)."""
        cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', self.inventory] + list(extra) + [playbook]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=ansible_env(
            ANSIBLE_STDOUT_CALLBACK='default', **(env or {})))
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        recap = parse_recap(proc.stdout)
        if proc.returncode or len(recap) != self.count or any(r['failed'] or r['unreachable'] for r in recap.values()):
            raise RuntimeError('%s failed (rc %d):\n%s\n%s' % (os.path.basename(playbook), proc.returncode, proc.stdout[-5000:], proc.stderr[-3000:]))
        return wall, cpu, recap

    def check(self, services=None):
        for i, ns in enumerate(self.namespaces):
            problems = compare_state(expected_state(self.size, i, services), read_state(ns))
            if problems:
                raise RuntimeError('node %s (%s) under the %d-node intent is wrong:\n  %s' % (
                    node_name(i), ns, self.size, '\n  '.join(problems)))

    def delete(self):
        for ns in self.namespaces:
            subprocess.run(['ip', 'netns', 'del', ns], check=False)
            if ns in Fleet.live:
                Fleet.live.remove(ns)
        self.namespaces = []


def wrapper_script(ns, lock_dir):
    """The node's Python: inside its network namespace and a private mount namespace in which
    /run/lock is the node's own directory. A real node has its own host lock; sharing this
    host's would serialize every node's module runs (and other users' runs) on one flock, and a
    slow one would time the others out (seen at 3,000 nodes under load)."""
    return ('#!/bin/sh\nexec ip netns exec %s unshare --mount --propagation private sh -c '
            '\'mount --bind "$0" /run/lock && exec /usr/bin/python3 "$@"\' %s "$@"\n' % (ns, lock_dir))


def remove_all_namespaces(*_args):
    for ns in list(Fleet.live):
        subprocess.run(['ip', 'netns', 'del', ns], check=False)
        Fleet.live.remove(ns)


def floor_playbook():
    return json.dumps([{'name': 'Ansible floor', 'hosts': 'clusternet_nodes', 'gather_facts': False,
                        'tasks': [{'name': 'One trivial module', 'ansible.builtin.ping': {}}]}])


def site_variant(serial=None):
    """playbooks/site.yml's play, with serial set (for the execution-strategy comparison)."""
    play = {'name': 'site.yml with serial %s' % serial, 'hosts': 'clusternet_nodes', 'gather_facts': False,
            'roles': [{'role': 'clusternet.node.node_network'}]}
    if serial:
        play['serial'] = serial
    return json.dumps([play])


# ------------------------------------------------------------- the benchmark

def measure_size(size, count, repeats, workdir, log, source):
    """First and no-change runs (medians over `repeats` fresh fleets) and the floor, per node."""
    first, same, floor = [], [], []
    for repeat in range(repeats):
        fleet = Fleet(count, size, workdir, source)
        try:
            wall, cpu, recap = fleet.run(PLAYBOOK)
            if not all(r['changed'] for r in recap.values()):
                raise RuntimeError('first run changed nothing on some host: %s' % recap)
            fleet.check()
            first.append((wall, cpu / count))
            wall, cpu, recap = fleet.run(PLAYBOOK)
            changed = dict((host, r['changed']) for host, r in recap.items() if r['changed'])
            if changed:
                raise RuntimeError('no-change run of the %d-node intent changed %s' % (size, changed))
            fleet.check()
            same.append((wall, cpu / count))
            wall, cpu, _recap = fleet.run(fleet.playbook('floor.yml', floor_playbook()))
            floor.append((wall, cpu / count))
            log('  %s nodes, run %d: first %.1f s wall %.2f CPU-s/node, no change %.1f s %.2f CPU-s/node, floor %.2f CPU-s/node'
                % ('{:,}'.format(size), repeat + 1, first[-1][0], first[-1][1], same[-1][0], same[-1][1], floor[-1][1]))
        finally:
            fleet.delete()

    def med(pairs, k):
        return statistics.median(p[k] for p in pairs)
    return [{'size': size, 'run': run, 'runs': repeats, 'wall': med(pairs, 0), 'cpu': med(pairs, 1), 'floor': med(floor, 1)}
            for run, pairs in (('first', first), ('no change', same))]


def module_play(name, args, loop=None):
    """One task of clusternet.node.NAME; with loop, its arguments are each item's (as the ipsets role does)."""
    if loop is not None:
        args = dict((key, '{{ item.%s }}' % key) for key in loop[0])
    task = {'name': name, 'clusternet.node.' + name: args}
    if loop is not None:
        task['loop'] = loop
        task['loop_control'] = {'label': '{{ item.name }}'}
    return json.dumps([{'hosts': 'clusternet_nodes', 'gather_facts': False, 'tasks': [task]}])


def inprocess(ns, name, args, workdir):
    """Run clusternet.node.NAME in-process in ns under cProfile (venv Python, pyroute2 0.9)."""
    path = os.path.join(workdir, 'args-%s.json' % uuid.uuid4().hex[:6])
    with open(path, 'w') as handle:
        json.dump(args, handle)
    proc = subprocess.run(['ip', 'netns', 'exec', ns, sys.executable, os.path.abspath(__file__), '--inprocess', name, path],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError('in-process %s failed: %s' % (name, proc.stderr[-3000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def inprocess_child(name, path):
    """Child of inprocess(): one module run (tests/inprocess.py) timed and profiled; prints one JSON line."""
    sys.path.insert(0, link_collection())
    from inprocess import run_module
    with open(path) as handle:
        args = json.load(handle)
    profile, clock = cProfile.Profile(), []

    @contextlib.contextmanager
    def measured():  # main() alone: not the import, nor feeding the arguments and reading the result
        start, cpu = time.monotonic(), time.process_time()
        with profile:
            yield
        clock[:] = [time.monotonic() - start, time.process_time() - cpu]
    result = run_module(name, args, around=measured)
    wall, cpu = clock
    entries = pstats.Stats(profile).stats.items()

    def rows(items):
        return [['%s:%d(%s)' % (os.path.basename(k[0]), k[1], k[2]), v[1], round(v[2], 4), round(v[3], 4)] for k, v in items]
    print(json.dumps({'wall': wall, 'cpu': cpu, 'changed': result.get('changed'), 'failed': result.get('failed'), 'msg': result.get('msg'),
                      'own': rows(sorted(entries, key=lambda kv: -kv[1][2])[:12]),
                      'ours': rows(sorted((kv for kv in entries if '/clusternet/node/' in kv[0][0] or 'ansible_collections/clusternet' in kv[0][0]),
                                          key=lambda kv: -kv[1][3])[:12])}))


def measure_engines(size, workdir, log):
    """vip and ipset alone on one node of the size-node intent: no change and one service added."""
    fleet = Fleet(1, size, workdir)
    rows, profiles = [], {}
    try:
        alone = [fleet.run(PLAYBOOK)[:2]]
        fleet.check()
        alone.append(fleet.run(PLAYBOOK)[:2])  # what one node converging alone pays (ansible-pull)
        for label, services in (('no change', size), ('+1 service', size + 1), ('-1 service (back)', size)):
            vip, sets = node_module_args(size, 0, services)
            plays = (('vip', module_play('vip', vip)), ('ipset x5', module_play('ipset', None, loop=sets)))
            for engine, text in plays:
                wall, cpu, recap = fleet.run(fleet.playbook('engine.yml', text))
                changed = recap[node_name(0)]['changed']
                if bool(changed) != (label != 'no change'):
                    raise RuntimeError('%s %s: changed=%d' % (engine, label, changed))
                rows.append((engine, label, wall, cpu))
            fleet.write_intent(intent(size, services))
            fleet.check(services)
        vip, sets = node_module_args(size, 0)
        for engine, args in (('vip', vip), ('ipset', max(sets, key=lambda s: len(s['entries'])))):
            result = inprocess(fleet.namespaces[0], engine, args, fleet.dir)
            if result['changed'] or result['failed']:
                raise RuntimeError('in-process %s was not a no-change run: %s' % (engine, result))
            profiles[engine] = result
        log('\n## vip and ipset alone, one node of the %s-node intent (%d VIPs, %d set entries), through Ansible, 1 run each'
            % ('{:,}'.format(size), len(vip['addresses']), sum(len(s['entries']) for s in sets)))
        log('| module | case | wall s | CPU s |\n|---|---|---|---|')
        for label, (wall, cpu) in zip(('first', 'no change'), alone):
            log('| site.yml, this node alone | %s | %.2f | %.2f |' % (label, wall, cpu))
        for engine, label, wall, cpu in rows:
            log('| %s | %s | %.2f | %.2f |' % (engine, label, wall, cpu))
        for engine, result in profiles.items():
            for key, title in (('own', 'top by own time'), ('ours', "the collection's functions by cumulative time")):
                log('\n### %s in-process under cProfile, no change (%s): %.3f s wall, %.3f s CPU; %s'
                    % (engine, 'svip-prt set' if engine == 'ipset' else 'all VIPs', result['wall'], result['cpu'], title))
                log('| function | calls | own s | cumulative s |\n|---|---|---|---|')
                for func, calls, own, cum in result[key]:
                    log('| %s | %d | %.3f | %.3f |' % (func, calls, own, cum))
    finally:
        fleet.delete()


def measure_variants(size, count, workdir, log):
    """No-change CPU per node of site.yml under forks, strategy and serial settings."""
    fleet = Fleet(count, size, workdir)
    try:
        fleet.run(PLAYBOOK)
        fleet.check()
        log('\n## execution settings, %d nodes x %s-node intent, no-change run, 1 run each' % (count, '{:,}'.format(size)))
        log('| setting | wall s | CPU s/node |\n|---|---|---|')
        for label, playbook, extra, env in (
                ('forks 5 (default)', PLAYBOOK, (), None),
                ('forks 20', PLAYBOOK, ('--forks', '20'), None),
                ('strategy free', PLAYBOOK, (), {'ANSIBLE_STRATEGY': 'free'}),
                ('serial 1', fleet.playbook('serial1.yml', site_variant(1)), (), None)):
            wall, cpu, recap = fleet.run(playbook, extra, env)
            if any(r['changed'] for r in recap.values()):
                raise RuntimeError('%s: a no-change run changed %s' % (label, recap))
            log('| %s | %.1f | %.2f |' % (label, wall, cpu / count))
        fleet.check()
    finally:
        fleet.delete()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='one run, intents of 3 and 1,000 nodes')
    parser.add_argument('--strict', action='store_true', help='exit non-zero when a target is missed')
    parser.add_argument('--nodes', type=int, default=3, help='namespace nodes converged (default 3)')
    parser.add_argument('--intent', choices=['file', 'inventory'], default='file',
                        help='the intent in a JSON file named by clusternet_cluster_file (default), or as clusternet_cluster in group_vars YAML')
    parser.add_argument('--sizes', type=lambda text: [int(v) for v in text.split(',')], help='intent sizes (default 3,1000,3000,10000)')
    parser.add_argument('--repeats', type=int, help='runs per size (default 3 up to 1,000 nodes, 1 above; 1 with --quick)')
    parser.add_argument('--engines', type=int, metavar='SIZE', help='time vip and ipset alone at this intent size (default: largest target size)')
    parser.add_argument('--no-engines', action='store_true')
    parser.add_argument('--variants', type=int, metavar='SIZE', help='also compare forks/strategy/serial at this intent size')
    parser.add_argument('--inprocess', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inprocess:
        return inprocess_child(*args.inprocess)
    sizes = args.sizes or ([3, 1000] if args.quick else list(SIZES + PRINTED_ONLY))
    if 3 not in sizes:
        sizes = [3] + sizes
    if os.geteuid() != 0 or not os.path.exists('/usr/bin/python3'):
        sys.exit('bench_fleet needs root (network namespaces) and /usr/bin/python3 with pyroute2')
    link_collection()
    workdir = tempfile.mkdtemp(prefix='bench-fleet-')
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('bench_fleet: terminated'))

    def log(text):
        print(text, flush=True)

    rows, failed = [], []
    try:
        log('\n## fleet: playbooks/site.yml on %d namespace node(s); %d pods/node, services = nodes, dual-stack; intent from %s'
            % (args.nodes, PODS_PER_NODE, 'a JSON file (clusternet_cluster_file)' if args.intent == 'file' else 'group_vars YAML (clusternet_cluster)'))
        for size in sizes:
            repeats = args.repeats or (1 if args.quick or size > 1000 else 3)
            rows += measure_size(size, args.nodes, repeats, workdir, log, args.intent)
        baseline = dict((row['run'], row['cpu']) for row in rows if row['size'] == 3)
        table, failed = render_table(rows, baseline)
        log('\n' + table)
        log('(CPU per node = user+sys of the ansible-playbook process tree / %d nodes; targets on the no-change run; '
            '10,000 nodes printed only)' % args.nodes)
        if not args.no_engines:
            measure_engines(args.engines or (1000 if args.quick else max(TARGETS)), workdir, log)
        if args.variants:
            measure_variants(args.variants, args.nodes, workdir, log)
    except RuntimeError as exc:
        log('FAILED: %s' % exc)
        return 1
    finally:
        remove_all_namespaces()
        shutil.rmtree(workdir, ignore_errors=True)
    for line in failed:
        log('target missed: ' + line)
    return 1 if failed and args.strict else 0


if __name__ == '__main__':
    sys.exit(main())
