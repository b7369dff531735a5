"""clusternet.node.vip against the real kernel, in a namespace per test.

Every check reads the kernel (`ip -j`), and the traffic test opens real TCP
connections from the node to listeners on the VIPs. The core flows run under both
ends of the supported pyroute2 range (the `python` fixture).
"""

import json
import subprocess
import textwrap

import pytest

IF = 'kube-dummy-if'
NODE4, NODE6 = '192.168.50.10', 'fd50::10'
NODE_IPS = [NODE4, NODE6]
VIPS4 = ['10.96.0.1', '10.96.0.10']
VIPS6 = ['fd00:10:96::1', 'fd00:10:96::a']
VIPS = tuple(VIPS4 + VIPS6)


def kernel_has_dummy():
    """Probe in a throwaway namespace: this machine's kernel may lack the dummy link type."""
    name = 'cnt-dummy-probe'
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    try:
        proc = subprocess.run(['ip', 'netns', 'exec', name, 'ip', 'link', 'add', 'd0', 'type', 'dummy'], capture_output=True, text=True, check=False)
        return proc.returncode == 0, proc.stderr.strip()
    finally:
        subprocess.run(['ip', 'netns', 'del', name], check=False)


HAS_DUMMY, DUMMY_ERROR = kernel_has_dummy()
# ifb is NOARP like dummy, so IPv6 addresses need no DAD either.
KIND = 'dummy' if HAS_DUMMY else 'ifb'


@pytest.fixture
def node(netns):
    """A namespace whose node IPs sit on a veth, as on a real host's uplink.
    No DAD, so no address changes state by itself while a test compares snapshots."""
    netns.run('sysctl -qw net.ipv6.conf.default.accept_dad=0 && '
              'ip link add eth0 type veth peer name eth0p && ip link set eth0 up && ip link set eth0p up'
              ' && ip addr add %s/24 dev eth0 && ip addr add %s/64 dev eth0 nodad' % (NODE4, NODE6))
    return netns


def vip(ns, python=None, check=False, diff=False, expect_failure=False, **args):
    base = {'link_kind': KIND, 'addresses': VIPS, 'node_ips': NODE_IPS}
    base.update(args)
    return ns.module('vip', base, check=check, diff=diff, python=python, expect_failure=expect_failure)


def ip_json(ns, cmd):
    return json.loads(ns.out('ip -j ' + cmd) or '[]')


def link(ns, name=IF):
    links = [entry for entry in ip_json(ns, '-d link show') if entry['ifname'] == name]
    return links[0] if links else None


def addresses(ns):
    """Addresses on the VIP interface except IPv6 link-local, as 'ADDR/LEN'."""
    info = ip_json(ns, 'addr show dev %s' % IF)[0]['addr_info']
    return sorted('%s/%d' % (a['local'], a['prefixlen']) for a in info if a['scope'] != 'link')


def routes_to(ns, address):
    family = '-6' if ':' in address else '-4'
    return [r for r in ip_json(ns, '%s route show table all' % family) if r['dst'] == address]


def expected_route(address):
    route = {'type': 'local', 'dst': address, 'dev': IF, 'table': 'local', 'protocol': 'kernel',
             'prefsrc': NODE6 if ':' in address else NODE4}
    if ':' not in address:
        route['scope'] = 'host'  # the kernel keeps no scope on IPv6 routes
    return route


def assert_vips(ns, vips=VIPS, others=()):
    """The issue's invariants 1-3, read from the kernel."""
    entry = link(ns)
    assert entry is not None and 'UP' in entry['flags'], entry
    assert addresses(ns) == sorted(['%s/%d' % (v, 128 if ':' in v else 32) for v in vips] + list(others))
    for address in vips:
        found = routes_to(ns, address)
        wanted = expected_route(address)
        ours = [r for r in found if all(r.get(k) == v for k, v in wanted.items())]
        assert len(ours) == 1, (address, found)
        if ':' in address:
            assert found == ours, 'other routes to %s/128: %s' % (address, found)
        else:
            assert [r for r in found if r.get('dev') == IF] == ours, found


