import ipaddress
import os

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import nft

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'nft')
N, A = ipaddress.ip_network, ipaddress.ip_address


def fixture(name):
    """A recorded `nft -j list table` output, its comment header (the commands that made it) left out."""
    with open(os.path.join(FIXTURES, name)) as handle:
        return ''.join(line for line in handle if not line.startswith('#'))


def masq(clusters, pods, skip_mark=(0x4000, 0x4000), random_fully=True):
    return {'cluster_cidrs': [N(c) for c in clusters], 'pod_cidrs': [N(p) for p in pods], 'skip_mark': skip_mark, 'random_fully': random_fully}


def fips(**pairs):
    return dict((A(ext), A(intl)) for ext, intl in pairs.values())


def test_ipv4_transaction_exact_text_collapses_overlapping_cidrs():
    tx = nft.table_transaction('ipv4', masq(['10.50.0.0/17', '10.42.0.0/16', '10.50.0.0/16'], ['10.42.1.0/24']),
                               fips(a=('198.51.100.11', '10.42.1.6'), b=('198.51.100.10', '10.42.1.5')))
    assert tx.render() == '''add table ip clusternet
delete table ip clusternet
add table ip clusternet { comment "managed by clusternet.node"; }
add map ip clusternet fip-dnat { type ipv4_addr : ipv4_addr; }
add map ip clusternet fip-snat { type ipv4_addr : ipv4_addr; }
add element ip clusternet fip-dnat { 198.51.100.10 : 10.42.1.5, 198.51.100.11 : 10.42.1.6 }
add element ip clusternet fip-snat { 10.42.1.5 : 198.51.100.10, 10.42.1.6 : 198.51.100.11 }
add chain ip clusternet fip-prerouting { type nat hook prerouting priority -90; policy accept; }
add chain ip clusternet fip-output { type nat hook output priority -90; policy accept; }
add chain ip clusternet fip-postrouting { type nat hook postrouting priority 105; policy accept; }
add rule ip clusternet fip-prerouting dnat to ip daddr map @fip-dnat
add rule ip clusternet fip-output dnat to ip daddr map @fip-dnat
add rule ip clusternet fip-postrouting snat to ip saddr map @fip-snat
add set ip clusternet masq-cluster { type ipv4_addr; flags interval; }
add set ip clusternet masq-pod { type ipv4_addr; flags interval; }
add element ip clusternet masq-cluster { 10.42.0.0/16, 10.50.0.0/16 }
add element ip clusternet masq-pod { 10.42.1.0/24 }
add chain ip clusternet masq-postrouting { type nat hook postrouting priority 110; policy accept; }
add rule ip clusternet masq-postrouting meta mark & 0x00004000 == 0x00004000 return
add rule ip clusternet masq-postrouting ip saddr @masq-pod ip daddr @masq-cluster return
add rule ip clusternet masq-postrouting ip saddr @masq-cluster ip daddr @masq-pod return
add rule ip clusternet masq-postrouting ip saddr != @masq-cluster ip daddr @masq-pod return
add rule ip clusternet masq-postrouting ip saddr @masq-cluster ip daddr != 224.0.0.0/4 masquerade fully-random
add rule ip clusternet masq-postrouting ip saddr != @masq-cluster ip daddr @masq-cluster masquerade fully-random
'''


def test_ipv6_masquerade_full_mark_without_random_fully_exact_text():
    tx = nft.table_transaction('ipv6', masq(['fd00:10:244::/56'], [], skip_mark=(0x4000, 0xffffffff), random_fully=False))
    assert tx.render().splitlines()[3:] == [
        'add set ip6 clusternet masq-cluster { type ipv6_addr; flags interval; }',
        'add set ip6 clusternet masq-pod { type ipv6_addr; flags interval; }',
        'add element ip6 clusternet masq-cluster { fd00:10:244::/56 }',
        'add chain ip6 clusternet masq-postrouting { type nat hook postrouting priority 110; policy accept; }',
        'add rule ip6 clusternet masq-postrouting meta mark 0x00004000 return',
        'add rule ip6 clusternet masq-postrouting ip6 saddr @masq-pod ip6 daddr @masq-cluster return',
        'add rule ip6 clusternet masq-postrouting ip6 saddr @masq-cluster ip6 daddr @masq-pod return',
        'add rule ip6 clusternet masq-postrouting ip6 saddr != @masq-cluster ip6 daddr @masq-pod return',
        'add rule ip6 clusternet masq-postrouting ip6 saddr @masq-cluster ip6 daddr != ff00::/8 masquerade',
        'add rule ip6 clusternet masq-postrouting ip6 saddr != @masq-cluster ip6 daddr @masq-cluster masquerade',
    ]


def test_masquerade_without_skip_mark_has_no_mark_rule():
    lines = nft.table_transaction('ipv4', masq(['10.42.0.0/16'], [], skip_mark=None)).render().splitlines()
    assert not [line for line in lines if 'mark' in line]
    assert len([line for line in lines if line.startswith('add rule')]) == 5


def test_nothing_to_hold_removes_the_table():
    tx = nft.table_transaction('ipv6')
    assert tx.render() == 'add table ip6 clusternet\ndelete table ip6 clusternet\n'
    assert tx.expected() is None


