"""clusternet.node.persistence against a real kernel, without containers: a namespace
plays the gateway gw1 of the lab's intent, the four apply roles and the persistence
role converge it (files written to a temporary directory instead of /var/lib and
/etc/systemd), then the node "reboots": our objects are wiped (or a fresh namespace
gets only the foreign state), the standalone runner restores, and every dump equals
the converged one, foreign state included. The runner runs under both Pythons."""

import importlib.util
import json
import os
import stat
import subprocess
import sys
import time

import pytest
import yaml
from harness import REPO, run_playbook

sys.path.insert(0, os.path.join(REPO, 'lab'))
import dumps  # noqa: E402

RUNNER = os.path.join(REPO, 'roles', 'persistence', 'files', 'restore.py')
spec = importlib.util.spec_from_file_location('clusternet_restore', RUNNER)
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)

with open(os.path.join(REPO, 'inventories', 'lab', 'group_vars', 'all', 'cluster.yml')) as handle:
    LAB = yaml.safe_load(handle)['clusternet_cluster']

NODE_IPS = ('192.168.50.13', 'fd00:50::13')
OURS = ('cn-pod-subnets', 'cn-node-ips', 'cn-svip', 'cn-svip-prt', 'cn-local-pods')
# State other writers own: a set, nat rules in both families (one in POSTROUTING beside
# our jump), an address and a local route of its own.
FOREIGN = '''
ipset create foreign-allow hash:ip && ipset add foreign-allow 192.0.2.99
ipset create inet6:foreign-allow hash:ip family inet6 && ipset add inet6:foreign-allow 2001:db8:99::9
iptables -w -t nat -A POSTROUTING -s 10.99.0.0/16 -m comment --comment "foreign masq" -j MASQUERADE
iptables -w -t nat -A PREROUTING -d 192.0.2.99/32 -j DNAT --to-destination 10.99.0.9
ip6tables -w -t nat -A POSTROUTING -s fd99::/64 -j MASQUERADE
ip link add foreign0 type ifb && ip link set foreign0 up && ip addr add 203.0.113.7/32 dev foreign0
ip route add local 203.0.113.8 dev foreign0 table local
'''


def play(state_dir, unit_dir, check=False, **extra):
    """The apply roles and the persistence role, wired as node_network wires them."""
    return [{
        'hosts': 'all', 'gather_facts': False,
        'vars': dict({
            'cluster': LAB,
            'st': "{{ cluster | clusternet.node.node_state('gw1', prefix='cn-', state='present', masquerade_families=['ipv4', 'ipv6']) }}",
            'ipsets_sets': '{{ st.ipset }}',
            'service_vips_addresses': '{{ st.vip.addresses }}',
            'service_vips_node_ips': '{{ st.vip.node_ips }}',
            'service_vips_link_kind': 'ifb',
            'masquerade_cluster_cidrs': '{{ st.masquerade.cluster_cidrs }}',
            'masquerade_pod_cidrs': '{{ st.masquerade.pod_cidrs }}',
            'floating_ips_list': '{{ st.fip.floating_ips }}',
            'persistence_dir': state_dir,
            'persistence_unit_dir': unit_dir,
        }, **extra),
        'roles': ['clusternet.node.ipsets', 'clusternet.node.service_vips', 'clusternet.node.masquerade',
                  'clusternet.node.floating_ips', 'clusternet.node.persistence'],
    }]


def converge(ns, state_dir, unit_dir, check=False, diff=False, **extra):
    args = (['--check'] if check else []) + (['--diff'] if diff else [])
    proc = run_playbook(json.dumps(play(state_dir, unit_dir, **extra)), netns=ns.name, extra_args=args)
    report = json.loads(proc.stdout)
    assert not report['stats']['localhost']['failures'], proc.stdout[-6000:]
    return report


def as_gw1(ns):
    ns.run('ip addr add %s/32 dev lo && ip -6 addr add %s/128 dev lo nodad' % NODE_IPS)


def node_dumps(ns):
    return dumps.collect(lambda cmd: ns.run(cmd, check=False).stdout)


