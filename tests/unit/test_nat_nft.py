"""The nftables engines of masquerade and fip (module_utils/nat_nft.py), planned over tables read
from recorded `nft -j list table` output (tests/unit/fixtures/nft) and checked against the
recorded `nft -f` files of those same tables."""

import ipaddress
import os

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import nat_nft, nft
from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'nft')
A = ipaddress.ip_address
MASQ_PARAMS = {'chain': 'CLUSTERNET-POSTRTG', 'comment': 'clusternet masq', 'skip_mark': '0x4000/0x4000', 'random_fully': True,
               'cluster_cidrs': [], 'pod_cidrs': [], 'state': 'present', 'purge_other_backend': False, 'backend': 'nftables'}
FIP_PARAMS = {'floating_ips': [], 'exclusive': True, 'dnat_chain': 'CLUSTERNET-FIP-DNAT', 'snat_chain': 'CLUSTERNET-FIP-SNAT',
              'flush_conntrack': True, 'allow_foreign_chain': False, 'purge_other_backend': False, 'state': 'present', 'backend': 'nftables'}
IPV4_CIDRS = {'cluster_cidrs': ['10.42.0.0/16', '10.50.0.0/16'], 'pod_cidrs': ['10.42.1.0/24', '10.50.7.7/32']}


def recorded(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return ''.join(line for line in handle if not line.startswith('#'))


def tables(ipv4=None, ipv6=None):
    """{family: nft.Table} from recorded JSON (None: no table)."""
    return dict((family, nft.parse_table(family, recorded(name) if name else None)) for family, name in (('ipv4', ipv4), ('ipv6', ipv6)))


def plan(engine, params, read):
    intent = engine.validate(params)
    return engine.plan(engine.own(read, intent), intent)


def nft_lines(name, first=None, last=None):
    return ''.join(recorded(name).splitlines(True)[first:last])


IPV6_MASQ = '''add set ip6 clusternet masq-cluster { type ipv6_addr; flags interval; }
add set ip6 clusternet masq-pod { type ipv6_addr; flags interval; }
add element ip6 clusternet masq-cluster { fd00:10:244::/56 }
add element ip6 clusternet masq-pod { fd00:10:244:1::/64 }
add chain ip6 clusternet masq-postrouting { type nat hook postrouting priority 110; policy accept; }
add rule ip6 clusternet masq-postrouting ip6 saddr @masq-pod ip6 daddr @masq-cluster return
add rule ip6 clusternet masq-postrouting ip6 saddr @masq-cluster ip6 daddr @masq-pod return
add rule ip6 clusternet masq-postrouting ip6 saddr != @masq-cluster ip6 daddr @masq-pod return
add rule ip6 clusternet masq-postrouting ip6 saddr @masq-cluster ip6 daddr != ff00::/8 masquerade
add rule ip6 clusternet masq-postrouting ip6 saddr != @masq-cluster ip6 daddr @masq-cluster masquerade
'''


def test_masquerade_added_beside_the_fips_keeps_them_exact_text():
    params = dict(MASQ_PARAMS, cluster_cidrs=['fd00:10:244::/56'], pod_cidrs=['fd00:10:244:1::/64'], skip_mark='', random_fully=False)
    result = plan(nat_nft.MasqueradeEngine(), params, tables(ipv6='ipv6-fip-only.json.txt'))
    assert result.result['changed'] is True
    assert result.result['ipv6']['payload'] == recorded('ipv6-fip-only.nft') + IPV6_MASQ
    assert result.result['ipv6']['added'] == {'cluster_cidrs': ['fd00:10:244::/56'], 'pod_cidrs': ['fd00:10:244:1::/64']}
    assert result.result['ipv6']['removed'] == {'cluster_cidrs': [], 'pod_cidrs': []}
    assert result.result['ipv6']['before'] == [] and result.result['ipv6']['after'] == IPV6_MASQ.splitlines()
    assert result.result['ipv4']['payload'] == '' and [step.label for step in result.steps] == ['ipv6 table']


def test_masquerade_absent_keeps_the_fips_and_removes_a_table_left_empty():
    result = plan(nat_nft.MasqueradeEngine(), dict(MASQ_PARAMS, state='absent'), tables('ipv4-full.json.txt', 'ipv6-fip-only.json.txt'))
    assert result.result['ipv4']['payload'] == nft_lines('ipv4-full.nft', None, 13), 'exactly the FIP half of the recorded table'
    assert result.result['ipv4']['removed'] == IPV4_CIDRS
    assert result.result['ipv6']['payload'] == '', 'no masquerade there: nothing to write'
    fips_only = plan(nat_nft.FipEngine(), FIP_PARAMS, (tables(ipv6='ipv6-fip-only.json.txt'), {}))
    assert fips_only.result['ipv6']['payload'] == 'add table ip6 clusternet\ndelete table ip6 clusternet\n'


ADJACENT = {'cluster_cidrs': ['10.50.0.0/16', '10.42.128.0/17', '10.42.0.0/17'], 'pod_cidrs': ['10.50.7.7/32', '10.42.1.0/24']}


@pytest.mark.parametrize('cidrs', [IPV4_CIDRS, ADJACENT], ids=['as-held', 'adjacent-networks-merged'])
def test_masquerade_in_sync_writes_nothing(cidrs):
    result = plan(nat_nft.MasqueradeEngine(), dict(MASQ_PARAMS, **cidrs), tables('ipv4-full.json.txt'))
    assert result.result['changed'] is False and result.steps == []
    assert result.result['ipv4']['added'] == {'cluster_cidrs': [], 'pod_cidrs': []}
    assert result.result['ipv4']['payload'] == '' and result.result['ipv6']['payload'] == ''


def test_tampering_is_repaired_by_either_module_to_the_clean_table():
    read = tables('ipv4-tampered.json.txt')
    for engine, params, seen in ((nat_nft.MasqueradeEngine(), dict(MASQ_PARAMS, **IPV4_CIDRS), read),
                           (nat_nft.FipEngine(), dict(FIP_PARAMS, floating_ips=[{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.5'},
                                                                               {'external_ip': '198.51.100.11', 'internal_ip': '10.42.1.6'}]), (read, {}))):
        result = plan(engine, params, seen)
        assert result.result['changed'] is True
        assert result.result['ipv4']['payload'] == recorded('ipv4-full.nft')
        assert result.result['ipv4']['added'] in ({'cluster_cidrs': [], 'pod_cidrs': []}, [])
        assert sorted(result.before['ipv4'][:3]) == ['# drift: map fip-snat differs', '# drift: rule masq-postrouting differs',
                                                     '# drift: unexpected chain extra']


def test_fip_remap_and_exclusive_removal_keep_the_masquerade_and_flush_both():
    params = dict(FIP_PARAMS, floating_ips=[{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.7'}])
    result = plan(nat_nft.FipEngine(), params, (tables('ipv4-full.json.txt'), {}))
    state = result.result['ipv4']
    assert state['changed'] == [{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.7', 'previous_internal_ip': '10.42.1.5'}]
    assert state['removed'] == [{'external_ip': '198.51.100.11', 'internal_ip': '10.42.1.6'}] and state['added'] == []
    full = recorded('ipv4-full.nft')
    assert state['payload'] == full[:full.index('add chain ip clusternet fip-prerouting')].replace(
        '{ 198.51.100.10 : 10.42.1.5, 198.51.100.11 : 10.42.1.6 }', '{ 198.51.100.10 : 10.42.1.7 }').replace(
        '{ 10.42.1.5 : 198.51.100.10, 10.42.1.6 : 198.51.100.11 }', '{ 10.42.1.7 : 198.51.100.10 }') + nft_lines('ipv4-full.nft', 7)
    assert [step.label for step in result.steps] == ['ipv4 table', 'ipv4 conntrack flush']
    assert state['conntrack_flushed'] is None and len(result.preflight) == 1
    assert result.result['ipv6'] == {'added': [], 'changed': [], 'removed': [], 'conntrack_flushed': 0, 'payload': '', 'applied': False}


def test_fip_in_sync_writes_and_flushes_nothing():
    params = dict(FIP_PARAMS, floating_ips=[{'external_ip': '2001:db8:ff::11', 'internal_ip': 'fd00:10:244:1::6'},
                                            {'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10:244:1::5'}])
    result = plan(nat_nft.FipEngine(), params, (tables(ipv6='ipv6-fip-only.json.txt'), {}))
    assert result.result['changed'] is False and result.steps == [] and result.preflight == []


def test_plan_fips_without_exclusive_keeps_others_and_refuses_their_internal_ip():
    current = {A('198.51.100.10'): A('10.0.0.5'), A('198.51.100.11'): A('10.0.0.6')}
    delta = nat_nft.plan_fips(current, {A('198.51.100.12'): A('10.0.0.7')}, 'present', False)
    assert delta.final == {**current, A('198.51.100.12'): A('10.0.0.7')}
    assert delta.added == [{'external_ip': '198.51.100.12', 'internal_ip': '10.0.0.7'}] and delta.removed == [] and delta.flush == []
    with pytest.raises(ValueError, match='internal_ip 10.0.0.6 of floating IP 198.51.100.12 is already used by floating IP 198.51.100.11'):
        nat_nft.plan_fips(current, {A('198.51.100.12'): A('10.0.0.6')}, 'present', False)


def test_plan_fips_absent_removes_by_external_ip_alone():
    current = {A('198.51.100.10'): A('10.0.0.5'), A('198.51.100.11'): A('10.0.0.6')}
    delta = nat_nft.plan_fips(current, {A('198.51.100.10'): None, A('198.51.100.99'): None}, 'absent', True)
    assert delta.final == {A('198.51.100.11'): A('10.0.0.6')}
    assert delta.removed == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'}]
    assert delta.flush == [(A('198.51.100.10'), [A('10.0.0.5')])]


@pytest.mark.parametrize('engine,params', [(nat_nft.MasqueradeEngine(), MASQ_PARAMS), (nat_nft.FipEngine(), FIP_PARAMS)])
def test_purge_other_backend_is_refused_naming_it(engine, params):
    with pytest.raises(ValueError, match='purge_other_backend is not supported with backend nftables'):
        engine.validate(dict(params, purge_other_backend=True))


def test_bad_values_are_refused_by_each_modules_own_validation():
    with pytest.raises(ValueError, match="pod CIDR 10.9.0.0/24 is outside every ipv4 cluster CIDR"):
        nat_nft.MasqueradeEngine().validate(dict(MASQ_PARAMS, cluster_cidrs=['10.42.0.0/16'], pod_cidrs=['10.9.0.0/24']))
    with pytest.raises(ValueError, match='internal_ip 10.0.0.5 is listed twice'):
        nat_nft.FipEngine().validate(dict(FIP_PARAMS, floating_ips=[{'external_ip': '198.51.100.1', 'internal_ip': '10.0.0.5'},
                                                                    {'external_ip': '198.51.100.2', 'internal_ip': '10.0.0.5'}]))


class Host(object):
    """What nat_nft.Kernel asks of AnsibleModule: where nft is (here: nowhere)."""

    def get_bin_path(self, name):
        assert name == 'nft'
        return None


def test_a_host_without_nft_is_refused_naming_the_package():
    with pytest.raises(KernelError, match=r'nft is not installed: backend nftables needs the nftables package \(nft >= 1.0.1\)'):
        nat_nft.Kernel(Host()).preflight()
