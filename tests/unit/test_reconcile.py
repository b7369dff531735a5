"""The boot runner's --reconcile without a kernel: a stand-in module keeps its "kernel" in a
JSON file and answers check mode with diff in the ipset module's result shape, so a test sees
the check run, the repair, the journal lines, the counters kept across runs and the metric
file as Prometheus' own parser reads it. The real modules' results on a real kernel are
tests/integration/test_reconcile.py."""

import importlib.util
import json
import os
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(REPO, 'roles', 'persistence', 'files', 'restore.py')
spec = importlib.util.spec_from_file_location('clusternet_reconcile', RUNNER)
restore = importlib.util.module_from_spec(spec)
spec.loader.exec_module(restore)

# The ipset module's shape: {ipv4: {name, added, removed}}, diff {before, after} as 'add NAME KEY'
# lines. The "kernel" is a file of entries; the module logs each run's mode into it.
FAKE_SET = '''import json
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type='str', required=True), entries=dict(type='list', elements='str'),
                                              kernel=dict(type='str', required=True)), supports_check_mode=True)
    with open(module.params['kernel']) as handle:
        kernel = json.load(handle)
    have, want = set(kernel['entries']), set(module.params['entries'])
    kernel['runs'].append('check' if module.check_mode else 'apply')
    if not module.check_mode:
        kernel['entries'] = sorted(want)
    with open(module.params['kernel'], 'w') as handle:
        json.dump(kernel, handle)
    name = module.params['name']
    result = dict(changed=have != want, ipv4=dict(name=name, added=sorted(want - have), removed=sorted(have - want)))
    if module._diff:
        result['diff'] = dict(before=''.join('add %s %s\\n' % (name, e) for e in sorted(have)),
                              after=''.join('add %s %s\\n' % (name, e) for e in sorted(want)))
    module.exit_json(**result)
'''
NO_CHECK = '''from ansible.module_utils.basic import AnsibleModule


def main():
    AnsibleModule(argument_spec=dict(path=dict(type='str')))
    open(AnsibleModule.args['path'], 'w').close()
'''


def node(tmp_path, entries, calls=None):
    """DIR as the role writes it, with the fake set module as 'ipset' (and one without check mode as 'vip')."""
    directory = tmp_path / 'state'
    directory.mkdir(mode=0o700)
    with open(str(directory / 'plugins.bundle'), 'w') as bundle:
        with open(os.path.join(REPO, 'plugins', 'module_utils', 'families.py')) as handle:
            families = handle.read()
        for path, source in (('plugins/module_utils/families.py', families), ('plugins/modules/ipset.py', FAKE_SET),
                             ('plugins/modules/vip.py', NO_CHECK)):
            source = source.rstrip('\n')
            bundle.write('%s%s %d\n%s\n' % (restore.MARKER, path, len(source.split('\n')), source))
    kernel = tmp_path / 'kernel.json'
    kernel.write_text(json.dumps({'entries': entries, 'runs': []}))
    calls = calls or [{'module': 'ipset', 'args': {'name': 'cn-svip', 'entries': ['10.43.0.10', '10.43.0.11'], 'kernel': str(kernel)}}]
    (directory / 'state.json').write_text(json.dumps({'calls': calls}))
    for name in ('plugins.bundle', 'state.json'):
        os.chmod(str(directory / name), 0o600)
    return directory, kernel


