"""Shared benchmark plumbing: time playbooks inside a throwaway network namespace.

Both sides of every comparison are Ansible plays with the same start-up cost, so
the printed ratio is what a user would see, not what a tool costs in isolation.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))

from harness import Netns, run_playbook  # noqa: E402

REPEATS = int(os.environ.get('BENCH_REPEATS', '3'))


def play(tasks):
    """A one-play playbook (YAML is a JSON superset) against localhost."""
    import json
    return json.dumps([{'hosts': 'all', 'gather_facts': False, 'tasks': tasks}])


def timed(netns, playbook_text, setup=None, repeats=None):
    """Median wall time of repeats (default REPEATS) runs; setup(netns) runs untimed before each."""
    times = []
    for _repeat in range(repeats or REPEATS):
        if setup:
            setup(netns)
        start = time.monotonic()
        proc = run_playbook(playbook_text, netns=netns.name)
        elapsed = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit('benchmark play failed:\n%s\n%s' % (proc.stdout[-4000:], proc.stderr[-2000:]))
        times.append(elapsed)
    return statistics.median(times)


def interleaved(ns, cases):
    """{label: median seconds} over REPEATS rounds, every case once per round, so
    the cases share the machine's load (2 cores, other benchmarks running) instead of
    each meeting a different moment of it."""
    times = dict((label, []) for label, _text, _setup in cases)
    for _round in range(REPEATS):
        for label, text, setup in cases:
            times[label].append(timed(ns, text, setup=setup, repeats=1))
    return dict((label, statistics.median(values)) for label, values in times.items())


def report(title, rows):
    """rows: [(label, seconds, baseline_seconds or None, target ratio or None)]."""
    print('\n## %s' % title)
    print('| case | seconds | ratio | target |')
    print('|---|---|---|---|')
    worst = True
    for label, seconds, baseline, target in rows:
        ratio = seconds / baseline if baseline else None
        ok = ratio is None or target is None or ratio <= target
        worst = worst and ok
        verdict = ('<= %.1fx %s' % (target, 'ok' if ok else 'MISSED')) if target else '-'
        print('| %s | %.2f | %s | %s |' % (label, seconds, '%.2fx' % ratio if ratio else '-', verdict))
    return worst


def with_netns(fn):
    ns = Netns()
    try:
        return fn(ns)
    finally:
        ns.delete()
