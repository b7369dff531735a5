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
