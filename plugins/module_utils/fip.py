# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Floating IPs (1:1 NAT): validate pairs, find a FIP's rules by its external IP, plan.

Pure functions over the shared iptables engine's Table. Every rule of a FIP
carries the comment "clusternet fip EXTERNAL" (EXTERNAL as Python's ipaddress
prints it: dotted IPv4, compressed lower-case IPv6), so a FIP is found by its
external IP alone, whatever internal IP it points to and wherever its rules are.
The chains are planned as a whole: any difference rebuilds both of one family in
one iptables-restore transaction, so no FIP is ever seen half-programmed. The
chains are managed only while they are ours (iptables.foreign_content): every rule
in them carries a FIP comment, or they are empty and only our jumps reach them;
with allow_foreign_chain other rules in them are kept, in front of ours.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.clusternet.node.plugins.module_utils import conntrack, fip_gateway
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, family_of_version, find_duplicate, parse_address, parse_unicast
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock

TABLE = 'nat'
COMMENT_PREFIX = 'clusternet fip '
JUMP_COMMENT = 'clusternet fip'
DNAT_PARENTS = ('PREROUTING', 'OUTPUT')
SNAT_PARENTS = ('POSTROUTING',)


class Fip(object):
    """One floating IP as found in the kernel: its rules as (chain, Rule) and the internal IPs they name."""

    def __init__(self):
        self.rules = []
        self.internals = []

    def add(self, chain, rule):
        self.rules.append((chain, rule))
        target = rule.target
        named = rule.value('--to-destination') if target == 'DNAT' else rule.value('-s') if target == 'SNAT' else None
        if named:
            try:
                internal = parse_address(named)
            except ValueError:
                return
            if internal not in self.internals:
                self.internals.append(internal)

    @property
    def internal(self):
        """The internal IP the FIP points to (its DNAT rule's, read first), or None."""
        return self.internals[0] if self.internals else None


# --- validation -----------------------------------------------------------------

def validate(floating_ips, state, dnat_chain, snat_chain):
    """{family: {external: internal or None}} in list order; ValueError names the offending value.

    With state absent internal_ip may be left out (a FIP is found by its external IP alone).
    """
    ipt.check_chains([(dnat_chain, 'dnat_chain'), (snat_chain, 'snat_chain')])
    if dnat_chain == snat_chain:
        raise ValueError('dnat_chain and snat_chain are both %r: they must differ' % dnat_chain)
    pairs = []
    for item in floating_ips or []:
        external = parse_unicast(item.get('external_ip'), 'external_ip')
        internal = item.get('internal_ip')
        if internal is None:
            if state == 'present':
                raise ValueError('floating IP %s has no internal_ip (required with state present)' % external)
        else:
            internal = parse_unicast(internal, 'internal_ip')
            if internal.version != external.version:
                raise ValueError('floating IP %s: internal_ip %s is of another address family' % (external, internal))
        pairs.append((external, internal))
    duplicate = find_duplicate(pairs, key=lambda pair: pair[0])
    if duplicate:
        raise ValueError('external_ip %s is listed twice' % duplicate[0])
    duplicate = find_duplicate([pair for pair in pairs if pair[1] is not None], key=lambda pair: pair[1])
    if duplicate:
        raise ValueError('internal_ip %s is listed twice' % duplicate[1])
    wanted = dict((family, {}) for family in FAMILIES)
    for external, internal in pairs:
        wanted[family_of_version(external.version)][external] = internal
    return wanted


# --- rules ------------------------------------------------------------------------

def desired_rules(external, internal, dnat_chain, snat_chain):
    """A FIP's two rules as (chain, Rule), in iptables-save order."""
    ext, intl = str(external), str(internal)  # IPv6 str() is slow enough to matter for 1000 FIPs
    tag = ipt.comment_match(COMMENT_PREFIX + ext)
    return [
        (dnat_chain, ipt.Rule('-d %s/%d %s -j DNAT --to-destination %s' % (ext, external.max_prefixlen, tag, intl))),
        (snat_chain, ipt.Rule('-s %s/%d %s -j SNAT --to-source %s' % (intl, internal.max_prefixlen, tag, ext))),
    ]


def fip_of(rule):
    """The external IP named by a Rule's FIP comment, or None for any other rule."""
    comment = rule.comment
    if comment and comment.startswith(COMMENT_PREFIX):
        try:
            return parse_address(comment[len(COMMENT_PREFIX):])
        except ValueError:
            pass
    return None


def find_fips(table):
    """{external: Fip} for every rule of the table that carries a FIP comment, in any chain."""
    fips = {}
    for chain, rules in table.rules.items():
        for rule in rules:
            external = fip_of(rule)
            if external is not None:
                fips.setdefault(external, Fip()).add(chain, rule)
    return fips


