"""clusternet.node.vip against hostile or mistaken input, on the real kernel, a namespace per test.

A refused run must change nothing: each such test compares full dumps (`ip -d addr`,
`ip -4/-6 route show table all`, `ip -d link`) taken before and after it. A run that fails
after writing must list exactly what it applied, and stop where the kernel lets it.
The link kind is ifb: this kernel has no dummy.
"""

import json

import pytest

IF = 'kube-dummy-if'
MARKER = 'clusternet.node'
NODE4, NODE6 = '192.168.50.10', 'fd50::10'
NODE_IPS = [NODE4, NODE6]
VIP4, VIP6 = '10.96.0.1', 'fd00:10:96::1'


@pytest.fixture
def node(netns):
    """Node IPs on a veth, as on a host's uplink; no DAD, so nothing changes by itself between dumps."""
    netns.run('sysctl -qw net.ipv6.conf.default.accept_dad=0 && '
              'ip link add eth0 type veth peer name eth0p && ip link set eth0 up && ip link set eth0p up'
              ' && ip addr add %s/24 dev eth0 && ip addr add %s/64 dev eth0 nodad' % (NODE4, NODE6))
    return netns


def vip(ns, python=None, check=False, expect_failure=False, **args):
    base = {'link_kind': 'ifb', 'addresses': [VIP4, VIP6], 'node_ips': NODE_IPS}
    base.update(args)
    return ns.module('vip', base, check=check, python=python, expect_failure=expect_failure)


def dumps(ns):
    return ns.out('ip -d addr; ip -4 route show table all; ip -6 route show table all; ip -d link')


def assert_refused(ns, message, **args):
    """The run fails with message, before any write: the kernel's dumps are unchanged."""
    before = dumps(ns)
    result = vip(ns, expect_failure=True, **args)
    assert message in result['msg'], result['msg']
    assert 'applied' not in result, result
    assert dumps(ns) == before
    return result


def link(ns, name=IF):
    found = [entry for entry in json.loads(ns.out('ip -j -d link show')) if entry['ifname'] == name]
    return found[0] if found else None


def addresses(ns, name=IF):
    info = json.loads(ns.out('ip -j addr show dev %s' % name))[0]['addr_info']
    return sorted('%s/%d' % (a['local'], a['prefixlen']) for a in info if a['scope'] != 'link')


def routes_to(ns, address):
    family = '-6' if ':' in address else '-4'
    return [r for r in json.loads(ns.out('ip -j %s route show table all' % family)) if r['dst'] == address]


# --- 1. special-purpose addresses, addresses the host already owns ---------------

@pytest.mark.parametrize('args, message', [
    # The drill: the run replaced lo's own local route for ::1 and then failed.
    ({'addresses': [VIP4, '::1']}, "invalid VIP address '::1': it is a loopback address"),
    # The drill: passed validation, then failed mid-write naming no value.
    ({'addresses': [VIP4, 'fd00::9%eth0']}, "invalid VIP address 'fd00::9%eth0': it carries a zone id"),
    ({'addresses': ['::ffff:10.96.0.2']}, "invalid VIP address '::ffff:10.96.0.2': it is IPv4-mapped"),
    ({'addresses': ['224.0.0.251']}, "invalid VIP address '224.0.0.251': it is a multicast address"),
    ({'addresses': ['0.0.0.0']}, "invalid VIP address '0.0.0.0': it is an unspecified address"),
    # The drill: a link-local node IP failed after the removals were applied.
    ({'addresses': [VIP6], 'node_ips': [NODE4, 'fe80::1']}, "invalid node IP 'fe80::1': it is a link-local address"),
])
def test_special_purpose_addresses_are_refused_before_any_write(node, args, message):
    vip(node, addresses=[VIP4, '10.96.0.9'])  # an existing state that exclusive would change
    assert_refused(node, message, **args)


