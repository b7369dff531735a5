"""clusternet.node.masquerade against a real kernel, inside test namespaces.

Expected rules are written out here from Flannel's rule set, not taken from the
module, and every check reads the kernel back with iptables-save.
"""

import fcntl
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from harness import link_collection

sys.path.insert(0, link_collection())  # run alone too, not only after a file that put it there

from ansible_collections.clusternet.node.plugins.module_utils.lock import DEFAULT_LOCK_PATH as LOCK_PATH  # noqa: E402
from ansible_collections.clusternet.node.plugins.module_utils.lock import open_lock  # noqa: E402

CHAIN = 'CLUSTERNET-POSTRTG'
SAVE = {'ipv4': 'iptables-save -t nat', 'ipv6': 'ip6tables-save -t nat'}
IPT = {'ipv4': 'iptables -w -t nat', 'ipv6': 'ip6tables -w -t nat'}
# Two networks per family: A is the first intent, B the "network change".
NET = {
    'A': {'ipv4': ('10.244.0.0/16', '10.244.1.0/24'), 'ipv6': ('fd00:10:244::/56', 'fd00:10:244:1::/64')},
    'B': {'ipv4': ('10.42.0.0/16', '10.42.7.0/24'), 'ipv6': ('fd00:42::/56', 'fd00:42:0:7::/64')},
}
MULTICAST = {'ipv4': '224.0.0.0/4', 'ipv6': 'ff00::/8'}
FLANNEL = textwrap.dedent('''\
    -A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG
    -A CLUSTERNET-POSTRTG -m comment --comment "clusternet.node masquerade chain"
    -A CLUSTERNET-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "clusternet masq" -j RETURN
    -A CLUSTERNET-POSTRTG -s {pod} -d {cluster} -m comment --comment "clusternet masq" -j RETURN
    -A CLUSTERNET-POSTRTG -s {cluster} -d {pod} -m comment --comment "clusternet masq" -j RETURN
    -A CLUSTERNET-POSTRTG ! -s {cluster} -d {pod} -m comment --comment "clusternet masq" -j RETURN
    -A CLUSTERNET-POSTRTG -s {cluster} ! -d {multicast} -m comment --comment "clusternet masq" -j MASQUERADE --random-fully
    -A CLUSTERNET-POSTRTG ! -s {cluster} -d {cluster} -m comment --comment "clusternet masq" -j MASQUERADE --random-fully
    ''')
FOREIGN = {
    'ipv4': ['-A POSTROUTING -s 192.168.9.0/24 -j MASQUERADE', '-A KEEP-ME -d 10.244.1.0/24 -j RETURN'],
    'ipv6': ['-A POSTROUTING -s fd99::/64 -j MASQUERADE', '-A KEEP-ME -d fd00:10:244:1::/64 -j RETURN'],
}


def intent(net='A', families=('ipv4', 'ipv6'), **extra):
    args = {'cluster_cidrs': [NET[net][f][0] for f in families], 'pod_cidrs': [NET[net][f][1] for f in families]}
    args.update(extra)
    return args


def expected(net, family):
    cluster, pod = NET[net][family]
    return FLANNEL.format(cluster=cluster, pod=pod, multicast=MULTICAST[family]).splitlines()


def save(ns, family):
    """The nat table as iptables-save prints it, without the timestamped comment lines and counters."""
    return [re.sub(r' \[\d+:\d+\]$', '', line) for line in ns.out(SAVE[family]).splitlines() if not line.startswith('#')]


def ours(ns, family):
    """Our chain's rules and every jump to it, in iptables-save order."""
    return [line for line in save(ns, family) if line.startswith('-A ') and CHAIN in line]


def foreign(ns, family):
    return [line for line in save(ns, family) if CHAIN not in line]


def add_foreign(ns):
    for family in ('ipv4', 'ipv6'):
        ns.run('%s -N KEEP-ME' % IPT[family])
        for rule in FOREIGN[family]:
            ns.run('%s %s' % (IPT[family], rule))


def test_first_run_dual_stack_then_idempotent(netns, python):
    result = netns.module('masquerade', intent(), python=python)
    assert result['changed'] is True
    for family in ('ipv4', 'ipv6'):
        assert ours(netns, family) == expected('A', family)
    again = netns.module('masquerade', intent(), python=python)
    assert again['changed'] is False
    assert again['ipv4']['payload'] == '' and again['ipv6']['payload'] == ''


