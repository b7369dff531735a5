import re

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import ipset

SAVE = '''create pods hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x78a4043b
add pods 10.42.1.7
add pods 10.42.1.8
create inet6:pods hash:ip family inet6 hashsize 2048 maxelem 100 bucketsize 12 initval 0x1335baef
add inet6:pods 2001:db8:42:1::7
create k hash:ip family inet hashsize 1024 maxelem 65536 timeout 300 counters comment bucketsize 12 initval 0x609ac382
add k 10.0.0.1 timeout 287 packets 0 bytes 0 comment "hi there"
'''


@pytest.mark.parametrize('set_type, value, family, texts', [
    ('hash:ip', '10.42.1.6', 'ipv4', ['10.42.1.6']),
    ('hash:ip', ' 10.42.1.6/32 ', 'ipv4', ['10.42.1.6']),
    ('hash:ip', '2001:DB8:42:1:0:0:0:6', 'ipv6', ['2001:db8:42:1::6']),
    ('hash:ip', '2001:db8::6/128', 'ipv6', ['2001:db8::6']),
    # inet_ntop form, as ipset prints it (Python's ipaddress would say ::ffff:102:304)
    ('hash:ip', '::FFFF:1.2.3.4', 'ipv6', ['::ffff:1.2.3.4']),
    # a single zero group is not compressed (RFC 5952, glibc, ipset)
    ('hash:ip', '2001:db8:0:1:1:1:1:1', 'ipv6', ['2001:db8:0:1:1:1:1:1']),
    ('hash:net', '10.0.0.0/24', 'ipv4', ['10.0.0.0/24']),
    ('hash:net', '10.0.0.6/32', 'ipv4', ['10.0.0.6']),
    ('hash:net', '10.0.0.6', 'ipv4', ['10.0.0.6']),
    ('hash:net', '2001:DB8::/64', 'ipv6', ['2001:db8::/64']),
    ('hash:net', '0.0.0.0/0', 'ipv4', ['0.0.0.0/1', '128.0.0.0/1']),
    ('hash:net', '::/0', 'ipv6', ['::/1', '8000::/1']),
    ('hash:ip,port', '10.96.0.1,tcp:443', 'ipv4', ['10.96.0.1,tcp:443']),
    ('hash:ip,port', '10.96.0.2,443', 'ipv4', ['10.96.0.2,tcp:443']),
    ('hash:ip,port', '10.96.0.6,TCP:http', 'ipv4', ['10.96.0.6,tcp:80']),
    ('hash:ip,port', '10.96.0.11,udplite:5', 'ipv4', ['10.96.0.11,udplite:5']),
    ('hash:net,port', '2001:db8::/64,udp:53', 'ipv6', ['2001:db8::/64,udp:53']),
    ('hash:net,port', '::/0,53', 'ipv6', ['::/1,tcp:53', '8000::/1,tcp:53']),
    ('hash:ip,port,ip', '10.0.0.1,tcp:80,10.0.0.2', 'ipv4', ['10.0.0.1,tcp:80,10.0.0.2']),
    ('hash:ip,port,net', '10.0.0.1,sctp:9,10.1.0.1/32', 'ipv4', ['10.0.0.1,sctp:9,10.1.0.1']),
    # the kernel stores the all-zero address in the three-part types, not in hash:ip(,port)
    ('hash:ip,port,ip', '0.0.0.0,tcp:80,0.0.0.0', 'ipv4', ['0.0.0.0,tcp:80,0.0.0.0']),
    ('hash:ip,port,net', '10.0.0.1,tcp:80,0.0.0.0/0', 'ipv4', ['10.0.0.1,tcp:80,0.0.0.0/1', '10.0.0.1,tcp:80,128.0.0.0/1']),
    # the kernel accepts /0 with an interface, so it is kept whole
    ('hash:net,iface', '0.0.0.0/0,eth0', 'ipv4', ['0.0.0.0/0,eth0']),
    ('hash:net,iface', '10.0.0.0/8,physdev:eth1', 'ipv4', ['10.0.0.0/8,physdev:eth1']),
])
def test_normalize_entry_matches_ipset_save(set_type, value, family, texts):
    assert ipset.normalize_entry(value, set_type) == (family, texts)


