"""engine.run's shared steps, the iptables fake's fidelity to the recorded dumps, and the
masquerade and fip engines' run() driven end to end on FakeIptables (no root)."""

import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import engine, fip, info, masquerade
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.engine import EngineError, KernelError, Step
from fakes import Failed, FakeIptables, FakeModule, fixture

CHAIN = 'CLUSTERNET-POSTRTG'
D, S = 'CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT'


def kernel(name, **kwargs):
    """FakeIptables over the recorded nft dumps NAME.v4 / NAME.v6 (plus legacy= a v4 legacy dump)."""
    dumps = {('ipv4', 'nft'): fixture(name + '.v4'), ('ipv6', 'nft'): fixture(name + '.v6')}
    legacy = kwargs.pop('legacy', None)
    if legacy:
        dumps[('ipv4', 'legacy')] = fixture(legacy)
    return FakeIptables(dumps, **kwargs)


def body(text):
    """A dump without its comment lines (the fixture's header, the tool's timestamps)."""
    return [line for line in text.splitlines() if not line.startswith('#')]


def masq_params(**overrides):
    params = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64'],
              'chain': CHAIN, 'comment': 'clusternet masq', 'random_fully': True, 'skip_mark': '0x4000/0x4000',
              'allow_foreign_chain': False, 'purge_other_backend': False, 'state': 'present'}
    params.update(overrides)
    return params


def fip_params(**overrides):
    params = {'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.244.1.5'},
                               {'external_ip': '2001:db8::10', 'internal_ip': 'fd00:10:244:1::5'}],
              'exclusive': True, 'dnat_chain': D, 'snat_chain': S, 'flush_conntrack': True,
              'allow_foreign_chain': False, 'purge_other_backend': False, 'state': 'present'}
    params.update(overrides)
    return params


def run(engine_module, params, fake, check_mode=False, diff=False):
    module = FakeModule(params, check_mode=check_mode, diff=diff)
    return engine_module.run(module, fake), module


def failure(engine_module, params, fake, check_mode=False):
    with pytest.raises(Failed) as err:
        run(engine_module, params, fake, check_mode=check_mode)
    return err.value.result


def rules_outside(fake, family, chains):
    """Every (chain, rule text) of the family's table that is not in chains nor a jump to them."""
    table = fake.save(family, 'nat')
    return [(chain, rule.text) for chain, rules in table.rules.items() if chain not in chains
            for rule in rules if rule.target not in chains]


# --- the shared steps ------------------------------------------------------------------

def test_apply_reports_exactly_what_the_kernel_acked():
    ran = []

    def fails(kernel, check_mode):
        raise KernelError('ip6tables-restore --noflush failed (exit 1): boom')

    steps = [Step('ipv4 rules', lambda k, c: ran.append(4)), Step('ipv4 conntrack flush', lambda k, c: None),
             Step('ipv6 rules', fails), Step('ipv6 conntrack flush', lambda k, c: ran.append(6))]
    with pytest.raises(EngineError) as err:
        engine.apply(None, steps, {'changed': False}, check_mode=False)
    assert str(err.value) == ('ip6tables-restore --noflush failed (exit 1): boom. Applied: ipv4 rules, ipv4 conntrack flush. '
                              'Not applied: ipv6 rules, ipv6 conntrack flush.')
    assert err.value.applied == ['ipv4 rules', 'ipv4 conntrack flush'] and err.value.result['changed'] is True and ran == [4]
    with pytest.raises(EngineError) as err:
        engine.apply(None, [Step('ipv4 rules', fails)], {'changed': True}, check_mode=False)
    assert str(err.value).endswith('. Applied: nothing. Not applied: ipv4 rules.') and err.value.result['changed'] is False


def test_check_mode_runs_only_the_steps_that_have_a_check_label():
    ran = []
    steps = [Step('write', lambda k, c: ran.append(('write', c))), Step('flush', lambda k, c: ran.append(('count', c)), 'count')]
    engine.apply(None, steps, {}, check_mode=True)
    assert ran == [('count', True)]


