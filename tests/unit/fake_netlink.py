"""A fake of the VIP engine's kernel object (netlink.Kernel), over dumps recorded on the real kernel.

tests/unit/fixtures/vip-NAME.json holds `ip -j -d link show`, `ip -j addr show` and
`ip -j -4/-6 route show table all` output captured in a throwaway netns by record_vip.sh, with
the commands that planted the state ("planted"). FakeNetlink loads one into the tuples the
engine reads (netlink.Link, Address, Route; host routes only, as netlink.route_from_msg keeps),
applies link requests and address/route request waves in memory with the kernel behaviour the
engine relies on, and dumps its state back, so vip's run() is tested end to end without root:

- an address add also adds the kernel's local route for it: IPv4 at once (appended beside ours,
  src the address itself), IPv6 late (from a work queue: the route shows in the dump after the
  next one; bringing a link up queues it again for each of its IPv6 addresses);
- an address delete takes the kernel's own route of it, not ours;
- a route replace takes the place of the first route with the same table, destination and
  metric (an IPv6 one is kept without scope, metric 0 made 1024); a delete without a metric takes the lowest-metric match (an IPv6 delete sent before the
  kernel's late route appears hits ours, as on the real kernel);
- the kernel runs every request of a send, even after one it refuses; the acks are judged by
  netlink.judge, as for the real socket.
"""

import contextlib
import errno
import json
import os

from ansible_collections.clusternet.node.plugins.module_utils import netlink, vip
from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError
from ansible_collections.clusternet.node.plugins.module_utils.families import FULL_PREFIX, IPV4, IPV6, parse_address
from ansible_collections.clusternet.node.plugins.module_utils.netlink import ADDR_ADD, ADDR_DEL, ROUTE_DEL, Address, Link, Route

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
FAMILY = {'inet': IPV4, 'inet6': IPV6}
TABLES = {'main': netlink.TABLE_MAIN, 'local': netlink.TABLE_LOCAL}
TYPES = dict((name, number) for number, name in vip.TYPE_NAMES.items() if name)
PROTOS = dict((name, number) for number, name in vip.PROTO_NAMES.items())
SCOPES = dict((name, number) for number, name in vip.SCOPE_NAMES.items())
RTPROT_BOOT = 3  # what `ip route add` sets, and `ip -j route` leaves out


def load(name):
    """(links, addresses, routes) of tests/unit/fixtures/vip-NAME.json, as the engine reads them."""
    with open(os.path.join(FIXTURES, 'vip-%s.json' % name)) as handle:
        data = json.load(handle)
    links = [Link(entry['ifindex'], entry['ifname'], entry.get('linkinfo', {}).get('info_kind'), 'UP' in entry['flags'],
                  entry.get('ifalias') or None, 'LOOPBACK' in entry['flags']) for entry in data['link']]
    index = dict((link.name, link.index) for link in links)
    addresses = [Address(FAMILY[a['family']], parse_address(a['local']), a['prefixlen'], entry['ifindex'])
                 for entry in data['addr'] for a in entry['addr_info']]
    routes = []
    for family, key in ((IPV4, 'route4'), (IPV6, 'route6')):
        for entry in data[key]:
            if '/' in entry['dst'] or entry['dst'] == 'default':
                continue  # not a host route: never a VIP's
            table = entry.get('table', 'main')
            routes.append(Route(family, TABLES.get(table) or int(table), TYPES.get(entry.get('type'), netlink.RTN_UNICAST),
                                PROTOS.get(entry.get('protocol'), RTPROT_BOOT), SCOPES.get(entry.get('scope'), 0),
                                parse_address(entry['dst']), FULL_PREFIX[family], index.get(entry.get('dev')),
                                parse_address(entry['prefsrc']) if 'prefsrc' in entry else None, entry.get('metric', 0)))
    return links, addresses, routes


