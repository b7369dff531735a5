"""clusternet.node.node_state: the lab's example intent rendered per node, exactly,
and the intent errors it must refuse with a message naming the value."""

import copy
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.clusternet.node.plugins.filter.node_state import FilterModule, node_plan, node_state

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
    assert FilterModule().filters() == {'node_state': node_state, 'node_plan': node_plan}


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


# Issue 12: intent that would let one object take over another's address, special-purpose
# space, and values YAML or Python would silently read as something else. Exact messages.
@pytest.mark.parametrize('path, value, message', [
    (['floating_ips', 0, 'external_ip'], '192.168.50.12',
     'floating IP 192.168.50.12 is the node IP of node node2: its traffic would be DNATed to 10.42.1.5'),
    (['floating_ips', 0, 'external_ip'], '10.43.0.10',
     'floating IP 10.43.0.10 is the service IP of service default/web: its traffic would be DNATed to 10.42.1.5'),
    (['floating_ips', 0, 'external_ip'], '192.0.2.80',
     'floating IP 192.0.2.80 is the service IP of service default/web: its traffic would be DNATed to 10.42.1.5'),
    (['floating_ips', 0, 'external_ip'], '10.42.2.5',
     'floating IP 10.42.2.5 is the pod IP of pod default/web-1: its traffic would be DNATed to 10.42.1.5'),
    (['floating_ips', 0, 'external_ip'], '10.42.9.9', 'floating IP 10.42.9.9 is inside cluster CIDR 10.42.0.0/16'),
    (['floating_ips', 0, 'external_ip'], '10.43.9.9', 'floating IP 10.43.9.9 is inside service CIDR 10.43.0.0/16'),
    (['floating_ips', 0, 'external_ip'], '127.0.0.1',
     "invalid floating_ips[0] external_ip '127.0.0.1': it is a loopback address, not a unicast host address"),
    (['floating_ips', 0, 'internal_ip'], '10.99.0.1',
     'floating IP 198.51.100.10 internal IP 10.99.0.1 is not inside any cluster CIDR (10.42.0.0/16, 2001:db8:42::/56)'),
    (['floating_ips', 0, 'internal_ip'], '10.42.1.99', 'floating IP 198.51.100.10 internal IP 10.42.1.99 is not the IP of any pod in pods'),
    (['floating_ips', 0, 'internal_ip'], 'fe80::1',
     "invalid floating IP 198.51.100.10 internal_ip 'fe80::1': it is a link-local address, not a unicast host address"),
    (['services', 0, 'external_ips'], ['192.168.50.12'], 'service default/web external IP 192.168.50.12 is the node IP of node node2'),
    (['services', 0, 'external_ips'], ['10.42.200.1'], 'service default/web external IP 10.42.200.1 is inside cluster CIDR 10.42.0.0/16'),
    (['services', 0, 'external_ips'], ['::ffff:192.0.2.80'],
     "invalid service default/web external_ips entry '::ffff:192.0.2.80': it is IPv4-mapped; write the IPv4 address instead, not a unicast host address"),
    (['services', 0, 'cluster_ips'], ['10.43.0.10', 'fe80::1%eth0'],
     "invalid service default/web cluster_ips entry 'fe80::1%eth0': it carries a zone id, not a unicast host address"),
    (['service_cidrs'], ['10.42.128.0/17', '2001:db8:43::/112'], 'service_cidrs entry 10.42.128.0/17 overlaps cluster_cidrs entry 10.42.0.0/16'),
    (['service_cidrs'], ['10.43.0.0/16', '10.43.0.0/24', '2001:db8:43::/112'],
     'service_cidrs entry 10.43.0.0/24 overlaps service_cidrs entry 10.43.0.0/16'),
    (['cluster_cidrs'], ['10.42.0.0/16', '10.42.128.0/17', '2001:db8:42::/56'],
     'cluster_cidrs entry 10.42.128.0/17 overlaps cluster_cidrs entry 10.42.0.0/16'),
    (['cluster_cidrs'], ['0.0.0.0/0', '2001:db8:42::/56'],
     "cluster_cidrs entry '0.0.0.0/0': it overlaps 0.0.0.0/8 (unspecified, \"this network\"), not a pod or service network"),
    (['cluster_cidrs'], ['10.42.0.0/16', '::/0'], "cluster_cidrs entry '::/0': it overlaps ::/128 (unspecified), not a pod or service network"),
    (['cluster_cidrs'], ['127.0.0.0/16', '2001:db8:42::/56'],
     "cluster_cidrs entry '127.0.0.0/16': it overlaps 127.0.0.0/8 (loopback), not a pod or service network"),
    (['cluster_cidrs'], ['10.42.0.0/16', '::ffff:10.42.0.0/112'],
     "cluster_cidrs entry '::ffff:10.42.0.0/112': it overlaps ::ffff:0:0/96 (IPv4-mapped), not a pod or service network"),
    (['service_cidrs'], ['10.43.0.0/16', 'fe80::/64'], "service_cidrs entry 'fe80::/64': it overlaps fe80::/10 (link-local), not a pod or service network"),
    (['cluster_cidrs'], ['10.42.0.0/\u0661\u0666', '2001:db8:42::/56'],
     "invalid cluster_cidrs entry '10.42.0.0/\u0661\u0666': expected an IPv4 or IPv6 network with zero host bits"),
    (['nodes', 'node1', 'pod_cidrs'], ['10.42.1.0/\u0662\u0664', '2001:db8:42:1::/64'],
     "invalid node node1 pod_cidrs entry '10.42.1.0/\u0662\u0664': expected an IPv4 or IPv6 network with zero host bits"),
    (['services', 0, 'ports'], [{'port': True}], 'service default/web port True: expected a number from 1 to 65535'),
    (['services', 0, 'ports'], [{'port': 80.0}], 'service default/web port 80.0: expected a number from 1 to 65535'),
    (['services', 0, 'ports'], [{'port': '\u0668\u0660'}], "service default/web port '\u0668\u0660': expected a number from 1 to 65535"),
    (['services', 0, 'ports'], [{'port': '80 '}], "service default/web port '80 ': expected a number from 1 to 65535"),
    (['services', 0, 'ports'], [{'port': 0}], 'service default/web port 0: expected a number from 1 to 65535'),
    (['services', 0, 'ports'], [{'protocol': 6, 'port': 80}], 'service default/web port protocol 6: expected one of tcp, udp, sctp'),
    (['nodes', 'node1', 'node_ips'], ['127.0.0.1', 'fd00:50::11'],
     "invalid node node1 node_ips entry '127.0.0.1': it is a loopback address, not a unicast host address"),
    (['nodes', 'node1', 'node_ips'], ['192.168.50.11', 'ff02::1'],
     "invalid node node1 node_ips entry 'ff02::1': it is a multicast address, not a unicast host address"),
    (['nodes', 'node1', 'node_ips'], ['240.0.0.1', 'fd00:50::11'],
     "invalid node node1 node_ips entry '240.0.0.1': it is in 240.0.0.0/4 (reserved, broadcast), not a unicast host address"),
    # 0.0.0.0/8 as a whole, not 0.0.0.0 alone (one table, families.SPECIAL_RANGES).
    (['nodes', 'node1', 'node_ips'], ['0.1.2.3', 'fd00:50::11'],
     "invalid node node1 node_ips entry '0.1.2.3': it is in 0.0.0.0/8 (unspecified, \"this network\"), not a unicast host address"),
    (['services', 0, 'external_ips'], ['0.1.2.3'],
     "invalid service default/web external_ips entry '0.1.2.3': it is in 0.0.0.0/8 (unspecified, \"this network\"), not a unicast host address"),
    (['floating_ips', 0, 'external_ip'], '0.1.2.3',
     "invalid floating_ips[0] external_ip '0.1.2.3': it is in 0.0.0.0/8 (unspecified, \"this network\"), not a unicast host address"),
    (['nodes', 'node1', 'node_ips'], ['10.42.200.1', 'fd00:50::11'], 'node node1 node IP 10.42.200.1 is inside cluster CIDR 10.42.0.0/16'),
    (['nodes', 'node1', 'node_ips'], ['10.43.200.1', 'fd00:50::11'], 'node node1 node IP 10.43.200.1 is inside service CIDR 10.43.0.0/16'),
    # Types and keys the role's argument spec used to check.
    (['nodes', 'node1', 'pod_cidr'], ['10.42.1.0/24'], "node node1 has unknown key 'pod_cidr': expected node_ips, pod_cidrs"),
    (['services', 0, 'name'], None, 'services[0] is missing name'),
    (['services', 0, 'externalIPs'], ['192.0.2.1'],
     "services[0] has unknown key 'externalIPs': expected name, cluster_ips, namespace, external_ips, ports"),
    (['pods', 0, 'name'], ['x'], "pods[0] name must be a non-empty string, got ['x']"),
    (['floating_ips', 0, 'gateway'], True, 'floating IP 198.51.100.10 gateway must be a non-empty string, got True'),
    (['service_cidrs'], None, 'clusternet_cluster is missing service_cidrs'),
])
def test_refuses_conflicting_or_special_intent_with_exact_message(path, value, message):
    with pytest.raises(AnsibleFilterError) as error:
        node_state(mutate(path, value), 'gw1')
    assert str(error.value) == 'clusternet_cluster: ' + message


def test_service_external_ip_may_be_shared_and_sit_in_no_cluster_network():
    cluster = mutate(['services', 1, 'external_ips'], ['192.0.2.80', '2001:db8:2::80'])
    assert node_state(cluster, 'node1')['vip']['addresses'] == SVIP + ['2001:db8:2::80']


def test_missing_node_lists_at_most_ten_names():
    cluster = {'cluster_cidrs': ['10.42.0.0/16'], 'service_cidrs': ['10.43.0.0/16'],
               'nodes': dict(('n%02d' % index, {'node_ips': ['192.168.50.%d' % index], 'pod_cidrs': ['10.42.%d.0/24' % index]})
                             for index in range(1, 13))}
    with pytest.raises(AnsibleFilterError) as error:
        node_state(cluster, 'n99')
    assert str(error.value) == 'clusternet_cluster: node n99 is not in nodes (n01, n02, n03, n04, n05, n06, n07, n08, n09, n10, ... 2 more)'
