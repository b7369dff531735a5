"""clusternet.node.node_plan: the intent rendered once for the play, each node's share picked
from it with that node's prefix and masquerade families, as node_state renders it alone."""

import json
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.clusternet.node.plugins.filter.node_state import node_args, node_plan, node_state

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')

with open(os.path.join(REPO, 'inventories', 'lab', 'group_vars', 'all', 'cluster.yml')) as handle:
    LAB = yaml.safe_load(handle)['clusternet_cluster']


def test_plan_holds_the_shared_lists_once_and_each_node_alone():
    plan = node_plan(LAB)
    assert plan == {
        'shared': {
            'families': ['ipv4', 'ipv6'],
            'entries': {
                'pod-subnets': ['10.42.1.0/24', '2001:db8:42:1::/64', '10.42.2.0/24', '2001:db8:42:2::/64', '10.42.3.0/24', '2001:db8:42:3::/64'],
                'node-ips': ['192.168.50.11', 'fd00:50::11', '192.168.50.12', 'fd00:50::12', '192.168.50.13', 'fd00:50::13'],
                'svip': ['10.43.0.10', '2001:db8:43::10', '192.0.2.80', '10.43.0.53', '2001:db8:43::53'],
                'svip-prt': ['10.43.0.10,tcp:80', '2001:db8:43::10,tcp:80', '192.0.2.80,tcp:80', '10.43.0.53,tcp:53',
                             '10.43.0.53,udp:53', '2001:db8:43::53,tcp:53', '2001:db8:43::53,udp:53'],
            },
            'cluster_cidrs': ['10.42.0.0/16', '2001:db8:42::/56'],
        },
        'nodes': {
            'node1': {'node_ips': ['192.168.50.11', 'fd00:50::11'], 'pod_cidrs': ['10.42.1.0/24', '2001:db8:42:1::/64'],
                      'local_pods': ['10.42.1.5', '2001:db8:42:1::5'], 'floating_ips': []},
            'node2': {'node_ips': ['192.168.50.12', 'fd00:50::12'], 'pod_cidrs': ['10.42.2.0/24', '2001:db8:42:2::/64'],
                      'local_pods': ['10.42.2.5', '2001:db8:42:2::5', '10.42.2.53', '2001:db8:42:2::53'], 'floating_ips': []},
            'gw1': {'node_ips': ['192.168.50.13', 'fd00:50::13'], 'pod_cidrs': ['10.42.3.0/24', '2001:db8:42:3::/64'], 'local_pods': [],
                    'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.5'},
                                     {'external_ip': '2001:db8:100::10', 'internal_ip': '2001:db8:42:1::5'}]},
        },
    }
    assert json.loads(json.dumps(plan)) == plan  # plain data: it becomes a fact of every host


@pytest.mark.parametrize('node', ['node1', 'node2', 'gw1'])
@pytest.mark.parametrize('prefix, families', [('cn-', ['ipv4', 'ipv6']), ('kr-', ['ipv6']), ('x-', [])])
def test_a_nodes_share_is_what_node_state_renders_for_it(node, prefix, families):
    assert node_args(node_plan(LAB), node, prefix, families) == node_state(LAB, node, prefix=prefix, masquerade_families=families)


def test_a_share_reuses_the_plans_lists_instead_of_copying_them():
    plan = node_plan(LAB)
    share = node_args(plan, 'node1')
    assert share['ipset'][2]['entries'] is plan['shared']['entries']['svip']
    assert share['vip']['addresses'] is plan['shared']['entries']['svip']


def test_a_node_the_plan_lacks_is_named():
    with pytest.raises(ValueError, match=r'^node node9 is not in nodes \(node1, node2, gw1\)$'):
        node_args(node_plan(LAB), 'node9')


def test_invalid_intent_fails_the_filter_or_is_kept_for_every_host():
    cluster = dict(LAB, service_cidrs=['10.42.0.0/16'])
    message = 'clusternet_cluster: service_cidrs entry 10.42.0.0/16 overlaps cluster_cidrs entry 10.42.0.0/16'
    with pytest.raises(AnsibleFilterError) as error:
        node_plan(cluster)
    assert str(error.value) == message
    assert node_plan(cluster, keep_error=True) == {'error': message}
    assert node_plan(None, keep_error=True) == {'error': 'clusternet_cluster: clusternet_cluster must be a mapping, got None'}


@pytest.mark.parametrize('form', ['json', 'yaml', 'group_vars'])
def test_the_intent_read_from_a_file_renders_as_the_variable_does(tmp_path, form):
    """clusternet_cluster_file: JSON, YAML, or a group_vars file moved out of the inventory."""
    path = tmp_path / ('cluster.' + form)
    if form == 'json':
        path.write_text(json.dumps(LAB))
    elif form == 'yaml':
        path.write_text(yaml.safe_dump(LAB, sort_keys=False))
    else:
        path.write_text(yaml.safe_dump({"clusternet_cluster": LAB}, sort_keys=False))
    assert node_plan(None, path=str(path)) == node_plan(LAB)


def test_a_file_intent_fails_every_host_with_an_error_naming_it(tmp_path):
    missing = str(tmp_path / 'missing.json')
    assert node_plan(None, keep_error=True, path=missing) == {
        'error': 'clusternet_cluster: clusternet_cluster_file %s: No such file or directory' % missing}
    broken = tmp_path / 'broken.yml'
    broken.write_text('nodes: [unclosed\n')
    assert 'is neither JSON nor YAML' in node_plan(None, keep_error=True, path=str(broken))['error']
    both = tmp_path / 'cluster.json'
    both.write_text(json.dumps(LAB))
    assert node_plan(LAB, keep_error=True, path=str(both)) == {
        'error': 'clusternet_cluster: set clusternet_cluster or clusternet_cluster_file (%s), not both' % both}
    # The file's content is validated as the variable is.
    both.write_text(json.dumps(dict(LAB, service_cidrs=['10.42.0.0/16'])))
    assert 'overlaps cluster_cidrs entry 10.42.0.0/16' in node_plan(None, keep_error=True, path=str(both))['error']
