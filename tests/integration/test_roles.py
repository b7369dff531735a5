"""clusternet.node.node_network against a real kernel: the lab's intent applied in a
namespace that plays one node (its node IPs on lo, kube-dummy-if as ifb), then the
kernel read back: sets per family, VIP routes, the masquerade chain, FIP rules; an
intent change converges; removal leaves foreign state alone; reruns change nothing."""

import collections
import copy
import json
import os

import pytest
import yaml
from harness import REPO, run_playbook

with open(os.path.join(REPO, 'inventories', 'lab', 'group_vars', 'all', 'cluster.yml')) as handle:
    LAB = yaml.safe_load(handle)['clusternet_cluster']

NODE_IPS = {'node1': ('192.168.50.11', 'fd00:50::11'), 'gw1': ('192.168.50.13', 'fd00:50::13')}
SETS = ('cn-pod-subnets', 'cn-node-ips', 'cn-svip', 'cn-svip-prt', 'cn-local-pods')
POD_SUBNETS = ({'10.42.1.0/24', '10.42.2.0/24', '10.42.3.0/24'}, {'2001:db8:42:1::/64', '2001:db8:42:2::/64', '2001:db8:42:3::/64'})
ALL_NODE_IPS = ({'192.168.50.11', '192.168.50.12', '192.168.50.13'}, {'fd00:50::11', 'fd00:50::12', 'fd00:50::13'})
WEB_IPS = ({'10.43.0.10', '192.0.2.80'}, {'2001:db8:43::10'})
DNS_IPS = ({'10.43.0.53'}, {'2001:db8:43::53'})
WEB_PRT = ({'10.43.0.10,tcp:80', '192.0.2.80,tcp:80'}, {'2001:db8:43::10,tcp:80'})
DNS_PRT = ({'10.43.0.53,tcp:53', '10.43.0.53,udp:53'}, {'2001:db8:43::53,tcp:53', '2001:db8:43::53,udp:53'})
MASQ = '-m comment --comment "clusternet masq"'
FIP_JUMPS = ['-A %s -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-%s' % pair for pair in (
    ('PREROUTING', 'DNAT'), ('OUTPUT', 'DNAT'), ('POSTROUTING', 'SNAT'))] * 2
FOREIGN_RULE = '-s 10.99.0.0/16 -j MASQUERADE'
FOREIGN_RULE6 = '-s fd99::/64 -j MASQUERADE'
Run = collections.namedtuple('Run', 'stats failed')


def join(*pairs):
    """Union of (ipv4, ipv6) pairs of sets."""
    return tuple(set().union(*(pair[i] for pair in pairs)) for i in (0, 1))


def as_node(ns, name):
    """Make ns look like node `name`: its node IPs on lo."""
    ip4, ip6 = NODE_IPS[name]
    ns.run('ip addr add %s/32 dev lo && ip -6 addr add %s/128 dev lo nodad' % (ip4, ip6))


def converge(ns, cluster, node, state='present', expect_failure=False, check=False, **extra_vars):
    """Run node_network for `node` inside ns; return the play's stats for the host."""
    play = [{
        'hosts': 'all', 'gather_facts': False,
        'vars': dict({'clusternet_cluster': cluster, 'clusternet_node_name': node,
                      'clusternet_state': state, 'clusternet_vip_link_kind': 'ifb',
                      'clusternet_persist': False}, **extra_vars),  # the namespace shares the host's files
        'roles': ['clusternet.node.node_network'],
    }]
    return run(ns, json.dumps(play), 'localhost', expect_failure=expect_failure, extra_args=['--check'] if check else [])


def run_lab_playbook(ns, name, node, python=None):
    """Run playbooks/NAME.yml as shipped, with the lab inventory limited to node, locally in ns."""
    with open(os.path.join(REPO, 'playbooks', name + '.yml')) as handle:
        text = handle.read()
    return run(ns, text, node, python=python,
               extra_args=['-i', os.path.join(REPO, 'inventories', 'lab'), '--limit', node, '-e', 'ansible_connection=local',
                           '-e', 'clusternet_persist=false'])


def run(ns, text, host, expect_failure=False, extra_args=(), python=None):
    """Run a playbook in ns; return host's recap stats and the failed results."""
    proc = run_playbook(text, netns=ns.name, extra_args=extra_args, python=python)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError('ansible-playbook gave no report (rc %d):\n%s\n%s' % (proc.returncode, proc.stdout, proc.stderr)) from None
    stats = report['stats'][host]
    failed = [result for play in report['plays'] for task in play['tasks'] for result in task['hosts'].values() if result.get('failed')]
    assert bool(stats['failures']) == expect_failure, json.dumps(failed or stats, indent=1)[:6000]
    return Run(stats, failed)


