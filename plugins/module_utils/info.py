# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the node holds, in the shape the modules take: the engine of node_info.

Each subset is read with the same single dump its module reads (`ipset save`,
`iptables-save -t nat` per family, one netlink dump) and shaped by a pure function,
so a fact fed back to its module is a no-op. Read-only: no lock is taken, no
tool that could create state (iptables-legacy-save only for a table /proc lists).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.clusternet.node.plugins.module_utils import engine, fip, ipset, netlink
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV4, IPV6
from ansible_collections.clusternet.node.plugins.module_utils.netlink import RTN_LOCAL, TABLE_LOCAL
from ansible_collections.clusternet.node.plugins.module_utils.vip import MARKER, managed_addresses

SUBSETS = ('ipsets', 'vips', 'masquerade', 'floating_ips')
CHAIN_PREFIX = 'CLUSTERNET-'
# The fip module's default chains; every other CLUSTERNET- chain of nat is reported as masquerade's.
FIP_CHAINS = ('CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT')


def logical_sets(sets, unmanageable=None):
    """[{name, [ipv6_name,] set_type, families, entries, nomatch}] from {name: IpSet}: the ipset
    module's arguments that manage each set as it is, so each fed back changes nothing.

    An IPv4 set NAME and an IPv6 set inet6:NAME of the same type are one logical set (the
    module's default naming). Any other IPv6 set is one of its own: inet6:NAME as NAME, any
    other name through ipv6_name. Temporary sets of a killed run are left out; so is a set the
    module cannot manage (a type it lacks, a name it refuses), which goes to `unmanageable`
    (when given) as {name, set_type, family, reason}.
    """
    live = dict((name, held) for name, held in sets.items() if not name.startswith(ipset.TMP_PREFIX))
    groups = []
    for name, held in sorted(live.items()):
        if held.family == IPV4:
            partner = live.get(ipset.IPV6_PREFIX + name)
            pair = partner is not None and partner.family == IPV6 and partner.type == held.type
            groups.append((name, None, [held, partner] if pair else [held]))
        elif held.family == IPV6:
            base = live.get(name[len(ipset.IPV6_PREFIX):]) if name.startswith(ipset.IPV6_PREFIX) else None
            if base is not None and base.family == IPV4 and base.type == held.type:
                continue  # the IPv4 set's partner
            if name.startswith(ipset.IPV6_PREFIX):
                groups.append((name[len(ipset.IPV6_PREFIX):], None, [held]))
            else:
                groups.append((name, name, [held]))
        else:
            groups.append((name, None, [held]))
    out = []
    for logical, ipv6_name, members in groups:
        families = [live_set.family for live_set in members]
        try:
            if members[0].type not in ipset.SET_TYPES:
                raise ValueError('the ipset module does not manage type %s' % members[0].type)
            if any(family not in FAMILIES for family in families):
                raise ValueError('family %s is not one of %s' % (members[0].options.get('family'), ', '.join(FAMILIES)))
            ipset.set_names(logical, ipv6_name, families)
        except ValueError as exc:
            if unmanageable is not None:
                unmanageable.extend({'name': live_set.name, 'set_type': live_set.type, 'family': live_set.family,
                                     'reason': str(exc)} for live_set in members)
            continue
        fact = {'name': logical}
        if ipv6_name is not None:
            fact['ipv6_name'] = ipv6_name
        fact.update({
            'set_type': members[0].type,
            'families': families,
            'entries': sorted(key for live_set in members for key in live_set.entries),
            'nomatch': sorted(key for live_set in members for key in live_set.nomatch),
        })
        out.append(fact)
    return sorted(out, key=lambda fact: (fact['name'], fact['families']))


def masquerade_rules(table):
    """{chain: [rule text]} of every CLUSTERNET- chain of the table but the FIP chains."""
    return dict((chain, [rule.text for rule in rules]) for chain, rules in sorted(table.rules.items())
                if chain.startswith(CHAIN_PREFIX) and chain not in FIP_CHAINS)


