"""clusternet.node.masquerade and clusternet.node.fip with backend nftables against a real kernel,
inside network namespaces (and through the roles): both modules converge in both families into
the shared `ip clusternet` / `ip6 clusternet` tables, rerun as no-ops, change nothing in check
mode, keep each other's half, repair tampering, leave kube-proxy's tables and iptables' `ip nat`
byte-identical, flush conntrack on FIP removal, and NAT real traffic. Expectations are nft's own
listings and traffic as the servers saw it."""

import json
import os
import re
import sys

from harness import run_playbook

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_nft as topology  # noqa: E402  (the dual-stack site, kube-proxy's tables)
import test_persist as persist  # noqa: E402  (the state directories and the boot runner)
import test_roles as roles  # noqa: E402  (node_network on the lab's intent)

site = topology.site
dirs = persist.dirs
EXT4, INT4, PLAIN4, OUT4, GW4, VIP4 = topology.EXT4, topology.INT4, topology.PLAIN4, topology.OUT4, topology.GW4, topology.VIP4
EXT6, INT6, PLAIN6, OUT6, GW6, VIP6 = topology.EXT6, topology.INT6, topology.PLAIN6, topology.OUT6, topology.GW6, topology.VIP6
MASQ = {'backend': 'nftables', 'cluster_cidrs': ['10.0.0.0/16', 'fd00:10::/56'], 'pod_cidrs': ['10.0.0.0/24', 'fd00:10::/64']}
FIPS = {'backend': 'nftables', 'floating_ips': [{'external_ip': EXT4, 'internal_ip': INT4}, {'external_ip': EXT6, 'internal_ip': INT6}]}
# What `nft list table` prints of each half (nft 1.0.6 and 1.1), written out here, not taken from the module.
MASQ_LINES = {
    'ip': ['elements = { 10.0.0.0/16 }', 'elements = { 10.0.0.0/24 }', 'type nat hook postrouting priority srcnat + 10; policy accept;',
           'meta mark & 0x00004000 == 0x00004000 return', 'ip saddr @masq-cluster ip daddr != 224.0.0.0/4 masquerade fully-random',
           'ip saddr != @masq-cluster ip daddr @masq-cluster masquerade fully-random'],
    'ip6': ['elements = { fd00:10::/56 }', 'elements = { fd00:10::/64 }', 'ip6 saddr @masq-cluster ip6 daddr != ff00::/8 masquerade fully-random'],
}
FIP_LINES = {
    'ip': ['elements = { %s : %s }' % (EXT4, INT4), 'elements = { %s : %s }' % (INT4, EXT4), 'type nat hook prerouting priority dstnat + 10; policy accept;',
           'type nat hook output priority -90; policy accept;', 'type nat hook postrouting priority srcnat + 5; policy accept;',
           'dnat to ip daddr map @fip-dnat', 'snat to ip saddr map @fip-snat'],
    'ip6': ['elements = { %s : %s }' % (EXT6, INT6), 'elements = { %s : %s }' % (INT6, EXT6), 'dnat to ip6 daddr map @fip-dnat'],
}


def lines(ns, fam):
    return [line.strip() for line in ns.out('nft list table %s clusternet 2>/dev/null || true' % fam).splitlines()]


def holds(ns, fam, expected):
    found = lines(ns, fam)
    return [line for line in expected if line not in found] == []


def flows(ns):
    """The original source port of every conntrack entry, both families."""
    return sorted(re.findall(r'sport=(\d+) dport=\d+ src=', ns.out('conntrack -L -f ipv4 2>/dev/null; conntrack -L -f ipv6 2>/dev/null')))


def ruleset(ns):
    """Everything nft holds, handles included: a rewrite of a table shows as new handles."""
    return ns.out('nft -a list ruleset')