@pytest.mark.parametrize('family', ['ipv4', 'ipv6'])
def test_single_family_fresh_node_and_family_removal(netns, family):
    other = 'ipv6' if family == 'ipv4' else 'ipv4'
    # Flannel #1968: no previous state of the other family must simply mean "nothing there".
    assert netns.module('masquerade', intent(families=(family,)))['changed'] is True
    assert ours(netns, family) == expected('A', family)
    assert ours(netns, other) == [] and ':%s -' % CHAIN not in save(netns, other)
    assert netns.module('masquerade', intent(families=(family,)))['changed'] is False
    # Dual stack, then drop the family again: its chain and jump go, the other stays.
    netns.module('masquerade', intent())
    assert ours(netns, other) == expected('A', other)
    assert netns.module('masquerade', intent(families=(family,)))['changed'] is True
    assert ours(netns, other) == [] and ':%s -' % CHAIN not in save(netns, other)
    assert ours(netns, family) == expected('A', family)


def test_network_change_leaves_nothing_of_the_old_network(netns):
    netns.module('masquerade', intent('A'))
    result = netns.module('masquerade', intent('B'))
    for family in ('ipv4', 'ipv6'):
        table = '\n'.join(save(netns, family))
        for old in NET['A'][family]:
            assert old not in table
        assert ours(netns, family) == expected('B', family)
        # One transaction that redeclares (atomically flushes) the chain and holds every rule.
        payload = result[family]['payload'].splitlines()
        assert payload[:2] == ['*nat', ':%s - [0:0]' % CHAIN] and payload[-1] == 'COMMIT'
        assert payload[2:-1] == [line for line in expected('B', family) if not line.startswith('-A POSTROUTING')]


def test_chain_is_never_seen_half_built(netns, tmp_path):
    """An observer dumping the nat tables in a loop while the network flips A/B/A/B
    only ever sees no chain, all of A or all of B, with at most one jump."""
    stop = tmp_path / 'stop'
    loop = ('i=0; while [ ! -e {stop} ]; do iptables-save -t nat > {dir}/$i.ipv4; ip6tables-save -t nat > {dir}/$i.ipv6; '
            'i=$((i+1)); done').format(stop=stop, dir=tmp_path)
    observer = netns.popen(loop)
    try:
        for net in ('A', 'B', 'A', 'B'):
            netns.module('masquerade', intent(net))
    finally:
        stop.touch()
        observer.wait(timeout=30)
    whole = [[], expected('A', 'ipv4'), expected('B', 'ipv4'), expected('A', 'ipv6'), expected('B', 'ipv6')]
    snapshots = [p for p in tmp_path.iterdir() if p.suffix in ('.ipv4', '.ipv6')]
    assert len(snapshots) > 20
    for path in snapshots:
        seen = [line for line in path.read_text().splitlines() if line.startswith('-A ') and CHAIN in line]
        assert seen in whole, '%s saw a partial chain: %s' % (path.name, seen)


def test_duplicates_reorder_and_extra_jumps_are_repaired(netns):
    netns.module('masquerade', intent())
    v4, v6 = expected('A', 'ipv4'), expected('A', 'ipv6')
    damage = [
        # a duplicated rule (Flannel #1337 only checked existence)
        '%s %s' % (IPT['ipv4'], v4[3]),
        # the MASQUERADE rules moved in front of the RETURN rules
        '%s -D CLUSTERNET-POSTRTG 7 && %s -I CLUSTERNET-POSTRTG 2 %s' % (IPT['ipv6'], IPT['ipv6'], v6[7][len('-A CLUSTERNET-POSTRTG '):]),
        # a second jump of ours (a jump without our comment is someone else's: test_nat_ownership)
        '%s -A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG' % IPT['ipv4'],
        # strays inside our (marked) chain, appended and inserted in front of the mark: repaired (issue 23)
        '%s -A CLUSTERNET-POSTRTG -s 10.42.0.0/16 -j MASQUERADE' % IPT['ipv4'],
        '%s -I CLUSTERNET-POSTRTG 1 -s 10.9.9.9/32 -j RETURN' % IPT['ipv4'],
    ]
    for command in damage:
        netns.run(command)
        assert ours(netns, 'ipv4') != v4 or ours(netns, 'ipv6') != v6
        assert netns.module('masquerade', intent())['changed'] is True
        assert ours(netns, 'ipv4') == v4 and ours(netns, 'ipv6') == v6
    assert netns.module('masquerade', intent())['changed'] is False