def floating_ips(tables):
    """[{external_ip, internal_ip}] (the fip module's option) from {family: Table}, sorted."""
    found = []
    for family in FAMILIES:
        for external, held in fip.find_fips(tables[family]).items():
            found.append({'external_ip': str(external), 'internal_ip': None if held.internal is None else str(held.internal)})
    return sorted(found, key=lambda item: item['external_ip'])


def vips_of(links, addresses, routes, interface):
    """{interface, present, kind, up, ours, addresses[, node_ips]}: the vip module's view of one
    interface. node_ips, for a present interface, are the sources of the VIPs' local routes on it
    (the vip module's node_ips), each once, in family order: with addresses and interface, what
    the vip module needs to change nothing."""
    link = next((candidate for candidate in links if candidate.name == interface), None)
    if link is None:
        return {'interface': interface, 'present': False, 'kind': None, 'up': False, 'ours': False, 'addresses': []}
    held = sorted(managed_addresses(addresses, link.index), key=lambda a: (a.ip.version, a.ip))
    vips = set(address.ip for address in held)
    sources = sorted(set(route.prefsrc for route in routes
                         if route.table == TABLE_LOCAL and route.type == RTN_LOCAL and route.oif == link.index
                         and route.dst in vips and route.prefsrc is not None and route.prefsrc != route.dst),
                     key=lambda ip: (ip.version, ip))
    return {
        'interface': interface,
        'present': True,
        'kind': link.kind,
        'up': link.up,
        'ours': link.alias == MARKER,
        'addresses': [str(address.ip) for address in held],
        'node_ips': [str(ip) for ip in sources],
    }


def other_backend(tables, others):
    """{family: {backend, chains}} for each family whose other backend holds CLUSTERNET- chains."""
    out = {}
    for family in FAMILIES:
        other = others.get(family)
        chains = sorted(chain for chain in other.rules if chain.startswith(CHAIN_PREFIX)) if other is not None else []
        if chains:
            out[family] = {'backend': ipt.OTHER_BACKEND[tables[family].backend], 'chains': chains}
    return out


# --- kernel I/O ---------------------------------------------------------------

def read_links_addresses_routes():
    if not netlink.HAS_PYROUTE2:
        netlink.missing_pyroute2()
    try:
        ipr = netlink.IPRoute()
        try:
            return (netlink.read_links(ipr),) + tuple(netlink.read_state(ipr))
        finally:
            ipr.close()
    except (netlink.NetlinkError, OSError) as exc:
        raise KernelError('reading links, addresses and routes over netlink failed: %s' % exc) from None


def run(module, iptables=None, ipsets=None):
    """The facts of the subsets asked for; never changes anything. iptables, ipsets: the NAT
    engines' and the ipset engine's kernel objects (ipt.Kernel, ipset.Kernel of module unless given)."""
    return engine.report(module, lambda: gather(module, iptables, ipsets))


def gather(module, iptables, ipsets):
    subsets = module.params['gather_subset']
    if 'all' in subsets:
        subsets = SUBSETS
    facts = {}
    if 'ipsets' in subsets:
        unmanageable = []
        sets = (ipsets or ipset.Kernel(module)).save()  # the ipset engine's reader, every set at once
        facts['ipsets'] = logical_sets(sets, unmanageable)
        if unmanageable:
            facts['unmanageable_ipsets'] = unmanageable
    if 'vips' in subsets:
        links, addresses, routes = read_links_addresses_routes()
        facts['vips'] = vips_of(links, addresses, routes, module.params['interface'])
    if 'masquerade' in subsets or 'floating_ips' in subsets:
        seen = ipt.read(iptables or ipt.Kernel(module), fip.TABLE)  # the NAT engines' reader
        tables = dict((family, seen[family].table) for family in FAMILIES)
        others = dict((family, seen[family].other) for family in FAMILIES)
        if 'masquerade' in subsets:
            facts['masquerade'] = dict((family, masquerade_rules(tables[family])) for family in FAMILIES)
        if 'floating_ips' in subsets:
            facts['floating_ips'] = floating_ips(tables)
        facts['other_backend'] = other_backend(tables, others)
    return {'changed': False, 'clusternet_node': facts}
