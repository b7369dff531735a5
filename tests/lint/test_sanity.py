"""`ansible-test sanity` over the collection, every default test, under every ansible-core
major the collection claims (tests/lint/cores.py) and on every Python version each of them
supports that this machine has, offline (see ansible_test_offline.py). The claim of every
major is about what users install, so the majors other than the dev venv's own check only the
files the artifact ships (ansible_test_offline.shipped(), with ansible-test's configuration);
the dev venv's major checks the whole checkout, tests and tools too. ansible-test runs
once per major; each of its tests is one pytest test here (`test_sanity[2.16-pylint]`),
judged from ansible-test's JUnit results."""

import collections
import concurrent.futures
import functools
import glob
import os
import subprocess
from xml.etree import ElementTree

import ansible_test_offline
import cores
import gates
import pytest
import yaml

pytestmark = pytest.mark.slow

# Majors whose ansible-test runs at once, each on its own copy of the collection and HOME:
# run one after another, cold, the six took about 16 minutes of make test.
PARALLEL = int(os.environ.get('CN_SANITY_PARALLEL', '3'))

# ansible-test reports "No tests applicable." for these: nothing in the collection is of their
# kind (the development guide, docs/guide/development.rst, lists them). test_sanity_not_applicable checks that this stays true; any other
# test that checks nothing fails test_sanity.
NOT_APPLICABLE = {
    'empty-init': 'no __init__.py under plugins/modules or plugins/module_utils',
    'pslint': 'no PowerShell in the collection',
    # ansible-core 2.16 only: they check files that may run on Python 2, and tests/config.yml
    # says the modules need Python 3.8 or newer.
    'future-import-boilerplate': 'no file targets Python 2 (tests/config.yml)',
    'metaclass-boilerplate': 'no file targets Python 2 (tests/config.yml)',
}

# Majors that check only the shipped files (see the docstring): these tests have nothing to check
# there besides NOT_APPLICABLE, and must have something in the whole checkout (the dev venv's major).
NOT_APPLICABLE_SHIPPED = {
    'shellcheck': 'no shell script ships: the .sh files are lab/ and tests/ tooling',
}


def shipped_only(major):
    return major != cores.OWN


def not_applicable(major):
    """{test: why} of the tests that have nothing to check in the tree that major sees."""
    return dict(NOT_APPLICABLE, **(NOT_APPLICABLE_SHIPPED if shipped_only(major) else {}))


