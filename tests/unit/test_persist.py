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


# ---- the runner trusts neither its directory nor its input ----

# Stand-ins for the collection's modules, bundled with the real families.py: each records
# its call in a file, so a test sees which calls ran without any kernel.
RECORDER = '''from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(record=dict(type='str', required=True), name=dict(type='str'),
                                              node_ips=dict(type='list', elements='str', default=[]),
                                              state=dict(type='str', default='present')))
    with open(module.params['record'], 'a') as handle:
        handle.write('%s %s\\n' % (__name__.rsplit('.', 1)[-1], module.params['name']))
    module.exit_json(changed=True)
'''
BOOM = 'def main():\n    raise RuntimeError("a bug in this module")\n'
DRIVER = '''
import importlib.util, sys
spec = importlib.util.spec_from_file_location("r", sys.argv[1])
r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)
r.present_node_ips = lambda: set(sys.argv[3].split())  # as ip -j addr prints them
sys.exit(r.main(["--node-ip-timeout", "1", sys.argv[2]]))
'''


def state_dir(tmp_path, calls):
    """DIR as the role writes it (root's, 0700, files 0600), with the stand-in modules."""
    directory = tmp_path / 'state'
    directory.mkdir(mode=0o700)
    with open(os.path.join(REPO, 'plugins', 'module_utils', 'families.py')) as handle:
        families = handle.read().rstrip('\n')
    files = {'plugins/module_utils/families.py': families, 'plugins/modules/ipset.py': RECORDER.rstrip('\n'),
             'plugins/modules/vip.py': RECORDER.rstrip('\n'), 'plugins/modules/boom.py': BOOM.rstrip('\n')}
    with open(str(directory / 'plugins.bundle'), 'w') as bundle:
        for path, source in sorted(files.items()):
            bundle.write('%s%s %d\n%s\n' % (restore.MARKER, path, len(source.split('\n')), source))
    text = calls if isinstance(calls, str) else json.dumps({'calls': calls})
    (directory / 'state.json').write_text(text.replace('"RECORD"', json.dumps(str(tmp_path / 'record'))))
    for name in ('plugins.bundle', 'state.json'):
        os.chmod(str(directory / name), 0o600)
    return directory


def run_runner(directory, present=''):
    """The runner under Debian's python3 (no Ansible), its node IPs faked; (exit status, log, calls run)."""
    proc = subprocess.run(['/usr/bin/python3', '-c', DRIVER, RUNNER, str(directory), present],
                          capture_output=True, text=True, check=False, timeout=60)
    assert 'Traceback' not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    record = directory.parent / 'record'
    return proc.returncode, proc.stdout, record.read_text().split('\n')[:-1] if record.exists() else []


def call(module, name, **args):
    """A call of a stand-in module; state_dir points its record at the test's file."""
    return {'module': module, 'args': dict(args, record='RECORD', name=name)}


def test_every_valid_call_runs_and_every_malformed_one_is_reported(tmp_path):
    directory = state_dir(tmp_path, [
        call('ipset', 'a'), {'module': 'nope', 'args': {}}, {'module': 'ipset'}, {'module': 'ipset', 'args': ['x']},
        'ipset b', {'module': 'ipset', 'args': {}, 'when': 'x'}, call('boom', 'c'), call('ipset', 'd' * 500), call('ipset', 'e'),
        {'module': ['vip'], 'args': {}}])
    rc, log, ran = run_runner(directory)
    assert rc == 1
    assert ran == ['ipset a', 'ipset %s' % ('d' * 500), 'ipset e']
    for line in ("state.json call 2: module 'nope' is not one the bundle holds (boom, ipset, vip): not run",
                 'state.json call 3: module ipset has no args: not run',
                 "state.json call 4: module ipset: args is ['x'], not a mapping: not run",
                 "state.json call 5: not a mapping: 'ipset b': not run",
                 "state.json call 6: unknown keys 'when': not run",
                 "state.json call 10: module ['vip'] is not one the bundle holds (boom, ipset, vip): not run",
                 'boom c: FAILED: module boom raised RuntimeError: a bug in this module'):
        assert line + '\n' in log, (line, log)


@pytest.mark.parametrize('text, reason', [
    ('{"calls": [', 'Expecting value'),
    ('{"calls": {"module": "ipset"}}', 'state.json holds no list "calls"'),
    ('[]', 'state.json holds no list "calls": []'),
    (json.dumps({'calls': 'x' * 5000}), "state.json holds no list \"calls\": {'calls': 'xxxx"),
], ids=['not JSON', 'calls a mapping', 'a list', 'calls a long string'])
def test_state_json_that_is_not_a_list_of_calls_runs_nothing(tmp_path, text, reason):
    rc, log, ran = run_runner(state_dir(tmp_path, text))
    assert rc == 1 and ran == []
    assert log.startswith('refusing to restore from %s, nothing was run: ' % (tmp_path / 'state')) and reason in log, log
    assert len(log) < 500  # the value is cut, not repeated whole


