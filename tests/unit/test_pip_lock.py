"""The pip locks (requirements/*.lock, make lock): every package pinned with hashes, and the venv
running these tests holds exactly what requirements/dev.lock pins, transitive packages included,
so a fresh machine cannot get other versions than the last green run had."""

import glob
import importlib.metadata
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'lint'))
import cores  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCKS = sorted(glob.glob(os.path.join(REPO, 'requirements', '*.lock')))
# What `python -m venv` puts in every venv from the interpreter's own bundle, not from PyPI.
VENV_OWN = {'pip', 'setuptools'}


def canonical(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def pins(path):
    """{package: (version, number of hashes)} of a lock in pip's requirements format."""
    with open(path) as handle:
        text = re.sub(r'\\\n\s*', ' ', handle.read())  # join continuation lines
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        match = re.match(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(.*)$', line)
        if match:
            found[canonical(match.group(1))] = (match.group(2), len(re.findall(r'--hash=sha256:[0-9a-f]{64}', match.group(3))))
        else:
            raise AssertionError('%s: a line that pins nothing: %r' % (os.path.basename(path), line))
    return found


def installed(prefix=sys.prefix):
    """{package: version} of the distributions installed in the venv at prefix."""
    paths = glob.glob(os.path.join(prefix, 'lib', 'python3*', 'site-packages'))
    return {canonical(dist.metadata['Name']): dist.version for dist in importlib.metadata.distributions(path=paths)}


def test_the_locks_exist():
    names = [os.path.basename(path) for path in LOCKS]
    assert {'dev.lock', 'tools.lock', 'ansible-wheel.lock'} <= set(names), names
    assert any(name.startswith('core-') for name in names), names


@pytest.mark.parametrize('lock', LOCKS, ids=os.path.basename)
def test_every_pin_is_exact_and_hashed(lock):
    found = pins(lock)
    assert found, 'nothing pinned in %s' % lock
    unhashed = sorted(name for name, (_version, hashes) in found.items() if not hashes)
    assert not unhashed, 'pinned without a hash in %s: %s' % (os.path.basename(lock), unhashed)


def assert_venv_is_lock(prefix, lock):
    """Compare what is installed in the venv at prefix (pip freeze's view) with a lock, both ways."""
    want = {name: version for name, (version, _hashes) in pins(os.path.join(REPO, 'requirements', lock)).items()}
    # pip and setuptools come with the venv; a lock that pins one (setuptools: ansible-builder's pbr
    # needs it) holds the venv to that version too.
    have = {name: version for name, version in installed(prefix).items() if name not in VENV_OWN or name in want}
    unlocked = sorted('%s==%s' % item for item in have.items() if item[0] not in want)
    missing = sorted(name for name in want if name not in have)
    other = sorted('%s: lock %s, venv %s' % (name, want[name], have[name]) for name in want if name in have and have[name] != want[name])
    assert not (unlocked or missing or other), 'the venv %s and requirements/%s differ (make lock, then make setup):\n' \
        'installed, not locked: %s\nlocked, not installed: %s\nother version: %s' % (prefix, lock, unlocked, missing, other)


def test_the_venv_holds_exactly_the_lock():
    assert sys.prefix != sys.base_prefix, 'not running in a venv: run through make (make unit)'
    assert_venv_is_lock(sys.prefix, 'dev.lock')


@pytest.mark.parametrize('major', [major for major, (release, _python) in cores.CORES.items() if release])
def test_each_core_venv_holds_exactly_its_lock(major):
    prefix = os.path.join(cores.ROOT, major)
    if not os.path.exists(os.path.join(prefix, 'bin', 'python')):
        pytest.skip('build/cores/%s is not built here (make cores builds it; make test does)' % major)
    assert_venv_is_lock(prefix, cores.lock_file(major))


def test_pins_parser_sees_a_drift(tmp_path):
    """The comparison above can fail: a lock line the parser reads, and a lock missing a hash."""
    lock = tmp_path / 'x.lock'
    lock.write_text('Foo_Bar==1.0 \\\n    --hash=sha256:%s\n    # via -r dev.in\nbaz==2\n' % ('a' * 64))
    assert pins(str(lock)) == {'foo-bar': ('1.0', 1), 'baz': ('2', 0)}