def list_tests(major):
    venv_bin = cores.ensure(major)
    root, env = ansible_test_offline.prepare(venv_bin=venv_bin)
    proc = subprocess.run(ansible_test_offline.command(['--list-tests'], venv_bin), cwd=root, env=env,
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


SANITY_TESTS = dict((major, list_tests(major)) for major in cores.CORES)


def per_core(tests):
    """pytest params (major, test) with ids MAJOR-TEST, grouped by major so each runs once."""
    return [pytest.param(major, test, id='%s-%s' % (major, test)) for major in cores.CORES for test in tests(major)]


def modules_floor():
    """The oldest Python the modules claim (tests/config.yml), as a version tuple."""
    with open(os.path.join(gates.REPO, 'tests', 'config.yml')) as handle:
        spec = yaml.safe_load(handle)['modules']['python_requires']
    assert spec.startswith('>='), spec
    return tuple(int(part) for part in spec[2:].split('.'))


def below_floor(result):
    """A per-Python result (compile-python-3.6) for a Python older than the modules claim: ansible-test
    rightly finds nothing to check there."""
    if '-python-' not in result.name:
        return False
    version = tuple(int(part) for part in result.name.split('-python-')[1].split('.'))
    return version < modules_floor() and result.skipped == 'No tests applicable.'


# Lines of tests/sanity/ignore-*.txt that docs/guide/development.rst explains; none so far.
DOCUMENTED_IGNORES = set()

Result = collections.namedtuple('Result', 'name failure skipped')


@functools.lru_cache(maxsize=None)
def started():
    """{major: future of sanity(major)}: every major prepared here, one after another (they share
    the interpreter links), then PARALLEL runs at a time. Cached: pytest sets an indirectly
    parametrized fixture up again for every test id, which once ran ansible-test per sanity
    test (about two hours in all) instead of once per major."""
    prepared = {}
    for major in cores.CORES:
        venv_bin = cores.ensure(major)
        home = os.path.join(ansible_test_offline.STATE, 'home-' + major)
        root = ansible_test_offline.snapshot(major, shipped_only(major))
        prepared[major] = (venv_bin,) + ansible_test_offline.prepare(root, venv_bin, home)
    pool = concurrent.futures.ThreadPoolExecutor(PARALLEL)
    futures = dict((major, pool.submit(sanity_of, *prepared[major])) for major in cores.CORES)
    pool.shutdown(wait=False)
    return futures


def run_sanity(major):
    return started()[major].result()


def sanity_of(venv_bin, root, env):
    """Run ansible-test sanity in root; returns (process, {test: [Result per Python version]})."""
    junit = os.path.join(root, 'tests', 'output', 'junit')
    proc = gates.run(ansible_test_offline.command(['--junit'], venv_bin), cwd=root, env=env, timeout=2400)
    results = {}
    for path in glob.glob(os.path.join(junit, 'ansible-test-sanity-*.xml')):
        for case in ElementTree.parse(path).iter('testcase'):
            failure, skipped = case.find('failure'), case.find('skipped')
            test = case.get('name').split('-python-')[0]
            results.setdefault(test, []).append(Result(
                case.get('name'),
                None if failure is None else '%s\n%s' % (failure.get('message'), failure.text),
                None if skipped is None else skipped.text,
            ))
    return proc, results


@pytest.fixture
def sanity(request):
    return run_sanity(request.param)


def test_no_undocumented_sanity_ignores():
    entries = set()
    for path in glob.glob(os.path.join(gates.REPO, 'tests', 'sanity', 'ignore-*.txt')):
        with open(path) as handle:
            entries.update(line.split('#')[0].strip() for line in handle if line.split('#')[0].strip())
    assert entries <= DOCUMENTED_IGNORES, 'sanity ignores docs/guide/development.rst does not explain: %s' % sorted(entries - DOCUMENTED_IGNORES)


@pytest.mark.parametrize('sanity', list(cores.CORES), indirect=True)
def test_sanity_exit_code(sanity):
    """ansible-test itself says the run passed (catches anything the per-test results miss)."""
    gates.assert_passes(sanity[0])


@pytest.mark.parametrize('sanity, test', per_core(lambda major: [t for t in SANITY_TESTS[major] if t not in not_applicable(major)]),
                         indirect=['sanity'])
def test_sanity(sanity, test):
    proc, results = sanity
    assert test in results, 'ansible-test wrote no result for %s:\n%s' % (test, gates.output(proc)[-6000:])
    failures = ['%s: %s' % (result.name, result.failure) for result in results[test] if result.failure]
    assert not failures, '\n'.join(failures)
    claimed = [result for result in results[test] if not below_floor(result)]
    assert claimed, 'ansible-test ran %s only on Pythons the modules do not claim' % test
    skips = ['%s: %s' % (result.name, result.skipped) for result in claimed if result.skipped]
    if not skips:
        return
    if skips == ['%s: No tests applicable.' % result.name for result in claimed]:
        warnings = [line for line in gates.output(proc).splitlines() if line.startswith('WARNING')]
        raise AssertionError('ansible-test checked nothing for %s: its tool is missing, or the collection has nothing of its kind '
                             '(then list it in NOT_APPLICABLE or NOT_APPLICABLE_SHIPPED and docs/guide/development.rst):\n%s' % (test, '\n'.join(warnings)))
    missing_python = [skip for skip in skips if 'could not be found' in skip]
    assert missing_python == skips, 'ansible-test skipped %s here:\n%s' % (test, '\n'.join(skips))
    ran = [result.name for result in claimed if not result.skipped]
    assert ran, 'ansible-test ran %s on no Python at all:\n%s' % (test, '\n'.join(skips))
    pytest.skip('ran on %s; interpreter missing on this machine: %s' % (', '.join(ran), '; '.join(missing_python)))


def test_not_applicable_tests_exist():
    """Every NOT_APPLICABLE(_SHIPPED) entry is still a default sanity test of some major (of one that
    sees the shipped tree, for NOT_APPLICABLE_SHIPPED), and the whole checkout has something for each
    NOT_APPLICABLE_SHIPPED test to check (test_sanity of the dev venv's major checks that it passes)."""
    known = set().union(*SANITY_TESTS.values())
    assert set(NOT_APPLICABLE) <= known, 'no longer default sanity tests: drop them from NOT_APPLICABLE: %s' % sorted(set(NOT_APPLICABLE) - known)
    shipped_known = set().union(*(SANITY_TESTS[major] for major in cores.CORES if shipped_only(major)))
    assert set(NOT_APPLICABLE_SHIPPED) <= shipped_known, 'drop from NOT_APPLICABLE_SHIPPED: %s' % sorted(set(NOT_APPLICABLE_SHIPPED) - shipped_known)
    assert not set(NOT_APPLICABLE_SHIPPED) & set(NOT_APPLICABLE)
    assert set(NOT_APPLICABLE_SHIPPED) <= set(SANITY_TESTS[cores.OWN]), 'the whole checkout is checked by no major for %s' % sorted(
        set(NOT_APPLICABLE_SHIPPED) - set(SANITY_TESTS[cores.OWN]))


@pytest.mark.parametrize('sanity, test', per_core(lambda major: sorted(set(not_applicable(major)) & set(SANITY_TESTS[major]))), indirect=['sanity'])
def test_sanity_not_applicable(sanity, test):
    """A test listed as having nothing to check: ansible-test must agree, else it belongs in test_sanity."""
    proc, results = sanity
    assert results.get(test), 'ansible-test wrote no result for %s:\n%s' % (test, gates.output(proc)[-6000:])
    assert all(result.skipped == 'No tests applicable.' for result in results[test]), (
        '%s now has something to check (%s): remove it from NOT_APPLICABLE(_SHIPPED)' % (test, results[test]))


SCRATCH_MODULE = '''#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
module: %(name)s
short_description: A module the sanity gate must reject
description: A module the sanity gate must reject.
author: Nobody (@nobody)
options: {}
"""
EXAMPLES = r"""
- name: Run it
  clusternet.node.%(name)s:
"""
RETURN = r""" # """

%(imports)s
from ansible.module_utils.basic import AnsibleModule


def main():
    AnsibleModule(argument_spec=dict(%(options)s), supports_check_mode=True).exit_json(changed=False)


if __name__ == '__main__':
    main()
'''


def test_sanity_gate_rejects_unguarded_import_and_undocumented_option(tmp_path):
    """The same runner over a scratch collection: a module importing pyroute2 unguarded must fail
    the import test, one with an undocumented option must fail validate-modules."""
    root = tmp_path / 'ansible_collections' / 'clusternet' / 'node'
    (root / 'plugins' / 'modules').mkdir(parents=True)
    (root / 'meta').mkdir()
    for name in ('galaxy.yml', os.path.join('meta', 'runtime.yml')):
        (root / name).write_text(open(os.path.join(gates.REPO, name)).read())
    (root / 'plugins' / 'modules' / 'unguarded.py').write_text(
        SCRATCH_MODULE % {'name': 'unguarded', 'imports': 'import pyroute2  # noqa: F401\n', 'options': ''})
    (root / 'plugins' / 'modules' / 'undocumented.py').write_text(
        SCRATCH_MODULE % {'name': 'undocumented', 'imports': '', 'options': "hidden=dict(type='str')"})
    cwd, env = ansible_test_offline.prepare(str(root))
    proc = gates.run(ansible_test_offline.command(['--test', 'import', '--test', 'validate-modules', '--python', '3.11']),
                     cwd=cwd, env=env)
    printed = gates.output(proc)
    assert proc.returncode != 0, printed
    assert "plugins/modules/unguarded.py:20:0: traceback: ModuleNotFoundError: No module named 'pyroute2'" in printed, printed
    assert "plugins/modules/undocumented.py:0:0: undocumented-parameter: Argument 'hidden'" in printed, printed


def test_sanity_gate_rejects_pylint_error_in_shipped_tree_of_oldest_major():
    """The shipped tree an older major sees (snapshot(shipped_only=True)) still has its modules
    checked: a module planted there with an undefined name fails pylint under the oldest major."""
    root = ansible_test_offline.snapshot('scratch-shipped', shipped_only=True)
    assert not os.path.exists(os.path.join(root, 'tests', 'unit'))
    with open(os.path.join(root, 'plugins', 'modules', 'planted.py'), 'w') as handle:
        handle.write(SCRATCH_MODULE % {'name': 'planted', 'imports': 'PLANTED = undefined_name\n', 'options': ''})
    venv_bin = cores.ensure(cores.OLDEST)
    cwd, env = ansible_test_offline.prepare(root, venv_bin, os.path.join(ansible_test_offline.STATE, 'home-scratch'))
    proc = gates.run(ansible_test_offline.command(['--test', 'pylint', '--python', '3.11'], venv_bin), cwd=cwd, env=env)
    printed = gates.output(proc)
    assert proc.returncode != 0, printed
    assert "plugins/modules/planted.py:20:10: undefined-variable: Undefined variable 'undefined_name'" in printed, printed
