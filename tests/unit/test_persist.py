"""The persistence role's pure parts: the restore runner's stand-in for AnsibleModule
checked against ansible-core's own argument-spec validation on each module's real
argument_spec, the bundle format, the bounded wait for node IPs, and the role's
persisted arguments held to the apply roles' tasks."""

import importlib
import importlib.util
import json
import os
import subprocess

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from harness import Netns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(REPO, 'roles', 'persistence')
RUNNER = os.path.join(ROLE, 'files', 'restore.py')
spec = importlib.util.spec_from_file_location('clusternet_restore', RUNNER)
restore = importlib.util.module_from_spec(spec)
spec.loader.exec_module(restore)

MODULES = ('ipset', 'vip', 'masquerade', 'fip')


class Captured(Exception):
    pass


def argument_spec(name, monkeypatch):
    """The argument_spec the module's main() gives AnsibleModule."""
    module = importlib.import_module('ansible_collections.clusternet.node.plugins.modules.' + name)
    seen = {}

    def capture(argument_spec, **_kwargs):
        seen['spec'] = argument_spec
        raise Captured()
    monkeypatch.setattr(module, 'AnsibleModule', capture)
    with pytest.raises(Captured):
        module.main()
    return seen['spec']


# Arguments as the roles render them, and as a user could write them (strings for
# ints and bools, options left to their defaults, suboptions missing).
CASES = {
    'ipset': [
        {'name': 'cn-svip', 'entries': ['10.43.0.10', '2001:db8:43::10'], 'exclusive': True, 'state': 'present'},
        {'name': 'cn-svip-prt', 'set_type': 'hash:ip,port', 'families': ['ipv4'], 'maxelem': '65536', 'hashsize': 1024,
         'exclusive': 'yes', 'state': 'present', 'ipv6_name': 'v6-prt'},
        {'name': 'x', 'entries': '10.0.0.1,10.0.0.2', 'families': 'ipv6'},
    ],
    'vip': [
        {'addresses': ['10.43.0.10'], 'node_ips': ['192.168.50.13'], 'interface': 'kube-dummy-if', 'link_kind': 'ifb',
         'exclusive': True, 'delete_interface': False, 'state': 'present'},
        {'addresses': ['10.43.0.10'], 'exclusive': 'false', 'delete_interface': 0},
        {},
    ],
    'masquerade': [
        {'cluster_cidrs': ['10.42.0.0/16'], 'pod_cidrs': ['10.42.3.0/24'], 'chain': 'CLUSTERNET-POSTRTG',
         'comment': 'clusternet masq', 'random_fully': True, 'skip_mark': '0x4000/0x4000', 'state': 'present'},
        {'cluster_cidrs': ['10.42.0.0/16'], 'random_fully': 'no'},
    ],
    'fip': [
        {'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.5'}], 'exclusive': True,
         'dnat_chain': 'CLUSTERNET-FIP-DNAT', 'snat_chain': 'CLUSTERNET-FIP-SNAT', 'flush_conntrack': True, 'state': 'present'},
        {'floating_ips': [{'external_ip': '198.51.100.10'}], 'state': 'absent'},
        {},
    ],
}
BAD = {
    'ipset': [{}, {'name': 'x', 'state': 'gone'}, {'name': 'x', 'typo': 1}, {'name': 'x', 'families': ['ipv5']},
              {'name': 'x', 'maxelem': 'many'}],
    'vip': [{'exclusive': 'perhaps'}],
    'masquerade': [{'cluster_cidrs': {'a': 1}}],
    'fip': [{'floating_ips': [{'internal_ip': '10.0.0.1'}]}, {'floating_ips': [{'external_ip': '1.2.3.4', 'extra': 1}]}],
}


@pytest.mark.parametrize('name', MODULES)
def test_runner_params_are_ansibles_params(name, monkeypatch):
    """Same arguments, same params as ansible-core computes from the module's own spec."""
    spec = argument_spec(name, monkeypatch)
    for args in CASES[name]:
        result = ArgumentSpecValidator(spec).validate(dict(args))
        assert not result.error_messages, (args, result.error_messages)
        assert restore.validate(spec, args) == result.validated_parameters, args


@pytest.mark.parametrize('name', MODULES)
def test_runner_refuses_what_ansible_refuses(name, monkeypatch):
    spec = argument_spec(name, monkeypatch)
    for args in BAD[name]:
        assert ArgumentSpecValidator(spec).validate(dict(args)).error_messages, args
        with pytest.raises(ValueError):
            restore.validate(spec, args)