def kernel_snapshot(ns):
    return ns.out('ip -d link show; ip addr show; ip route show table all; ip -6 route show table all')


# --- present, idempotence, repair ---------------------------------------------

def test_present_creates_interface_vips_and_routes_then_is_idempotent(node, python):
    result = vip(node, python=python)
    assert result['changed'] is True
    assert result['interface'] == {'name': IF, 'created': True, 'adopted': False, 'set_up': True, 'deleted': False}
    assert result['ipv4']['added'] == sorted(VIPS4)
    assert result['ipv6']['added'] == sorted(VIPS6)
    assert link(node)['linkinfo']['info_kind'] == KIND
    assert_vips(node)
    # The kernel's own routes of a new IPv6 address existed only during the run.
    assert result['ipv6']['routes_removed'] == []
    again = vip(node, python=python)
    assert again['changed'] is False
    assert again['ipv4'] == again['ipv6'] == {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}


def test_many_ipv6_vips_settle_in_one_run(node, python):
    """The kernel adds a new IPv6 address's local route from a work queue, after the add
    returns: with many VIPs some appear only after the run's first look."""
    many = ['fd00:10:97::%x' % i for i in range(1, 301)]
    vip(node, python=python, addresses=many, node_ips=[NODE6])
    assert_vips(node, vips=many)
    assert vip(node, python=python, addresses=many, node_ips=[NODE6])['changed'] is False


def test_repair_after_addresses_are_readded(node, python):
    vip(node, python=python)
    # Re-added by hand, as kube-router does: the kernel adds its main and local routes again.
    node.run('ip addr del {v6}/128 dev {i} && ip addr add {v6}/128 dev {i} && ip addr del {v4}/32 dev {i} && ip addr add {v4}/32 dev {i}'
             .format(i=IF, v6=VIPS6[0], v4=VIPS4[0]))
    assert any(r.get('metric') == 256 for r in routes_to(node, VIPS6[0]))
    # IPv4: ours survives the delete (other addresses remain) and the kernel appends its own.
    assert sorted(r['prefsrc'] for r in routes_to(node, VIPS4[0])) == sorted([NODE4, VIPS4[0]])
    result = vip(node, python=python)
    assert result['changed'] is True
    assert result['ipv6']['added'] == [] and result['ipv4']['added'] == []
    assert sorted(result['ipv6']['routes_removed']) == [
        '%s dev %s proto kernel metric 256' % (VIPS6[0], IF),
        'local %s dev %s table local proto kernel metric 0' % (VIPS6[0], IF)]
    assert result['ipv4']['routes_removed'] == ['local %s dev %s table local proto kernel scope host src %s' % (VIPS4[0], IF, VIPS4[0])]
    assert_vips(node)
    assert vip(node, python=python)['changed'] is False


def test_repair_after_link_comes_back_up(node, python):
    vip(node, python=python)
    node.run('sysctl -qw net.ipv6.conf.%s.keep_addr_on_down=1 && ip link set %s down && ip link set %s up' % (IF, IF, IF))
    # The kernel dropped our routes with the link and re-added its own local ones.
    assert all(r.get('prefsrc') is None for r in routes_to(node, VIPS6[0]))
    result = vip(node, python=python)
    assert result['changed'] is True
    assert result['interface']['set_up'] is False
    # IPv4 local routes (scope host) survive a link going down; IPv6 ones do not.
    assert len(result['ipv6']['routes_added']) == len(VIPS6) and result['ipv4']['routes_added'] == []
    assert_vips(node)
    assert vip(node, python=python)['changed'] is False


