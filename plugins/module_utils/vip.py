# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service VIPs on a local interface: links, addresses and routes over netlink.

The engine on engine.run (validate, lock, read, own, plan, apply, result), over the kernel
object netlink.Kernel (tests put tests/unit/fake_netlink.FakeNetlink in its place). Kernel
state is read with one link dump, one address dump and one route dump per family, as plain
tuples. `Engine.own` alone says what is ours: the interface by its MARKER (or adopt), the
routes by `own_routes`; a foreign object can only refuse a VIP. Planning is pure: `plan_link`
and `plan_vips` return the requests, sent as engine Steps: each link request, then the
address and route requests in waves (batched netlink sends), then the settling of the
kernel's late IPv6 local routes. `applied` lists every request the kernel acked.

The route a VIP needs (kube-router #1698): `local VIP dev IF table local proto kernel
scope host src NODE_IP`, and no other route to the VIP on its interface. The kernel
adds its own routes for an IPv6 /128 (main table metric 256, local table metric 0
without src) and re-adds them whenever the address is re-added or the link comes back
up, so every run reconciles from a fresh dump.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import time

from ansible_collections.clusternet.node.plugins.module_utils import engine, netlink
from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError, Plan
from ansible_collections.clusternet.node.plugins.module_utils.families import (
    FAMILIES,
    FULL_PREFIX,
    IPV4,
    IPV6,
    family_of_version,
    one_per_family,
    parse_unicast,
)
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


def stopped(exc, applied):
    """The KernelError that ends a run: exc's text, what the kernel acked before (in applied),
    and the acked parts of a batch the kernel ran in part (exc.applied, added to applied)."""
    applied.extend(exc.applied)
    parts = ['%d of that batch\'s requests (listed in applied)' % len(exc.applied)] if exc.applied else []
    return KernelError('%s; the run stopped there. Changes the kernel acknowledged before: %s'
                       % (exc, '%d, listed in applied' % len(applied) if applied else 'none'), parts)


def send_waves(kernel, steps, names, applied):
    """Send the steps wave by wave (see waves); each request done is appended to applied as its
    `ip` command. A failure raises the KernelError of stopped()."""
    for wave in waves(steps):
        try:
            applied.extend(kernel.send(wave, lambda step: render_step(step, names)))
        except KernelError as exc:
            raise stopped(exc, applied) from None


def settle(kernel, index, awaited, names, applied, timeout=SETTLE_TIMEOUT):
    """Delete the kernel's IPv6 local routes of the awaited VIPs as they appear, one route
    dump per pass. Returns the VIPs still awaited when the timeout ran out."""
    awaited = set(awaited)
    deadline = time.monotonic() + timeout
    while awaited:
        found = [r for r in kernel.routes((IPV6,)) if r.dst in awaited and r == kernel_local_route(r.dst, index)]
        send_waves(kernel, [Step(ROUTE_DEL, r) for r in found], names, applied)
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


# --- the engine -------------------------------------------------------------------

Intent = collections.namedtuple('Intent', 'params vips node_ips')
Seen = collections.namedtuple('Seen', 'links addresses routes')
# link: the VIP interface (None when absent); ours: the routes own_routes says are ours.
Ownership = collections.namedtuple('Ownership', 'link names addresses routes ours')


class Engine(object):
    """The VIP engine on engine.run, over netlink.Kernel: one link dump, one address dump and
    one route dump per family; the link's requests, then the address and route requests in
    waves (each wave one engine Step), then the settling of the kernel's late IPv6 routes."""

    def validate(self, params):
        vips, node_ips = validate(params)
        return Intent(params, vips, node_ips)

    def read(self, kernel, intent):
        links = kernel.links()
        addresses, routes = kernel.state()
        return Seen(links, addresses, routes)

    def own(self, seen, intent):
        """The interface is ours by its MARKER or adopt (check_owner), a route by own_routes;
        a foreign object refuses the VIP it collides with (check_kernel)."""
        link = next((candidate for candidate in seen.links if candidate.name == intent.params['interface']), None)
        index = link.index if link else None
        names = dict((each.index, each.name) for each in seen.links)
        routes = own_routes(seen.routes, index)
        check_kernel(link, seen.addresses, routes.foreign, intent.vips, intent.node_ips, intent.params, names)
        return Ownership(link, names, seen.addresses, seen.routes, routes.ours)

    def plan(self, owned, intent):
        return Run(owned, intent).plan


class Run(object):
    """One run's plan and what its steps learn as they go: the interface's index once created,
    and, when the link comes up, the addresses and routes the kernel then holds (bringing a link
    up makes it re-add its routes, so those requests are planned from a dump taken after)."""

    def __init__(self, owned, intent):
        params = intent.params
        self.owned, self.intent = owned, intent
        self.ifname, self.state = params['interface'], params['state']
        self.link_steps = plan_link(owned.link, self.state, params['delete_interface'])
        self.index = owned.link.index if owned.link else None
        self.names = dict(owned.names)
        self.applied = []
        self.plan = Plan(result={'applied': self.applied})
        self.plan.diff = self.diff
        requests = self.plan_requests(owned.addresses, owned.ours)
        self.plan.result['changed'] = bool(self.link_steps or requests)
        steps = self.plan.steps
        # The kernel ignores an alias in the create request: it is set right after.
        for step in self.link_steps:
            if step != 'delete':
                steps.extend(self.link_step(each) for each in (['create', 'mark'] if step == 'create' else [step]))
        if 'up' in self.link_steps:
            steps.append(engine.Step('address and route requests, planned once %s is up' % self.ifname, self.replan))
        else:
            batches = waves(requests)
            steps.extend(engine.Step('address and route requests, wave %d of %d (%d)' % (n, len(batches), len(wave)), self.sender(wave))
                         for n, wave in enumerate(batches, 1))
        if 'delete' in self.link_steps:
            steps.append(self.link_step('delete'))
        if self.awaited or 'up' in self.link_steps:
            steps.append(engine.Step('deleting the kernel\'s IPv6 local routes of new VIPs as they appear', self.settle))

    def plan_requests(self, addresses, ours):
        """The address and route requests (pure, plan_vips) and the result they make."""
        intent, params = self.intent, self.intent.params
        requests, self.changes = plan_vips(self.index, addresses, ours, intent.vips, intent.node_ips, params['exclusive'],
                                           self.state, delete_interface='delete' in self.link_steps)
        self.names[self.index] = self.ifname
        self.awaited = (awaited_routes(intent.vips, self.changes[IPV6]['added'], ours, self.index, 'up' in self.link_steps)
                        if self.state == 'present' else set())
        self.plan.result.update(summarize(self.changes, self.names))
        self.plan.result['interface'] = {'name': self.ifname, 'created': 'create' in self.link_steps,
                                         'adopted': 'mark' in self.link_steps, 'set_up': 'up' in self.link_steps,
                                         'deleted': 'delete' in self.link_steps}
        return requests

    def link_step(self, step):
        """One link request as an engine Step, labelled with its ip command."""
        ifname, kind = self.ifname, self.intent.params['link_kind']
        text, command, args = {
            'create': ('link add %s type %s' % (ifname, kind), 'add', {'ifname': ifname, 'kind': kind}),
            'mark': ('link set %s alias %s' % (ifname, MARKER), 'set', {'ifalias': MARKER}),
            'up': ('link set %s up' % ifname, 'set', {'state': 'up'}),
            'delete': ('link del %s' % ifname, 'del', {}),
        }[step]

        def action(kernel, _check_mode):
            if command != 'add':
                args['index'] = self.index
            try:
                self.index = kernel.link(text, command, **args)
            except KernelError as exc:
                if 'create' in self.link_steps:
                    exc = KernelError('cannot create or bring up interface %s (kind %s): %s' % (ifname, kind, exc))
                raise stopped(exc, self.applied) from None
            self.applied.append(text)
        return engine.Step(text, action)

    def sender(self, wave):
        def action(kernel, _check_mode):
            send_waves(kernel, wave, self.names, self.applied)
        return action

    def replan(self, kernel, _check_mode):
        addresses, routes = kernel.state()
        send_waves(kernel, self.plan_requests(addresses, own_routes(routes, self.index).ours), self.names, self.applied)

    def settle(self, kernel, _check_mode):
        late = settle(kernel, self.index, self.awaited, self.names, self.applied)
        if late:
            kernel.warn('the kernel had not added its local routes for %s within %ss; the next run removes them'
                        % (', '.join(sorted(str(v) for v in late)), SETTLE_TIMEOUT))

    def diff(self):
        link = self.owned.link
        before_addresses = managed_addresses(self.owned.addresses, link.index if link else None)
        ours = by_destination(self.owned.ours)
        before_routes = set(r for a in before_addresses for r in ours.get(a.ip, ()))
        removed = set(a for c in self.changes.values() for a in c['removed'])
        after_addresses = [a for a in before_addresses if a not in removed]
        after_routes = set(before_routes)
        for change in self.changes.values():
            after_addresses += change['added']
            after_routes = (after_routes - set(change['routes_removed'])) | set(change['routes_added'])
        if 'delete' in self.link_steps:
            after_link = None
        elif self.link_steps:
            after_link = Link(self.index, self.ifname, link.kind if link else self.intent.params['link_kind'],
                              link.up if link and 'up' not in self.link_steps else True, MARKER)
        else:
            after_link = link
        return {'before': render_state(_link_line(self.ifname, link), before_addresses, before_routes, self.names),
                'after': render_state(_link_line(self.ifname, after_link), after_addresses, after_routes, self.names)}


def run(module, kernel=None):
    """The module's result (engine.run over netlink.Kernel, or kernel)."""
    if kernel is None:
        if not netlink.HAS_PYROUTE2:
            return engine.report(module, netlink.missing_pyroute2)
        kernel = netlink.Kernel(module)
    try:
        return engine.run(module, Engine(), kernel)
    finally:
        kernel.close()