def ipsets(ns):
    """{set name: set of entries} as `ipset save` prints them, every set in ns."""
    out = {}
    for line in ns.out('ipset save').splitlines():
        words = line.split()
        if words[0] == 'create':
            out[words[1]] = set()
        elif words[0] == 'add':
            out[words[1]].add(words[2])
    return out


def assert_set(sets, name, pair):
    assert sets[name] == pair[0], name
    assert sets['inet6:' + name] == pair[1], 'inet6:' + name


def nat(ns, family):
    """The nat table's rules as iptables-save prints them."""
    tool = 'iptables-save' if family == 4 else 'ip6tables-save'
    return [line for line in ns.out('%s -t nat' % tool).splitlines() if line.startswith('-A ')]


def routes_to(ns, address):
    """Every route to address/32 or /128, in any table, as `ip -j route` objects."""
    family = '-6' if ':' in address else '-4'
    return [route for route in json.loads(ns.out('ip -j %s route show table all' % family)) if route['dst'] == address]


def vip_addresses(ns):
    """The addresses on kube-dummy-if but its IPv6 link-local one, or None without the link."""
    if ns.run('ip link show kube-dummy-if', check=False).returncode:
        return None
    info = json.loads(ns.out('ip -j addr show dev kube-dummy-if'))[0]
    return {entry['local'] for entry in info['addr_info'] if entry['scope'] != 'link'}


def masq_chain(cluster4, cluster6, pod4, pod6):
    """Flannel's rule set (FIELD_NOTES section 2) for this node, per family."""
    def rules(cluster, pod, multicast):
        return [
            '-A CLUSTERNET-POSTRTG -m comment --comment "clusternet.node masquerade chain"',  # the mark: the chain is ours
            '-A CLUSTERNET-POSTRTG -m mark --mark 0x4000/0x4000 %s -j RETURN' % MASQ,
            '-A CLUSTERNET-POSTRTG -s %s -d %s %s -j RETURN' % (pod, cluster, MASQ),
            '-A CLUSTERNET-POSTRTG -s %s -d %s %s -j RETURN' % (cluster, pod, MASQ),
            '-A CLUSTERNET-POSTRTG ! -s %s -d %s %s -j RETURN' % (cluster, pod, MASQ),
            '-A CLUSTERNET-POSTRTG -s %s ! -d %s %s -j MASQUERADE --random-fully' % (cluster, multicast, MASQ),
            '-A CLUSTERNET-POSTRTG ! -s %s -d %s %s -j MASQUERADE --random-fully' % (cluster, cluster, MASQ),
        ]
    return rules(cluster4, pod4, '224.0.0.0/4'), rules(cluster6, pod6, 'ff00::/8')


def assert_vips(ns, node, vips):
    """Exactly vips on kube-dummy-if, each with one route: local, table local, src the node IP."""
    assert vip_addresses(ns) == set(vips)
    for vip in vips:
        routes = routes_to(ns, vip)
        assert len(routes) == 1, (vip, routes)
        route = routes[0]
        assert (route['type'], route['table'], route['dev'], route['prefsrc']) == (
            'local', 'local', 'kube-dummy-if', NODE_IPS[node][1 if ':' in vip else 0]), route


def fip_rules(ns):
    """The rules in the FIP chains (but their mark), then the jumps to them, both families."""
    rules = [rule for family in (4, 6) for rule in nat(ns, family)]
    return ([rule for rule in rules if rule.startswith('-A CLUSTERNET-FIP-') and ' -j ' in rule],
            [rule for rule in rules if rule.endswith(' -j CLUSTERNET-FIP-DNAT') or rule.endswith(' -j CLUSTERNET-FIP-SNAT')])