def test_down_interface_is_brought_up_and_repaired(node):
    vip(node)
    node.run('ip link set %s down' % IF)  # without keep_addr_on_down the IPv6 VIPs go with it
    result = vip(node)
    assert result['changed'] is True and result['interface']['set_up'] is True
    assert result['ipv6']['added'] == sorted(VIPS6)
    assert_vips(node)
    assert vip(node)['changed'] is False


# --- traffic ------------------------------------------------------------------

CONNECT = textwrap.dedent('''
    import socket, sys
    vip = sys.argv[1]
    family = socket.AF_INET6 if ':' in vip else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((vip, 0))
    server.listen(1)
    client = socket.create_connection((vip, server.getsockname()[1]), timeout=3)
    conn, peer = server.accept()
    client.sendall(b'ping')
    assert conn.recv(4) == b'ping'
    print(peer[0])
''')


def peer_seen(ns, address):
    """Connect from the node (no source given) to a listener on address: the peer it saw."""
    proc = ns.run("python3 - %s" % address, input=CONNECT, check=False, timeout=20)
    assert proc.returncode == 0, 'TCP to %s failed: %s' % (address, proc.stderr)
    return proc.stdout.strip()


def test_node_reaches_its_vips_from_its_node_ip(node, python):
    # Control: with only the kernel's routes the node talks to a VIP from the VIP itself.
    node.run('ip link add %s type %s && ip link set %s up && ip addr add %s/128 dev %s' % (IF, KIND, IF, VIPS6[0], IF))
    assert peer_seen(node, VIPS6[0]) == VIPS6[0]
    vip(node, python=python, adopt=True)  # made by hand above, so not marked as ours
    for address in VIPS:
        assert peer_seen(node, address) == (NODE6 if ':' in address else NODE4), address


# --- exclusive, absent ----------------------------------------------------------

def test_exclusive_removes_unlisted_addresses_with_their_routes_but_not_link_local(node, python):
    vip(node, python=python)
    node.run('ip addr add 10.96.9.9/32 dev {i} && ip addr add fd00:10:96::99/128 dev {i}'.format(i=IF))
    link_local = [a for a in ip_json(node, 'addr show dev %s' % IF)[0]['addr_info'] if a['scope'] == 'link']
    assert link_local
    kept = vip(node, python=python, exclusive=False)
    assert kept['changed'] is False
    assert_vips(node, others=['10.96.9.9/32', 'fd00:10:96::99/128'])
    result = vip(node, python=python)
    assert result['ipv4']['removed'] == ['10.96.9.9'] and result['ipv6']['removed'] == ['fd00:10:96::99']
    assert_vips(node)
    assert routes_to(node, '10.96.9.9') == [] and routes_to(node, 'fd00:10:96::99') == []
    assert [a for a in ip_json(node, 'addr show dev %s' % IF)[0]['addr_info'] if a['scope'] == 'link'] == link_local


def test_absent_removes_listed_then_all_then_the_interface(node, python):
    vip(node, python=python)
    result = vip(node, python=python, state='absent', exclusive=False, addresses=[VIPS4[0], VIPS6[0]], node_ips=[])
    assert result['ipv4']['removed'] == [VIPS4[0]] and result['ipv6']['removed'] == [VIPS6[0]]
    assert routes_to(node, VIPS4[0]) == [] and routes_to(node, VIPS6[0]) == []
    assert_vips(node, vips=[VIPS4[1], VIPS6[1]])
    result = vip(node, python=python, state='absent', addresses=[], node_ips=[])
    assert result['ipv4']['removed'] == [VIPS4[1]] and result['ipv6']['removed'] == [VIPS6[1]]
    assert addresses(node) == [] and link(node) is not None
    assert all(routes_to(node, a) == [] for a in VIPS)
    assert vip(node, python=python, state='absent', addresses=[], node_ips=[])['changed'] is False
    result = vip(node, python=python, state='absent', addresses=[], node_ips=[], delete_interface=True)
    assert result['changed'] is True and result['interface']['deleted'] is True
    assert link(node) is None


