"""Pure parts of the VIP engine: validation, planning, rendering."""

import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import vip as engine
from ansible_collections.clusternet.node.plugins.module_utils.families import IPV4, IPV6
from ansible_collections.clusternet.node.plugins.module_utils.netlink import (
    ADDR_ADD,
    ADDR_DEL,
    ROUTE_DEL,
    ROUTE_REPLACE,
    Address,
    Link,
    Route,
    Step,
)
from ansible_collections.clusternet.node.plugins.module_utils.vip import MARKER, plan_link, plan_vips, render_route, render_step, waves

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
    return engine.vip_route(vip, IF, NODE[engine.family_of_version(vip.version)])


def kernel4(vip):
    return Route(IPV4, 255, 2, 2, 254, vip, 32, IF, vip, 0)


def kernel6_local(vip):
    return Route(IPV6, 255, 2, 2, 0, vip, 128, IF, None, 0)


def kernel6_main(vip):
    return Route(IPV6, 254, 1, 2, 0, vip, 128, IF, None, 256)


def plan(addresses, routes, vips, exclusive=True, state='present', delete_interface=False):
    """Plan from every route read, as the module does: ownership first."""
    return plan_vips(IF, NODE_ADDRS + addresses, engine.own_routes(routes, IF).ours, vips, NODE, exclusive, state, delete_interface)


def foreign(routes, index=IF):
    return engine.by_destination(engine.own_routes(routes, index).foreign)


# --- validation ---------------------------------------------------------------

def test_validate_accepts_bare_and_host_prefixes_and_drops_duplicates():
    vips, node_ips = engine.validate(params(addresses=['10.96.0.1', '10.96.0.1/32', 'fd00:10:96::1/128', 'FD00:10:96::1']))
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
        engine.validate(params(**kw))
    assert message in str(exc.value)


def test_validate_absent_needs_no_node_ips():
    vips, node_ips = engine.validate(params(addresses=['fd00::1'], node_ips=[], state='absent'))
    assert vips == [ipaddress.ip_address('fd00::1')] and node_ips == {}


def test_node_ip_must_be_local_outside_the_vip_interface():
    engine.check_node_ips(NODE, NODE_ADDRS, IF, 'kube-dummy-if')
    with pytest.raises(ValueError, match='node IP 192.168.1.10 is not a local address of this host'):
        engine.check_node_ips(NODE, NODE_ADDRS[1:], IF, 'kube-dummy-if')
    with pytest.raises(ValueError, match=r'node IP 2001:db8:1::10 is not a local address of this host \(outside kube-dummy-if\)'):
        engine.check_node_ips(NODE, [NODE_ADDRS[0], Address(IPV6, N6, 128, IF)], IF, 'kube-dummy-if')


@pytest.mark.parametrize('value, reason', [
    ('::1', 'loopback'), ('127.0.0.1', 'loopback'), ('127.9.9.9/32', 'loopback'),
    ('0.0.0.0', 'unspecified'), ('::', 'unspecified'),
    ('224.0.0.1', 'multicast'), ('ff02::1', 'multicast'),
    ('255.255.255.255', '240.0.0.0/4'), ('240.0.0.1', '240.0.0.0/4'),
    ('169.254.1.1', 'link-local'), ('fe80::1', 'link-local'),
    ('fd00::9%eth0', 'zone id'), ('::ffff:10.96.0.1', 'IPv4-mapped'),
])
def test_special_purpose_addresses_are_refused_as_vips_and_node_ips(value, reason):
    for kw, what in ((dict(addresses=[value]), 'VIP address'), (dict(node_ips=[value]), 'node IP')):
        with pytest.raises(ValueError) as exc:
            engine.validate(params(**kw))
        assert "invalid %s %r" % (what, value) in str(exc.value) and reason in str(exc.value)
    with pytest.raises(ValueError, match='invalid VIP address'):
        engine.validate(params(addresses=[value], node_ips=[], state='absent'))


@pytest.mark.parametrize('name', ['.', '..', 'a:b', 'eth0:1', '\u00fc' * 8, 'x' * 16, '', 'a/b', 'a\tb'])
def test_interface_names_the_kernel_refuses_are_refused(name):
    with pytest.raises(ValueError) as exc:
        engine.validate(params(interface=name))
    assert 'invalid interface name %r' % name in str(exc.value)


def test_interface_names_the_kernel_takes_pass():
    for name in ('eth0.100', 'x' * 15, '\u00fc' * 7, 'a.b-c_d'):
        engine.validate(params(interface=name))


