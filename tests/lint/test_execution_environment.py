"""The collection in an execution environment (AWX, Automation Controller): `ansible-builder create`
(the locked ansible-builder; no image build, no registry is reachable here) on a definition that installs
the built artifact gives a build context that carries the artifact, and the introspection that context's
image build runs finds the collection's own Python and system requirements (meta/execution-environment.yml,
requirements.txt, bindep.txt), with the managed nodes' packages kept out of the image."""

import glob
import importlib.util
import os
import re
import tarfile

import gates
import pytest
import yaml
from ansible_builder.ee_schema import validate_schema
from bindep.depends import Depends

# What the collection declares (read from its files, which the artifact must carry as they are).
META = os.path.join(gates.REPO, 'meta', 'execution-environment.yml')


def lines(path):
    """The requirement lines of a pip or bindep file: no comments, no blanks."""
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith('#')]


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ee-artifact')
    proc = gates.run([gates.tool('ansible-galaxy'), 'collection', 'build', '--output-path', str(tmp)])
    gates.assert_passes(proc)
    tarballs = glob.glob(str(tmp / '*.tar.gz'))
    assert len(tarballs) == 1, gates.output(proc)
    return tarballs[0]


@pytest.fixture(scope='module')
def context(artifact, tmp_path_factory):
    """`ansible-builder create` on a definition that installs the artifact, as the user guide shows it."""
    tmp = tmp_path_factory.mktemp('ee')
    name = os.path.basename(artifact)
    os.symlink(artifact, str(tmp / name))
    definition = {
        'version': 3,
        'images': {'base_image': {'name': 'quay.io/ansible/awx-ee:latest'}},
        'additional_build_files': [{'src': name, 'dest': 'collections'}],
        'additional_build_steps': {'prepend_galaxy': ['COPY _build/collections/ /build/collections/']},
        'dependencies': {'galaxy': {'collections': [{'name': '/build/collections/' + name, 'type': 'file'}]}},
    }
    (tmp / 'execution-environment.yml').write_text(yaml.safe_dump(definition))
    proc = gates.run([gates.tool('ansible-builder'), 'create', '-f', 'execution-environment.yml', '-c', 'context',
                      '--output-filename', 'Containerfile'], cwd=str(tmp))
    gates.assert_passes(proc)
    return tmp / 'context', name


def test_collection_declares_its_dependencies():
    with open(META) as handle:
        meta = yaml.safe_load(handle)
    validate_schema(dict(meta))  # ansible-builder's own schema check; raises on anything it would not read
    assert meta['version'] == 3
    assert meta['dependencies'] == {'python': 'requirements.txt', 'system': 'bindep.txt'}
    for path in meta['dependencies'].values():
        assert lines(os.path.join(gates.REPO, path)), '%s declares nothing' % path


def test_artifact_carries_the_declarations(artifact):
    with tarfile.open(artifact) as tar:
        for path in ('meta/execution-environment.yml', 'requirements.txt', 'bindep.txt'):
            shipped = tar.extractfile(path).read().decode()
            with open(os.path.join(gates.REPO, path)) as handle:
                assert shipped == handle.read(), '%s in the artifact differs from the checkout' % path


def test_context_installs_the_artifact(context, artifact):
    ctx, name = context
    with open(str(ctx / '_build' / 'collections' / name), 'rb') as copied, open(artifact, 'rb') as built:
        assert copied.read() == built.read(), 'the context does not carry the built artifact'
    with open(str(ctx / '_build' / 'requirements.yml')) as handle:
        galaxy = yaml.safe_load(handle)
    assert galaxy['collections'] == [{'name': '/build/collections/' + name, 'type': 'file'}]
    containerfile = (ctx / 'Containerfile').read_text()
    steps = ['COPY _build/collections/ /build/collections/', 'ansible-galaxy collection install', 'introspect']
    positions = [containerfile.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), \
        'the Containerfile does not copy, install, then introspect the collection:\n' + containerfile


def introspection(ctx):
    """The context's own copy of ansible-builder's introspect.py (what the image build runs), as a module."""
    spec = importlib.util.spec_from_file_location('ee_introspect', str(ctx / '_build' / 'scripts' / 'introspect.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_build_would_find_the_requirements(context, tmp_path):
    """Install the artifact from the context and run the introspection the image build runs on it:
    it reads our files through meta/execution-environment.yml and hands the image our bindep lines and
    our pip lines, less what ansible-builder leaves out because every base image has it."""
    ctx, name = context
    collections = tmp_path / 'collections'
    proc = gates.run([gates.tool('ansible-galaxy'), 'collection', 'install', '--offline', '-p', str(collections),
                      str(ctx / '_build' / 'collections' / name)],
                     env={'ANSIBLE_COLLECTIONS_PATH': str(collections), 'ANSIBLE_NOCOLOR': '1'})
    gates.assert_passes(proc)
    script = introspection(ctx)
    ours_pip, ours_bindep = lines(os.path.join(gates.REPO, 'requirements.txt')), lines(os.path.join(gates.REPO, 'bindep.txt'))
    assert script.process_collection(str(collections / 'ansible_collections' / 'clusternet' / 'node')) == (ours_pip, ours_bindep)

    proc = gates.run([gates.tool('python'), str(ctx / '_build' / 'scripts' / 'introspect.py'), 'introspect', str(collections)])
    gates.assert_passes(proc)
    found = yaml.safe_load(proc.stdout.split('---', 1)[1])
    # PyYAML (the node_plan filter's) is such a package: the image gets no pip install from us.
    kept = [line for line in ours_pip if re.split(r'[<>=!~\[; ]', line, maxsplit=1)[0].lower() not in script.EXCLUDE_REQUIREMENTS]
    assert found['python'] == ['%s  # from collection clusternet.node' % line for line in kept]
    assert found['system'] == ['%s  # from collection clusternet.node' % line for line in ours_bindep]


@pytest.mark.parametrize('platform', ['platform:dpkg', 'platform:rpm'])
def test_profiles_split_controller_and_node(platform):
    """The image (bindep's default profile, what ansible-builder installs) gets the controller's packages
    and none of the node's; `bindep node` lists the node's."""
    depends = Depends('\n'.join(lines(os.path.join(gates.REPO, 'bindep.txt'))) + '\n')
    image = {rule[0] for rule in depends.active_rules([platform, 'default'])}
    controller = {rule[0] for rule in depends.active_rules([platform, 'controller'])}
    node = {rule[0] for rule in depends.active_rules([platform, 'node'])}
    assert image == controller and controller, (image, controller)
    assert not image & node
    assert {'ipset', 'python3-pyroute2', 'systemd'} <= node
    assert {'iptables', 'conntrack'} <= node if platform == 'platform:dpkg' else {'iptables-nft', 'conntrack-tools'} <= node
