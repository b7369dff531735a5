# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service VIPs on a local interface: links, addresses and routes over netlink.

The engine: validate, read, own, plan, render, apply, run. Kernel state is read with one
link dump, one address dump and one route dump per family, as plain tuples (netlink.py
holds that plumbing and the request encoding). `own_routes` alone says which routes are
ours; the checks refuse on the foreign ones, and planning is pure: `plan_link` and
`plan_vips` take that data and return the steps to apply, which `apply_steps` sends as
batched netlink requests, one per step.

The route a VIP needs (kube-router #1698): `local VIP dev IF table local proto kernel
scope host src NODE_IP`, and no other route to the VIP on its interface. The kernel
adds its own routes for an IPv6 /128 (main table metric 256, local table metric 0
without src) and re-adds them whenever the address is re-added or the link comes back
up, so every run reconciles from a fresh dump.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import time

from ansible_collections.clusternet.node.plugins.module_utils import netlink
from ansible_collections.clusternet.node.plugins.module_utils.families import (
    FAMILIES,
    FULL_PREFIX,
    IPV4,
    IPV6,
    family_of_version,
    one_per_family,
    parse_unicast,
)
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock
from ansible_collections.clusternet.node.plugins.module_utils.names import check_interface_name
from ansible_collections.clusternet.node.plugins.module_utils.netlink import (
    ADDR_ADD,
    ADDR_DEL,
    ROUTE_DEL,
    ROUTE_REPLACE,
    RT_SCOPE_HOST,
    RTN_ANYCAST,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_UNICAST,
    RTPROT_KERNEL,
    TABLE_LOCAL,
    TABLE_MAIN,
    Address,
    Link,
    Route,
    Step,
    read_links,
    read_routes,
    read_state,
)

# The kernel rewrites IPv6 metric 0 to this on add, so our route never replaces its own.
IP6_RT_PRIO_USER = 1024
# How long to wait for the kernel's IPv6 local routes of new addresses to appear.
SETTLE_TIMEOUT = 5.0
# The alias (IFLA_IFALIAS) of an interface this collection created or adopted: it says, across
# runs and releases, which interface is ours. The kernel ignores an alias in the create request,
# so it is set right after.
MARKER = 'clusternet.node'
# Route types by which the host accepts traffic to an address as its own.
LOCAL_TYPES = (RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST)

TABLE_NAMES = {TABLE_MAIN: 'main', TABLE_LOCAL: 'local'}
TYPE_NAMES = {RTN_UNICAST: '', RTN_LOCAL: 'local', RTN_BROADCAST: 'broadcast', RTN_ANYCAST: 'anycast',
              5: 'multicast', 6: 'blackhole', 7: 'unreachable', 8: 'prohibit'}
PROTO_NAMES = {RTPROT_KERNEL: 'kernel', 3: 'boot', 4: 'static'}
SCOPE_NAMES = {0: 'global', 200: 'site', 253: 'link', RT_SCOPE_HOST: 'host'}


# --- validation -------------------------------------------------------------

def validate(params):
    """All input checks that need no kernel: returns (vips, node_ips by family). VIPs and
    node IPs must be unicast host addresses (no loopback, link-local, multicast, zone id, ...)."""
    check_interface_name(params['interface'])
    # Order kept, duplicates dropped: a dict, as a list lookup is quadratic at fleet sizes.
    vips = list(dict.fromkeys(parse_unicast(value, 'VIP address') for value in params['addresses']))
    node_ips = one_per_family([parse_unicast(v, 'node IP') for v in params['node_ips']], 'node IP')
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


def check_owner(link, adopt):
    """The interface may be managed: it does not exist yet, or carries our MARKER, or the user
    adopts it. The loopback interface never: its own addresses would go."""
    if link is None:
        return
    if link.loopback:
        raise ValueError('interface %s is the loopback interface: the vip module never manages it, not even with adopt'
                         % link.name)
    if link.alias != MARKER and not adopt:
        raise ValueError('interface %s was not created by this collection (its alias is %s, not %r): '
                         'set adopt: true to let the vip module manage it and its addresses'
                         % (link.name, repr(link.alias) if link.alias else 'unset', MARKER))


def check_not_local_elsewhere(vips, addresses, foreign, index, names):
    """No VIP may be an address the host already owns on another interface (an address,
    or a foreign local, broadcast or anycast route, such as a subnet's broadcast address):
    the VIP's route would take that route's place, and removing the VIP later would leave
    the host without it. foreign: {dst: [routes]}, from own_routes."""
    wanted = set(vips)  # one pass over the address dump: thousands of VIPs meet thousands of addresses
    holders = collections.defaultdict(set)
    for address in addresses:
        if address.ip in wanted and address.index != index:
            holders[address.ip].add(names.get(address.index, str(address.index)))
    for vip in vips:
        if vip in holders:
            raise ValueError('VIP %s is already an address of %s on this host: refusing to take it over as a VIP'
                             % (vip, ', '.join(sorted(holders[vip]))))
        claim = next((r for r in foreign.get(vip, ()) if r.type in LOCAL_TYPES), None)
        if claim:
            raise ValueError('VIP %s is already local to this host (%s): refusing to take it over as a VIP'
                             % (vip, render_route(claim, names)))


def check_local_table_free(vips, foreign, names):
    """No foreign route to a VIP may be in table local, where the VIP's route goes. The host
    looks that table up before any other, so a foreign route there either has our route's
    key (our replace would overwrite it) or competes with ours by metric (a lower one wins,
    as the kernel's did in kube-router #1698). Foreign routes in other tables are kept: the
    local route decides the host's own traffic to the VIP whatever they say."""
    for vip in vips:
        route = next((r for r in foreign.get(vip, ()) if r.table == TABLE_LOCAL), None)
        if route:
            raise ValueError('VIP %s is already routed in table local by a route this module did not write (%s): '
                             'refusing to replace or shadow it' % (vip, render_route(route, names)))


def check_kernel(link, addresses, foreign, vips, node_ips, params, names):
    """The checks that need the dumps, all before the first write. foreign: the foreign
    routes from own_routes."""
    check_owner(link, params['adopt'])
    if params['state'] == 'present':
        index = link.index if link else None
        foreign = by_destination(foreign)
        check_node_ips(node_ips, addresses, index, params['interface'])
        check_not_local_elsewhere(vips, addresses, foreign, index, names)
        check_local_table_free(vips, foreign, names)


# --- ownership ----------------------------------------------------------------

Owned = collections.namedtuple('Owned', 'ours foreign')


def own_routes(routes, index):
    """The one place that says which routes are ours. A route read (a route to a host
    address, see netlink.route_from_msg) is ours when it leaves through the VIP interface,
    index (None when that interface does not exist): the local route this module writes and
    the routes the kernel adds there for an address (kube-router #1698). Every other route
    is foreign, whatever its table, type or device: no step ever writes one, and the checks
    refuse a VIP that one collides with. Returns Owned(ours, foreign), two lists."""
    ours, foreign = [], []
    for route in routes:
        (ours if index is not None and route.oif == index else foreign).append(route)
    return Owned(ours, foreign)


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


def by_destination(routes):
    """{dst: [routes to it]}: built once per plan, so looking up thousands of VIPs stays linear."""
    out = {}
    for route in routes:
        out.setdefault(route.dst, []).append(route)
    return out


def managed_addresses(addresses, index):
    """Addresses on the VIP interface that this module manages: all but IPv6 link-local."""
    if index is None:
        return []
    return [a for a in addresses if a.index == index and not (a.family == IPV6 and a.ip.is_link_local)]


def plan_link(link, state, delete_interface):
    """Link steps, in order: 'create' (with our MARKER), 'mark' (an adopted interface, see
    check_owner), 'up'; or 'delete'."""
    if link is None:
        return ['create', 'up'] if state == 'present' else []
    if state == 'absent' and delete_interface:
        return ['delete']
    steps = ['mark'] if link.alias != MARKER else []
    return steps + ['up'] if state == 'present' and not link.up else steps


def plan_vips(index, addresses, ours, vips, node_ips, exclusive, state, delete_interface=False):
    """Steps that bring the VIP interface's addresses and the VIPs' routes in line.

    index: the interface's ifindex, None when it does not exist (check mode);
    addresses: Address tuples from the dump (all links, both families);
    ours: the routes own_routes says are ours, the only ones a step may touch;
    vips: parsed VIPs without duplicates; node_ips: {family: address}.
    Returns (steps, changes) with changes[family] = {added, removed, routes_added,
    routes_removed}, each a list of Address or Route tuples that existed before the run
    or will exist after it (a route the kernel adds and this run deletes is in neither).
    """
    changes = dict((f, {'added': [], 'removed': [], 'routes_added': [], 'routes_removed': []}) for f in FAMILIES)
    steps = []
    ours = by_destination(ours)
    wanted = set(vips)
    managed = managed_addresses(addresses, index)
    if state == 'present':
        remove = [a for a in managed if (a.ip in wanted and a.prefixlen != FULL_PREFIX[a.family]) or (a.ip not in wanted and exclusive)]
    else:
        remove = [a for a in managed if exclusive or delete_interface or a.ip in wanted]
    gone = set()
    for address in remove:
        change = changes[address.family]
        for route in ours.get(address.ip, ()):
            gone.add(route)
            change['routes_removed'].append(route)
            if not delete_interface:
                steps.append(Step(ROUTE_DEL, route))
        change['removed'].append(address)
        if not delete_interface:
            steps.append(Step(ADDR_DEL, address))
    if state == 'absent':
        return steps, changes
    removed = set(remove)
    kept = set(a.ip for a in managed if a not in removed)
    for vip in vips:
        family = family_of_version(vip.version)
        change = changes[family]
        desired = vip_route(vip, index, node_ips[family])
        new = vip not in kept
        if new:
            address = Address(family, vip, FULL_PREFIX[family], index)
            change['added'].append(address)
            steps.append(Step(ADDR_ADD, address))
        current = [r for r in ours.get(vip, ()) if r not in gone]
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


def awaited_routes(vips, added, ours, index, link_brought_up):
    """IPv6 VIPs whose kernel local route is still to come. The kernel adds it from a work
    queue after the address add returns (nodad too), and again after the link comes up, so a
    dump taken right after may not show it yet, and a delete sent then would hit ours."""
    awaited = set(a.ip for a in added if a.family == IPV6)
    if link_brought_up:
        seen = set(r.dst for r in ours if r == kernel_local_route(r.dst, index))
        awaited |= set(v for v in vips if v.version == 6) - seen
    return awaited


def render_address(address):
    return '%s/%d' % (address.ip, address.prefixlen)


def render_step(step, names):
    """A step as the `ip` command that would make it."""
    if isinstance(step.item, Address):
        return '%s %s dev %s' % (step.action, render_address(step.item), names.get(step.item.index, step.item.index))
    return '%s %s' % (step.action, render_route(step.item, names))


def render_route(route, names):
    """A route as `ip route` prints it; names maps ifindex -> name."""
    words = [w for w in (TYPE_NAMES.get(route.type, str(route.type)),) if w]
    dst = str(route.dst) if route.dst is not None else 'default'
    words.append(dst if route.dst_len == FULL_PREFIX[route.family] else '%s/%d' % (dst, route.dst_len))
    if route.oif is not None:  # a blackhole, unreachable or prohibit IPv4 route has no device
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
    routes = by_destination(routes)
    for address in sorted(addresses, key=lambda a: (a.ip.version, a.ip)):
        lines.append('address %s' % render_address(address))
        lines.extend(sorted('  route %s' % render_route(r, names) for r in routes.get(address.ip, ())))
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


# --- kernel I/O ---------------------------------------------------------------

def waves(steps):
    """The steps in waves: wave n holds the n-th step of each address, in plan order.
    Steps of one address depend on those before them (ours replaces the kernel's route
    before the kernel's is deleted); steps of different addresses do not. Sending a wave
    only after the one before was acked without error stops each address at its first
    failure, while one wave still goes in as few sends as the whole plan would."""
    out = []
    depth = collections.Counter()
    for step in steps:
        key = step.item.ip if isinstance(step.item, Address) else step.item.dst
        if depth[key] == len(out):
            out.append([])
        out[depth[key]].append(step)
        depth[key] += 1
    return out


class ApplyError(Exception):
    """A write failed; the message names it, applied lists what the run did before."""


def apply_link(ipr, steps, ifname, kind, index, applied):
    """Returns the interface's index after the steps (None once deleted). Each request
    done is appended to applied as its `ip link` command."""
    for step in steps:
        if step == 'create':
            _link(ipr, applied, 'link add %s type %s' % (ifname, kind), 'add', ifname=ifname, kind=kind)
            index = ipr.link_lookup(ifname=ifname)[0]
        if step in ('create', 'mark'):
            _link(ipr, applied, 'link set %s alias %s' % (ifname, MARKER), 'set', index=index, ifalias=MARKER)
        elif step == 'up':
            _link(ipr, applied, 'link set %s up' % ifname, 'set', index=index, state='up')
        elif step == 'delete':
            _link(ipr, applied, 'link del %s' % ifname, 'del', index=index)
            index = None
    return index


def _link(ipr, applied, text, command, **args):
    try:
        ipr.link(command, **args)
    except netlink.NetlinkError as exc:
        raise ApplyError('%s failed: %s' % (text, os.strerror(exc.code) if exc.code else exc)) from None
    applied.append(text)


def apply_steps(steps, names, applied):
    """Send the steps wave by wave (see waves); each step done is appended to applied as
    its `ip` command. A failure raises ApplyError naming the step and its value."""
    for wave in waves(steps):
        try:
            done = netlink.send_steps(wave)
        except netlink.StepError as exc:
            applied.extend(render_step(step, names) for step in exc.applied)
            if exc.unknown:
                raise ApplyError('no answer from the kernel within %ds for %s (and %d more requests), their effect is unknown: %s'
                                 % (netlink.ACK_TIMEOUT, render_step(exc.step, names), len(exc.unknown) - 1,
                                    os.strerror(exc.code))) from None
            raise ApplyError('%s failed: %s%s' % (render_step(exc.step, names), os.strerror(exc.code),
                                                  ' (%s)' % exc.text if exc.text else '')) from None
        applied.extend(render_step(step, names) for step in done)


def read(what, function, *args):
    """A dump; its failure becomes an ApplyError that says what was being read."""
    try:
        return function(*args)
    except (netlink.NetlinkError, OSError) as exc:
        raise ApplyError('reading %s over netlink failed: %s' % (what, exc)) from None


def settle(ipr, index, awaited, names, applied, timeout=SETTLE_TIMEOUT):
    """Delete the kernel's IPv6 local routes of the awaited VIPs as they appear, one route
    dump per pass. Returns the VIPs still awaited when the timeout ran out."""
    awaited = set(awaited)
    deadline = time.monotonic() + timeout
    while awaited:
        found = [r for r in read('the IPv6 routes', read_routes, ipr, (IPV6,))
                 if r.dst in awaited and r == kernel_local_route(r.dst, index)]
        apply_steps([Step(ROUTE_DEL, r) for r in found], names, applied)
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
    return 'interface %s %s%s%s' % (ifname, link.kind or 'unknown', ' up' if link.up else ' down',
                                    '' if link.alias == MARKER else ' (not marked as ours)')


def run(module):
    """Validate, then under the host lock: one dump, kernel checks, link, plan, apply.
    Returns the result; every failure names its value, and one after a write lists in
    `applied` what the run did."""
    from ansible.module_utils.basic import missing_required_lib
    if not netlink.HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib('pyroute2'), exception=netlink.PYROUTE2_IMPORT_ERROR)
    try:
        vips, node_ips = validate(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    applied = []
    try:
        ipr = netlink.IPRoute()
    except (netlink.NetlinkError, OSError) as exc:
        module.fail_json(msg='cannot open a netlink socket: %s' % exc)
    try:
        with host_lock(module):
            return _reconcile(module, ipr, vips, node_ips, applied)
    except ApplyError as exc:
        module.fail_json(msg='%s; the run stopped there. Changes the kernel acknowledged before: %s'
                         % (exc, '%d, listed in applied' % len(applied) if applied else 'none'), applied=applied)
    finally:
        ipr.close()


def _reconcile(module, ipr, vips, node_ips, applied):
    params = module.params
    ifname, state = params['interface'], params['state']
    links = read('the links', read_links, ipr)
    link = next((candidate for candidate in links if candidate.name == ifname), None)
    index = link.index if link else None
    before_addresses, before_routes = read('the addresses and routes', read_state, ipr)
    names = dict((each.index, each.name) for each in links)
    try:
        check_kernel(link, before_addresses, own_routes(before_routes, index).foreign, vips, node_ips, params, names)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    link_steps = plan_link(link, state, params['delete_interface'])
    addresses, routes = before_addresses, before_routes
    if link_steps and not module.check_mode and 'delete' not in link_steps:
        try:
            index = apply_link(ipr, link_steps, ifname, params['link_kind'], index, applied)
        except ApplyError as exc:
            if 'create' in link_steps:
                raise ApplyError('cannot create or bring up interface %s (kind %s): %s' % (ifname, params['link_kind'], exc)) from None
            raise
        if 'up' in link_steps:
            # Bringing a link up makes the kernel re-add its routes: plan from what it did.
            addresses, routes = read('the addresses and routes', read_state, ipr)
    ours = own_routes(routes, index).ours
    steps, changes = plan_vips(index, addresses, ours, vips, node_ips, params['exclusive'], state,
                               delete_interface='delete' in link_steps)
    names[index] = ifname
    if not module.check_mode:
        awaited = awaited_routes(vips, changes[IPV6]['added'], ours, index, 'up' in link_steps) if state == 'present' else ()
        apply_steps(steps, names, applied)
        if 'delete' in link_steps:
            apply_link(ipr, link_steps, ifname, params['link_kind'], index, applied)
        late = settle(ipr, index, awaited, names, applied)
        if late:
            module.warn('the kernel had not added its local routes for %s within %ss; the next run removes them'
                        % (', '.join(sorted(str(v) for v in late)), SETTLE_TIMEOUT))
    result = dict(summarize(changes, names))
    result['interface'] = {'name': ifname, 'created': 'create' in link_steps, 'adopted': 'mark' in link_steps,
                           'set_up': 'up' in link_steps, 'deleted': 'delete' in link_steps}
    result['changed'] = bool(link_steps or steps)
    if module._diff:
        result['diff'] = _diff(ifname, params['link_kind'], link, link_steps, index, before_addresses, before_routes, changes, names)
    return result


def _diff(ifname, kind, link, link_steps, index, addresses, routes, changes, names):
    old_index = link.index if link else None
    before_addresses = managed_addresses(addresses, old_index)
    ours = by_destination(own_routes(routes, old_index).ours)
    before_routes = set(r for a in before_addresses for r in ours.get(a.ip, ()))
    removed = set(a for c in changes.values() for a in c['removed'])
    after_addresses = [a for a in before_addresses if a not in removed]
    after_routes = set(before_routes)
    for change in changes.values():
        after_addresses += change['added']
        after_routes = (after_routes - set(change['routes_removed'])) | set(change['routes_added'])
    if 'delete' in link_steps:
        after_link = None
    elif link_steps:
        after_link = Link(index, ifname, link.kind if link else kind, link.up if link and 'up' not in link_steps else True, MARKER)
    else:
        after_link = link
    return {'before': render_state(_link_line(ifname, link), before_addresses, before_routes, names),
            'after': render_state(_link_line(ifname, after_link), after_addresses, after_routes, names)}