def same_rules(current, desired):
    """Whether two lists of (chain, Rule) hold the same rules in any order, duplicates counted
    (by text first: the usual case needs no parse)."""
    if sorted((chain, rule.text) for chain, rule in current) == sorted((chain, rule.text) for chain, rule in desired):
        return True
    return sorted((chain, rule.key) for chain, rule in current) == sorted((chain, rule.key) for chain, rule in desired)


# --- plan ---------------------------------------------------------------------------

class Plan(object):
    """One family's delta: FIPs added/changed/removed, restore lines, mappings whose conntrack entries go."""

    def __init__(self):
        self.added = []
        self.changed = []
        self.removed = []
        self.lines = []
        self.flush = []
        self.before = []
        self.after = []


def check_ours(table, chains, owns):
    """ValueError naming the chain and a foreign rule unless each of chains is ours; owns(rule):
    whether the rule carries a FIP comment."""
    for chain, what in chains:
        problem = ipt.foreign_content(table, chain, owns, JUMP_COMMENT)
        if problem:
            raise ValueError('refusing to manage %s %r: %s (every rule of this module carries the comment %r); '
                             'set allow_foreign_chain to manage it anyway' % (what, chain, problem, COMMENT_PREFIX + 'EXTERNAL_IP'))


def plan(table, wanted, state, exclusive, dnat_chain, snat_chain, allow_foreign_chain=False):
    """Plan one family. wanted: {external: internal or None} of that family.

    present: named FIPs get exactly their two canonical rules; with exclusive every
    other FIP of ours is removed, without it their current rules are kept verbatim.
    absent: named FIPs lose every rule that carries their comment.
    ValueError when a chain is not ours (unless allow_foreign_chain) or a named internal
    IP is already taken by a FIP that stays.
    """
    current = find_fips(table)
    ours_ids = set(id(rule) for fip in current.values() for _chain, rule in fip.rules)

    def owns(rule):
        return id(rule) in ours_ids

    if not allow_foreign_chain:
        check_ours(table, ((dnat_chain, 'dnat_chain'), (snat_chain, 'snat_chain')), owns)
    result = Plan()
    final = {}
    for external, fip in current.items():
        if external in wanted or (state == 'present' and exclusive):
            continue
        final[external] = fip.rules
    if state == 'present':
        taken = dict((internal, external) for external, fip in final.items() for internal in current[external].internals)
        for external, internal in wanted.items():
            if internal in taken:
                raise ValueError('internal_ip %s of floating IP %s is already used by floating IP %s' % (internal, external, taken[internal]))
            final[external] = desired_rules(external, internal, dnat_chain, snat_chain)
            fip = current.get(external)
            if fip is None:
                result.added.append({'external_ip': str(external), 'internal_ip': str(internal)})
            elif not same_rules(fip.rules, final[external]):
                result.changed.append({'external_ip': str(external), 'internal_ip': str(internal),
                                       'previous_internal_ip': str(fip.internal) if fip.internal else None})
                stale = [old for old in fip.internals if old != internal]
                if stale:
                    result.flush.append((external, stale))
    for external, fip in sorted(current.items()):
        if external not in final:
            result.removed.append({'external_ip': str(external), 'internal_ip': str(fip.internal) if fip.internal else None})
            result.flush.append((external, fip.internals))

    ours = (dnat_chain, snat_chain)
    content = {}
    for chain in ours:
        # Rules without a FIP comment in our chains (only with allow_foreign_chain) are someone else's: kept, first.
        content[chain] = [rule for rule in table.chain_rules(chain) if not owns(rule)]
    foreign = dict((chain, len(content[chain])) for chain in ours)
    strays_kept = []
    for external in sorted(final):
        for chain, rule in final[external]:
            if chain in ours:
                content[chain].append(rule)
            else:
                strays_kept.append((chain, rule))
    for external, fip in current.items():
        result.lines.extend(ipt.line('-D', chain, rule) for chain, rule in fip.rules
                            if chain not in ours and (chain, rule) not in final.get(external, []))
    for chain, parents in ((dnat_chain, DNAT_PARENTS), (snat_chain, SNAT_PARENTS)):
        if len(content[chain]) > foreign[chain]:
            result.lines.extend(ipt.reconcile_chain(table, chain, content[chain], parents, JUMP_COMMENT))
        elif content[chain]:
            # Only foreign rules left (allow_foreign_chain): the chain stays theirs, our jumps go.
            result.lines.extend(ipt.reconcile_chain(table, chain, content[chain], (), JUMP_COMMENT))
            result.lines.extend(ipt.line('-D', parent, rule) for parent, rule in table.jumps_to(chain) if parent in parents)
        else:
            result.lines.extend(ipt.remove_chain(table, chain))

    result.before = view(table.rules, ours, [(chain, rule) for fip in current.values() for chain, rule in fip.rules if chain not in ours])
    result.after = view(content, ours, strays_kept) if result.lines else result.before
    return result


