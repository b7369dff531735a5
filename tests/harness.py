"""Test harness: network namespaces the tests create and remove, and running the
collection's modules inside them.

A module call runs the module's own main() in a Python process of its own inside the
namespace (tests/inprocess.py): well under a second where an ansible-playbook run takes
seconds. Its result is what the module prints, reshaped where the controller reshapes what
the tests read (_direct_result). via='playbook' runs it as a task of an ansible-playbook run
instead, as users run it, through AnsiballZ and the controller. That path stays proven: every
module takes it in tests/integration/test_node_info.py::
test_reports_what_the_kernel_holds_and_round_trips, the kill -9 tests of
test_ipset_hardening.py kill a real AnsiballZ process, and node_apply (an action plugin), the
roles, module_defaults and every playbook the tests write run through run_playbook.

Nothing here touches the root network namespace: every kernel command goes
through `ip netns exec NS`.
"""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, 'build', 'collections')
CALLBACKS = os.path.join(REPO, 'tests', 'callback_plugins')
VENV_BIN = os.path.dirname(sys.executable)
# The controller's ansible-core: this venv's, or another release's venv (tests/lint/cores.py).
ANSIBLE_BIN = os.environ.get('CLUSTERNET_ANSIBLE_BIN') or VENV_BIN

# The managed node's Python decides the pyroute2 version a module runs with:
# this venv carries the newest supported release, Debian 12's /usr/bin/python3
# carries python3-pyroute2 0.7.2, the oldest.
INTERPRETERS = {
    'pyroute2-0.9': sys.executable,
    'pyroute2-0.7': '/usr/bin/python3',
}


def link_collection():
    """build/collections/ansible_collections/clusternet/node -> the repo root."""
    target = os.path.join(COLLECTIONS, 'ansible_collections', 'clusternet')
    os.makedirs(target, exist_ok=True)
    link = os.path.join(target, 'node')
    if not os.path.islink(link):
        os.symlink(REPO, link)
    return COLLECTIONS


def link_ansible():
    """build/ansible/ansible -> this venv's ansible package: a sys.path entry that adds ansible and
    nothing else, so /usr/bin/python3 runs a module with ansible's module_utils and its own pyroute2."""
    target = os.path.join(REPO, 'build', 'ansible')
    os.makedirs(target, exist_ok=True)
    link = os.path.join(target, 'ansible')
    if not os.path.islink(link):
        package = importlib.util.find_spec('ansible').submodule_search_locations[0]
        with contextlib.suppress(FileExistsError):  # another test process made it first
            os.symlink(package, link)
    return target


def ansible_env(**extra):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': link_collection(),
        'ANSIBLE_CALLBACK_PLUGINS': CALLBACKS,
        'ANSIBLE_STDOUT_CALLBACK': 'result_json',
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
        'PATH': ANSIBLE_BIN + os.pathsep + VENV_BIN + os.pathsep + env.get('PATH', ''),
    })
    env.update(extra)
    return env


class Netns(object):
    """A network namespace created for one test, deleted after it."""

    def __init__(self, name=None):
        self.name = name or 'cnt-' + uuid.uuid4().hex[:10]
        subprocess.run(['ip', 'netns', 'add', self.name], check=True)
        self.run('ip link set lo up')

    def delete(self):
        subprocess.run(['ip', 'netns', 'del', self.name], check=False)

    def run(self, cmd, check=True, input=None, **kwargs):
        """Run a shell command inside the namespace; returns CompletedProcess (text)."""
        proc = subprocess.run(['ip', 'netns', 'exec', self.name, 'sh', '-c', cmd],
                              capture_output=True, text=True, input=input, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError('in %s: %r failed (%d): %s%s' % (self.name, cmd, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def out(self, cmd):
        return self.run(cmd).stdout

    def popen(self, cmd, **kwargs):
        return subprocess.Popen(['ip', 'netns', 'exec', self.name, 'sh', '-c', cmd], **kwargs)

    def module(self, name, args, check=False, diff=False, python=None, expect_failure=False, via='direct'):
        """Run clusternet.node.NAME with args (a dict) in this namespace; return its result (run_module)."""
        return run_module(name, args, netns=self.name, check=check, diff=diff,
                          python=python, expect_failure=expect_failure, via=via)


def run_playbook(playbook_text, netns=None, python=None, extra_args=(), env=None):
    """Run a playbook against localhost (connection local), inside netns if given."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'play.yml')
        with open(path, 'w') as handle:
            handle.write(playbook_text)
        cmd = [os.path.join(ANSIBLE_BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
               '-e', 'ansible_python_interpreter=%s' % (python or sys.executable)]
        cmd += list(extra_args) + [path]
        if netns:
            cmd = ['ip', 'netns', 'exec', netns] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(**(env or {})), check=False)


def run_module(name, args, netns=None, check=False, diff=False, python=None, expect_failure=False, via='direct'):
    """clusternet.node.NAME with args (a dict), inside netns if given; its result. via='direct'
    runs the module's main() in a Python process of its own (tests/inprocess.py), via='playbook'
    runs it as a task of an ansible-playbook run. Raises unless it failed exactly when expected."""
    runner = {'direct': _direct_result, 'playbook': _playbook_result}[via]
    result = runner(name, args, netns, check, diff, python)
    failed = bool(result.get('failed'))
    if failed != expect_failure:
        raise AssertionError('clusternet.node.%s %s: %s' % (
            name, 'failed' if failed else 'did not fail', json.dumps(result, indent=1)[:6000]))
    return result


def _playbook_result(name, args, netns, check, diff, python):
    task = {'name': 'module under test', 'clusternet.node.' + name: args}
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [task]}]
    extra = []
    if check:
        extra.append('--check')
    if diff:
        extra.append('--diff')
    proc = run_playbook(json.dumps(play), netns=netns, python=python, extra_args=extra)
    try:
        report = json.loads(proc.stdout)
        return report['plays'][0]['tasks'][0]['hosts']['localhost']
    except (ValueError, KeyError, IndexError):
        raise AssertionError('ansible-playbook gave no result (rc %d):\n%s\n%s' % (proc.returncode, proc.stdout, proc.stderr)) from None


# argv: the module's name (so ps and /proc show which module runs), then sys.path entries;
# stdin: [args, check, diff]; prints the module's result as JSON.
DIRECT = '''
import json, sys
sys.path[:0] = sys.argv[2:]
from inprocess import run_module
print(json.dumps(run_module(sys.argv[1], *json.load(sys.stdin))))
'''


def _direct_result(name, args, netns, check, diff, python):
    cmd = [python or sys.executable, '-c', DIRECT, name, link_ansible(), link_collection(), os.path.join(REPO, 'tests')]
    if netns:
        cmd = ['ip', 'netns', 'exec', netns] + cmd
    proc = subprocess.run(cmd, input=json.dumps([args, check, diff]), capture_output=True, text=True,
                          env=ansible_env(), check=False)
    try:
        result = json.loads(proc.stdout.splitlines()[-1])
    except (ValueError, IndexError):
        # A module process that died (killed, crashed) is a failed task to the controller.
        result = {'failed': True, 'msg': 'the module process printed no result (exit %d)' % proc.returncode,
                  'rc': proc.returncode, 'module_stdout': proc.stdout, 'module_stderr': proc.stderr}
    # What the controller adds or reshapes before a callback sees the result: `changed` on a
    # failure too; ansible-core 2.19's modules print each warning as a WarningSummary, a callback
    # gets its message.
    result.setdefault('changed', False)
    if 'warnings' in result:
        result['warnings'] = [w['event']['msg'] if isinstance(w, dict) else w for w in result['warnings']]
    return result
