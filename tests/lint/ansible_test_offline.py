"""Run `ansible-test sanity` for this collection on a machine that cannot reach
ansible-test's bootstrap host.

ansible-test gives every requirement-based sanity test (pylint, pep8, yamllint,
validate-modules, import, ...) a virtual environment of its own and bootstraps
pip into it with a get-pip script that it downloads from its CI file host, or
reads from `~/.ansible/test/cache/get_pip_<version>.py` when that file exists.
This script seeds that cache with a small stand-in which installs the same pip
release from the pip wheel beside it (fetched from PyPI once, like every other
sanity requirement), so nothing contacts the CI host.

Everything ansible-test keeps (cache, venvs) lives under build/ansible-test/home
(HOME points there), so nothing outside the checkout is touched and `make clean`
removes it. The collection is seen through build/collections/ansible_collections/
clusternet/node, the link the test harness keeps to the checkout; files are
listed through git, so untracked, unignored files are checked too and .venv and
build/ (ignored) are not.

For runs of several majors at once, snapshot() gives each its own copy of those files (or
of only those the artifact ships, see shipped()) and its own HOME (ansible-test writes
tests/output/ in the collection, and two runs creating the same sanity venv would race);
pip's download cache is shared.

Usage: ansible_test_offline.py [--core MAJOR] [ansible-test sanity options]   (e.g. --core 2.16 --test pep8)
"""

import fnmatch
import glob
import json
import os
import shutil
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STATE = os.path.join(REPO, 'build', 'ansible-test')
HOME = os.path.join(STATE, 'home')
PYTHONS_BIN = os.path.join(STATE, 'bin')
VENV_BIN = os.path.dirname(sys.executable)

sys.path.insert(0, os.path.dirname(HERE))
from harness import link_collection  # noqa: E402

GET_PIP = '''"""Offline stand-in for ansible-test's get-pip bootstrap (see tests/lint/ansible_test_offline.py):
installs pip from the wheel beside this file, never from the network."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, %(wheel)r))

from pip._internal.cli.main import main  # noqa: E402

# get-pip options that `pip install` does not know: nothing but pip is installed anyway.
args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install', '--no-index', '--find-links', HERE] + args))
'''


QUERY = '''import json
from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
from ansible_test._internal.python_requirements import get_venv_packages


class Python(object):
    def __init__(self, version):
        self.version = version


print(json.dumps(dict((v, get_venv_packages(Python(v))) for v in SUPPORTED_PYTHON_VERSIONS)))
'''


def bootstrap_packages(venv_bin=VENV_BIN):
    """{Python version: {package: release}}: the versions that venv's ansible-test covers and
    what it bootstraps into each sanity venv (pip, and setuptools and wheel before 2.18)."""
    proc = subprocess.run([os.path.join(venv_bin, 'python'), '-c', QUERY], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def find_interpreter(version):
    """A working pythonX.Y: the system's first, then pyenv's builds (their shims only work for the active version)."""
    candidates = ['/usr/bin/python' + version, '/usr/local/bin/python' + version]
    pyenv_root = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')
    candidates += sorted(glob.glob(os.path.join(pyenv_root, 'versions', version + '.*', 'bin', 'python' + version)), reverse=True)
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return None


def link_interpreters(versions):
    """build/ansible-test/bin/pythonX.Y for every version found; returns (found, missing)."""
    os.makedirs(PYTHONS_BIN, exist_ok=True)
    found, missing = {}, []
    for version in versions:
        path = find_interpreter(version)
        link = os.path.join(PYTHONS_BIN, 'python' + version)
        if os.path.lexists(link) and (not path or os.readlink(link) != path):
            os.remove(link)
        if path:
            if not os.path.lexists(link):
                os.symlink(path, link)
            found[version] = path
        else:
            missing.append(version)
    return found, missing


def seed_pip_bootstrap(packages, home=HOME):
    """Write ~/.ansible/test/cache/get_pip_X_Y.py (home) and the wheels it installs."""
    cache = os.path.join(home, '.ansible', 'test', 'cache')
    os.makedirs(cache, exist_ok=True)
    pip_version = packages['pip']
    wheel = 'pip-%s-py3-none-any.whl' % pip_version
    for name, release in sorted(packages.items()):
        if not glob.glob(os.path.join(cache, '%s-%s-*.whl' % (name, release))):
            subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:',
                            '-d', cache, '%s==%s' % (name, release)], check=True)
    script = os.path.join(cache, 'get_pip_%s.py' % pip_version.replace('.', '_'))
    with open(script + '.new', 'w') as handle:
        handle.write(GET_PIP % {'wheel': wheel})
    os.replace(script + '.new', script)  # atomic: a concurrent run never reads half a script
    return script


