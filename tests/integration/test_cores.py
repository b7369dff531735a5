"""The module and role integration tests again under the oldest and the newest ansible-core
that meta/runtime.yml claims (tests/lint/cores.py), each a pytest run of its own whose
harness drives that release's ansible-playbook (CLUSTERNET_ANSIBLE_BIN)."""

import json
import os
import subprocess
import sys

import cores
import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Every module and every role, through playbooks/site.yml and teardown.yml, and the action group.
SUITE = ['tests/integration/test_roles.py', 'tests/integration/test_action_group.py']
VERSION_PLAY = json.dumps([{'hosts': 'all', 'gather_facts': False,
                            'tasks': [{'ansible.builtin.debug': {'msg': '{{ ansible_version.full }}'}}]}])
SHOW_VERSION = 'import harness, sys; print(harness.run_playbook(sys.argv[1]).stdout)'


def controller_version(bindir):
    """The ansible-core release the harness runs with CLUSTERNET_ANSIBLE_BIN=bindir, read from a play."""
    env = dict(os.environ, CLUSTERNET_ANSIBLE_BIN=bindir, PYTHONPATH=os.path.join(REPO, 'tests'))
    out = subprocess.run([sys.executable, '-c', SHOW_VERSION, VERSION_PLAY], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)['plays'][0]['tasks'][0]['hosts']['localhost']['msg']


@pytest.mark.parametrize('major', sorted({cores.OLDEST, cores.NEWEST}))
def test_integration_suite_under(major):
    bindir = cores.ensure(major)
    assert controller_version(bindir).startswith(major + '.'), 'the harness did not run ansible-core %s' % major
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider'] + SUITE, cwd=REPO,
                          env=dict(os.environ, CLUSTERNET_ANSIBLE_BIN=bindir), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    assert proc.returncode == 0, 'under ansible-core %s:\n%s' % (major, proc.stdout[-8000:])
