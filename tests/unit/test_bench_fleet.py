"""The fleet benchmark's pure parts: the generated intent, the expected node state it is
checked against, the comparison, the recap parser and the table."""

import copy
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'bench'))

import bench_fleet as bf  # noqa: E402
from ansible_collections.clusternet.node.plugins.filter.node_state import node_state  # noqa: E402


def test_intent_of_three_nodes_exactly():
    cluster = bf.intent(3)
    assert cluster['cluster_cidrs'] == ['10.0.0.0/10', '2001:db8:42::/48']
    assert cluster['service_cidrs'] == ['10.96.0.0/12', '2001:db8:43::/112']
    assert cluster['nodes'] == {
        'n00000': {'node_ips': ['10.128.0.1', 'fd00:50::1'], 'pod_cidrs': ['10.0.0.0/24', '2001:db8:42::/64']},
        'n00001': {'node_ips': ['10.128.0.2', 'fd00:50::2'], 'pod_cidrs': ['10.0.1.0/24', '2001:db8:42:1::/64']},
        'n00002': {'node_ips': ['10.128.0.3', 'fd00:50::3'], 'pod_cidrs': ['10.0.2.0/24', '2001:db8:42:2::/64']},
    }
    assert cluster['services'][2] == {'name': 's00002', 'namespace': 'bench', 'cluster_ips': ['10.96.0.3', '2001:db8:43::3'],
                                      'ports': [{'protocol': 'tcp', 'port': 80}, {'protocol': 'tcp', 'port': 443}]}
    assert len(cluster['services']) == 3 and len(cluster['pods']) == 30
    assert cluster['pods'][19] == {'name': 'p00001-9', 'namespace': 'bench', 'node': 'n00001', 'ips': ['10.0.1.11', '2001:db8:42:1::b']}
    assert [(fip['external_ip'], fip['internal_ip'], fip['gateway']) for fip in cluster['floating_ips']] == [
        ('198.51.100.10', '10.0.0.2', 'n00000'), ('2001:db8:100::a', '2001:db8:42::2', 'n00000'),
        ('198.51.100.11', '10.0.1.2', 'n00001'), ('2001:db8:100::b', '2001:db8:42:1::2', 'n00001'),
        ('198.51.100.12', '10.0.2.2', 'n00002'), ('2001:db8:100::c', '2001:db8:42:2::2', 'n00002'),
    ]


@pytest.mark.parametrize('nodes', [0, bf.MAX_NODES + 1])
def test_intent_refuses_sizes_the_address_plan_cannot_hold(nodes):
    with pytest.raises(ValueError, match='nodes must be 1 to 16384, got %d' % nodes):
        bf.intent(nodes)


def test_intent_yaml_reads_back_as_the_intent():
    cluster = bf.intent(7, services=9)
    assert yaml.safe_load(bf.intent_yaml(cluster)) == {'clusternet_cluster': cluster}
    assert bf.intent_yaml(cluster).splitlines()[4] == '    "n00000": {node_ips: ["10.128.0.1", "fd00:50::1"], pod_cidrs: ["10.0.0.0/24", "2001:db8:42::/64"]}'
    empty = dict(cluster, services=[], floating_ips=[])
    assert yaml.safe_load(bf.intent_yaml(empty)) == {'clusternet_cluster': empty}


def test_expected_state_agrees_with_the_node_state_filter():
    """Two independent computations of one node's share (the plan here, the filter in the
    collection) must agree, or the benchmark's kernel check would be checking the wrong thing."""
    for node in (0, 4, 11):
        want = bf.expected_state(12, node)
        args = node_state(bf.intent(12), bf.node_name(node))
        for item in args['ipset']:
            entries = set(item['entries'])
            assert {e for e in entries if ':' not in e.split(',')[0]} == want['sets'][item['name']]
            assert {e for e in entries if ':' in e.split(',')[0]} == want['sets']['inet6:' + item['name']]
        assert set(args['vip']['addresses']) == set(want['vips'])
        assert args['vip']['node_ips'] == list(bf.node_ips(node))
        assert sorted(args['fip']['floating_ips'], key=str) == sorted(
            [{'external_ip': e, 'internal_ip': i} for g, e, i in bf.fips(12) if g == node], key=str)
        assert args['masquerade'] == {'cluster_cidrs': ['10.0.0.0/10', '2001:db8:42::/48'], 'pod_cidrs': list(bf.pod_cidrs(node))}
        vip, sets = bf.node_module_args(12, node)
        assert vip['addresses'] == args['vip']['addresses']
        assert [(s['name'], s['set_type'], sorted(s['entries'])) for s in sets] == [
            (s['name'], s['set_type'], sorted(s['entries'])) for s in args['ipset']]