def test_render_diff_has_a_header_per_family():
    assert engine.render_diff({'ipv4': ['-A X -j RETURN'], 'ipv6': []}, {'ipv4': [], 'ipv6': ['-A X -j RETURN']}) == {
        'before': '# ipv4\n-A X -j RETURN\n# ipv6\n', 'after': '# ipv4\n# ipv6\n-A X -j RETURN\n'}


# --- the fake against the recorded dumps ---------------------------------------------

@pytest.mark.parametrize('name', ['nat-empty.v4', 'nat-foreign.v4', 'nat-ours.v4', 'nat-ours.v6', 'nat-legacy.v4'])
def test_fake_dumps_a_recorded_table_back_as_iptables_save_printed_it(name):
    family = 'ipv6' if name.endswith('.v6') else 'ipv4'
    backend = 'legacy' if 'legacy' in name else 'nft'
    fake = FakeIptables({(family, backend): fixture(name)})
    assert body(fake.dump(family)) == body(fixture(name))


def test_fake_applies_a_transaction_all_or_nothing_like_the_kernel():
    fake = kernel('nat-ours')
    before = fake.dump('ipv4')
    transaction = ipt.Transaction('nat')
    transaction.declare('CN-NEW')
    transaction.delete('POSTROUTING', ipt.Rule('-s 192.0.2.99/32 -j RETURN'))
    with pytest.raises(KernelError) as err:
        fake.restore('ipv4', transaction)
    assert 'line 3 failed (no such rule in chain POSTROUTING)' in str(err.value)
    assert fake.dump('ipv4') == before and fake.restores == []


def test_fake_refuses_to_destroy_a_chain_still_jumped_to():
    transaction = ipt.Transaction('nat')
    transaction.declare('KUBE-POSTROUTING')
    transaction.destroy('KUBE-POSTROUTING')
    with pytest.raises(KernelError) as err:
        kernel('nat-foreign').restore('ipv4', transaction)
    assert 'still referenced' in str(err.value)


# --- masquerade on the fake -----------------------------------------------------------

def test_masquerade_from_empty_writes_the_recorded_state_and_a_second_run_changes_nothing():
    fake = kernel('nat-empty')
    result, _module = run(masquerade, masq_params(), fake)
    assert result['changed'] is True and result['ipv4']['applied'] is True and result['ipv6']['applied'] is True
    assert result['ipv4']['added'] == {'cluster_cidrs': ['10.244.0.0/16'], 'pod_cidrs': ['10.244.1.0/24']}
    assert result['ipv6']['removed'] == {'cluster_cidrs': [], 'pod_cidrs': []}
    # What the engine wrote is, rule for rule, what the real iptables commands of nat-ours planted.
    for family, suffix in (('ipv4', '.v4'), ('ipv6', '.v6')):
        recorded = ipt.parse_save(fixture('nat-ours' + suffix))['nat']
        assert fake.save(family, 'nat').chain_rules(CHAIN) == recorded.chain_rules(CHAIN)
    again, _module = run(masquerade, masq_params(), fake)
    assert again['changed'] is False and again['ipv4']['payload'] == '' and again['ipv6']['applied'] is False
    assert len(fake.restores) == 2


def test_masquerade_check_mode_changes_nothing_and_diff_shows_the_change():
    fake = kernel('nat-foreign')
    before = {family: fake.dump(family) for family in ('ipv4', 'ipv6')}
    result, _module = run(masquerade, masq_params(cluster_cidrs=['10.244.0.0/16'], pod_cidrs=[]), fake, check_mode=True, diff=True)
    assert result['changed'] is True and result['ipv4']['payload'] and result['ipv4']['applied'] is False
    assert fake.restores == [] and {family: fake.dump(family) for family in ('ipv4', 'ipv6')} == before
    assert result['diff']['before'] == '# ipv4\n# ipv6\n'
    assert result['diff']['after'].startswith('# ipv4\n-A POSTROUTING -m comment --comment "clusternet masq" -j %s\n' % CHAIN)


