"""What is ours in nat, exactly (issue 23, classes 2-4), on the real kernel in the test's namespace.

A chain is ours by the no-op mark rule the module writes first in it; a rule by carrying
exactly our comment; a jump by carrying exactly our jump comment. Everything else is kept
byte for byte: proven by full iptables-save and ip6tables-save dumps (every table, counters
stripped) before and after.
"""

import re

CHAIN, DNAT, SNAT = 'CLUSTERNET-POSTRTG', 'CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT'
MASQ = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64']}
FIPS = {'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'},
                         {'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10::5'}]}
OUR_LINES = ('-A %s ' % CHAIN, '-A %s ' % DNAT, '-A %s ' % SNAT, ':%s ' % CHAIN, ':%s ' % DNAT, ':%s ' % SNAT)
OUR_JUMPS = ('--comment "clusternet masq" -j %s' % CHAIN, '--comment "clusternet fip" -j %s' % DNAT,
             '--comment "clusternet fip" -j %s' % SNAT)


def dumps(ns):
    return dict((tool, [re.sub(r'\[\d+:\d+\]', '[0:0]', line) for line in ns.out(tool).splitlines() if not line.startswith('#')])
                for tool in ('iptables-save', 'ip6tables-save'))


def foreign(ns):
    """Both families' whole dumps without our chains and our jumps."""
    return dict((tool, [line for line in lines if not line.startswith(OUR_LINES) and not line.endswith(OUR_JUMPS)])
                for tool, lines in dumps(ns).items())


def chain(ns, tool, name):
    return [line for line in ns.out('%s -t nat' % tool).splitlines() if line.startswith('-A %s ' % name)]


def test_class2_foreign_jumps_to_our_chain_survive_present_and_block_absent(netns):
    netns.module('masquerade', MASQ)
    for tool, net in (('iptables', '10.99.0.0/16'), ('ip6tables', 'fd99::/64')):
        netns.run('%s -w -t nat -N ADMIN-X && %s -w -t nat -A ADMIN-X -s %s -j %s' % (tool, tool, net, CHAIN))
        netns.run('%s -w -t nat -A POSTROUTING -o eth9 -m comment --comment admin-only -j %s' % (tool, CHAIN))
    before = dumps(netns)
    assert netns.module('masquerade', MASQ)['changed'] is False, 'a foreign conditional jump is no "repeated jump" of ours'
    assert dumps(netns) == before
    result = netns.module('masquerade', {'state': 'absent'}, expect_failure=True)
    assert result['msg'].startswith("ipv4: refusing to remove chain 'CLUSTERNET-POSTRTG': a rule without this module's comment "
                                    "jumps to it: -A POSTROUTING -o eth9 -m comment --comment admin-only -j CLUSTERNET-POSTRTG"), result['msg']
    assert dumps(netns) == before, 'a refused run changed the rules'
    # Once the admin removes their jumps, absent removes exactly ours.
    for tool in ('iptables', 'ip6tables'):
        netns.run('%s -w -t nat -D POSTROUTING -o eth9 -m comment --comment admin-only -j %s && %s -w -t nat -F ADMIN-X' % (tool, CHAIN, tool))
    kept = foreign(netns)
    assert netns.module('masquerade', {'state': 'absent'})['changed'] is True
    assert dumps(netns) == kept


def test_class2_fip_refuses_to_remove_a_chain_a_foreign_rule_jumps_to(netns):
    netns.module('fip', FIPS)
    netns.run('iptables -w -t nat -N ADMIN-X && iptables -w -t nat -A ADMIN-X -s 10.99.0.0/16 -j %s' % SNAT)
    before = dumps(netns)
    result = netns.module('fip', {'floating_ips': []}, expect_failure=True)
    assert "refusing to remove chain 'CLUSTERNET-FIP-SNAT': a rule without this module's comment jumps to it: " \
           "-A ADMIN-X -s 10.99.0.0/16 -j CLUSTERNET-FIP-SNAT" in result['msg'], result['msg']
    assert dumps(netns) == before


def test_class3_a_stray_appended_to_our_chain_is_repaired(netns):
    netns.module('masquerade', MASQ)
    netns.module('fip', FIPS)
    ours = dict((tool, (chain(netns, tool, CHAIN), chain(netns, tool, SNAT))) for tool in ('iptables-save', 'ip6tables-save'))
    assert ours['iptables-save'][0][0] == '-A %s -m comment --comment "clusternet.node masquerade chain"' % CHAIN
    assert ours['iptables-save'][1][0] == '-A %s -m comment --comment "clusternet.node fip chain"' % SNAT
    kept = foreign(netns)
    netns.run('iptables -w -t nat -A %s -s 10.42.0.0/16 -j MASQUERADE && ip6tables -w -t nat -A %s -s fd42::/64 -j MASQUERADE' % (CHAIN, CHAIN))
    netns.run('iptables -w -t nat -I %s 1 -s 10.42.0.9 -j SNAT --to-source 203.0.113.9' % SNAT)
    assert netns.module('masquerade', MASQ)['changed'] is True
    assert netns.module('fip', FIPS)['changed'] is True
    for tool in ('iptables-save', 'ip6tables-save'):
        assert (chain(netns, tool, CHAIN), chain(netns, tool, SNAT)) == ours[tool], tool
    assert foreign(netns) == kept
    assert netns.module('masquerade', MASQ)['changed'] is False and netns.module('fip', FIPS)['changed'] is False


