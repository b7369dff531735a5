"""Build the collection's HTML docsite into build/docs/html (`make docs`), offline.

antsibull-docs renders the docs of the checkout (linked as an installed collection, as
the tests use it) into RST beside the user guide (docs/guide/*.rst); Sphinx, configured by
docs/conf.py, renders the HTML with every warning an error. Galaxy is never asked: the only collection path is the link.
"""

import os
import shutil
import subprocess
import sys

import yaml

DOCS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(DOCS)
OUT = os.path.join(REPO, 'build', 'docs')
RST = os.path.join(OUT, 'rst')
HTML = os.path.join(OUT, 'html')
COLLECTION = 'clusternet.node'

sys.path.insert(0, os.path.join(REPO, 'tests'))
from harness import link_collection  # noqa: E402  pylint: disable=wrong-import-position


def antsibull_config():
    """Where the pages say the collection lives and how to install it: galaxy.yml, not Galaxy.

    The collection has no public home yet (galaxy.yml names none), so a plugin page's link to
    "the collection" is its index page in this docsite, beside the plugin pages."""
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        galaxy = yaml.safe_load(handle)
    tarball = '%s-%s-%s.tar.gz' % (galaxy['namespace'], galaxy['name'], galaxy['version'])
    return ('collection_url = {\n  * = "%s"\n}\n'
            'collection_install = {\n  * = "ansible-galaxy collection install %s"\n}\n'
            % (galaxy.get('documentation') or galaxy.get('repository') or 'index.html', tarball))


def run(cmd, env):
    print('+ ' + ' '.join(cmd), flush=True)
    if subprocess.run(cmd, cwd=OUT, env=env, check=False).returncode != 0:
        sys.exit('docs: %s failed' % cmd[0])


def build():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=link_collection(), ANSIBLE_NOCOLOR='1',
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    for stale in ('rst', 'html', 'doctrees'):
        shutil.rmtree(os.path.join(OUT, stale), ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    os.mkdir(RST, 0o700)  # antsibull-docs writes only into a directory no one else can write to
    shutil.copy(os.path.join(DOCS, 'index.rst'), RST)
    shutil.copytree(os.path.join(DOCS, 'guide'), os.path.join(RST, 'guide'))
    config = os.path.join(OUT, 'antsibull-docs.cfg')
    with open(config, 'w') as handle:
        handle.write(antsibull_config())
    bindir = os.path.dirname(sys.executable)
    run([os.path.join(bindir, 'antsibull-docs'), '--config-file', config, 'collection', '--use-current',
         '--fail-on-error', '--dest-dir', RST, COLLECTION], env)
    run([os.path.join(bindir, 'sphinx-build'), '-b', 'html', '-c', DOCS, '-d', os.path.join(OUT, 'doctrees'),
         '-W', '--keep-going', '-q', RST, HTML], env)
    print('docs: %s' % os.path.join(HTML, 'index.html'))


if __name__ == '__main__':
    build()
