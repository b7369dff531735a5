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

from ansible_collections.clusternet.node.plugins.module_utils import engine, fip, ipset, netlink, nft
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils import masquerade as masq
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


def masquerade_chains(tables, fip_chains):
    """The masquerade chains in {family: Table}, in name order: every CLUSTERNET- chain but the
    FIP ones (the fip module's defaults and fip_chains) and any chain that starts with masquerade's mark."""
    mark = ipt.mark_rule(masq.MARK)
    return sorted(set(chain for table in tables.values() for chain, rules in table.rules.items()
                      if (chain.startswith(CHAIN_PREFIX) and chain not in FIP_CHAINS + tuple(fip_chains)) or rules[:1] == [mark]))


def masquerade_options(tables, chain):
    """The masquerade module's options that write `chain` as it is in {family: Table}: the
    comment its rules (or its jump) carry, the CIDRs (masquerade.held), the skip mark of its
    mark RETURN rule and whether its MASQUERADE rules are --random-fully (in every family)."""
    mark = ipt.mark_rule(masq.MARK)
    rules = [rule for family in FAMILIES for rule in tables[family].chain_rules(chain) if rule != mark]
    jumps = [rule for family in FAMILIES for parent, rule in tables[family].jumps_to(chain) if parent == masq.PARENT]
    comment = next((rule.comment for rule in rules + jumps if rule.comment), masq.MARK)
    skip_mark = next((rule.value('--mark') for rule in rules if rule.target == 'RETURN' and rule.value('--mark')), None)
    masquerades = [rule for rule in rules if rule.target == 'MASQUERADE']
    options = {'backend': 'iptables', 'chain': chain, 'comment': comment, 'cluster_cidrs': [], 'pod_cidrs': [],
               'skip_mark': skip_mark or '',
               'random_fully': bool(masquerades) and all('--random-fully' in rule.tokens for rule in masquerades)}
    for family in FAMILIES:
        for key, cidrs in masq.held(tables[family], chain).items():
            options[key].extend(cidrs)
    return options


def masquerade_drift(tables, options):
    """Why the masquerade module given options would change tables (one reason per family), [] when it would not."""
    params = dict(options, state='present', allow_foreign_chain=False, purge_other_backend=False)
    try:
        intent = masq.build_intent(params)
    except ValueError as exc:
        return ['chain %s: %s' % (options['chain'], exc)]
    drift = []
    for family in FAMILIES:
        table = tables[family]
        rules = masq.desired_rules(family, intent.clusters[family], intent.pods[family], intent.comment, intent.skip_mark, intent.random_fully)
        try:
            masq.refuse_foreign(table, intent)
            if masq.plan_family(table, intent.chain, rules, intent.comment):
                drift.append('%s: the masquerade module would rewrite chain %s (it is not as that module writes it)' % (family, intent.chain))
        except ValueError as exc:
            drift.append('%s: %s' % (family, exc))
    return drift


def floating_ips(tables):
    """[{external_ip, internal_ip}] (the fip module's option) from {family: Table}, sorted: every
    FIP with an internal IP, a half one (half_fips) too, so that fed back it is completed."""
    found = []
    for family in FAMILIES:
        for external, held in fip.find_fips(tables[family]).items():
            found.append({'external_ip': str(external), 'internal_ip': None if held.internal is None else str(held.internal)})
    return sorted(found, key=lambda item: item['external_ip'])


def fip_chains(tables):
    """(dnat_chain, snat_chain): the chains that hold the FIPs' DNAT and SNAT rules (the most
    used of each, by name on a tie), the fip module's defaults where there is none."""
    counts = {'DNAT': {}, 'SNAT': {}}
    for family in FAMILIES:
        for held in fip.find_fips(tables[family]).values():
            for chain, rule in held.rules:
                if rule.target in counts:
                    counts[rule.target][chain] = counts[rule.target].get(chain, 0) + 1
    return tuple(min(counts[kind], key=lambda chain: (-counts[kind][chain], chain)) if counts[kind] else default
                 for kind, default in (('DNAT', FIP_CHAINS[0]), ('SNAT', FIP_CHAINS[1])))


def half_fips(tables):
    """[{external_ip, internal_ip, missing}] of the FIPs that lack their DNAT or their SNAT rule
    (missing: 'dnat' or 'snat'), by external IP."""
    halves = []
    for family in FAMILIES:
        for external, held in sorted(fip.find_fips(tables[family]).items()):
            targets = [rule.target for _chain, rule in held.rules]
            missing = [kind.lower() for kind in ('DNAT', 'SNAT') if kind not in targets]
            if missing:
                halves.append({'external_ip': str(external), 'internal_ip': None if held.internal is None else str(held.internal),
                               'missing': missing[0]})
    return halves


def fip_drift(tables, options):
    """Why the fip module given options would change tables (one reason per family), [] when it would not."""
    drift = []
    try:
        wanted = fip.validate(options['floating_ips'], 'present', options['dnat_chain'], options['snat_chain'])
    except ValueError as exc:
        return ['floating IPs: %s' % exc]
    for family in FAMILIES:
        try:
            owned = fip.own(tables[family], options['dnat_chain'], options['snat_chain'])
            if fip.plan(owned, wanted[family], 'present', True, options['dnat_chain'], options['snat_chain']).transaction:
                drift.append('%s: the fip module would rewrite chains %s and %s (a half floating IP is completed, '
                             'a stray rule removed)' % (family, options['dnat_chain'], options['snat_chain']))
        except ValueError as exc:
            drift.append('%s: %s' % (family, exc))
    return drift