# What `ansible-galaxy collection build` leaves out of the artifact besides galaxy.yml's build_ignore,
# as ansible-core's _build_files_manifest_walk decides: directories of these names at any depth, and
# paths relative to the collection root that fnmatch one of the patterns (`*` matches `/` too); a
# directory that matches takes everything under it along.
GALAXY_IGNORED_DIRS = frozenset(['CVS', '.bzr', '.hg', '.git', '.svn', '__pycache__', '.tox'])
GALAXY_IGNORED = ['MANIFEST.json', 'FILES.json', 'galaxy.yml', 'galaxy.yaml', '.git', '*.pyc', '*.retry', 'tests/output',
                  '{namespace}-{name}-*.tar.gz']

# What ansible-test reads to know and configure the collection, kept beside the shipped files:
# galaxy.yml (name and version), tests/config.yml (the modules' Python floor), tests/sanity/ (ignore files).
SANITY_CONFIG = ('galaxy.yml', 'tests/config.yml', 'tests/sanity/')


def checkout_files():
    """The files ansible-test sees in the checkout: tracked, and untracked but not ignored, as they
    are in the working tree (relative paths)."""
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                            capture_output=True, check=True).stdout.decode('utf-8', 'surrogateescape')
    return [path for path in filter(None, listed.split('\0')) if os.path.lexists(os.path.join(REPO, path))]  # not deleted since


def shipped(paths, galaxy):
    """The paths (relative, `/`-separated) that `ansible-galaxy collection build` puts in the artifact,
    galaxy: galaxy.yml's content. Its `manifest` key (distlib's rules instead of build_ignore) is not modelled."""
    if 'manifest' in galaxy:
        raise ValueError("galaxy.yml's manifest key: shipped() knows only build_ignore")
    patterns = [pattern.format(**galaxy) for pattern in GALAXY_IGNORED] + list(galaxy.get('build_ignore') or [])

    def ignored(path):
        return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)

    def kept(path):
        parts = path.split('/')
        directories = range(1, len(parts))
        return not any(parts[depth - 1] in GALAXY_IGNORED_DIRS or ignored('/'.join(parts[:depth])) for depth in directories) \
            and not ignored(path)

    return [path for path in paths if kept(path)]


def snapshot(name, shipped_only=False):
    """A copy of checkout_files() under build/ansible-test/trees/NAME; returns the collection root.
    Without .git there, ansible-test walks the copy, which holds just those. shipped_only: only what
    the artifact ships (shipped()), and SANITY_CONFIG."""
    root = os.path.join(STATE, 'trees', name, 'ansible_collections', 'clusternet', 'node')
    shutil.rmtree(root, ignore_errors=True)
    paths = checkout_files()
    if shipped_only:
        with open(os.path.join(REPO, 'galaxy.yml')) as handle:
            kept = set(shipped(paths, yaml.safe_load(handle)))
        paths = [path for path in paths
                 if path in kept or any(path == each or each.endswith('/') and path.startswith(each) for each in SANITY_CONFIG)]
    for path in paths:
        target = os.path.join(root, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(REPO, path), target, follow_symlinks=False)
    return root


def prepare(root=None, venv_bin=VENV_BIN, home=HOME):
    """Interpreters, pip bootstrap and collection link in place; returns (cwd, env) to run ansible-test with.
    root: the collection to test, by default this checkout through the harness's link;
    venv_bin: the venv whose ansible-core runs (tests/lint/cores.py); home: ansible-test's HOME."""
    packages = bootstrap_packages(venv_bin)
    found, missing = link_interpreters(packages)
    for each in set(json.dumps(packages[version], sort_keys=True) for version in found):
        seed_pip_bootstrap(json.loads(each), home)
    sys.stderr.write('ansible-test sanity: Python %s\n' % ', '.join('%s=%s' % item for item in found.items()))
    if missing:
        sys.stderr.write('ansible-test sanity: NOT available here, not tested: Python %s\n' % ', '.join(missing))
    root = root or os.path.join(link_collection(), 'ansible_collections', 'clusternet', 'node')
    env = dict(os.environ)
    env.update({
        'HOME': home,
        'PIP_CACHE_DIR': os.path.join(STATE, 'pip-cache'),
        'ANSIBLE_TEST_CONTENT_ROOT': root,
        'PATH': os.pathsep.join([PYTHONS_BIN, venv_bin, env.get('PATH', '')]),
    })
    return root, env


def command(argv, venv_bin=VENV_BIN):
    return [os.path.join(venv_bin, 'ansible-test'), 'sanity', '--local', '--color', 'no'] + list(argv)


def main(argv):
    venv_bin = VENV_BIN
    if argv[:1] == ['--core']:
        import cores
        venv_bin, argv = cores.ensure(argv[1]), argv[2:]
    root, env = prepare(venv_bin=venv_bin)
    return subprocess.run(command(argv, venv_bin), cwd=root, env=env, check=False).returncode


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
