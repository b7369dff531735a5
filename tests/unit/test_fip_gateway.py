"""fip_gateway: a FIP's external IP is none of its gateway's own addresses, and its
internal IP is not its external IP. Pure: `ip -j address show` output recorded below."""

import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import fip_gateway
from ansible_collections.clusternet.node.plugins.module_utils.fip import validate

ip = ipaddress.ip_address
# `ip -j address show` in a namespace with lo, and eth0 holding 192.168.50.13/24 and fd00:50::13/64 (trimmed).
IP_JSON = '''[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"addr_info":[
 {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"},
 {"family":"inet6","local":"::1","prefixlen":128,"scope":"host"}]},
 {"ifindex":2,"link_index":3,"ifname":"eth0","flags":["BROADCAST","UP"],"addr_info":[
 {"family":"inet","local":"192.168.50.13","prefixlen":24,"broadcast":"192.168.50.255","scope":"global","label":"eth0"},
 {"family":"inet6","local":"fd00:50::13","prefixlen":64,"scope":"global"},
 {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]},
 {"ifindex":4,"ifname":"eth1","flags":["BROADCAST"],"addr_info":[]}]'''


def wanted(*pairs, state='present'):
    return validate([{'external_ip': e, 'internal_ip': i} for e, i in pairs], state, 'CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT')


def test_held_addresses_parses_every_address_with_its_interfaces():
    assert fip_gateway.held_addresses(IP_JSON) == {
        ip('127.0.0.1'): ['lo'], ip('::1'): ['lo'], ip('192.168.50.13'): ['eth0'], ip('fd00:50::13'): ['eth0'], ip('fe80::1'): ['eth0']}


@pytest.mark.parametrize('pairs, message', [
    ([('198.51.100.10', '10.42.1.5'), ('192.168.50.13', '10.42.1.6')],
     "floating IP 192.168.50.13 is already an address of eth0 on this gateway: its DNAT would take the host's own traffic to it"),
    ([('fd00:50::13', 'fd00:42::5')],
     "floating IP fd00:50::13 is already an address of eth0 on this gateway: its DNAT would take the host's own traffic to it"),
    ([('198.51.100.10', '198.51.100.10')], 'floating IP 198.51.100.10: internal_ip is the external IP itself'),
    ([('2001:db8::10', '2001:db8::10')], 'floating IP 2001:db8::10: internal_ip is the external IP itself'),
])
def test_refused_naming_the_fip(pairs, message):
    with pytest.raises(ValueError) as exc:
        fip_gateway.check(wanted(*pairs), fip_gateway.held_addresses(IP_JSON))
    assert str(exc.value) == message


def test_other_addresses_pass():
    fip_gateway.check(wanted(('198.51.100.10', '10.42.1.5'), ('2001:db8::10', 'fd00:42::5')), fip_gateway.held_addresses(IP_JSON))
    fip_gateway.check(wanted(('192.168.50.13', None), state='absent'), {})  # removal: found by external IP alone