# --- kernel checks ------------------------------------------------------------

def test_only_our_interface_or_an_adopted_one_is_managed():
    engine.check_owner(None, False)
    engine.check_owner(Link(IF, 'kube-dummy-if', 'dummy', True, MARKER), False)
    legacy = Link(IF, 'kube-dummy-if', 'dummy', True)
    with pytest.raises(ValueError, match="interface kube-dummy-if was not created by this collection "
                                         r"\(its alias is unset, not 'clusternet.node'\): set adopt: true"):
        engine.check_owner(legacy, False)
    with pytest.raises(ValueError, match="interface eth1 was not created by this collection \\(its alias is 'uplink'"):
        engine.check_owner(Link(OTHER, 'eth1', None, True, 'uplink'), False)
    engine.check_owner(legacy, True)


def test_loopback_is_never_managed():
    for alias, adopt in ((None, True), (MARKER, False), (MARKER, True)):
        with pytest.raises(ValueError, match='interface lo is the loopback interface: the vip module never manages it'):
            engine.check_owner(Link(1, 'lo', None, True, alias, True), adopt)


def test_plan_link_marks_an_adopted_interface():
    adopted = Link(IF, 'x', 'ifb', True, 'something')
    assert plan_link(adopted, 'present', False) == ['mark']
    assert plan_link(adopted._replace(up=False), 'present', False) == ['mark', 'up']
    assert plan_link(adopted, 'absent', False) == ['mark']
    assert plan_link(adopted, 'absent', True) == ['delete']


LO = 1
BCAST = ipaddress.ip_address('192.168.1.255')


@pytest.mark.parametrize('vip, addresses, routes, message', [
    (V4, [Address(IPV4, V4, 24, OTHER)], [], 'VIP 10.96.0.1 is already an address of eth0 on this host'),
    (V6, [Address(IPV6, V6, 64, OTHER), Address(IPV6, V6, 128, 9)], [], 'VIP fd00:10:96::1 is already an address of 9, eth0 on this host'),
    (BCAST, [], [Route(IPV4, 255, 3, 2, 253, BCAST, 32, OTHER, N4, 0)],
     'VIP 192.168.1.255 is already local to this host (broadcast 192.168.1.255 dev eth0 table local proto kernel scope link src 192.168.1.10)'),
    (V6, [], [Route(IPV6, 255, 4, 2, 0, V6, 128, OTHER, None, 0)],
     'VIP fd00:10:96::1 is already local to this host (anycast fd00:10:96::1 dev eth0 table local proto kernel metric 0)'),
    (V4, [], [Route(IPV4, 255, 2, 4, 254, V4, 32, LO, None, 0)], 'VIP 10.96.0.1 is already local to this host (local 10.96.0.1 dev lo'),
])
def test_vip_already_local_on_another_interface_is_refused(vip, addresses, routes, message):
    names = dict(NAMES)
    names[LO] = 'lo'
    with pytest.raises(ValueError) as exc:
        engine.check_not_local_elsewhere([V4B, vip], NODE_ADDRS + addresses, foreign(routes), IF, names)
    assert message in str(exc.value)


def test_vip_local_only_on_its_own_interface_passes():
    addresses = NODE_ADDRS + [Address(IPV4, V4, 32, IF), Address(IPV6, V6, 128, IF)]
    routes = [ours(V4), kernel6_local(V6), kernel6_main(V6), Route(IPV4, 254, 1, 4, 0, V4, 32, OTHER, None, 0)]
    engine.check_not_local_elsewhere([V4, V6], addresses, foreign(routes), IF, NAMES)
    # No interface yet (check mode): every holder is another interface.
    with pytest.raises(ValueError, match='VIP 10.96.0.1 is already an address of kube-dummy-if'):
        engine.check_not_local_elsewhere([V4], addresses, foreign(routes, None), None, NAMES)


def test_check_kernel_applies_the_vip_and_node_ip_rules_only_when_present():
    foreign = NODE_ADDRS + [Address(IPV4, V4, 32, OTHER)]
    link = Link(IF, 'kube-dummy-if', 'ifb', True, MARKER)
    args = dict(interface='kube-dummy-if', adopt=False)
    with pytest.raises(ValueError, match='VIP 10.96.0.1 is already an address of eth0'):
        engine.check_kernel(link, foreign, [], [V4], NODE, dict(args, state='present'), NAMES)
    engine.check_kernel(link, foreign, [], [V4], {}, dict(args, state='absent'), NAMES)
    with pytest.raises(ValueError, match='not created by this collection'):
        engine.check_kernel(link._replace(alias=None), NODE_ADDRS, [], [], {}, dict(args, state='absent'), NAMES)