def test_foreign_rules_survive_every_run_including_absent(netns):
    add_foreign(netns)
    before = dict((family, foreign(netns, family)) for family in ('ipv4', 'ipv6'))
    assert FOREIGN['ipv4'][0] in before['ipv4'] and FOREIGN['ipv6'][1] in before['ipv6']
    runs = [intent('A'), intent('B'), intent('B', families=('ipv4',)), {'state': 'absent'}]
    for args in runs:
        netns.module('masquerade', args)
        for family in ('ipv4', 'ipv6'):
            assert foreign(netns, family) == before[family], args
    for family in ('ipv4', 'ipv6'):
        assert ours(netns, family) == [] and ':%s -' % CHAIN not in save(netns, family)
    assert netns.module('masquerade', {'state': 'absent'})['changed'] is False


@pytest.mark.parametrize('args, message', [
    (intent(cluster_cidrs=['10.244.0.0/16', 'fd00:10:244::/300']), "'fd00:10:244::/300'"),
    (intent(cluster_cidrs=['10.244.0.0/16']), 'pod CIDR fd00:10:244:1::/64 is ipv6 but cluster_cidrs has no ipv6 network'),
    (intent(pod_cidrs=['10.245.1.0/24']), 'pod CIDR 10.245.1.0/24 is outside every ipv4 cluster CIDR (10.244.0.0/16)'),
], ids=['invalid-cidr', 'pod-family-without-cluster', 'pod-outside-cluster'])
def test_invalid_input_fails_and_changes_nothing(netns, args, message):
    netns.module('masquerade', intent('B'))
    netns.run('%s -A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG' % IPT['ipv4'])  # ours, repeated: to repair
    before = dict((family, save(netns, family)) for family in ('ipv4', 'ipv6'))
    result = netns.module('masquerade', args, expect_failure=True)
    assert message in result['msg']
    assert dict((family, save(netns, family)) for family in ('ipv4', 'ipv6')) == before


def test_check_mode_predicts_and_changes_nothing(netns):
    netns.module('masquerade', intent('A'))
    netns.run('%s -A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG' % IPT['ipv6'])
    before = dict((family, save(netns, family)) for family in ('ipv4', 'ipv6'))
    result = netns.module('masquerade', intent('B', families=('ipv4',)), check=True, diff=True)
    assert result['changed'] is True
    assert dict((family, save(netns, family)) for family in ('ipv4', 'ipv6')) == before
    assert result['ipv4']['after'] == expected('B', 'ipv4') and result['ipv6']['after'] == []
    assert '10.42.7.0/24' in result['diff']['after'] and '10.244.1.0/24' in result['diff']['before']
    # The prediction is what a real run then does.
    netns.module('masquerade', intent('B', families=('ipv4',)))
    assert ours(netns, 'ipv4') == result['ipv4']['after'] and ours(netns, 'ipv6') == []


def write_shims(directory, log, filter_random_fully=False):
    """Wrappers in front of the real xtables binaries that log every call."""
    for name in ('iptables-save', 'ip6tables-save', 'iptables-restore', 'ip6tables-restore', 'iptables', 'ip6tables'):
        real = '/usr/sbin/' + name
        run = '%s "$@" | grep -v -- --random-fully' % real if filter_random_fully and '-' not in name else 'exec %s "$@"' % real
        path = directory / name
        path.write_text('#!/bin/sh\necho "%s $*" >> %s\n%s\n' % (name, log, run))
        path.chmod(0o755)


def test_one_save_and_one_restore_per_family(netns, tmp_path, monkeypatch):
    log = tmp_path / 'calls'
    write_shims(tmp_path, log)
    monkeypatch.setenv('PATH', '%s:%s' % (tmp_path, os.environ['PATH']))
    netns.module('masquerade', intent())
    calls = log.read_text().splitlines()
    assert sorted(call for call in calls if 'MASQUERADE --help' not in call) == [
        'ip6tables-restore --noflush -w 5', 'ip6tables-save -t nat', 'iptables-restore --noflush -w 5', 'iptables-save -t nat']
    log.write_text('')
    netns.module('masquerade', intent())
    assert sorted(call for call in log.read_text().splitlines() if 'MASQUERADE --help' not in call) == [
        'ip6tables-save -t nat', 'iptables-save -t nat']


