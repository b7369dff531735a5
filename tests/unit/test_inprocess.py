"""tests/inprocess.py: a module's main() run in this process, fed its arguments and modes as
Ansible feeds them, its exit_json or fail_json read back; on a stand-in module and a real one."""

import contextlib
import sys
import types

import inprocess
import pytest
from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils.basic import AnsibleModule

PROBE = '''
def main():
    module = AnsibleModule(argument_spec={'count': {'type': 'int', 'default': 1}, 'warn': {'type': 'bool', 'default': False}},
                           supports_check_mode=True)
    if module.params['warn']:
        module.warn('careful')
    if module.params['count'] < 0:
        module.fail_json(msg='count %d is negative' % module.params['count'])
    module.exit_json(changed=not module.check_mode, count=module.params['count'], diff_mode=module._diff)
'''


@pytest.fixture
def probe(monkeypatch):
    """A module of the collection's package that touches nothing. It runs as in the driver's and the
    benchmark's processes: not the controller (this one is once a test imported controller code,
    and a module's warnings then go to the display, not to its result)."""
    monkeypatch.setattr(ansible_internal, 'is_controller', False)
    module = types.ModuleType(inprocess.MODULES + 'probe')
    module.AnsibleModule = AnsibleModule
    exec(PROBE, module.__dict__)  # pylint: disable=exec-used
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_arguments_check_and_diff_modes_reach_the_module(probe):
    result = inprocess.run_module('probe', {'count': '3'})
    assert (result['changed'], result['count'], result['diff_mode']) == (True, 3, False)
    result = inprocess.run_module('probe', {}, check=True, diff=True)
    assert (result['changed'], result['count'], result['diff_mode']) == (False, 1, True)


def test_fail_json_is_the_result_and_warnings_stay_with_their_run(probe):
    result = inprocess.run_module('probe', {'count': -2, 'warn': True})
    assert result['failed'] and result['msg'] == 'count -2 is negative' and 'careful' in str(result['warnings'])  # its shape is ansible-core's
    assert 'warnings' not in inprocess.run_module('probe', {})


def test_around_is_entered_just_around_main(probe, monkeypatch):
    seen = []

    @contextlib.contextmanager
    def around():
        seen.append('enter')
        yield
        seen.append('exit')
    monkeypatch.setattr(probe, 'main', lambda: seen.append('main'))
    assert inprocess.run_module('probe', {}, around=around) == {'failed': True, 'msg': 'no result printed'}
    assert seen == ['enter', 'main', 'exit']


def test_a_real_module_refuses_before_touching_the_kernel():
    result = inprocess.run_module('vip', {'bogus': 1})
    assert result['failed'] and result['msg'].startswith('Unsupported parameters for') and 'module: bogus' in result['msg']
