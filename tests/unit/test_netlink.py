"""The netlink plumbing under the VIP engine: requests encoded, acks and dumps parsed."""

import ipaddress
import socket
import struct

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import netlink
from ansible_collections.clusternet.node.plugins.module_utils import vip as engine
from ansible_collections.clusternet.node.plugins.module_utils.families import IPV4, IPV6
from ansible_collections.clusternet.node.plugins.module_utils.netlink import ADDR_ADD, ADDR_DEL, ROUTE_DEL, ROUTE_REPLACE, Address, Route, Step

IF = 7
N4 = ipaddress.ip_address('192.168.1.10')
N6 = ipaddress.ip_address('2001:db8:1::10')
NODE = {IPV4: N4, IPV6: N6}
V4 = ipaddress.ip_address('10.96.0.1')
V6 = ipaddress.ip_address('fd00:10:96::1')


def ours(vip):
    return engine.vip_route(vip, IF, NODE[engine.family_of_version(vip.version)])


def kernel6_local(vip):
    return Route(IPV6, 255, 2, 2, 0, vip, 128, IF, None, 0)


# --- netlink messages ---------------------------------------------------------

def decode(data, msg_class):
    msg = msg_class(data)
    msg.decode()
    return msg


def test_encode_route_steps():
    rtmsg = pytest.importorskip('pyroute2.netlink.rtnl.rtmsg').rtmsg
    msg = decode(netlink.encode_step(Step(ROUTE_DEL, kernel6_local(V6)), 7), rtmsg)
    assert (msg['header']['type'], msg['header']['flags'], msg['header']['sequence_number']) == (25, 0x5, 7)
    assert (msg['family'], msg['dst_len'], msg['table'], msg['type'], msg['proto'], msg['scope']) == (socket.AF_INET6, 128, 255, 2, 2, 0)
    # No metric and no source: the kernel then deletes the lowest-metric route, the kernel's 0.
    assert msg.get_attr('RTA_PRIORITY') is None and msg.get_attr('RTA_PREFSRC') is None
    assert (msg.get_attr('RTA_DST'), msg.get_attr('RTA_OIF'), msg.get_attr('RTA_TABLE')) == ('fd00:10:96::1', IF, 255)
    msg = decode(netlink.encode_step(Step(ROUTE_REPLACE, ours(V4)), 1), rtmsg)
    assert msg['header']['flags'] == 0x1 | 0x4 | 0x100 | 0x400  # request, ack, replace, create
    assert (msg['scope'], msg.get_attr('RTA_PREFSRC'), msg.get_attr('RTA_PRIORITY')) == (254, '192.168.1.10', None)
    assert decode(netlink.encode_step(Step(ROUTE_REPLACE, ours(V6)), 1), rtmsg).get_attr('RTA_PRIORITY') == 1024
    msg = decode(netlink.encode_step(Step(ROUTE_DEL, Route(IPV4, 1000, 1, 4, 0, V4, 32, IF, None, 0)), 1), rtmsg)
    assert (msg['table'], msg.get_attr('RTA_TABLE')) == (252, 1000)


def test_encode_address_steps():
    ifaddrmsg = pytest.importorskip('pyroute2.netlink.rtnl.ifaddrmsg').ifaddrmsg
    msg = decode(netlink.encode_step(Step(ADDR_ADD, Address(IPV6, V6, 128, IF)), 3), ifaddrmsg)
    assert (msg['header']['type'], msg['header']['flags']) == (20, 0x1 | 0x4 | 0x200 | 0x400)  # request, ack, excl, create
    assert (msg['family'], msg['prefixlen'], msg['index'], msg.get_attr('IFA_ADDRESS')) == (socket.AF_INET6, 128, IF, 'fd00:10:96::1')
    assert msg.get_attr('IFA_FLAGS') == 0x202  # nodad, noprefixroute
    msg = decode(netlink.encode_step(Step(ADDR_DEL, Address(IPV4, V4, 32, IF)), 4), ifaddrmsg)
    assert (msg['header']['type'], msg.get_attr('IFA_LOCAL'), msg.get_attr('IFA_FLAGS')) == (21, '10.96.0.1', None)


def test_parse_acks():
    ack = netlink.NLMSG_ERROR_HEADER.pack(36, 2, 0, 5, 0, 0) + bytes(16)
    nack = netlink.NLMSG_ERROR_HEADER.pack(36, 2, 0, 6, 0, -3) + bytes(16)
    other = netlink.NLMSG_ERROR_HEADER.pack(20, 3, 0, 6, 0, 0)  # NLMSG_DONE
    assert netlink.parse_acks(ack + nack + other) == [(5, 0), (6, 3)]


def test_messages_to_tuples():
    rtmsg = pytest.importorskip('pyroute2.netlink.rtnl.rtmsg').rtmsg
    ifaddrmsg = pytest.importorskip('pyroute2.netlink.rtnl.ifaddrmsg').ifaddrmsg
    msg = rtmsg()
    msg.update(family=socket.AF_INET6, dst_len=128, table=255, type=2, proto=2, scope=0)
    msg['attrs'] = [('RTA_TABLE', 255), ('RTA_DST', 'fd00:10:96::1'), ('RTA_OIF', IF), ('RTA_PREFSRC', '2001:db8:1::10'), ('RTA_PRIORITY', 1024)]
    assert netlink.route_from_msg(msg) == ours(V6)._replace(scope=0)
    msg['dst_len'] = 64
    assert netlink.route_from_msg(msg) is None
    addr = ifaddrmsg()
    addr.update(family=socket.AF_INET, prefixlen=32, index=IF)
    addr['attrs'] = [('IFA_ADDRESS', '10.96.0.1'), ('IFA_LOCAL', '10.96.0.1')]
    assert netlink.address_from_msg(addr) == Address(IPV4, V4, 32, IF)


def test_parse_acks_keeps_the_kernels_error_text():
    text = b'ipv6: IPv6 is disabled on this device\0'
    tlv = struct.pack('=HH', 4 + len(text), 1) + text + bytes(-len(text) % 4)
    capped = netlink.NLMSG_ERROR_HEADER.pack(36 + len(tlv), 2, 0x300, 9, 0, -13) + bytes(16) + tlv
    uncapped = netlink.NLMSG_ERROR_HEADER.pack(36, 2, 0x200, 10, 0, -13) + bytes(16)
    texts = {}
    assert netlink.parse_acks(capped + uncapped, texts) == [(9, 13), (10, 13)]
    assert texts == {9: 'ipv6: IPv6 is disabled on this device'}


def test_link_from_msg_reads_alias_and_loopback():
    ifinfmsg = pytest.importorskip('pyroute2.netlink.rtnl.ifinfmsg').ifinfmsg
    msg = ifinfmsg()
    msg.update(index=1, flags=0x9)
    msg['attrs'] = [('IFLA_IFNAME', 'lo')]
    assert netlink.link_from_msg(msg) == netlink.Link(1, 'lo', None, True, None, True)
    msg.update(index=7, flags=0x1002)
    msg['attrs'] = [('IFLA_IFNAME', 'kube-dummy-if'), ('IFLA_IFALIAS', 'clusternet.node')]
    assert netlink.link_from_msg(msg) == netlink.Link(7, 'kube-dummy-if', None, False, 'clusternet.node', False)