@pytest.mark.parametrize('setup, address, message', [
    ('ip addr add 192.168.50.20/24 dev eth0', '192.168.50.20', 'VIP 192.168.50.20 is already an address of eth0 on this host'),
    ('ip link add eth1 type ifb && ip link set eth1 up && ip addr add fd60::1/64 dev eth1 nodad', 'fd60::1',
     'VIP fd60::1 is already an address of eth1 on this host'),
    # The subnet's broadcast address is local to the host through eth0's broadcast route.
    ('true', '192.168.50.255', 'VIP 192.168.50.255 is already local to this host (broadcast 192.168.50.255 dev eth0 table local'),
    # A forwarding node (any Kubernetes node) owns the subnet-router anycast address of each prefix.
    ('sysctl -qw net.ipv6.conf.all.forwarding=1', 'fd50::', 'VIP fd50:: is already local to this host (anycast fd50:: dev eth0 table local'),
])
def test_an_address_the_host_already_owns_is_refused_as_vip(node, setup, address, message):
    vip(node)
    node.run(setup)
    assert_refused(node, message, addresses=[VIP4, VIP6, address])
    # The host still owns its address, with its own route.
    assert [r for r in routes_to(node, address) if r.get('dev') != IF]


def test_a_vip_that_became_local_elsewhere_is_refused_and_left_as_it_is(node):
    vip(node)
    node.run('ip link add eth1 type ifb && ip link set eth1 up && ip addr add %s/24 dev eth1' % VIP4)
    assert_refused(node, 'VIP %s is already an address of eth1 on this host' % VIP4)


# --- 2. foreign interfaces -----------------------------------------------------------

@pytest.mark.parametrize('args', [
    {'addresses': [], 'exclusive': True},
    {'addresses': [], 'exclusive': True, 'adopt': True},
    {'addresses': [], 'state': 'absent', 'delete_interface': True, 'adopt': True},
])
def test_loopback_is_never_managed(node, args):
    """The drill: interface lo with exclusive removed 127.0.0.1/8 and ::1."""
    assert_refused(node, 'interface lo is the loopback interface: the vip module never manages it', interface='lo', **args)


def test_an_interface_name_the_kernel_takes_as_a_template_is_refused(node):
    """The property test's find: interface kube%d made a link kube0 (the kernel fills in a
    free number) and the run then failed to find kube%d, leaving kube0 behind. assert_refused
    compares the links too."""
    assert_refused(node, "invalid interface name 'kube%d'", interface='kube%d', link_kind='ifb')


@pytest.mark.parametrize('args', [
    {},
    {'addresses': [], 'state': 'absent', 'delete_interface': True},  # the drill: it deleted eth1
    {'addresses': [], 'state': 'absent'},
])
def test_an_interface_the_collection_did_not_create_is_refused(node, args):
    node.run('ip link add eth1 type ifb && ip link set eth1 up && ip addr add 10.50.0.1/24 dev eth1')
    assert_refused(node, "interface eth1 was not created by this collection (its alias is unset, not 'clusternet.node'): "
                         'set adopt: true', interface='eth1', **args)
    node.run('ip link set eth1 alias uplink')
    assert_refused(node, "interface eth1 was not created by this collection (its alias is 'uplink'", interface='eth1', **args)


def test_created_interface_carries_the_marker_across_runs(node, python):
    result = vip(node, python=python)
    assert result['interface']['created'] is True and result['interface']['adopted'] is False
    assert link(node)['ifalias'] == MARKER
    assert vip(node, python=python)['changed'] is False
    result = vip(node, python=python, addresses=[], node_ips=[], state='absent', delete_interface=True)
    assert result['interface']['deleted'] is True and link(node) is None


def test_adopt_takes_over_a_foreign_interface_once(node, python):
    node.run('ip link add eth1 type ifb && ip link set eth1 up && ip addr add 10.50.0.1/24 dev eth1')
    before = dumps(node)
    predicted = vip(node, python=python, check=True, interface='eth1', adopt=True)
    assert predicted['changed'] is True and predicted['interface']['adopted'] is True
    assert predicted['ipv4']['removed'] == ['10.50.0.1']
    assert dumps(node) == before
    result = vip(node, python=python, interface='eth1', adopt=True)
    assert result['interface'] == {'name': 'eth1', 'created': False, 'adopted': True, 'set_up': False, 'deleted': False}
    assert link(node, 'eth1')['ifalias'] == MARKER
    assert addresses(node, 'eth1') == ['%s/32' % VIP4, '%s/128' % VIP6]
    # Ours from now on: no adopt needed, nothing to change.
    assert vip(node, python=python, interface='eth1')['changed'] is False