@pytest.mark.parametrize('set_type, value, reason', [
    ('hash:ip', '10.0.0.256', 'invalid address'),
    ('hash:ip', '010.0.0.1', 'invalid address'),  # ipset would read it as octal 8.0.0.1
    ('hash:ip', '10.0.0.0/24', 'invalid address'),
    ('hash:ip', 'fe80::1%eth0', 'does not accept'),
    ('hash:ip', '0.0.0.0', 'all-zero address'),
    ('hash:ip', '::/128', 'all-zero address'),
    ('hash:ip,port', '0:0::0,udp:53', 'all-zero address'),
    ('hash:ip', '10.0.0.1,tcp:80', 'expected 10.42.1.6'),
    ('hash:net', '10.0.0.1/24', 'zero host bits'),
    ('hash:net', '10.0.0.0/33', 'expected 0 to 32'),
    ('hash:net', '10.0.0.0/', 'expected 0 to 32'),
    ('hash:ip,port', '10.0.0.1', 'expected 10.42.1.6,tcp:443'),
    ('hash:ip,port', '10.0.0.1,icmp:8', "protocol 'icmp'"),
    ('hash:ip,port', '10.0.0.1,tcp:65536', 'out of range'),
    ('hash:ip,port', '10.0.0.1,tcp:80-82', "port '80-82'"),
    ('hash:ip,port', '10.0.0.1,tcp:no-such-service', 'known tcp service'),
    ('hash:ip,port,ip', '10.0.0.1,tcp:80,2001:db8::1', 'mixes IPv4 and IPv6'),
    ('hash:net,iface', '10.0.0.0/8,averyveryverylongname', 'interface name'),
    ('hash:net,iface', '10.0.0.0/8,physdev:', 'interface name'),
])
def test_normalize_entry_error_names_value(set_type, value, reason):
    with pytest.raises(ValueError) as err:
        ipset.normalize_entry(value, set_type)
    assert repr(value) in str(err.value) and reason in str(err.value)


def test_desired_entries_sorts_by_family_and_merges_duplicates():
    out = ipset.desired_entries(['10.42.1.6', '2001:db8::6', '10.42.1.6/32', '2001:DB8::6'], 'hash:ip', ['ipv4', 'ipv6'])
    assert out == {'ipv4': {'10.42.1.6'}, 'ipv6': {'2001:db8::6'}}


def test_desired_entries_rejects_family_not_managed():
    with pytest.raises(ValueError, match=r"entry '2001:db8::6' is ipv6 but families is ipv4"):
        ipset.desired_entries(['10.42.1.6', '2001:db8::6'], 'hash:ip', ['ipv4'])


def test_set_names_kube_router_convention_and_override():
    assert ipset.set_names('pods', None, ['ipv4', 'ipv6']) == {'ipv4': 'pods', 'ipv6': 'inet6:pods'}
    assert ipset.set_names('pods', 'pods6', ['ipv6']) == {'ipv6': 'pods6'}


@pytest.mark.parametrize('name, ipv6_name, families, message', [
    ('a' * 26, None, ['ipv4', 'ipv6'], "'inet6:%s' is 32 characters" % ('a' * 26)),
    ('a' * 32, None, ['ipv4'], 'is 32 characters'),
    ('inet6:pods', None, ['ipv4'], "name 'inet6:pods' must not start"),
    ('my pods', None, ['ipv4'], 'whitespace'),
    ('pods', 'pods', ['ipv4', 'ipv6'], 'different names'),
    ('pods', None, [], 'families is empty'),
])
def test_set_names_errors(name, ipv6_name, families, message):
    with pytest.raises(ValueError, match=message):
        ipset.set_names(name, ipv6_name, families)


