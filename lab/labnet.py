# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's containers and their network (the "CNI" of the lab), from the cluster intent.

`up` reads one JSON spec on stdin and reconciles the lab to it; `down PREFIX` removes it.
Spec: {"prefix": "cn-lab", "networks": [node network CIDR per family],
       "outside": [outside address per family], "hosts": {inventory name: container},
       "platforms": {inventory name: {"release": "trixie", "iptables": "legacy"}} (optional),
       "cluster": the clusternet_cluster intent}.
A node's platform is its Debian release (image localhost/clusternet-node:RELEASE-systemd;
default $CLUSTERNET_NODE_RELEASE, else bookworm) and its iptables backend (nft, Debian's
default, or legacy, chosen with update-alternatives as an operator would); pods and the
outside run the default release.

Every container runs with `--network none`. The node network is a bridge inside a
"switch" network namespace (PREFIX-sw); each container's eth0 is one end of a veth
pair created inside the switch namespace with its peer placed straight into the
container's namespace, so no link ever exists in the root namespace.

Emulation, stated plainly: a node is a container (NET_ADMIN) booting systemd as PID 1,
with the node IPs from the intent; the nodes route each other's pod CIDRs via the owning node's IP. A pod
is its own container (no capabilities) with the pod IPs from the intent, attached
by a veth to a `cni0` bridge in its node that holds the first address of each pod
CIDR and is the pod's default gateway (flannel's bridge model). The outside is a
container on the node network with a host route to each floating IP via its
gateway node, and no route to pod CIDRs, so only masqueraded pod traffic can get
an answer from it. Every container answers on whoami.py's probe listener (a node runs it
as a systemd service). Restarting a node's container is its reboot: a fresh network
namespace, systemd's boot, then `up` plugs and addresses its eth0 again, late, as a NIC
that comes up after the boot started.
"""

import argparse
import concurrent.futures
import hashlib
import ipaddress
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault('CONTAINERS_CONF', os.path.join(HERE, 'containers.conf'))
RELEASES = ('bookworm', 'trixie')
RELEASE = os.environ.get('CLUSTERNET_NODE_RELEASE') or 'bookworm'
BACKENDS = ('nft', 'legacy')
LABEL = 'clusternet.lab'
SPEC_LABEL = 'clusternet.lab.spec'
PROBE = '/usr/local/lib/clusternet/whoami.py'
BRIDGE = 'br0'
CNI = 'cni0'
ROUTE_PROTO = 'static'  # marks the routes this tool owns, so a re-run replaces them all


def run(*cmd, check=True):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit('labnet: %s failed (%d): %s' % (' '.join(cmd), proc.returncode, proc.stderr.strip()))
    return proc


def podman(*args, check=True):
    return run('podman', *args, check=check).stdout


def in_netns(pid, *cmd, check=True):
    """Run a host tool inside a container's network namespace (mount namespace stays the host's)."""
    return run('nsenter', '-t', str(pid), '-n', *cmd, check=check)


def switch_name(prefix):
    return prefix + '-sw'


def outside_name(prefix):
    return prefix + '-outside'


def pod_name(prefix, pod):
    return '%s-pod-%s' % (prefix, pod['name'])


def short(text, lead):
    """An interface name (15 characters at most) that is stable for text."""
    return lead + hashlib.sha1(text.encode()).hexdigest()[:10]


def stable_mac(text):
    """A locally administered MAC that is stable for text: a NIC keeps its MAC over a
    reboot, so its neighbours' caches stay valid (a new random MAC would leave them
    probing a dead address for seconds)."""
    return '02:' + ':'.join(hashlib.sha1(text.encode()).hexdigest()[i:i + 2] for i in range(0, 10, 2))


def family(value):
    return 'ipv%d' % ipaddress.ip_network(value, strict=False).version


def host_route(address):
    return str(ipaddress.ip_network(address))


# ---- the plan: pure, from the spec to containers, addresses and routes ----

def plan(spec):
    """{container name: {role, node, addresses, routes [(dst, via)], bridge}} for the spec."""
    prefix, cluster = spec['prefix'], spec['cluster']
    networks = dict((family(n), ipaddress.ip_network(n)) for n in spec['networks'])
    node_ip = {}
    containers = {}
    for host, name in sorted(spec['hosts'].items()):
        node = cluster['nodes'].get(host)
        if node is None:
            raise SystemExit('labnet: inventory host %s is not a node of the cluster intent' % host)
        node_ip[host] = dict((family(ip), ip) for ip in node['node_ips'])
        containers[name] = dict(platform(host, (spec.get('platforms') or {}).get(host) or {}), **{
            'role': 'node', 'host': host,
            'addresses': ['%s/%d' % (ip, networks[family(ip)].prefixlen) for ip in node['node_ips']],
            'bridge': [_gateway_interface(cidr) for cidr in node['pod_cidrs']],
            'routes': [],
        })
    for name, box in containers.items():
        for other, other_box in sorted(containers.items()):
            if other != name:
                peer = cluster['nodes'][other_box['host']]
                box['routes'] += [(cidr, node_ip[other_box['host']][family(cidr)]) for cidr in peer['pod_cidrs']]
    containers[outside_name(prefix)] = {
        'role': 'outside', 'release': RELEASE,
        'addresses': ['%s/%d' % (ip, networks[family(ip)].prefixlen) for ip in spec['outside']],
        'routes': [(host_route(fip['external_ip']), node_ip[fip['gateway']][family(fip['external_ip'])])
                   for fip in cluster.get('floating_ips') or []],
    }
    by_host = dict((box['host'], name) for name, box in containers.items() if box['role'] == 'node')
    for pod in cluster.get('pods') or []:
        name = pod_name(prefix, pod)
        if name in containers:
            raise SystemExit('labnet: two pods are named %s' % pod['name'])
        cidrs = cluster['nodes'][pod['node']]['pod_cidrs']
        containers[name] = {
            'role': 'pod', 'node': by_host[pod['node']], 'release': RELEASE,
            'addresses': [_in_cidr(ip, cidrs) for ip in pod['ips']],
            'routes': [('default', _gateway_interface(_containing(ip, cidrs)).split('/')[0]) for ip in pod['ips']],
        }
    return containers


def platform(host, given):
    """A node's release and iptables backend, checked: a typo must not quietly test the default."""
    unknown = sorted(set(given) - set(('release', 'iptables')))
    chosen = {'release': given.get('release') or RELEASE, 'iptables': given.get('iptables') or 'nft'}
    if unknown or chosen['release'] not in RELEASES or chosen['iptables'] not in BACKENDS:
        raise SystemExit('labnet: platform of %s: %r: expected release %s, iptables %s'
                         % (host, given, ' or '.join(RELEASES), ' or '.join(BACKENDS)))
    return chosen