def test_both_modules_converge_share_the_tables_and_rerun_as_no_ops(netns):
    topology.plant_foreign(netns)
    foreign = topology.foreign(netns)
    empty = ruleset(netns)
    for name, args in (('masquerade', MASQ), ('fip', FIPS)):
        check = netns.module(name, args, check=True)
        assert check['changed'] is True and check['ipv4']['applied'] is False
        assert ruleset(netns) == empty, 'check mode writes nothing'
    masq = netns.module('masquerade', MASQ)
    assert masq['changed'] is True and masq['ipv4']['applied'] and masq['ipv6']['applied']
    assert masq['ipv4']['added'] == {'cluster_cidrs': ['10.0.0.0/16'], 'pod_cidrs': ['10.0.0.0/24']}
    fip = netns.module('fip', FIPS)
    assert fip['changed'] is True and fip['ipv6']['added'] == [{'external_ip': EXT6, 'internal_ip': INT6}]
    for fam in ('ip', 'ip6'):
        assert holds(netns, fam, MASQ_LINES[fam] + FIP_LINES[fam]), 'the fip run kept the masquerade: %s' % lines(netns, fam)
    written = ruleset(netns)
    for name, args in (('masquerade', MASQ), ('fip', FIPS)):
        again = netns.module(name, args)
        assert again['changed'] is False and again['ipv4']['payload'] == '' and again['ipv6']['payload'] == ''
        assert netns.module(name, args, check=True)['changed'] is False
    assert ruleset(netns) == written, 'no-op runs rewrite nothing (same handles)'

    gone = netns.module('masquerade', {'backend': 'nftables', 'state': 'absent'})
    assert gone['ipv6']['removed'] == {'cluster_cidrs': ['fd00:10::/56'], 'pod_cidrs': ['fd00:10::/64']}
    for fam in ('ip', 'ip6'):
        assert holds(netns, fam, FIP_LINES[fam]) and 'masq-postrouting' not in ' '.join(lines(netns, fam))
    netns.module('fip', {'backend': 'nftables', 'floating_ips': []})
    assert netns.run('nft list table ip clusternet', check=False).returncode != 0, 'a table left empty is removed'
    assert topology.foreign(netns) == foreign, "kube-proxy's tables and iptables' ip nat are untouched"


def test_tampering_is_repaired_and_diff_names_the_drift(netns):
    netns.module('masquerade', MASQ)
    netns.module('fip', FIPS)
    clean = netns.out('nft list ruleset')
    netns.run('nft insert rule ip clusternet masq-postrouting ip saddr 10.0.0.9 accept'
              ' && nft add rule ip clusternet masq-postrouting ip saddr 10.0.0.8 accept'
              ' && nft add chain ip6 clusternet extra'
              ' && nft add element ip clusternet fip-snat { 10.0.0.99 : 198.51.100.99 }')
    repaired = netns.module('fip', FIPS, diff=True)
    assert repaired['changed'] is True and repaired['ipv4']['added'] == [] and repaired['ipv4']['removed'] == []
    assert '# drift: unexpected chain extra' in repaired['diff']['before']
    assert netns.out('nft list ruleset') == clean, "the fip run repaired the masquerade half, skip mark and fully-random kept"


def test_fip_removal_flushes_conntrack_of_the_mapping_only(netns):
    netns.module('fip', FIPS)
    netns.run('conntrack -I -p tcp -s 203.0.113.2 -d %s --sport 1000 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              ' && conntrack -I -p tcp -s %s -d 203.0.113.2 --sport 1001 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              ' && conntrack -I -p tcp -s 2001:db8:1::2 -d %s --sport 1002 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              ' && conntrack -I -p tcp -s 192.0.2.7 -d 192.0.2.8 --sport 1003 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              % (EXT4, INT4, EXT6))
    absent = {'backend': 'nftables', 'state': 'absent', 'floating_ips': [{'external_ip': EXT4}, {'external_ip': EXT6}]}
    check = netns.module('fip', absent, check=True)
    assert check['ipv4']['conntrack_flushed'] == 2 and check['ipv6']['conntrack_flushed'] == 1
    assert flows(netns) == ['1000', '1001', '1002', '1003'], 'check mode flushes nothing'
    removed = netns.module('fip', absent)
    assert removed['ipv4']['removed'] == [{'external_ip': EXT4, 'internal_ip': INT4}]
    assert removed['ipv4']['conntrack_flushed'] == 2 and removed['ipv6']['conntrack_flushed'] == 1
    assert flows(netns) == ['1003'], 'both directions of both families went, the unrelated entry stays'