def test_masquerade_removal_leaves_every_foreign_rule_as_it_was():
    fake = kernel('nat-ours')
    foreign = {family: rules_outside(fake, family, (CHAIN,)) for family in ('ipv4', 'ipv6')}
    result, _module = run(masquerade, masq_params(state='absent'), fake)
    assert result['ipv4']['removed'] == {'cluster_cidrs': ['10.244.0.0/16'], 'pod_cidrs': ['10.244.1.0/24']}
    for family in ('ipv4', 'ipv6'):
        table = fake.save(family, 'nat')
        assert not table.has_chain(CHAIN) and table.jumps_to(CHAIN) == []
        assert rules_outside(fake, family, (CHAIN,)) == foreign[family]


def test_masquerade_refuses_a_foreign_chain_before_any_write():
    fake = kernel('nat-foreign')
    result = failure(masquerade, masq_params(chain='KUBE-POSTROUTING'), fake)
    assert result['msg'].startswith("ipv4: refusing to manage chain 'KUBE-POSTROUTING': it holds a rule without this module's comment: "
                                    '-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully')
    assert fake.restores == []


def test_masquerade_refuses_bad_input_naming_it_before_reading():
    fake = kernel('nat-empty')
    result = failure(masquerade, masq_params(cluster_cidrs=['10.244.0.0/33']), fake)
    assert '10.244.0.0/33' in result['msg'] and fake.restores == []


def test_a_message_quoting_a_huge_value_is_cut_to_a_readable_length():
    fake = kernel('nat-empty')
    comment = 'x' * (5 * 1024 * 1024)
    result = failure(masquerade, masq_params(comment=comment), fake)
    assert len(result['msg']) < 1200, len(result['msg'])
    assert result['msg'].startswith("invalid comment 'xxxx") and 'characters cut' in result['msg']
    assert result['msg'].endswith('without quotes or backslashes') and fake.restores == []
    assert engine.readable('short message') == 'short message'


def test_masquerade_failure_in_the_second_family_says_the_first_was_applied():
    fake = kernel('nat-empty', fail={('ipv6', 'nft')})
    result = failure(masquerade, masq_params(), fake)
    assert result['msg'] == ('ip6tables-nft-restore --noflush failed (exit 1): injected failure. '
                             'Applied: ipv4 rules. Not applied: ipv6 rules.')
    assert (result['ipv4']['applied'], result['ipv6']['applied'], result['changed']) == (True, False, True)
    assert fake.save('ipv4', 'nat').has_chain(CHAIN) and not fake.save('ipv6', 'nat').has_chain(CHAIN)


def test_masquerade_warns_without_random_fully_and_writes_without_it():
    fake = kernel('nat-empty', random_fully=False)
    _result, module = run(masquerade, masq_params(), fake)
    assert module.warnings == ['iptables lacks MASQUERADE --random-fully: ipv4 rules are written without it',
                               'ip6tables lacks MASQUERADE --random-fully: ipv6 rules are written without it']
    assert not any('random-fully' in rule.text for rule in fake.save('ipv4', 'nat').chain_rules(CHAIN))


def test_masquerade_other_backend_is_named_then_purged_through_its_own_restore():
    fake = kernel('nat-empty', legacy='nat-legacy.v4')
    result, module = run(masquerade, masq_params(), fake)
    assert result['ipv4']['other_backend']['found'][0] == ':%s - [0:0]' % CHAIN and 'legacy backend' in module.warnings[0]
    purged, _module = run(masquerade, masq_params(purge_other_backend=True), fake)
    assert purged['changed'] is True and purged['ipv4']['other_backend']['applied'] is True
    legacy = fake.save('ipv4', 'nat', 'legacy')
    assert not legacy.has_chain(CHAIN) and legacy.jumps_to(CHAIN) == []
    assert [(family, backend) for family, backend, _text in fake.restores] == [('ipv4', 'nft'), ('ipv6', 'nft'), ('ipv4', 'legacy')]