def view(rules, ours, strays):
    """What this module manages in one family, as iptables-save lines: our chains, then FIP rules elsewhere."""
    lines = [ipt.line('-A', chain, rule) for chain in ours for rule in rules.get(chain, [])]
    return lines + [ipt.line('-A', chain, rule) for chain, rule in strays]


# --- kernel edge --------------------------------------------------------------------

def _other_backend(module, params, family, table):
    """Our chains and FIP rules in the backend the active iptables does not use: {backend, found,
    payload, applied}, or None. Warns naming them; with purge_other_backend plans their removal
    (same ownership rule; conntrack is shared by both backends, so nothing is flushed for it)."""
    other = ipt.other_backend_table(module, family, table)
    if other is None:
        return None
    chains = [chain for chain in (params['dnat_chain'], params['snat_chain']) if other.has_chain(chain)]
    externals = sorted(find_fips(other))
    if not chains and not externals:
        return None
    backend = ipt.OTHER_BACKEND[table.backend]
    found = ['chain %s' % chain for chain in chains] + ['rules of floating IP %s' % external for external in externals]
    payload = ''
    if params['purge_other_backend']:
        try:
            payload = ipt.render_restore(TABLE, plan(other, {}, 'present', True, params['dnat_chain'], params['snat_chain'],
                                                     params['allow_foreign_chain']).lines)
        except ValueError as exc:
            module.fail_json(msg='%s, %s backend: %s' % (family, backend, exc))
    else:
        module.warn('the %s backend (%s -t %s) still holds this module\'s %s; they still apply to packets: '
                    'set purge_other_backend to remove them' % (backend, ipt.backend_tool(family, backend, 'save'), TABLE, ', '.join(found)))
    return {'backend': backend, 'found': found, 'payload': payload, 'applied': False}


def _flush_step(module, family, state, flush):
    sources = set(internal for _external, internals in flush for internal in internals)
    destinations = set(external for external, _internals in flush)

    def step():
        try:
            state['conntrack_flushed'] = conntrack.flush(family, sources, destinations, module.check_mode)
        except conntrack.ConntrackError as exc:
            return str(exc)
        return None
    return step


def run(module):
    """Validate, then under the host lock: one save per family (and one of the other backend's
    table where it has one), plan both families before writing anything, then per family one
    restore and the conntrack flush. Returns the result."""
    params = module.params
    try:
        wanted = validate(params['floating_ips'], params['state'], params['dnat_chain'], params['snat_chain'])
        if params['state'] == 'present':
            fip_gateway.check(wanted, fip_gateway.read_held(module))
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = {'changed': False}
    with host_lock(module):
        plans = {}
        others = {}
        for family in FAMILIES:
            table = ipt.save_table(module, family, TABLE)
            try:
                plans[family] = plan(table, wanted[family], params['state'], params['exclusive'], params['dnat_chain'],
                                     params['snat_chain'], params['allow_foreign_chain'])
            except ValueError as exc:
                module.fail_json(msg='%s: %s' % (family, exc))
            others[family] = _other_backend(module, params, family, table)
        # Checked before anything is written; pyroute2 is needed only when there is something to flush.
        flush = params['flush_conntrack'] and any(plans[family].flush for family in FAMILIES)
        missing = conntrack.require() if flush else None
        if missing:
            externals = ', '.join(str(external) for family in FAMILIES for external, _internals in plans[family].flush)
            module.fail_json(msg=missing_required_lib('pyroute2', reason='to flush the conntrack entries of floating IPs %s' % externals),
                             exception=missing)
        steps = []
        purges = []
        for family in FAMILIES:
            payload = ipt.render_restore(TABLE, plans[family].lines)
            state = result[family] = dict(added=plans[family].added, changed=plans[family].changed, removed=plans[family].removed,
                                          payload=payload, applied=False, conntrack_flushed=0)
            result['changed'] = result['changed'] or bool(payload)
            if payload and not module.check_mode:
                steps.append(('%s rules' % family, ipt.restore_step(module, family, state, payload)))
            if flush and plans[family].flush:
                state['conntrack_flushed'] = None
                steps.append(('%s conntrack %s' % (family, 'count (check mode)' if module.check_mode else 'flush'),
                              _flush_step(module, family, state, plans[family].flush)))
            other = others[family]
            if other is not None:
                state['other_backend'] = other
                result['changed'] = result['changed'] or bool(other['payload'])
                if other['payload'] and not module.check_mode:
                    tool = ipt.backend_tool(family, other['backend'], 'restore')
                    purges.append(('%s FIP chains and rules removed through %s' % (family, tool),
                                   ipt.restore_step(module, family, other, other['payload'], tool)))
        ipt.run_steps(module, steps + purges, result)
        result['changed'] = result['changed'] or any(result[family]['conntrack_flushed'] for family in FAMILIES)
    if module._diff:
        result['diff'] = ipt.diff(*(dict((family, getattr(plans[family], key)) for family in FAMILIES) for key in ('before', 'after')))
    return result