def test_set_names_only_checks_managed_families():
    # the unused IPv6 name would be 32 characters; an IPv4-only task does not care
    assert ipset.set_names('a' * 26, None, ['ipv4']) == {'ipv4': 'a' * 26}


def test_parse_save_headers_family_and_entry_keys():
    sets = ipset.parse_save(SAVE)
    assert sorted(sets) == ['inet6:pods', 'k', 'pods']
    assert sets['pods'].entries == {'10.42.1.7', '10.42.1.8'}
    assert (sets['inet6:pods'].type, sets['inet6:pods'].family) == ('hash:ip', 'ipv6')
    assert sets['inet6:pods'].options['maxelem'] == '100'
    # per-entry extras are not part of the key `del` needs
    assert sets['k'].entries == {'10.0.0.1'}
    assert sets['k'].options['counters'] is True and sets['k'].options['timeout'] == '300'


def test_parse_save_rejects_unknown_lines():
    with pytest.raises(ValueError, match='line 1'):
        ipset.parse_save('flush pods\n')


def test_check_existing():
    sets = ipset.parse_save(SAVE)
    ipset.check_existing(sets['pods'], 'hash:ip', 'ipv4', None)
    ipset.check_existing(sets['pods'], 'hash:ip', 'ipv4', 65536)
    with pytest.raises(ValueError, match="'pods' exists with type hash:ip, not hash:net"):
        ipset.check_existing(sets['pods'], 'hash:net', 'ipv4', None)
    with pytest.raises(ValueError, match="'pods' exists with family ipv4, not ipv6"):
        ipset.check_existing(sets['pods'], 'hash:ip', 'ipv6', None)
    with pytest.raises(ValueError, match="'inet6:pods' exists with maxelem 100, not 200"):
        ipset.check_existing(sets['inet6:pods'], 'hash:ip', 'ipv6', 200)


def test_delta_exclusive_and_additive():
    current = {'10.0.0.1', '10.0.0.2'}
    desired = {'10.0.0.2', '10.0.0.3'}
    assert ipset.delta(current, desired, True) == (['10.0.0.3'], ['10.0.0.1'])
    assert ipset.delta(current, desired, False) == (['10.0.0.3'], [])
    assert ipset.delta(desired, desired, True) == ([], [])


def test_render_create():
    assert ipset.render_create('inet6:pods', 'hash:net', 'ipv6') == 'create inet6:pods hash:net family inet6'
    assert ipset.render_create('pods', 'hash:ip', 'ipv4', 64, 1000) == 'create pods hash:ip family inet hashsize 64 maxelem 1000'


def test_render_changes_adds_first():
    batch = ipset.Transaction()
    ipset.render_changes(batch, 'p', ['b'], ['a'])
    assert batch == ['add p b', 'del p a']
    assert batch.ops == [('p', 'add', 'b'), ('p', 'del', 'a')]


def test_plan_present_swaps_instead_of_deleting_first_when_maxelem_overflows():
    # one entry in a set of maxelem 1: it used to be deleted before the new one was
    # added (an empty set meanwhile); now the new one fills a temporary set swapped in
    live = {'ipv4': ipset.parse_save('create p hash:ip family inet hashsize 1024 maxelem 1 bucketsize 12 initval 0x1\nadd p a\n')['p']}
    batch, result, _before, _after = ipset._plan_present(PARAMS, {'ipv4': 'p'}, {'ipv4': {'b'}}, live)
    tmp = ipset.tmp_name('p')
    assert batch == ['create %s hash:ip family inet hashsize 1024 maxelem 1 bucketsize 12' % tmp, 'flush %s' % tmp,
                     'add %s b' % tmp, 'swap p %s' % tmp]
    assert result['ipv4'] == {'name': 'p', 'added': ['b'], 'removed': ['a']}
    assert [(read.name, name) for read, name, _added, _removed in batch.swaps] == [('p', tmp)]


def test_render_set_sorted_add_lines():
    assert ipset.render_set('p', {'10.0.0.2', '10.0.0.1'}) == 'add p 10.0.0.1\nadd p 10.0.0.2\n'