# --- link ---------------------------------------------------------------------

def test_plan_link():
    up, down = Link(IF, 'x', 'dummy', True, MARKER), Link(IF, 'x', 'dummy', False, MARKER)
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


def test_routes_to_the_vip_elsewhere_are_foreign_and_kept():
    """Issue 23: a route to the VIP via another device, in any table, or without a device, is
    not ours; only the VIP's routes on its interface are planned, whatever else exists."""
    strays = [Route(IPV6, 100, 1, 4, 0, V6, 128, OTHER, None, 1024), Route(IPV6, 254, 6, 3, 0, V6, 128, LO, None, 1024),
              Route(IPV4, 254, 1, 3, 253, V4, 32, OTHER, None, 0), Route(IPV4, 100, 6, 3, 0, V4, 32, None, None, 0)]
    addresses = [Address(IPV6, V6, 128, IF), Address(IPV4, V4, 32, IF)]
    assert plan(addresses, [ours(V6), ours(V4)] + strays, [V4, V6]) == plan(addresses, [ours(V6), ours(V4)], [V4, V6])
    steps = plan(addresses, [kernel6_main(V6), kernel6_local(V6), kernel4(V4)] + strays, [V4, V6])[0]
    assert [s.item for s in steps if s.action == ROUTE_DEL] == [kernel6_main(V6), kernel6_local(V6)]
    # Removing the VIPs removes ours alone.
    steps = plan(addresses, [ours(V6), ours(V4)] + strays, [], state='absent')[0]
    assert [s.item for s in steps if s.action == ROUTE_DEL] == [ours(V6), ours(V4)]


def test_own_routes_says_ours_only_on_the_vip_interface():
    mine = [ours(V4), kernel6_main(V6), kernel6_local(V6), Route(IPV4, 100, 1, 4, 253, V4, 32, IF, None, 0)]
    others = [Route(IPV4, 255, 1, 3, 253, V4, 32, OTHER, None, 0), Route(IPV4, 255, 7, 3, 0, V4, 32, None, None, 0),
              Route(IPV6, 255, 6, 3, 0, V6, 128, LO, None, 1024)]
    assert engine.own_routes(mine + others, IF) == (mine, others)
    # No VIP interface yet (check mode): nothing is ours.
    assert engine.own_routes(mine + others, None) == ([], mine + others)


@pytest.mark.parametrize('route, named', [
    (Route(IPV4, 255, 1, 3, 253, V4, 32, OTHER, None, 0), '10.96.0.1 dev eth0 table local proto boot scope link'),
    (Route(IPV4, 255, 7, 3, 0, V4, 32, None, None, 5), 'unreachable 10.96.0.1 table local proto boot metric 5'),
    (Route(IPV6, 255, 6, 3, 0, V6, 128, LO, None, 1024), 'blackhole fd00:10:96::1 dev lo table local proto boot metric 1024'),
    (Route(IPV6, 255, 1, 4, 0, V6, 128, OTHER, None, 5), 'fd00:10:96::1 dev eth0 table local proto static metric 5'),
])
def test_a_foreign_route_in_table_local_refuses_the_vip(route, named):
    names = dict(NAMES)
    names[LO] = 'lo'
    link = Link(IF, 'kube-dummy-if', 'ifb', True, MARKER)
    args = dict(interface='kube-dummy-if', adopt=False, state='present')
    routes = [ours(V4), ours(V6), route]
    with pytest.raises(ValueError) as exc:
        engine.check_kernel(link, NODE_ADDRS, engine.own_routes(routes, IF).foreign, [V4B, route.dst], NODE, args, names)
    assert str(exc.value) == ('VIP %s is already routed in table local by a route this module did not write (%s): '
                              'refusing to replace or shadow it' % (route.dst, named))
    # In another table it is kept; ours in table local, and a VIP not listed, are no concern.
    moved = route._replace(table=100)
    engine.check_kernel(link, NODE_ADDRS, engine.own_routes(routes[:2] + [moved], IF).foreign, [V4B, route.dst], NODE, args, names)
    engine.check_kernel(link, NODE_ADDRS, engine.own_routes(routes, IF).foreign, [V4B], NODE, args, names)
    # state absent removes only ours: nothing to refuse.
    engine.check_kernel(link, NODE_ADDRS, engine.own_routes(routes, IF).foreign, [route.dst], {}, dict(args, state='absent'), names)


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
    assert engine.awaited_routes([V4, V6, V6B], added, [kernel6_local(V6)], IF, False) == {V6}
    # After link up: also kept VIPs whose kernel route the dump does not show yet.
    assert engine.awaited_routes([V4, V6, V6B], added, [], IF, True) == {V6, V6B}
    assert engine.awaited_routes([V4, V6, V6B], [], [kernel6_local(V6B), ours(V6)], IF, True) == {V6}