# --- fip on the fake --------------------------------------------------------------------

class Conntrack(object):
    """The rest of fip's kernel object: conntrack counts per family, every flush recorded, and
    the gateway's own addresses ({address: [interface names]})."""

    def __init__(self, counts=None, missing=None, held=None):
        self.counts = counts or {}
        self.missing = missing
        self.held = held or {}
        self.flushes = []

    def held_addresses(self):
        return self.held

    def conntrack_missing(self):
        return self.missing

    def flush_conntrack(self, family, sources, destinations, check_mode):
        self.flushes.append((family, sorted(map(str, sources)), sorted(map(str, destinations)), check_mode))
        return self.counts.get(family, 0)


def fip_kernel(name, conntrack=None, **kwargs):
    fake = kernel(name, **kwargs)
    track = conntrack or Conntrack()
    fake.conntrack_missing, fake.flush_conntrack, fake.conntrack = track.conntrack_missing, track.flush_conntrack, track
    fake.held_addresses = track.held_addresses
    return fake


def test_fip_from_empty_writes_the_recorded_rules_and_a_second_run_changes_nothing():
    fake = fip_kernel('nat-empty')
    result, _module = run(fip, fip_params(), fake)
    assert result['ipv4']['added'] == [{'external_ip': '198.51.100.10', 'internal_ip': '10.244.1.5'}]
    assert result['ipv6']['added'] == [{'external_ip': '2001:db8::10', 'internal_ip': 'fd00:10:244:1::5'}]
    for family, suffix in (('ipv4', '.v4'), ('ipv6', '.v6')):
        recorded = ipt.parse_save(fixture('nat-ours' + suffix))['nat']
        table = fake.save(family, 'nat')
        assert [table.chain_rules(chain) for chain in (D, S)] == [recorded.chain_rules(chain) for chain in (D, S)]
    again, _module = run(fip, fip_params(), fake)
    assert again['changed'] is False and again['ipv4']['payload'] == '' and len(fake.restores) == 2
    assert fake.conntrack.flushes == [], 'nothing was mapped before: nothing to flush'


def test_fip_removal_flushes_conntrack_and_keeps_foreign_rules():
    fake = fip_kernel('nat-ours', Conntrack({'ipv4': 2}))
    foreign = rules_outside(fake, 'ipv4', (D, S))
    result, _module = run(fip, fip_params(floating_ips=[{'external_ip': '198.51.100.10'}], state='absent'), fake)
    assert result['ipv4']['removed'] == [{'external_ip': '198.51.100.10', 'internal_ip': '10.244.1.5'}]
    assert result['ipv4']['conntrack_flushed'] == 2 and result['ipv6']['payload'] == '' and result['changed'] is True
    assert fake.conntrack.flushes == [('ipv4', ['10.244.1.5'], ['198.51.100.10'], False)]
    table = fake.save('ipv4', 'nat')
    assert not table.has_chain(D) and not table.has_chain(S) and rules_outside(fake, 'ipv4', (D, S)) == foreign
    assert fake.save('ipv6', 'nat').chain_rules(D), 'the IPv6 FIP stays'


def test_fip_check_mode_counts_conntrack_but_writes_nothing():
    fake = fip_kernel('nat-ours', Conntrack({'ipv4': 1}))
    before = fake.dump('ipv4')
    result, _module = run(fip, fip_params(floating_ips=[]), fake, check_mode=True, diff=True)
    assert result['changed'] is True and result['ipv4']['conntrack_flushed'] == 1 and result['ipv4']['applied'] is False
    assert fake.restores == [] and fake.dump('ipv4') == before
    assert [(flush[0], flush[3]) for flush in fake.conntrack.flushes] == [('ipv4', True), ('ipv6', True)]
    assert 'clusternet fip 198.51.100.10' in result['diff']['before'] and 'clusternet fip' not in result['diff']['after']


