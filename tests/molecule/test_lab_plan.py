"""The lab's pure parts on exact data: labnet.plan (containers, addresses, routes from the
intent) and hoststate's readers of `ipset save` / `iptables-save` / `nft` output."""

import os
import sys

import pytest
import yaml
from harness import REPO

sys.path.insert(0, os.path.join(REPO, 'lab'))

import hoststate  # noqa: E402
import labnet  # noqa: E402


def lab_spec():
    with open(os.path.join(REPO, 'inventories', 'lab', 'group_vars', 'all', 'cluster.yml')) as intent:
        cluster = yaml.safe_load(intent)['clusternet_cluster']
    with open(os.path.join(REPO, 'inventories', 'lab', 'hosts.yml')) as hosts:
        inventory = yaml.safe_load(hosts)['all']
    lab = inventory['vars']['clusternet_lab']
    nodes = dict(item for group in inventory['children']['clusternet_nodes']['children'].values() for item in group['hosts'].items())
    return {'prefix': lab['prefix'], 'networks': lab['networks'], 'outside': lab['outside'],
            'hosts': dict((name, node['ansible_host']) for name, node in nodes.items()),
            'platforms': dict((name, node['clusternet_lab_platform']) for name, node in nodes.items() if 'clusternet_lab_platform' in node),
            'cluster': cluster}


@pytest.fixture(autouse=True)
def default_release(monkeypatch):
    monkeypatch.setattr(labnet, 'RELEASE', 'bookworm')  # as without CLUSTERNET_NODE_RELEASE


def test_plan_of_the_lab_intent():
    plan = labnet.plan(lab_spec())
    assert sorted(plan) == ['cn-lab-gw1', 'cn-lab-node1', 'cn-lab-node2', 'cn-lab-outside',
                            'cn-lab-pod-dns-0', 'cn-lab-pod-web-0', 'cn-lab-pod-web-1']
    assert plan['cn-lab-node1'] == {
        'role': 'node', 'host': 'node1', 'release': 'bookworm', 'iptables': 'nft',
        'addresses': ['192.168.50.11/24', 'fd00:50::11/64'],
        'bridge': ['10.42.1.1/24', '2001:db8:42:1::1/64'],
        'routes': [('10.42.3.0/24', '192.168.50.13'), ('2001:db8:42:3::/64', 'fd00:50::13'),
                   ('10.42.2.0/24', '192.168.50.12'), ('2001:db8:42:2::/64', 'fd00:50::12')],
    }
    assert plan['cn-lab-node2']['iptables'] == 'legacy'
    assert plan['cn-lab-outside'] == {
        'role': 'outside', 'release': 'bookworm', 'addresses': ['192.168.50.100/24', 'fd00:50::100/64'],
        'routes': [('198.51.100.10/32', '192.168.50.13'), ('2001:db8:100::10/128', 'fd00:50::13')],
    }
    assert plan['cn-lab-pod-dns-0'] == {
        'role': 'pod', 'node': 'cn-lab-node2', 'release': 'bookworm',
        'addresses': ['10.42.2.53/24', '2001:db8:42:2::53/64'],
        'routes': [('default', '10.42.2.1'), ('default', '2001:db8:42:2::1')],
    }


def test_plan_rejects_a_pod_outside_its_node_pod_cidrs():
    spec = lab_spec()
    spec['cluster']['pods'][0]['ips'] = ['10.42.2.5']  # node2's CIDR, pod on node1
    with pytest.raises(SystemExit, match='10.42.2.5 is in none of its node pod CIDRs'):
        labnet.plan(spec)


@pytest.mark.parametrize('given', [{'release': 'bullseye'}, {'iptables': 'nf_tables'}, {'relase': 'trixie'}])
def test_plan_rejects_a_platform_it_does_not_build(given):
    spec = lab_spec()
    spec['platforms'] = {'node1': given}
    with pytest.raises(SystemExit, match='platform of node1'):
        labnet.plan(spec)


def test_plan_rejects_an_inventory_host_missing_from_the_intent():
    spec = lab_spec()
    spec['hosts']['node9'] = 'cn-lab-node9'
    with pytest.raises(SystemExit, match='node9 is not a node'):
        labnet.plan(spec)


class Saved(object):
    """Stands in for a testinfra host: check_output returns fixed tool output."""

    def __init__(self, text):
        self.text = text

    def check_output(self, cmd):
        return self.text


