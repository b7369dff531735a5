"""clusternet.node.ipset against the raw kernel tools, all through Ansible.

Cases (inside a throwaway network namespace):
- 10k IPv4 + 10k IPv6 entries into empty sets: the module vs. one `ipset restore`
  of the same creates and adds through ansible.builtin.command (target <= 1.5x);
- a no-change re-run of the module vs. `ipset save` through ansible.builtin.command
  (target <= 1.3x);
- a per-entry task loop (`ipset add` per item), timed over LOOP_ITEMS items and
  extrapolated to 20k: what the module saves.
Both sides read their input the same way, from a file on the controller through
lookup('file'), so both pay the same Ansible start-up. An entry list written inline
in the playbook costs Ansible itself about a second more to load (each of the 20k
strings is tagged with its origin and deep-copied); that case is printed too, for
information. Exits non-zero when a target is missed.
"""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import play, report, run_playbook, timed, with_netns  # noqa: E402

PER_FAMILY = 10000
LOOP_ITEMS = int(os.environ.get('BENCH_LOOP_ITEMS', '200'))
NAME = 'bench-pods'

IPV4 = ['10.%d.%d.%d' % (i // 62500, i // 250 % 250, i % 250 + 1) for i in range(PER_FAMILY)]
IPV6 = ['2001:db8:42:%x::%x' % (i // 4096 + 1, i % 4096 + 1) for i in range(PER_FAMILY)]
RESTORE = '\n'.join(
    ['create %s hash:ip family inet' % NAME, 'create inet6:%s hash:ip family inet6' % NAME]
    + ['add %s %s' % (NAME, entry) for entry in IPV4]
    + ['add inet6:%s %s' % (NAME, entry) for entry in IPV6]) + '\n'

TMP = tempfile.mkdtemp(prefix='bench-ipset-')
ENTRIES_FILE = os.path.join(TMP, 'entries.txt')
RESTORE_FILE = os.path.join(TMP, 'restore.txt')
MODULE = play([{'clusternet.node.ipset': {'name': NAME, 'entries': "{{ lookup('file', '%s').splitlines() }}" % ENTRIES_FILE}}])
MODULE_INLINE = play([{'clusternet.node.ipset': {'name': NAME, 'entries': IPV4 + IPV6}}])
RAW_RESTORE = play([{'ansible.builtin.command': {'cmd': 'ipset restore', 'stdin': "{{ lookup('file', '%s') }}" % RESTORE_FILE}}])
RAW_SAVE = play([{'ansible.builtin.command': {'cmd': 'ipset save'}}])
LOOP = play([{'ansible.builtin.command': 'ipset add -exist %s {{ item }}' % NAME, 'loop': IPV4[:LOOP_ITEMS]}])


def empty(ns):
    ns.run('ipset destroy')


def created(ns):
    ns.run('ipset destroy; ipset restore', input=RESTORE.split('add ', maxsplit=1)[0])


def filled(ns):
    ns.run('ipset destroy; ipset restore', input=RESTORE)


def entries(ns):
    return sorted(line for line in ns.out('ipset save').splitlines() if line.startswith('add '))


def once(ns, playbook, setup):
    setup(ns)
    start = time.monotonic()
    proc = run_playbook(playbook, netns=ns.name)
    if proc.returncode != 0:
        raise SystemExit('benchmark play failed:\n%s\n%s' % (proc.stdout[-4000:], proc.stderr[-2000:]))
    return time.monotonic() - start


def bench(ns):
    with open(ENTRIES_FILE, 'w') as handle:
        handle.write('\n'.join(IPV4 + IPV6) + '\n')
    with open(RESTORE_FILE, 'w') as handle:
        handle.write(RESTORE)
    module_fill = timed(ns, MODULE, setup=empty)
    by_module = entries(ns)
    raw_fill = timed(ns, RAW_RESTORE, setup=empty)
    if by_module != entries(ns) or len(by_module) != 2 * PER_FAMILY:
        raise SystemExit('the module and ipset restore did not leave the same %d entries' % (2 * PER_FAMILY))
    module_same = timed(ns, MODULE, setup=filled)
    raw_save = timed(ns, RAW_SAVE, setup=filled)
    module_inline = timed(ns, MODULE_INLINE, setup=empty)
    # one loop iteration's cost, without the play's start-up (about one trivial play)
    loop = raw_save + (once(ns, LOOP, created) - raw_save) * (2 * PER_FAMILY) / LOOP_ITEMS
    return report('clusternet.node.ipset, 10k IPv4 + 10k IPv6 entries (median of %s runs)' % os.environ.get('BENCH_REPEATS', '3'), [
        ('fill empty sets: ipset restore via ansible.builtin.command', raw_fill, None, None),
        ('fill empty sets: clusternet.node.ipset', module_fill, raw_fill, 1.5),
        ('no change: ipset save via ansible.builtin.command', raw_save, None, None),
        ('no change: clusternet.node.ipset', module_same, raw_save, 1.3),
        ('fill empty sets: clusternet.node.ipset, entries inline in the playbook', module_inline, raw_fill, None),
        ('fill empty sets: per-entry task loop (extrapolated from %d items)' % LOOP_ITEMS, loop, module_fill, None),
    ])


if __name__ == '__main__':
    try:
        sys.exit(0 if with_netns(bench) else 1)
    finally:
        shutil.rmtree(TMP)