def test_worker_node_converges_and_follows_intent_changes(netns):
    as_node(netns, 'node1')
    stats = converge(netns, LAB, 'node1').stats
    assert stats['changed'] > 0

    sets = ipsets(netns)
    assert sorted(sets) == sorted(SETS + tuple('inet6:' + name for name in SETS))
    assert_set(sets, 'cn-pod-subnets', POD_SUBNETS)
    assert_set(sets, 'cn-node-ips', ALL_NODE_IPS)
    assert_set(sets, 'cn-svip', join(WEB_IPS, DNS_IPS))
    assert_set(sets, 'cn-svip-prt', join(WEB_PRT, DNS_PRT))
    assert_set(sets, 'cn-local-pods', ({'10.42.1.5'}, {'2001:db8:42:1::5'}))
    assert_vips(netns, 'node1', ['10.43.0.10', '2001:db8:43::10', '192.0.2.80', '10.43.0.53', '2001:db8:43::53'])
    want4, want6 = masq_chain('10.42.0.0/16', '2001:db8:42::/56', '10.42.1.0/24', '2001:db8:42:1::/64')
    assert [rule for rule in nat(netns, 4) if 'CLUSTERNET-POSTRTG ' in rule + ' '] == [
        '-A POSTROUTING %s -j CLUSTERNET-POSTRTG' % MASQ] + want4
    assert [rule for rule in nat(netns, 6) if 'CLUSTERNET-POSTRTG ' in rule + ' '] == [
        '-A POSTROUTING %s -j CLUSTERNET-POSTRTG' % MASQ] + want6
    assert fip_rules(netns) == ([], [])  # gw1 is the gateway of every FIP

    stats = converge(netns, LAB, 'node1').stats
    assert stats['changed'] == 0

    # web-0 recreated with new IPs in both families, dns removed, the FIPs moved here,
    # IPv6 no longer masqueraded.
    changed = copy.deepcopy(LAB)
    changed['pods'][0]['ips'] = ['10.42.1.6', '2001:db8:42:1::6']
    changed['services'] = [service for service in changed['services'] if service['name'] != 'dns']
    changed['floating_ips'] = [dict(fip, internal_ip=fip['internal_ip'].replace('::5', '::6').replace('.5', '.6'), gateway='node1')
                               for fip in changed['floating_ips']]
    converge(netns, changed, 'node1', clusternet_masquerade_families=['ipv4'])
    sets = ipsets(netns)
    assert_set(sets, 'cn-local-pods', ({'10.42.1.6'}, {'2001:db8:42:1::6'}))
    assert_set(sets, 'cn-svip', WEB_IPS)
    assert_set(sets, 'cn-svip-prt', WEB_PRT)
    assert_vips(netns, 'node1', ['10.43.0.10', '2001:db8:43::10', '192.0.2.80'])
    assert routes_to(netns, '10.43.0.53') == [] and routes_to(netns, '2001:db8:43::53') == []
    assert sorted(rule for rule in fip_rules(netns)[0] if 'DNAT' in rule) == sorted([
        '-A CLUSTERNET-FIP-DNAT -d 198.51.100.10/32 -m comment --comment "clusternet fip 198.51.100.10" -j DNAT --to-destination 10.42.1.6',
        '-A CLUSTERNET-FIP-DNAT -d 2001:db8:100::10/128 -m comment --comment "clusternet fip 2001:db8:100::10" -j DNAT --to-destination 2001:db8:42:1::6',
    ])
    assert [rule for rule in nat(netns, 4) if rule.startswith('-A CLUSTERNET-POSTRTG ')] == want4
    assert [rule for rule in nat(netns, 6) if 'CLUSTERNET-POSTRTG' in rule] == []
    stats = converge(netns, changed, 'node1', clusternet_masquerade_families=['ipv4']).stats
    assert stats['changed'] == 0


def test_fip_moved_to_another_gateway_leaves_the_old_one_clean(netns):
    as_node(netns, 'gw1')
    converge(netns, LAB, 'gw1')
    rules, jumps = fip_rules(netns)
    assert sorted(jumps) == sorted(FIP_JUMPS)
    assert sorted(rules) == sorted([
        '-A CLUSTERNET-FIP-DNAT -d 198.51.100.10/32 -m comment --comment "clusternet fip 198.51.100.10" -j DNAT --to-destination 10.42.1.5',
        '-A CLUSTERNET-FIP-SNAT -s 10.42.1.5/32 -m comment --comment "clusternet fip 198.51.100.10" -j SNAT --to-source 198.51.100.10',
        '-A CLUSTERNET-FIP-DNAT -d 2001:db8:100::10/128 -m comment --comment "clusternet fip 2001:db8:100::10" -j DNAT --to-destination 2001:db8:42:1::5',
        '-A CLUSTERNET-FIP-SNAT -s 2001:db8:42:1::5/128 -m comment --comment "clusternet fip 2001:db8:100::10" -j SNAT --to-source 2001:db8:100::10',
    ])
    assert_set(ipsets(netns), 'cn-local-pods', (set(), set()))  # no pods on gw1

    moved = copy.deepcopy(LAB)
    for fip in moved['floating_ips']:
        fip['gateway'] = 'node1'
    stats = converge(netns, moved, 'gw1').stats
    assert stats['changed'] > 0
    for family in (4, 6):
        rules = nat(netns, family)
        assert [rule for rule in rules if 'FIP' in rule or '198.51.100.10' in rule or '2001:db8:100::10' in rule] == []
        assert [rule for rule in rules if 'CLUSTERNET-POSTRTG' in rule]  # the rest of the node stays


