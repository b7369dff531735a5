"""Pure parts of the VIP engine: validation, planning, rendering, message parsing."""

import ipaddress
import socket

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import netlink
from ansible_collections.clusternet.node.plugins.module_utils.netlink import (
    ADDR_ADD,
    ADDR_DEL,
    IPV4,
    IPV6,
    ROUTE_DEL,
    ROUTE_REPLACE,
    Address,
    Link,
    Route,
    Step,
    plan_link,
    plan_vips,
    render_route,
)

IF = 7
OTHER = 2
NAMES = {IF: 'kube-dummy-if', OTHER: 'eth0'}
N4 = ipaddress.ip_address('192.168.1.10')
N6 = ipaddress.ip_address('2001:db8:1::10')
NODE = {IPV4: N4, IPV6: N6}
V4 = ipaddress.ip_address('10.96.0.1')
V4B = ipaddress.ip_address('10.96.0.2')
V6 = ipaddress.ip_address('fd00:10:96::1')
V6B = ipaddress.ip_address('fd00:10:96::2')
LL = ipaddress.ip_address('fe80::1')
NODE_ADDRS = [Address(IPV4, N4, 24, OTHER), Address(IPV6, N6, 64, OTHER)]


def params(**kw):
    base = dict(interface='kube-dummy-if', addresses=[], node_ips=['192.168.1.10', '2001:db8:1::10'], state='present')
    base.update(kw)
    return base


def ours(vip):
    return netlink.vip_route(vip, IF, NODE[netlink.family_of_version(vip.version)])


def kernel4(vip):
    return Route(IPV4, 255, 2, 2, 254, vip, 32, IF, vip, 0)


def kernel6_local(vip):
    return Route(IPV6, 255, 2, 2, 0, vip, 128, IF, None, 0)


def kernel6_main(vip):
    return Route(IPV6, 254, 1, 2, 0, vip, 128, IF, None, 256)


def plan(addresses, routes, vips, exclusive=True, state='present', delete_interface=False):
    return plan_vips(IF, NODE_ADDRS + addresses, routes, vips, NODE, exclusive, state, delete_interface)


# --- validation ---------------------------------------------------------------

def test_validate_accepts_bare_and_host_prefixes_and_drops_duplicates():
    vips, node_ips = netlink.validate(params(addresses=['10.96.0.1', '10.96.0.1/32', 'fd00:10:96::1/128', 'FD00:10:96::1']))
    assert vips == [V4, V6]
    assert node_ips == NODE


@pytest.mark.parametrize('kw, message', [
    (dict(addresses=['10.96.0.300']), "invalid VIP address '10.96.0.300'"),
    (dict(addresses=['10.96.0.0/24']), "invalid VIP address '10.96.0.0/24'"),
    (dict(addresses=['fd00::1'], node_ips=['192.168.1.10']), 'VIP fd00::1 is ipv6 but node_ips has no ipv6 address'),
    (dict(node_ips=['192.168.1.10', '192.168.1.11']), 'more than one node IP of family ipv4: 192.168.1.10 and 192.168.1.11'),
    (dict(node_ips=['nonsense']), "invalid node IP 'nonsense'"),
    (dict(addresses=['192.168.1.10']), 'VIP 192.168.1.10 is also a node IP'),
    (dict(interface='a-name-too-long-x'), "invalid interface name 'a-name-too-long-x'"),
    (dict(interface='a b'), "invalid interface name 'a b'"),
])
def test_validate_names_the_offending_value(kw, message):
    with pytest.raises(ValueError) as exc:
        netlink.validate(params(**kw))
    assert message in str(exc.value)


def test_validate_absent_needs_no_node_ips():
    vips, node_ips = netlink.validate(params(addresses=['fd00::1'], node_ips=[], state='absent'))
    assert vips == [ipaddress.ip_address('fd00::1')] and node_ips == {}


def test_node_ip_must_be_local_outside_the_vip_interface():
    netlink.check_node_ips(NODE, NODE_ADDRS, IF, 'kube-dummy-if')
    with pytest.raises(ValueError, match='node IP 192.168.1.10 is not a local address of this host'):
        netlink.check_node_ips(NODE, NODE_ADDRS[1:], IF, 'kube-dummy-if')
    with pytest.raises(ValueError, match=r'node IP 2001:db8:1::10 is not a local address of this host \(outside kube-dummy-if\)'):
        netlink.check_node_ips(NODE, [NODE_ADDRS[0], Address(IPV6, N6, 128, IF)], IF, 'kube-dummy-if')


# --- link ---------------------------------------------------------------------

def test_plan_link():
    up, down = Link(IF, 'x', 'dummy', True), Link(IF, 'x', 'dummy', False)
    assert plan_link(None, 'present', False) == ['create', 'up']
    assert plan_link(down, 'present', False) == ['up']
    assert plan_link(up, 'present', False) == []
    assert plan_link(up, 'absent', False) == []
    assert plan_link(up, 'absent', True) == ['delete']
    assert plan_link(None, 'absent', True) == []