PARAMS = {'set_type': 'hash:ip', 'exclusive': True, 'maxelem': None, 'hashsize': None}


def test_plan_present_each_family_writes_only_its_own_set():
    live = {'ipv4': ipset.parse_save(SAVE)['pods'], 'ipv6': ipset.parse_save(SAVE)['inet6:pods']}
    desired = {'ipv4': {'10.42.1.8', '10.42.1.9'}, 'ipv6': {'2001:db8:42:1::7', '2001:db8:42:1::8'}}
    lines, result, before, after = ipset._plan_present(PARAMS, {'ipv4': 'pods', 'ipv6': 'inet6:pods'}, desired, live)
    assert lines == ['add pods 10.42.1.9', 'del pods 10.42.1.7', 'add inet6:pods 2001:db8:42:1::8']
    assert result['ipv4'] == {'name': 'pods', 'added': ['10.42.1.9'], 'removed': ['10.42.1.7']}
    assert ''.join(after) == 'add pods 10.42.1.8\nadd pods 10.42.1.9\nadd inet6:pods 2001:db8:42:1::7\nadd inet6:pods 2001:db8:42:1::8\n'


def test_plan_present_creates_missing_set_with_options():
    params = dict(PARAMS, maxelem=1000, hashsize=64, set_type='hash:net')
    lines, _result, before, _after = ipset._plan_present(params, {'ipv6': 'inet6:nets'}, {'ipv6': {'2001:db8::/64'}}, {'ipv6': None})
    assert lines == ['create inet6:nets hash:net family inet6 hashsize 64 maxelem 1000', 'add inet6:nets 2001:db8::/64']
    assert before == ['']


def test_plan_present_refuses_more_than_maxelem_before_writing():
    live = {'ipv6': ipset.parse_save(SAVE)['inet6:pods']}
    desired = {'ipv6': set('2001:db8::%x' % i for i in range(101))}
    with pytest.raises(ValueError, match="'inet6:pods' would hold 101 entries, more than its maxelem 100"):
        ipset._plan_present(PARAMS, {'ipv6': 'inet6:pods'}, desired, live)


def test_desired_entries_known_text_skips_parsing_but_not_validation():
    known = {'ipv4': {'10.0.0.1'}, 'ipv6': {'2001:db8::1'}}
    out = ipset.desired_entries(['10.0.0.1', '2001:db8::1', '10.0.0.2', '2001:DB8::2'], 'hash:ip', ['ipv4', 'ipv6'], known)
    assert out == {'ipv4': {'10.0.0.1', '10.0.0.2'}, 'ipv6': {'2001:db8::1', '2001:db8::2'}}
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        ipset.desired_entries(['10.0.0.1', '10.0.0.300'], 'hash:ip', ['ipv4', 'ipv6'], known)


# --- hardening: names, numbers, digits, interfaces, nomatch, swap, failures ------------------

@pytest.mark.parametrize('name, ipv6_name, families, message', [
    ('-n', None, ['ipv4'], "'-n' starts with \"-\""),
    ('-exist', None, ['ipv4'], "'-exist' starts with \"-\""),
    ('-f', None, ['ipv4'], "'-f' starts with \"-\""),
    ('--name', None, ['ipv4'], "'--name' starts with \"-\""),
    ('pods', '-t', ['ipv6'], "ipv6 set name '-t' starts with \"-\""),
    ('pods', 'inet6:-t', ['ipv6'], "'inet6:-t' without its inet6: prefix, '-t' starts with \"-\""),
    ('-x', None, ['ipv6'], "'inet6:-x' without its inet6: prefix, '-x' starts with \"-\""),
    ('pods', 'inet6:', ['ipv6'], "'' is 0 characters"),
    ('a"b', None, ['ipv4'], "contains '\"'"),
    ('"ab"', None, ['ipv4'], "contains '\"'"),
    ('a,b', None, ['ipv4'], "contains ','"),
    ('p\u00e9', None, ['ipv4'], "contains '\u00e9'"),
    ('a\x01b', None, ['ipv4'], "contains '\\x01'"),
    ('a\nb', None, ['ipv4'], 'whitespace'),
    ('a\tb', None, ['ipv4'], 'whitespace'),
    ('', None, ['ipv4'], "'' is 0 characters"),
    ('~cn-tmp-x', None, ['ipv4'], "starts with '~'"),
    ('pods', 'inet6:~x', ['ipv6'], "starts with '~'"),
])
def test_set_names_refuses_what_ipset_parsers_would_misread(name, ipv6_name, families, message):
    with pytest.raises(ValueError) as err:
        ipset.set_names(name, ipv6_name, families)
    assert message in str(err.value)


