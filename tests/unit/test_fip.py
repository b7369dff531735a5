import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import conntrack
from ansible_collections.clusternet.node.plugins.module_utils import fip as fipmod
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt

ip = ipaddress.ip_address
D, S = 'CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT'
DNAT10 = '-d 198.51.100.10/32 -m comment --comment "clusternet fip 198.51.100.10" -j DNAT --to-destination 10.0.0.5'
SNAT10 = '-s 10.0.0.5/32 -m comment --comment "clusternet fip 198.51.100.10" -j SNAT --to-source 198.51.100.10'
DNAT11 = '-d 198.51.100.11/32 -m comment --comment "clusternet fip 198.51.100.11" -j DNAT --to-destination 10.0.0.6'
SNAT11 = '-s 10.0.0.6/32 -m comment --comment "clusternet fip 198.51.100.11" -j SNAT --to-source 198.51.100.11'
JUMP_D = '-m comment --comment "clusternet fip" -j CLUSTERNET-FIP-DNAT'
JUMP_S = '-m comment --comment "clusternet fip" -j CLUSTERNET-FIP-SNAT'
FOREIGN = '-d 192.0.2.1/32 -j DNAT --to-destination 10.9.9.9'
MARK_F = '-m comment --comment "clusternet.node fip chain"'

SAVE = '''*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CLUSTERNET-FIP-DNAT - [0:0]
:CLUSTERNET-FIP-SNAT - [0:0]
-A PREROUTING -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-DNAT
-A PREROUTING %(foreign)s
-A OUTPUT -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-DNAT
-A POSTROUTING -m comment --comment "clusternet fip" -j CLUSTERNET-FIP-SNAT
-A CLUSTERNET-FIP-DNAT %(d10)s
-A CLUSTERNET-FIP-DNAT %(d11)s
-A CLUSTERNET-FIP-SNAT %(s10)s
-A CLUSTERNET-FIP-SNAT %(s11)s
COMMIT
''' % dict(foreign=FOREIGN, d10=DNAT10, d11=DNAT11, s10=SNAT10, s11=SNAT11)
# As a release before chain marks left the chains: every rule carries a FIP comment, no mark.
SAVE_UNMARKED = SAVE
# As the module writes them now: each chain starts with its mark.
SAVE = SAVE.replace('-A CLUSTERNET-FIP-DNAT %s\n' % DNAT10, '-A CLUSTERNET-FIP-DNAT %s\n-A CLUSTERNET-FIP-DNAT %s\n' % (MARK_F, DNAT10)).replace(
    '-A CLUSTERNET-FIP-SNAT %s\n' % SNAT10, '-A CLUSTERNET-FIP-SNAT %s\n-A CLUSTERNET-FIP-SNAT %s\n' % (MARK_F, SNAT10))


def nat(text=SAVE):
    return ipt.parse_save(text)['nat']


def plan(table, wanted, state='present', exclusive=True, allow_foreign_chain=False, dnat=D, snat=S):
    """own() then plan(), with the restore lines queued as .lines."""
    result = fipmod.plan(fipmod.own(table, dnat, snat, allow_foreign_chain), wanted, state, exclusive, dnat, snat)
    result.lines = result.transaction.render().splitlines()[1:-1]
    return result


def texts(pairs):
    return [(chain, rule.text) for chain, rule in pairs]


# --- validation -------------------------------------------------------------------

def validate(fips, state='present', dnat=D, snat=S):
    return fipmod.validate(fips, state, dnat, snat)


def test_validate_groups_by_family_in_list_order():
    wanted = validate([{'external_ip': '2001:DB8:ff::10', 'internal_ip': 'fd00:10::5'},
                       {'external_ip': '198.51.100.11', 'internal_ip': '10.0.0.6'},
                       {'external_ip': '198.51.100.10/32', 'internal_ip': '10.0.0.5'}])
    assert list(wanted['ipv4'].items()) == [(ip('198.51.100.11'), ip('10.0.0.6')), (ip('198.51.100.10'), ip('10.0.0.5'))]
    assert wanted['ipv6'] == {ip('2001:db8:ff::10'): ip('fd00:10::5')}


