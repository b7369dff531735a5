"""antsibull-docs' linter over the collection as the docsite sees it (the harness's link
build/collections/ansible_collections/clusternet/node): schema and markup of every module's,
filter's and role's documentation, every reference in them (O(), P(), M(), RV() ...) to this
collection or any other, and rstcheck on the generated pages. Judged by its exit code."""

import os

import gates
import pytest
from harness import link_collection

pytestmark = pytest.mark.slow

LINT = ['lint-collection-docs', '--plugin-docs', '--validate-collection-refs', 'all',
        '--disallow-unknown-collection-refs', '--check-extra-docs-refs']


def lint(collections, path, *extra):
    return gates.run([gates.tool('antsibull-docs')] + LINT + list(extra) + [path],
                     env={'ANSIBLE_COLLECTIONS_PATH': collections, 'ANSIBLE_NOCOLOR': '1'})


def test_collection_docs_lint_clean():
    collections = link_collection()
    proc = lint(collections, os.path.join(collections, 'ansible_collections', 'clusternet', 'node'))
    gates.assert_passes(proc)
    assert proc.stdout.strip() == '', 'the linter passed but reported:\n' + proc.stdout


BROKEN_MODULE = '''DOCUMENTATION = r"""
module: thing
short_description: a module whose docs refer to an option it lacks
description: Set O(colour) to choose.
options:
  color:
    description: The colour.
    type: str
"""
EXAMPLES = r"""
- name: Choose
  scratch.docs.thing:
    color: red
"""
RETURN = r""" # """
'''


def test_lint_reports_a_dangling_reference(tmp_path):
    """The gate can fail: a scratch collection whose module refers to an option it does not have."""
    root = tmp_path / 'ansible_collections' / 'scratch' / 'docs'
    (root / 'plugins' / 'modules').mkdir(parents=True)
    (root / 'meta').mkdir()
    (root / 'galaxy.yml').write_text('namespace: scratch\nname: docs\nversion: 1.0.0\nreadme: README.md\n'
                                     'authors: [t]\ndescription: t\nlicense: [GPL-3.0-or-later]\n')
    (root / 'README.md').write_text('scratch\n')
    (root / 'meta' / 'runtime.yml').write_text('requires_ansible: ">=2.16.0"\n')
    (root / 'plugins' / 'modules' / 'thing.py').write_text(BROKEN_MODULE)
    proc = lint(str(tmp_path), str(root), '--skip-rstcheck')
    assert proc.returncode != 0, proc.stdout
    assert 'plugins/modules/thing.py' in proc.stdout and 'O(colour)' in proc.stdout, proc.stdout
