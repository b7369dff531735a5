"""The README's newcomer path, as written: build the artifact, install it into a project with the
README's command, and run the README's playbook over the README's inventory against one node (a
network namespace of this test). The node converges to the README's description, the rerun reports
no change, and clusternet_state=absent removes it all. Only what a namespace node cannot be is
changed: the connection (local, the module's Python inside the namespace), no sudo (the test is
root already), ifb instead of dummy (this kernel has no dummy), and no persistence (a namespace
node shares the host's files and systemd)."""

import json
import os
import re
import shlex
import subprocess

import pytest
import yaml
from harness import REPO, VENV_BIN, ansible_env

with open(os.path.join(REPO, 'README.md')) as handle:
    README = handle.read()


def blocks(lang):
    return re.findall(r'```%s\n(.*?)```' % lang, README, re.S)


def readme_commands(prefix):
    """The README's shell commands that start with prefix, comments dropped."""
    return [shlex.split(line.split('#')[0]) for block in blocks('sh') for line in block.splitlines()
            if line.startswith(prefix)]


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    """A user's project: the README's inventory.yml and site.yml, the collection installed from its artifact."""
    tmp = tmp_path_factory.mktemp('readme')
    build, = readme_commands('ansible-galaxy collection build')
    install, = readme_commands('ansible-galaxy collection install')
    proc = subprocess.run([os.path.join(VENV_BIN, build[0])] + build[1:] + ['--output-path', str(tmp)], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    artifact, = [name for name in os.listdir(str(tmp)) if name.endswith('.tar.gz')]
    project_dir = tmp / 'project'
    project_dir.mkdir()
    assert install[-1].endswith('/' + artifact), 'the README installs %s, the build writes %s' % (install[-1], artifact)
    proc = subprocess.run([os.path.join(VENV_BIN, install[0])] + install[1:-1] + ['--offline', str(tmp / artifact)],
                          cwd=str(project_dir), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inventory, playbook = blocks('yaml')[:2]
    assert 'clusternet.node.node_network' in playbook
    return project_dir, yaml.safe_load(inventory), playbook


def run(project, ns, tmp_path, *extra):
    project_dir, inventory, playbook = project
    wrapper = tmp_path / 'python-in-netns'
    wrapper.write_text('#!/bin/sh\nexec ip netns exec %s /usr/bin/python3 "$@"\n' % ns.name)
    wrapper.chmod(0o755)
    for host in inventory['all']['children']['clusternet_nodes']['hosts'].values():
        host.update(ansible_connection='local', ansible_python_interpreter=str(wrapper), ansible_become=False)
    inventory['all']['vars'].update(clusternet_vip_link_kind='ifb', clusternet_persist=False)
    (project_dir / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    (project_dir / 'site.yml').write_text(playbook)
    # As a user runs it, with no configuration: Ansible finds the collection in ./collections beside the
    # playbook. The configured path is an empty directory, so the checkout cannot stand in for the artifact.
    empty = tmp_path / 'no-collections'
    empty.mkdir(exist_ok=True)
    env = ansible_env(ANSIBLE_COLLECTIONS_PATH=str(empty))
    proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'inventory.yml', 'site.yml'] + list(extra),
                          cwd=str(project_dir), capture_output=True, text=True, env=env, check=False)
    try:
        stats = json.loads(proc.stdout)['stats']['node1']
    except (ValueError, KeyError):
        raise AssertionError('no report (rc %d):\n%s\n%s' % (proc.returncode, proc.stdout, proc.stderr)) from None
    assert proc.returncode == 0 and stats['failures'] == 0, proc.stdout[-3000:] + proc.stderr
    return stats


def test_readme_playbook_converges_a_node(project, netns, tmp_path):
    cluster = project[1]['all']['vars']['clusternet_cluster']
    ip4, ip6 = cluster['nodes']['node1']['node_ips']
    netns.run('ip addr add %s/32 dev lo && ip -6 addr add %s/128 dev lo nodad' % (ip4, ip6))

    assert run(project, netns, tmp_path)['changed'] > 0
    assert run(project, netns, tmp_path)['changed'] == 0

    # What the README says node1 now holds.
    sets = netns.out('ipset save')
    for name in ('cn-pod-subnets', 'cn-node-ips', 'cn-svip', 'cn-svip-prt', 'cn-local-pods'):
        assert 'create %s ' % name in sets and 'create inet6:%s ' % name in sets, name
    assert 'add cn-svip 10.43.0.10' in sets and 'add inet6:cn-svip 2001:db8:43::10' in sets
    routes = netns.out('ip route show table local dev kube-dummy-if; ip -6 route show table local dev kube-dummy-if')
    assert 'local 10.43.0.10 proto kernel scope host src %s' % ip4 in routes, routes
    assert 'local 2001:db8:43::10 proto kernel src %s ' % ip6 in routes, routes
    nat = netns.out('iptables-save -t nat')
    assert '-A CLUSTERNET-POSTRTG -s 10.42.0.0/16 ! -d 224.0.0.0/4' in nat, nat
    assert re.search(r'-A CLUSTERNET-FIP-DNAT -d 198\.51\.100\.10/32 .*-j DNAT --to-destination 10\.42\.1\.5', nat), nat

    assert run(project, netns, tmp_path, '-e', 'clusternet_state=absent')['changed'] > 0
    assert 'cn-' not in netns.out('ipset list -n')
    assert 'CLUSTERNET' not in netns.out('iptables-save -t nat; ip6tables-save -t nat')
    assert 'kube-dummy-if' not in netns.out('ip link')