@pytest.mark.parametrize('name', ['KUBE-DST-3YNVZWWGX3UQQ4VQ', "a'b#c:d.e+f_g=h@%$;\\/", 'x', 'a' * 25, 'n-', 'inet6', '#a'])
def test_set_names_accepts_what_ipset_passes_unchanged(name):
    assert ipset.set_names(name, None, ['ipv4', 'ipv6']) == {'ipv4': name, 'ipv6': 'inet6:' + name}


def test_tmp_name_fits_is_reserved_and_depends_on_the_name_only():
    tmp = ipset.tmp_name('pods')
    assert len(tmp) == 31 and tmp.startswith('~cn-tmp-') and tmp == ipset.tmp_name('pods')
    assert ipset.tmp_name('inet6:pods') != tmp and ipset.tmp_name('a' * 31) != ipset.tmp_name('a' * 30)
    # no task can name a set like it, and ipset's parsers pass it unchanged
    with pytest.raises(ValueError, match='temporary'):
        ipset.set_names(tmp, None, ['ipv4'])
    assert ipset.check_set_name(tmp) == tmp


@pytest.mark.parametrize('hashsize, maxelem, message', [
    (-1, None, 'hashsize -1 is out of range'),
    (0, None, 'hashsize 0 is out of range'),
    (32, None, 'hashsize 32 is out of range'),
    (2 ** 40, None, 'hashsize 1099511627776 is out of range'),
    (2 ** 31 + 1, None, 'out of range'),
    (1000, None, 'hashsize 1000 is not a power of two: the kernel would make it 1024'),
    (None, -1, 'maxelem -1 is out of range'),
    (None, 0, 'maxelem 0 is out of range'),
    (None, 2 ** 32, 'maxelem 4294967296 is out of range'),
    (None, 2 ** 40, 'maxelem 1099511627776 is out of range'),
])
def test_check_create_options_refuses(hashsize, maxelem, message):
    with pytest.raises(ValueError, match=message):
        ipset.check_create_options(hashsize, maxelem)


def test_check_create_options_accepts_the_kernel_range():
    for hashsize, maxelem in ((64, 1), (2 ** 31, 2 ** 32 - 1), (None, None), (1024, 65536)):
        ipset.check_create_options(hashsize, maxelem)


@pytest.mark.parametrize('set_type, value', [
    ('hash:ip,port', '10.0.0.1,tcp:\u0668\u0660'),  # Arabic-Indic 80
    ('hash:ip,port', '10.0.0.1,\u0668\u0660'),
    ('hash:ip,port', '10.0.0.1,tcp:\uff18\uff10'),  # full-width 80
    ('hash:net', '10.0.0.0/\u0668'),
    ('hash:ip', '10.0.0.1/\u0663\u0662'),
    ('hash:net,port', '2001:db8::/\u0666\u0664,udp:53'),
    ('hash:ip,port,net', '10.0.0.1,tcp:80,10.1.0.0/\u0661\u0666'),
    ('hash:ip,port', '10.0.0.1,tcp:+80'),
    ('hash:net', '10.0.0.0/+8'),
])
def test_non_ascii_digits_are_refused(set_type, value):
    with pytest.raises(ValueError) as err:
        ipset.normalize_entry(value, set_type)
    assert repr(value) in str(err.value)