def reconcile(directory, *flags):
    """The runner as the timer's unit runs it, under Debian's python3 (no Ansible); (status, journal, metrics)."""
    metrics = directory.parent / 'metrics'
    proc = subprocess.run(['/usr/bin/python3', RUNNER, '--reconcile', '--metrics-dir', str(metrics)] + list(flags) + [str(directory)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert 'Traceback' not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, proc.stdout, parse(metrics / 'clusternet_node.prom')


def parse(path):
    """{(name, labels): value} of every sample, through prometheus_client's parser (which
    raises on anything outside the text format), and {name: type}."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(path.read_text()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def sample(metrics, name, **labels):
    return metrics[0].get((name, tuple(sorted(labels.items()))))


def test_drift_is_journaled_repaired_counted_and_gone_on_the_next_run(tmp_path):
    directory, kernel = node(tmp_path, ['10.43.0.10', '10.99.0.1'])
    status, journal, metrics = reconcile(directory)
    assert status == 0, journal
    assert json.loads(kernel.read_text()) == {'entries': ['10.43.0.10', '10.43.0.11'], 'runs': ['check', 'apply']}
    assert 'drift: module=ipset family=ipv4 missing: set cn-svip entry 10.43.0.11' in journal
    assert 'drift: module=ipset family=ipv4 extra: set cn-svip entry 10.99.0.1' in journal
    assert 'ipset cn-svip: repaired' in journal
    assert sample(metrics, 'clusternet_node_drifted_objects', module='ipset', family='ipv4') == 2
    assert sample(metrics, 'clusternet_node_managed_objects', module='ipset', family='ipv4') == 2
    assert sample(metrics, 'clusternet_node_managed_objects', module='ipset', family='ipv6') == 0
    assert sample(metrics, 'clusternet_node_reconcile_repairs_total', module='ipset', family='ipv4') == 2
    assert sample(metrics, 'clusternet_node_reconcile_success') == 1
    assert sample(metrics, 'clusternet_node_reconcile_repair_enabled') == 1
    # prometheus_client names a counter family without _total and its sample with it
    assert metrics[1] == {'clusternet_node_reconcile_last_run_timestamp_seconds': 'gauge', 'clusternet_node_reconcile_success': 'gauge',
                          'clusternet_node_reconcile_repair_enabled': 'gauge', 'clusternet_node_drifted_objects': 'gauge',
                          'clusternet_node_managed_objects': 'gauge', 'clusternet_node_reconcile_repairs': 'counter',
                          'clusternet_node_reconcile_failures': 'counter'}
    assert not [name for name in os.listdir(str(tmp_path / 'metrics')) if name != 'clusternet_node.prom']  # no temporary left
    assert stat_mode(directory / 'reconcile.json') == 0o600
    status, journal, metrics = reconcile(directory)  # in sync now: the counter stays, the gauge drops
    assert status == 0 and 'drift:' not in journal and 'ipset cn-svip: in sync' in journal, journal
    assert json.loads(kernel.read_text())['runs'] == ['check', 'apply', 'check']
    assert sample(metrics, 'clusternet_node_drifted_objects', module='ipset', family='ipv4') is None
    assert sample(metrics, 'clusternet_node_reconcile_repairs_total', module='ipset', family='ipv4') == 2
    kernel.write_text(json.dumps({'entries': [], 'runs': []}))
    _status, _journal, metrics = reconcile(directory)  # counters add up across runs
    assert sample(metrics, 'clusternet_node_reconcile_repairs_total', module='ipset', family='ipv4') == 4


def stat_mode(path):
    return os.stat(str(path)).st_mode & 0o7777


def test_report_only_changes_nothing(tmp_path):
    directory, kernel = node(tmp_path, ['10.43.0.10'])
    status, journal, metrics = reconcile(directory, '--report-only')
    assert status == 0, journal
    assert json.loads(kernel.read_text()) == {'entries': ['10.43.0.10'], 'runs': ['check']}
    assert 'drift: module=ipset family=ipv4 missing: set cn-svip entry 10.43.0.11' in journal
    assert 'ipset cn-svip: drifted, not repaired (report only)' in journal
    assert sample(metrics, 'clusternet_node_drifted_objects', module='ipset', family='ipv4') == 1
    assert sample(metrics, 'clusternet_node_reconcile_repair_enabled') == 0
    assert sample(metrics, 'clusternet_node_reconcile_repairs_total', module='ipset', family='ipv4') is None


def test_a_module_without_check_mode_is_skipped_not_run(tmp_path):
    """What Ansible does with --check: the module's main() stops at AnsibleModule()."""
    touched = tmp_path / 'touched'
    directory, kernel = node(tmp_path, [], calls=[{'module': 'vip', 'args': {'path': str(touched)}}])
    status, journal, _metrics = reconcile(directory)
    assert status == 0 and 'vip: in sync' in journal, journal
    assert not touched.exists()


def test_failures_count_and_unreadable_counters_restart(tmp_path):
    directory, kernel = node(tmp_path, [], calls=[{'module': 'ipset', 'args': {'name': 'x', 'kernel': '/nonexistent/kernel.json'}}])
    (directory / 'reconcile.json').write_text('{"repairs": 3}')
    os.chmod(str(directory / 'reconcile.json'), 0o600)
    status, journal, metrics = reconcile(directory)
    assert status == 1
    assert 'reconcile.json unreadable' in journal and 'ipset x: FAILED: module ipset raised FileNotFoundError' in journal, journal
    assert sample(metrics, 'clusternet_node_reconcile_failures_total', module='ipset') == 1
    assert sample(metrics, 'clusternet_node_reconcile_success') == 0
    _status, _journal, metrics = reconcile(directory)
    assert sample(metrics, 'clusternet_node_reconcile_failures_total', module='ipset') == 2


def test_unsafe_directory_runs_nothing_and_says_so_in_the_metrics(tmp_path):
    directory, kernel = node(tmp_path, [])
    os.chmod(str(directory / 'state.json'), 0o666)
    status, journal, metrics = reconcile(directory)
    assert status == 1 and 'refusing to reconcile' in journal and 'group or others can write it' in journal
    assert json.loads(kernel.read_text())['runs'] == []
    assert sample(metrics, 'clusternet_node_reconcile_success') == 0


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    (tmp_path / 'clusternet_node.prom').write_text('old\n')

    def fail(*_args):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(restore.os, 'rename', fail)
    with pytest.raises(OSError):
        restore.write_atomically(str(tmp_path), 'clusternet_node.prom', 'new\n', 0o644)
    assert os.listdir(str(tmp_path)) == ['clusternet_node.prom']
    assert (tmp_path / 'clusternet_node.prom').read_text() == 'old\n'


# ---- drift per object, from the shapes the modules return (RETURN of each module) ----

def test_ipset_flag_change_is_different_not_missing():
    result = {'ipv4': {'name': 'cn-svip', 'added': ['10.43.0.10 nomatch', '10.43.0.12'], 'removed': []}, 'ipv6': None}
    diff = {'before': 'add cn-svip 10.43.0.10\n', 'after': 'add cn-svip 10.43.0.10 nomatch\nadd cn-svip 10.43.0.12\n'}
    assert restore.drift_of('ipset', dict(result, diff=diff)) == [
        ('ipv4', 'different', 'set cn-svip entry 10.43.0.10 nomatch'), ('ipv4', 'missing', 'set cn-svip entry 10.43.0.12')]


def test_vip_link_address_and_route_drift():
    result = {'interface': {'name': 'kube-dummy-if', 'created': False, 'adopted': False, 'set_up': True, 'deleted': False},
              'ipv4': {'added': ['10.43.0.10'], 'removed': [], 'routes_added': ['local 10.43.0.10 dev kube-dummy-if table local'],
                       'routes_removed': []},
              'ipv6': {'added': [], 'removed': [], 'routes_added': [],
                       'routes_removed': ['local 2001:db8:43::10 dev kube-dummy-if table local proto kernel metric 0 pref medium']}}
    assert restore.drift_of('vip', result) == [
        ('link', 'different', 'interface kube-dummy-if down'),
        ('ipv4', 'missing', 'address 10.43.0.10'), ('ipv4', 'missing', 'route local 10.43.0.10 dev kube-dummy-if table local'),
        ('ipv6', 'extra', 'route local 2001:db8:43::10 dev kube-dummy-if table local proto kernel metric 0 pref medium')]
    after = ('interface kube-dummy-if dummy up\naddress 10.43.0.10/32\n  route local 10.43.0.10 dev kube-dummy-if\n'
             'address 2001:db8:43::10/128\n  route local 2001:db8:43::10 dev kube-dummy-if\n  route x\n')
    assert restore.managed_of('vip', {'diff': {'before': '', 'after': after}}) == {'ipv4': 2, 'ipv6': 3}


def test_nat_drift_is_per_rule_line_per_family():
    jump = '-A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG'
    rule = '-A CLUSTERNET-POSTRTG -s 10.42.0.0/16 -j RETURN'
    diff = {'before': '# ipv4\n%s\n# ipv6\n%s\n' % (rule, '-A CLUSTERNET-POSTRTG -j MASQUERADE'),
            'after': '# ipv4\n%s\n%s\n# ipv6\n' % (jump, rule)}
    assert restore.drift_of('masquerade', {'diff': diff}) == [
        ('ipv4', 'missing', 'rule ' + jump), ('ipv6', 'extra', 'rule -A CLUSTERNET-POSTRTG -j MASQUERADE')]
    assert restore.managed_of('fip', {'diff': diff}) == {'ipv4': 2, 'ipv6': 0}


def test_nft_drift_lines_name_the_object_not_an_extra_rule():
    """A flushed masquerade chain on nftables: the reader's drift line is the drift, not an extra rule."""
    masq = 'add rule ip clusternet masq-postrouting ip saddr @masq-cluster masquerade fully-random'
    diff = {'before': '# ipv4\n# drift: missing rule masq-postrouting\n# drift: unexpected set stray\n'
                      '# drift: chain masq-postrouting differs\n%s\n# ipv6\n' % masq,
            'after': '# ipv4\n%s\n# ipv6\n' % masq}
    assert restore.drift_of('masquerade', {'diff': diff}) == [
        ('ipv4', 'missing', 'rule masq-postrouting'), ('ipv4', 'extra', 'set stray'), ('ipv4', 'different', 'chain masq-postrouting')]


def test_summary_names_the_nftables_table_not_the_iptables_chain(monkeypatch):
    monkeypatch.setattr(restore.AnsibleModule, 'params', {'chain': 'CLUSTERNET-POSTRTG'}, raising=False)
    call = {'module': 'masquerade', 'args': {}}
    assert restore.summary(call, {'changed': True, 'backend': 'nftables'}) == 'masquerade table clusternet: restored (changed)'
    assert restore.summary(call, {'changed': False, 'backend': 'iptables'}) == 'masquerade CLUSTERNET-POSTRTG: already in place'


def test_label_values_are_escaped_for_the_text_format():
    text = restore.render_metrics(1.5, True, True, {('ip"set', 'a\\b\nc'): 1}, {}, {'repairs': {}, 'failures': {}})
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families['clusternet_node_drifted_objects'].samples[0].labels == {'module': 'ip"set', 'family': 'a\\b\nc'}
