"""masquerade and fip refuse chains they did not create, and chain names iptables takes as
targets, changing nothing; with allow_foreign_chain they manage them as documented.

Every refusal is proven by full iptables-save and ip6tables-save dumps (every table,
counters stripped) taken before and after the run in the test's own namespace.
"""

import re

import pytest

MASQ = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64']}
FIPS = {'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'},
                         {'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10::5'}]}


def dumps(ns):
    """Both families' whole rule sets as the save tools print them, without counters and timestamps."""
    return dict((tool, [re.sub(r'\[\d+:\d+\]', '[0:0]', line) for line in ns.out(tool).splitlines() if not line.startswith('#')])
                for tool in ('iptables-save', 'ip6tables-save'))


def refused(ns, name, args, *named):
    """Run the module expecting a refusal naming each of named; assert nothing changed; return the message."""
    before = dumps(ns)
    result = ns.module(name, args, expect_failure=True)
    for value in named:
        assert value in result['msg'], result['msg']
    assert dumps(ns) == before, 'a refused run changed the rules'
    return result['msg']


def foreign_chain(ns, chain, family='both'):
    for tool in {'both': ('iptables', 'ip6tables'), 'ipv4': ('iptables',), 'ipv6': ('ip6tables',)}[family]:
        ns.run('%s -w -t nat -N %s && %s -w -t nat -A %s -p tcp --dport 25 -j RETURN' % (tool, chain, tool, chain))


@pytest.mark.parametrize('state', ['present', 'absent'])
def test_masquerade_refuses_a_chain_holding_foreign_rules(netns, state):
    foreign_chain(netns, 'KEEP-ME')
    msg = refused(netns, 'masquerade', dict(MASQ, chain='KEEP-ME', state=state),
                  "refusing to manage chain 'KEEP-ME'", '-A KEEP-ME -p tcp -m tcp --dport 25 -j RETURN', 'allow_foreign_chain')
    assert msg.startswith('ipv4: ')


def test_masquerade_refuses_before_writing_either_family(netns):
    """The IPv4 chain would be fine; the IPv6 one is foreign: IPv4 is not written either."""
    foreign_chain(netns, 'CLUSTERNET-POSTRTG', family='ipv6')
    msg = refused(netns, 'masquerade', MASQ, "ipv6: refusing to manage chain 'CLUSTERNET-POSTRTG'")
    assert 'dport 25' in msg


def test_masquerade_refuses_an_empty_chain_a_foreign_rule_jumps_to(netns):
    netns.run('iptables -w -t nat -N CLUSTERNET-POSTRTG && iptables -w -t nat -A PREROUTING -i eth9 -j CLUSTERNET-POSTRTG')
    refused(netns, 'masquerade', MASQ, 'it is empty and a rule without', '-A PREROUTING -i eth9 -j CLUSTERNET-POSTRTG')


def test_masquerade_takes_over_an_empty_unreferenced_chain(netns):
    """`iptables -t nat -F` leaves our chain empty and unreferenced: nothing of anyone's to lose."""
    netns.module('masquerade', MASQ)
    netns.run('iptables -w -t nat -F && ip6tables -w -t nat -F')
    assert netns.module('masquerade', MASQ)['changed'] is True
    assert netns.module('masquerade', MASQ)['changed'] is False
    assert netns.out('iptables-save -t nat').count('-j CLUSTERNET-POSTRTG') == 1