def test_random_fully_omitted_with_a_warning_where_unsupported(netns, tmp_path, monkeypatch):
    write_shims(tmp_path, tmp_path / 'calls', filter_random_fully=True)
    monkeypatch.setenv('PATH', '%s:%s' % (tmp_path, os.environ['PATH']))
    result = netns.module('masquerade', intent(families=('ipv6',)))
    assert any('ip6tables lacks MASQUERADE --random-fully' in warning for warning in result.get('warnings', []))
    assert ours(netns, 'ipv6') == [line.replace(' --random-fully', '') for line in expected('A', 'ipv6')]


def test_waits_for_the_host_lock(netns):
    """While another writer holds the host lock the module reads and writes nothing."""
    netns_inode = os.stat('/run/netns/' + netns.name).st_ino
    outcome = {}
    with os.fdopen(open_lock(LOCK_PATH), 'r+') as handle:  # as the modules open it: a file we make is one they reuse
        take_lock(handle)
        try:
            run = threading.Thread(target=lambda: outcome.update(netns.module('masquerade', intent())))
            run.start()
            deadline = time.time() + 60
            while not waiting_on_lock(netns_inode):
                assert run.is_alive() and time.time() < deadline, 'module never reached the lock'
                time.sleep(0.05)
            time.sleep(0.5)
            assert ours(netns, 'ipv4') == [] and run.is_alive()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    run.join(timeout=60)
    assert outcome.get('changed') is True
    assert ours(netns, 'ipv4') == expected('A', 'ipv4')


def take_lock(handle, timeout=150):
    """Take the host lock ourselves, failing rather than hanging if another run keeps it."""
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            assert time.time() < deadline, 'another process held %s for %ss' % (LOCK_PATH, timeout)
            time.sleep(0.1)


def waiting_on_lock(netns_inode):
    """Whether a process of that namespace has the lock file open."""
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            if os.stat('/proc/%s/ns/net' % pid).st_ino != netns_inode:
                continue
            if any(os.readlink('/proc/%s/fd/%s' % (pid, fd)) == LOCK_PATH for fd in os.listdir('/proc/%s/fd' % pid)):
                return True
        except OSError:
            continue
    return False


def test_pod_traffic_leaves_with_the_node_address(netns_factory, tmp_path):
    """pod --veth-- node --veth-- outside; outside has no route back to the pods,
    so a pod reaches it only when the node masquerades, and it sees the node's address."""
    pod, node, outside = netns_factory(), netns_factory(), netns_factory()
    node.run('ip link add pod0 type veth peer name eth0 netns %s' % pod.name)
    node.run('ip link add out0 type veth peer name eth0 netns %s' % outside.name)
    node.run('sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1')
    node.run('ip addr add 10.244.1.1/24 dev pod0 && ip addr add fd00:10:244:1::1/64 dev pod0 nodad && ip link set pod0 up')
    node.run('ip addr add 192.0.2.1/24 dev out0 && ip addr add 2001:db8::1/64 dev out0 nodad && ip link set out0 up')
    pod.run('ip addr add 10.244.1.2/24 dev eth0 && ip addr add fd00:10:244:1::2/64 dev eth0 nodad && ip link set eth0 up')
    pod.run('ip route add default via 10.244.1.1 && ip -6 route add default via fd00:10:244:1::1')
    outside.run('ip addr add 192.0.2.2/24 dev eth0 && ip addr add 2001:db8::2/64 dev eth0 nodad && ip link set eth0 up')
    server = tmp_path / 'peer.py'
    server.write_text(textwrap.dedent('''\
        import socket
        servers = []
        for family, address in ((socket.AF_INET, '192.0.2.2'), (socket.AF_INET6, '2001:db8::2')):
            s = socket.socket(family)
            s.bind((address, 8080))
            s.listen()
            servers.append(s)
        print('ready', flush=True)
        while True:
            for s in servers:
                s.settimeout(0.05)
                try:
                    conn, peer = s.accept()
                except socket.timeout:
                    continue
                conn.sendall(peer[0].encode())
                conn.close()
        '''))
    listener = outside.popen('exec python3 %s' % server, stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == 'ready'
        client = 'python3 -c "import socket; print(socket.create_connection((\'%s\', 8080), timeout=1).recv(64).decode())"'
        # Without masquerade the replies have no way back.
        for address in ('192.0.2.2', '2001:db8::2'):
            assert pod.run(client % address, check=False).returncode != 0
        node.module('masquerade', intent())
        assert pod.out(client % '192.0.2.2').strip() == '192.0.2.1'
        assert pod.out(client % '2001:db8::2').strip() == '2001:db8::1'
    finally:
        listener.kill()
        listener.wait()