def test_fip_refuses_a_foreign_chain_and_a_taken_internal_ip():
    fake = fip_kernel('nat-foreign')
    result = failure(fip, fip_params(snat_chain='KUBE-POSTROUTING'), fake)
    assert result['msg'].startswith("ipv4: refusing to manage snat_chain 'KUBE-POSTROUTING'")
    fake = fip_kernel('nat-ours')
    result = failure(fip, fip_params(floating_ips=[{'external_ip': '198.51.100.11', 'internal_ip': '10.244.1.5'}], exclusive=False), fake)
    assert result['msg'] == 'internal_ip 10.244.1.5 of floating IP 198.51.100.11 is already used by floating IP 198.51.100.10'
    assert fake.restores == []


def test_fip_refuses_an_external_ip_the_gateway_holds_before_any_write():
    fake = fip_kernel('nat-empty', Conntrack(held={ipaddress.ip_address('198.51.100.10'): ['eth0']}))
    result = failure(fip, fip_params(), fake)
    assert result['msg'].startswith('floating IP 198.51.100.10 is already an address of eth0 on this gateway')
    assert fake.restores == []


def test_fip_without_pyroute2_fails_before_writing_when_there_is_something_to_flush():
    fake = fip_kernel('nat-ours', Conntrack(missing='Traceback: no pyroute2'))
    result = failure(fip, fip_params(floating_ips=[]), fake)
    assert 'pyroute2' in result['msg'] and '198.51.100.10' in result['msg'] and result['exception'] == 'Traceback: no pyroute2'
    assert fake.restores == []


def test_fip_failure_in_the_second_family_reports_the_first_family_and_its_flush():
    fake = fip_kernel('nat-ours', Conntrack({'ipv4': 1}), fail={('ipv6', 'nft')})
    result = failure(fip, fip_params(floating_ips=[]), fake)
    assert result['msg'] == ('ip6tables-nft-restore --noflush failed (exit 1): injected failure. Applied: ipv4 rules, '
                             'ipv4 conntrack flush. Not applied: ipv6 rules, ipv6 conntrack flush.')
    assert (result['ipv4']['applied'], result['ipv4']['conntrack_flushed']) == (True, 1)
    assert (result['ipv6']['applied'], result['ipv6']['conntrack_flushed']) == (False, None)
    assert fake.save('ipv6', 'nat').chain_rules(D), 'the failed family kept its rules'


# --- node_info on the fake ---------------------------------------------------------------

def test_node_info_reads_the_nat_engines_state_and_fed_back_it_is_a_no_op():
    fake = fip_kernel('nat-ours', legacy='nat-legacy.v4')
    module = FakeModule({'gather_subset': ['masquerade', 'floating_ips'], 'interface': 'kube-dummy-if'})
    facts = info.run(module, fake)['clusternet_node']
    assert facts['masquerade']['ipv4'][CHAIN] == [rule.text for rule in ipt.parse_save(fixture('nat-ours.v4'))['nat'].chain_rules(CHAIN)]
    assert facts['floating_ips'] == [{'external_ip': '198.51.100.10', 'internal_ip': '10.244.1.5'},
                                     {'external_ip': '2001:db8::10', 'internal_ip': 'fd00:10:244:1::5'}]
    assert facts['other_backend'] == {'ipv4': {'backend': 'legacy', 'chains': [CHAIN]}}
    result, _module = run(fip, fip_params(floating_ips=facts['floating_ips']), fake)
    assert result['changed'] is False and fake.restores == []


# --- ownership, exactly (issue 23) -------------------------------------------------------