@pytest.mark.parametrize('value', [
    '10.0.0.0/8,' + 'e' * 16,
    '10.0.0.0/8,' + '\u00e9' * 8,  # 8 characters, 16 bytes
    '10.0.0.0/8,physdev:' + 'e' * 16,
    '10.0.0.0/8,a:b',
    '10.0.0.0/8,a"b',
    '10.0.0.0/8,..',
    '10.0.0.0/8,',
])
def test_iface_entries_follow_the_kernel_name_rule(value):
    with pytest.raises(ValueError) as err:
        ipset.normalize_entry(value, 'hash:net,iface')
    assert repr(value) in str(err.value) and 'interface name' in str(err.value)


def test_iface_entries_of_15_bytes_and_physdev_pass():
    for iface in ('e' * 15, 'physdev:' + 'e' * 15, '\u00e9' * 7 + 'e'):
        assert ipset.normalize_entry('10.0.0.0/8,' + iface, 'hash:net,iface') == ('ipv4', ['10.0.0.0/8,' + iface])


NOMATCH = """create n hash:net family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x1
add n 10.0.0.0/8 nomatch
add n 10.1.0.0/16 nomatch comment "was nomatch"
add n 10.2.0.0/16 comment "a nomatch in a comment"
add n 10.3.0.0/16
"""


def test_parse_save_keeps_nomatch_entries_apart_and_extras_by_key():
    current = ipset.parse_save(NOMATCH)['n']
    assert current.entries == {'10.2.0.0/16', '10.3.0.0/16'}
    assert current.nomatch == {'10.0.0.0/8', '10.1.0.0/16'}
    assert current.extras == {'10.0.0.0/8': 'nomatch', '10.1.0.0/16': 'nomatch comment "was nomatch"',
                              '10.2.0.0/16': 'comment "a nomatch in a comment"'}
    assert current.header == 'family inet hashsize 1024 maxelem 65536 comment bucketsize 12'


def test_delta_a_nomatch_entry_is_not_the_plain_entry():
    current, nomatch = {'10.3.0.0/16'}, {'10.0.0.0/8', '10.1.0.0/16'}
    # wanted plain: added (add -exist clears the flag in place), never deleted
    assert ipset.delta(current, {'10.0.0.0/8', '10.3.0.0/16'}, True, nomatch) == (['10.0.0.0/8'], ['10.1.0.0/16'])
    assert ipset.delta(current, {'10.0.0.0/8'}, False, nomatch) == (['10.0.0.0/8'], [])


def test_plan_present_nomatch_exclusive_and_additive():
    live = {'ipv4': ipset.parse_save(NOMATCH)['n']}
    params = dict(PARAMS, set_type='hash:net')
    batch, result, before, after = ipset._plan_present(params, {'ipv4': 'n'}, {'ipv4': {'10.0.0.0/8', '10.3.0.0/16'}}, live)
    assert batch == ['add n 10.0.0.0/8', 'del n 10.1.0.0/16', 'del n 10.2.0.0/16']
    assert result['ipv4']['removed'] == ['10.1.0.0/16 nomatch', '10.2.0.0/16']
    assert 'add n 10.0.0.0/8 nomatch\n' in before[0] and after == ['add n 10.0.0.0/8\nadd n 10.3.0.0/16\n']
    batch, result, _before, after = ipset._plan_present(dict(params, exclusive=False), {'ipv4': 'n'}, {'ipv4': {'10.0.0.0/8'}}, live)
    assert batch == ['add n 10.0.0.0/8'] and result['ipv4']['removed'] == []
    assert after == ['add n 10.0.0.0/8\nadd n 10.1.0.0/16 nomatch\nadd n 10.2.0.0/16\nadd n 10.3.0.0/16\n']


