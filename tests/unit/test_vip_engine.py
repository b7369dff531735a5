"""vip's run() on engine.run, driven end to end on FakeNetlink over recorded dumps (no root):
check mode, diff, a no-change second run, every refusal, a failure in the middle of a wave,
and foreign routes and addresses left as they are."""

import errno
import ipaddress

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import vip
from ansible_collections.clusternet.node.plugins.module_utils.families import IPV4, IPV6
from fake_netlink import FakeNetlink, load
from fakes import Failed, FakeModule

IF = 'kube-dummy-if'
NODE4, NODE6 = '192.168.50.10', 'fd50::10'
VIP4, VIP6 = '10.96.0.1', 'fd00:10:96::1'  # the VIPs vip-ours.json holds, in the module's shape


def params(**overrides):
    base = {'interface': IF, 'adopt': False, 'link_kind': 'ifb', 'addresses': [VIP4, VIP6], 'node_ips': [NODE4, NODE6],
            'exclusive': True, 'state': 'present', 'delete_interface': False}
    base.update(overrides)
    return base


def run(fake, check_mode=False, diff=False, **overrides):
    module = FakeModule(params(**overrides), check_mode=check_mode, diff=diff)
    return vip.run(module, fake)


def failure(fake, **overrides):
    with pytest.raises(Failed) as err:
        run(fake, **overrides)
    return err.value.result


def index_of(fake, name=IF):
    return next((link.index for link in fake.links() if link.name == name), None)


def routes_to(fake, address):
    address = ipaddress.ip_address(address)
    return sorted(r for r in fake.dump()[2] if r.dst == address)


def foreign(fake):
    """Every address and route not on the VIP interface: what no run may change."""
    _links, addresses, routes = fake.dump()
    index = index_of(fake)
    return [a for a in addresses if a.index != index], vip.own_routes(routes, index).foreign


def settle(fake):
    """Let the kernel's late IPv6 routes appear (two dumps), as time does."""
    fake.routes(), fake.routes()


def assert_in_shape(fake, vips, node4=NODE4, node6=NODE6):
    """Each VIP has exactly the route the module writes on the interface, and no other there."""
    settle(fake)
    index = index_of(fake)
    for address in vips:
        ip = ipaddress.ip_address(address)
        wanted = vip.vip_route(ip, index, ipaddress.ip_address(node6 if ip.version == 6 else node4))
        found = [r for r in routes_to(fake, address) if r.oif == index]
        assert len(found) == 1 and vip.same_route(found[0], wanted), (address, found)


# --- the fixtures are the kernel's ------------------------------------------------------

def test_the_recorded_state_of_ours_is_what_the_module_writes():
    """vip-ours.json was planted by hand with ip commands: the engine reads it as in sync."""
    fake = FakeNetlink('ours')
    result = run(fake)
    assert result['changed'] is False and fake.waves == [] and fake.link_requests == []
    assert result['ipv4'] == result['ipv6'] == {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}
    assert result['interface'] == {'name': IF, 'created': False, 'adopted': False, 'set_up': False, 'deleted': False}


def test_fixture_loader_reads_hosts_routes_with_the_kernels_fields():
    _links, _addresses, routes = load('ours')
    blackhole = [r for r in routes if str(r.dst) == VIP4 and r.oif is None]
    assert len(blackhole) == 1 and blackhole[0].type == 6 and blackhole[0].table == 254
    ours6 = [r for r in routes if str(r.dst) == VIP6 and r.table == 255]
    assert [(r.type, r.proto, str(r.prefsrc), r.priority) for r in ours6] == [(2, 2, NODE6, 1024)]


# --- create, converge, no change ---------------------------------------------------------

def test_a_fresh_node_converges_then_a_second_run_changes_nothing():
    fake = FakeNetlink('empty')
    result = run(fake)
    assert result['changed'] is True
    assert result['interface'] == {'name': IF, 'created': True, 'adopted': False, 'set_up': True, 'deleted': False}
    assert fake.link_requests == ['link add %s type ifb' % IF, 'link set %s alias clusternet.node' % IF, 'link set %s up' % IF]
    assert result['ipv4']['added'] == [VIP4] and result['ipv6']['added'] == [VIP6]
    # The kernel's IPv6 route came late and was deleted by the settling step, not listed as removed.
    assert result['ipv6']['routes_removed'] == []
    assert 'route del local %s dev %s table local proto kernel metric 0' % (VIP6, IF) in result['applied']
    assert_in_shape(fake, [VIP4, VIP6])
    again = run(fake)
    assert again['changed'] is False and again['applied'] == []
    assert again['ipv4'] == again['ipv6'] == {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}


