"""A failure after a write says exactly what was applied; rules left in the other iptables
backend are found, named, and removed only when asked. Real kernel, test namespaces;
shims on PATH only fail a restore or point the active tools at iptables-legacy."""

import os
import re

import pytest

MASQ = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64']}
FIPS = {'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'},
                         {'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10::5'}]}
TOOLS = ('iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'iptables-restore', 'ip6tables-restore')


def dump(ns, tool):
    """A whole rule set as one save tool prints it, without counters and timestamps."""
    return [re.sub(r'\[\d+:\d+\]', '[0:0]', line) for line in ns.out(tool).splitlines() if not line.startswith('#')]


def shim(directory, name, body):
    path = directory / name
    path.write_text('#!/bin/sh\n%s\n' % body)
    path.chmod(0o755)


@pytest.fixture
def failing_ip6_restore(tmp_path, monkeypatch):
    shim(tmp_path, 'ip6tables-restore', 'cat > /dev/null; echo "ip6tables-restore: line 2 failed" >&2; exit 1')
    monkeypatch.setenv('PATH', '%s:%s' % (tmp_path, os.environ['PATH']))


@pytest.fixture
def legacy(tmp_path, monkeypatch):
    """Make the active tools iptables-legacy while installed (call it); undo with legacy.off()."""
    directory = tmp_path / 'legacy'
    directory.mkdir()
    for name in TOOLS:
        family, _sep, kind = name.partition('-')
        shim(directory, name, 'exec /usr/sbin/%s-legacy%s "$@"' % (family, '-' + kind if kind else ''))
    path = os.environ['PATH']

    class Switch(object):
        def on(self):
            monkeypatch.setenv('PATH', '%s:%s' % (directory, path))

        def off(self):
            monkeypatch.setenv('PATH', path)
    return Switch()


def test_masquerade_ipv6_restore_failure_reports_ipv4_applied(netns, failing_ip6_restore):
    before6 = dump(netns, 'ip6tables-save')
    result = netns.module('masquerade', MASQ, expect_failure=True)
    assert result['msg'] == ('ip6tables-restore --noflush failed (exit 1): ip6tables-restore: line 2 failed. '
                             'Applied: ipv4 rules. Not applied: ipv6 rules.')
    assert result['ipv4']['applied'] is True and result['ipv6']['applied'] is False and result['changed'] is True
    assert dump(netns, 'ip6tables-save') == before6
    assert sum(1 for line in dump(netns, 'iptables-save') if line.startswith('-A CLUSTERNET-POSTRTG ')) == 7  # the mark and 6 rules


def test_fip_ipv6_restore_failure_reports_rules_and_conntrack_per_family(netns, monkeypatch, tmp_path):
    netns.module('fip', FIPS)
    netns.run('conntrack -I -p tcp -s 203.0.113.2 -d 198.51.100.10 --sport 1000 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
              ' && conntrack -I -p tcp -s 2001:db8:1::2 -d 2001:db8:ff::10 --sport 1000 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300')
    before6 = dump(netns, 'ip6tables-save')
    shim(tmp_path, 'ip6tables-restore', 'cat > /dev/null; echo "ip6tables-restore: line 2 failed" >&2; exit 1')
    monkeypatch.setenv('PATH', '%s:%s' % (tmp_path, os.environ['PATH']))
    result = netns.module('fip', {'floating_ips': []}, expect_failure=True)
    assert result['msg'] == ('ip6tables-restore --noflush failed (exit 1): ip6tables-restore: line 2 failed. '
                             'Applied: ipv4 rules, ipv4 conntrack flush. Not applied: ipv6 rules, ipv6 conntrack flush.')
    assert (result['ipv4']['applied'], result['ipv4']['conntrack_flushed']) == (True, 1)
    assert (result['ipv6']['applied'], result['ipv6']['conntrack_flushed']) == (False, None)
    assert not [line for line in dump(netns, 'iptables-save') if 'clusternet fip' in line]
    assert dump(netns, 'ip6tables-save') == before6
    assert '198.51.100.10' not in netns.out('conntrack -L -f ipv4 2>/dev/null')
    assert '2001:db8:ff::10' in netns.out('conntrack -L -f ipv6 2>/dev/null'), 'the IPv6 flush was not run'


def legacy_dumps(ns):
    return dump(ns, 'iptables-legacy-save'), dump(ns, 'ip6tables-legacy-save')


def ours(lines, *chains):
    return [line for line in lines if any(chain in line for chain in chains)]


@pytest.mark.parametrize('name, args, chains', [
    ('masquerade', MASQ, ('CLUSTERNET-POSTRTG',)),
    ('fip', FIPS, ('CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT')),
])
def test_rules_left_in_the_legacy_backend_are_named_then_purged_on_request(netns, legacy, name, args, chains):
    legacy.on()
    netns.module(name, args)
    legacy.off()
    left = legacy_dumps(netns)
    assert all(ours(lines, *chains) for lines in left), 'the legacy backend holds our chains in both families'

    result = netns.module(name, args)
    warnings = [warning for warning in result.get('warnings', []) if 'legacy backend' in warning]
    assert len(warnings) == 2 and all(chains[0] in warning and 'purge_other_backend' in warning for warning in warnings)
    assert '(iptables-legacy-save -t nat)' in warnings[0] and '(ip6tables-legacy-save -t nat)' in warnings[1]
    assert result['ipv4']['other_backend']['backend'] == 'legacy' and result['ipv4']['other_backend']['payload'] == ''
    assert legacy_dumps(netns) == left, 'without the option nothing is written to the other backend'
    assert netns.module(name, args)['changed'] is False

    nft = dump(netns, 'iptables-save'), dump(netns, 'ip6tables-save')
    check = netns.module(name, dict(args, purge_other_backend=True), check=True)
    assert check['changed'] is True and legacy_dumps(netns) == left
    purged = netns.module(name, dict(args, purge_other_backend=True))
    assert purged['changed'] is True and purged['ipv4']['other_backend']['applied'] is True
    assert not any(ours(lines, *chains) for lines in legacy_dumps(netns)), 'legacy backend purged in both families'
    assert [ours(lines, *chains) for lines in legacy_dumps(netns)] == [[], []]
    assert (dump(netns, 'iptables-save'), dump(netns, 'ip6tables-save')) == nft, 'the active backend is untouched'
    again = netns.module(name, args)
    assert again['changed'] is False and not [w for w in again.get('warnings', []) if 'backend' in w]


def test_chains_left_in_nft_are_named_when_legacy_is_active(netns, legacy):
    netns.module('masquerade', MASQ)
    nft = dump(netns, 'iptables-nft-save'), dump(netns, 'ip6tables-nft-save')
    legacy.on()
    result = netns.module('masquerade', MASQ)
    assert [w for w in result['warnings'] if 'nft backend (iptables-nft-save -t nat)' in w and 'CLUSTERNET-POSTRTG' in w]
    legacy.off()
    assert (dump(netns, 'iptables-nft-save'), dump(netns, 'ip6tables-nft-save')) == nft
