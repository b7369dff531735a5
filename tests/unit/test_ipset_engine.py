"""The ipset engine's run() driven end to end on FakeIpset, over `ipset save` dumps recorded on
the real kernel (tests/unit/fixtures/ipset-*.save), and the fake's fidelity to those dumps (no root)."""

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import info, ipset
from fake_ipset import FakeIpset, fixture
from fakes import Failed, FakeModule

FOREIGN = ('KUBE-CLUSTER-IP', 'kube-router-svip-prt', 'inet6:kube-router-svip-prt', 'cali40all-ipam-pools')
POD_ENTRIES = ['10.244.1.5', '10.244.1.6', 'fd00:10:244:1::5']


def params(**overrides):
    out = {'name': 'pods', 'ipv6_name': None, 'set_type': 'hash:ip', 'entries': list(POD_ENTRIES), 'nomatch': [],
           'families': ['ipv4', 'ipv6'], 'exclusive': True, 'maxelem': None, 'hashsize': None, 'state': 'present'}
    out.update(overrides)
    return out


def run(args, fake, check_mode=False, diff=False):
    module = FakeModule(args, check_mode=check_mode, diff=diff)
    return ipset.run(module, fake), module


def failure(args, fake, check_mode=False):
    with pytest.raises(Failed) as err:
        run(args, fake, check_mode=check_mode)
    return err.value.result


def state(sets, names):
    """What a test compares of a set: type, header, entries, nomatch, extras."""
    return dict((name, (sets[name].type, sets[name].header, sets[name].entries, sets[name].nomatch, sets[name].extras))
                for name in names if name in sets)


def fake_of(name, **kwargs):
    return FakeIpset(fixture(name), **kwargs)


# --- the fake against the recorded dumps ---------------------------------------------

@pytest.mark.parametrize('name', ['ipset-foreign.save', 'ipset-ours.save', 'ipset-stale.save', 'ipset-conflict.save', 'ipset-extras.save'])
def test_fake_dumps_a_recorded_state_back_as_ipset_save_printed_it(name):
    recorded = ipset.parse_save(fixture(name))
    dumped = fake_of(name).save()
    assert list(dumped) == list(recorded) and state(dumped, dumped) == state(recorded, recorded)


def test_the_recorded_temporary_sets_have_the_names_tmp_name_gives():
    assert ipset.tmp_name('pods') in fake_of('ipset-stale.save').list_names()
    assert ipset.tmp_name('inet6:pods') in fake_of('ipset-conflict.save').list_names()


def test_fake_restore_stops_at_the_first_error_keeping_the_lines_before():
    fake = fake_of('ipset-ours.save')
    batch = ipset.Transaction()
    batch.add('pods', ['10.244.1.7'])
    batch.add('inet6:pods', ['10.244.1.8'])
    batch.add('pods', ['10.244.1.9'])
    with pytest.raises(ipset.RestoreError) as err:
        fake.restore(batch)
    assert err.value.line == 2 and 'resolving to IPv6 address failed' in str(err.value)
    assert fake.save('pods')['pods'].entries == {'10.244.1.5', '10.244.1.6', '10.244.1.7'}


def recorded_errors():
    """(restore line, what ipset restore -exist printed) of fixtures/ipset-errors.txt."""
    return [tuple(line.split('\t')) for line in fixture('ipset-errors.txt').splitlines()]


@pytest.mark.parametrize('line, error', recorded_errors())
def test_fake_refuses_each_line_as_the_recorded_ipset_did(line, error):
    fake = fake_of('ipset-errors.save')
    batch = ipset.Transaction()
    batch.put(line, None, None)
    if not error:  # each line that passes is a no-op under -exist on that state
        before = fake.dump()
        fake.restore(batch)
        assert fake.dump() == before
        return
    with pytest.raises(ipset.RestoreError) as err:
        fake.restore(batch)
    assert (str(err.value), err.value.line) == (error, 1)


def test_transaction_refuses_a_bad_value_when_queued():
    batch = ipset.Transaction()
    with pytest.raises(ValueError, match="'-n' starts with"):
        batch.add('-n', ['10.0.0.1'])
    with pytest.raises(ValueError, match=r"invalid entry of pods '10.0.0.1\\nflush x'"):
        batch.add('pods', ['10.0.0.2', '10.0.0.1\nflush x'])
    with pytest.raises(ValueError, match="invalid entry of pods ''"):
        batch.delete('pods', [''])
    with pytest.raises(ValueError, match="invalid set type 'list:set'"):
        batch.create('pods', 'list:set', 'size 8')
    assert batch == [] and batch.ops == [] and batch.render() == ''


# --- run() on the fake ---------------------------------------------------------------

