import pytest
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils import masquerade as masq
from ansible_collections.clusternet.node.plugins.module_utils.families import parse_network

TAG = '-m comment --comment "clusternet masq"'
MARK_M = '-m comment --comment "clusternet.node masquerade chain"'
CHAIN = 'CLUSTERNET-POSTRTG'
JUMP = '-A POSTROUTING %s -j %s' % (TAG, CHAIN)


def params(**overrides):
    base = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64'],
            'chain': CHAIN, 'comment': 'clusternet masq', 'random_fully': True, 'skip_mark': '0x4000/0x4000', 'state': 'present'}
    base.update(overrides)
    return base


def plan(table, chain, rules, comment, allow_foreign_chain=False):
    """The engine's own() refusal, then plan_family()'s restore lines."""
    masq.refuse_foreign(table, masq.build_intent(params(chain=chain, comment=comment, allow_foreign_chain=allow_foreign_chain)))
    return masq.plan_family(table, chain, rules, comment).render().splitlines()[1:-1]


def texts(rules):
    return [rule.text for rule in rules]


def nets(*texts):
    return [parse_network(text) for text in texts]


def test_flannel_rule_set_ipv4_exact_text():
    rules = texts(masq.desired_rules('ipv4', nets('10.244.0.0/16'), nets('10.244.1.0/24'), 'clusternet masq', '0x4000/0x4000', True))
    assert rules == [
        '-m mark --mark 0x4000/0x4000 %s -j RETURN' % TAG,
        '-s 10.244.1.0/24 -d 10.244.0.0/16 %s -j RETURN' % TAG,
        '-s 10.244.0.0/16 -d 10.244.1.0/24 %s -j RETURN' % TAG,
        '! -s 10.244.0.0/16 -d 10.244.1.0/24 %s -j RETURN' % TAG,
        '-s 10.244.0.0/16 ! -d 224.0.0.0/4 %s -j MASQUERADE --random-fully' % TAG,
        '! -s 10.244.0.0/16 -d 10.244.0.0/16 %s -j MASQUERADE --random-fully' % TAG,
    ]


def test_ipv6_uses_ff00_and_options_drop_mark_and_random_fully():
    rules = texts(masq.desired_rules('ipv6', nets('fd00:10:244::/56'), nets('fd00:10:244:1::/64'), 'x', None, False))
    assert rules == [
        '-s fd00:10:244:1::/64 -d fd00:10:244::/56 -m comment --comment "x" -j RETURN',
        '-s fd00:10:244::/56 -d fd00:10:244:1::/64 -m comment --comment "x" -j RETURN',
        '! -s fd00:10:244::/56 -d fd00:10:244:1::/64 -m comment --comment "x" -j RETURN',
        '-s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment "x" -j MASQUERADE',
        '! -s fd00:10:244::/56 -d fd00:10:244::/56 -m comment --comment "x" -j MASQUERADE',
    ]


def test_no_cluster_cidr_means_no_rules():
    assert masq.desired_rules('ipv6', [], [], 'x', '0x4000/0x4000', True) == []


def test_several_cidrs_render_per_pair_in_address_order():
    intent = masq.build_intent(params(cluster_cidrs=['10.96.0.0/12', '10.244.0.0/16'], pod_cidrs=['10.244.2.0/24', '10.96.1.0/24']))
    assert [str(n) for n in intent.clusters['ipv4']] == ['10.96.0.0/12', '10.244.0.0/16']
    assert [str(n) for n in intent.pods['ipv4']] == ['10.96.1.0/24', '10.244.2.0/24']
    rules = texts(masq.desired_rules('ipv4', intent.clusters['ipv4'], intent.pods['ipv4'], 'c', None, False))
    pairs = [rule.split(' -m comment')[0] for rule in rules]
    assert pairs == [
        '-s 10.96.1.0/24 -d 10.96.0.0/12', '-s 10.96.0.0/12 -d 10.96.1.0/24', '! -s 10.96.0.0/12 -d 10.96.1.0/24',
        '-s 10.244.2.0/24 -d 10.96.0.0/12', '-s 10.96.0.0/12 -d 10.244.2.0/24', '! -s 10.96.0.0/12 -d 10.244.2.0/24',
        '-s 10.96.1.0/24 -d 10.244.0.0/16', '-s 10.244.0.0/16 -d 10.96.1.0/24', '! -s 10.244.0.0/16 -d 10.96.1.0/24',
        '-s 10.244.2.0/24 -d 10.244.0.0/16', '-s 10.244.0.0/16 -d 10.244.2.0/24', '! -s 10.244.0.0/16 -d 10.244.2.0/24',
        '-s 10.96.0.0/12 ! -d 224.0.0.0/4', '! -s 10.96.0.0/12 -d 10.96.0.0/12',
        '-s 10.244.0.0/16 ! -d 224.0.0.0/4', '! -s 10.244.0.0/16 -d 10.244.0.0/16',
    ]