def test_kube_dummy_if_of_an_earlier_release_needs_adopt_once(node):
    """An earlier release created kube-dummy-if without a marker. It is refused like any foreign
    interface (kube-router makes one of the same name) until a run with adopt: true marks it."""
    node.run('ip link add {i} type ifb && ip link set {i} up && ip addr add {v}/32 dev {i}'
             ' && ip route replace local {v} dev {i} table local proto kernel scope host src {n}'.format(i=IF, v=VIP4, n=NODE4))
    assert_refused(node, 'interface %s was not created by this collection' % IF, addresses=[VIP4])
    assert_refused(node, 'interface %s was not created by this collection' % IF, addresses=[], state='absent', delete_interface=True)
    result = vip(node, addresses=[VIP4], adopt=True)
    assert result['changed'] is True and result['interface']['adopted'] is True
    assert result['ipv4'] == {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}
    assert link(node)['ifalias'] == MARKER and addresses(node) == ['%s/32' % VIP4]
    assert vip(node, addresses=[VIP4])['changed'] is False


# --- 3. interface names ----------------------------------------------------------------

@pytest.mark.parametrize('name', ['.', 'vip:0', '\u00fc' * 8])  # the last: 8 characters, 16 bytes
def test_interface_names_the_kernel_refuses_are_refused_before_any_write(node, name):
    assert_refused(node, 'invalid interface name %r' % name, interface=name)


# --- 4. partial failure ---------------------------------------------------------------

def test_a_failed_write_stops_there_and_reports_exactly_what_was_applied(node):
    """IPv6 disabled on the interface: the kernel refuses the IPv6 address add, which is sent
    first, in one batch with the IPv4 adds it still applies. Those are reported; the routes,
    which wait until every address add was acknowledged, are never sent."""
    vip(node, addresses=[])
    node.run('sysctl -qw net.ipv6.conf.%s.disable_ipv6=1' % IF)
    result = vip(node, addresses=[VIP6, VIP4, '10.96.0.2'], expect_failure=True)
    assert ('address add %s/128 dev %s failed: Permission denied (ipv6: IPv6 is disabled on this device)' % (VIP6, IF)
            in result['msg']), result['msg']
    assert 'acknowledged before: 2, listed in applied' in result['msg']
    assert result['applied'] == ['address add %s/32 dev %s' % (VIP4, IF), 'address add 10.96.0.2/32 dev %s' % IF]
    # The kernel holds exactly what was reported: both addresses, with the kernel's own routes only.
    assert addresses(node) == ['%s/32' % VIP4, '10.96.0.2/32']
    assert [r['prefsrc'] for r in routes_to(node, VIP4)] == [VIP4]
    # Once IPv6 is back, the next run completes the job.
    node.run('sysctl -qw net.ipv6.conf.%s.disable_ipv6=0' % IF)
    result = vip(node, addresses=[VIP6, VIP4, '10.96.0.2'])
    assert result['ipv4']['added'] == [] and result['ipv6']['added'] == [VIP6]
    assert [r['prefsrc'] for r in routes_to(node, VIP4)] == [NODE4]


def test_a_failed_interface_creation_names_the_request(node):
    """The kernel refusing the link is named with the request; here it lacks the dummy link type."""
    if node.run('ip link add cnt-probe type dummy && ip link del cnt-probe', check=False).returncode == 0:
        pytest.skip('this kernel has the dummy link type: neither kind the module allows makes it refuse a link add')
    result = vip(node, link_kind='dummy', expect_failure=True)
    assert 'link add %s type dummy failed: ' % IF in result['msg'] and result['applied'] == []
    assert link(node) is None


# --- 5. routes to a VIP that someone else wrote ----------------------------------------
# Ours: the VIP's routes on the VIP interface. Every other route to the VIP's /32 or /128 is
# foreign: kept when it does not collide with the local route the VIP needs, and the VIP
# refused before any write when it sits in table local, the table that route lives in.

FVIP4, FVIP6 = '10.43.0.22', '2001:db8:99::77'


def foreign_routes(ns):
    """Every route line not on the VIP interface, in every table of both families."""
    return [line for line in ns.out('ip -4 route show table all; ip -6 route show table all').splitlines()
            if 'dev %s ' % IF not in line + ' ']