def test_class3_chains_of_a_release_before_marks_are_recognised_and_marked(netns):
    """The rules 0.2.0-0.4 wrote (every rule commented, no mark), planted by hand."""
    masq = '-m comment --comment "clusternet masq"'
    for command in (
            'iptables -w -t nat -N %s' % CHAIN,
            'iptables -w -t nat -A POSTROUTING %s -j %s' % (masq, CHAIN),
            'iptables -w -t nat -A %s -s 10.244.0.0/16 ! -d 224.0.0.0/4 %s -j MASQUERADE --random-fully' % (CHAIN, masq),
            'iptables -w -t nat -N %s' % DNAT,
            'iptables -w -t nat -A PREROUTING -m comment --comment "clusternet fip" -j %s' % DNAT,
            'iptables -w -t nat -A %s -d 198.51.100.10/32 -m comment --comment "clusternet fip 198.51.100.10" -j DNAT --to-destination 10.0.0.5' % DNAT):
        netns.run(command)
    kept = foreign(netns)
    masq4, fips4 = {'cluster_cidrs': ['10.244.0.0/16']}, {'floating_ips': FIPS['floating_ips'][:1]}
    assert netns.module('masquerade', masq4)['changed'] is True
    assert netns.module('fip', fips4)['changed'] is True
    assert chain(netns, 'iptables-save', CHAIN)[0] == '-A %s -m comment --comment "clusternet.node masquerade chain"' % CHAIN
    assert chain(netns, 'iptables-save', DNAT)[0] == '-A %s -m comment --comment "clusternet.node fip chain"' % DNAT
    assert foreign(netns) == kept
    assert netns.module('masquerade', masq4)['changed'] is False and netns.module('fip', fips4)['changed'] is False


def test_class3_a_chain_we_did_not_create_is_still_refused(netns):
    netns.run('iptables -w -t nat -N %s && iptables -w -t nat -A %s -s 10.42.0.0/16 -j MASQUERADE' % (CHAIN, CHAIN))
    before = dumps(netns)
    result = netns.module('masquerade', MASQ, expect_failure=True)
    assert "refusing to manage chain 'CLUSTERNET-POSTRTG': it holds a rule without this module's comment" in result['msg']
    assert dumps(netns) == before


def test_class4_a_comment_that_only_resembles_a_fip_comment_is_left_alone(netns):
    netns.module('fip', FIPS)
    netns.run('iptables -w -t nat -A PREROUTING -d 203.0.113.77/32 -m comment --comment "clusternet fip  203.0.113.77/32" '
              '-j DNAT --to-destination 10.0.0.77')
    netns.run('ip6tables -w -t nat -A PREROUTING -d 2001:db8::77/128 -m comment --comment "clusternet fip 2001:DB8::77" '
              '-j DNAT --to-destination fd00::77')
    kept = foreign(netns)
    assert any('clusternet fip  203.0.113.77/32' in line for line in kept['iptables-save'])
    result = netns.module('fip', {'floating_ips': []})
    assert result['changed'] is True and result['ipv4']['removed'] == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'}]
    assert dumps(netns) == kept, 'only our chains and jumps went'


def postrouting(ns, tool):
    return [line for line in ns.out('%s -t nat' % tool).splitlines() if line.startswith('-A POSTROUTING ')]


def test_masquerade_repairs_its_jump_after_the_fip_snat_jump(netns):
    """Both SNAT and MASQUERADE end a packet's NAT: a FIP's pod must meet its SNAT first, also
    after the masquerade jump was deleted or moved first by hand and repaired."""
    netns.module('masquerade', MASQ)
    netns.module('fip', FIPS)
    converged = dict((tool, postrouting(netns, tool)) for tool in ('iptables-save', 'ip6tables-save'))
    for tool, lines in converged.items():
        assert lines[:2] == ['-A POSTROUTING -m comment --comment "clusternet fip" -j %s' % SNAT,
                             '-A POSTROUTING -m comment --comment "clusternet masq" -j %s' % CHAIN], (tool, lines)
    jump = '-m comment --comment "clusternet masq" -j %s' % CHAIN
    for tool in ('iptables', 'ip6tables'):
        netns.run('%s -w -t nat -A POSTROUTING -o eth9 -j RETURN && %s -w -t nat -D POSTROUTING %s' % (tool, tool, jump))
    assert netns.module('masquerade', MASQ)['changed'] is True
    for tool in ('iptables', 'ip6tables'):
        assert postrouting(netns, tool + '-save')[:2] == converged[tool + '-save'][:2], tool
        netns.run('%s -w -t nat -D POSTROUTING %s && %s -w -t nat -I POSTROUTING 1 %s' % (tool, jump, tool, jump))
    assert netns.module('masquerade', MASQ)['changed'] is True
    for tool in ('iptables-save', 'ip6tables-save'):
        assert postrouting(netns, tool)[:2] == converged[tool][:2], tool
        assert postrouting(netns, tool)[-1] == '-A POSTROUTING -o eth9 -j RETURN', 'a foreign rule moved'
    assert netns.module('masquerade', MASQ)['changed'] is False