def test_from_foreign_sets_only_writes_the_recorded_sets_and_a_second_run_changes_nothing():
    fake = fake_of('ipset-foreign.save')
    result, _module = run(params(), fake)
    assert result == {'changed': True, 'ipv4': {'name': 'pods', 'added': ['10.244.1.5', '10.244.1.6'], 'removed': []},
                      'ipv6': {'name': 'inet6:pods', 'added': ['fd00:10:244:1::5'], 'removed': []}}
    assert fake.restores == ['create pods hash:ip family inet\nadd pods 10.244.1.5\nadd pods 10.244.1.6\n'
                             'create inet6:pods hash:ip family inet6\nadd inet6:pods fd00:10:244:1::5\n']
    # what the engine wrote is, set for set, what the real ipset commands of ipset-ours planted
    recorded = ipset.parse_save(fixture('ipset-ours.save'))
    assert state(fake.save(), recorded) == state(recorded, recorded)
    again, _module = run(params(), fake)
    assert again['changed'] is False and len(fake.restores) == 1


def test_check_mode_changes_nothing_and_diff_shows_the_sets():
    fake = fake_of('ipset-ours.save')
    before = fake.dump()
    result, _module = run(params(entries=['10.244.1.6', '10.244.1.7']), fake, check_mode=True, diff=True)
    assert result['changed'] is True and result['ipv4'] == {'name': 'pods', 'added': ['10.244.1.7'], 'removed': ['10.244.1.5']}
    assert result['ipv6'] == {'name': 'inet6:pods', 'added': [], 'removed': ['fd00:10:244:1::5']}
    assert fake.restores == [] and fake.dump() == before
    assert result['diff'] == {'before': 'add pods 10.244.1.5\nadd pods 10.244.1.6\nadd inet6:pods fd00:10:244:1::5\n',
                              'after': 'add pods 10.244.1.6\nadd pods 10.244.1.7\n'}


def test_additive_run_keeps_entries_it_was_not_given():
    fake = fake_of('ipset-ours.save')
    result, _module = run(params(entries=['10.244.1.7'], exclusive=False), fake)
    assert result['ipv4']['removed'] == [] and fake.restores == ['add pods 10.244.1.7\n']
    assert fake.save('pods')['pods'].entries == {'10.244.1.5', '10.244.1.6', '10.244.1.7'}


def test_absent_destroys_ours_and_leaves_every_foreign_set_as_it_was():
    fake = fake_of('ipset-ours.save')
    foreign = state(fake.save(), FOREIGN)
    result, _module = run(params(state='absent'), fake)
    assert result['ipv4'] == {'name': 'pods', 'added': [], 'removed': ['10.244.1.5', '10.244.1.6']}
    assert fake.restores == ['destroy pods\ndestroy inet6:pods\n']
    assert list(fake.save()) == list(FOREIGN) and state(fake.save(), FOREIGN) == foreign
    assert run(params(state='absent'), fake)[0]['changed'] is False


@pytest.mark.parametrize('fixture_name, args, message', [
    ('ipset-conflict.save', params(families=['ipv4'], entries=['10.244.1.5']),
     "set 'pods' exists with type hash:net, not hash:ip; remove it first (state: absent)"),
    ('ipset-conflict.save', params(families=['ipv6']),
     "set '%s' has the name of the temporary set for 'inet6:pods' but is not one this module left "
     "(type hash:ip, family inet hashsize 1024 maxelem 65536 bucketsize 12" % ipset.tmp_name('inet6:pods')),
    ('ipset-conflict.save', params(name='svc', state='absent'),
     "set 'svc' is in use by 1 kernel reference(s) (an iptables rule or a list:set): remove them first; nothing was destroyed"),
    ('ipset-ours.save', params(maxelem=1), "set 'pods' exists with maxelem 65536, not 1"),
    ('ipset-ours.save', params(entries=POD_ENTRIES + ['10.244.1.300']), "entry '10.244.1.300' does not fit set_type hash:ip"),
    ('ipset-ours.save', params(nomatch=['10.244.1.7']), 'nomatch entries need a set type with a network part'),
    ('ipset-ours.save', params(families=['ipv4']), "entry 'fd00:10:244:1::5' is ipv6 but families is ipv4"),
    ('ipset-ours.save', params(name='-exist'), "set name '-exist' starts with \"-\""),
    ('ipset-ours.save', params(hashsize=1000), 'hashsize 1000 is not a power of two'),
])
def test_each_refusal_names_its_cause_and_writes_nothing(fixture_name, args, message):
    for check_mode in (False, True):
        fake = fake_of(fixture_name)
        before = fake.dump()
        result = failure(args, fake, check_mode=check_mode)
        assert message in result['msg'] and fake.restores == [] and fake.dump() == before


def test_a_set_in_use_by_an_iptables_rule_is_not_destroyed():
    fake = fake_of('ipset-ours.save', rule_references={'inet6:pods': 2})
    result = failure(params(state='absent'), fake)
    assert result['msg'].startswith("set 'inet6:pods' is in use by 2 kernel reference(s)")
    assert fake.restores == [] and 'pods' in fake.list_names(), 'nothing destroyed, the unreferenced IPv4 set neither'