class FakeNetlink(object):
    """netlink.Kernel over in-memory links, addresses and routes, loaded from vip-NAME.json.

    fail: {ip command: errno} of requests the kernel refuses (a link request's command, or an
    address/route request as vip.render_step writes it). Records link_requests (their commands),
    waves (each send, as commands) and warnings."""

    def __init__(self, name, fail=None):
        links, self.held_addresses, self.held_routes = load(name)
        self.links_by_index = dict((link.index, link) for link in links)
        self.late = []  # IPv6 local routes the kernel has queued: they show in the dump after the next one
        self.fail = dict(fail or {})
        self.link_requests, self.waves, self.warnings = [], [], []

    # --- reads -----------------------------------------------------------------------

    def lock(self):
        return contextlib.nullcontext()

    def close(self):
        pass

    def links(self):
        return sorted(self.links_by_index.values())

    def state(self):
        return list(self.held_addresses), self.routes_dump()

    def routes(self, families=(IPV4, IPV6)):
        return [route for route in self.routes_dump() if route.family in families]

    def routes_dump(self):
        self.held_routes.extend(route for route, dumps in self.late if dumps)
        self.late = [(route, dumps + 1) for route, dumps in self.late if not dumps]
        return list(self.held_routes)

    def dump(self):
        """The state as the engine would read it next (without advancing the late routes)."""
        return sorted(self.links_by_index.values()), sorted(self.held_addresses), sorted(self.held_routes)

    def warn(self, text):
        self.warnings.append(text)

    # --- link requests ---------------------------------------------------------------

    def link(self, text, command, **args):
        self.link_requests.append(text)
        if text in self.fail:
            raise KernelError('%s failed: %s' % (text, os.strerror(self.fail[text])))
        if command == 'add':
            index = max(self.links_by_index) + 1
            self.links_by_index[index] = Link(index, args['ifname'], args['kind'], False, None, False)
            return index
        index = args['index']
        if command == 'del':
            del self.links_by_index[index]
            self.held_addresses = [a for a in self.held_addresses if a.index != index]
            self.held_routes = [r for r in self.held_routes if r.oif != index]
            self.late = [(r, n) for r, n in self.late if r.oif != index]
            return None
        link = self.links_by_index[index]
        if 'ifalias' in args:
            link = link._replace(alias=args['ifalias'])
        if args.get('state') == 'up' and not link.up:
            link = link._replace(up=True)
            self.late += [(vip.kernel_local_route(a.ip, index), 0) for a in self.held_addresses
                          if a.index == index and a.family == IPV6 and not a.ip.is_link_local]
        self.links_by_index[index] = link
        return index

    # --- address and route requests ----------------------------------------------------

    def send(self, steps, describe):
        self.waves.append([describe(step) for step in steps])
        applied = []
        for start in range(0, len(steps), netlink.CHUNK):
            chunk = steps[start:start + netlink.CHUNK]
            codes = [self.fail.get(describe(step)) or self.request(step) for step in chunk]
            netlink.judge(chunk, codes, [None] * len(chunk), describe, applied)
        return applied

    def request(self, step):
        """Apply one request; its errno, 0 when done."""
        item = step.item
        if step.action == ADDR_ADD:
            if any(a.ip == item.ip and a.index == item.index for a in self.held_addresses):
                return errno.EEXIST
            self.held_addresses.append(item)
            if item.family == IPV4:
                self.held_routes.append(vip.kernel_local_route(item.ip, item.index))
            else:
                self.late.append((vip.kernel_local_route(item.ip, item.index), 0))
            return 0
        if step.action == ADDR_DEL:
            if item not in self.held_addresses:
                return errno.EADDRNOTAVAIL
            self.held_addresses.remove(item)
            own = vip.kernel_local_route(item.ip, item.index)
            self.held_routes = [r for r in self.held_routes if r != own]
            self.late = [(r, n) for r, n in self.late if r != own]
            return 0
        same = [r for r in self.held_routes if (r.family, r.table, r.dst, r.dst_len) == (item.family, item.table, item.dst, item.dst_len)]
        if step.action == ROUTE_DEL:
            matches = sorted((r for r in same if r.oif == item.oif and (not item.priority or r.priority == item.priority)
                              and (item.prefsrc is None or r.prefsrc == item.prefsrc)), key=lambda r: r.priority)
            if not matches:
                return errno.ESRCH
            self.held_routes.remove(matches[0])
            return 0
        if item.family == IPV6:  # the kernel keeps no scope on IPv6 routes, and makes metric 0 its default 1024
            item = item._replace(scope=0, priority=item.priority or vip.IP6_RT_PRIO_USER)
        replaced = [r for r in same if r.priority == item.priority][:1]
        self.held_routes = [r for r in self.held_routes if r not in replaced] + [item]
        return 0
