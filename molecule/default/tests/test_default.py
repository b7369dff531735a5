# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify the default scenario: the kernel state each node holds after converging
molecule.yml's intent, written out here by hand, and real traffic through it."""

import hoststate as hs
import pytest

NODES = {  # inventory name: (container, IPv4 node IP, IPv6 node IP)
    'n1': ('cn-mol-def-n1', '192.168.60.11', 'fd00:60::11'),
    'n2': ('cn-mol-def-n2', '192.168.60.12', 'fd00:60::12'),
    'gw': ('cn-mol-def-gw', '192.168.60.13', 'fd00:60::13'),
}
PLATFORMS = {'n1': ('bookworm', 'nf_tables'), 'n2': ('trixie', 'nf_tables'), 'gw': ('trixie', 'legacy')}
OTHER_SAVE = {'nf_tables': 'iptables-legacy-save', 'legacy': 'iptables-nft-save'}
POD_CIDRS = {'n1': ('10.244.1.0/24', 'fd10:244:0:1::/64'), 'n2': ('10.244.2.0/24', 'fd10:244:0:2::/64'), 'gw': ('10.244.3.0/24', 'fd10:244:0:3::/64')}
CLUSTER = {'ipv4': '10.244.0.0/16', 'ipv6': 'fd10:244::/56'}
MULTICAST = {'ipv4': '224.0.0.0/4', 'ipv6': 'ff00::/8'}
VIPS = {'ipv4': ['10.96.0.1', '10.96.0.20', '192.0.2.20'], 'ipv6': ['fd10:96::1', 'fd10:96::20', '2001:db8:2::20']}
PODS = {  # pod container: (node, IPv4, IPv6)
    'cn-mol-def-pod-app-0': ('n1', '10.244.1.10', 'fd10:244:0:1::10'),
    'cn-mol-def-pod-app-1': ('n2', '10.244.2.10', 'fd10:244:0:2::10'),
}
FIPS = {'ipv4': ('203.0.113.10', '10.244.1.10'), 'ipv6': ('2001:db8:203::10', 'fd10:244:0:1::10')}
OUTSIDE = {'ipv4': '192.168.60.100', 'ipv6': 'fd00:60::100'}
FAMILIES = ('ipv4', 'ipv6')
INDEX = {'ipv4': 1, 'ipv6': 2}


def node_ip(node, family):
    return NODES[node][INDEX[family]]


def expected_sets(node):
    """{(set name, type): {family: members}}, the five sets of every node."""
    def both(v4, v6):
        return {'ipv4': set(v4), 'ipv6': set(v6)}
    ports = ('tcp:443',), ('tcp:8080', 'udp:8080'), ('tcp:8080', 'udp:8080')
    return {
        'pod-subnets': ('hash:net', both(*zip(*POD_CIDRS.values()))),
        'node-ips': ('hash:ip', both(*[[node_ip(n, f) for n in NODES] for f in FAMILIES])),
        'svip': ('hash:ip', both(VIPS['ipv4'], VIPS['ipv6'])),
        'svip-prt': ('hash:ip,port', both(*[['%s,%s' % (ip, port) for ip, pp in zip(VIPS[f], ports) for port in pp] for f in FAMILIES])),
        'local-pods': ('hash:ip', both(*[[pod[INDEX[f]] for pod in PODS.values() if pod[0] == node] for f in FAMILIES])),
    }


@pytest.fixture(scope='module', params=sorted(NODES))
def node(request):
    return request.param, hs.box(NODES[request.param][0])


def test_each_node_runs_its_release_and_backend_and_our_rules_are_in_that_backend_only(node):
    name, box = node
    release, backend = PLATFORMS[name]
    assert 'VERSION_CODENAME=%s' % release in box.check_output('cat /etc/os-release')
    for tool in ('iptables', 'ip6tables'):
        assert '(%s)' % backend in box.check_output('%s -V' % tool), (name, tool)
    assert 'CLUSTERNET-POSTRTG' in box.check_output('iptables-save -t nat')
    # The other backend's nat table may not exist at all there: no rules of ours either way.
    assert 'CLUSTERNET' not in box.run('%s -t nat' % OTHER_SAVE[backend]).stdout, name