def test_plan_present_nomatch_flip_takes_no_room():
    # maxelem 2, full: flipping a nomatch entry to plain needs no room, so no swap
    live = {'ipv4': ipset.parse_save('create n hash:net family inet maxelem 2\nadd n 10.0.0.0/8 nomatch\nadd n 10.3.0.0/16\n')['n']}
    batch, _result, _before, _after = ipset._plan_present(dict(PARAMS, set_type='hash:net'), {'ipv4': 'n'}, {'ipv4': {'10.0.0.0/8', '10.3.0.0/16'}}, live)
    assert batch == ['add n 10.0.0.0/8'] and batch.swaps == []


def test_swap_copies_what_kept_entries_carry():
    text = ('create k hash:ip family inet hashsize 1024 maxelem 2 timeout 300 counters comment bucketsize 12 initval 0x1\n'
            'add k 10.0.0.1 timeout 287 packets 3 bytes 4 comment "hi there"\nadd k 10.0.0.2 timeout 10 packets 0 bytes 0\n')
    live = {'ipv4': ipset.parse_save(text)['k']}
    batch, _result, _before, _after = ipset._plan_present(PARAMS, {'ipv4': 'k'}, {'ipv4': {'10.0.0.1', '10.0.0.3'}}, live)
    tmp = ipset.tmp_name('k')
    assert batch == ['create %s hash:ip family inet hashsize 1024 maxelem 2 timeout 300 counters comment bucketsize 12' % tmp,
                     'flush %s' % tmp, 'add %s 10.0.0.1 timeout 287 packets 3 bytes 4 comment "hi there"' % tmp,
                     'add %s 10.0.0.3' % tmp, 'swap k %s' % tmp]


def test_carry_over_keeps_what_other_writers_did_before_the_swap():
    read = ipset.parse_save('create p hash:ip family inet\nadd p 10.0.0.1\nadd p 10.0.0.2\nadd p 10.0.0.3\n')['p']
    tmp = ipset.tmp_name('p')
    # meanwhile another writer added .9 (with a comment) and removed .2, which this run kept
    old = ipset.parse_save('create %s hash:ip family inet\nadd %s 10.0.0.1\nadd %s 10.0.0.3\nadd %s 10.0.0.9 comment "x"\n'
                           % ((tmp,) * 4))[tmp]
    batch = ipset.Transaction()
    ipset.render_carry_over(batch, read, old, added=['10.0.0.4'], removed=['10.0.0.1'])
    assert batch == ['add p 10.0.0.9 comment "x"', 'del p 10.0.0.2', 'destroy %s' % tmp]


def test_applied_and_say_name_what_lines_did():
    batch = ipset.Transaction()
    batch.put('create p hash:ip family inet', 'p', 'create')
    ipset.render_changes(batch, 'p', ['10.0.0.1', '10.0.0.2'], ['10.0.0.3'])
    batch.put('swap q t', 'q', 'swap', 't')
    assert ipset.applied(batch.ops[:3]) == {'p': {'created': True, 'added': ['10.0.0.1', '10.0.0.2']}}
    assert ipset.say(ipset.applied(batch.ops)) == 'p: created, 2 added, 1 removed; q: swapped with t'
    assert ipset.say(ipset.applied([])) == 'nothing'


def test_delta_nomatch_asked_sets_and_clears_the_flag_in_place():
    current, nomatch = {'10.2.0.0/16', '10.3.0.0/16'}, {'10.0.0.0/8', '10.1.0.0/16'}
    # 10.2 plain -> flagged, 10.0 flagged -> plain, 10.1 stays flagged, 10.3 goes, 10.9 new flagged
    assert ipset.delta(current, {'10.0.0.0/8'}, True, nomatch, {'10.1.0.0/16', '10.2.0.0/16', '10.9.0.0/16'}) == (
        ['10.0.0.0/8', '10.2.0.0/16 nomatch', '10.9.0.0/16 nomatch'], ['10.3.0.0/16'])
    assert ipset.delta(current, set(), False, nomatch, {'10.2.0.0/16'}) == (['10.2.0.0/16 nomatch'], [])
    assert ipset.delta(current, {'10.2.0.0/16', '10.3.0.0/16'}, True, nomatch, nomatch) == ([], [])


