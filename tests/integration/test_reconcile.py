"""The persistence role's reconcile against a real kernel: a namespace plays the lab's gw1
(as in test_persist.py), the roles converge it, then each object kind is tampered with as
the field does it, and `restore.py --reconcile` runs as the timer's unit runs it. Report-only
changes nothing (full dumps compared); repair brings back exactly the converged dumps; each
drifted object has its journal line and its metric; foreign state is never named nor touched."""

import importlib.util
import json
import os
import re
import sys
import time

import pytest
from harness import REPO, run_playbook
from prometheus_client.parser import text_string_to_metric_families

spec = importlib.util.spec_from_file_location('persist_helpers', os.path.join(REPO, 'tests', 'integration', 'test_persist.py'))
persist = importlib.util.module_from_spec(spec)
spec.loader.exec_module(persist)

COUNTERS = re.compile(r'\[\d+:\d+\]')
# What the test compares whole: every table of both iptables, every set, address and route.
FULL = (('ipset', 'ipset save'), ('iptables', 'iptables-save'), ('ip6tables', 'ip6tables-save'),
        ('addresses', 'ip addr show'), ('routes ipv4', 'ip -4 route show table all'), ('routes ipv6', 'ip -6 route show table all'))
FOREIGN = re.compile(r'foreign|10\.99\.|192\.0\.2\.99|203\.0\.113|2001:db8:99|fd99')  # test_persist.FOREIGN's objects
JUMP = '-A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG'
TAMPER = '''
ipset del cn-svip 10.43.0.10
iptables -w -t nat -F CLUSTERNET-POSTRTG
iptables -w -t nat -D POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG
ip addr del 10.43.0.53/32 dev kube-dummy-if
ip route del local 10.43.0.10 dev kube-dummy-if table local
sysctl -qw net.ipv6.conf.kube-dummy-if.keep_addr_on_down=1
ip link set kube-dummy-if down
ip link set kube-dummy-if up
'''


def full_dumps(ns):
    """Everything, only the packet counters cleared (they move with traffic, not with state)."""
    return dict((name, '\n'.join(COUNTERS.sub('[0:0]', line) for line in ns.out(cmd).splitlines() if not line.startswith('#')))
                for name, cmd in FULL)


