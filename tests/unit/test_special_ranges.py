"""families.SPECIAL_RANGES: every row's boundary addresses, and the addresses just outside
them, on exact values written out by hand (not derived from the table under test)."""

import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import families as fam
from ansible_collections.clusternet.node.plugins.module_utils import fip, masquerade, vip

UNSPEC4 = 'it is in 0.0.0.0/8 (unspecified, "this network")'
LOOP, LINK, MCAST = 'it is a loopback address', 'it is a link-local address', 'it is a multicast address'
RESERVED = 'it is in 240.0.0.0/4 (reserved, broadcast)'
MAPPED = 'it is IPv4-mapped; write the IPv4 address instead'

# network -> (refused label or None, [(address, reason or None)]): first, last, and a neighbour outside.
ROWS = {
    '0.0.0.0/8': ('unspecified, "this network"', [('0.0.0.1', UNSPEC4), ('0.255.255.255', UNSPEC4), ('1.0.0.0', None)]),
    '0.0.0.0/32': ('unspecified', [('0.0.0.0', 'it is an unspecified address')]),
    '10.0.0.0/8': (None, [('10.0.0.0', None), ('10.255.255.255', None)]),
    '100.64.0.0/10': (None, [('100.64.0.0', None), ('100.127.255.255', None)]),
    '127.0.0.0/8': ('loopback', [('126.255.255.255', None), ('127.0.0.0', LOOP), ('127.255.255.255', LOOP), ('128.0.0.0', None)]),
    '169.254.0.0/16': ('link-local', [('169.253.255.255', None), ('169.254.0.0', LINK), ('169.254.255.255', LINK), ('169.255.0.0', None)]),
    '172.16.0.0/12': (None, [('172.16.0.0', None), ('172.31.255.255', None)]),
    '192.0.0.0/24': (None, [('192.0.0.0', None), ('192.0.0.8', None), ('192.0.0.255', None)]),
    '192.0.2.0/24': (None, [('192.0.2.0', None), ('192.0.2.255', None)]),
    '192.31.196.0/24': (None, [('192.31.196.0', None), ('192.31.196.255', None)]),
    '192.52.193.0/24': (None, [('192.52.193.0', None), ('192.52.193.255', None)]),
    '192.88.99.0/24': (None, [('192.88.99.0', None), ('192.88.99.255', None)]),
    '192.168.0.0/16': (None, [('192.168.0.0', None), ('192.168.255.255', None)]),
    '192.175.48.0/24': (None, [('192.175.48.0', None), ('192.175.48.255', None)]),
    '198.18.0.0/15': (None, [('198.18.0.0', None), ('198.19.255.255', None)]),
    '198.51.100.0/24': (None, [('198.51.100.0', None), ('198.51.100.255', None)]),
    '203.0.113.0/24': (None, [('203.0.113.0', None), ('203.0.113.255', None)]),
    '224.0.0.0/4': ('multicast', [('223.255.255.255', None), ('224.0.0.0', MCAST), ('239.255.255.255', MCAST)]),
    '240.0.0.0/4': ('reserved, broadcast', [('240.0.0.0', RESERVED), ('255.255.255.254', RESERVED), ('255.255.255.255', RESERVED)]),
    '::/128': ('unspecified', [('::', 'it is an unspecified address')]),
    '::1/128': ('loopback', [('::1', LOOP), ('::2', None)]),
    '::ffff:0:0/96': ('IPv4-mapped', [('::fffe:ffff:ffff', None), ('::ffff:0.0.0.0', MAPPED), ('::ffff:255.255.255.255', MAPPED),
                                      ('::1:0:0:0', None)]),
    '64:ff9b::/96': (None, [('64:ff9b::', None), ('64:ff9b::ffff:ffff', None)]),
    '64:ff9b:1::/48': (None, [('64:ff9b:1::', None), ('64:ff9b:1:ffff:ffff:ffff:ffff:ffff', None)]),
    '100::/64': ('discard-only', [('ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', None), ('100::', 'it is in 100::/64 (discard-only)'),
                                  ('100::ffff:ffff:ffff:ffff', 'it is in 100::/64 (discard-only)')]),
    '100:0:0:1::/64': ('dummy IPv6 prefix', [('100:0:0:1::', 'it is in 100:0:0:1::/64 (dummy IPv6 prefix)'),
                                             ('100::1:ffff:ffff:ffff:ffff', 'it is in 100:0:0:1::/64 (dummy IPv6 prefix)'),
                                             ('100:0:0:2::', None)]),
    '2001::/23': (None, [('2001::', None), ('2001:1::1', None), ('2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', None)]),
    '2001:db8::/32': (None, [('2001:db8::', None), ('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', None)]),
    '2002::/16': (None, [('2002::', None), ('2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff', None)]),
    '2620:4f:8000::/48': (None, [('2620:4f:8000::', None), ('2620:4f:8000:ffff:ffff:ffff:ffff:ffff', None)]),
    '3fff::/20': (None, [('3fff::', None), ('3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', None)]),
    '5f00::/16': (None, [('5f00::', None), ('5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff', None)]),
    'fc00::/7': (None, [('fc00::', None), ('fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', None)]),
    'fe80::/10': ('link-local', [('fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', None), ('fe80::', LINK),
                                 ('febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', LINK), ('fec0::', None)]),
    'ff00::/8': ('multicast', [('feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', None), ('ff00::', MCAST),
                               ('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', MCAST)]),
}
ADDRESSES = [case for row in ROWS.values() for case in row[1]]