def image(release):
    return 'localhost/clusternet-node:%s-systemd' % release


def _containing(ip, cidrs):
    for cidr in cidrs:
        if ipaddress.ip_address(ip) in ipaddress.ip_network(cidr):
            return cidr
    raise SystemExit('labnet: pod IP %s is in none of its node pod CIDRs %s' % (ip, cidrs))


def _in_cidr(ip, cidrs):
    return '%s/%d' % (ip, ipaddress.ip_network(_containing(ip, cidrs)).prefixlen)


def _gateway_interface(cidr):
    """The node's cni0 address in a pod CIDR: its first host, as an interface address."""
    network = ipaddress.ip_network(cidr)
    return '%s/%d' % (network.network_address + 1, network.prefixlen)


def spec_hash(box):
    return hashlib.sha1(json.dumps(box, sort_keys=True).encode()).hexdigest()[:12]


# ---- the kernel and podman edges ----

def existing(prefix):
    """{container name: (spec hash, running)} of this lab's containers."""
    boxes = json.loads(podman('ps', '-a', '--filter', 'label=%s=%s' % (LABEL, prefix), '--format', 'json') or '[]')
    return dict((box['Names'][0], (box['Labels'].get(SPEC_LABEL), box['State'] == 'running')) for box in boxes)


def start(prefix, name, box):
    """A node boots systemd as PID 1 (its units, clusternet-node.service among them, run at
    every start; the image runs the probe as a service); a pod or the outside runs the probe
    as its only process."""
    if box['role'] == 'node':
        mode = ['--systemd=always', '--cap-add', 'NET_ADMIN', '--cap-add', 'NET_RAW']
        command = ['/sbin/init']
    else:
        mode, command = ['--init'], ['python3', PROBE, 'serve']
    podman('run', '-d', '--name', name, '--hostname', name, '--network', 'none', *mode,
           '--label', '%s=%s' % (LABEL, prefix), '--label', '%s=%s' % (SPEC_LABEL, spec_hash(box)),
           '-v', '%s:%s:ro' % (os.path.join(HERE, 'whoami.py'), PROBE), image(box['release']), *command)
    if box.get('iptables') == 'legacy':
        # As an operator switches a Debian node: both commands of each family, before any run.
        for tool in ('iptables', 'ip6tables'):
            podman('exec', name, 'update-alternatives', '--quiet', '--set', tool, '/usr/sbin/%s-legacy' % tool)