def nft_options(nft_tables):
    """(masquerade options or None, fip options or None, drift): the masquerade and fip modules'
    options (backend nftables) that write our nft tables ({family: nft.Table}) as they are."""
    read = dict((family, table.options()) for family, table in nft_tables.items())
    drift = ['%s nftables table: %s' % (family, item) for family, table in sorted(nft_tables.items()) for item in table.drift]
    halves = [read[family]['masquerade'] for family in sorted(read) if read[family]['masquerade']]
    masquerade = None
    if halves:
        masquerade = {'backend': 'nftables', 'cluster_cidrs': [], 'pod_cidrs': [],
                      'skip_mark': halves[0]['skip_mark'], 'random_fully': halves[0]['random_fully']}
        for half in halves:
            masquerade['cluster_cidrs'] += half['cluster_cidrs']
            masquerade['pod_cidrs'] += half['pod_cidrs']
            if (half['skip_mark'], half['random_fully']) != (masquerade['skip_mark'], masquerade['random_fully']):
                drift.append('the nftables masquerade differs between the families in skip_mark or random_fully')
    fips = [item for family in sorted(read) for item in read[family]['floating_ips']]
    return masquerade, {'backend': 'nftables', 'floating_ips': fips} if fips else None, drift


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

def read_nft(module, nft_kernel):
    """{family: nft.Table} of our nftables tables, {} where nft is not installed or too old to
    read them (with a warning: the modules' nftables backend refuses that nft too)."""
    try:
        if nft_kernel is None:
            path = module.get_bin_path('nft')
            if not path:
                return {}
            nft_kernel = nft.NftKernel(module.run_command, path)
        nft_kernel.preflight()
        return dict((family, nft.parse_table(family, nft_kernel.read(family))) for family in FAMILIES)
    except nft.NftError as exc:
        module.warn('the nftables backend was not read: %s' % exc)
        return {}


def run(module, iptables=None, ipsets=None, links=None, nft_kernel=None):
    """The facts of the subsets asked for; never changes anything. The kernel objects of the
    engines, the module's own unless given: iptables (ipt.Kernel), ipsets (ipset.Kernel), links
    (netlink.Kernel), nft_kernel (nft.NftKernel; the nftables backend is left unread without nft)."""
    return engine.report(module, lambda: gather(module, iptables, ipsets, links, nft_kernel))


def gather(module, iptables, ipsets, links, nft_kernel):
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
        if links is None and not netlink.HAS_PYROUTE2:
            netlink.missing_pyroute2()
        kernel = links or netlink.Kernel(module)  # the vip engine's reader
        try:
            addresses, routes = kernel.state()
            facts['vips'] = vips_of(kernel.links(), addresses, routes, module.params['interface'])
        finally:
            kernel.close()
    if 'masquerade' in subsets or 'floating_ips' in subsets:
        facts.update(nat_facts(module, subsets, iptables, nft_kernel))
    return {'changed': False, 'clusternet_node': facts}


def nat_facts(module, subsets, iptables, nft_kernel):
    """The masquerade and floating_ips subsets, from both backends: the iptables nat tables
    (the NAT engines' reader) and our nftables tables."""
    seen = ipt.read(iptables or ipt.Kernel(module), fip.TABLE)
    tables = dict((family, seen[family].table) for family in FAMILIES)
    others = dict((family, seen[family].other) for family in FAMILIES)
    nft_masquerade, nft_fips, nft_drift = nft_options(read_nft(module, nft_kernel))
    facts = {'other_backend': other_backend(tables, others)}
    backends, drift = {}, list(nft_drift)
    dnat_chain, snat_chain = fip_chains(tables)
    if 'masquerade' in subsets:
        facts['masquerade'] = dict((family, masquerade_rules(tables[family])) for family in FAMILIES)
        args = [masquerade_options(tables, chain) for chain in masquerade_chains(tables, (dnat_chain, snat_chain))]
        for options in args:
            drift.extend(masquerade_drift(tables, options))
        facts['masquerade_args'] = args + ([nft_masquerade] if nft_masquerade else [])
        backends['masquerade'] = sorted(set(options['backend'] for options in facts['masquerade_args']))
    if 'floating_ips' in subsets:
        facts['floating_ips'] = floating_ips(tables)
        facts['half_floating_ips'] = half_fips(tables)
        args = [{'backend': 'iptables', 'dnat_chain': dnat_chain, 'snat_chain': snat_chain, 'floating_ips': facts['floating_ips']}]
        if facts['floating_ips']:
            drift.extend(fip_drift(tables, args[0]))
        else:
            args = []
        facts['floating_ip_args'] = args + ([nft_fips] if nft_fips else [])
        backends['floating_ips'] = sorted(set(options['backend'] for options in facts['floating_ip_args']))
    facts['nat_backends'] = backends
    facts['nat_drift'] = drift
    both = [subset for subset, names in sorted(backends.items()) if len(names) > 1]
    if both:
        module.warn('both iptables and nftables hold this collection\'s %s: both apply to packets; '
                    'remove one (the module\'s state=absent with that backend)' % ' and '.join(both))
    return facts