def test_every_row_of_the_table_is_tested_and_says_why():
    assert sorted(str(row.network) for row in fam.SPECIAL_RANGES) == sorted(ROWS)
    for row in fam.SPECIAL_RANGES:
        assert row.refused == (ROWS[str(row.network)][0] is not None) and row.why


@pytest.mark.parametrize('address, reason', ADDRESSES)
def test_boundary_addresses_are_refused_or_accepted_exactly(address, reason):
    if reason is None:
        assert fam.parse_unicast(address, 'VIP address') == ipaddress.ip_address(address)
        return
    with pytest.raises(ValueError) as exc:
        fam.parse_unicast(address, 'VIP address')
    assert str(exc.value) == 'invalid VIP address %r: %s, not a unicast host address' % (address, reason)


@pytest.mark.parametrize('network', sorted(ROWS))
def test_a_network_overlapping_a_refused_row_is_refused_naming_the_first_row_it_overlaps(network):
    label = ROWS[network][0]
    expected = None if label is None else 'it overlaps %s (%s)' % (network, label)
    if network == '0.0.0.0/32':  # inside 0.0.0.0/8, which the message names
        expected = 'it overlaps 0.0.0.0/8 (unspecified, "this network")'
    assert fam.special_network(ipaddress.ip_network(network)) == expected


@pytest.mark.parametrize('network, reason', [
    ('0.0.0.0/7', 'it overlaps 0.0.0.0/8 (unspecified, "this network")'),
    ('1.0.0.0/8', None),
    ('100.64.0.0/10', None),
    ('255.255.255.255/32', 'it overlaps 240.0.0.0/4 (reserved, broadcast)'),
    ('100::/63', 'it overlaps 100::/64 (discard-only)'),
    ('fec0::/10', None),
])
def test_networks_around_the_rows(network, reason):
    assert fam.special_network(ipaddress.ip_network(network)) == reason


def test_every_module_takes_the_same_table():
    """0.1.2.3 is in 0.0.0.0/8: it used to pass everywhere but the filter's CIDR check."""
    message = "'0.1.2.3': %s, not a unicast host address" % UNSPEC4
    with pytest.raises(ValueError) as exc:
        vip.validate(dict(addresses=['0.1.2.3'], node_ips=[], state='absent', interface='kube-dummy-if'))
    assert str(exc.value) == 'invalid VIP address ' + message
    for item in ({'external_ip': '0.1.2.3', 'internal_ip': '10.42.1.5'}, {'external_ip': '198.51.100.10', 'internal_ip': '0.1.2.3'}):
        with pytest.raises(ValueError) as exc:
            fip.validate([item], 'present', 'D', 'S')
        assert str(exc.value).endswith(message)
    with pytest.raises(ValueError) as exc:
        masquerade.parse_networks(['0.1.2.0/24'], 'cluster CIDR')
    assert str(exc.value) == "invalid cluster CIDR '0.1.2.0/24': it overlaps 0.0.0.0/8 (unspecified, \"this network\"), not a pod or cluster network"
    # CGNAT pod networks are real.
    assert masquerade.parse_networks(['100.64.0.0/10'], 'cluster CIDR')['ipv4'] == [ipaddress.ip_network('100.64.0.0/10')]
