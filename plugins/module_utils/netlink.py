# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service VIPs on a local interface: links, addresses and routes over netlink.

Kernel state is read with one link dump, one address dump and one route dump per
family (pyroute2, filtered here in Python) and turned into plain tuples. Planning is
pure: `plan_link` and `plan_vips` take that data and return the steps to apply, which
`apply_steps` performs as one targeted netlink call each.

The route a VIP needs (kube-router #1698): `local VIP dev IF table local proto kernel
scope host src NODE_IP`, and for IPv6 no other route to VIP/128 in any table. The
kernel adds its own routes for an IPv6 /128 (main table metric 256, local table
metric 0 without src) and re-adds them whenever the address is re-added or the link
comes back up, so every run reconciles from a fresh dump.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import os
import socket
import struct
import time
import traceback

from ansible_collections.clusternet.node.plugins.module_utils.families import (
    FAMILIES,
    FULL_PREFIX,
    IPV4,
    IPV6,
    family_of_version,
    one_per_family,
    parse_address,
)
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock

try:
    from pyroute2 import IPRoute, NetlinkError
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError:
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = traceback.format_exc()

AF = {IPV4: socket.AF_INET, IPV6: socket.AF_INET6}
FAMILY_OF_AF = dict((v, k) for k, v in AF.items())
TABLE_MAIN = 254
TABLE_LOCAL = 255
RTN_UNICAST = 1
RTN_LOCAL = 2
RTPROT_KERNEL = 2
RT_SCOPE_HOST = 254
# The kernel rewrites IPv6 metric 0 to this on add, so our route never replaces its own.
IP6_RT_PRIO_USER = 1024
IFF_UP = 0x1
IFA_F_NODAD = 0x02
# Keeps the kernel from adding the main-table prefix route, on add and on link up.
IFA_F_NOPREFIXROUTE = 0x200
MAX_IFNAME = 15
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 20, 21, 24, 25
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
# Requests per send: their acks must fit the socket's default receive buffer.
CHUNK = 100
ACK_TIMEOUT = 30
NLMSG_ERROR_HEADER = struct.Struct('=IHHIIi')
# How long to wait for the kernel's IPv6 local routes of new addresses to appear.
SETTLE_TIMEOUT = 5.0

TABLE_NAMES = {TABLE_MAIN: 'main', TABLE_LOCAL: 'local'}
TYPE_NAMES = {RTN_UNICAST: '', RTN_LOCAL: 'local', 3: 'broadcast', 4: 'anycast', 5: 'multicast', 6: 'blackhole', 7: 'unreachable', 8: 'prohibit'}
PROTO_NAMES = {RTPROT_KERNEL: 'kernel', 3: 'boot', 4: 'static'}
SCOPE_NAMES = {0: 'global', 200: 'site', 253: 'link', RT_SCOPE_HOST: 'host'}

Link = collections.namedtuple('Link', 'index name kind up')
Address = collections.namedtuple('Address', 'family ip prefixlen index')
Route = collections.namedtuple('Route', 'family table type proto scope dst dst_len oif prefsrc priority')
Step = collections.namedtuple('Step', 'action item')

ADDR_ADD = 'address add'
ADDR_DEL = 'address del'
ROUTE_REPLACE = 'route replace'
ROUTE_DEL = 'route del'
# Errors that mean the kernel already is as the step wants it (another writer got there).
TOLERATED = {ADDR_ADD: errno.EEXIST, ADDR_DEL: errno.EADDRNOTAVAIL, ROUTE_DEL: errno.ESRCH}


# --- validation -------------------------------------------------------------

def validate(params):
    """All input checks that need no kernel: returns (vips, node_ips by family)."""
    name = params['interface']
    if not name or len(name) > MAX_IFNAME or '/' in name or any(c.isspace() for c in name):
        raise ValueError('invalid interface name %r: 1 to %d characters, no "/" or whitespace' % (name, MAX_IFNAME))
    vips = []
    for value in params['addresses']:
        vip = parse_address(value, 'VIP address')
        if vip not in vips:
            vips.append(vip)
    node_ips = one_per_family([parse_address(v, 'node IP') for v in params['node_ips']], 'node IP')
    if params['state'] == 'present':
        for vip in vips:
            family = family_of_version(vip.version)
            if family not in node_ips:
                raise ValueError('VIP %s is %s but node_ips has no %s address to source its route from' % (vip, family, family))
            if vip == node_ips[family]:
                raise ValueError('VIP %s is also a node IP' % vip)
    return vips, node_ips


def check_node_ips(node_ips, addresses, index, ifname):
    """Each node IP must be a local address of an interface other than the VIPs' own."""
    for node_ip in node_ips.values():
        holders = set(a.index for a in addresses if a.ip == node_ip)
        if not holders - set([index]):
            raise ValueError('node IP %s is not a local address of this host (outside %s)' % (node_ip, ifname))


# --- pure planning ----------------------------------------------------------

def vip_route(vip, oif, node_ip):
    """The one route a VIP must have."""
    family = family_of_version(vip.version)
    return Route(family, TABLE_LOCAL, RTN_LOCAL, RTPROT_KERNEL, RT_SCOPE_HOST, vip, FULL_PREFIX[family], oif,
                 node_ip, 0 if family == IPV4 else IP6_RT_PRIO_USER)


def kernel_local_route(vip, oif):
    """The route the kernel adds to the local table for an address."""
    if vip.version == 4:
        return Route(IPV4, TABLE_LOCAL, RTN_LOCAL, RTPROT_KERNEL, RT_SCOPE_HOST, vip, 32, oif, vip, 0)
    return Route(IPV6, TABLE_LOCAL, RTN_LOCAL, RTPROT_KERNEL, 0, vip, 128, oif, None, 0)


def same_route(a, b):
    # IPv6 routes carry no scope in the kernel: a dump always says 0.
    if a.family == IPV6:
        return a._replace(scope=0) == b._replace(scope=0)
    return a == b


def routes_of(routes, ip, index):
    """Routes that belong to a VIP: to ip/32 on its interface; for IPv6 to ip/128 anywhere."""
    full = FULL_PREFIX[family_of_version(ip.version)]
    return [r for r in routes if r.dst == ip and r.dst_len == full and (r.family == IPV6 or r.oif == index)]


def managed_addresses(addresses, index):
    """Addresses on the VIP interface that this module manages: all but IPv6 link-local."""
    if index is None:
        return []
    return [a for a in addresses if a.index == index and not (a.family == IPV6 and a.ip.is_link_local)]


def plan_link(link, state, delete_interface):
    """Link steps: 'create', 'up' (present) or 'delete' (absent), in order."""
    if state == 'present':
        if link is None:
            return ['create', 'up']
        return [] if link.up else ['up']
    return ['delete'] if link is not None and delete_interface else []


def plan_vips(index, addresses, routes, vips, node_ips, exclusive, state, delete_interface=False):
    """Steps that bring the VIP interface's addresses and the VIPs' routes in line.

    index: the interface's ifindex, None when it does not exist (check mode);
    addresses, routes: Address and Route tuples from the dumps (all links, both families);
    vips: parsed VIPs without duplicates; node_ips: {family: address}.
    Returns (steps, changes) with changes[family] = {added, removed, routes_added,
    routes_removed}, each a list of Address or Route tuples that existed before the run
    or will exist after it (a route the kernel adds and this run deletes is in neither).
    """
    changes = dict((f, {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}) for f in FAMILIES)
    steps = []
    managed = managed_addresses(addresses, index)
    if state == 'present':
        remove = [a for a in managed if (a.ip in vips and a.prefixlen != FULL_PREFIX[a.family]) or (a.ip not in vips and exclusive)]
    else:
        remove = [a for a in managed if exclusive or delete_interface or a.ip in vips]
    gone = set()
    for address in remove:
        change = changes[address.family]
        for route in routes_of(routes, address.ip, index):
            if route.oif == index:
                gone.add(route)
                change['routes_removed'].append(route)
                if not delete_interface:
                    steps.append(Step(ROUTE_DEL, route))
        change['removed'].append(address)
        if not delete_interface:
            steps.append(Step(ADDR_DEL, address))
    if state == 'absent':
        return steps, changes
    kept = set(a.ip for a in managed if a not in remove)
    for vip in vips:
        family = family_of_version(vip.version)
        change = changes[family]
        desired = vip_route(vip, index, node_ips[family])
        new = vip not in kept
        if new:
            address = Address(family, vip, FULL_PREFIX[family], index)
            change['added'].append(address)
            steps.append(Step(ADDR_ADD, address))
        current = [r for r in routes_of(routes, vip, index) if r not in gone]
        replacing = not any(same_route(r, desired) for r in current)
        if replacing:
            # A replace takes the place of the first route with the same table and metric.
            replaced = [r for r in current if r.table == TABLE_LOCAL and r.priority == desired.priority][:1]
            change['routes_removed'].extend(replaced)
            change['routes_added'].append(desired)
            steps.append(Step(ROUTE_REPLACE, desired))
            current = [r for r in current if r not in replaced]
        # Ours is in place before any other route goes, so the VIP stays reachable.
        for route in current:
            if not same_route(route, desired):
                change['routes_removed'].append(route)
                steps.append(Step(ROUTE_DEL, route))
        # The kernel's IPv4 route for a new address (added at once): a replace takes its place,
        # unless ours was left over. IPv6 ones appear later and are left to settle().
        if new and family == IPV4 and not replacing:
            steps.append(Step(ROUTE_DEL, kernel_local_route(vip, index)))
    return steps, changes


def awaited_routes(vips, added, routes, index, link_brought_up):
    """IPv6 VIPs whose kernel local route is still to come. The kernel adds it from a work
    queue after the address add returns (nodad too), and again after the link comes up, so a
    dump taken right after may not show it yet, and a delete sent then would hit ours."""
    awaited = set(a.ip for a in added if a.family == IPV6)
    if link_brought_up:
        seen = set(r.dst for r in routes if r == kernel_local_route(r.dst, index))
        awaited |= set(v for v in vips if v.version == 6) - seen
    return awaited


def render_address(address):
    return '%s/%d' % (address.ip, address.prefixlen)


def render_route(route, names):
    """A route as `ip route` prints it; names maps ifindex -> name."""
    words = [w for w in (TYPE_NAMES.get(route.type, str(route.type)),) if w]
    dst = str(route.dst) if route.dst is not None else 'default'
    words.append(dst if route.dst_len == FULL_PREFIX[route.family] else '%s/%d' % (dst, route.dst_len))
    words += ['dev', names.get(route.oif, str(route.oif))]
    if route.table != TABLE_MAIN:
        words += ['table', TABLE_NAMES.get(route.table, str(route.table))]
    words += ['proto', PROTO_NAMES.get(route.proto, str(route.proto))]
    if route.family == IPV4 and route.scope:
        words += ['scope', SCOPE_NAMES.get(route.scope, str(route.scope))]
    if route.prefsrc is not None:
        words += ['src', str(route.prefsrc)]
    if route.priority or route.family == IPV6:
        words += ['metric', str(route.priority)]
    return ' '.join(words)


def render_state(link_line, addresses, routes, names):
    """Diff text: the link, then each address followed by its routes, sorted."""
    lines = [link_line]
    for address in sorted(addresses, key=lambda a: (a.ip.version, a.ip)):
        lines.append('address %s' % render_address(address))
        lines.extend(sorted('  route %s' % render_route(r, names) for r in routes if r.dst == address.ip))
    return '\n'.join(lines) + '\n'


def summarize(changes, names):
    """Result per family: VIPs as bare addresses, routes as `ip route` lines, sorted."""
    out = {}
    for family, change in changes.items():
        out[family] = {
            'added': [str(a.ip) for a in sorted(change['added'], key=lambda a: a.ip)],
            'removed': [str(a.ip) for a in sorted(change['removed'], key=lambda a: a.ip)],
            'routes_added': sorted(render_route(r, names) for r in change['routes_added']),
            'routes_removed': sorted(render_route(r, names) for r in change['routes_removed']),
        }
    return out


# --- netlink messages <-> tuples --------------------------------------------

def _attr(msg, name, default=None):
    value = msg.get_attr(name)
    return default if value is None else value


def link_from_msg(msg):
    info = msg.get_attr('IFLA_LINKINFO')
    kind = info.get_attr('IFLA_INFO_KIND') if info is not None else None
    return Link(msg['index'], msg.get_attr('IFLA_IFNAME'), kind, bool(msg['flags'] & IFF_UP))


def address_from_msg(msg):
    family = FAMILY_OF_AF.get(msg['family'])
    if family is None:
        return None
    text = _attr(msg, 'IFA_LOCAL') or msg.get_attr('IFA_ADDRESS')
    return Address(family, parse_address(text), msg['prefixlen'], msg['index'])


def route_from_msg(msg):
    """Host routes only (dst_len = 32 or 128): the only ones a VIP can own."""
    family = FAMILY_OF_AF.get(msg['family'])
    if family is None or msg['dst_len'] != FULL_PREFIX[family]:
        return None
    prefsrc = msg.get_attr('RTA_PREFSRC')
    return Route(family, _attr(msg, 'RTA_TABLE', msg['table']), msg['type'], msg['proto'], msg['scope'],
                 parse_address(msg.get_attr('RTA_DST')), msg['dst_len'], msg.get_attr('RTA_OIF'),
                 parse_address(prefsrc) if prefsrc else None, _attr(msg, 'RTA_PRIORITY', 0))


def encode_step(step, seq):
    """One step as one netlink request, encoded by pyroute2's message classes.
    Metric 0 is left out: on delete the kernel reads no metric as 'any' and picks the
    lowest, while an explicit IPv6 0 would be turned into 1024."""
    item = step.item
    if step.action in (ADDR_ADD, ADDR_DEL):
        msg = ifaddrmsg()
        msg['family'], msg['prefixlen'], msg['index'] = AF[item.family], item.prefixlen, item.index
        msg['attrs'] = [('IFA_LOCAL', str(item.ip)), ('IFA_ADDRESS', str(item.ip))]
        if step.action == ADDR_ADD and item.family == IPV6:
            msg['flags'] = IFA_F_NODAD
            msg['attrs'].append(('IFA_FLAGS', IFA_F_NODAD | IFA_F_NOPREFIXROUTE))
        msg_type, flags = (RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL) if step.action == ADDR_ADD else (RTM_DELADDR, 0)
    else:
        msg = rtmsg()
        msg['family'], msg['dst_len'] = AF[item.family], item.dst_len
        msg['table'] = item.table if item.table < 256 else 252  # RT_TABLE_COMPAT: RTA_TABLE has the real one
        msg['type'], msg['proto'], msg['scope'] = item.type, item.proto, item.scope
        msg['attrs'] = [('RTA_TABLE', item.table), ('RTA_DST', str(item.dst)), ('RTA_OIF', item.oif)]
        if item.prefsrc is not None:
            msg['attrs'].append(('RTA_PREFSRC', str(item.prefsrc)))
        if item.priority:
            msg['attrs'].append(('RTA_PRIORITY', item.priority))
        msg_type, flags = (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE) if step.action == ROUTE_REPLACE else (RTM_DELROUTE, 0)
    msg['header']['type'] = msg_type
    msg['header']['flags'] = NLM_F_REQUEST | NLM_F_ACK | flags
    msg['header']['sequence_number'] = seq
    msg.encode()
    return bytes(msg.data)


def parse_acks(data):
    """(sequence number, errno) of each ack in a receive buffer; errno 0 is success."""
    acks, offset = [], 0
    while offset + NLMSG_ERROR_HEADER.size <= len(data):
        length, msg_type, _flags, seq, _pid, error = NLMSG_ERROR_HEADER.unpack_from(data, offset)
        if msg_type == NLMSG_ERROR:
            acks.append((seq, -error))
        offset += ((length + 3) & ~3) or len(data)
    return acks


# --- kernel I/O ---------------------------------------------------------------

def read_links(ipr):
    return [link_from_msg(m) for m in ipr.get_links()]


def read_routes(ipr, families=FAMILIES):
    """One route dump per family, host routes only, each once: a dump taken while the kernel
    inserts routes can list one twice, and a second metric-less delete would hit ours."""
    routes = (route_from_msg(m) for family in families for m in ipr.get_routes(family=AF[family]))
    return list(dict.fromkeys(r for r in routes if r is not None))


def read_state(ipr):
    """One address dump (both families) and one route dump per family."""
    addresses = [a for a in (address_from_msg(m) for m in ipr.get_addr()) if a is not None]
    routes = read_routes(ipr)
    return addresses, routes


def apply_link(ipr, steps, ifname, kind, index):
    """Returns the interface's index after the steps (None once deleted)."""
    for step in steps:
        if step == 'create':
            ipr.link('add', ifname=ifname, kind=kind)
            index = ipr.link_lookup(ifname=ifname)[0]
        elif step == 'up':
            ipr.link('set', index=index, state='up')
        else:
            ipr.link('del', index=index)
            index = None
    return index


def apply_steps(steps, names):
    """Send the steps in order, CHUNK requests per send, and check every request's ack.
    Stops after the first chunk with an error other than a TOLERATED one."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.settimeout(ACK_TIMEOUT)  # a lost ack (ENOBUFS) must end in an error, not a hang
    try:
        sock.bind((0, 0))
        for start in range(0, len(steps), CHUNK):
            chunk = steps[start:start + CHUNK]
            sock.send(b''.join(encode_step(step, start + i + 1) for i, step in enumerate(chunk)))
            errors, pending = [], len(chunk)
            while pending:
                for seq, code in parse_acks(sock.recv(65536)):
                    pending -= 1
                    step = steps[seq - 1]
                    if code and TOLERATED.get(step.action) != code:
                        errors.append((step, code))
            if errors:
                step, code = errors[0]
                what = render_address(step.item) if step.action in (ADDR_ADD, ADDR_DEL) else render_route(step.item, names)
                raise RuntimeError('%s %s failed: %s' % (step.action, what, os.strerror(code)))
    finally:
        sock.close()


def settle(ipr, index, awaited, names, timeout=SETTLE_TIMEOUT):
    """Delete the kernel's IPv6 local routes of the awaited VIPs as they appear, one route
    dump per pass. Returns the VIPs still awaited when the timeout ran out."""
    awaited = set(awaited)
    deadline = time.monotonic() + timeout
    while awaited:
        found = [r for r in read_routes(ipr, (IPV6,)) if r.dst in awaited and r == kernel_local_route(r.dst, index)]
        apply_steps([Step(ROUTE_DEL, r) for r in found], names)
        awaited -= set(r.dst for r in found)
        if awaited:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.005)
    return awaited


# --- the module's run ---------------------------------------------------------

def _link_line(ifname, link):
    if link is None:
        return 'interface %s absent' % ifname
    return 'interface %s %s%s' % (ifname, link.kind or 'unknown', ' up' if link.up else ' down')


def run(module):
    """Validate, then under the host lock: link, one dump, plan, apply. Returns the result."""
    from ansible.module_utils.basic import missing_required_lib
    if not HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib('pyroute2'), exception=PYROUTE2_IMPORT_ERROR)
    params = module.params
    ifname, state = params['interface'], params['state']
    try:
        vips, node_ips = validate(params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    ipr = IPRoute()
    try:
        with host_lock(module):
            return _reconcile(module, ipr, ifname, state, vips, node_ips)
    finally:
        ipr.close()


def _reconcile(module, ipr, ifname, state, vips, node_ips):
    params = module.params
    links = read_links(ipr)
    link = next((candidate for candidate in links if candidate.name == ifname), None)
    index = link.index if link else None
    before_addresses, before_routes = read_state(ipr)
    if state == 'present':
        try:
            check_node_ips(node_ips, before_addresses, index, ifname)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
    link_steps = plan_link(link, state, params['delete_interface'])
    if link_steps and not module.check_mode and state == 'present':
        try:
            index = apply_link(ipr, link_steps, ifname, params['link_kind'], index)
        except NetlinkError as exc:
            module.fail_json(msg='cannot create or bring up interface %s (kind %s): %s' % (ifname, params['link_kind'], exc))
        # Bringing a link up makes the kernel re-add its routes: plan from what it did.
        addresses, routes = read_state(ipr)
    else:
        addresses, routes = before_addresses, before_routes
    steps, changes = plan_vips(index, addresses, routes, vips, node_ips, params['exclusive'], state,
                               delete_interface='delete' in link_steps)
    names = dict((each.index, each.name) for each in links)
    names[index] = ifname
    if not module.check_mode:
        awaited = awaited_routes(vips, changes[IPV6]['added'], routes, index, 'up' in link_steps) if state == 'present' else ()
        try:
            apply_steps(steps, names)
            if 'delete' in link_steps:
                apply_link(ipr, link_steps, ifname, params['link_kind'], index)
            late = settle(ipr, index, awaited, names)
        except (RuntimeError, NetlinkError, OSError) as exc:
            module.fail_json(msg='netlink: %s' % exc)
        if late:
            module.warn('the kernel had not added its local routes for %s within %ss; the next run removes them'
                        % (', '.join(sorted(str(v) for v in late)), SETTLE_TIMEOUT))
    result = dict(summarize(changes, names))
    result['interface'] = {'name': ifname, 'created': 'create' in link_steps, 'set_up': 'up' in link_steps,
                           'deleted': 'delete' in link_steps}
    result['changed'] = bool(link_steps or steps)
    if module._diff:
        result['diff'] = _diff(ifname, params['link_kind'], link, link_steps, index, before_addresses, before_routes, changes, names)
    return result


def _diff(ifname, kind, link, link_steps, index, addresses, routes, changes, names):
    old_index = link.index if link else None
    before_addresses = managed_addresses(addresses, old_index)
    before_routes = set(r for a in before_addresses for r in routes_of(routes, a.ip, old_index))
    after_addresses = [a for a in before_addresses if not any(a in c['removed'] for c in changes.values())]
    after_routes = set(before_routes)
    for change in changes.values():
        after_addresses += change['added']
        after_routes = (after_routes - set(change['routes_removed'])) | set(change['routes_added'])
    if 'delete' in link_steps:
        after_link = None
    elif link_steps:
        after_link = Link(index, ifname, link.kind if link else kind, True)
    else:
        after_link = link
    return {'before': render_state(_link_line(ifname, link), before_addresses, before_routes, names),
            'after': render_state(_link_line(ifname, after_link), after_addresses, after_routes, names)}
