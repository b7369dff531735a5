"""The collection's quality gates besides ansible-test sanity: ruff, ansible-lint
(production profile, offline) and antsibull-changelog, each judged by its exit code."""

import glob
import os
import subprocess

import gates
from harness import link_collection

ANSIBLE_LINT_PATHS = ['roles', 'playbooks']


def test_ruff():
    gates.assert_passes(gates.run([gates.tool('ruff'), 'check', '--no-cache', 'plugins', 'tests', 'bench']))


def test_ansible_lint():
    """Production profile, offline (.ansible-lint); the collection resolves through the harness's link."""
    paths = [path for path in ANSIBLE_LINT_PATHS if glob.glob(os.path.join(gates.REPO, path, '**', '*.yml'), recursive=True)]
    assert paths, 'nothing to lint: no YAML under %s' % ', '.join(ANSIBLE_LINT_PATHS)
    proc = gates.run([gates.tool('ansible-lint'), '--nocolor'] + paths,
                     env={'ANSIBLE_COLLECTIONS_PATH': link_collection()})
    gates.assert_passes(proc)


def test_changelog_lint():
    gates.assert_passes(gates.run([gates.tool('antsibull-changelog'), 'lint']))
    gates.assert_passes(gates.run([gates.tool('antsibull-changelog'), 'lint-changelog-yaml', 'changelogs/changelog.yaml']))


def git(*args):
    return subprocess.run(['git'] + list(args), cwd=gates.REPO, capture_output=True, text=True, check=True).stdout


def test_plugin_changes_after_a_release_have_a_fragment():
    """Once a release is recorded in changelogs/changelog.yaml, any change to plugins/ since the
    commit that recorded it (committed or not) needs a fragment in changelogs/fragments/."""
    release_commit = git('log', '-n1', '--format=%H', '-G', r'^  [0-9]+\.[0-9]+\.[0-9]+:', '--', 'changelogs/changelog.yaml').strip()
    if not release_commit:
        return  # nothing released yet: everything in plugins/ goes into the first release's changelog
    changed = git('diff', '--name-only', release_commit, '--', 'plugins').split()
    changed += git('ls-files', '--others', '--exclude-standard', '--', 'plugins').split()
    fragments = glob.glob(os.path.join(gates.REPO, 'changelogs', 'fragments', '*.y*ml'))
    assert not changed or fragments, (
        'plugins/ changed since the last release (commit %s): %s\n'
        'add a fragment, e.g. changelogs/fragments/<short-name>.yml with\n'
        '  bugfixes:\n    - ipset - what changed and why (https://.../issues/N).' % (release_commit[:12], ', '.join(changed)))