def test_a_failure_mid_restore_says_what_the_lines_before_it_applied():
    def another_writer(fake):
        fake.apply_line('create inet6:pods hash:net family inet6')
    fake = fake_of('ipset-foreign.save', before_restore=another_writer)
    result = failure(params(entries=['10.0.0.1', '10.0.0.2', '10.0.0.3', '2001:db8::1']), fake)
    assert 'ipset restore failed at line 5 of 6 (create inet6:pods hash:ip family inet6): ipset v7.17: Error in line 5: ' \
           'Set cannot be created: set with the same name already exists.' in result['msg']
    assert 'the lines before it applied pods: created, 3 added; that line and the 1 after it applied nothing.' in result['msg']
    assert result['applied'] == {'pods': {'created': True, 'added': ['10.0.0.1', '10.0.0.2', '10.0.0.3']}}
    assert result['failed_line'] == 'create inet6:pods hash:ip family inet6'
    sets = fake.save()
    assert sets['pods'].entries == {'10.0.0.1', '10.0.0.2', '10.0.0.3'} and sets['inet6:pods'].type == 'hash:net'


def test_a_swap_refused_mid_restore_destroys_the_temporary_set_again():
    def another_writer(fake):
        for line in ('destroy nets', 'create nets hash:net family inet6 maxelem 3', 'add nets 2001:db8::/64'):
            assert fake.apply_line(line) is None
    fake = fake_of('ipset-extras.save', before_restore=another_writer)
    tmp = ipset.tmp_name('nets')
    result = failure(params(name='nets', families=['ipv4'], set_type='hash:net', entries=['10.5.0.0/16', '10.6.0.0/16']), fake)
    assert 'failed at line 5 of 5 (swap nets %s)' % tmp in result['msg'] and 'destroyed again' in result['msg']
    assert result['applied'] == {tmp: {'created': True, 'flushed': True, 'added': ['10.5.0.0/16', '10.6.0.0/16']}}
    assert fake.list_names() == {'nets'} and fake.destroyed == [tmp]


def test_a_full_set_is_replaced_by_a_swap_keeping_what_kept_entries_carry():
    fake = fake_of('ipset-extras.save')
    args = params(name='nets', families=['ipv4'], set_type='hash:net', entries=['10.4.0.0/16', '10.5.0.0/16'], nomatch=['10.0.0.0/8'])
    result, _module = run(args, fake)
    assert result['ipv4'] == {'name': 'nets', 'added': ['10.5.0.0/16'], 'removed': ['10.3.0.0/16']}
    nets = fake.save('nets')['nets']
    assert nets.entries == {'10.4.0.0/16', '10.5.0.0/16'} and nets.nomatch == {'10.0.0.0/8'}
    assert nets.extras['10.4.0.0/16'] == 'packets 0 bytes 0 comment "kept"'
    assert nets.extras['10.0.0.0/8'] == 'nomatch packets 0 bytes 0 comment "was nomatch"'
    assert fake.list_names() == {'nets'} and fake.restores[1] == 'destroy %s\n' % ipset.tmp_name('nets')
    assert run(args, fake)[0]['changed'] is False


def test_a_temporary_set_a_killed_run_left_is_destroyed_with_a_warning():
    tmp = ipset.tmp_name('pods')
    fake = fake_of('ipset-stale.save')
    result, module = run(params(), fake, check_mode=True)
    assert result['changed'] is True and module.warnings == ['would destroy the temporary set %s an interrupted run left' % tmp]
    assert fake.restores == [] and tmp in fake.list_names()
    result, module = run(params(), fake)
    assert module.warnings == ['destroyed the temporary set %s an interrupted run left' % tmp]
    assert fake.restores == ['destroy %s\n' % tmp] and tmp not in fake.list_names()
    assert run(params(), fake)[0]['changed'] is False


# --- node_info on the fake ---------------------------------------------------------------

def test_node_info_reads_the_sets_through_the_kernel_object_and_fed_back_they_are_a_no_op():
    fake = fake_of('ipset-ours.save')
    facts = info.run(FakeModule({'gather_subset': ['ipsets'], 'interface': 'kube-dummy-if'}), ipsets=fake)['clusternet_node']
    pods = [item for item in facts['ipsets'] if item['name'] == 'pods']
    assert pods == [{'name': 'pods', 'set_type': 'hash:ip', 'families': ['ipv4', 'ipv6'], 'entries': POD_ENTRIES, 'nomatch': []}]
    for item in facts['ipsets']:
        args = params(name=item['name'], ipv6_name=item.get('ipv6_name'), set_type=item['set_type'], families=item['families'],
                      entries=item['entries'], nomatch=item['nomatch'])
        assert run(args, fake)[0]['changed'] is False
    assert fake.restores == []