def test_applied_lists_exactly_the_requests_made():
    fake = FakeNetlink('ours')
    result = run(fake, addresses=[VIP4, VIP6, '10.96.0.2'])
    assert result['applied'] == [c for wave in fake.waves for c in wave]
    assert result['applied'][0] == 'address add 10.96.0.2/32 dev %s' % IF
    assert_in_shape(fake, [VIP4, VIP6, '10.96.0.2'])


# --- check mode and diff -------------------------------------------------------------------

def test_check_mode_predicts_and_changes_nothing():
    fake = FakeNetlink('empty')
    before = fake.dump()
    predicted = run(fake, check_mode=True, diff=True)
    assert predicted['changed'] is True and predicted['interface']['created'] is True
    assert predicted['ipv4']['added'] == [VIP4] and predicted['applied'] == []
    assert fake.dump() == before and fake.waves == [] and fake.link_requests == []
    assert predicted['diff']['before'] == 'interface %s absent\n' % IF
    assert predicted['diff']['after'].startswith('interface %s ifb up\naddress %s/32\n' % (IF, VIP4))
    actual = run(fake, diff=True)
    assert [actual[f]['added'] for f in (IPV4, IPV6)] == [predicted[f]['added'] for f in (IPV4, IPV6)]
    # Check mode has no ifindex for the interface it would create, so its routes are shown without their device.
    assert actual['diff']['after'].replace(' dev %s' % IF, '') == predicted['diff']['after']


def test_diff_shows_a_repair_of_the_kernels_readded_routes():
    fake = FakeNetlink('ours')
    index = index_of(fake)
    # The address re-added by hand: the kernel appends its own IPv4 route beside ours.
    fake.held_routes.append(vip.kernel_local_route(ipaddress.ip_address(VIP4), index))
    result = run(fake, diff=True)
    kernels = 'local %s dev %s table local proto kernel scope host src %s' % (VIP4, IF, VIP4)
    assert result['ipv4']['routes_removed'] == [kernels]
    assert '  route %s\n' % kernels in result['diff']['before'] and kernels not in result['diff']['after']
    assert_in_shape(fake, [VIP4, VIP6])


# --- refusals: nothing written ---------------------------------------------------------

@pytest.mark.parametrize('fixture, overrides, message', [
    ('unmarked', {}, 'interface %s was not created by this collection' % IF),
    ('ours', {'addresses': ['10.96.0.7']}, 'VIP 10.96.0.7 is already an address of eth0 on this host'),
    ('ours', {'addresses': ['10.96.0.5']}, 'VIP 10.96.0.5 is already local to this host (local 10.96.0.5 dev eth0 table local'),
    ('ours', {'addresses': ['fd00:10:96::5']}, 'VIP fd00:10:96::5 is already local to this host'),
    ('ours', {'addresses': ['10.96.0.6']}, 'VIP 10.96.0.6 is already routed in table local by a route this module did not write'),
    ('ours', {'node_ips': ['192.168.77.7', NODE6]}, 'node IP 192.168.77.7 is not a local address of this host'),
    ('ours', {'interface': 'lo'}, 'interface lo is the loopback interface'),
    ('ours', {'addresses': ['10.96.0.999']}, "'10.96.0.999'"),
])
def test_refusals_name_the_culprit_and_write_nothing(fixture, overrides, message):
    fake = FakeNetlink(fixture)
    before = fake.dump()
    result = failure(fake, **overrides)
    assert message in result['msg'], result['msg']
    assert 'applied' not in result
    assert fake.dump() == before and fake.waves == [] and fake.link_requests == []


def test_adopt_takes_over_the_unmarked_interface_once():
    fake = FakeNetlink('unmarked')
    result = run(fake, adopt=True)
    assert result['interface']['adopted'] is True and fake.link_requests == ['link set %s alias clusternet.node' % IF]
    assert run(fake)['changed'] is False


# --- foreign objects ------------------------------------------------------------------------

