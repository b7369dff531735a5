# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Floating IPs (1:1 NAT): validate pairs, find a FIP's rules by its external IP, plan.

Pure functions over iptables' Table, and the Engine that engine.run drives over the
iptables kernel object plus conntrack (fip.Kernel). Every rule of a FIP
carries the comment "clusternet fip EXTERNAL" (EXTERNAL as Python's ipaddress
prints it: dotted IPv4, compressed lower-case IPv6), so a FIP is found by its
external IP alone, whatever internal IP it points to and wherever its rules are.
The chains are planned as a whole: any difference rebuilds both of one family in
one iptables-restore transaction, so no FIP is ever seen half-programmed. A rule is a
FIP's only when its comment is byte for byte the one we write for it. The chains are
managed only while they are ours (own(), by iptables.foreign_content): they hold our mark
(MARK, the no-op first rule written with each chain; any other rule in them is a stray,
removed), or every rule in them carries a FIP comment (chains of a release before marks:
the next run marks them), or they are empty and only our jumps reach them; with
allow_foreign_chain the rules of someone else's chain are kept, in front of ours, and the
chain is not marked. Only jumps carrying JUMP_COMMENT are ours; removing a chain that any
other rule jumps to is refused naming that rule.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.clusternet.node.plugins.module_utils import conntrack, fip_gateway
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.engine import EngineError, Plan, Step
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, family_of_version, find_duplicate, parse_address, parse_unicast

TABLE = 'nat'
COMMENT_PREFIX = 'clusternet fip '
JUMP_COMMENT = 'clusternet fip'
# The comment of the no-op first rule that marks both chains as created by this module (iptables.mark_rule).
MARK = 'clusternet.node fip chain'
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
    """The external IP named by a Rule's FIP comment, or None for any other rule. The comment
    must be exactly what desired_rules writes ("clusternet fip 203.0.113.7"): one that only
    resembles it (another spacing, a /32, another spelling of the address) is someone else's."""
    comment = rule.comment
    if comment and comment.startswith(COMMENT_PREFIX):
        try:
            external = parse_address(comment[len(COMMENT_PREFIX):])
        except ValueError:
            return None
        if comment == COMMENT_PREFIX + str(external):
            return external
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


# --- own and plan -------------------------------------------------------------------

class Owned(object):
    """One family's table as own() classified it: fips, {external: Fip} of every rule that
    carries a FIP comment (ours, wherever it is); owns(rule): whether a rule is one of them;
    foreign: {chain: why} of our chains that someone else made (kept only with allow_foreign_chain)."""

    def __init__(self, table, chains):
        self.table = table
        self.fips = find_fips(table)
        ours = set(id(rule) for fip in self.fips.values() for _chain, rule in fip.rules)
        self.owns = lambda rule: id(rule) in ours
        self.foreign = {}
        for chain in chains:
            problem = ipt.foreign_content(table, chain, self.owns, JUMP_COMMENT, MARK)
            if problem:
                self.foreign[chain] = problem


def own(table, dnat_chain, snat_chain, allow_foreign_chain=False):
    """Owned(table); ValueError naming the chain and a foreign rule unless both chains are ours
    (iptables.foreign_content with our MARK, a FIP comment on each rule, our jump comment on
    each jump), or allow_foreign_chain lets the run keep the foreign rules."""
    owned = Owned(table, (dnat_chain, snat_chain))
    if not allow_foreign_chain:
        for chain, what in ((dnat_chain, 'dnat_chain'), (snat_chain, 'snat_chain')):
            problem = owned.foreign.get(chain)
            if problem:
                raise ValueError('refusing to manage %s %r: %s (every rule of this module carries the comment %r); '
                                 'set allow_foreign_chain to manage it anyway' % (what, chain, problem, COMMENT_PREFIX + 'EXTERNAL_IP'))
    return owned


class FamilyPlan(object):
    """One family's delta: FIPs added/changed/removed, its Transaction, mappings whose conntrack entries go."""

    def __init__(self):
        self.added = []
        self.changed = []
        self.removed = []
        self.transaction = ipt.Transaction(TABLE)
        self.flush = []
        self.before = []
        self.after = []