def test_ipsets_reads_type_family_and_members():
    text = ('create cn-svip hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n'
            'add cn-svip 10.43.0.10\n'
            'create inet6:cn-svip hash:ip family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2\n'
            'add inet6:cn-svip 2001:db8:43::10\n'
            'create empty hash:net family inet hashsize 1024 maxelem 65536\n')
    assert hoststate.ipsets(Saved(text)) == {
        'cn-svip': {'type': 'hash:ip', 'family': 'ipv4', 'members': {'10.43.0.10'}},
        'inet6:cn-svip': {'type': 'hash:ip', 'family': 'ipv6', 'members': {'2001:db8:43::10'}},
        'empty': {'type': 'hash:net', 'family': 'ipv4', 'members': set()},
    }


def test_nat_keeps_kernel_order_and_jumps_finds_only_jumps():
    text = ('*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:CLUSTERNET-POSTRTG - [0:0]\n'
            '-A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG\n'
            '-A POSTROUTING -s 10.99.0.0/16 -m comment --comment "to CLUSTERNET-POSTRTG" -j MASQUERADE\n'
            '-A CLUSTERNET-POSTRTG -s 10.42.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "clusternet masq" -j MASQUERADE --random-fully\n'
            'COMMIT\n')
    chains = hoststate.nat(Saved(text), 'ipv4')
    assert chains['PREROUTING'] == []
    assert hoststate.jumps(chains, 'POSTROUTING', 'CLUSTERNET-POSTRTG') == ['-m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG']
    assert [hoststate.without_comments(rule) for rule in chains['CLUSTERNET-POSTRTG']] == [
        '-s 10.42.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully']


class Listed(object):
    """A testinfra host whose nft prints fixed output: `nft -j list ...` the JSON, `nft list ...` the text;
    rc 1 (no such table) when it has none."""

    def __init__(self, json_text, text):
        self.outputs = {True: json_text, False: text}

    def run(self, cmd):
        out = self.outputs[' -j ' in cmd]
        return type('Result', (), {'rc': 0 if out else 1, 'stdout': out})()

    def check_output(self, cmd):
        return self.run(cmd).stdout


NFT_JSON = (  # nft 1.0.6's `nft -j list table ip clusternet`, cut to one map, one set, two chains
    '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, '
    '{"table": {"family": "ip", "name": "clusternet", "handle": 2}}, '
    '{"map": {"family": "ip", "name": "fip-dnat", "table": "clusternet", "type": "ipv4_addr", "handle": 1, "map": "ipv4_addr", '
    '"elem": [["203.0.113.11", "10.244.2.10"]]}}, '
    '{"set": {"family": "ip", "name": "masq-cluster", "table": "clusternet", "type": "ipv4_addr", "handle": 9, "flags": ["interval"], '
    '"elem": [{"prefix": {"addr": "10.244.0.0", "len": 16}}, "10.99.0.1"]}}, '
    '{"chain": {"family": "ip", "table": "clusternet", "name": "fip-prerouting", "handle": 3, "type": "nat", "hook": "prerouting", '
    '"prio": -90, "policy": "accept"}}, '
    '{"chain": {"family": "ip", "table": "clusternet", "name": "masq-postrouting", "handle": 11, "type": "nat", "hook": "postrouting", '
    '"prio": 110, "policy": "accept"}}]}')
# nft prints tabs; written here as \t (no tab characters in the source)
NFT_TEXT = '''table ip clusternet {
\tcomment "managed by clusternet.node"
\tmap fip-dnat {
\t\ttype ipv4_addr : ipv4_addr
\t\telements = { 203.0.113.11 : 10.244.2.10 }
\t}

\tset masq-cluster {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.244.0.0/16, 10.99.0.1 }
\t}

\tchain fip-prerouting {
\t\ttype nat hook prerouting priority dstnat + 10; policy accept;
\t\tdnat to ip daddr map @fip-dnat
\t}

\tchain masq-postrouting {
\t\ttype nat hook postrouting priority srcnat + 10; policy accept;
\t\tmeta mark & 0x00004000 == 0x00004000 return
\t\tip saddr @masq-cluster ip daddr != 224.0.0.0/4 masquerade fully-random
\t}
}
'''


def test_nft_reads_numeric_priorities_elements_and_rules_in_order():
    assert hoststate.nft(Listed(NFT_JSON, NFT_TEXT), 'ipv4') == {
        'chains': {
            'fip-prerouting': {'hook': 'prerouting', 'priority': -90, 'rules': ['dnat to ip daddr map @fip-dnat']},
            'masq-postrouting': {'hook': 'postrouting', 'priority': 110, 'rules': [
                'meta mark & 0x00004000 == 0x00004000 return',
                'ip saddr @masq-cluster ip daddr != 224.0.0.0/4 masquerade fully-random']},
        },
        'sets': {'fip-dnat': {'203.0.113.11 : 10.244.2.10'}, 'masq-cluster': {'10.244.0.0/16', '10.99.0.1'}},
    }


def test_nft_of_a_missing_table_is_none():
    assert hoststate.nft(Listed('', ''), 'ipv6') is None
