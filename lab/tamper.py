# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tamper with one lab node's host state as the field does, then wait for its reconcile
(`lab.sh tamper NODE`, and the last step of `make lab`: lab/check.py --tamper NODE).

Inside NODE's container, with the stock tools: our masquerade chain flushed (iptables -F, or
nft flush chain on the NAT backend nftables),
one VIP's local route deleted, one entry of one of our sets removed (the first of the
persisted ipset calls that has entries), kube-dummy-if flapped (down, up: the kernel
re-adds its own routes to the VIPs). Then waits until clusternet-node-reconcile.service
has run since, and returns its journal and the node's clusternet_node.prom, parsed with
Prometheus' own parser; lab/check.py --tamper turns them into checks.
"""

import json
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

UNIT = 'clusternet-node-reconcile.service'
STATE = '/var/lib/clusternet-node/state.json'
METRICS = '/var/lib/prometheus/node-exporter/clusternet_node.prom'
FLUSH_MASQUERADE = {'iptables': 'iptables -w -t nat -F CLUSTERNET-POSTRTG', 'nftables': 'nft flush chain ip clusternet masq-postrouting'}
VIP_DEV = 'kube-dummy-if'
WAIT = 120  # seconds: several of the lab's reconcile intervals


def sh(container, command, check=True):
    proc = subprocess.run(['podman', 'exec', container, 'sh', '-c', command], capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise SystemExit('tamper: %s in %s failed: %s' % (command, container, proc.stderr.strip()))
    return proc.stdout


def metrics(container):
    """{(name, ((label, value), ...)): value} of the node's metric file; {} when there is none yet."""
    text = sh(container, 'cat %s 2>/dev/null || true' % METRICS)
    return dict(((sample.name, tuple(sorted(sample.labels.items()))), sample.value)
                for family in text_string_to_metric_families(text) for sample in family.samples)


def tamper(container, backend='iptables'):
    """The tampering, each step as a line of what was done."""
    calls = json.loads(sh(container, 'cat %s' % STATE))['calls']
    target = next(call['args'] for call in calls if call['module'] == 'ipset' and call['args'].get('entries'))
    entry = target['entries'][0]
    name = target['name'] if ':' not in entry else target.get('ipv6_name') or 'inet6:' + target['name']
    route = sh(container, 'ip -4 route show table local dev %s | head -n1' % VIP_DEV).strip()
    done = [FLUSH_MASQUERADE[backend], 'ip route del %s table local' % route, 'ipset del %s %s' % (name, entry),
            'ip link set %s down' % VIP_DEV, 'ip link set %s up' % VIP_DEV]
    sh(container, ' && '.join(done))
    return done


def run(container, backend='iptables'):
    """{'done', 'journal', 'before', 'after', 'seconds'}: tamper, then the first reconcile that starts after it."""
    before = metrics(container)
    since = sh(container, 'date +%s').strip()
    started = time.monotonic()
    done = tamper(container, backend)
    deadline = started + WAIT
    after = before
    while time.monotonic() < deadline:
        time.sleep(2)
        after = metrics(container)
        stamp = after.get(('clusternet_node_reconcile_last_run_timestamp_seconds', ()), 0)
        if stamp > int(since) and 'repaired' in sh(container, 'journalctl -q -o cat -u %s --since @%s' % (UNIT, since), check=False):
            break
    journal = sh(container, 'journalctl -q -o cat -u %s --since @%s' % (UNIT, since), check=False)
    return {'done': done, 'journal': journal.strip(), 'before': before, 'after': after, 'seconds': time.monotonic() - started}