@pytest.mark.parametrize('node_ips', [['192.0.2.11/32', '2001:DB8::11'], ['2001:db8:0::11/128', '192.0.2.11']])
def test_node_ips_are_compared_as_addresses_not_text(tmp_path, node_ips):
    """Forms the vip module accepts but the kernel does not print are the same addresses."""
    directory = state_dir(tmp_path, [call('vip', 'v', node_ips=node_ips), call('ipset', 'a')])
    rc, log, ran = run_runner(directory, present='127.0.0.1 192.0.2.11 2001:db8::11')
    assert (rc, ran) == (0, ['ipset a', 'vip v']), log
    assert 'waiting' not in log


def test_missing_node_ips_are_named_canonically(tmp_path):
    directory = state_dir(tmp_path, [call('vip', 'v', node_ips=['192.0.2.11/32', '2001:DB8::11'])])
    rc, log, ran = run_runner(directory, present='192.0.2.11')
    assert (rc, ran) == (1, [])
    assert 'waiting up to 1 s for node IPs 192.0.2.11, 2001:db8::11 ' in log
    assert 'node IPs 2001:db8::11 not present after 1 s' in log


def _unsafe(tmp_path, directory, how):
    if how == 'directory owned by nobody':
        os.chown(str(directory), 65534, 65534)
        return 'directory %s is owned by uid 65534, not root' % directory
    if how == 'directory 0777':
        os.chmod(str(directory), 0o777)
        return 'directory %s has mode 0777: group or others can write it' % directory
    if how == 'directory 0770':
        os.chmod(str(directory), 0o770)
        return 'directory %s has mode 0770' % directory
    if how == 'directory a symlink':
        os.rename(str(directory), str(tmp_path / 'real'))
        os.symlink(str(tmp_path / 'real'), str(directory))
        return '%s is a symbolic link' % directory
    if how == 'parent 0777':
        os.chmod(str(tmp_path), 0o777)
        return 'directory %s has mode 0777' % tmp_path
    name = 'plugins.bundle' if 'bundle' in how else 'state.json'
    path = str(directory / name)
    if how.endswith('owned by nobody'):
        os.chown(path, 65534, 65534)
        return '%s is owned by uid 65534, not root' % path
    if how.endswith('group-writable'):
        os.chmod(path, 0o620)
        return '%s has mode 0620' % path
    if how.endswith('a symlink'):
        os.rename(path, str(tmp_path / name))
        os.symlink(str(tmp_path / name), path)
        return '%s is a symbolic link' % path
    if how.endswith('a fifo'):
        os.unlink(path)
        os.mkfifo(path, 0o600)
        return '%s is not a regular file' % path
    raise AssertionError(how)


NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason='giving a file to another user (chown) needs root; make test runs as root')


@pytest.mark.parametrize('how', [
    pytest.param('directory owned by nobody', marks=NEEDS_ROOT), 'directory 0777', 'directory 0770', 'directory a symlink',
    'parent 0777', pytest.param('state.json owned by nobody', marks=NEEDS_ROOT), 'state.json group-writable',
    'state.json a symlink', 'state.json a fifo', pytest.param('bundle owned by nobody', marks=NEEDS_ROOT),
    'bundle group-writable', 'bundle a symlink'])
def test_unsafe_directory_or_file_runs_nothing(tmp_path, how):
    directory = state_dir(tmp_path, [call('ipset', 'a')])
    reason = _unsafe(tmp_path, directory, how)
    rc, log, ran = run_runner(directory)
    assert (rc, ran) == (1, []), log
    assert log == 'refusing to restore from %s, nothing was run: %s\n' % (directory, reason) or (
        log.startswith('refusing to restore from %s, nothing was run: %s' % (directory, reason))), log


def test_sticky_parent_writable_by_others_is_safe(tmp_path):
    """A sticky directory lets others remove only their own entries: /tmp, say."""
    directory = state_dir(tmp_path, [call('ipset', 'a')])
    os.chmod(str(tmp_path), 0o1777)
    assert run_runner(directory)[::2] == (0, ['ipset a'])


def test_nothing_persisted_yet_is_not_an_error_but_the_directory_is_still_checked(tmp_path):
    directory = tmp_path / 'state'
    directory.mkdir(mode=0o700)
    rc, log, _ran = run_runner(directory)
    assert rc == 0 and 'nothing persisted yet' in log
    os.chmod(str(directory), 0o777)
    rc, log, _ran = run_runner(directory)
    assert rc == 1 and 'has mode 0777' in log


def test_root_trusts_only_roots_files_and_root_is_trusted_by_anyone(tmp_path, monkeypatch):
    """The runner trusts root and the user running it: pretend to be the other of root and the
    files' owner, so either way one side of the rule is held."""
    directory = state_dir(tmp_path, [call('ipset', 'a')])
    owner = os.stat(str(directory)).st_uid
    if owner == 0:
        monkeypatch.setattr(restore.os, 'geteuid', lambda: 65534)
        assert restore.read_state_dir(str(directory))['state.json'].startswith('{"calls"')
    else:
        monkeypatch.setattr(restore.os, 'geteuid', lambda: 0)
        with pytest.raises(restore.Refused, match='directory %s is owned by uid %d, not root' % (tmp_path, owner)):
            restore.read_state_dir(str(directory))