def test_bundle_reads_files_by_line_count_even_with_marker_lines_inside():
    inner = restore.MARKER + 'not/a/file.py 3'
    text = '%sa.py 2\nx = 1\n%s\n%sb/c.py 1\ny = 2\n' % (restore.MARKER, inner, restore.MARKER)
    assert restore.read_bundle(text) == {'a.py': 'x = 1\n%s\n' % inner, 'b/c.py': 'y = 2\n'}
    with pytest.raises(ValueError, match='line 1 is outside any file'):
        restore.read_bundle('stray\n' + text)


def test_wait_for_node_ips_is_bounded():
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds
    missing = restore.wait_for(['192.0.2.1', '2001:db8::1'], 2, clock=lambda: now[0], sleep=sleep,
                               present=lambda: {'2001:db8::1'})
    assert missing == ['192.0.2.1'] and now[0] == pytest.approx(2.0) and len(sleeps) == 8
    appear = iter([set(), set(), {'192.0.2.1'}])
    assert restore.wait_for(['192.0.2.1'], 60, clock=lambda: 0, sleep=lambda s: None, present=lambda: next(appear)) == []


def test_runner_runs_the_bundled_module_without_ansible(tmp_path):
    """Debian's python3 has no Ansible: the bundle and the stand-in are all the runner needs.
    Calls the modules refuse fail with the modules' own messages; in a namespace of the
    test's own all the same, in case one of them reached the kernel."""
    paths = sorted('plugins/module_utils/' + f for f in os.listdir(os.path.join(REPO, 'plugins', 'module_utils')) if f.endswith('.py'))
    paths += ['plugins/modules/%s.py' % m for m in MODULES]
    with open(tmp_path / 'plugins.bundle', 'w') as bundle:
        for path in paths:
            with open(os.path.join(REPO, path)) as handle:
                source = handle.read().rstrip('\n')
            bundle.write('%s%s %d\n%s\n' % (restore.MARKER, path, len(source.split('\n')), source))
    code = '''
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("r", sys.argv[1])
r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)
r.install(r.read_bundle(open(sys.argv[2]).read()))
out = [r.run_call({"module": "ipset", "args": {"name": "cn-t", "entries": ["not-an-entry"]}}),
       r.run_call({"module": "fip", "args": {"floating_ips": [{"external_ip": "not-an-ip", "internal_ip": "10.0.0.1"}]}}),
       r.run_call({"module": "vip", "args": {"bogus": 1}})]
print(json.dumps([sorted(m for m in sys.modules if m.split(".")[0] == "ansible"), out]))
'''
    ns = Netns()
    try:
        proc = subprocess.run(['ip', 'netns', 'exec', ns.name, '/usr/bin/python3', '-c', code, RUNNER, str(tmp_path / 'plugins.bundle')],
                              capture_output=True, text=True, check=True)
        assert ns.out('ipset list -n') == ''
    finally:
        ns.delete()
    ansible_modules, results = json.loads(proc.stdout)
    assert ansible_modules == ['ansible', 'ansible.module_utils', 'ansible.module_utils.basic']
    assert all(result['failed'] for result in results)
    assert 'not-an-entry' in results[0]['msg']
    assert 'not-an-ip' in results[1]['msg']
    assert results[2]['msg'] == 'Unsupported parameters for module: bogus'


def _module_task(role):
    with open(os.path.join(REPO, 'roles', role, 'tasks', 'main.yml')) as handle:
        task = yaml.safe_load(handle)[0]
    name = next(key for key in task if key.startswith('clusternet.node.'))
    return name[len('clusternet.node.'):], task[name]


def test_persisted_arguments_are_the_apply_roles_arguments():
    """The persisted calls use the same variables and expressions as the roles' module tasks."""
    with open(os.path.join(ROLE, 'vars', 'main.yml')) as handle:
        persisted = yaml.safe_load(handle)
    calls = persisted['persistence_calls']
    assert sorted(calls) == sorted(MODULES)
    for role in ('service_vips', 'masquerade', 'floating_ips'):
        module, args = _module_task(role)
        assert calls[module] == [args], role
    module, args = _module_task('ipsets')
    assert module == 'ipset'
    assert args.pop('exclusive') == '{{ ipsets_exclusive }}' and args.pop('state') == '{{ ipsets_state }}'
    assert "{'exclusive': ipsets_exclusive, 'state': ipsets_state}" in calls['ipset']
    # every other option is passed from the item, omitted when the item lacks it
    assert sorted(args) == sorted(persisted['persistence_ipset_keys'])
    for key, value in args.items():
        assert value in ('{{ item.%s }}' % key, '{{ item.%s | default(omit) }}' % key), key
