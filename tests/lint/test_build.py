"""The release artifact: `ansible-galaxy collection build` gives a clean tarball that
installs, and `ansible-doc` renders every installed module's docs with examples that
are tasks of that module (`make build` runs this file)."""

import glob
import json
import os
import tarfile

import ansible_test_offline
import gates
import pytest
import yaml

MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(gates.REPO, 'plugins', 'modules', '*.py'))
                 if not path.endswith('__init__.py'))

# What must never ship: the venv, build and test output, lab state, caches, VCS data.
FORBIDDEN = ('.venv/', 'build/', 'tests/output/', 'lab/.state/', 'lab/image/', 'bench/results/', '.git/',
             '.pytest_cache/', '.ruff_cache/', '.ansible/', '.cache/', '__pycache__/')
FORBIDDEN_SUFFIXES = ('.pyc', '.tar.gz', '.retry', '.log')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """Build the collection into a temp dir and install the tarball into a temp collections path."""
    tmp = tmp_path_factory.mktemp('galaxy')
    proc = gates.run([gates.tool('ansible-galaxy'), 'collection', 'build', '--output-path', str(tmp)])
    gates.assert_passes(proc)
    tarballs = glob.glob(str(tmp / '*.tar.gz'))
    assert len(tarballs) == 1, gates.output(proc)
    collections = tmp / 'collections'
    # --force and only this path configured: a copy installed elsewhere (~/.ansible) must not stand in.
    proc = gates.run([gates.tool('ansible-galaxy'), 'collection', 'install', '--offline', '--force', '-p', str(collections), tarballs[0]],
                     env=doc_env(str(collections)))
    gates.assert_passes(proc)
    return tarballs[0], str(collections)


def collection_version():
    with open(os.path.join(gates.REPO, 'galaxy.yml')) as handle:
        return str(yaml.safe_load(handle)['version'])


def release_key(version):
    return tuple(int(part) for part in str(version).split('.'))


