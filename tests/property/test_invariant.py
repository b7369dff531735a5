"""The invariant, property-based, against the real kernel (project issue 12, "Proof").

For each engine a driver (tests/property/driver.py) runs under `ip netns exec NS` in a
namespace this test creates and deletes, plants the foreign state and runs thousands of
generated module runs in-process, checking after each one what driver.py's docstring says.
The four drivers run at once (they are mostly waiting on the kernel tools), each within a
time budget; the seed is printed first and with any failure.

`make test` runs the CI profile (fixed seed 12, the first 3000 examples per engine, whatever
the machine's speed; CN_PROPERTY_SECONDS=600 caps a slow machine); `make fuzz` runs many more with a random seed.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

ENGINES = ('ipset', 'vip', 'masquerade', 'fip')
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'driver.py')
# Fewer exercised examples than this means the driver did not really run.
MINIMUM = int(os.environ.get('CN_PROPERTY_MINIMUM', '50'))


def _namespaces(prefix):
    out = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(prefix)]


@pytest.fixture(scope='module')
def drivers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('property')
    prefix = 'cnp-' + uuid.uuid4().hex[:6]
    running = {}
    try:
        for engine in ENGINES:
            name = '%s-%s' % (prefix, engine)
            subprocess.run(['ip', 'netns', 'add', name], check=True)
            subprocess.run(['ip', 'netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'], check=True)
            log = open(str(tmp / (engine + '.log')), 'w+')
            proc = subprocess.Popen(['ip', 'netns', 'exec', name, sys.executable, DRIVER, engine, name + '-x'],
                                    stdout=log, stderr=subprocess.STDOUT, text=True)
            running[engine] = (proc, log)
        yield running
    finally:
        for proc, log in running.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.close()
        for name in _namespaces(prefix):
            subprocess.run(['ip', 'netns', 'del', name], check=False)


@pytest.mark.slow
@pytest.mark.property
@pytest.mark.parametrize('engine', ENGINES)
def test_invariant_holds_for_generated_runs(drivers, engine):
    proc, log = drivers[engine]
    rc = proc.wait()
    log.seek(0)
    output = log.read()
    summary = [line for line in output.splitlines() if line.startswith('SUMMARY ')]
    assert rc == 0 and summary, 'driver %s failed (rc %d):\n%s' % (engine, rc, output[-20000:])
    stats = json.loads(summary[-1][len('SUMMARY '):])
    print(summary[-1])
    assert stats['examples'] >= MINIMUM, stats
    # Each kind of run was reached, not only the refusals.
    assert stats['applied'] > 0 and stats['refused'] > 0 and stats['check_mode'] > 0, stats