def test_absent_with_delete_interface_reports_what_went(node):
    vip(node)
    result = vip(node, state='absent', exclusive=False, addresses=[], delete_interface=True)
    assert result['ipv4']['removed'] == sorted(VIPS4) and len(result['ipv6']['routes_removed']) == len(VIPS6)
    assert link(node) is None
    assert all(routes_to(node, a) == [] for a in VIPS)


def test_vip_with_a_wider_prefix_becomes_a_host_address(node):
    node.run('ip link add {i} type {k} && ip link set {i} up && ip addr add 10.96.0.1/24 dev {i}'.format(i=IF, k=KIND))
    vip(node, addresses=['10.96.0.1'], adopt=True)
    assert_vips(node, vips=['10.96.0.1'])


# --- validation, check mode, diff -----------------------------------------------

@pytest.mark.parametrize('args, message', [
    ({'addresses': ['10.96.0.1', '10.96.0.999']}, "'10.96.0.999'"),
    ({'addresses': ['fd00::1'], 'node_ips': [NODE4]}, 'VIP fd00::1 is ipv6 but node_ips has no ipv6 address'),
    ({'node_ips': [NODE4, '192.168.50.11']}, 'more than one node IP of family ipv4: 192.168.50.10 and 192.168.50.11'),
    ({'node_ips': ['192.168.77.7', NODE6]}, 'node IP 192.168.77.7 is not a local address of this host'),
])
def test_invalid_input_fails_and_changes_nothing(node, args, message):
    vip(node, addresses=[VIPS4[0]])
    before = kernel_snapshot(node)
    result = vip(node, expect_failure=True, **args)
    assert message in result['msg']
    assert kernel_snapshot(node) == before


def test_check_mode_predicts_and_changes_nothing(node, python):
    before = kernel_snapshot(node)
    predicted = vip(node, python=python, check=True, diff=True)
    assert predicted['changed'] is True and predicted['interface']['created'] is True
    assert kernel_snapshot(node) == before
    assert predicted['diff']['before'] == 'interface %s absent\n' % IF
    actual = vip(node, python=python, diff=True)
    for family in ('ipv4', 'ipv6'):
        assert predicted[family]['added'] == actual[family]['added']
    assert actual['diff']['after'].startswith('interface %s %s up\naddress 10.96.0.1/32\n'
                                              '  route local 10.96.0.1 dev %s table local proto kernel scope host src %s\n' % (IF, KIND, IF, NODE4))
    # A repair in check mode is predicted without being made.
    node.run('ip addr del {a}/128 dev {i} && ip addr add {a}/128 dev {i}'.format(a=VIPS6[0], i=IF))
    broken = kernel_snapshot(node)
    repair = vip(node, python=python, check=True, diff=True)
    assert repair['changed'] is True and len(repair['ipv6']['routes_removed']) == 2
    assert '  route %s dev %s proto kernel metric 256\n' % (VIPS6[0], IF) in repair['diff']['before']
    assert 'metric 256' not in repair['diff']['after']
    assert kernel_snapshot(node) == broken


# --- link kinds -----------------------------------------------------------------

@pytest.mark.skipif(not HAS_DUMMY, reason='this kernel has no dummy link type (ip link add type dummy: %s)' % DUMMY_ERROR)
def test_default_link_kind_creates_a_dummy(node):
    node.module('vip', {'addresses': [VIPS4[0]], 'node_ips': [NODE4]})
    assert link(node)['linkinfo']['info_kind'] == 'dummy'


@pytest.mark.parametrize('kind', ['nosuchkind', 'veth'])
def test_link_kinds_other_than_dummy_and_ifb_are_refused_before_any_write(node, kind):
    """veth would leave a second interface (its peer) behind, which nothing of ours owns."""
    before = node.out('ip -d link')
    result = vip(node, link_kind=kind, expect_failure=True)
    assert 'link_kind' in result['msg'] and kind in result['msg'], result['msg']
    assert node.out('ip -d link') == before