def test_input_order_does_not_change_rules():
    one = masq.build_intent(params(cluster_cidrs=['fd00:10:244::/56', '10.244.0.0/16', '10.96.0.0/12']))
    two = masq.build_intent(params(cluster_cidrs=['10.96.0.0/12', '10.244.0.0/16', 'fd00:10:244::/56']))
    assert one.clusters == two.clusters


def test_single_family_intent_leaves_other_family_empty():
    intent = masq.build_intent(params(cluster_cidrs=['fd00:10:244::/56'], pod_cidrs=['fd00:10:244:1::/64']))
    assert intent.clusters['ipv4'] == [] and intent.pods['ipv4'] == []
    assert [str(n) for n in intent.clusters['ipv6']] == ['fd00:10:244::/56']


def test_absent_keeps_no_rules_in_either_family():
    intent = masq.build_intent(params(state='absent'))
    assert intent.clusters == {'ipv4': [], 'ipv6': []} and intent.pods == {'ipv4': [], 'ipv6': []}


@pytest.mark.parametrize('overrides, message', [
    ({'cluster_cidrs': ['10.244.0.0/16', '10.244.0.1/16']}, "'10.244.0.1/16'"),
    ({'cluster_cidrs': ['10.244.0.0/16', 'fd00::/300']}, "'fd00::/300'"),
    ({'pod_cidrs': ['banana']}, "'banana'"),
    ({'cluster_cidrs': ['10.244.0.0/16'], 'pod_cidrs': ['fd00:10:244:1::/64']}, 'pod CIDR fd00:10:244:1::/64 is ipv6 but cluster_cidrs has no ipv6'),
    ({'pod_cidrs': ['10.99.0.0/24']}, 'pod CIDR 10.99.0.0/24 is outside every ipv4 cluster CIDR (10.244.0.0/16)'),
    ({'pod_cidrs': ['10.244.0.0/15']}, 'pod CIDR 10.244.0.0/15 is outside'),
    ({'cluster_cidrs': ['10.244.0.0/16', '10.244.0.0/16']}, 'cluster CIDR 10.244.0.0/16 is listed twice'),
    ({'chain': 'POSTROUTING'}, "invalid chain 'POSTROUTING'"),
    ({'chain': 'A' * 29}, 'invalid chain'),
    ({'chain': 'has space'}, "invalid chain 'has space'"),
    ({'chain': '-X'}, "invalid chain '-X'"),
    ({'comment': 'say "hi"'}, 'invalid comment'),
    ({'comment': "it's"}, 'invalid comment'),
    ({'comment': ''}, 'invalid comment'),
    ({'skip_mark': '0x4000/0x1000'}, 'bits outside the mask'),
    ({'skip_mark': 'mark'}, "invalid skip_mark 'mark'"),
    ({'skip_mark': '010'}, "invalid skip_mark '010'"),
    ({'skip_mark': '0x100000000'}, '32-bit'),
    ({'cluster_cidrs': ['10.244.0.0/16', '::ffff:10.244.0.0/112'], 'pod_cidrs': []}, "invalid cluster CIDR '::ffff:10.244.0.0/112': it is IPv4-mapped"),
    ({'pod_cidrs': ['10.244.1.0/24', '::ffff:a2a:0/120']}, "invalid pod CIDR '::ffff:a2a:0/120': it is IPv4-mapped"),
    ({'chain': 'MASQUERADE'}, "invalid chain 'MASQUERADE': it is the name of an iptables target extension"),
    ({'chain': 'snat'}, "invalid chain 'snat'"),
    ({'comment': 'clusternet fip 198.51.100.10'}, "invalid comment 'clusternet fip 198.51.100.10': comments starting with 'clusternet fip'"),
    ({'comment': 'clusternet fip'}, "invalid comment 'clusternet fip'"),
    ({'cluster_cidrs': ['0.0.0.0/0'], 'pod_cidrs': []}, "invalid cluster CIDR '0.0.0.0/0': a /0"),
    ({'cluster_cidrs': ['10.244.0.0/16', '::/0'], 'pod_cidrs': []}, "invalid cluster CIDR '::/0'"),
    ({'comment': 'x' * 256}, 'invalid comment'),
])
def test_validation_names_the_culprit(overrides, message):
    with pytest.raises(ValueError) as err:
        masq.build_intent(params(**overrides))
    assert message in str(err.value)


@pytest.mark.parametrize('given, canonical', [
    ('0x4000/0x4000', '0x4000/0x4000'),
    ('16384/16384', '0x4000/0x4000'),
    ('0X4000/0XC000', '0x4000/0xc000'),
    ('0x4000', '0x4000'),
    ('0x4000/0xffffffff', '0x4000'),
    ('', None),
    (None, None),
])
def test_canonical_mark_matches_iptables_save(given, canonical):
    assert masq.canonical_mark(given) == canonical