# --- VIP planning -------------------------------------------------------------

def test_new_vips_on_an_empty_interface():
    steps, changes = plan([], [], [V4, V6])
    assert steps == [
        Step(ADDR_ADD, Address(IPV4, V4, 32, IF)),
        Step(ROUTE_REPLACE, ours(V4)),  # replaces the kernel's route in place
        Step(ADDR_ADD, Address(IPV6, V6, 128, IF)),
        Step(ROUTE_REPLACE, ours(V6)),  # metric 1024: added next to the kernel's metric 0, which comes later
    ]
    assert changes[IPV4] == {'added': [Address(IPV4, V4, 32, IF)], 'removed': [], 'routes_added': [ours(V4)], 'routes_removed': []}
    assert changes[IPV6]['routes_removed'] == []


def test_in_sync_plans_nothing():
    addresses = [Address(IPV4, V4, 32, IF), Address(IPV6, V6, 128, IF), Address(IPV6, LL, 64, IF)]
    routes = [ours(V4), ours(V6), Route(IPV6, 255, 2, 2, 0, LL, 128, IF, None, 0)]
    assert plan(addresses, routes, [V4, V6]) == ([], plan([], [], [])[1])


def test_kernel_routes_of_an_existing_ipv6_vip_are_deleted_after_ours_is_added():
    addresses = [Address(IPV6, V6, 128, IF)]
    routes = [kernel6_main(V6), kernel6_local(V6)]
    steps, changes = plan(addresses, routes, [V6])
    assert steps == [Step(ROUTE_REPLACE, ours(V6)), Step(ROUTE_DEL, kernel6_main(V6)), Step(ROUTE_DEL, kernel6_local(V6))]
    assert changes[IPV6]['routes_removed'] == [kernel6_main(V6), kernel6_local(V6)]
    assert changes[IPV6]['added'] == []


def test_ipv6_routes_to_the_vip_elsewhere_are_deleted_too():
    stray = Route(IPV6, 100, 1, 4, 0, V6, 128, OTHER, None, 1024)
    steps = plan([Address(IPV6, V6, 128, IF)], [ours(V6), stray], [V6])[0]
    assert steps == [Step(ROUTE_DEL, stray)]


def test_ipv4_kernel_route_is_replaced_in_place_and_reported():
    steps, changes = plan([Address(IPV4, V4, 32, IF)], [kernel4(V4)], [V4])
    assert steps == [Step(ROUTE_REPLACE, ours(V4))]
    assert changes[IPV4]['routes_removed'] == [kernel4(V4)]
    assert changes[IPV4]['routes_added'] == [ours(V4)]


def test_ipv4_routes_elsewhere_are_left_alone():
    elsewhere = Route(IPV4, 254, 1, 4, 0, V4, 32, OTHER, None, 0)
    steps = plan([Address(IPV4, V4, 32, IF)], [ours(V4), elsewhere], [V4])[0]
    assert steps == []


def test_route_with_the_wrong_source_is_replaced():
    wrong = ours(V6)._replace(prefsrc=ipaddress.ip_address('2001:db8:1::99'))
    steps, changes = plan([Address(IPV6, V6, 128, IF)], [wrong], [V6])
    assert steps == [Step(ROUTE_REPLACE, ours(V6))]
    assert changes[IPV6]['routes_removed'] == [wrong]


def test_new_address_with_our_route_left_over_deletes_the_kernels_new_route():
    steps = plan([], [ours(V4)], [V4])[0]
    assert steps == [Step(ADDR_ADD, Address(IPV4, V4, 32, IF)), Step(ROUTE_DEL, kernel4(V4))]


def test_exclusive_removes_unlisted_addresses_with_their_routes_but_not_link_local():
    addresses = [Address(IPV4, V4, 32, IF), Address(IPV4, V4B, 32, IF), Address(IPV6, V6B, 128, IF), Address(IPV6, LL, 64, IF)]
    routes = [ours(V4), ours(V4B), ours(V6B), kernel6_local(V6B), Route(IPV6, 255, 2, 2, 0, LL, 128, IF, None, 0)]
    steps, changes = plan(addresses, routes, [V4])
    assert steps == [
        Step(ROUTE_DEL, ours(V4B)), Step(ADDR_DEL, Address(IPV4, V4B, 32, IF)),
        Step(ROUTE_DEL, ours(V6B)), Step(ROUTE_DEL, kernel6_local(V6B)), Step(ADDR_DEL, Address(IPV6, V6B, 128, IF)),
    ]
    assert changes[IPV6]['removed'] == [Address(IPV6, V6B, 128, IF)]


def test_not_exclusive_keeps_unlisted_addresses():
    steps = plan([Address(IPV4, V4B, 32, IF)], [ours(V4B)], [V4], exclusive=False)[0]
    assert steps == [Step(ADDR_ADD, Address(IPV4, V4, 32, IF)), Step(ROUTE_REPLACE, ours(V4))]


