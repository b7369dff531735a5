# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reboot one lab node with no playbook run, and compare its host state before and after.

usage: reboot.py INVENTORY NODE [--extra-vars JSON]

The node's container restarts: a fresh network namespace (empty kernel state) and a
systemd boot, whose clusternet-node.service restores what the last converge persisted.
lab/create.yml then plugs and addresses its eth0 again (and its pods'), after the boot
started, as a NIC coming up late. Once systemd has finished booting, the dumps of
lab/dumps.py must equal those taken before the restart. Exit 1 when they differ or the
unit failed; the unit's journal is shown either way. --extra-vars goes to lab/create.yml,
for a lab whose intent a play changed (Molecule's lifecycle), so the wiring follows it.
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dumps  # noqa: E402

UNIT = 'clusternet-node.service'
BOOT_TIMEOUT = 180

# Seconds to let the kernel finish the rewired links' own IPv6 link-local state.
SETTLE_TIMEOUT = 15


def node_dumps(container):
    def run(command):
        return subprocess.run(['podman', 'exec', container, 'sh', '-c', command],
                              capture_output=True, text=True, check=False).stdout
    return dumps.collect(run)


def exec_out(container, *cmd):
    return subprocess.run(['podman', 'exec', container] + list(cmd), capture_output=True, text=True, check=False).stdout.strip()


def reboot(inventory, container, extra_vars=None):
    """{'equal', 'diff', 'unit', 'journal', 'seconds'} of rebooting container."""
    before = node_dumps(container)
    started = time.monotonic()
    subprocess.run(['podman', 'restart', '-t', '10', container], capture_output=True, check=True)
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    extra = ['-e', extra_vars] if extra_vars else []
    wired = subprocess.run([playbook, '-i', inventory] + extra + [os.path.join(HERE, 'create.yml')], capture_output=True, text=True, check=False)
    if wired.returncode != 0:
        raise SystemExit('reboot: lab/create.yml failed to wire %s again:\n%s%s' % (container, wired.stdout[-3000:], wired.stderr[-2000:]))
    # The unit is oneshot: the boot is finished once it (and every other unit) has run.
    deadline = time.monotonic() + BOOT_TIMEOUT
    while exec_out(container, 'systemctl', 'is-system-running') not in ('running', 'degraded'):
        if time.monotonic() > deadline:
            raise SystemExit('reboot: %s did not finish booting within %d s' % (container, BOOT_TIMEOUT))
        time.sleep(0.5)
    state = exec_out(container, 'systemctl', 'is-active', UNIT)
    # The kernel adds the link-local addresses and routes of the rewired links on its own,
    # after their DAD: compare once those have settled (bounded), not in the middle of it.
    settle = time.monotonic() + SETTLE_TIMEOUT
    after = node_dumps(container)
    while after != before and time.monotonic() < settle:
        time.sleep(0.5)
        after = node_dumps(container)
    return {'equal': before == after, 'diff': dumps.differences(before, after), 'unit': state,
            'journal': exec_out(container, 'journalctl', '-b', '-o', 'cat', '--no-pager', '-u', UNIT),
            'seconds': time.monotonic() - started}


def main(argv):
    import check  # the lab inventory reader (check imports this module)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('inventory')
    parser.add_argument('node')
    parser.add_argument('--extra-vars', help='JSON extra vars for lab/create.yml')
    args = parser.parse_args(argv)
    inventory, node = args.inventory, args.node
    nodes = check.inventory(inventory)
    if node not in nodes:
        raise SystemExit('reboot: %s is not a node of %s (nodes: %s)' % (node, inventory, ', '.join(sorted(nodes))))
    container = nodes[node]['ansible_host']
    result = reboot(inventory, container, args.extra_vars)
    print('%s (%s) rebooted in %.1f s; %s is %s' % (node, container, result['seconds'], UNIT, result['unit']))
    print('journal of %s:\n  %s' % (UNIT, result['journal'].replace('\n', '\n  ')))
    ok = result['equal'] and result['unit'] == 'active'
    print('dumps before and after the reboot: %s' % ('equal' if result['equal'] else 'DIFFERENT\n' + result['diff']))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
