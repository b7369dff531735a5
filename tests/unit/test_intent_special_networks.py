"""families.special_network: the networks no cluster, service or pod CIDR may overlap."""

import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils.families import special_network


@pytest.mark.parametrize('network, reason', [
    ('0.0.0.0/0', 'it overlaps 0.0.0.0/8 (unspecified, "this network")'),
    ('::/0', 'it overlaps ::/128 (unspecified)'),
    ('127.0.0.0/16', 'it overlaps 127.0.0.0/8 (loopback)'),
    ('126.0.0.0/7', 'it overlaps 127.0.0.0/8 (loopback)'),
    ('169.254.0.0/24', 'it overlaps 169.254.0.0/16 (link-local)'),
    ('224.0.0.0/24', 'it overlaps 224.0.0.0/4 (multicast)'),
    ('240.0.0.0/8', 'it overlaps 240.0.0.0/4 (reserved, broadcast)'),
    ('::1/128', 'it overlaps ::1/128 (loopback)'),
    ('::ffff:10.42.0.0/112', 'it overlaps ::ffff:0:0/96 (IPv4-mapped)'),
    ('fe80::/64', 'it overlaps fe80::/10 (link-local)'),
    ('ff00::/12', 'it overlaps ff00::/8 (multicast)'),
])
def test_special_network_names_the_range_it_overlaps(network, reason):
    assert special_network(ipaddress.ip_network(network)) == reason


@pytest.mark.parametrize('network', ['10.42.0.0/16', '100.64.0.0/10', '2001:db8:42::/56', 'fd00::/8', '192.0.0.0/3'])
def test_special_network_accepts_ordinary_networks(network):
    assert special_network(ipaddress.ip_network(network)) is None
