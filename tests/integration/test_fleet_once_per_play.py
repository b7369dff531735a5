"""node_network on several namespace nodes in one play (FIELD_NOTES section 7): the intent is
validated and rendered once for the play, so an invalid intent fails every host before any
host's kernel is touched; a host the intent does not name fails alone, naming itself; every
other host gets its own share."""

import copy
import json
import os
import re
import subprocess
import tempfile

import pytest
import yaml
from harness import REPO, VENV_BIN, ansible_env

with open(os.path.join(REPO, 'inventories', 'lab', 'group_vars', 'all', 'cluster.yml')) as handle:
    LAB = yaml.safe_load(handle)['clusternet_cluster']

NODES = ('node1', 'node2', 'gw1')
APPLY = "clusternet.node.node_network : Apply this node's ipsets, service VIPs, masquerade and floating IPs"


def dumps(ns):
    """Everything a run could change in ns, as the tools print it."""
    return ns.out('ipset save; iptables-save; ip6tables-save; ip -d addr; ip -4 route show table all; ip -6 route show table all')


def strip_counters(text):
    """Without what changes by itself: iptables-save's packet counters and dated comments."""
    return '\n'.join(re.sub(r' \[\d+:\d+\]$', '', line) for line in text.splitlines() if not line.startswith('#'))


@pytest.fixture
def fleet(netns_factory):
    """The lab's three nodes, each a namespace with its node IPs on lo."""
    made = {}
    for name in NODES:
        ns = netns_factory()
        ip4, ip6 = LAB['nodes'][name]['node_ips']
        ns.run('ip addr add %s/32 dev lo && ip -6 addr add %s/128 dev lo nodad' % (ip4, ip6))
        made[name] = ns
    return made


def converge(fleet, cluster, hosts=NODES, from_file=False):
    """playbooks/site.yml over hosts (local connection, each in its namespace); the JSON report.
    from_file: the intent in a JSON file named by clusternet_cluster_file, not a variable."""
    with tempfile.TemporaryDirectory() as tmp:
        inventory = {'clusternet_nodes': {'hosts': {}}}
        for name in hosts:
            wrapper = os.path.join(tmp, 'python-' + name)
            with open(wrapper, 'w') as handle:
                handle.write('#!/bin/sh\nexec ip netns exec %s /usr/bin/python3 "$@"\n' % fleet[name].name)
            os.chmod(wrapper, 0o755)
            inventory['clusternet_nodes']['hosts'][name] = {'ansible_connection': 'local', 'ansible_python_interpreter': wrapper}
        with open(os.path.join(tmp, 'hosts.json'), 'w') as handle:
            json.dump(inventory, handle)
        extra = {'clusternet_vip_link_kind': 'ifb', 'clusternet_persist': False}
        if from_file:
            extra['clusternet_cluster_file'] = os.path.join(tmp, 'cluster.json')
            with open(extra['clusternet_cluster_file'], 'w') as handle:
                json.dump(cluster, handle)
        else:
            extra['clusternet_cluster'] = cluster
        with open(os.path.join(tmp, 'vars.json'), 'w') as handle:
            json.dump(extra, handle)
        proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', os.path.join(tmp, 'hosts.json'),
                               '-e', '@' + os.path.join(tmp, 'vars.json'), os.path.join(REPO, 'playbooks', 'site.yml')],
                              capture_output=True, text=True, env=ansible_env(), check=False)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError('ansible-playbook gave no report (rc %d):\n%s\n%s' % (proc.returncode, proc.stdout, proc.stderr)) from None


def results(report, host):
    """host's task results, in order: (task name, result)."""
    return [(task['task']['name'], task['hosts'][host]) for play in report['plays'] for task in play['tasks'] if host in task['hosts']]


def local_pods(ns):
    return ns.out('ipset list cn-local-pods; ipset list inet6:cn-local-pods')


@pytest.mark.parametrize('from_file', [False, True], ids=['variable', 'file'])
def test_invalid_intent_fails_every_host_before_any_kernel_is_touched(fleet, from_file):
    before = dict((name, strip_counters(dumps(ns))) for name, ns in fleet.items())
    cluster = copy.deepcopy(LAB)
    cluster['floating_ips'][0]['external_ip'] = '192.168.50.12'  # node2's address: every packet to node2 would go to web-0
    report = converge(fleet, cluster, from_file=from_file)
    for name in NODES:
        assert report['stats'][name]['failures'] == 1 and report['stats'][name]['changed'] == 0, report['stats']
        failed = [(task, result['msg']) for task, result in results(report, name) if result.get('failed')]
        assert failed == [(APPLY, 'clusternet_cluster: floating IP 192.168.50.12 is the node IP of node node2: '
                           'its traffic would be DNATed to 10.42.1.5')], name
    for name, ns in fleet.items():
        assert strip_counters(dumps(ns)) == before[name], name


def test_host_missing_from_the_intent_fails_alone_and_the_others_get_their_own_share(fleet):
    cluster = copy.deepcopy(LAB)
    del cluster['nodes']['gw1']
    cluster['floating_ips'] = []
    before = strip_counters(dumps(fleet['gw1']))
    report = converge(fleet, cluster)
    assert report['stats']['gw1']['failures'] == 1
    failed = [result for task, result in results(report, 'gw1') if result.get('failed')]
    assert failed[0]['msg'] == 'clusternet_cluster: node gw1 is not in nodes (node1, node2)'
    assert strip_counters(dumps(fleet['gw1'])) == before
    for name, pods in (('node1', ['10.42.1.5', '2001:db8:42:1::5']), ('node2', ['10.42.2.5', '10.42.2.53', '2001:db8:42:2::5', '2001:db8:42:2::53'])):
        assert report['stats'][name]['failures'] == 0 and report['stats'][name]['changed'] == 1, report['stats']
        members = local_pods(fleet[name])
        assert sorted(line for line in members.splitlines() if line[:1].isdigit()) == sorted(pods), members
    report = converge(fleet, cluster, hosts=('node1', 'node2'))
    assert [report['stats'][name]['changed'] for name in ('node1', 'node2')] == [0, 0]


def test_the_intent_from_a_file_converges_each_node_as_the_variable_does(fleet):
    report = converge(fleet, LAB, from_file=True)
    assert all(report['stats'][name]['changed'] == 1 and report['stats'][name]['failures'] == 0 for name in NODES), report['stats']
    members = local_pods(fleet['node1'])
    assert sorted(line for line in members.splitlines() if line[:1].isdigit()) == ['10.42.1.5', '2001:db8:42:1::5'], members
    # The same intent as a variable finds nothing to change on any node.
    report = converge(fleet, LAB)
    assert [report['stats'][name]['changed'] for name in NODES] == [0, 0, 0], report['stats']
