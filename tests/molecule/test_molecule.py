"""The Molecule scenarios as pytest tests, so `make molecule` and `make test` run them and
pytest's summary counts them; and proof that a failing verify fails the run and still
destroys its containers."""

import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from harness import REPO

VENV_BIN = os.path.dirname(sys.executable)
SCENARIOS = sorted(name for name in os.listdir(os.path.join(REPO, 'molecule'))
                   if os.path.isfile(os.path.join(REPO, 'molecule', name, 'molecule.yml')))
CONTAINERS_CONF = os.path.join(REPO, 'lab', 'containers.conf')


class Molecule(object):
    """One `molecule ARGS` run in the background, its output in a file (no pipe to fill)."""

    def __init__(self, args, cwd, log):
        env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get('PATH', ''), NO_COLOR='1', PY_COLORS='0',
                   ANSIBLE_FORCE_COLOR='0', ANSIBLE_NOCOLOR='1', CONTAINERS_CONF=CONTAINERS_CONF)
        self.log = log
        with open(log, 'w') as out:
            self.proc = subprocess.Popen([os.path.join(VENV_BIN, 'molecule')] + list(args), cwd=cwd, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def result(self, timeout=1200):
        """(exit code, output) once the run ends."""
        returncode = self.proc.wait(timeout=timeout)
        with open(self.log) as out:
            return returncode, out.read()


def lab_prefix(scenario_dir):
    with open(os.path.join(scenario_dir, 'molecule.yml')) as conf:
        return yaml.safe_load(conf)['provisioner']['inventory']['group_vars']['all']['clusternet_lab']['prefix']


def leftovers(prefix):
    """What a scenario with this lab prefix left behind: containers and its switch netns."""
    containers = subprocess.run(['podman', 'ps', '-a', '--filter', 'label=clusternet.lab=' + prefix, '--format', '{{.Names}}'],
                                env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF),
                                capture_output=True, text=True, check=True).stdout.split()
    netns = [line.split()[0] for line in subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True, check=True).stdout.splitlines()]
    return containers + [ns for ns in netns if ns == prefix + '-sw']


def tail(text, lines=120):
    return '\n'.join(text.splitlines()[-lines:])


FAILING = """\
    prerun: false
    dependency: {name: shell, command: bash REPO/lab/collections.sh}
    driver: {name: default}
    provisioner:
      name: ansible
      env: {ANSIBLE_COLLECTIONS_PATH: REPO/build/collections}
      playbooks: {create: REPO/lab/create.yml, destroy: REPO/lab/destroy.yml}
      inventory:
        hosts: {all: {children: {clusternet_nodes: {hosts: {n1: {ansible_host: cn-mol-fail-n1}}}}}}
        group_vars:
          all:
            ansible_connection: containers.podman.podman
            ansible_python_interpreter: /usr/bin/python3
            clusternet_lab: {prefix: cn-mol-fail, networks: [192.168.80.0/24], outside: [192.168.80.100]}
            clusternet_cluster: {nodes: {n1: {node_ips: [192.168.80.11], pod_cidrs: [10.80.1.0/24]}}}
    verifier: {name: testinfra}
    scenario: {test_sequence: [dependency, destroy, create, converge, verify, destroy]}
"""
FAILING_CONVERGE = """\
    - name: Reach the node
      hosts: clusternet_nodes
      gather_facts: false
      tasks:
        - name: Read its links
          ansible.builtin.command: ip -br link
          changed_when: false
"""
FAILING_TESTS = """\
    import testinfra

    NODE = testinfra.get_host('podman://cn-mol-fail-n1')


    def test_the_node_is_there():
        assert NODE.run('ip link show eth0').rc == 0


    def test_a_set_nobody_created():
        assert NODE.run('ipset list cn-never-created').rc == 0
"""


def failing_project(root):
    """A project holding one scenario on the same create/destroy playbooks whose verify has one
    passing and one failing test."""
    scenario = root / 'molecule' / 'verify-fails'
    (scenario / 'tests').mkdir(parents=True)
    (scenario / 'molecule.yml').write_text(textwrap.dedent(FAILING).replace('REPO', REPO))
    (scenario / 'converge.yml').write_text(textwrap.dedent(FAILING_CONVERGE))
    (scenario / 'tests' / 'test_fails.py').write_text(textwrap.dedent(FAILING_TESTS))
    return str(root)


@pytest.fixture(scope='module')
def runs(request, tmp_path_factory):
    """The selected scenarios, and the failing one, start together: a run mostly waits on
    `podman exec` round trips rather than using CPU, and their containers and namespaces
    do not overlap. The collection and the image are made ready first, so the runs do not
    race to make them."""
    wanted = set()
    for item in request.session.items:
        if item.originalname == 'test_scenario':
            wanted.add(item.callspec.params['scenario'])
        elif item.originalname == test_failing_verify_fails_the_run_and_destroys_its_containers.__name__:
            wanted.add('verify-fails')
    # Both releases' images: the default scenario's nodes run Debian 12 and 13.
    for script in (['collections.sh'], ['image.sh', 'bookworm', 'trixie']):
        subprocess.run(['bash', os.path.join(REPO, 'lab', script[0])] + script[1:], check=True,
                       env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF))
    logs = tmp_path_factory.mktemp('molecule-logs')
    started = dict((name, Molecule(['test', '-s', name], REPO, str(logs / name))) for name in SCENARIOS if name in wanted)
    if 'verify-fails' in wanted:
        started['verify-fails'] = Molecule(['test', '-s', 'verify-fails'], failing_project(tmp_path_factory.mktemp('failing')),
                                           str(logs / 'verify-fails'))
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.terminate()
            run.proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize('scenario', SCENARIOS)
def test_scenario(scenario, runs):
    returncode, output = runs[scenario].result()
    assert returncode == 0, tail(output)
    assert leftovers(lab_prefix(os.path.join(REPO, 'molecule', scenario))) == []


@pytest.mark.slow
def test_failing_verify_fails_the_run_and_destroys_its_containers(runs):
    """Molecule must exit non-zero after the verifier ran (one test passed, one failed)
    and leave no container or namespace behind."""
    returncode, output = runs['verify-fails'].result()
    assert returncode != 0, tail(output)
    assert '1 failed, 1 passed' in output and 'Verifier tests failed' in output, tail(output)
    assert leftovers('cn-mol-fail') == []