@pytest.mark.parametrize('setup', [
    # The drill's three IPv6 routes (via another device in main and in table 100, a blackhole), and IPv4 alike.
    'ip -6 route add {v6}/128 dev eth0 && ip -6 route add {v6}/128 dev eth0 table 100'
    ' && ip route add {v4}/32 dev eth0 && ip route add blackhole {v4}/32 table 100',
    'ip -6 route add blackhole {v6}/128 && ip -6 route add unreachable {v6}/128 table 100 && ip route add unreachable {v4}/32',
], ids=['via-eth0', 'no-device'])
@pytest.mark.parametrize('existing', [False, True], ids=['new-vips', 'existing-vips'])
def test_foreign_routes_to_a_vip_outside_table_local_are_kept(node, python, setup, existing):
    """Table local is looked up before every other table, so our local route decides the
    host's own traffic to the VIP whatever other tables hold: these routes are kept."""
    args = {'addresses': [FVIP4, FVIP6], 'python': python}
    if existing:
        vip(node, **args)
    node.run(setup.format(v4=FVIP4, v6=FVIP6))
    foreign = foreign_routes(node)
    result = vip(node, **args)
    assert result['changed'] is not existing, result
    assert foreign_routes(node) == foreign
    for address, source in ((FVIP4, NODE4), (FVIP6, NODE6)):
        ours = [r for r in routes_to(node, address) if r.get('dev') == IF]
        assert [(r['type'], r['table'], r['prefsrc']) for r in ours] == [('local', 'local', source)], ours
        # The node's own traffic to the VIP is delivered locally, from the node IP.
        got = node.out('ip route get %s' % address).split()
        assert got[:2] == ['local', address] and got[got.index('src') + 1] == source, got
    assert vip(node, **args)['changed'] is False
    # Removing the VIPs removes ours only.
    vip(node, python=python, addresses=[], node_ips=[], state='absent')
    assert foreign_routes(node) == foreign


@pytest.mark.parametrize('setup, named', [
    # The drill: replaced, and every later run reported a change.
    ('ip route add {v4}/32 dev eth0 table local{metric}', '{v4} dev eth0 table local proto boot scope link{metric}'),
    ('ip -6 route add {v6}/128 dev eth0 table local{metric}', '{v6} dev eth0 table local proto boot metric {m6}'),
    ('ip -6 route add blackhole {v6}/128 table local{metric}', 'blackhole {v6} dev lo table local proto boot metric {m6}'),
    ('ip route add unreachable {v4}/32 table local{metric}', 'unreachable {v4} table local proto boot{metric}'),
], ids=['ipv4-via-eth0', 'ipv6-via-eth0', 'ipv6-blackhole', 'ipv4-unreachable'])
def test_a_foreign_route_to_a_vip_in_table_local_refuses_the_vip(node, python, setup, named):
    """Table local holds the route the VIP needs: a foreign route there either has its place
    (the replace would overwrite it) or competes with it by metric (a lower one wins, as the
    kernel's did in kube-router #1698). The VIP is refused before any write, naming the route,
    whether it is new or already in place."""
    args = {'addresses': [VIP4, FVIP4, FVIP6], 'python': python}
    address = FVIP6 if ' -6 ' in setup else FVIP4
    # A new VIP: the foreign route has the key its local route needs.
    values = dict(v4=FVIP4, v6=FVIP6, metric='', m6=1024)
    node.run(setup.format(**values))
    message = 'VIP %s is already routed in table local by a route this module did not write (%s)'
    assert_refused(node, message % (address, named.format(**values)), **args)
    # A VIP in place: next to ours (metric 0 or 1024) the foreign route needs a metric of its own.
    node.run(setup.format(**values).replace(' add ', ' del '))
    vip(node, **args)
    values.update(metric=' metric 5', m6=5)
    node.run(setup.format(**values))
    assert_refused(node, message % (address, named.format(**values)), **args)
    # Not listed, the VIP is no concern of this run: the others are managed, the foreign route kept.
    foreign = foreign_routes(node)
    vip(node, python=python, addresses=[VIP4], exclusive=False)
    assert foreign_routes(node) == foreign
