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

Usage: ansible_test_offline.py [ansible-test sanity options]   (e.g. --test pep8)
"""

import glob
import os
import subprocess
import sys

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


def supported_versions():
    """The Python versions ansible-test's sanity tests cover for this ansible-core."""
    from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
    return list(SUPPORTED_PYTHON_VERSIONS)


def find_interpreter(version):
    """A working pythonX.Y: the system's first, then pyenv's builds (their shims only work for the active version)."""
    candidates = ['/usr/bin/python' + version, '/usr/local/bin/python' + version]
    pyenv_root = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')
    candidates += sorted(glob.glob(os.path.join(pyenv_root, 'versions', version + '.*', 'bin', 'python' + version)), reverse=True)
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return None


def link_interpreters():
    """build/ansible-test/bin/pythonX.Y for every supported version found; returns (found, missing)."""
    os.makedirs(PYTHONS_BIN, exist_ok=True)
    found, missing = {}, []
    for version in supported_versions():
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


def pip_versions(versions):
    """The pip release ansible-test bootstraps into each sanity venv (one per Python version)."""
    from ansible_test._internal.python_requirements import get_venv_packages

    class Python(object):
        def __init__(self, version):
            self.version = version

    return sorted({get_venv_packages(Python(version))['pip'] for version in versions})


def seed_pip_bootstrap(pip_version):
    """Write ~/.ansible/test/cache/get_pip_X_Y.py (our HOME) and the pip wheel it installs."""
    cache = os.path.join(HOME, '.ansible', 'test', 'cache')
    os.makedirs(cache, exist_ok=True)
    wheel = 'pip-%s-py3-none-any.whl' % pip_version
    if not os.path.exists(os.path.join(cache, wheel)):
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:',
                        '-d', cache, 'pip==%s' % pip_version], check=True)
    script = os.path.join(cache, 'get_pip_%s.py' % pip_version.replace('.', '_'))
    with open(script + '.new', 'w') as handle:
        handle.write(GET_PIP % {'wheel': wheel})
    os.replace(script + '.new', script)  # atomic: a concurrent run never reads half a script
    return script


def prepare(root=None):
    """Interpreters, pip bootstrap and collection link in place; returns (cwd, env) to run ansible-test with.
    root: the collection to test, by default this checkout through the harness's link."""
    found, missing = link_interpreters()
    for version in pip_versions(found):
        seed_pip_bootstrap(version)
    sys.stderr.write('ansible-test sanity: Python %s\n' % ', '.join('%s=%s' % item for item in found.items()))
    if missing:
        sys.stderr.write('ansible-test sanity: NOT available here, not tested: Python %s\n' % ', '.join(missing))
    root = root or os.path.join(link_collection(), 'ansible_collections', 'clusternet', 'node')
    env = dict(os.environ)
    env.update({
        'HOME': HOME,
        'ANSIBLE_TEST_CONTENT_ROOT': root,
        'PATH': os.pathsep.join([PYTHONS_BIN, VENV_BIN, env.get('PATH', '')]),
    })
    return root, env


def command(argv):
    return [os.path.join(VENV_BIN, 'ansible-test'), 'sanity', '--local', '--color', 'no'] + list(argv)


def main(argv):
    root, env = prepare()
    return subprocess.run(command(argv), cwd=root, env=env, check=False).returncode


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