def test_fip_and_masquerade_cannot_be_pointed_at_each_other(netns):
    netns.module('masquerade', MASQ)
    netns.module('fip', FIPS)
    refused(netns, 'fip', dict(FIPS, dnat_chain='CLUSTERNET-POSTRTG'), "refusing to manage dnat_chain 'CLUSTERNET-POSTRTG'",
            '--comment "clusternet masq"')
    refused(netns, 'fip', dict(FIPS, snat_chain='CLUSTERNET-POSTRTG'), "refusing to manage snat_chain 'CLUSTERNET-POSTRTG'")
    refused(netns, 'masquerade', dict(MASQ, chain='CLUSTERNET-FIP-SNAT'), "refusing to manage chain 'CLUSTERNET-FIP-SNAT'",
            'clusternet fip 198.51.100.10')
    refused(netns, 'masquerade', {'state': 'absent', 'chain': 'CLUSTERNET-FIP-DNAT'}, "refusing to manage chain 'CLUSTERNET-FIP-DNAT'")
    # A masquerade comment that fip would read as a FIP of its own.
    refused(netns, 'masquerade', dict(MASQ, comment='clusternet fip 198.51.100.99'), "invalid comment 'clusternet fip 198.51.100.99'")
    assert netns.module('masquerade', MASQ)['changed'] is False and netns.module('fip', FIPS)['changed'] is False


def test_fip_refuses_foreign_rules_in_its_chains_then_keeps_them_when_allowed(netns):
    foreign_chain(netns, 'CLUSTERNET-FIP-DNAT')
    refused(netns, 'fip', FIPS, "refusing to manage dnat_chain 'CLUSTERNET-FIP-DNAT'", '--dport 25 -j RETURN')
    refused(netns, 'fip', {'floating_ips': []}, "refusing to manage dnat_chain 'CLUSTERNET-FIP-DNAT'")
    result = netns.module('fip', dict(FIPS, allow_foreign_chain=True))
    assert result['changed'] is True
    for tool, ext in (('iptables', '198.51.100.10'), ('ip6tables', '2001:db8:ff::10')):
        chain = [line for line in netns.out('%s-save -t nat' % tool).splitlines() if line.startswith('-A CLUSTERNET-FIP-DNAT ')]
        assert chain[0] == '-A CLUSTERNET-FIP-DNAT -p tcp -m tcp --dport 25 -j RETURN', 'the foreign rule stays, first'
        assert len(chain) == 2 and '"clusternet fip %s"' % ext in chain[1]
    assert netns.module('fip', dict(FIPS, allow_foreign_chain=True))['changed'] is False
    # Removing every FIP gives the chain back as it was: its foreign rule, no jump of ours.
    netns.module('fip', {'floating_ips': [], 'allow_foreign_chain': True})
    for tool in ('iptables-save', 'ip6tables-save'):
        assert [line for line in netns.out(tool + ' -t nat').splitlines() if 'CLUSTERNET-FIP' in line] == [
            ':CLUSTERNET-FIP-DNAT - [0:0]', '-A CLUSTERNET-FIP-DNAT -p tcp -m tcp --dport 25 -j RETURN']


def test_masquerade_with_allow_foreign_chain_makes_it_exactly_ours(netns):
    foreign_chain(netns, 'CLUSTERNET-POSTRTG')
    assert netns.module('masquerade', dict(MASQ, allow_foreign_chain=True))['changed'] is True
    for tool in ('iptables-save', 'ip6tables-save'):
        chain = [line for line in netns.out(tool + ' -t nat').splitlines() if line.startswith('-A CLUSTERNET-POSTRTG ')]
        assert chain[0] == '-A CLUSTERNET-POSTRTG -m comment --comment "clusternet.node masquerade chain"', 'marked ours'
        assert len(chain) == 7 and all('--comment "clusternet masq"' in line for line in chain[1:])
    assert netns.module('masquerade', MASQ)['changed'] is False, 'now ours: no option needed'


@pytest.mark.parametrize('name, option', [
    ('masquerade', 'chain'), ('fip', 'dnat_chain'), ('fip', 'snat_chain')])
def test_target_names_are_refused_naming_the_value(netns, name, option):
    base = MASQ if name == 'masquerade' else FIPS
    netns.module(name, base)
    for value in ('MASQUERADE', 'DNAT', 'SNAT', 'REJECT', 'LOG', 'MARK', 'CT', 'TPROXY', 'notrack'):
        refused(netns, name, dict(base, **{option: value}), "invalid %s '%s'" % (option, value))