@pytest.mark.parametrize('overrides', [
    {'addresses': [VIP4, VIP6, '10.96.0.2', 'fd00:10:96::2']},
    {'addresses': ['10.96.0.3']},
    {'state': 'absent', 'addresses': [VIP4, VIP6]},
    {'state': 'absent', 'delete_interface': True},
])
def test_foreign_routes_and_addresses_are_untouched(overrides):
    """Foreign: a blackhole route to VIP4 and a route to VIP6 via eth0 in main, local routes
    and an address of eth0, the node's own addresses and everything the kernel made for them."""
    fake = FakeNetlink('ours')
    before = foreign(fake)
    assert any(r.dst == ipaddress.ip_address(VIP4) for r in before[1])
    run(fake, **overrides)
    settle(fake)
    assert foreign(fake) == before


def test_absent_with_delete_interface_reports_what_went():
    fake = FakeNetlink('ours')
    result = run(fake, state='absent', delete_interface=True)
    assert result['interface']['deleted'] is True and index_of(fake) is None
    assert result['ipv4']['removed'] == [VIP4] and result['ipv6']['removed'] == [VIP6]
    assert result['applied'] == ['link del %s' % IF] and fake.waves == []


# --- a failure in the middle of a wave --------------------------------------------------------

def test_a_failure_in_a_wave_reports_exactly_what_the_kernel_acked():
    """The kernel refuses the IPv6 add, sent first in one send with the IPv4 adds it still
    applies; those are reported, and the routes' wave is never sent."""
    add6 = 'address add fd00:10:96::2/128 dev %s' % IF
    fake = FakeNetlink('ours', fail={add6: errno.EACCES})
    result = failure(fake, addresses=['fd00:10:96::2', '10.96.0.2', '10.96.0.3', VIP4, VIP6])
    assert '%s failed: Permission denied' % add6 in result['msg']
    assert 'acknowledged before: 2, listed in applied' in result['msg']
    acked = ['address add 10.96.0.2/32 dev %s' % IF, 'address add 10.96.0.3/32 dev %s' % IF]
    assert result['applied'] == acked and result['changed'] is True
    assert len(fake.waves) == 1 and fake.waves[0][1:] == acked
    held = sorted(str(a.ip) for a in fake.dump()[1] if a.index == index_of(fake) and not a.ip.is_link_local)
    assert held == ['10.96.0.1', '10.96.0.2', '10.96.0.3', VIP6]
    # The next run, once the kernel takes it, completes the job.
    fake.fail.clear()
    done = run(fake, addresses=['fd00:10:96::2', '10.96.0.2', '10.96.0.3', VIP4, VIP6])
    assert done['ipv6']['added'] == ['fd00:10:96::2'] and done['ipv4']['added'] == []
    assert_in_shape(fake, ['fd00:10:96::2', '10.96.0.2', '10.96.0.3', VIP4, VIP6])


def test_a_failure_after_the_link_was_created_lists_it_as_applied():
    fake = FakeNetlink('empty', fail={'link set %s alias clusternet.node' % IF: errno.EPERM})
    result = failure(fake)
    assert result['applied'] == ['link add %s type ifb' % IF] and result['changed'] is True
    assert 'acknowledged before: 1, listed in applied. Applied: link add %s type ifb. Not applied: link set %s alias' % (IF, IF) in result['msg']


def test_a_failed_interface_creation_names_the_request_and_applied_nothing():
    fake = FakeNetlink('empty', fail={'link add %s type dummy' % IF: errno.EOPNOTSUPP})
    result = failure(fake, link_kind='dummy')
    assert 'cannot create or bring up interface %s (kind dummy): link add %s type dummy failed: ' % (IF, IF) in result['msg']
    assert result['applied'] == [] and result['changed'] is False and index_of(fake) is None


def test_a_link_brought_up_is_planned_from_what_the_kernel_readded():
    """Up again after a down with keep_addr_on_down: the kernel re-adds its IPv6 local route
    late, which the run deletes once it appears."""
    fake = FakeNetlink('ours')
    index = index_of(fake)
    fake.links_by_index[index] = fake.links_by_index[index]._replace(up=False)
    fake.held_routes = [r for r in fake.held_routes if not (r.oif == index and r.family == IPV6)]
    result = run(fake)
    assert result['interface']['set_up'] is True and result['ipv6']['routes_added'] and not fake.warnings
    assert_in_shape(fake, [VIP4, VIP6])
    assert run(fake)['changed'] is False
