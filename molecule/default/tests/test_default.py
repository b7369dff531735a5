# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify the default scenario: the kernel state each node holds after converging
molecule.yml's intent, written out here by hand, and real traffic through it. n3's
masquerade and FIP are read from its nftables tables, the other nodes' from iptables."""

import hoststate as hs
import pytest

NODES = {  # inventory name: (container, IPv4 node IP, IPv6 node IP)
    'n1': ('cn-mol-def-n1', '192.168.60.11', 'fd00:60::11'),
    'n2': ('cn-mol-def-n2', '192.168.60.12', 'fd00:60::12'),
    'gw': ('cn-mol-def-gw', '192.168.60.13', 'fd00:60::13'),
    'n3': ('cn-mol-def-n3', '192.168.60.14', 'fd00:60::14'),
}
PLATFORMS = {'n1': ('bookworm', 'nf_tables'), 'n2': ('trixie', 'nf_tables'), 'gw': ('trixie', 'legacy'), 'n3': ('bookworm', 'nf_tables')}
NFT_NODES = ('n3',)  # clusternet_nat_backend: nftables; the others keep the default, iptables
OTHER_SAVE = {'nf_tables': 'iptables-legacy-save', 'legacy': 'iptables-nft-save'}
POD_CIDRS = {'n1': ('10.244.1.0/24', 'fd10:244:0:1::/64'), 'n2': ('10.244.2.0/24', 'fd10:244:0:2::/64'),
             'gw': ('10.244.3.0/24', 'fd10:244:0:3::/64'), 'n3': ('10.244.4.0/24', 'fd10:244:0:4::/64')}
CLUSTER = {'ipv4': '10.244.0.0/16', 'ipv6': 'fd10:244::/56'}
MULTICAST = {'ipv4': '224.0.0.0/4', 'ipv6': 'ff00::/8'}
VIPS = {'ipv4': ['10.96.0.1', '10.96.0.20', '192.0.2.20'], 'ipv6': ['fd10:96::1', 'fd10:96::20', '2001:db8:2::20']}
PODS = {  # pod container: (node, IPv4, IPv6)
    'cn-mol-def-pod-app-0': ('n1', '10.244.1.10', 'fd10:244:0:1::10'),
    'cn-mol-def-pod-app-1': ('n2', '10.244.2.10', 'fd10:244:0:2::10'),
    'cn-mol-def-pod-app-2': ('n3', '10.244.4.10', 'fd10:244:0:4::10'),
}
FIPS = {  # gateway: {family: (external IP, internal IP, the pod behind it)}
    'gw': {'ipv4': ('203.0.113.10', '10.244.1.10', 'cn-mol-def-pod-app-0'), 'ipv6': ('2001:db8:203::10', 'fd10:244:0:1::10', 'cn-mol-def-pod-app-0')},
    'n3': {'ipv4': ('203.0.113.11', '10.244.2.10', 'cn-mol-def-pod-app-1'), 'ipv6': ('2001:db8:203::11', 'fd10:244:0:2::10', 'cn-mol-def-pod-app-1')},
}
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
    # The other backend's nat table may not exist at all there: no rules of ours either way.
    assert 'CLUSTERNET' not in box.run('%s -t nat' % OTHER_SAVE[backend]).stdout, name
    ours = [hs.nft(box, family) is not None for family in FAMILIES]
    if name in NFT_NODES:
        assert ours == [True, True], name
        assert 'CLUSTERNET' not in box.check_output('iptables-save -t nat; ip6tables-save -t nat'), name
    else:
        assert ours == [False, False], name
        assert 'CLUSTERNET-POSTRTG' in box.check_output('iptables-save -t nat')


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
    cluster, pod = CLUSTER[family], POD_CIDRS[name][INDEX[family] - 1]
    if name in NFT_NODES:
        table, ip = hs.nft(box, family), 'ip' if family == 'ipv4' else 'ip6'
        assert (table['sets']['masq-cluster'], table['sets']['masq-pod']) == ({cluster}, {pod})
        chain = table['chains']['masq-postrouting']
        assert (chain['hook'], chain['priority']) == ('postrouting', 110)
        assert chain['rules'] == [rule.replace('ip ', ip + ' ') for rule in (
            'meta mark & 0x00004000 == 0x00004000 return',
            'ip saddr @masq-pod ip daddr @masq-cluster return',
            'ip saddr @masq-cluster ip daddr @masq-pod return',
            'ip saddr != @masq-cluster ip daddr @masq-pod return',
            'ip saddr @masq-cluster ip daddr != %s masquerade fully-random' % MULTICAST[family],
            'ip saddr != @masq-cluster ip daddr @masq-cluster masquerade fully-random',
        )]
        return
    chains = hs.nat(box, family)
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
    if name in NFT_NODES:
        table, ip = hs.nft(box, family), 'ip' if family == 'ipv4' else 'ip6'
        external, internal, _pod = FIPS[name][family]
        assert (table['sets']['fip-dnat'], table['sets']['fip-snat']) == ({'%s : %s' % (external, internal)}, {'%s : %s' % (internal, external)})
        assert dict((chain, (table['chains'][chain]['hook'], table['chains'][chain]['priority'], table['chains'][chain]['rules']))
                    for chain in ('fip-prerouting', 'fip-output', 'fip-postrouting')) == {
            'fip-prerouting': ('prerouting', -90, ['dnat to %s daddr map @fip-dnat' % ip]),
            'fip-output': ('output', -90, ['dnat to %s daddr map @fip-dnat' % ip]),
            'fip-postrouting': ('postrouting', 105, ['snat to %s saddr map @fip-snat' % ip]),
        }
        return
    chains = hs.nat(box, family)
    if name not in FIPS:
        assert not [chain for chain in chains if chain.startswith('CLUSTERNET-FIP')], name
        return
    external, internal, _pod = FIPS[name][family]
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
@pytest.mark.parametrize('gateway', sorted(FIPS))
def test_outside_reaches_the_pod_behind_a_fip(gateway, family):
    external, internal, pod = FIPS[gateway][family]
    answer = hs.ask(hs.box('cn-mol-def-outside'), external)
    assert (answer.get('host'), answer.get('local')) == (pod, internal), answer


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('pod', sorted(PODS))
def test_pod_traffic_leaves_masqueraded_as_its_node(pod, family):
    node, pod_ip = PODS[pod][0], PODS[pod][INDEX[family]]
    answer = hs.ask(hs.box(pod), OUTSIDE[family])
    assert answer.get('source') == pod_ip, answer
    assert answer.get('peer') == node_ip(node, family), answer
