import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import families as fam


def test_parse_address_accepts_bare_and_host_prefix():
    assert fam.parse_address('10.0.0.1') == ipaddress.ip_address('10.0.0.1')
    assert fam.parse_address('2001:db8::1/128') == ipaddress.ip_address('2001:db8::1')


@pytest.mark.parametrize('bad', ['10.0.0.256', '10.0.0.1/24', 'fe80::zz', '', 'web'])
def test_parse_address_error_names_value(bad):
    with pytest.raises(ValueError) as err:
        fam.parse_address(bad, what='VIP')
    assert repr(bad) in str(err.value) and 'VIP' in str(err.value)


def test_parse_network_strict_host_bits():
    assert str(fam.parse_network('10.42.0.0/16')) == '10.42.0.0/16'
    with pytest.raises(ValueError, match="'10.42.0.1/16'"):
        fam.parse_network('10.42.0.1/16')


def test_split_by_family_keeps_order():
    values = [ipaddress.ip_address(v) for v in ('2001:db8::2', '10.0.0.2', '10.0.0.1', '2001:db8::1')]
    out = fam.split_by_family(values)
    assert [str(v) for v in out['ipv4']] == ['10.0.0.2', '10.0.0.1']
    assert [str(v) for v in out['ipv6']] == ['2001:db8::2', '2001:db8::1']


def test_one_per_family_rejects_two_of_a_family():
    ips = [ipaddress.ip_address(v) for v in ('10.0.0.1', 'fd00::1')]
    assert fam.one_per_family(ips, 'node IP') == {'ipv4': ips[0], 'ipv6': ips[1]}
    with pytest.raises(ValueError, match='10.0.0.1 and 10.0.0.2'):
        fam.one_per_family([ips[0], ipaddress.ip_address('10.0.0.2')], 'node IP')


def test_find_duplicate():
    assert fam.find_duplicate(['a', 'b', 'a']) == 'a'
    assert fam.find_duplicate(['a', 'b']) is None


@pytest.mark.parametrize('value, reason', [
    ('fd00::9%eth0', 'zone id'),
    ('::ffff:10.0.0.1', 'IPv4-mapped'),
    ('0.0.0.0', 'unspecified'),
    ('::', 'unspecified'),
    ('127.0.0.5', 'loopback'),
    ('::1', 'loopback'),
    ('224.0.0.1', 'multicast'),
    ('ff02::1', 'multicast'),
    ('169.254.1.1', 'link-local'),
    ('fe80::1', 'link-local'),
    ('255.255.255.255', 'broadcast'),
    ('240.0.0.1', 'reserved'),
])
def test_parse_unicast_refuses_special_purpose_naming_value_and_reason(value, reason):
    with pytest.raises(ValueError) as exc:
        fam.parse_unicast(value, 'VIP address')
    assert repr(value) in str(exc.value) and reason in str(exc.value)


@pytest.mark.parametrize('value', ['10.42.1.5', '192.0.2.80', '2001:db8:43::10', 'fd00:50::11', '100.64.0.1'])
def test_parse_unicast_accepts_host_addresses(value):
    assert str(fam.parse_unicast(value)) == value
