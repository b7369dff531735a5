"""make lock: regenerate every pip lock of the project, on purpose, with uv's resolver.

Every pip install the project runs reads one of these files, with hashes (pip's hash-checking
mode refuses any package, transitive ones included, that the file does not pin), so a fresh
machine gets exactly the versions of the last green run, whatever PyPI holds that day:

  dev.lock             the project's .venv (Python 3.11), from dev.in
  core-MAJOR.lock      each other ansible-core venv under build/cores/ (tests/lint/cores.py)
  ansible-wheel.lock   the `ansible` wheel lab/collections.sh takes containers.podman from (no deps)
  tools.lock           uv itself, installed into build/lock-tool to run this script

LOCK_DATE (an RFC 3339 time, default now) is uv's --exclude-newer: what PyPI held then.
Usage: python3 requirements/lock.py   (make lock)
"""

import datetime
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOOL = os.path.join(REPO, 'build', 'lock-tool')
INPUTS = os.path.join(REPO, 'build', 'lock-inputs')  # one-line inputs, at a fixed path for the locks' "via" notes
UV = os.path.join(TOOL, 'bin', 'uv')
PYTHON = '3.11'  # the .venv's Python (Debian 12's python3)
ANSIBLE_WHEEL = 'ansible==12.2.0'  # ships containers.podman 1.18.0 (lab/collections.sh)

sys.path.insert(0, os.path.join(REPO, 'tests', 'lint'))
import cores  # noqa: E402


def lock_tool():
    """build/lock-tool with uv from tools.lock (hash-checked like every other install)."""
    if not os.path.exists(UV):
        subprocess.run([sys.executable, '-m', 'venv', '--clear', TOOL], check=True)
        subprocess.run([os.path.join(TOOL, 'bin', 'pip'), 'install', '-q', '--disable-pip-version-check',
                        '--require-hashes', '-r', os.path.join(HERE, 'tools.lock')], check=True)
    return UV


def compile_lock(uv, source, target, python, date, no_deps=False):
    cmd = [uv, 'pip', 'compile', '--quiet', '--generate-hashes', '--python-version', python, '--exclude-newer', date,
           '--custom-compile-command', 'make lock', '--output-file', os.path.join(HERE, target), source]
    subprocess.run(cmd + (['--no-deps'] if no_deps else []), check=True, cwd=HERE)
    print('%s: Python %s, PyPI as of %s' % (target, python, date))


def pinned(name, requirement):
    """A one-line requirements file under build/lock-inputs; returns its path relative to requirements/."""
    os.makedirs(INPUTS, exist_ok=True)
    with open(os.path.join(INPUTS, name), 'w') as handle:
        handle.write(requirement + '\n')
    return os.path.relpath(os.path.join(INPUTS, name), HERE)


def main():
    date = os.environ.get('LOCK_DATE') or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    uv = lock_tool()
    compile_lock(uv, 'dev.in', 'dev.lock', PYTHON, date)
    for major, (release, python) in cores.CORES.items():
        if release:
            compile_lock(uv, pinned(major + '.in', 'ansible-core==' + release), cores.lock_file(major), python, date)
    compile_lock(uv, pinned('ansible.in', ANSIBLE_WHEEL), 'ansible-wheel.lock', PYTHON, date, no_deps=True)
    compile_lock(uv, pinned('tools.in', 'uv==0.13.9'), 'tools.lock', PYTHON, date)


if __name__ == '__main__':
    main()