def test_vip_with_another_prefix_length_is_readded_as_host_address():
    wide = Address(IPV4, V4, 24, IF)
    steps = plan([wide], [kernel4(V4)], [V4], exclusive=False)[0]
    assert steps == [Step(ROUTE_DEL, kernel4(V4)), Step(ADDR_DEL, wide),
                     Step(ADDR_ADD, Address(IPV4, V4, 32, IF)), Step(ROUTE_REPLACE, ours(V4))]


def test_absent_removes_listed_or_all():
    addresses = [Address(IPV4, V4, 32, IF), Address(IPV4, V4B, 32, IF), Address(IPV6, LL, 64, IF)]
    routes = [ours(V4), ours(V4B)]
    steps = plan(addresses, routes, [V4], exclusive=False, state='absent')[0]
    assert steps == [Step(ROUTE_DEL, ours(V4)), Step(ADDR_DEL, Address(IPV4, V4, 32, IF))]
    steps, changes = plan(addresses, routes, [], exclusive=True, state='absent')
    assert [s.item.ip for s in steps if s.action == ADDR_DEL] == [V4, V4B]
    steps, changes = plan(addresses, routes, [], exclusive=False, state='absent', delete_interface=True)
    assert steps == []  # deleting the link takes everything with it
    assert [a.ip for a in changes[IPV4]['removed']] == [V4, V4B]
    assert changes[IPV4]['routes_removed'] == [ours(V4), ours(V4B)]


def test_awaited_kernel_routes():
    added = [Address(IPV6, V6, 128, IF), Address(IPV4, V4, 32, IF)]
    # New IPv6 addresses: always, even if a route to the VIP was in the dump before the add.
    assert netlink.awaited_routes([V4, V6, V6B], added, [kernel6_local(V6)], IF, False) == {V6}
    # After link up: also kept VIPs whose kernel route the dump does not show yet.
    assert netlink.awaited_routes([V4, V6, V6B], added, [], IF, True) == {V6, V6B}
    assert netlink.awaited_routes([V4, V6, V6B], [], [kernel6_local(V6B), ours(V6)], IF, True) == {V6}


def test_missing_interface_plans_from_nothing():
    steps = plan_vips(None, NODE_ADDRS, [], [V4], NODE, True, 'present')[0]
    assert steps == [Step(ADDR_ADD, Address(IPV4, V4, 32, None)), Step(ROUTE_REPLACE, netlink.vip_route(V4, None, N4))]


# --- rendering ----------------------------------------------------------------

def test_render_route_matches_ip_route():
    assert render_route(ours(V4), NAMES) == 'local 10.96.0.1 dev kube-dummy-if table local proto kernel scope host src 192.168.1.10'
    assert render_route(ours(V6), NAMES) == 'local fd00:10:96::1 dev kube-dummy-if table local proto kernel src 2001:db8:1::10 metric 1024'
    assert render_route(kernel6_main(V6), NAMES) == 'fd00:10:96::1 dev kube-dummy-if proto kernel metric 256'
    assert render_route(kernel6_local(V6), NAMES) == 'local fd00:10:96::1 dev kube-dummy-if table local proto kernel metric 0'
    assert render_route(Route(IPV6, 100, 6, 99, 0, V6, 64, 9, None, 5), NAMES) == 'blackhole fd00:10:96::1/64 dev 9 table 100 proto 99 metric 5'


def test_summarize_and_diff_text():
    changes = plan([Address(IPV6, V6, 128, IF)], [kernel6_main(V6), kernel6_local(V6)], [V6, V6B])[1]
    out = netlink.summarize(changes, NAMES)
    assert out[IPV6] == {
        'added': ['fd00:10:96::2'],
        'removed': [],
        'routes_added': ['local fd00:10:96::1 dev kube-dummy-if table local proto kernel src 2001:db8:1::10 metric 1024',
                         'local fd00:10:96::2 dev kube-dummy-if table local proto kernel src 2001:db8:1::10 metric 1024'],
        'routes_removed': ['fd00:10:96::1 dev kube-dummy-if proto kernel metric 256',
                           'local fd00:10:96::1 dev kube-dummy-if table local proto kernel metric 0'],
    }
    assert out[IPV4] == {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}
    text = netlink.render_state('interface kube-dummy-if dummy up', [Address(IPV6, V6, 128, IF), Address(IPV4, V4, 32, IF)],
                                [ours(V4), kernel6_local(V6), kernel6_main(V6)], NAMES)
    assert text == ('interface kube-dummy-if dummy up\n'
                    'address 10.96.0.1/32\n'
                    '  route local 10.96.0.1 dev kube-dummy-if table local proto kernel scope host src 192.168.1.10\n'
                    'address fd00:10:96::1/128\n'
                    '  route fd00:10:96::1 dev kube-dummy-if proto kernel metric 256\n'
                    '  route local fd00:10:96::1 dev kube-dummy-if table local proto kernel metric 0\n')


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