MARK_M = '-m comment --comment "clusternet.node masquerade chain"'
MARK_F = '-m comment --comment "clusternet.node fip chain"'


def lines_of(fake, family, *chains):
    return [line for line in body(fake.dump(family)) if line.startswith('-A ') and any(c in line for c in chains)]


def foreign_lines(fake, family):
    """Every line of the dump that is not ours: not in our chains, not our jumps."""
    ours = ('-A %s ' % CHAIN, '-A %s ' % D, '-A %s ' % S, ':%s ' % CHAIN, ':%s ' % D, ':%s ' % S)
    jumps = ('--comment "clusternet masq" -j %s' % CHAIN, '--comment "clusternet fip" -j %s' % D, '--comment "clusternet fip" -j %s' % S)
    return [line for line in body(fake.dump(family)) if not line.startswith(ours) and not line.endswith(jumps)]


def test_class2_masquerade_present_keeps_foreign_jumps_to_our_chain():
    fake = kernel('nat-hostile')
    foreign = dict((family, foreign_lines(fake, family)) for family in ('ipv4', 'ipv6'))
    run(masquerade, masq_params(), fake)
    for family in ('ipv4', 'ipv6'):
        assert foreign_lines(fake, family) == foreign[family]
        assert '-A POSTROUTING -o eth9 -m comment --comment admin-only -j %s' % CHAIN in foreign[family]
    assert run(masquerade, masq_params(), fake)[0]['changed'] is False


def test_class2_masquerade_absent_refuses_while_a_foreign_rule_jumps_to_the_chain():
    fake = kernel('nat-hostile')
    before = dict((family, fake.dump(family)) for family in ('ipv4', 'ipv6'))
    result = failure(masquerade, masq_params(state='absent'), fake)
    assert result['msg'].startswith("ipv4: refusing to remove chain 'CLUSTERNET-POSTRTG': a rule without this module's comment "
                                    "jumps to it: -A POSTROUTING -o eth9 -m comment --comment admin-only -j CLUSTERNET-POSTRTG")
    assert fake.restores == [] and dict((family, fake.dump(family)) for family in ('ipv4', 'ipv6')) == before


def test_class2_fip_removing_its_chains_refuses_while_a_foreign_rule_jumps_to_one():
    fake = fip_kernel('nat-hostile')
    result = failure(fip, fip_params(floating_ips=[]), fake)
    assert ("refusing to remove chain 'CLUSTERNET-FIP-DNAT': a rule without this module's comment jumps to it: "
            "-A OUTPUT -o eth9 -m comment --comment admin-only -j CLUSTERNET-FIP-DNAT") in result['msg']
    assert fake.restores == []


def test_class3_a_stray_in_our_marked_chain_is_repaired_not_refused():
    fake = fip_kernel('nat-hostile')
    result, _module = run(masquerade, masq_params(), fake)
    assert result['changed'] is True
    recorded = ipt.parse_save(fixture('nat-ours.v4'))['nat'].chain_rules(CHAIN)
    assert fake.save('ipv4', 'nat').chain_rules(CHAIN) == recorded and recorded[0] == ipt.Rule(MARK_M)
    assert '-s 10.42.0.0/16 -j MASQUERADE' not in fake.dump('ipv4')
    result, _module = run(fip, fip_params(floating_ips=[{'external_ip': '198.51.100.10', 'internal_ip': '10.244.1.5'}]), fake)
    assert lines_of(fake, 'ipv4', '-A %s ' % S) == [
        '-A %s %s' % (S, MARK_F),
        '-A %s -s 10.244.1.5/32 -m comment --comment "clusternet fip 198.51.100.10" -j SNAT --to-source 198.51.100.10' % S]


