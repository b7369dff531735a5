"""clusternet.node.node_state: the lab's example intent rendered per node, exactly,
and the intent errors it must refuse with a message naming the value."""

import copy
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.clusternet.node.plugins.filter.node_state import FilterModule, node_state

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
BOTH = ['ipv4', 'ipv6']

with open(os.path.join(REPO, 'inventories', 'lab', 'group_vars', 'all', 'cluster.yml')) as handle:
    LAB = yaml.safe_load(handle)['clusternet_cluster']

# What every lab node gets in the cluster-wide sets.
POD_SUBNETS = ['10.42.1.0/24', '2001:db8:42:1::/64', '10.42.2.0/24', '2001:db8:42:2::/64', '10.42.3.0/24', '2001:db8:42:3::/64']
NODE_IPS = ['192.168.50.11', 'fd00:50::11', '192.168.50.12', 'fd00:50::12', '192.168.50.13', 'fd00:50::13']
SVIP = ['10.43.0.10', '2001:db8:43::10', '192.0.2.80', '10.43.0.53', '2001:db8:43::53']
SVIP_PRT = ['10.43.0.10,tcp:80', '2001:db8:43::10,tcp:80', '192.0.2.80,tcp:80',
            '10.43.0.53,tcp:53', '10.43.0.53,udp:53', '2001:db8:43::53,tcp:53', '2001:db8:43::53,udp:53']
CLUSTER_CIDRS = ['10.42.0.0/16', '2001:db8:42::/56']


def expected(node_ips, pod_cidrs, local_pods, floating_ips):
    def ipset(name, set_type, entries):
        return {'name': name, 'set_type': set_type, 'families': BOTH, 'entries': entries}
    return {
        'ipset': [
            ipset('cn-pod-subnets', 'hash:net', POD_SUBNETS),
            ipset('cn-node-ips', 'hash:ip', NODE_IPS),
            ipset('cn-svip', 'hash:ip', SVIP),
            ipset('cn-svip-prt', 'hash:ip,port', SVIP_PRT),
            ipset('cn-local-pods', 'hash:ip', local_pods),
        ],
        'vip': {'addresses': SVIP, 'node_ips': node_ips},
        'masquerade': {'cluster_cidrs': CLUSTER_CIDRS, 'pod_cidrs': pod_cidrs},
        'fip': {'floating_ips': floating_ips},
    }