@pytest.mark.parametrize('call, message', [
    (lambda: nft.table_transaction('ipv4', masq(['fd00::/56'], [])), "fd00::/56 is not an ipv4 value of ip clusternet"),
    (lambda: nft.table_transaction('ipv6', None, fips(a=('2001:db8::1', '10.0.0.1'))), 'map fip-dnat value 10.0.0.1 is not an ipv6 value'),
    (lambda: nft.table_transaction('ipv4', None, fips(a=('198.51.100.1', '10.0.0.1'), b=('198.51.100.2', '10.0.0.1'))),
     'an internal IP is the target of two external IPs'),
    (lambda: nft.table_transaction('ipv4', masq([], [])), 'needs a cluster CIDR'),
    (lambda: nft.table_transaction('ipv4', masq(['10.0.0.0/8'], [], skip_mark=(0x4001, 0x4000))), 'invalid mark 0x4001/0x4000'),
    (lambda: nft.table_transaction('ipv4', masq(['10.0.0.0/8'], [], skip_mark=(1 << 32, 0xffffffff))), 'invalid mark 0x100000000'),
    (lambda: nft.Transaction('inet'), "invalid family 'inet'"),
    (lambda: nft.table_transaction('ipv6', None, fips(a=('2001:db8::1', 'fe80::1%eth0'))), 'map fip-dnat value fe80::1%eth0 carries a zone id'),
])
def test_bad_content_is_refused_naming_the_value(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def table_tx():
    tx = nft.Transaction('ipv4')
    tx.replace_table()
    tx.add_table()
    return tx


def test_operations_are_validated_when_queued():
    tx = nft.Transaction('ipv4')
    tx.replace_table()
    with pytest.raises(ValueError, match="set 'cn': the table is not declared"):
        tx.add_set('cn', interval=True)
    tx = table_tx()
    with pytest.raises(ValueError, match="invalid chain name 'bad name;'"):
        tx.add_chain('bad name;', 'postrouting', 100)
    with pytest.raises(ValueError, match="invalid hook 'input'"):
        tx.add_chain('c', 'input', 100)
    with pytest.raises(ValueError, match='invalid priority True'):
        tx.add_chain('c', 'postrouting', True)
    with pytest.raises(ValueError, match="rule for chain 'c': no such chain"):
        tx.add_rule('c', nft.Verdict('return'))
    cidrs = tx.add_set('cidrs', interval=True)
    with pytest.raises(ValueError, match='set cidrs: 10.0.0.0/8 overlaps 10.1.0.0/16'):
        tx.add_elements('cidrs', [N('10.0.0.0/8'), N('10.1.0.0/16')])
    with pytest.raises(ValueError, match="set 'cidrs' is declared twice"):
        tx.add_set('cidrs')
    tx.add_chain('c', 'postrouting', 100)
    with pytest.raises(ValueError, match="'cidrs' is used as a map"):
        tx.add_rule('c', nft.NatMap('snat', 'saddr', cidrs))
    with pytest.raises(ValueError, match="names set 'other', not declared"):
        tx.add_rule('c', nft.Addr('saddr', nft.Set('other', interval=True)), nft.Verdict('return'))
    fip = tx.add_set('fip', is_map=True)
    tx.add_elements('fip', [(A('192.0.2.1'), A('10.0.0.1'))])
    with pytest.raises(ValueError, match='map fip: an element is listed twice'):
        tx.add_elements('fip', [(A('192.0.2.1'), A('10.0.0.2'))])
    assert fip.elements == [(A('192.0.2.1'), A('10.0.0.1'))]


def test_a_refused_operation_leaves_the_transaction_as_it_was():
    tx = table_tx()
    before = tx.render()
    with pytest.raises(ValueError):
        tx.add_chain('c', 'postrouting', 1000)
    assert tx.render() == before


# --- parsing recorded `nft -j list table` output (tests/unit/fixtures/nft, record.sh) ---

@pytest.mark.parametrize('name, family, options', [
    ('ipv4-full.json.txt', 'ipv4', {
        'masquerade': {'cluster_cidrs': ['10.42.0.0/16', '10.50.0.0/16'], 'pod_cidrs': ['10.42.1.0/24', '10.50.7.7/32'],
                       'skip_mark': '0x4000/0x4000', 'random_fully': True},
        'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.5'},
                         {'external_ip': '198.51.100.11', 'internal_ip': '10.42.1.6'}]}),
    ('ipv6-full.json.txt', 'ipv6', {
        'masquerade': {'cluster_cidrs': ['fd00:10:244::/56'], 'pod_cidrs': ['fd00:10:244:1::/64'], 'skip_mark': '0x4000', 'random_fully': False},
        'floating_ips': [{'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10:244:1::5'}]}),
    ('ipv6-fip-only.json.txt', 'ipv6', {
        'masquerade': None,
        'floating_ips': [{'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10:244:1::5'},
                         {'external_ip': '2001:db8:ff::11', 'internal_ip': 'fd00:10:244:1::6'}]}),
    ('ipv4-masq-only.json.txt', 'ipv4', {
        'masquerade': {'cluster_cidrs': ['10.42.0.0/16'], 'pod_cidrs': [], 'skip_mark': '', 'random_fully': True},
        'floating_ips': []}),
])
def test_recorded_tables_read_back_in_option_shape_without_drift(name, family, options):
    table = nft.parse_table(family, fixture(name))
    assert table.present
    assert table.options() == options
    assert table.drift == []