def reconcile(ns, state_dir, metrics_dir, *flags):
    proc = ns.run('%s %s/restore.py --reconcile --metrics-dir %s %s %s' % (
        sys.executable, state_dir, metrics_dir, ' '.join(flags), state_dir), check=False)
    assert 'Traceback' not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    with open(os.path.join(metrics_dir, 'clusternet_node.prom')) as handle:
        text = handle.read()
    metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            metrics[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return proc, metrics


def drifted(metrics, module, family):
    return metrics.get(('clusternet_node_drifted_objects', (('family', family), ('module', module))))


@pytest.fixture
def dirs(tmp_path):
    unit_dir = tmp_path / 'systemd'
    (unit_dir / 'multi-user.target.wants').mkdir(parents=True)
    (unit_dir / 'timers.target.wants').mkdir()
    return str(tmp_path / 'clusternet-node'), str(unit_dir), str(tmp_path / 'metrics')


def test_tampered_objects_are_reported_then_repaired_and_foreign_state_is_untouched(netns, dirs):
    state_dir, unit_dir, metrics_dir = dirs
    persist.as_gw1(netns)
    netns.run(persist.FOREIGN)
    persist.converge(netns, state_dir, unit_dir, persistence_reconcile_repair=False, persistence_reconcile_interval=20)
    with open(os.path.join(unit_dir, 'clusternet-node-reconcile.service')) as handle:
        assert ' --reconcile --report-only --metrics-dir /var/lib/prometheus/node-exporter ' in handle.read()
    with open(os.path.join(unit_dir, 'clusternet-node-reconcile.timer')) as handle:
        assert 'OnUnitInactiveSec=20s\n' in handle.read()
    converged, converged_full = persist.node_dumps(netns), full_dumps(netns)
    proc, metrics = reconcile(netns, state_dir, metrics_dir)  # in sync: nothing drifted
    assert proc.returncode == 0 and 'drift:' not in proc.stdout, proc.stdout
    assert metrics[('clusternet_node_reconcile_success', ())] == 1
    assert metrics[('clusternet_node_managed_objects', (('family', 'ipv4'), ('module', 'masquerade')))] > 1
    assert not [key for key in metrics if key[0] == 'clusternet_node_drifted_objects']

    netns.run(TAMPER)
    time.sleep(1)  # the kernel re-adds its IPv6 routes from a work queue after link up
    tampered = full_dumps(netns)
    assert 'cn-svip 10.43.0.10' not in tampered['ipset'] and JUMP not in tampered['iptables']
    proc, metrics = reconcile(netns, state_dir, metrics_dir, '--report-only')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert full_dumps(netns) == tampered  # report only: not one byte of state changed
    journal = proc.stdout
    for line in ('drift: module=ipset family=ipv4 missing: set cn-svip entry 10.43.0.10',
                 'drift: module=masquerade family=ipv4 missing: rule ' + JUMP,
                 'drift: module=masquerade family=ipv4 missing: rule -A CLUSTERNET-POSTRTG ',
                 'drift: module=vip family=ipv4 missing: address 10.43.0.53',
                 'drift: module=vip family=ipv4 missing: route local 10.43.0.10 dev kube-dummy-if table local proto kernel scope host src 192.168.50.13',
                 'drift: module=vip family=ipv6 extra: route local 2001:db8:43::10 dev kube-dummy-if table local proto kernel',
                 'ipset cn-svip: drifted, not repaired (report only)'):
        assert line in journal, (line, journal)
    assert not FOREIGN.search(journal), journal
    assert drifted(metrics, 'ipset', 'ipv4') == 1
    assert drifted(metrics, 'masquerade', 'ipv4') == journal.count('drift: module=masquerade family=ipv4 ') > 2
    assert drifted(metrics, 'masquerade', 'ipv6') is None  # untouched family
    assert drifted(metrics, 'vip', 'ipv6') == journal.count('drift: module=vip family=ipv6 ') >= 1
    assert metrics[('clusternet_node_reconcile_repair_enabled', ())] == 0

    proc, metrics = reconcile(netns, state_dir, metrics_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'ipset cn-svip: repaired' in proc.stdout and 'vip kube-dummy-if: repaired' in proc.stdout
    now = persist.node_dumps(netns)
    # The module puts a missing jump right after our fip SNAT jump, where the converge wrote it
    # (so a FIP's pod meets its SNAT first): the repaired state is the converged one.
    assert now['nat ipv4'].splitlines().count(JUMP) == 1
    difference = persist.dumps.differences(converged, now)
    assert difference == '', difference
    repaired = full_dumps(netns)
    foreign = dict((name, [line for line in text.splitlines() if FOREIGN.search(line)]) for name, text in converged_full.items())
    assert sorted(name for name in foreign if foreign[name]) == ['addresses', 'ip6tables', 'ipset', 'iptables', 'routes ipv4', 'routes ipv6']
    for name, lines in foreign.items():  # foreign state, line for line, as converged
        assert all(line in repaired[name].splitlines() for line in lines), name
    repairs = dict((dict(key[1])['module'] + ' ' + dict(key[1])['family'], value) for key, value in metrics.items()
                   if key[0] == 'clusternet_node_reconcile_repairs_total')
    assert repairs['ipset ipv4'] == 1 and repairs['masquerade ipv4'] == drifted(metrics, 'masquerade', 'ipv4')

    proc, metrics = reconcile(netns, state_dir, metrics_dir)  # repaired: in sync again
    assert proc.returncode == 0 and 'drift:' not in proc.stdout, proc.stdout
    assert not [key for key in metrics if key[0] == 'clusternet_node_drifted_objects']
    assert json.loads(open(os.path.join(state_dir, 'reconcile.json')).read())['failures'] == []

    persist.converge(netns, state_dir, unit_dir, persistence_reconcile_interval=0)  # 0: the timer goes
    assert not os.path.exists(os.path.join(unit_dir, 'clusternet-node-reconcile.timer'))
    assert not os.path.exists(os.path.join(unit_dir, 'clusternet-node-reconcile.service'))
    assert not os.listdir(os.path.join(unit_dir, 'timers.target.wants'))
    assert os.path.exists(os.path.join(unit_dir, 'clusternet-node.service'))


@pytest.mark.parametrize('interval, message', [
    ('-1', 'persistence_reconcile_interval must be a number of seconds, 0 to disable the timer, got -1'),
    ('5m', "argument 'persistence_reconcile_interval' is of type str and we were unable to convert to int")])
def test_an_interval_that_is_not_seconds_fails_before_the_role_writes(dirs, interval, message):
    state_dir, unit_dir, _metrics_dir = dirs
    play = [{'hosts': 'all', 'gather_facts': False, 'roles': ['clusternet.node.persistence'],
             'vars': {'persistence_dir': state_dir, 'persistence_unit_dir': unit_dir, 'persistence_write_calls': False,
                      'persistence_reconcile_interval': interval}}]
    proc = run_playbook(json.dumps(play))
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert not os.path.exists(state_dir) and not os.listdir(os.path.join(unit_dir, 'timers.target.wants'))