def test_expected_state_size_at_three_thousand_nodes():
    want = bf.expected_state(3000, 2999)
    assert len(want['vips']) == 6000
    assert sum(len(entries) for entries in want['sets'].values()) == 30020
    assert want['sets']['cn-local-pods'] == {'10.11.183.%d' % (j + 2) for j in range(10)}
    assert want['sets']['inet6:cn-svip-prt'] >= {'2001:db8:43::bb8,tcp:443', '2001:db8:43::1,tcp:80'}
    assert want['vips']['2001:db8:43::bb8'] == 'fd00:50::bb8' and want['vips']['10.96.11.184'] == '10.128.11.184'
    assert want['fip'] == []


def test_expected_fip_and_masquerade_rules_of_a_gateway():
    want = bf.expected_state(5, 1)
    assert want['fip'] == sorted([
        '-A CLUSTERNET-FIP-DNAT -d 198.51.100.11/32 -m comment --comment "clusternet fip 198.51.100.11" -j DNAT --to-destination 10.0.1.2',
        '-A CLUSTERNET-FIP-SNAT -s 10.0.1.2/32 -m comment --comment "clusternet fip 198.51.100.11" -j SNAT --to-source 198.51.100.11',
        '-A CLUSTERNET-FIP-DNAT -d 2001:db8:100::b/128 -m comment --comment "clusternet fip 2001:db8:100::b" -j DNAT --to-destination 2001:db8:42:1::2',
        '-A CLUSTERNET-FIP-SNAT -s 2001:db8:42:1::2/128 -m comment --comment "clusternet fip 2001:db8:100::b" -j SNAT --to-source 2001:db8:100::b',
    ] + ['-A PREROUTING -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-DNAT',
         '-A OUTPUT -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-DNAT',
         '-A POSTROUTING -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-SNAT',
         '-A CLUSTERNET-FIP-DNAT -m comment --comment "clusternet.node fip chain"',
         '-A CLUSTERNET-FIP-SNAT -m comment --comment "clusternet.node fip chain"'] * 2)
    assert want['masq'][1] == [
        '-A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG',
        '-A CLUSTERNET-POSTRTG -m comment --comment "clusternet.node masquerade chain"',
        '-A CLUSTERNET-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "clusternet masq" -j RETURN',
        '-A CLUSTERNET-POSTRTG -s 2001:db8:42:1::/64 -d 2001:db8:42::/48 -m comment --comment "clusternet masq" -j RETURN',
        '-A CLUSTERNET-POSTRTG -s 2001:db8:42::/48 -d 2001:db8:42:1::/64 -m comment --comment "clusternet masq" -j RETURN',
        '-A CLUSTERNET-POSTRTG ! -s 2001:db8:42::/48 -d 2001:db8:42:1::/64 -m comment --comment "clusternet masq" -j RETURN',
        '-A CLUSTERNET-POSTRTG -s 2001:db8:42::/48 ! -d ff00::/8 -m comment --comment "clusternet masq" -j MASQUERADE --random-fully',
        '-A CLUSTERNET-POSTRTG ! -s 2001:db8:42::/48 -d 2001:db8:42::/48 -m comment --comment "clusternet masq" -j MASQUERADE --random-fully',
    ]
    assert bf.expected_state(5, 3)['fip'] == []  # only the first three nodes are gateways


def observed(want):
    """A read_state result equal to want: what a correct node's kernel gives."""
    return {'sets': copy.deepcopy(want['sets']), 'addresses': set(want['vips']),
            'routes': dict((vip, [('local', 'local', bf.VIP_IF, src, 'kernel')]) for vip, src in want['vips'].items()),
            'masq': [list(want['masq'][0]), list(want['masq'][1])], 'fip': list(reversed(want['fip']))}