def test_plan_on_empty_table_builds_chain_and_jump():
    rules = [ipt.Rule('-j RETURN')]
    assert plan(ipt.Table('nat'), CHAIN, rules, 'c') == [
        ':%s - [0:0]' % CHAIN, '-A %s %s' % (CHAIN, MARK_M), '-A %s -j RETURN' % CHAIN, '-I POSTROUTING 1 -m comment --comment "c" -j %s' % CHAIN]


def test_plan_without_rules_removes_only_our_chain_and_jumps():
    table = ipt.parse_save('*nat\n:POSTROUTING ACCEPT [0:0]\n:%s - [0:0]\n-A POSTROUTING -s 192.168.9.0/24 -j MASQUERADE\n'
                           '%s\n-A %s %s -j RETURN\nCOMMIT\n' % (CHAIN, JUMP, CHAIN, TAG))['nat']
    assert plan(table, CHAIN, [], 'clusternet masq') == [JUMP.replace('-A', '-D', 1), ':%s - [0:0]' % CHAIN, '-X %s' % CHAIN]
    assert plan(ipt.Table('nat'), CHAIN, [], 'clusternet masq') == []


def test_view_and_expected_view():
    table = ipt.parse_save('*nat\n:POSTROUTING ACCEPT [0:0]\n:%s - [0:0]\n-A POSTROUTING -j OTHER\n-A POSTROUTING -j %s\n'
                           '%s\n-A %s -j RETURN\nCOMMIT\n' % (CHAIN, CHAIN, JUMP, CHAIN))['nat']
    assert masq.view(table, CHAIN) == ['-A POSTROUTING -j %s' % CHAIN, JUMP, '-A %s -j RETURN' % CHAIN]
    # The uncommented jump is someone else's: kept beside ours.
    assert masq.expected_view(table, CHAIN, [ipt.Rule('-j RETURN')], 'clusternet masq') == [
        JUMP, '-A POSTROUTING -j %s' % CHAIN, '-A %s %s' % (CHAIN, MARK_M), '-A %s -j RETURN' % CHAIN]
    assert masq.expected_view(table, CHAIN, [], 'clusternet masq') == []


def test_comment_of_255_characters_and_fip_lookalikes_that_are_not_fip_comments():
    for comment in ('x' * 255, 'clusternet fipx', '-j', 'abc_-1'):
        assert masq.build_intent(params(comment=comment)).comment == comment


FOREIGN_CHAIN = '*nat\n:POSTROUTING ACCEPT [0:0]\n:%s - [0:0]\n-A %s %s -j RETURN\n-A %s -s 10.9.9.9/32 -j RETURN\nCOMMIT\n' % (
    CHAIN, CHAIN, TAG, CHAIN)


@pytest.mark.parametrize('rules', [[ipt.Rule('-j RETURN')], []], ids=['present', 'absent'])
def test_plan_refuses_a_chain_holding_foreign_rules_naming_chain_and_rule(rules):
    with pytest.raises(ValueError) as err:
        plan(ipt.parse_save(FOREIGN_CHAIN)['nat'], CHAIN, rules, 'clusternet masq')
    assert str(err.value) == (
        "refusing to manage chain 'CLUSTERNET-POSTRTG': it holds a rule without this module's comment: "
        "-A CLUSTERNET-POSTRTG -s 10.9.9.9/32 -j RETURN (this module's comment is 'clusternet masq'); "
        "set allow_foreign_chain to take the chain over")


def test_plan_with_allow_foreign_chain_rebuilds_it_to_exactly_ours():
    rules = [ipt.Rule('%s -j RETURN' % TAG)]
    assert plan(ipt.parse_save(FOREIGN_CHAIN)['nat'], CHAIN, rules, 'clusternet masq', allow_foreign_chain=True) == [
        ':%s - [0:0]' % CHAIN, '-A %s %s' % (CHAIN, MARK_M), '-A %s %s -j RETURN' % (CHAIN, TAG), '-I POSTROUTING 1 %s -j %s' % (TAG, CHAIN)]


def test_plan_in_sync_whatever_quoting_the_save_tool_chose():
    """iptables-save prints a [A-Za-z0-9_-] comment bare and an IPv4-compatible address dotted."""
    rules = masq.desired_rules('ipv6', nets('::a2a:0/112'), [], 'abc_-1', None, False)
    saved = '\n'.join('-A %s %s' % (CHAIN, rule.text.replace('"abc_-1"', 'abc_-1').replace('::a2a:0', '::10.42.0.0')) for rule in rules)
    assert '::10.42.0.0/112' in saved and '"' not in saved
    table = ipt.parse_save('*nat\n:POSTROUTING ACCEPT [0:0]\n:%s - [0:0]\n-A POSTROUTING -m comment --comment abc_-1 -j %s\n-A %s %s\n%s\nCOMMIT\n' % (
        CHAIN, CHAIN, CHAIN, MARK_M, saved))['nat']
    assert plan(table, CHAIN, rules, 'abc_-1') == []
