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

from ansible_collections.clusternet.node.plugins.module_utils import fip, ipset, netlink
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV6
from ansible_collections.clusternet.node.plugins.module_utils.vip import MARKER, managed_addresses

SUBSETS = ('ipsets', 'vips', 'masquerade', 'floating_ips')
CHAIN_PREFIX = 'CLUSTERNET-'
# The fip module's default chains; every other CLUSTERNET- chain of nat is reported as masquerade's.
FIP_CHAINS = ('CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT')


def logical_sets(sets):
    """[{name, set_type, families, entries, nomatch}] from {name: IpSet}: NAME and inet6:NAME as one
    logical set (the ipset module's default naming); a lone inet6:NAME is the set NAME in IPv6 only.
    Temporary sets of a killed run are left out."""
    grouped = {}
    for name, live in sets.items():
        if name.startswith(ipset.TMP_PREFIX):
            continue
        logical = name[len(ipset.IPV6_PREFIX):] if name.startswith(ipset.IPV6_PREFIX) and live.family == IPV6 else name
        grouped.setdefault(logical, []).append(live)
    out = []
    for logical in sorted(grouped):
        members = sorted(grouped[logical], key=lambda live: live.name)
        out.append({
            'name': logical,
            'set_type': members[0].type,
            'families': sorted(set(live.family for live in members)),
            'entries': sorted(key for live in members for key in live.entries),
            'nomatch': sorted(key for live in members for key in live.nomatch),
        })
    return out


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


def vips_of(links, addresses, interface):
    """{interface, present, kind, up, ours, addresses}: the vip module's view of one interface."""
    link = next((candidate for candidate in links if candidate.name == interface), None)
    if link is None:
        return {'interface': interface, 'present': False, 'kind': None, 'up': False, 'ours': False, 'addresses': []}
    held = managed_addresses(addresses, link.index)
    return {
        'interface': interface,
        'present': True,
        'kind': link.kind,
        'up': link.up,
        'ours': link.alias == MARKER,
        'addresses': [str(address.ip) for address in sorted(held, key=lambda a: (a.ip.version, a.ip))],
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

def read_ipsets(module):
    rc, out, err = module.run_command([module.get_bin_path('ipset', required=True), 'save'])
    if rc != 0:
        module.fail_json(msg='ipset save failed: %s' % err.strip())
    try:
        return ipset.parse_save(out)
    except ValueError as exc:
        module.fail_json(msg='ipset save: %s' % exc)


def read_links_and_addresses(module):
    if not netlink.HAS_PYROUTE2:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib('pyroute2'), exception=netlink.PYROUTE2_IMPORT_ERROR)
    try:
        ipr = netlink.IPRoute()
        try:
            return netlink.read_links(ipr), netlink.read_state(ipr)[0]
        finally:
            ipr.close()
    except (netlink.NetlinkError, OSError) as exc:
        module.fail_json(msg='reading links and addresses over netlink failed: %s' % exc)


def run(module, iptables=None):
    """The facts of the subsets asked for; never changes anything. iptables: the NAT engines'
    kernel object (ipt.Kernel of module unless given)."""
    subsets = module.params['gather_subset']
    if 'all' in subsets:
        subsets = SUBSETS
    facts = {}
    if 'ipsets' in subsets:
        facts['ipsets'] = logical_sets(read_ipsets(module))
    if 'vips' in subsets:
        links, addresses = read_links_and_addresses(module)
        facts['vips'] = vips_of(links, addresses, module.params['interface'])
    if 'masquerade' in subsets or 'floating_ips' in subsets:
        try:
            seen = ipt.read(iptables or ipt.Kernel(module), fip.TABLE)  # the NAT engines' reader
        except KernelError as exc:
            module.fail_json(msg=str(exc))
        tables = dict((family, seen[family].table) for family in FAMILIES)
        others = dict((family, seen[family].other) for family in FAMILIES)
        if 'masquerade' in subsets:
            facts['masquerade'] = dict((family, masquerade_rules(tables[family])) for family in FAMILIES)
        if 'floating_ips' in subsets:
            facts['floating_ips'] = floating_ips(tables)
        facts['other_backend'] = other_backend(tables, others)
    return {'changed': False, 'clusternet_node': facts}