@pytest.mark.parametrize('node, want', [
    ('node1', expected(['192.168.50.11', 'fd00:50::11'], ['10.42.1.0/24', '2001:db8:42:1::/64'],
                       ['10.42.1.5', '2001:db8:42:1::5'], [])),
    ('node2', expected(['192.168.50.12', 'fd00:50::12'], ['10.42.2.0/24', '2001:db8:42:2::/64'],
                       ['10.42.2.5', '2001:db8:42:2::5', '10.42.2.53', '2001:db8:42:2::53'], [])),
    ('gw1', expected(['192.168.50.13', 'fd00:50::13'], ['10.42.3.0/24', '2001:db8:42:3::/64'], [],
                     [{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.5'},
                      {'external_ip': '2001:db8:100::10', 'internal_ip': '2001:db8:42:1::5'}])),
])
def test_lab_intent_per_node(node, want):
    assert node_state(LAB, node) == want


def test_registered_as_node_state():
    assert FilterModule().filters() == {'node_state': node_state}


def test_prefix_names_every_set():
    names = [item['name'] for item in node_state(LAB, 'node1', prefix='kr-')['ipset']]
    assert names == ['kr-pod-subnets', 'kr-node-ips', 'kr-svip', 'kr-svip-prt', 'kr-local-pods']


def test_absent_needs_no_intent():
    assert node_state(None, 'anything', state='absent') == {
        'ipset': [{'name': 'cn-pod-subnets'}, {'name': 'cn-node-ips'}, {'name': 'cn-svip'},
                  {'name': 'cn-svip-prt'}, {'name': 'cn-local-pods'}],
        'vip': {'addresses': [], 'node_ips': []},
        'masquerade': {'cluster_cidrs': [], 'pod_cidrs': []},
        'fip': {'floating_ips': []},
    }


def test_addresses_are_normalised_and_ports_default_to_tcp():
    cluster = copy.deepcopy(LAB)
    cluster['services'] = [{'name': 'x', 'cluster_ips': ['10.43.0.7', '2001:DB8:43:0::7'], 'ports': [{'port': '8080'}]}]
    state = node_state(cluster, 'node1')
    assert state['ipset'][3]['entries'] == ['10.43.0.7,tcp:8080', '2001:db8:43::7,tcp:8080']
    assert state['vip']['addresses'] == ['10.43.0.7', '2001:db8:43::7']


def test_shared_external_ip_appears_once():
    cluster = copy.deepcopy(LAB)
    cluster['services'][1]['external_ips'] = ['192.0.2.80']
    state = node_state(cluster, 'node1')
    assert state['vip']['addresses'] == SVIP
    assert state['ipset'][3]['entries'] == SVIP_PRT + ['192.0.2.80,tcp:53', '192.0.2.80,udp:53']


def test_ipv4_only_cluster_manages_ipv4_sets_only():
    cluster = {
        'cluster_cidrs': ['10.42.0.0/16'], 'service_cidrs': ['10.43.0.0/16'],
        'nodes': {'a': {'node_ips': ['192.168.50.11'], 'pod_cidrs': ['10.42.1.0/24']}},
    }
    state = node_state(cluster, 'a')
    assert [item['families'] for item in state['ipset']] == [['ipv4']] * 5
    assert [item['entries'] for item in state['ipset']] == [['10.42.1.0/24'], ['192.168.50.11'], [], [], []]
    assert state['vip'] == {'addresses': [], 'node_ips': ['192.168.50.11']}


def mutate(path, value):
    """LAB with the value at path (keys and list indexes) replaced."""
    cluster = copy.deepcopy(LAB)
    target = cluster
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return cluster


@pytest.mark.parametrize('cluster, node, message', [
    (LAB, 'node9', 'node node9 is not in nodes (node1, node2, gw1)'),
    (mutate(['pods', 0, 'node'], 'node9'), 'node1', 'pod default/web-0 is on node node9, which is not in nodes'),
    (mutate(['floating_ips', 0, 'gateway'], 'gw9'), 'gw1', 'floating IP 198.51.100.10 has gateway gw9, which is not in nodes'),
    (mutate(['nodes', 'node2', 'node_ips'], ['192.168.50.11', 'fd00:50::12']), 'node1', 'node IP 192.168.50.11 is used by both node node1 and node node2'),
    (mutate(['pods', 2, 'ips'], ['10.42.2.5', '2001:db8:42:2::53']), 'node1', 'pod IP 10.42.2.5 is used by both pod default/web-1 and pod default/dns-0'),
    (mutate(['services', 1, 'cluster_ips'], ['10.43.0.10', '2001:db8:43::53']), 'node1',
     'cluster IP 10.43.0.10 is used by both service default/web and service default/dns'),
    (mutate(['floating_ips', 1], {'external_ip': '198.51.100.10', 'internal_ip': '10.42.2.5', 'gateway': 'gw1'}), 'gw1',
     'floating IP 198.51.100.10 is used by both floating_ips[0] and floating_ips[1]'),
    (mutate(['floating_ips', 1], {'external_ip': '198.51.100.11', 'internal_ip': '10.42.1.5', 'gateway': 'node2'}), 'gw1',
     'internal IP 10.42.1.5 is used by both floating IP 198.51.100.10 and floating IP 198.51.100.11'),
    (mutate(['services', 1, 'name'], 'web'), 'node1', 'name service default/web is used by both services[0] and services[1]'),
    (mutate(['services', 1, 'ports', 1], {'protocol': 'tcp', 'port': 53}), 'node1', 'service default/dns ports lists (\'tcp\', 53) twice'),
    (mutate(['nodes', 'node1', 'node_ips'], ['192.168.50.11', '192.168.50.21']), 'node1',
     'more than one node node1 node_ips of family ipv4: 192.168.50.11 and 192.168.50.21'),
    (mutate(['nodes', 'node1', 'node_ips'], ['192.168.50.11']), 'node1', 'node node1 node_ips has no ipv6 value but cluster_cidrs has an ipv6 CIDR'),
    (mutate(['nodes', 'node1', 'pod_cidrs'], ['10.42.1.0/24', '2001:db8:42:2::/64']), 'node1',
     'node node2 pod CIDR 2001:db8:42:2::/64 overlaps node node1 pod CIDR 2001:db8:42:2::/64'),
    (mutate(['nodes', 'node1', 'pod_cidrs'], ['10.99.1.0/24', '2001:db8:42:1::/64']), 'node1',
     'node node1 pod CIDR 10.99.1.0/24 is not inside any cluster CIDR'),
    (mutate(['nodes', 'node1', 'pod_cidrs'], ['10.42.1.1/24', '2001:db8:42:1::/64']), 'node1', "invalid node node1 pod_cidrs entry '10.42.1.1/24'"),
    (mutate(['pods', 0, 'ips'], ['10.42.2.6']), 'node1', 'pod default/web-0 IP 10.42.2.6 is not inside node node1 pod CIDR 10.42.1.0/24'),
    (mutate(['services', 0, 'cluster_ips'], ['10.44.0.10']), 'node1', 'service default/web cluster IP 10.44.0.10 is not inside any service CIDR'),
    (mutate(['services', 0, 'cluster_ips'], []), 'node1', 'service default/web has no cluster_ips'),
    (mutate(['services', 0, 'ports'], [{'protocol': 'icmp', 'port': 1}]), 'node1', "service default/web port protocol 'icmp'"),
    (mutate(['services', 0, 'ports'], [{'protocol': 'tcp', 'port': 70000}]), 'node1', 'service default/web port 70000: expected a number from 1 to 65535'),
    (mutate(['floating_ips', 0, 'internal_ip'], '2001:db8:42:1::5'), 'gw1', 'floating IP 198.51.100.10 maps to 2001:db8:42:1::5: both must be of one family'),
    (mutate(['floating_ips', 0, 'external_ip'], 'not-an-ip'), 'gw1', "invalid floating_ips[0] external_ip 'not-an-ip'"),
    (mutate(['cluster_cidrs'], ['10.42.0.0/16']), 'node1', 'service CIDR 2001:db8:43::/112 is ipv6 but cluster_cidrs has no ipv6 CIDR'),
    (mutate(['cluster_cidrs'], []), 'node1', 'cluster_cidrs is empty'),
    (mutate(['nodes'], {}), 'node1', 'nodes is empty'),
    (mutate(['nodes'], ['node1']), 'node1', "nodes must be a mapping, got ['node1']"),
    (mutate(['pods'], 'web-0'), 'node1', "pods must be a list, got 'web-0'"),
])
def test_refuses_bad_intent(cluster, node, message):
    with pytest.raises(AnsibleFilterError) as error:
        node_state(cluster, node)
    assert message in str(error.value)
    assert str(error.value).startswith('clusternet_cluster: ')


@pytest.mark.parametrize('prefix, state, message', [
    ('a-very-long-prefix-', 'present', "ipset prefix 'a-very-long-prefix-' gives set name 'a-very-long-prefix-pod-subnets'"),
    ('bad prefix ', 'absent', "ipset prefix 'bad prefix '"),
    ('cn-', 'latent', "state 'latent': expected present or absent"),
])
def test_refuses_bad_prefix_or_state(prefix, state, message):
    with pytest.raises(AnsibleFilterError, match=message):
        node_state(LAB, 'node1', prefix=prefix, state=state)


def test_masquerade_families_leave_the_others_without_cidrs():
    state = node_state(LAB, 'node1', masquerade_families=['ipv4'])
    assert state['masquerade'] == {'cluster_cidrs': ['10.42.0.0/16'], 'pod_cidrs': ['10.42.1.0/24']}
    assert state['ipset'] == node_state(LAB, 'node1')['ipset']
    assert node_state(LAB, 'node1', masquerade_families=[])['masquerade'] == {'cluster_cidrs': [], 'pod_cidrs': []}


@pytest.mark.parametrize('families', [['ipv5'], 'ipv4'])
def test_refuses_unknown_masquerade_families(families):
    with pytest.raises(AnsibleFilterError, match='masquerade families'):
        node_state(LAB, 'node1', masquerade_families=families)


@pytest.mark.parametrize('cidrs, message', [
    (['10.42.0.0/20', '10.42.16.0/24', '10.42.1.0/24'], 'node c pod CIDR 10.42.1.0/24 overlaps node a pod CIDR 10.42.0.0/20'),
    (['10.42.2.0/24', '10.42.0.0/16', '10.42.1.0/24'], 'node c pod CIDR 10.42.1.0/24 overlaps node b pod CIDR 10.42.0.0/16'),
    (['10.42.1.0/25', '10.42.1.128/25', '10.42.2.0/24'], None),
])
def test_pod_cidr_overlap_is_found_in_any_order(cidrs, message):
    cluster = {'cluster_cidrs': ['10.42.0.0/16'], 'service_cidrs': ['10.43.0.0/16'],
               'nodes': dict((name, {'node_ips': ['192.168.50.%d' % index], 'pod_cidrs': [cidr]})
                             for index, (name, cidr) in enumerate(zip('abc', cidrs), 1))}
    if message is None:
        assert node_state(cluster, 'a')['ipset'][0]['entries'] == cidrs
        return
    with pytest.raises(AnsibleFilterError, match=message):
        node_state(cluster, 'a')
