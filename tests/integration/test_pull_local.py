"""The ansible-pull path: the roles run on the node itself (connection local, inventory
localhost, clusternet_node_name naming the node), inside a namespace that stands for the
node. First plain `ansible-playbook -c local -i localhost,` of tests/pull/local.yml, then
`ansible-pull` itself from a local git repository (file:// URL, offline), which adds the
checkout and --only-if-changed. Each run's kernel state is read back and compared with the
intent's share for that node (sets per family, VIPs and routes, masquerade, FIPs); reruns
report changed=0."""

import os
import shutil
import subprocess
import sys

from harness import REPO, VENV_BIN, ansible_env

sys.path.insert(0, os.path.join(REPO, 'bench'))

import bench_fleet as bf  # noqa: E402

LOCAL_PLAYBOOK = os.path.join(REPO, 'tests', 'pull', 'local.yml')
NODES = 3


def as_node(ns, i):
    """eth0 (a veth whose peer stays inside) with node i's IPs, as bench_fleet's nodes."""
    ip4, ip6 = bf.node_ips(i)
    ns.run('ip link add eth0 type veth peer name eth0p && ip link set eth0p up && ip addr add %s/16 dev eth0'
           ' && ip addr add %s/64 dev eth0 nodad && ip link set eth0 up' % (ip4, ip6))


def write_repo(path, services=NODES):
    """The directory an operator's repository would hold: the playbook, the intent, node settings."""
    os.makedirs(path, exist_ok=True)
    shutil.copy(LOCAL_PLAYBOOK, os.path.join(path, 'local.yml'))
    with open(os.path.join(path, 'cluster.yml'), 'w') as handle:
        handle.write(bf.intent_yaml(bf.intent(NODES, services)) + 'clusternet_vip_link_kind: ifb\n')


def run_in(ns, cmd, cwd=None):
    proc = subprocess.run(['ip', 'netns', 'exec', ns.name] + cmd, capture_output=True, text=True, check=False, cwd=cwd,
                          env=ansible_env(ANSIBLE_STDOUT_CALLBACK='default'))
    assert proc.returncode == 0, '%s failed (%d):\n%s\n%s' % (cmd[0], proc.returncode, proc.stdout[-6000:], proc.stderr[-3000:])
    return proc.stdout


def localhost_changes(stdout):
    recap = bf.parse_recap(stdout)
    assert list(recap) == ['localhost'], stdout[-3000:]
    assert recap['localhost']['failed'] == 0 and recap['localhost']['unreachable'] == 0
    return recap['localhost']['changed']


def assert_node_state(ns, i, services=NODES):
    assert bf.compare_state(bf.expected_state(NODES, i, services), bf.read_state(ns.name)) == []


def test_local_mode_playbook_converges_the_node_it_runs_on(netns, tmp_path):
    as_node(netns, 0)  # a gateway with pods: every kind of state
    write_repo(str(tmp_path))
    cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-c', 'local', '-i', 'localhost,', '-e', 'clusternet_node_name=n00000', '-e', 'clusternet_persist=false',
           '-e', 'ansible_python_interpreter=/usr/bin/python3', 'local.yml']
    assert localhost_changes(run_in(netns, cmd, cwd=str(tmp_path))) > 0
    assert_node_state(netns, 0)
    assert bf.expected_state(NODES, 0)['fip']  # the comparison covered FIP rules, not only their absence
    assert localhost_changes(run_in(netns, cmd, cwd=str(tmp_path))) == 0
    assert_node_state(netns, 0)


def test_ansible_pull_from_a_local_git_repository(netns, tmp_path):
    """ansible-pull clones (git module, depth 1) into -d, then runs local.yml there with -c local
    -i localhost,; --only-if-changed skips the play when the checkout did not move."""
    as_node(netns, 1)
    origin, checkout = str(tmp_path / 'origin'), str(tmp_path / 'checkout')
    write_repo(origin)
    git = ['git', '-C', origin, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid']
    subprocess.run(['git', 'init', '-q', origin], check=True)
    subprocess.run(git + ['add', '.'], check=True)
    subprocess.run(git + ['commit', '-qm', 'intent'], check=True)
    pull = [os.path.join(VENV_BIN, 'ansible-pull'), '-U', 'file://' + origin, '-d', checkout,
            '-e', 'clusternet_node_name=n00001', '-e', 'clusternet_persist=false', 'local.yml']

    assert localhost_changes(run_in(netns, pull)) > 0
    assert_node_state(netns, 1)
    assert localhost_changes(run_in(netns, pull)) == 0
    out = run_in(netns, pull[:1] + ['--only-if-changed'] + pull[1:])
    assert 'Repository has not changed, quitting' in out and 'PLAY RECAP' not in out

    write_repo(origin, services=NODES + 1)  # one service added upstream
    subprocess.run(git + ['commit', '-qam', 'one more service'], check=True)
    assert localhost_changes(run_in(netns, pull[:1] + ['--only-if-changed'] + pull[1:])) > 0
    assert_node_state(netns, 1, services=NODES + 1)
    assert '10.96.0.4' in bf.expected_state(NODES, 1, NODES + 1)['vips']