def wipe_ours(ns):
    """Everything the collection owns goes, as at a reboot; foreign state stays."""
    ns.run('ip link del kube-dummy-if')
    for save, tool in (('iptables-save', 'iptables'), ('ip6tables-save', 'ip6tables')):
        for line in ns.out('%s -t nat' % save).splitlines():
            if '"clusternet ' in line and line.split()[1] in ('PREROUTING', 'OUTPUT', 'POSTROUTING'):
                ns.run("%s -w -t nat %s" % (tool, line.replace('-A ', '-D ', 1)))
        for chain in ('CLUSTERNET-POSTRTG', 'CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT'):
            ns.run('%s -w -t nat -F %s && %s -w -t nat -X %s' % (tool, chain, tool, chain))
    for name in OURS:
        ns.run('ipset destroy %s && ipset destroy inet6:%s' % (name, name))


def restore(ns, state_dir, python, timeout=10, background=False):
    cmd = 'exec %s %s/restore.py --node-ip-timeout %d %s' % (python, state_dir, timeout, state_dir)
    if background:
        return ns.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return ns.run(cmd, check=False)


@pytest.fixture
def dirs(tmp_path):
    unit_dir = tmp_path / 'systemd'
    (unit_dir / 'multi-user.target.wants').mkdir(parents=True)
    (unit_dir / 'timers.target.wants').mkdir()
    return str(tmp_path / 'clusternet-node'), str(unit_dir)


def test_files_unit_and_absent(netns, dirs):
    state_dir, unit_dir = dirs
    as_gw1(netns)
    netns.run(FOREIGN)
    converge(netns, state_dir, unit_dir)
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert sorted(os.listdir(state_dir)) == ['plugins.bundle', 'restore.py', 'state.json']
    for name in ('plugins.bundle', 'state.json'):
        assert stat.S_IMODE(os.stat(os.path.join(state_dir, name)).st_mode) == 0o600
    with open(os.path.join(state_dir, 'state.json')) as handle:
        calls = json.load(handle)['calls']
    assert [call['module'] for call in calls] == ['ipset'] * 5 + ['vip', 'masquerade', 'fip']
    assert calls[5]['args'] == {'addresses': ['10.43.0.10', '2001:db8:43::10', '192.0.2.80', '10.43.0.53', '2001:db8:43::53'],
                                'node_ips': list(NODE_IPS), 'interface': 'kube-dummy-if', 'link_kind': 'ifb',
                                'exclusive': True, 'delete_interface': False, 'state': 'present', 'adopt': False}
    with open(os.path.join(unit_dir, 'clusternet-node.service')) as handle:
        unit = handle.read()
    for line in ('Type=oneshot', 'RemainAfterExit=yes', 'After=network.target netfilter-persistent.service',
                 'Before=kubelet.service kube-proxy.service kube-router.service flanneld.service',
                 'ExecStart=/usr/bin/python3 %s/restore.py --node-ip-timeout 60 %s' % (state_dir, state_dir),
                 'TimeoutStartSec=180', 'WantedBy=multi-user.target'):
        assert line in unit, line
    assert os.readlink(os.path.join(unit_dir, 'multi-user.target.wants', 'clusternet-node.service')) == '../clusternet-node.service'
    with open(os.path.join(unit_dir, 'clusternet-node-reconcile.service')) as handle:
        assert 'ExecStart=/usr/bin/python3 %s/restore.py --reconcile --metrics-dir /var/lib/prometheus/node-exporter %s\n' % (
            state_dir, state_dir) in handle.read()
    with open(os.path.join(unit_dir, 'clusternet-node-reconcile.timer')) as handle:
        assert 'OnUnitInactiveSec=300s\n' in handle.read()
    assert os.readlink(os.path.join(unit_dir, 'timers.target.wants', 'clusternet-node-reconcile.timer')) == '../clusternet-node-reconcile.timer'

    again = converge(netns, state_dir, unit_dir)
    assert again['stats']['localhost']['changed'] == 0

    before = node_dumps(netns)
    converge(netns, state_dir, unit_dir, persistence_state='absent')
    assert not os.path.exists(state_dir)
    assert sorted(os.listdir(unit_dir)) == ['multi-user.target.wants', 'timers.target.wants']
    assert not os.listdir(os.path.join(unit_dir, 'multi-user.target.wants')) and not os.listdir(os.path.join(unit_dir, 'timers.target.wants'))
    assert node_dumps(netns) == before  # removing the persistence touches no kernel state


