"""The ansible-core releases the collection claims (meta/runtime.yml's requires_ansible), each
tested in a venv of its own under build/cores/ (the newest patch release of each major).

2.19 is the project's own .venv (requirements/dev.lock). 2.20 and newer need Python 3.12 or newer
on the controller, which this machine has from pyenv. Each venv is installed from its lock,
requirements/core-MAJOR.lock (make lock writes it from CORES), with hashes.

Usage: cores.py   (create the missing venvs; idempotent)
"""

import hashlib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ROOT = os.path.join(REPO, 'build', 'cores')
LOCKS = os.path.join(REPO, 'requirements')
OWN = '2.19'

sys.path.insert(0, HERE)
from ansible_test_offline import find_interpreter  # noqa: E402

# major -> (ansible-core release, controller Python)
CORES = {
    '2.16': ('2.16.19', '3.11'),
    '2.17': ('2.17.14', '3.11'),
    '2.18': ('2.18.19', '3.11'),
    OWN: (None, None),
    '2.20': ('2.20.10', '3.12'),
    '2.21': ('2.21.5', '3.12'),
}
OLDEST, NEWEST = min(CORES, key=lambda v: tuple(map(int, v.split('.')))), max(CORES, key=lambda v: tuple(map(int, v.split('.'))))


def venv_bin(major):
    """The bin directory holding ansible-test and ansible-playbook of that major."""
    if major == OWN:
        return os.path.dirname(sys.executable)
    return os.path.join(ROOT, major, 'bin')


def lock_file(major):
    """The lock of that major's venv, relative to requirements/."""
    return 'core-%s.lock' % major


def ensure(major):
    """Create the venv of one major unless it was installed from its current lock; returns its bin."""
    release, python = CORES[major]
    bindir = venv_bin(major)
    if major == OWN:
        return bindir
    lock = os.path.join(LOCKS, lock_file(major))
    with open(lock, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    stamp = os.path.join(ROOT, major, '.lock-sha256')
    if os.path.exists(stamp) and open(stamp).read() == digest:
        return bindir
    interpreter = find_interpreter(python)
    if not interpreter:
        raise SystemExit('ansible-core %s needs Python %s on the controller, which is not on this machine' % (release, python))
    subprocess.run([interpreter, '-m', 'venv', '--clear', os.path.join(ROOT, major)], check=True)
    subprocess.run([os.path.join(bindir, 'pip'), 'install', '-q', '--disable-pip-version-check', '--require-hashes', '-r', lock],
                   check=True)
    with open(stamp, 'w') as handle:
        handle.write(digest)
    return bindir


if __name__ == '__main__':
    for each in CORES:
        print('ansible-core %s: %s' % (each, ensure(each)))
