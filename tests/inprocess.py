"""Run one of the collection's modules in this process: its own main(), its AnsibleModule
fed the given arguments as Ansible feeds them, and the result its exit_json or fail_json
printed, as a dict. The property driver (tests/property/driver.py) runs thousands of
examples through it; the fleet benchmark (bench/bench_fleet.py) profiles one run.

The caller makes ansible_collections.clusternet.node importable (build/collections on
sys.path). roles/persistence/files/restore.py has its own stand-in for AnsibleModule
instead: it runs on nodes at boot, where Ansible is not installed.
"""

import contextlib
import importlib
import io
import json

from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

MODULES = 'ansible_collections.clusternet.node.plugins.modules.'


def run_module(name, args, check=False, diff=False, around=contextlib.nullcontext):
    """clusternet.node.NAME's main() with args (a dict); its result dict. around() is a context
    manager entered just around main() (the module already imported), to time or profile it."""
    module = importlib.import_module(MODULES + name)
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff, _ansible_module_name='clusternet.node.' + name)
    out = io.StringIO()
    # Warnings are process-global: one run's must not reach the next run's result.
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access
    ansible_warnings._global_deprecations.clear()  # pylint: disable=protected-access
    with patch_module_args(payload), contextlib.redirect_stdout(out), around():
        try:
            module.main()
        except SystemExit:
            pass
    text = out.getvalue().strip()
    return json.loads(text.splitlines()[-1]) if text else {'failed': True, 'msg': 'no result printed'}