def test_check_mode_writes_nothing_and_diff_shows_the_change(netns, dirs):
    state_dir, unit_dir = dirs
    as_gw1(netns)
    report = converge(netns, state_dir, unit_dir, check=True, diff=True)
    assert not os.path.exists(state_dir) and sorted(os.listdir(unit_dir)) == ['multi-user.target.wants', 'timers.target.wants']
    assert not os.listdir(os.path.join(unit_dir, 'timers.target.wants'))
    converge(netns, state_dir, unit_dir)
    with open(os.path.join(state_dir, 'state.json')) as handle:
        persisted = handle.read()
    changed = dict(LAB, services=LAB['services'][:1])
    report = converge(netns, state_dir, unit_dir, check=True, diff=True, cluster=changed)
    with open(os.path.join(state_dir, 'state.json')) as handle:
        assert handle.read() == persisted
    state_task = next(task for task in report['plays'][0]['tasks']
                      if task['task']['name'].endswith("Persist the modules' arguments of this converge"))
    result = state_task['hosts']['localhost']
    assert result['changed']
    diff = result['diff'][0] if isinstance(result['diff'], list) else result['diff']
    assert '10.43.0.53' in diff['before'] and '10.43.0.53' not in diff['after']


def test_restore_after_wipe_equals_converge(netns, dirs, python):
    state_dir, unit_dir = dirs
    as_gw1(netns)
    netns.run(FOREIGN)
    converge(netns, state_dir, unit_dir)
    converged = node_dumps(netns)
    wipe_ours(netns)
    wiped = node_dumps(netns)
    assert 'cn-svip' not in wiped['ipset'] and 'CLUSTERNET' not in wiped['nat ipv4'] + wiped['nat ipv6']
    assert 'foreign-allow' in wiped['ipset'] and 'foreign masq' in wiped['nat ipv4']
    proc = restore(netns, state_dir, python)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dumps.differences(converged, node_dumps(netns)) == ''
    assert 'vip kube-dummy-if: restored (changed)' in proc.stdout
    again = restore(netns, state_dir, python)  # in sync: nothing to do
    assert again.returncode == 0 and 'changed' not in again.stdout, again.stdout


def test_fresh_boot_with_late_node_ips(netns_factory, dirs, python):
    """A new namespace is a rebooted node: foreign state first (netfilter-persistent runs
    before us), node IPs only after the runner started (DHCP)."""
    state_dir, unit_dir = dirs
    first = netns_factory()
    as_gw1(first)
    first.run(FOREIGN)
    converge(first, state_dir, unit_dir)
    converged = node_dumps(first)

    booted = netns_factory()
    booted.run(FOREIGN)
    proc = restore(booted, state_dir, python, timeout=60, background=True)
    lines = []
    while not lines or not lines[-1].startswith('waiting'):  # everything but the VIPs first
        lines.append(proc.stdout.readline())
        assert lines[-1], ''.join(lines)  # the runner ended without waiting
    assert lines[-1] == 'waiting up to 60 s for node IPs 192.168.50.13, fd00:50::13 (VIP routes are sourced from them)\n'
    assert [line.split(':')[0] for line in lines[:-1]] == ['ipset cn-%s' % name for name in (
        'pod-subnets', 'node-ips', 'svip', 'svip-prt', 'local-pods')] + ['masquerade CLUSTERNET-POSTRTG', 'fip']
    time.sleep(1)
    assert proc.poll() is None  # still waiting
    as_gw1(booted)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert out.startswith('node IPs present after ') and 'vip kube-dummy-if: restored (changed)' in out, out
    assert dumps.differences(converged, node_dumps(booted)) == ''


def test_node_ips_never_come_fails_in_time_and_restores_the_rest(netns_factory, dirs):
    state_dir, unit_dir = dirs
    first = netns_factory()
    as_gw1(first)
    converge(first, state_dir, unit_dir)
    converged = node_dumps(first)
    booted = netns_factory()
    started = time.monotonic()
    proc = restore(booted, state_dir, '/usr/bin/python3', timeout=2)
    assert time.monotonic() - started < 8
    assert proc.returncode == 1
    assert 'node IPs 192.168.50.13, fd00:50::13 not present after 2 s: VIPs on kube-dummy-if not restored' in proc.stdout
    after = node_dumps(booted)
    for name in ('ipset', 'nat ipv4', 'nat ipv6'):
        assert after[name] == converged[name], name
    assert after['kube-dummy-if'] == ''


def node_network_play(state_dir, unit_dir, state='present'):
    """The node_network role as playbooks/site.yml runs it, for gw1, persisting into dirs."""
    return [{'hosts': 'all', 'gather_facts': False, 'roles': ['clusternet.node.node_network'], 'vars': {
        'clusternet_cluster': LAB, 'clusternet_node_name': 'gw1', 'clusternet_vip_link_kind': 'ifb',
        'clusternet_state': state, 'persistence_dir': state_dir, 'persistence_unit_dir': unit_dir}}]