def test_fip_remap_flushes_the_old_mapping_only(netns):
    netns.module('fip', FIPS)
    netns.run('conntrack -I -p tcp -s 203.0.113.2 -d %s --sport 1000 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              ' && conntrack -I -p tcp -s %s -d 203.0.113.2 --sport 1001 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              ' && conntrack -I -p tcp -s 2001:db8:1::2 -d %s --sport 1002 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              % (EXT4, INT4, EXT6))
    remap = dict(FIPS, floating_ips=[{'external_ip': EXT4, 'internal_ip': '10.0.0.6'}, FIPS['floating_ips'][1]])
    result = netns.module('fip', remap)
    assert result['ipv4']['changed'] == [{'external_ip': EXT4, 'internal_ip': '10.0.0.6', 'previous_internal_ip': INT4}]
    assert result['ipv4']['conntrack_flushed'] == 2 and result['ipv6']['conntrack_flushed'] == 0
    assert flows(netns) == ['1002'], 'the remapped FIP lost both directions, the IPv6 FIP kept its flow'
    assert holds(netns, 'ip', ['elements = { %s : 10.0.0.6 }' % EXT4, 'elements = { 10.0.0.6 : %s }' % EXT4])


def test_refusals_name_the_value_and_write_nothing(netns):
    failed = netns.module('fip', dict(FIPS, purge_other_backend=True), expect_failure=True)
    assert 'purge_other_backend is not supported with backend nftables' in failed['msg']
    failed = netns.module('masquerade', dict(MASQ, pod_cidrs=['10.9.0.0/24']), expect_failure=True)
    assert 'pod CIDR 10.9.0.0/24 is outside every ipv4 cluster CIDR' in failed['msg']
    assert netns.out('nft list ruleset') == ''


def test_real_traffic_dual_stack_beside_kube_proxy(site):
    outside, gateway, internal, connect = site
    topology.plant_foreign(gateway)
    foreign = topology.foreign(gateway)
    assert connect(internal, OUT4, PLAIN4) is None, 'no NAT yet: the outside has no way back'
    gateway.module('masquerade', MASQ)
    gateway.module('fip', FIPS)
    for out, gw, ext, fip_internal, plain, vip in ((OUT4, GW4, EXT4, INT4, PLAIN4, VIP4), (OUT6, GW6, EXT6, INT6, PLAIN6, VIP6)):
        assert connect(internal, out, plain) == (out, gw), 'a pod without a FIP leaves with the node address (masquerade)'
        assert connect(internal, out, fip_internal) == (out, ext), 'a FIP pod leaves with its FIP, not masqueraded'
        assert connect(outside, ext) == (fip_internal, out), 'outside -> FIP reaches the internal host'
        assert connect(gateway, ext)[0] == fip_internal, 'the gateway itself reaches the FIP (output dnat)'
        assert connect(internal, vip, fip_internal) == (out, gw), "kube-proxy's mark-0x4000 masquerade takes effect first"
    gateway.module('fip', {'backend': 'nftables', 'floating_ips': []})
    assert connect(outside, EXT4) is None and connect(outside, EXT6) is None, 'a removed FIP no longer reaches in'
    assert connect(internal, OUT6, INT6) == (OUT6, GW6), 'its internal host is masqueraded again'
    assert topology.foreign(gateway) == foreign


def test_node_network_role_on_the_nftables_backend(netns):
    """clusternet_nat_backend through node_network and node_apply, on the lab's gw1: its masquerade
    and FIPs in our nft tables, nothing of ours in iptables, a rerun changes nothing, removal empties nft."""
    roles.as_node(netns, 'gw1')
    roles.converge(netns, roles.LAB, 'gw1', clusternet_nat_backend='nftables')
    assert holds(netns, 'ip', ['elements = { 10.42.0.0/16 }', 'elements = { 10.42.3.0/24 }', 'elements = { 198.51.100.10 : 10.42.1.5 }'])
    assert holds(netns, 'ip6', ['elements = { 2001:db8:42::/56 }', 'elements = { 2001:db8:100::10 : 2001:db8:42:1::5 }'])
    assert 'CLUSTERNET' not in netns.out('iptables-save -t nat; ip6tables-save -t nat')
    assert roles.converge(netns, roles.LAB, 'gw1', clusternet_nat_backend='nftables').stats['changed'] == 0
    roles.converge(netns, None, 'gw1', state='absent', clusternet_nat_backend='nftables')
    assert netns.out('nft list ruleset') == ''


def test_the_boot_runner_restores_our_tables(netns, dirs):
    """node_network with persistence on nftables: the calls persisted carry the backend, and the
    standalone runner rebuilds our tables after they are gone, as the converge left them."""
    state_dir, unit_dir = dirs
    persist.as_gw1(netns)
    play = [{'hosts': 'all', 'gather_facts': False, 'roles': ['clusternet.node.node_network'], 'vars': {
        'clusternet_cluster': roles.LAB, 'clusternet_node_name': 'gw1', 'clusternet_vip_link_kind': 'ifb',
        'clusternet_nat_backend': 'nftables', 'persistence_dir': state_dir, 'persistence_unit_dir': unit_dir}}]
    proc = run_playbook(json.dumps(play), netns=netns.name)
    assert json.loads(proc.stdout)['stats']['localhost']['failures'] == 0, proc.stdout[-6000:]
    with open(os.path.join(state_dir, 'state.json')) as handle:
        calls = dict((call['module'], call['args']) for call in json.load(handle)['calls'])
    assert calls['masquerade']['backend'] == 'nftables' and calls['fip']['backend'] == 'nftables'
    converged = netns.out('nft list ruleset')
    assert '198.51.100.10 : 10.42.1.5' in converged and 'masq-postrouting' in converged
    netns.run('nft delete table ip clusternet && nft delete table ip6 clusternet')
    assert netns.out('nft list ruleset') == ''
    proc = persist.restore(netns, state_dir, sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert netns.out('nft list ruleset') == converged
    assert 'CLUSTERNET' not in netns.out('iptables-save -t nat; ip6tables-save -t nat')