@pytest.mark.parametrize('fips, message', [
    ([{'external_ip': '198.51.100.10', 'internal_ip': 'fd00::5'}], 'floating IP 198.51.100.10: internal_ip fd00::5 is of another address family'),
    ([{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'}, {'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.6'}],
     'external_ip 198.51.100.10 is listed twice'),
    ([{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'}, {'external_ip': '198.51.100.11', 'internal_ip': '10.0.0.5/32'}],
     'internal_ip 10.0.0.5 is listed twice'),
    ([{'external_ip': '198.51.100.300', 'internal_ip': '10.0.0.5'}], "invalid external_ip '198.51.100.300'"),
    ([{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.0/24'}], "invalid internal_ip '10.0.0.0/24'"),
    ([{'external_ip': '198.51.100.10', 'internal_ip': None}], 'floating IP 198.51.100.10 has no internal_ip'),
    ([{'external_ip': '0.0.0.0', 'internal_ip': '10.0.0.5'}], "invalid external_ip '0.0.0.0': it is a"),
    ([{'external_ip': 'ff02::1', 'internal_ip': 'fd00::5'}], "invalid external_ip 'ff02::1': it is a"),
    ([{'external_ip': '198.51.100.10', 'internal_ip': '127.0.0.1'}], "invalid internal_ip '127.0.0.1': it is a"),
    ([{'external_ip': '2001:db8::1', 'internal_ip': 'fe80::1%eth0'}], "invalid internal_ip 'fe80::1%eth0'"),
    ([{'external_ip': '::ffff:198.51.100.10', 'internal_ip': '::ffff:10.0.0.5'}], "invalid external_ip '::ffff:198.51.100.10': it is IPv4-mapped"),
    ([{'external_ip': '2001:db8::1', 'internal_ip': '::ffff:a00:5'}], "invalid internal_ip '::ffff:a00:5': it is IPv4-mapped"),
])
def test_validate_errors_name_the_value(fips, message):
    with pytest.raises(ValueError) as err:
        validate(fips)
    assert message in str(err.value)


def test_validate_absent_needs_external_only():
    assert validate([{'external_ip': '198.51.100.10', 'internal_ip': None}], state='absent')['ipv4'] == {ip('198.51.100.10'): None}


@pytest.mark.parametrize('dnat, snat, message', [
    ('PREROUTING', S, "invalid dnat_chain 'PREROUTING'"),
    (D, 'X' * 29, "invalid snat_chain '" + 'X' * 29),
    (D, 'has space', "invalid snat_chain 'has space'"),
    (D, D, 'dnat_chain and snat_chain are both'),
    ('DNAT', S, "invalid dnat_chain 'DNAT': it is the name of an iptables target extension"),
    (D, 'MASQUERADE', "invalid snat_chain 'MASQUERADE'"),
    (D, 'tproxy', "invalid snat_chain 'tproxy'"),
])
def test_validate_chains(dnat, snat, message):
    with pytest.raises(ValueError) as err:
        validate([], dnat=dnat, snat=snat)
    assert message in str(err.value)


# --- rules ---------------------------------------------------------------------------

def test_desired_rules_exact_text_both_families():
    assert texts(fipmod.desired_rules(ip('198.51.100.10'), ip('10.0.0.5'), D, S)) == [(D, DNAT10), (S, SNAT10)]
    assert texts(fipmod.desired_rules(ip('2001:db8:ff::10'), ip('fd00:10::5'), D, S)) == [
        (D, '-d 2001:db8:ff::10/128 -m comment --comment "clusternet fip 2001:db8:ff::10" -j DNAT --to-destination fd00:10::5'),
        (S, '-s fd00:10::5/128 -m comment --comment "clusternet fip 2001:db8:ff::10" -j SNAT --to-source 2001:db8:ff::10'),
    ]


def test_find_fips_by_comment_anywhere_ignores_jumps_and_foreign_rules():
    stray = '-d 198.51.100.10/32 -m comment --comment "clusternet fip 198.51.100.10" -j DNAT --to-destination 10.0.0.7'
    fips = fipmod.find_fips(nat(SAVE.replace('-A OUTPUT -m', '-A OUTPUT %s\n-A OUTPUT -m' % stray)))
    assert sorted(fips) == [ip('198.51.100.10'), ip('198.51.100.11')]
    assert texts(fips[ip('198.51.100.10')].rules) == [('OUTPUT', stray), (D, DNAT10), (S, SNAT10)]
    assert fips[ip('198.51.100.10')].internals == [ip('10.0.0.7'), ip('10.0.0.5')]
    assert fips[ip('198.51.100.11')].internal == ip('10.0.0.6')


# --- plan ------------------------------------------------------------------------------

def test_plan_in_sync_is_empty_whatever_the_list_order():
    result = plan(nat(), {ip('198.51.100.11'): ip('10.0.0.6'), ip('198.51.100.10'): ip('10.0.0.5')})
    assert (result.lines, result.added, result.changed, result.removed, result.flush) == ([], [], [], [], [])
    assert result.after == result.before == ['-A %s %s' % (D, MARK_F), '-A %s %s' % (D, DNAT10), '-A %s %s' % (D, DNAT11),
                                             '-A %s %s' % (S, MARK_F), '-A %s %s' % (S, SNAT10), '-A %s %s' % (S, SNAT11)]


def test_plan_from_empty_table_creates_chains_and_jumps_in_one_batch():
    result = plan(ipt.Table('nat'), {ip('198.51.100.10'): ip('10.0.0.5')})
    assert result.lines == [
        ':%s - [0:0]' % D, '-A %s %s' % (D, MARK_F), '-A %s %s' % (D, DNAT10), '-I PREROUTING 1 ' + JUMP_D, '-I OUTPUT 1 ' + JUMP_D,
        ':%s - [0:0]' % S, '-A %s %s' % (S, MARK_F), '-A %s %s' % (S, SNAT10), '-I POSTROUTING 1 ' + JUMP_S,
    ]
    assert result.added == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'}]
    assert result.before == []


def test_plan_exclusive_removes_unlisted_and_flushes_its_mapping():
    result = plan(nat(), {ip('198.51.100.10'): ip('10.0.0.5')})
    assert result.lines == [':%s - [0:0]' % D, '-A %s %s' % (D, MARK_F), '-A %s %s' % (D, DNAT10),
                            ':%s - [0:0]' % S, '-A %s %s' % (S, MARK_F), '-A %s %s' % (S, SNAT10)]
    assert result.removed == [{'external_ip': '198.51.100.11', 'internal_ip': '10.0.0.6'}]
    assert result.flush == [(ip('198.51.100.11'), [ip('10.0.0.6')])]


def test_plan_not_exclusive_keeps_unlisted_verbatim():
    odd = SAVE.replace(SNAT11, SNAT11 + ' --persistent')
    result = plan(nat(odd), {ip('198.51.100.12'): ip('10.0.0.7')}, exclusive=False)
    assert result.removed == [] and result.added == [{'external_ip': '198.51.100.12', 'internal_ip': '10.0.0.7'}]
    expected = [MARK_F, SNAT10, SNAT11 + ' --persistent', SNAT10.replace('10.0.0.5', '10.0.0.7').replace('198.51.100.10', '198.51.100.12')]
    assert ipt.parse_save('*nat\n%s\nCOMMIT\n' % '\n'.join(
        line for line in result.lines if line.startswith('-A ')))['nat'].chain_rules(S) == [ipt.Rule(text) for text in expected]


def test_plan_not_exclusive_rejects_internal_ip_of_a_kept_fip():
    with pytest.raises(ValueError) as err:
        plan(nat(), {ip('198.51.100.12'): ip('10.0.0.6')}, exclusive=False)
    assert str(err.value) == 'internal_ip 10.0.0.6 of floating IP 198.51.100.12 is already used by floating IP 198.51.100.11'


def test_plan_remap_rewrites_both_rules_and_flushes_old_mapping():
    result = plan(nat(), {ip('198.51.100.10'): ip('10.0.0.9'), ip('198.51.100.11'): ip('10.0.0.6')})
    assert result.changed == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.9', 'previous_internal_ip': '10.0.0.5'}]
    assert result.flush == [(ip('198.51.100.10'), [ip('10.0.0.5')])]
    assert result.lines == [
        ':%s - [0:0]' % D, '-A %s %s' % (D, MARK_F), '-A %s %s' % (D, DNAT10.replace('10.0.0.5', '10.0.0.9')), '-A %s %s' % (D, DNAT11),
        ':%s - [0:0]' % S, '-A %s %s' % (S, MARK_F), '-A %s %s' % (S, SNAT10.replace('10.0.0.5', '10.0.0.9')), '-A %s %s' % (S, SNAT11),
    ]


def test_plan_absent_by_external_ip_alone_removes_every_rule_of_it():
    stray = '-d 198.51.100.10/32 -m comment --comment "clusternet fip 198.51.100.10" -j DNAT --to-destination 10.0.0.7'
    text = SAVE.replace('-A OUTPUT -m', '-A OUTPUT %s\n-A OUTPUT -m' % stray)
    result = plan(nat(text), {ip('198.51.100.10'): None}, state='absent')
    assert result.lines == ['-D OUTPUT ' + stray, ':%s - [0:0]' % D, '-A %s %s' % (D, MARK_F), '-A %s %s' % (D, DNAT11),
                            ':%s - [0:0]' % S, '-A %s %s' % (S, MARK_F), '-A %s %s' % (S, SNAT11)]
    assert result.removed == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.7'}]
    assert result.flush == [(ip('198.51.100.10'), [ip('10.0.0.7'), ip('10.0.0.5')])]


def test_plan_absent_last_fip_removes_chains_keeps_foreign_rule():
    table = nat(SAVE.replace('-A CLUSTERNET-FIP-DNAT %s\n' % DNAT11, '').replace('-A CLUSTERNET-FIP-SNAT %s\n' % SNAT11, ''))
    result = plan(table, {ip('198.51.100.10'): None}, state='absent')
    assert result.lines == ['-D PREROUTING ' + JUMP_D, '-D OUTPUT ' + JUMP_D, ':%s - [0:0]' % D, '-X %s' % D,
                            '-D POSTROUTING ' + JUMP_S, ':%s - [0:0]' % S, '-X %s' % S]
    assert result.after == []


def test_plan_keeps_uncommented_rule_in_our_chain_first():
    text = SAVE_UNMARKED.replace('-A CLUSTERNET-FIP-DNAT %s\n' % DNAT10, '-A CLUSTERNET-FIP-DNAT %s\n-A CLUSTERNET-FIP-DNAT %s\n' % (DNAT10, FOREIGN))
    result = plan(nat(text), {ip('198.51.100.11'): ip('10.0.0.6')}, allow_foreign_chain=True)
    assert result.lines[:3] == [':%s - [0:0]' % D, '-A %s %s' % (D, FOREIGN), '-A %s %s' % (D, DNAT11)]


def test_rule_with_unparsable_fip_comment_is_foreign_and_kept():
    odd = '-d 192.0.2.1/32 -m comment --comment "clusternet fip 1.2.3" -j DNAT --to-destination 10.9.9.9'
    assert fipmod.fip_of(ipt.Rule(odd)) is None and fipmod.fip_of(ipt.Rule(DNAT10)) == ip('198.51.100.10')
    text = SAVE_UNMARKED.replace('-A CLUSTERNET-FIP-DNAT %s\n' % DNAT10, '-A CLUSTERNET-FIP-DNAT %s\n-A CLUSTERNET-FIP-DNAT %s\n' % (DNAT10, odd))
    result = plan(nat(text), {ip('198.51.100.11'): ip('10.0.0.6')}, allow_foreign_chain=True)
    assert result.lines[:3] == [':%s - [0:0]' % D, '-A %s %s' % (D, odd), '-A %s %s' % (D, DNAT11)]


def test_plan_absent_unknown_fip_is_a_no_op():
    result = plan(nat(), {ip('198.51.100.99'): None}, state='absent')
    assert (result.lines, result.removed, result.flush) == ([], [], [])


def test_plan_repairs_duplicate_rule_without_flush():
    text = SAVE.replace('-A CLUSTERNET-FIP-SNAT %s\n' % SNAT10, '-A CLUSTERNET-FIP-SNAT %s\n' % SNAT10 * 2)
    result = plan(nat(text), {ip('198.51.100.10'): ip('10.0.0.5'), ip('198.51.100.11'): ip('10.0.0.6')})
    assert result.changed == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5', 'previous_internal_ip': '10.0.0.5'}]
    assert result.flush == []
    assert result.lines == [':%s - [0:0]' % S, '-A %s %s' % (S, MARK_F), '-A %s %s' % (S, SNAT10), '-A %s %s' % (S, SNAT11)]


def test_plan_new_chain_names_move_the_rules():
    result = plan(nat(), {ip('198.51.100.10'): ip('10.0.0.5')}, 'present', True, dnat='NEW-D', snat='NEW-S')
    assert result.lines == [
        '-D %s %s' % (D, DNAT10), '-D %s %s' % (S, SNAT10), '-D %s %s' % (D, DNAT11), '-D %s %s' % (S, SNAT11),
        ':NEW-D - [0:0]', '-A NEW-D ' + MARK_F, '-A NEW-D ' + DNAT10, '-I PREROUTING 1 -m comment --comment "clusternet fip" -j NEW-D',
        '-I OUTPUT 1 -m comment --comment "clusternet fip" -j NEW-D',
        ':NEW-S - [0:0]', '-A NEW-S ' + MARK_F, '-A NEW-S ' + SNAT10, '-I POSTROUTING 1 -m comment --comment "clusternet fip" -j NEW-S',
    ]
    assert result.changed == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5', 'previous_internal_ip': '10.0.0.5'}]
    assert result.removed == [{'external_ip': '198.51.100.11', 'internal_ip': '10.0.0.6'}]


@pytest.mark.parametrize('extra, chain, rule', [
    ('-A CLUSTERNET-FIP-DNAT %s\n' % FOREIGN, 'dnat_chain', '-A CLUSTERNET-FIP-DNAT ' + FOREIGN),
    ('-A CLUSTERNET-FIP-SNAT -m comment --comment "clusternet masq" -j MASQUERADE\n', 'snat_chain',
     '-A CLUSTERNET-FIP-SNAT -m comment --comment "clusternet masq" -j MASQUERADE'),
])
def test_plan_refuses_chains_holding_foreign_rules_in_every_state(extra, chain, rule):
    """Unmarked chains (a release before marks) with a foreign rule: not ours, whatever else they hold."""
    table = nat(SAVE_UNMARKED.replace('COMMIT\n', extra + 'COMMIT\n'))
    for state, wanted in (('present', {ip('198.51.100.12'): ip('10.0.0.7')}), ('absent', {ip('198.51.100.10'): None}), ('present', {})):
        with pytest.raises(ValueError) as err:
            plan(table, wanted, state=state)
        assert str(err.value).startswith("refusing to manage %s '%s': it holds a rule without this module's comment: %s" % (
            chain, D if chain == 'dnat_chain' else S, rule))


def test_plan_refuses_an_empty_chain_jumped_to_by_a_foreign_rule():
    table = nat('*nat\n:PREROUTING ACCEPT [0:0]\n:%s - [0:0]\n-A PREROUTING -i eth9 -j %s\nCOMMIT\n' % (D, D))
    with pytest.raises(ValueError) as err:
        plan(table, {ip('198.51.100.10'): ip('10.0.0.5')})
    assert "it is empty and a rule without this module's comment jumps to it: -A PREROUTING -i eth9 -j %s" % D in str(err.value)


def test_plan_in_sync_whatever_form_ip6tables_save_prints():
    """An IPv4-compatible FIP: ip6tables-save prints ::198.51.100.10 where Python prints ::c633:640a."""
    external, internal = ip('::c633:640a'), ip('fd00:10::5')
    rules = fipmod.desired_rules(external, internal, D, S)
    saved = '\n'.join('-A %s %s' % (chain, rule.text.replace('::c633:640a/', '::198.51.100.10/').replace('source ::c633:640a', 'source ::198.51.100.10'))
                      for chain, rule in rules)
    assert '-d ::198.51.100.10/128' in saved and '--to-source ::198.51.100.10' in saved
    text = ('*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:%s - [0:0]\n:%s - [0:0]\n'
            '-A PREROUTING %s\n-A OUTPUT %s\n-A POSTROUTING %s\n-A %s %s\n-A %s %s\n%s\nCOMMIT\n' % (
                D, S, JUMP_D, JUMP_D, JUMP_S, D, MARK_F, S, MARK_F, saved))
    assert plan(nat(text), {external: internal}).lines == []


# --- conntrack selection -----------------------------------------------------------------

@pytest.mark.parametrize('src, dst, selected', [
    ('203.0.113.2', '198.51.100.10', True),
    ('10.0.0.5', '203.0.113.2', True),
    ('203.0.113.2', '198.51.100.11', False),
    ('2001:db8:1::2', '2001:db8:ff:0::10', True),
    ('2001:db8:1::2', '2001:db8:ff::11', False),
])
def test_conntrack_selects_by_original_tuple(src, dst, selected):
    sources = {ip('10.0.0.5')}
    destinations = {ip('198.51.100.10'), ip('2001:db8:ff::10')}
    assert conntrack.selects(src, dst, sources, destinations) is selected


def test_conntrack_flush_failure_names_family_and_addresses(monkeypatch):
    class NetlinkError(Exception):
        pass

    def socket(nfgen_family):
        raise NetlinkError('Operation not permitted')

    monkeypatch.setattr(conntrack, 'LIB', {'NetlinkError': NetlinkError, 'NFCTSocket': socket, 'NFCTAttrTuple': None})
    with pytest.raises(conntrack.ConntrackError) as err:
        conntrack.flush('ipv4', {ip('10.0.0.5')}, {ip('198.51.100.10')})
    assert str(err.value) == 'conntrack ipv4 flush of the entries from 10.0.0.5 or to 198.51.100.10 failed: Operation not permitted'


def test_plan_allowed_foreign_chain_without_fips_keeps_its_rules_and_drops_our_jumps():
    text = SAVE_UNMARKED.replace('-A CLUSTERNET-FIP-DNAT %s\n' % DNAT10, '-A CLUSTERNET-FIP-DNAT %s\n-A CLUSTERNET-FIP-DNAT %s\n' % (FOREIGN, DNAT10))
    result = plan(nat(text), {}, allow_foreign_chain=True)
    assert result.lines == [':%s - [0:0]' % D, '-A %s %s' % (D, FOREIGN), '-D PREROUTING ' + JUMP_D, '-D OUTPUT ' + JUMP_D,
                            '-D POSTROUTING ' + JUMP_S, ':%s - [0:0]' % S, '-X %s' % S]