def plan(owned, wanted, state, exclusive, dnat_chain, snat_chain):
    """Plan one family over own()'s classification. wanted: {external: internal or None} of that family.

    present: named FIPs get exactly their two canonical rules; with exclusive every
    other FIP of ours is removed, without it their current rules are kept verbatim.
    absent: named FIPs lose every rule that carries their comment.
    ValueError when a named internal IP is already taken by a FIP that stays.
    """
    table, current, owns = owned.table, owned.fips, owned.owns
    result = FamilyPlan()
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
        # In someone else's chain (only with allow_foreign_chain) their rules are kept, first, and
        # the chain stays unmarked; in ours any rule without a FIP comment is a stray: dropped.
        content[chain] = [rule for rule in table.chain_rules(chain) if not owns(rule)] if chain in owned.foreign else [ipt.mark_rule(MARK)]
    foreign = dict((chain, len(content[chain])) for chain in ours)
    strays_kept = []
    for external in sorted(final):
        for chain, rule in final[external]:
            if chain in ours:
                content[chain].append(rule)
            else:
                strays_kept.append((chain, rule))
    transaction = result.transaction
    for external, fip in current.items():
        for chain, rule in fip.rules:
            if chain not in ours and (chain, rule) not in final.get(external, []):
                transaction.delete(chain, rule)
    for chain, parents in ((dnat_chain, DNAT_PARENTS), (snat_chain, SNAT_PARENTS)):
        if len(content[chain]) > foreign[chain]:
            ipt.reconcile_chain(transaction, table, chain, content[chain], parents, JUMP_COMMENT)
        elif chain in owned.foreign:
            # No FIP rule left in someone else's chain (allow_foreign_chain): it goes back to its
            # own rules, our jumps go.
            ipt.reconcile_chain(transaction, table, chain, content[chain], (), JUMP_COMMENT)
            for parent, rule in ipt.our_jumps(table, chain, JUMP_COMMENT, parents):
                transaction.delete(parent, rule)
        else:
            ipt.remove_chain(transaction, table, chain, JUMP_COMMENT)
            content[chain] = []

    result.before = view(table.rules, ours, [(chain, rule) for fip in current.values() for chain, rule in fip.rules if chain not in ours])
    result.after = view(content, ours, strays_kept) if transaction else result.before
    return result


def view(rules, ours, strays):
    """What this module manages in one family, as iptables-save lines: our chains, then FIP rules elsewhere."""
    lines = [ipt.line('-A', chain, rule) for chain in ours for rule in rules.get(chain, [])]
    return lines + [ipt.line('-A', chain, rule) for chain, rule in strays]


# --- the engine ---------------------------------------------------------------------


class Kernel(ipt.Kernel):
    """The iptables seam plus the conntrack table (pyroute2, imported on first need) and the
    gateway's own addresses (one `ip -j address show`)."""

    def held_addresses(self):
        return fip_gateway.read_held(self.module)

    def conntrack_missing(self):
        return conntrack.require()

    def flush_conntrack(self, family, sources, destinations, check_mode):
        return conntrack.flush(family, sources, destinations, check_mode)


class Intent(object):
    def __init__(self, params, wanted):
        self.params = params
        self.wanted = wanted
        self.chains = (params['dnat_chain'], params['snat_chain'])