def test_missing_interface_plans_from_nothing():
    steps = plan_vips(None, NODE_ADDRS, [], [V4], NODE, True, 'present')[0]
    assert steps == [Step(ADDR_ADD, Address(IPV4, V4, 32, None)), Step(ROUTE_REPLACE, engine.vip_route(V4, None, N4))]


# --- applying -----------------------------------------------------------------

def test_waves_send_each_addresss_steps_in_order_and_different_addresses_together():
    steps = plan([Address(IPV6, V6, 128, IF), Address(IPV4, V4B, 32, IF)], [kernel6_main(V6), kernel6_local(V6), ours(V4B)], [V4, V6])[0]
    assert waves(steps) == [
        [Step(ROUTE_DEL, ours(V4B)), Step(ADDR_ADD, Address(IPV4, V4, 32, IF)), Step(ROUTE_REPLACE, ours(V6))],
        [Step(ADDR_DEL, Address(IPV4, V4B, 32, IF)), Step(ROUTE_REPLACE, ours(V4)), Step(ROUTE_DEL, kernel6_main(V6))],
        [Step(ROUTE_DEL, kernel6_local(V6))],
    ]
    assert sorted(s for w in waves(steps) for s in w) == sorted(steps)
    assert waves([]) == []


def test_render_step_as_ip_commands():
    assert render_step(Step(ADDR_ADD, Address(IPV6, V6, 128, IF)), NAMES) == 'address add fd00:10:96::1/128 dev kube-dummy-if'
    assert render_step(Step(ROUTE_DEL, kernel6_main(V6)), NAMES) == 'route del fd00:10:96::1 dev kube-dummy-if proto kernel metric 256'


# --- rendering ----------------------------------------------------------------

def test_render_route_matches_ip_route():
    assert render_route(ours(V4), NAMES) == 'local 10.96.0.1 dev kube-dummy-if table local proto kernel scope host src 192.168.1.10'
    assert render_route(ours(V6), NAMES) == 'local fd00:10:96::1 dev kube-dummy-if table local proto kernel src 2001:db8:1::10 metric 1024'
    assert render_route(kernel6_main(V6), NAMES) == 'fd00:10:96::1 dev kube-dummy-if proto kernel metric 256'
    assert render_route(kernel6_local(V6), NAMES) == 'local fd00:10:96::1 dev kube-dummy-if table local proto kernel metric 0'
    assert render_route(Route(IPV6, 100, 6, 99, 0, V6, 64, 9, None, 5), NAMES) == 'blackhole fd00:10:96::1/64 dev 9 table 100 proto 99 metric 5'


def test_summarize_and_diff_text():
    changes = plan([Address(IPV6, V6, 128, IF)], [kernel6_main(V6), kernel6_local(V6)], [V6, V6B])[1]
    out = engine.summarize(changes, NAMES)
    assert out[IPV6] == {
        'added': ['fd00:10:96::2'],
        'removed': [],
        'routes_added': ['local fd00:10:96::1 dev kube-dummy-if table local proto kernel src 2001:db8:1::10 metric 1024',
                         'local fd00:10:96::2 dev kube-dummy-if table local proto kernel src 2001:db8:1::10 metric 1024'],
        'routes_removed': ['fd00:10:96::1 dev kube-dummy-if proto kernel metric 256',
                           'local fd00:10:96::1 dev kube-dummy-if table local proto kernel metric 0'],
    }
    assert out[IPV4] == {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}
    text = engine.render_state('interface kube-dummy-if dummy up', [Address(IPV6, V6, 128, IF), Address(IPV4, V4, 32, IF)],
                               [ours(V4), kernel6_local(V6), kernel6_main(V6)], NAMES)
    assert text == ('interface kube-dummy-if dummy up\n'
                    'address 10.96.0.1/32\n'
                    '  route local 10.96.0.1 dev kube-dummy-if table local proto kernel scope host src 192.168.1.10\n'
                    'address fd00:10:96::1/128\n'
                    '  route fd00:10:96::1 dev kube-dummy-if proto kernel metric 256\n'
                    '  route local fd00:10:96::1 dev kube-dummy-if table local proto kernel metric 0\n')
