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


def git(repo, *args):
    return subprocess.run(['git'] + list(args), cwd=repo, capture_output=True, text=True, check=True).stdout


def unrecorded_plugin_changes(repo):
    """Changes to plugins/ that no changelog fragment accounts for: once a release is recorded in
    changelogs/changelog.yaml, any change to plugins/ since the commit that recorded it (committed
    or not) needs a fragment in changelogs/fragments/. Returns (release commit, changed paths)."""
    release_commit = git(repo, 'log', '-n1', '--format=%H', '-G', r'^  [0-9]+\.[0-9]+\.[0-9]+:', '--', 'changelogs/changelog.yaml').strip()
    if not release_commit:
        return None, []  # nothing released yet: everything in plugins/ goes into the first release's changelog
    if glob.glob(os.path.join(repo, 'changelogs', 'fragments', '*.y*ml')):
        return release_commit, []
    changed = git(repo, 'diff', '--name-only', release_commit, '--', 'plugins').split()
    changed += git(repo, 'ls-files', '--others', '--exclude-standard', '--', 'plugins').split()
    return release_commit, changed


def test_plugin_changes_after_a_release_have_a_fragment():
    release_commit, changed = unrecorded_plugin_changes(gates.REPO)
    assert not changed, (
        'plugins/ changed since the last release (commit %s): %s\n'
        'add a fragment, e.g. changelogs/fragments/<short-name>.yml with\n'
        '  bugfixes:\n    - ipset - what changed and why.' % (release_commit[:12], ', '.join(changed)))


def test_fragment_rule_catches_an_unrecorded_change(tmp_path):
    """A scratch repo: release recorded, then a module edit; no fragment -> reported, fragment -> fine."""
    def commit(path, text):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        git(str(tmp_path), 'add', path)
        git(str(tmp_path), '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', path)

    git(str(tmp_path), 'init', '-q')
    commit('plugins/modules/ipset.py', 'v1\n')
    commit('changelogs/changelog.yaml', 'ancestor: null\nreleases: {}\n')
    assert unrecorded_plugin_changes(str(tmp_path)) == (None, [])
    commit('changelogs/changelog.yaml', 'ancestor: null\nreleases:\n  0.1.0:\n    release_date: 2026-11-24\n')
    release = git(str(tmp_path), 'rev-parse', 'HEAD').strip()
    assert unrecorded_plugin_changes(str(tmp_path)) == (release, [])
    commit('plugins/modules/ipset.py', 'v2\n')
    (tmp_path / 'plugins' / 'modules' / 'vip.py').write_text('new, untracked\n')
    assert unrecorded_plugin_changes(str(tmp_path)) == (release, ['plugins/modules/ipset.py', 'plugins/modules/vip.py'])
    commit('changelogs/fragments/ipset-fix.yml', 'bugfixes:\n  - ipset - fixed.\n')
    assert unrecorded_plugin_changes(str(tmp_path)) == (release, [])