def test_teardown_removes_only_what_the_collection_manages(netns, python):
    """playbooks/site.yml and teardown.yml as shipped, on the lab inventory's gw1, with each end
    of the supported pyroute2 range on the node (the lab's nodes have Debian's 0.7)."""
    as_node(netns, 'gw1')
    netns.run('ipset create foreign hash:ip && ipset add foreign 10.43.0.10 && ipset create inet6:foreign hash:ip family inet6')
    netns.run("iptables -t nat -A POSTROUTING %s && ip6tables -t nat -A POSTROUTING %s" % (FOREIGN_RULE, FOREIGN_RULE6))
    run_lab_playbook(netns, 'site', 'gw1', python)
    assert fip_rules(netns)[0] and vip_addresses(netns)
    assert json.loads(netns.out('ip -j -d link show kube-dummy-if'))[0]['linkinfo']['info_kind'] == 'ifb'  # the lab's group_vars

    stats = run_lab_playbook(netns, 'teardown', 'gw1', python).stats
    assert stats['changed'] > 0
    assert ipsets(netns) == {'foreign': {'10.43.0.10'}, 'inet6:foreign': set()}
    assert nat(netns, 4) == ['-A POSTROUTING ' + FOREIGN_RULE]
    assert nat(netns, 6) == ['-A POSTROUTING ' + FOREIGN_RULE6]
    assert ':CLUSTERNET' not in netns.out('iptables-save -t nat; ip6tables-save -t nat')
    assert vip_addresses(netns) is None
    for vip in ('10.43.0.10', '2001:db8:43::10', '192.0.2.80'):
        assert routes_to(netns, vip) == []
    stats = converge(netns, None, 'gw1', state='absent').stats  # no intent needed
    assert stats['changed'] == 0


@pytest.mark.parametrize('cluster, message', [
    (dict(LAB, pods=[dict(LAB['pods'][0], node='node9')]), 'pod default/web-0 is on node node9, which is not in nodes'),
    ({key: value for key, value in LAB.items() if key != 'cluster_cidrs'}, 'clusternet_cluster is missing cluster_cidrs'),
])
def test_bad_intent_fails_before_the_kernel_is_touched(netns, cluster, message):
    failed = converge(netns, cluster, 'node1', expect_failure=True).failed
    assert message in failed[0]['msg']
    assert ipsets(netns) == {}
    assert nat(netns, 4) == [] and nat(netns, 6) == []
    assert vip_addresses(netns) is None


def test_check_mode_reports_changes_and_touches_nothing(netns):
    as_node(netns, 'gw1')
    assert converge(netns, LAB, 'gw1', check=True).stats['changed'] > 0
    assert ipsets(netns) == {}
    assert nat(netns, 4) == [] and nat(netns, 6) == []
    assert vip_addresses(netns) is None


# --- a node refused whole, before its first write (node_apply checks every call first) ---

def kernel_dump(ns):
    dump = ns.out('ipset save; iptables-save -t nat; ip6tables-save -t nat; ip -d addr; ip -4 route show table all; '
                  'ip -6 route show table all')
    return [line for line in dump.splitlines() if not line.startswith('#')]


def test_a_service_external_ip_held_on_another_interface_refuses_the_node_before_any_write(netns):
    """The filter cannot know the node holds 192.0.2.80 (web's external IP): it passes, and
    vip refuses it. Before, the five sets were created first (failed, changed=true)."""
    as_node(netns, 'node1')
    netns.run('ip link add eth1 type ifb && ip link set eth1 up && ip addr add 192.0.2.80/24 dev eth1')
    before = kernel_dump(netns)
    run = converge(netns, LAB, 'node1', expect_failure=True)
    assert 'VIP 192.0.2.80 is already an address of eth1 on this host' in run.failed[0]['msg']
    assert 'changed before it: nothing (checked before any write)' in run.failed[0]['msg']
    assert run.failed[0]['changed'] is False  # ansible's stats count no change of a failed task
    assert ipsets(netns) == {} and vip_addresses(netns) is None
    assert nat(netns, 4) == [] and nat(netns, 6) == []
    assert kernel_dump(netns) == before


def test_a_converged_node_refused_on_an_intent_change_keeps_its_state(netns):
    """The change would add 192.0.2.81 to cn-svip and cn-svip-prt, but the node holds it on
    eth1: the sets keep their entries, as everything else does."""
    as_node(netns, 'node1')
    converge(netns, LAB, 'node1')
    netns.run('ip link add eth1 type ifb && ip link set eth1 up && ip addr add 192.0.2.81/24 dev eth1')
    services = [dict(LAB['services'][0], external_ips=['192.0.2.80', '192.0.2.81'])] + LAB['services'][1:]
    before = kernel_dump(netns)
    run = converge(netns, dict(LAB, services=services), 'node1', expect_failure=True)
    assert 'VIP 192.0.2.81 is already an address of eth1 on this host' in run.failed[0]['msg']
    assert run.failed[0]['changed'] is False  # ansible's stats count no change of a failed task
    assert kernel_dump(netns) == before