def test_plan_present_with_nomatch_writes_the_flag_and_reports_it():
    live = {'ipv4': ipset.parse_save(NOMATCH)['n']}
    params = dict(PARAMS, set_type='hash:net')
    batch, result, _before, after = ipset._plan_present(
        params, {'ipv4': 'n'}, {'ipv4': {'10.3.0.0/16'}}, live, desired_nomatch={'ipv4': {'10.0.0.0/8', '10.2.0.0/16'}})
    assert batch == ['add n 10.2.0.0/16 nomatch', 'del n 10.1.0.0/16']
    assert result['ipv4'] == {'name': 'n', 'added': ['10.2.0.0/16 nomatch'], 'removed': ['10.1.0.0/16 nomatch']}
    assert after == ['add n 10.0.0.0/8 nomatch\nadd n 10.2.0.0/16 nomatch\nadd n 10.3.0.0/16\n']
    # additive: the flag moves, nothing is removed
    batch, _result, _before, after = ipset._plan_present(
        dict(params, exclusive=False), {'ipv4': 'n'}, {'ipv4': set()}, live, desired_nomatch={'ipv4': {'10.3.0.0/16'}})
    assert batch == ['add n 10.3.0.0/16 nomatch']
    assert after == ['add n 10.0.0.0/8 nomatch\nadd n 10.1.0.0/16 nomatch\nadd n 10.2.0.0/16\nadd n 10.3.0.0/16 nomatch\n']


def test_plan_present_fed_its_own_reading_changes_nothing():
    live = {'ipv4': ipset.parse_save(NOMATCH)['n']}
    batch, _result, before, after = ipset._plan_present(
        dict(PARAMS, set_type='hash:net'), {'ipv4': 'n'}, {'ipv4': set(live['ipv4'].entries)}, live,
        desired_nomatch={'ipv4': set(live['ipv4'].nomatch)})
    assert batch == [] and before == after


def test_swap_adds_nomatch_entries_flagged():
    text = ('create n hash:net family inet maxelem 3\nadd n 10.0.0.0/8 nomatch comment "x"\nadd n 10.3.0.0/16 timeout 5\n'
            'add n 10.4.0.0/16\n')
    live = {'ipv4': ipset.parse_save(text)['n']}
    batch, _result, _before, _after = ipset._plan_present(
        dict(PARAMS, set_type='hash:net'), {'ipv4': 'n'}, {'ipv4': {'10.5.0.0/16'}}, live,
        desired_nomatch={'ipv4': {'10.0.0.0/8', '10.3.0.0/16'}})
    tmp = ipset.tmp_name('n')
    # a kept nomatch entry keeps what it carried; a plain one flagged now is added flagged
    assert batch[2:5] == ['add %s 10.0.0.0/8 nomatch comment "x"' % tmp, 'add %s 10.3.0.0/16 nomatch' % tmp, 'add %s 10.5.0.0/16' % tmp]


@pytest.mark.parametrize('set_type, entries, nomatch, message', [
    ('hash:ip', [], ['10.0.0.1'], 'nomatch entries need a set type with a network part (hash:net, '),
    ('hash:ip,port,ip', [], ['10.0.0.1,tcp:80,10.0.0.2'], 'not hash:ip,port,ip'),
    ('hash:net', ['10.0.0.0/8'], ['10.0.0.0/8'], "entry '10.0.0.0/8' is in both entries and nomatch"),
])
def test_check_nomatch_refuses_what_the_kernel_would(set_type, entries, nomatch, message):
    families = ['ipv4', 'ipv6']
    with pytest.raises(ValueError, match=re.escape(message)):
        ipset.check_nomatch(set_type, ipset.desired_entries(entries, set_type, families),
                            ipset.desired_entries(nomatch, set_type, families))
    ipset.check_nomatch(set_type, ipset.desired_entries(entries, set_type, families), ipset.desired_entries([], set_type, families))