def test_class3_a_chain_of_a_release_before_marks_is_ours_and_gets_the_mark():
    fake = fip_kernel('nat-unmarked')
    result, _module = run(masquerade, masq_params(), fake)
    assert result['changed'] is True and result['ipv4']['added'] == result['ipv4']['removed'] == {'cluster_cidrs': [], 'pod_cidrs': []}
    run(fip, fip_params(floating_ips=[{'external_ip': '198.51.100.10', 'internal_ip': '10.244.1.5'},
                                      {'external_ip': '2001:db8::10', 'internal_ip': 'fd00:10:244:1::5'}]), fake)
    for family, suffix in (('ipv4', '.v4'), ('ipv6', '.v6')):
        assert body(fake.dump(family)) == body(fixture('nat-ours' + suffix))
    assert fake.restores and run(masquerade, masq_params(), fake)[0]['changed'] is False


def test_class3_a_chain_we_did_not_create_is_still_refused():
    fake = kernel('nat-unmarked')
    fake.tables[('ipv4', 'nft')].rules[CHAIN].append(ipt.Rule('-s 10.42.0.0/16 -j MASQUERADE'))
    result = failure(masquerade, masq_params(), fake)
    assert result['msg'].startswith("ipv4: refusing to manage chain 'CLUSTERNET-POSTRTG': it holds a rule without this module's "
                                    "comment: -A CLUSTERNET-POSTRTG -s 10.42.0.0/16 -j MASQUERADE")
    assert fake.restores == []


def test_class4_a_comment_that_only_resembles_a_fip_comment_is_not_ours():
    fake = fip_kernel('nat-hostile')
    lookalike = {'ipv4': '-A PREROUTING -d 203.0.113.77/32 -m comment --comment "clusternet fip  203.0.113.77/32" -j DNAT --to-destination 10.0.0.77',
                 'ipv6': '-A PREROUTING -d 2001:db8::77/128 -m comment --comment "clusternet fip 2001:DB8::77" -j DNAT --to-destination fd00::77'}
    for family in ('ipv4', 'ipv6'):
        assert lookalike[family] in body(fake.dump(family))
    result, _module = run(fip, fip_params(floating_ips=[{'external_ip': '198.51.100.10', 'internal_ip': '10.244.1.5'}]), fake)
    assert result['ipv6']['removed'] == [{'external_ip': '2001:db8::10', 'internal_ip': 'fd00:10:244:1::5'}]
    assert result['ipv4']['removed'] == [] and result['ipv4']['added'] == []
    for family in ('ipv4', 'ipv6'):
        assert lookalike[family] in body(fake.dump(family))
    assert fip.fip_of(ipt.Rule('-m comment --comment "clusternet fip 198.51.100.10"')) == ipaddress.ip_address('198.51.100.10')


def postrouting(fake, family):
    return [line for line in body(fake.dump(family)) if line.startswith('-A POSTROUTING ')]


def test_masquerade_jump_repaired_or_misplaced_goes_after_the_fip_snat_jump():
    """Both modules' jumps sit in POSTROUTING and both targets end a packet's NAT: a FIP's pod
    must meet its SNAT before the masquerade, whichever module repaired its jump last."""
    fake = kernel('nat-ours')
    converged = postrouting(fake, 'ipv4')
    assert converged.index('-A POSTROUTING -m comment --comment "clusternet fip" -j %s' % S) == 0
    jump = ipt.jump_rule(CHAIN, 'clusternet masq')
    fake.tables[('ipv4', 'nft')].rules['POSTROUTING'].remove(jump)
    assert run(masquerade, masq_params(), fake)[0]['changed'] is True
    assert postrouting(fake, 'ipv4') == converged
    fake.tables[('ipv4', 'nft')].rules['POSTROUTING'].remove(jump)
    fake.tables[('ipv4', 'nft')].rules['POSTROUTING'].insert(0, jump)
    assert run(masquerade, masq_params(), fake)[0]['changed'] is True
    assert postrouting(fake, 'ipv4') == converged
    assert run(masquerade, masq_params(), fake)[0]['changed'] is False