def run_node_network(ns, state_dir, unit_dir, state='present', check=False, diff=False):
    args = (['--check'] if check else []) + (['--diff'] if diff else [])
    proc = run_playbook(json.dumps(node_network_play(state_dir, unit_dir, state)), netns=ns.name, extra_args=args)
    report = json.loads(proc.stdout)
    assert not report['stats']['localhost']['failures'], proc.stdout[-6000:]
    return report


def test_node_network_persists_what_node_apply_applied(netns, dirs):
    """Through the role users run: state.json holds exactly the module calls node_apply made
    (so restore replays the converge), check mode writes nothing, a rerun changes nothing,
    the runner restores a wiped node to the same dumps, and absent removes unit and files."""
    state_dir, unit_dir = dirs
    as_gw1(netns)
    netns.run(FOREIGN)
    run_node_network(netns, state_dir, unit_dir, check=True)
    assert not os.path.exists(state_dir)
    report = run_node_network(netns, state_dir, unit_dir, diff=True)
    with open(os.path.join(state_dir, 'state.json')) as handle:
        calls = json.load(handle)['calls']
    assert stat.S_IMODE(os.stat(os.path.join(state_dir, 'state.json')).st_mode) == 0o600
    assert [call['module'] for call in calls] == ['ipset'] * 5 + ['vip', 'masquerade', 'fip']
    assert calls[5]['args']['addresses'] == ['10.43.0.10', '2001:db8:43::10', '192.0.2.80', '10.43.0.53', '2001:db8:43::53']
    assert calls[7]['args']['floating_ips'] == [{'external_ip': ip, 'internal_ip': pod} for ip, pod in (
        ('198.51.100.10', '10.42.1.5'), ('2001:db8:100::10', '2001:db8:42:1::5'))]
    apply_task = next(task for task in report['plays'][0]['tasks'] if 'Apply this node' in task['task']['name'])
    diffs = apply_task['hosts']['localhost']['diff']
    assert any(d.get('after_header', '').endswith('state.json') and '"calls"' in d['after'] for d in diffs)
    assert os.path.islink(os.path.join(unit_dir, 'multi-user.target.wants', 'clusternet-node.service'))
    again = run_node_network(netns, state_dir, unit_dir)
    assert again['stats']['localhost']['changed'] == 0, [
        (task['task']['name'], [r for r in task['hosts']['localhost'].get('results') or [] if r.get('changed')]) for task in again['plays'][0]['tasks']
        if task['hosts']['localhost'].get('changed')]

    converged = node_dumps(netns)
    wipe_ours(netns)
    proc = restore(netns, state_dir, sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dumps.differences(converged, node_dumps(netns)) == ''

    run_node_network(netns, state_dir, unit_dir, state='absent')
    assert not os.path.exists(state_dir)
    assert not os.path.exists(os.path.join(unit_dir, 'clusternet-node.service'))


# What an attacker or a slip could leave in DIR (do, undo, the reason the runner names).
UNSAFE = {
    'directory 0777 owned by nobody': ('chown nobody {d} && chmod 0777 {d}', 'chown root {d} && chmod 0700 {d}',
                                       'directory {d} is owned by uid 65534, not root'),
    'bundle group-writable': ('chmod 0620 {d}/plugins.bundle', 'chmod 0600 {d}/plugins.bundle',
                              '{d}/plugins.bundle has mode 0620: group or others can write it'),
    'state.json a symlink': ('mv {d}/state.json {d}.json && ln -s {d}.json {d}/state.json',
                             'rm {d}/state.json && mv {d}.json {d}/state.json', '{d}/state.json is a symbolic link'),
    'runner writable by others': ('chmod 0757 {d}/restore.py', 'chmod 0700 {d}/restore.py', '{d}/restore.py has mode 0757: group or others can write it'),
}


def test_unsafe_state_directory_runs_nothing(netns, dirs):
    """Root would run whatever the directory holds: an unsafe one is refused with one line, exit 1,
    and the node stays as it is; made safe again, the same files restore it."""
    state_dir, unit_dir = dirs
    as_gw1(netns)
    netns.run(FOREIGN)
    converge(netns, state_dir, unit_dir)
    converged = node_dumps(netns)
    wipe_ours(netns)
    wiped = node_dumps(netns)
    for name, (do, undo, reason) in UNSAFE.items():
        subprocess.run(do.format(d=state_dir), shell=True, check=True)
        proc = restore(netns, state_dir, '/usr/bin/python3')
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        assert proc.stdout == 'refusing to restore from %s, nothing was run: %s\n' % (state_dir, reason.format(d=state_dir)), name
        assert proc.stderr == ''
        assert dumps.differences(wiped, node_dumps(netns)) == '', name
        subprocess.run(undo.format(d=state_dir), shell=True, check=True)
    proc = restore(netns, state_dir, '/usr/bin/python3')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dumps.differences(converged, node_dumps(netns)) == ''


def test_malformed_calls_are_reported_and_node_ips_compared_as_addresses(netns, dirs, python):
    """A call no module can take is reported and every other call still runs; node IPs in forms
    the vip module accepts but ip does not print (/32, upper case) are present at once."""
    state_dir, unit_dir = dirs
    as_gw1(netns)
    netns.run(FOREIGN)
    converge(netns, state_dir, unit_dir)
    converged = node_dumps(netns)
    path = os.path.join(state_dir, 'state.json')
    with open(path) as handle:
        calls = json.load(handle)['calls']
    vip = next(call for call in calls if call['module'] == 'vip')
    vip['args']['node_ips'] = ['192.168.50.13/32', 'FD00:50::13']
    calls[:0] = [{'module': 'no_such_module', 'args': {}}]
    calls[3:3] = [{'module': 'ipset'}, {'module': 'masquerade', 'args': 'cluster_cidrs=10.42.0.0/16'}]
    with open(path, 'w') as handle:
        json.dump({'calls': calls}, handle)
    wipe_ours(netns)
    proc = restore(netns, state_dir, python)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith(
        "state.json call 1: module 'no_such_module' is not one the bundle holds (fip, ipset, masquerade, vip): not run\n"
        'state.json call 4: module ipset has no args: not run\n'
        "state.json call 5: module masquerade: args is 'cluster_cidrs=10.42.0.0/16', not a mapping: not run\n"), proc.stdout
    assert 'waiting' not in proc.stdout and 'vip kube-dummy-if: restored (changed)' in proc.stdout, proc.stdout
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert dumps.differences(converged, node_dumps(netns)) == ''


def test_runner_runs_the_bundled_module_without_ansible(netns, tmp_path):
    """Debian's python3 has no Ansible: the bundle and the stand-in are all the runner needs.
    Calls the modules refuse fail with the modules' own messages; in a namespace of the
    test's own all the same, in case one of them reached the kernel."""
    paths = sorted('plugins/module_utils/' + f for f in os.listdir(os.path.join(REPO, 'plugins', 'module_utils')) if f.endswith('.py'))
    paths += ['plugins/modules/%s.py' % m for m in ('ipset', 'vip', 'masquerade', 'fip')]
    with open(tmp_path / 'plugins.bundle', 'w') as bundle:
        for path in paths:
            with open(os.path.join(REPO, path)) as handle:
                source = handle.read().rstrip('\n')
            bundle.write('%s%s %d\n%s\n' % (runner.MARKER, path, len(source.split('\n')), source))
    code = '''
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("r", sys.argv[1])
r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)
r.install(r.read_bundle(open(sys.argv[2]).read()))
out = [r.run_call({"module": "ipset", "args": {"name": "cn-t", "entries": ["not-an-entry"]}}),
       r.run_call({"module": "fip", "args": {"floating_ips": [{"external_ip": "not-an-ip", "internal_ip": "10.0.0.1"}]}}),
       r.run_call({"module": "vip", "args": {"bogus": 1}})]
print(json.dumps([sorted(m for m in sys.modules if m.split(".")[0] == "ansible"), out]))
'''
    proc = subprocess.run(['ip', 'netns', 'exec', netns.name, '/usr/bin/python3', '-c', code, RUNNER, str(tmp_path / 'plugins.bundle')],
                          capture_output=True, text=True, check=True)
    assert netns.out('ipset list -n') == ''
    ansible_modules, results = json.loads(proc.stdout)
    assert ansible_modules == ['ansible', 'ansible.module_utils', 'ansible.module_utils.basic']
    assert all(result['failed'] for result in results)
    assert 'not-an-entry' in results[0]['msg']
    assert 'not-an-ip' in results[1]['msg']
    assert results[2]['msg'] == 'Unsupported parameters for module: bogus'