def pid_of(name):
    return int(podman('inspect', '-f', '{{.State.Pid}}', name).strip())


def has_link(pid, link):
    return in_netns(pid, 'ip', 'link', 'show', link, check=False).returncode == 0


def ensure_switch(switch):
    if run('ip', 'netns', 'exec', switch, 'true', check=False).returncode != 0:
        run('ip', 'netns', 'add', switch)
    if run('ip', '-n', switch, 'link', 'show', BRIDGE, check=False).returncode != 0:
        run('ip', '-n', switch, 'link', 'add', BRIDGE, 'type', 'bridge', 'mcast_snooping', '0')
    run('ip', '-n', switch, 'link', 'set', BRIDGE, 'up')


def plug(switch, name, pid):
    """eth0 of the container <-> a port of the switch bridge, made inside the switch namespace."""
    port = short(name, 'p')
    run('ip', '-n', switch, 'link', 'del', port, check=False)  # a leftover of an earlier container
    run('ip', '-n', switch, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0',
        'address', stable_mac(name), 'netns', str(pid))
    run('ip', '-n', switch, 'link', 'set', port, 'master', BRIDGE, 'up')


def plug_pod(node_pid, name, pid):
    """eth0 of the pod <-> a port of the node's cni0, made inside the node's namespace."""
    port = short(name, 'v')
    in_netns(node_pid, 'ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', str(pid))
    in_netns(node_pid, 'ip', 'link', 'set', port, 'master', CNI, 'up')


def address(pid, dev, cidr):
    extra = ['nodad'] if family(cidr) == 'ipv6' else []  # usable at once, no DAD wait
    in_netns(pid, 'ip', 'addr', 'replace', cidr, 'dev', dev, *extra)


def configure(pid, box):
    in_netns(pid, 'ip', 'link', 'set', 'lo', 'up')
    if box.get('bridge'):
        if not has_link(pid, CNI):
            in_netns(pid, 'ip', 'link', 'add', CNI, 'address', stable_mac(box['host'] + '/' + CNI), 'type', 'bridge')
        for cidr in box['bridge']:
            address(pid, CNI, cidr)
        in_netns(pid, 'ip', 'link', 'set', CNI, 'up')
    for cidr in box['addresses']:
        address(pid, 'eth0', cidr)
    in_netns(pid, 'ip', 'link', 'set', 'eth0', 'up')
    if box['role'] == 'node':
        in_netns(pid, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1')
    for opt in ('-4', '-6'):
        in_netns(pid, 'ip', opt, 'route', 'flush', 'proto', ROUTE_PROTO)
    for dst, via in box['routes']:
        in_netns(pid, 'ip', '-6' if ':' in via else '-4', 'route', 'replace', dst, 'via', via, 'proto', ROUTE_PROTO)


def up(spec):
    prefix = spec['prefix']
    containers = plan(spec)
    releases = sorted(set(box['release'] for box in containers.values()))
    if any(run('podman', 'image', 'exists', image(release), check=False).returncode != 0 for release in releases):
        subprocess.run(['bash', os.path.join(HERE, 'image.sh')] + releases, check=True)
    switch = switch_name(prefix)
    ensure_switch(switch)
    have = existing(prefix)
    stale = [name for name, (digest, running) in have.items()
             if name not in containers or not running or digest != spec_hash(containers[name])]
    if stale:
        podman('rm', '-f', '-t', '0', *stale)
    missing = [name for name in containers if name not in have or name in stale]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda name: start(prefix, name, containers[name]), missing))
    pids = dict((name, pid_of(name)) for name in containers)
    for name, box in sorted(containers.items(), key=lambda item: item[1]['role'] == 'pod'):
        if not has_link(pids[name], 'eth0'):
            if box['role'] == 'pod':
                plug_pod(pids[box['node']], name, pids[name])
            else:
                plug(switch, name, pids[name])
        configure(pids[name], box)
    print('lab %s: %d containers (%d started), switch netns %s' % (prefix, len(containers), len(missing), switch))


def down(prefix):
    names = sorted(existing(prefix))
    if names:
        podman('rm', '-f', '-t', '0', *names)
    run('ip', 'netns', 'del', switch_name(prefix), check=False)
    print('lab %s: removed %d containers and netns %s' % (prefix, len(names), switch_name(prefix)))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('up', help='reconcile the lab to the JSON spec on stdin')
    sub.add_parser('down', help='remove the lab').add_argument('prefix')
    args = parser.parse_args(argv)
    if args.command == 'up':
        up(json.load(sys.stdin))
    else:
        down(args.prefix)


if __name__ == '__main__':
    main(sys.argv[1:])
