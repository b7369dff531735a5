"""Rules as we render them, written by the real restore tools and read back from the real
save tools, in both families and every iptables backend on this machine, compare equal
by structure; and the modules converge (a second run changes nothing) on every value
class whose text the save tools print differently from how we write it."""

import os
import re
import shutil
import sys

import pytest
from harness import link_collection

sys.path.insert(0, link_collection())  # the rendering under test is the collection's own

from ansible_collections.clusternet.node.plugins.module_utils import fip as fipmod  # noqa: E402
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt  # noqa: E402
from ansible_collections.clusternet.node.plugins.module_utils import masquerade as masq  # noqa: E402
from ansible_collections.clusternet.node.plugins.module_utils.families import parse_address, parse_network  # noqa: E402

BACKENDS = ['nft'] + (['legacy'] if shutil.which('iptables-legacy-save') else [])
COMMENTS = ['abc_-1', '-j', '--comment', '!', 'clusternet masq', 'a#b $c;d%e&f', 'x' * 255, 'a"b\\c\'d']
NETWORKS = {
    'ipv4': ['10.244.0.0/16', '10.0.0.5/32', '0.0.0.0/0'],
    # compressed, IPv4-mapped and IPv4-compatible (printed dotted by inet_ntop), a /0
    'ipv6': ['fd00:10:244::/56', '2001:db8::5/128', '::ffff:a2a:0/112', '::a2a:0/112', '::/0'],
}
ADDRESSES = {'ipv4': ['10.0.0.5', '198.51.100.10'], 'ipv6': ['fd00:10::5', '::ffff:c633:640a', '::c633:640a']}


def rendered(family):
    """Rules of every value class, as our engine renders them."""
    rules = []
    for comment in COMMENTS:
        rules.append('%s -j RETURN' % ipt.comment_match(comment))
    for network in NETWORKS[family]:
        rules.append('-s %s ! -d %s %s -j MASQUERADE --random-fully' % (network, ipt.MULTICAST[family], ipt.comment_match('c')))
        if not network.endswith('/0'):  # nf_tables refuses a negated /0
            rules.append('! -s %s -d %s -j RETURN' % (network, network))
    rules.append('-m mark --mark 0x4000/0x4000 %s -j RETURN' % ipt.comment_match('clusternet masq'))
    rules.append('-m mark --mark 0x1 -j RETURN')
    rules.extend(rule.text for rule in masq.desired_rules(family, [parse_network(NETWORKS[family][0])], [], '-j', '0x4000/0x4000', True))
    for external in ADDRESSES[family]:
        for internal in ADDRESSES[family]:
            rules.extend(rule.text for _chain, rule in fipmod.desired_rules(parse_address(external), parse_address(internal), 'X', 'X'))
    return rules


def tool(family, backend, kind):
    return '%s-%s-%s' % ('iptables' if family == 'ipv4' else 'ip6tables', backend, kind)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('family', ['ipv4', 'ipv6'])
def test_save_output_parses_to_the_structure_we_rendered(netns, family, backend):
    rules = rendered(family)
    # NAT targets are valid only in chains their hooks reach: DNAT from PREROUTING, the rest from POSTROUTING.
    chains = ['PREROUTING' if ' -j DNAT ' in rule else 'POSTROUTING' for rule in rules]
    netns.run('%s --noflush' % tool(family, backend, 'restore'),
              input='*nat\n%s\nCOMMIT\n' % '\n'.join('-A %s %s' % pair for pair in zip(chains, rules)))
    saved = ipt.parse_save(netns.out('%s -t nat' % tool(family, backend, 'save')))['nat']
    assert saved.backend == backend
    back = saved.chain_rules('PREROUTING') + saved.chain_rules('POSTROUTING')
    rules = [rule for chain, rule in zip(chains, rules) if chain == 'PREROUTING'] + [rule for chain, rule in zip(chains, rules) if chain != 'PREROUTING']
    assert [rule.key for rule in back] == [ipt.Rule(rule).key for rule in rules]
    texts = [rule.text for rule in back]
    # The test is about text that differs: it must have met some.
    assert '-m comment --comment abc_-1 -j RETURN' in texts and '-m comment --comment -j -j RETURN' in texts
    assert sum(1 for a, b in zip(texts, rules) if a != b) >= 8
    if family == 'ipv6':
        assert any('::ffff:10.42.0.0/112' in text for text in texts) and any('::10.42.0.0/112' in text for text in texts)
        assert any('--to-destination ::198.51.100.10' in text for text in texts)