def doc_env(collections):
    return {'ANSIBLE_COLLECTIONS_PATH': collections, 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_PAGER': 'cat'}


def test_tarball_is_clean(installed):
    with tarfile.open(installed[0]) as tar:
        names = tar.getnames()
    assert 'MANIFEST.json' in names and 'FILES.json' in names
    assert 'galaxy.yml' not in names  # build turns it into MANIFEST.json
    bad = [name for name in names
           if any('/' + part in '/' + name + '/' for part in FORBIDDEN) or name.endswith(FORBIDDEN_SUFFIXES)]
    assert not bad, 'the artifact ships files it must not: %s' % ', '.join(sorted(bad))
    for module in MODULES:
        assert 'plugins/modules/%s.py' % module in names


def test_sanity_shipped_tree_is_the_artifact(installed):
    """ansible_test_offline.shipped(), which picks the files the older majors' sanity runs check
    (tests/lint/test_sanity.py), keeps exactly the checkout's files that ansible-galaxy put in the tarball."""
    with tarfile.open(installed[0]) as tar:
        packed = set(member.name for member in tar.getmembers() if not member.isdir())
    files = ansible_test_offline.checkout_files()
    with open(os.path.join(gates.REPO, 'galaxy.yml')) as handle:
        kept = ansible_test_offline.shipped(files, yaml.safe_load(handle))
    assert sorted(kept) == sorted(packed & set(files))
    assert 'plugins/modules/vip.py' in kept and not [path for path in kept if path.startswith(('tests/', 'lab/', 'bench/'))]


def test_shipped_matches_as_ansible_galaxy_does():
    """fnmatch on the path from the collection root, where `*` crosses `/`; a directory's name or
    path that matches drops all under it; the artifact never holds galaxy.yml itself."""
    galaxy = {'namespace': 'ns', 'name': 'coll', 'build_ignore': ['tests', '*.log', 'docs/conf.py', '**/cache']}
    paths = ['plugins/modules/a.py', 'plugins/modules/__pycache__/a.pyc', 'plugins/x/__pycache__/notes.txt', 'tests/unit/t.py',
             'plugins/tests/t.py', 'roles/r/files/run.log', 'docs/conf.py', 'docs/guide/conf.py', 'roles/r/cache/c.yml', 'cache/c.yml',
             'ns-coll-1.0.0.tar.gz', 'galaxy.yml', 'README.md']
    assert ansible_test_offline.shipped(paths, galaxy) == ['plugins/modules/a.py', 'plugins/tests/t.py', 'docs/guide/conf.py',
                                                           'cache/c.yml', 'README.md']


# A library's warning at every start-up (as cryptography 51 gave ansible-core 2.19): a sitecustomize
# on PYTHONPATH warns in every Python process, so the gates must still parse stdout alone.
START_UP_WARNING = 'clusternet test: a library warns at start-up'


@pytest.fixture(params=['quiet', 'warning on stderr'])
def start_up(request, tmp_path):
    """Extra environment for a gate: none, or a warning printed on stderr at interpreter start."""
    if request.param == 'quiet':
        return {}
    (tmp_path / 'sitecustomize.py').write_text('import warnings\nwarnings.warn(%r, DeprecationWarning)\n' % START_UP_WARNING)
    return {'PYTHONPATH': str(tmp_path), 'PYTHONWARNINGS': 'always'}


def assert_warned(proc, env):
    """The forced warning really reached stderr (else the warning case proves nothing)."""
    if env:
        assert START_UP_WARNING in proc.stderr, 'the start-up warning was not printed:\n%s' % gates.output(proc)


def test_installed_collection_lists(installed, start_up):
    proc = gates.run([gates.tool('ansible-galaxy'), 'collection', 'list', '--format', 'json', '-p', installed[1]],
                     env=dict(doc_env(installed[1]), **start_up))
    gates.assert_passes(proc)
    assert_warned(proc, start_up)
    listed = {name: info for path in json.loads(proc.stdout).values() for name, info in path.items()}
    assert 'clusternet.node' in listed, proc.stdout
    assert listed['clusternet.node']['version'] == collection_version()


def test_installed_modules_are_the_repo_modules(installed):
    shipped = glob.glob(os.path.join(installed[1], 'ansible_collections', 'clusternet', 'node', 'plugins', 'modules', '*.py'))
    assert sorted(os.path.basename(path)[:-3] for path in shipped if not path.endswith('__init__.py')) == MODULES
    assert MODULES, 'the collection has no modules'


@pytest.mark.parametrize('module', MODULES)
def test_ansible_doc_renders(installed, module, tmp_path, start_up):
    fqcn = 'clusternet.node.' + module
    env = doc_env(installed[1])
    proc = gates.run([gates.tool('ansible-doc'), '--json', fqcn], env=dict(env, **start_up))
    gates.assert_passes(proc)
    assert_warned(proc, start_up)
    doc = json.loads(proc.stdout)[fqcn]
    assert doc['doc']['module'] == module
    assert doc['doc']['filename'].startswith(installed[1]), 'ansible-doc read another copy: %s' % doc['doc']['filename']
    assert {'check_mode', 'diff_mode', 'platform'} <= set(doc['doc'].get('attributes', {})), 'attributes missing'
    # antsibull-changelog lists a new module under the release its version_added names.
    assert 'version_added' in doc['doc'], 'version_added missing'
    assert release_key(doc['doc']['version_added']) <= release_key(collection_version()), \
        'version_added %s is after this release, %s' % (doc['doc']['version_added'], collection_version())
    assert doc['doc'].get('options'), 'no options documented'
    assert doc.get('return'), 'no return values documented'

    examples = yaml.safe_load(doc['examples'])
    assert isinstance(examples, list) and examples, 'EXAMPLES is not a list of tasks'
    for task in examples:
        assert isinstance(task, dict) and task.get('name'), 'every example is a named task: %r' % (task,)
    assert any(fqcn in task for task in examples), 'no example calls %s by its FQCN' % fqcn

    # The text a user reads shows the examples, and they parse as a playbook's tasks.
    proc = gates.run([gates.tool('ansible-doc'), fqcn], env=env)
    gates.assert_passes(proc)
    assert 'EXAMPLES:' in proc.stdout and fqcn + ':' in proc.stdout.split('EXAMPLES:', 1)[1], proc.stdout
    playbook = tmp_path / 'examples.yml'
    playbook.write_text(yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': examples}]))
    gates.assert_passes(gates.run([gates.tool('ansible-playbook'), '--syntax-check', '-i', 'localhost,', str(playbook)], env=env))