def test_compare_state_accepts_the_right_state_and_names_each_wrong_part():
    want = bf.expected_state(4, 0)
    assert bf.compare_state(want, observed(want)) == []

    have = observed(want)
    have['sets']['inet6:cn-svip'].discard('2001:db8:43::2')
    have['sets']['cn-node-ips'].add('10.128.0.9')
    have['sets']['foreign'] = set()
    have['routes']['2001:db8:43::3'].append(('unicast', 'main', bf.VIP_IF, None, 'kernel'))  # the kernel's own route, kube-router #1698
    have['routes']['10.96.0.1'] = [('local', 'local', bf.VIP_IF, '10.128.0.2', 'kernel')]  # another node's source
    have['routes']['10.99.0.1'] = [('local', 'local', bf.VIP_IF, '10.128.0.1', 'kernel')]
    have['masq'][0] = have['masq'][0][:-1]
    have['fip'] = have['fip'][1:]
    problems = bf.compare_state(want, have)
    assert problems[:3] == [
        "set cn-node-ips: 5 entries, want 4; missing [], extra ['10.128.0.9']",
        'set foreign should not exist',
        "set inet6:cn-svip: 3 entries, want 4; missing ['2001:db8:43::2'], extra []",
    ]
    assert problems[3].startswith('2 VIPs without exactly their local route, e.g. [(\'10.96.0.1\', ')
    assert problems[4] == "routes on kube-dummy-if to non-VIPs: ['10.99.0.1']"
    assert problems[5].startswith('IPv4 masquerade rules differ: ')
    assert problems[6].startswith('FIP rules differ: ')
    assert len(problems) == 7

    have = observed(want)
    have['addresses'].discard('10.96.0.4')
    have['sets'].pop('cn-local-pods')
    assert bf.compare_state(want, have) == ['set cn-local-pods is missing', "kube-dummy-if addresses: missing ['10.96.0.4'], extra []"]


RECAP_TEXT = '''PLAY [Converge] ****

TASK [x] ****
ok: [n00000]

PLAY RECAP *********************************************************************
n00000                     : ok=9    changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
n00001                     : ok=8    changed=3    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
'''


def test_parse_recap():
    assert bf.parse_recap(RECAP_TEXT) == {
        'n00000': {'ok': 9, 'changed': 0, 'unreachable': 0, 'failed': 0},
        'n00001': {'ok': 8, 'changed': 3, 'unreachable': 0, 'failed': 1},
    }
    assert bf.parse_recap('n00000 : ok=9    changed=0    unreachable=0    failed=0') == {}  # no recap, no hosts


def test_render_table_ratios_and_verdicts():
    rows = [{'size': 3, 'run': 'first', 'runs': 3, 'wall': 20.0, 'cpu': 6.0, 'floor': 1.0},
            {'size': 3, 'run': 'no change', 'runs': 3, 'wall': 18.0, 'cpu': 5.0, 'floor': 1.0},
            {'size': 1000, 'run': 'no change', 'runs': 3, 'wall': 30.0, 'cpu': 7.5, 'floor': 1.5},
            {'size': 3000, 'run': 'no change', 'runs': 1, 'wall': 90.0, 'cpu': 12.55, 'floor': 2.0},
            {'size': 10000, 'run': 'no change', 'runs': 1, 'wall': 300.0, 'cpu': 40.0, 'floor': 4.0}]
    text, failed = bf.render_table(rows, {'first': 6.0, 'no change': 5.0})
    assert text.splitlines()[2:] == [
        '| 3 | first | 3 | 20.0 | 6.00 | 1.00x | 1.00 | - |',
        '| 3 | no change | 3 | 18.0 | 5.00 | 1.00x | 1.00 | - |',
        '| 1,000 | no change | 3 | 30.0 | 7.50 | 1.50x | 1.50 | <= 1.5x PASS |',
        '| 3,000 | no change | 1 | 90.0 | 12.55 | 2.51x | 2.00 | <= 2.5x FAIL |',
        '| 10,000 | no change | 1 | 300.0 | 40.00 | 8.00x | 4.00 | - |',
    ]
    assert failed == ['3000 nodes no change: 2.51x > 2.5x']
