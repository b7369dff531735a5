"""Running the quality gates: each is a tool whose exit code decides, and whose
output is shown in full when it fails. stdout and stderr are kept apart: a gate that parses
a tool's JSON or YAML reads stdout alone, so a library's warning on stderr cannot break it."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)


def tool(name):
    """A tool from the venv that runs these tests."""
    return os.path.join(VENV_BIN, name)


def run(cmd, cwd=REPO, env=None, timeout=1200):
    """Run cmd (a list); returns CompletedProcess (text) with stdout and stderr captured apart."""
    full_env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get('PATH', ''), NO_COLOR='1')
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)


def output(proc):
    """Everything the tool printed, stdout then stderr: for messages, never for parsing."""
    return proc.stdout + proc.stderr


def assert_passes(proc):
    """The gate passed: exit code 0, else fail with the tool's whole output."""
    assert proc.returncode == 0, '%s exited %d:\n%s' % (' '.join(proc.args), proc.returncode, output(proc))