def test_each_family_set_holds_exactly_its_family(node):
    name, box = node
    sets = hs.ipsets(box)
    for suffix, (set_type, members) in expected_sets(name).items():
        for family, set_name in (('ipv4', 'cn-' + suffix), ('ipv6', 'inet6:cn-' + suffix)):
            assert set_name in sets, '%s: set %s missing' % (name, set_name)
            got = sets[set_name]
            assert (got['type'], got['family']) == (set_type, family), set_name
            assert got['members'] == members[family], '%s %s' % (name, set_name)


def test_vips_have_one_local_route_sourced_from_the_node_ip(node):
    name, box = node
    assert sorted(hs.addresses(box, 'kube-dummy-if')) == sorted(VIPS['ipv4'] + VIPS['ipv6'])
    for family in FAMILIES:
        for vip in VIPS[family]:
            routes = [(r.get('type'), r.get('table'), r.get('protocol'), r.get('prefsrc')) for r in hs.routes_to(box, vip)]
            assert routes == [('local', 'local', 'kernel', node_ip(name, family))], '%s %s' % (name, vip)


@pytest.mark.parametrize('family', FAMILIES)
def test_masquerade_rules_in_flannel_order_with_one_jump(node, family):
    name, box = node
    chains = hs.nat(box, family)
    cluster, pod = CLUSTER[family], POD_CIDRS[name][INDEX[family] - 1]
    assert [hs.without_comments(rule) for rule in chains['CLUSTERNET-POSTRTG']] == [
        '-m mark --mark 0x4000/0x4000 -j RETURN',
        '-s %s -d %s -j RETURN' % (pod, cluster),
        '-s %s -d %s -j RETURN' % (cluster, pod),
        '! -s %s -d %s -j RETURN' % (cluster, pod),
        '-s %s ! -d %s -j MASQUERADE --random-fully' % (cluster, MULTICAST[family]),
        '! -s %s -d %s -j MASQUERADE --random-fully' % (cluster, cluster),
    ]
    assert len(hs.jumps(chains, 'POSTROUTING', 'CLUSTERNET-POSTRTG')) == 1


@pytest.mark.parametrize('family', FAMILIES)
def test_fip_rules_on_the_gateway_only(node, family):
    name, box = node
    chains = hs.nat(box, family)
    if name != 'gw':
        assert not [chain for chain in chains if chain.startswith('CLUSTERNET-FIP')], name
        return
    external, internal = FIPS[family]
    bits = 32 if family == 'ipv4' else 128
    assert [hs.without_comments(r) for r in chains['CLUSTERNET-FIP-DNAT']] == ['-d %s/%d -j DNAT --to-destination %s' % (external, bits, internal)]
    assert [hs.without_comments(r) for r in chains['CLUSTERNET-FIP-SNAT']] == ['-s %s/%d -j SNAT --to-source %s' % (internal, bits, external)]
    for parent, chain in (('PREROUTING', 'DNAT'), ('OUTPUT', 'DNAT'), ('POSTROUTING', 'SNAT')):
        assert len(hs.jumps(chains, parent, 'CLUSTERNET-FIP-' + chain)) == 1, parent


def test_node_reaches_its_own_ipv6_vip_from_its_node_ip(node):
    name, box = node
    answer = hs.ask(box, 'fd10:96::20')
    assert answer.get('host') == NODES[name][0], answer
    assert answer['peer'] == answer['source'] == node_ip(name, 'ipv6')


@pytest.mark.parametrize('family', FAMILIES)
def test_outside_reaches_the_pod_behind_a_fip(family):
    external, internal = FIPS[family]
    answer = hs.ask(hs.box('cn-mol-def-outside'), external)
    assert (answer.get('host'), answer.get('local')) == ('cn-mol-def-pod-app-0', internal), answer


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('pod', sorted(PODS))
def test_pod_traffic_leaves_masqueraded_as_its_node(pod, family):
    node, pod_ip = PODS[pod][0], PODS[pod][INDEX[family]]
    answer = hs.ask(hs.box(pod), OUTSIDE[family])
    assert answer.get('source') == pod_ip, answer
    assert answer.get('peer') == node_ip(node, family), answer