class Engine(object):
    """FIPs on engine.run: one save per family (and the other backend's table where it has one),
    both families planned before anything is written, then per family one restore and the
    conntrack flush, then the other backend's purges."""

    def validate(self, params):
        return Intent(params, validate(params['floating_ips'], params['state'], params['dnat_chain'], params['snat_chain']))

    def read(self, kernel, intent):
        """({family: Seen}, the gateway's own addresses: read only for state present)."""
        return ipt.read(kernel, TABLE), kernel.held_addresses() if intent.params['state'] == 'present' else {}

    def own(self, read, intent):
        """Refuse a FIP whose external IP the gateway holds (fip_gateway.check); per family Owned of
        the active table, and of the other backend's when it holds our chains or FIP rules (the
        ownership rule applies there only when purge_other_backend removes them)."""
        seen, held = read
        fip_gateway.check(intent.wanted, held)
        allow = intent.params['allow_foreign_chain']
        for family in FAMILIES:
            try:
                seen[family].owned = own(seen[family].table, *intent.chains, allow_foreign_chain=allow)
            except ValueError as exc:
                raise ValueError('%s: %s' % (family, exc)) from None
            other = seen[family].other
            if other is None:
                continue
            seen[family].other_owned = Owned(other, intent.chains)
            if not any(other.has_chain(chain) for chain in intent.chains) and not seen[family].other_owned.fips:
                seen[family].other = None
            elif intent.params['purge_other_backend']:
                try:
                    seen[family].other_owned = own(other, *intent.chains, allow_foreign_chain=allow)
                except ValueError as exc:
                    raise ValueError('%s, %s backend: %s' % (family, ipt.OTHER_BACKEND[seen[family].table.backend], exc)) from None
        return seen

    def plan(self, owned, intent):
        params = intent.params
        plans = dict((family, plan(owned[family].owned, intent.wanted[family], params['state'], params['exclusive'], *intent.chains))
                     for family in FAMILIES)
        result = Plan(result={'changed': False}, before=dict((f, plans[f].before) for f in FAMILIES),
                      after=dict((f, plans[f].after) for f in FAMILIES))
        flush = params['flush_conntrack'] and any(plans[family].flush for family in FAMILIES)
        if flush:
            result.preflight.append(lambda kernel: self._require_conntrack(kernel, plans))
        purges = []
        for family in FAMILIES:
            family_plan = plans[family]
            state = result.result[family] = dict(added=family_plan.added, changed=family_plan.changed, removed=family_plan.removed,
                                                 payload=family_plan.transaction.render(), applied=False, conntrack_flushed=0)
            result.result['changed'] = result.result['changed'] or bool(family_plan.transaction)
            if family_plan.transaction:
                result.steps.append(ipt.restore_step('%s rules' % family, family, state, family_plan.transaction))
            if flush and family_plan.flush:
                state['conntrack_flushed'] = None
                result.steps.append(self._flush_step(result.result, family, state, family_plan.flush))
            if owned[family].other is not None:
                purge = self._other_backend(result, intent, family, owned[family], state)
                if purge:
                    purges.append(purge)
        result.steps.extend(purges)
        return result

    @staticmethod
    def _require_conntrack(kernel, plans):
        """Before anything is written: pyroute2 is needed only when there is something to flush."""
        missing = kernel.conntrack_missing()
        if missing:
            externals = ', '.join(str(external) for family in FAMILIES for external, _internals in plans[family].flush)
            raise EngineError(missing_required_lib('pyroute2', reason='to flush the conntrack entries of floating IPs %s' % externals),
                              result={'exception': missing})

    @staticmethod
    def _flush_step(result, family, state, flush):
        sources = set(internal for _external, internals in flush for internal in internals)
        destinations = set(external for external, _internals in flush)

        def action(kernel, check_mode):
            state['conntrack_flushed'] = kernel.flush_conntrack(family, sources, destinations, check_mode)
            result['changed'] = result['changed'] or bool(state['conntrack_flushed'])
        return Step('%s conntrack flush' % family, action, check_label='%s conntrack count (check mode)' % family)

    @staticmethod
    def _other_backend(result, intent, family, seen, state):
        """Record our chains and FIP rules in the backend the active iptables does not use in
        state['other_backend']; warn naming them, or with purge_other_backend return the Step
        that removes them (conntrack is shared by both backends: nothing is flushed for it)."""
        params, other = intent.params, seen.other
        backend = ipt.OTHER_BACKEND[seen.table.backend]
        found = (['chain %s' % chain for chain in intent.chains if other.has_chain(chain)]
                 + ['rules of floating IP %s' % external for external in sorted(seen.other_owned.fips)])
        transaction = ipt.Transaction(TABLE)
        if params['purge_other_backend']:
            try:
                transaction = plan(seen.other_owned, {}, 'present', True, *intent.chains).transaction
            except ValueError as exc:
                raise ValueError('%s, %s backend: %s' % (family, backend, exc)) from None
        else:
            result.warnings.append('the %s backend (%s -t %s) still holds this module\'s %s; they still apply to packets: '
                                   'set purge_other_backend to remove them' % (backend, ipt.backend_tool(family, backend, 'save'), TABLE, ', '.join(found)))
        return ipt.other_backend_step(result, family, backend, state, found, transaction, 'FIP chains and rules')


def run(module, kernel=None):
    """The module's result: nat_backend.run over this engine and the nftables one (or kernel)."""
    # Imported here: nat_backend builds on this module.
    from ansible_collections.clusternet.node.plugins.module_utils import nat_backend
    return nat_backend.run(module, 'fip', kernel)
