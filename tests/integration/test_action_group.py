"""meta/runtime.yml's action group: `module_defaults: group/clusternet.node.all` reaches
every module of the collection, checked on the real kernel in a throwaway namespace."""

import json

from harness import run_playbook


def play(tasks):
    return json.dumps([{
        'hosts': 'all', 'gather_facts': False,
        'module_defaults': {'group/clusternet.node.all': {'state': 'absent'}},
        'tasks': tasks,
    }])


def test_group_defaults_reach_every_module(netns):
    """The group's state=absent makes each module remove what a plain task would create."""
    netns.module('ipset', {'name': 'grp', 'entries': ['10.0.0.1', '2001:db8::1']})
    netns.module('masquerade', {'cluster_cidrs': ['10.42.0.0/16'], 'pod_cidrs': ['10.42.1.0/24']})
    proc = run_playbook(play([
        {'clusternet.node.ipset': {'name': 'grp'}},
        {'clusternet.node.masquerade': {}},
        {'clusternet.node.fip': {'floating_ips': [{'external_ip': '198.51.100.10'}]}},
        {'clusternet.node.vip': {'addresses': [], 'node_ips': []}},
    ]), netns=netns.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = json.loads(proc.stdout)['plays'][0]['tasks']
    assert [bool(task['hosts']['localhost'].get('changed')) for task in tasks] == [True, True, False, False]
    assert netns.out('ipset list -n') == ''
    assert 'CLUSTERNET-POSTRTG' not in netns.out('iptables-save -t nat')


def test_without_the_group_defaults_a_task_keeps_its_own_default(netns):
    """The same ipset task outside the group's defaults creates the set: the group is what removed it."""
    netns.module('ipset', {'name': 'grp', 'entries': ['10.0.0.1']})
    assert 'grp' in netns.out('ipset list -n').split()