def test_tampering_inside_our_table_is_named_as_drift():
    table = nft.parse_table('ipv4', fixture('ipv4-tampered.json.txt'))
    assert table.drift == ['unexpected chain extra', 'map fip-snat differs', 'rule masq-postrouting differs']
    # The FIPs are read from the dnat map: the planted snat element makes no FIP.
    assert [fip['external_ip'] for fip in table.options()['floating_ips']] == ['198.51.100.10', '198.51.100.11']


def test_no_table_is_an_empty_state():
    table = nft.parse_table('ipv4', None)
    assert (table.present, table.drift, table.options()) == (False, [], {'masquerade': None, 'floating_ips': []})


def test_unreadable_or_other_schema_json_is_an_error():
    with pytest.raises(nft.NftError, match='printed no nftables JSON'):
        nft.parse_table('ipv4', 'Error: something')
    with pytest.raises(nft.NftError, match='JSON schema version 2'):
        nft.parse_table('ipv4', '{"nftables": [{"metainfo": {"json_schema_version": 2}}]}')


def test_an_element_we_never_write_is_an_error_naming_it():
    text = fixture('ipv4-masq-only.json.txt').replace('{"prefix": {"addr": "10.42.0.0", "len": 16}}', '{"range": ["10.0.0.1", "10.0.0.9"]}')
    with pytest.raises(nft.NftError, match=r'set masq-cluster holds an element this module does not write: \{"range"'):
        nft.parse_table('ipv4', text)


# --- the kernel edge, with a recorded stand-in for nft ---

class FakeRun(object):
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, args, data=None):
        self.calls.append((args, data))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.mark.parametrize('answer, message', [
    ((0, 'nftables v0.9.8 (E.D.S.)\n', ''), 'nft 0.9.8 is too old: the nftables backend needs nft >= 1.0.1'),
    ((0, 'nftables v1.0.0 (Fearless Fosdick #3)\n', ''), 'nft 1.0.0 is too old'),
    ((0, 'something else\n', ''), "cannot read the nft version from 'something else'"),
    (OSError(2, 'No such file or directory'), 'nft is not installed'),
])
def test_preflight_refuses_a_missing_or_old_nft(answer, message):
    with pytest.raises(nft.NftError) as err:
        nft.NftKernel(FakeRun(answer)).preflight()
    assert message in str(err.value)


def test_preflight_accepts_debian_12_nft():
    assert nft.NftKernel(FakeRun((0, 'nftables v1.0.6 (Lester Gooch #5)\n', ''))).preflight() == (1, 0, 6)


NO_TABLES = '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}]}'
OUR_TABLE = NO_TABLES[:-2] + ', {"table": {"family": "ip6", "name": "clusternet", "handle": 1}}]}'


def test_read_of_a_missing_table_is_none_whatever_the_locale_says():
    run = FakeRun((1, '', 'Fehler: Datei oder Verzeichnis nicht gefunden\n'), (0, NO_TABLES, ''))
    assert nft.NftKernel(run).read('ipv4') is None
    assert [call[0] for call in run.calls] == [['nft', '-j', 'list', 'table', 'ip', 'clusternet'], ['nft', '-j', 'list', 'tables', 'ip']]


@pytest.mark.parametrize('listing', [(0, OUR_TABLE, ''), (1, '', 'Error: Operation not permitted\n'), (0, 'garbage', '')])
def test_a_failed_read_of_an_existing_or_unknown_table_raises(listing):
    run = FakeRun((1, '', 'Error: Operation not permitted\n'), listing)
    with pytest.raises(nft.NftError, match=r'nft -j list table ip6 clusternet failed \(1\): Error: Operation not permitted'):
        nft.NftKernel(run).read('ipv6')


def test_apply_maps_the_refused_line_back_to_its_operation():
    tx = nft.table_transaction('ipv4', masq(['10.42.0.0/16'], []))
    run = FakeRun((1, '', '/dev/stdin:7:1-40: Error: Could not process rule: No such file or directory\n'))
    with pytest.raises(nft.NftError) as err:
        nft.NftKernel(run).apply(tx)
    assert run.calls == [(['nft', '-f', '-'], tx.render())]
    assert 'nft refused the ipv4 transaction (nothing applied), at chain masq-postrouting: add chain ip clusternet masq-postrouting' in str(err.value)


def test_a_map_element_we_never_write_is_an_error_naming_it():
    text = fixture('ipv6-fip-only.json.txt').replace('["2001:db8:ff::11", "fd00:10:244:1::6"]', '["2001:db8:ff::11", "not-an-address"]')
    with pytest.raises(nft.NftError, match='map fip-dnat holds an element this module does not write: .*not-an-address'):
        nft.parse_table('ipv6', text)