def nat_lines(ns, chain):
    return [line for line in ns.out('iptables-save -t nat; ip6tables-save -t nat').splitlines() if chain in line and line.startswith('-A ')]


def test_masquerade_converges_on_every_comment_class(netns):
    args = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64']}
    for comment in ('abc_-1', '-j', '--comment', '!', 'x' * 255, 'a#b $c;d'):
        assert netns.module('masquerade', dict(args, comment=comment))['changed'] is True, comment
        assert netns.module('masquerade', dict(args, comment=comment))['changed'] is False, comment
        jumps = [line for line in nat_lines(netns, 'CLUSTERNET-POSTRTG') if line.startswith('-A POSTROUTING')]
        assert len(jumps) == 2, 'one jump per family, whatever the comment: %s' % jumps
        assert netns.module('masquerade', {'state': 'absent', 'comment': comment})['changed'] is True
        assert nat_lines(netns, 'CLUSTERNET-POSTRTG') == []


def test_masquerade_converges_on_ipv4_compatible_cidrs(netns):
    args = {'cluster_cidrs': ['::a2a:0/112'], 'pod_cidrs': ['::a2a:100/120']}
    assert netns.module('masquerade', args)['changed'] is True
    assert any('::10.42.0.0/112' in line for line in nat_lines(netns, 'CLUSTERNET-POSTRTG')), 'printed dotted'
    assert netns.module('masquerade', args)['changed'] is False


def test_fip_converges_on_ipv4_compatible_addresses(netns):
    args = {'floating_ips': [{'external_ip': '::c633:640a', 'internal_ip': '::a00:5'}]}
    assert netns.module('fip', args)['changed'] is True
    assert any('--to-destination ::10.0.0.5' in line for line in nat_lines(netns, 'CLUSTERNET-FIP-DNAT')), 'printed dotted'
    assert netns.module('fip', args)['changed'] is False
    assert netns.module('fip', {'floating_ips': [{'external_ip': '::198.51.100.10'}], 'state': 'absent'})['changed'] is True
    assert nat_lines(netns, 'CLUSTERNET-FIP') == []


def dumps(ns):
    return [re.sub(r'\[\d+:\d+\]', '[0:0]', line) for line in ns.out('iptables-save; ip6tables-save').splitlines() if not line.startswith('#')]


@pytest.mark.parametrize('name, args, named', [
    ('masquerade', {'cluster_cidrs': ['10.244.0.0/16', '::ffff:10.244.0.0/112']}, "'::ffff:10.244.0.0/112': it is IPv4-mapped"),
    ('masquerade', {'cluster_cidrs': ['fd00::/56', '::ffff:0:0/96']}, "'::ffff:0:0/96'"),
    ('fip', {'floating_ips': [{'external_ip': '::ffff:198.51.100.10', 'internal_ip': 'fd00:10::5'}]}, "'::ffff:198.51.100.10': it is IPv4-mapped"),
    ('fip', {'floating_ips': [{'external_ip': '2001:db8:ff::10', 'internal_ip': '::ffff:10.0.0.5'}]}, "'::ffff:10.0.0.5'"),
], ids=['masq-cidr', 'masq-whole-mapped-range', 'fip-external', 'fip-internal'])
def test_ipv4_mapped_input_is_refused_and_changes_nothing(netns, name, args, named):
    netns.module('masquerade', {'cluster_cidrs': ['10.244.0.0/16']})
    netns.module('fip', {'floating_ips': [{'external_ip': '198.51.100.11', 'internal_ip': '10.0.0.6'}]})
    before = dumps(netns)
    assert named in netns.module(name, args, expect_failure=True)['msg']
    assert dumps(netns) == before


def test_no_legacy_table_is_created_by_reading(netns):
    """The other backend is read only where it has a nat table: a run never instantiates one."""
    if not os.path.exists('/usr/sbin/iptables-legacy-save'):
        pytest.fail('iptables-legacy-save is part of Debian 12 iptables; this test expects it')
    netns.module('masquerade', {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56']})
    netns.module('fip', {'floating_ips': [{'external_ip': '198.51.100.11', 'internal_ip': '10.0.0.6'}]})
    assert 'nat' not in netns.run('cat /proc/net/ip_tables_names /proc/net/ip6_tables_names', check=False).stdout.split()
