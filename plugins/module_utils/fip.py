# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Floating IPs (1:1 NAT): validate pairs, find a FIP's rules by its external IP, plan.

Pure functions over the shared iptables engine's Table. Every rule of a FIP
carries the comment "clusternet fip EXTERNAL" (EXTERNAL as Python's ipaddress
prints it: dotted IPv4, compressed lower-case IPv6), so a FIP is found by its
external IP alone, whatever internal IP it points to and wherever its rules are.
The chains are planned as a whole: any difference rebuilds both of one family in
one iptables-restore transaction, so no FIP is ever seen half-programmed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.clusternet.node.plugins.module_utils import conntrack
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, family_of_version, find_duplicate, parse_address, parse_unicast
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock

TABLE = 'nat'
COMMENT_PREFIX = 'clusternet fip '
JUMP_COMMENT = 'clusternet fip'
DNAT_PARENTS = ('PREROUTING', 'OUTPUT')
SNAT_PARENTS = ('POSTROUTING',)
FIP_COMMENT_RE = re.compile(r'--comment "%s([0-9A-Fa-f.:]+)"' % COMMENT_PREFIX)
DNAT_TO_RE = re.compile(r' -j DNAT --to-destination (\S+)$')
SNAT_FROM_RE = re.compile(r'^-s (\S+)/\d+ ')


class Fip(object):
    """One floating IP as found in the kernel: its rules as (chain, rule) and the internal IPs they name."""

    def __init__(self):
        self.rules = []
        self.internals = []

    def add(self, chain, rule):
        self.rules.append((chain, rule))
        match = DNAT_TO_RE.search(rule) or SNAT_FROM_RE.search(rule)
        if match:
            try:
                internal = parse_address(match.group(1))
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
    ipt.check_chain(dnat_chain, 'dnat_chain')
    ipt.check_chain(snat_chain, 'snat_chain')
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
    """A FIP's two rules as (chain, rule), in the text iptables-save prints."""
    ext, intl = str(external), str(internal)  # IPv6 str() is slow enough to matter for 1000 FIPs
    tag = ipt.comment_match(COMMENT_PREFIX + ext)
    return [
        (dnat_chain, '-d %s/%d %s -j DNAT --to-destination %s' % (ext, external.max_prefixlen, tag, intl)),
        (snat_chain, '-s %s/%d %s -j SNAT --to-source %s' % (intl, internal.max_prefixlen, tag, ext)),
    ]


def fip_of(rule):
    """The external IP named by a rule's FIP comment, or None for any other rule."""
    match = FIP_COMMENT_RE.search(rule)
    if match:
        try:
            return parse_address(match.group(1))
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


def plan(table, wanted, state, exclusive, dnat_chain, snat_chain):
    """Plan one family. wanted: {external: internal or None} of that family.

    present: named FIPs get exactly their two canonical rules; with exclusive every
    other FIP of ours is removed, without it their current rules are kept verbatim.
    absent: named FIPs lose every rule that carries their comment.
    ValueError when a named internal IP is already taken by a FIP that stays.
    """
    current = find_fips(table)
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
            elif sorted(fip.rules) != sorted(final[external]):
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
        # Rules without a FIP comment in our chains are someone else's: kept, first.
        content[chain] = [rule for rule in table.chain_rules(chain) if fip_of(rule) is None]
    strays_kept = []
    for external in sorted(final):
        for chain, rule in final[external]:
            if chain in ours:
                content[chain].append(rule)
            else:
                strays_kept.append((chain, rule))
    for external, fip in current.items():
        result.lines.extend('-D %s %s' % (chain, rule) for chain, rule in fip.rules
                            if chain not in ours and (chain, rule) not in final.get(external, []))
    for chain, parents in ((dnat_chain, DNAT_PARENTS), (snat_chain, SNAT_PARENTS)):
        if content[chain]:
            result.lines.extend(ipt.reconcile_chain(table, chain, content[chain], parents, JUMP_COMMENT))
        else:
            result.lines.extend(ipt.remove_chain(table, chain))

    result.before = view(table.rules, ours, [(chain, rule) for fip in current.values() for chain, rule in fip.rules if chain not in ours])
    result.after = view(content, ours, strays_kept) if result.lines else result.before
    return result


def view(rules, ours, strays):
    """What this module manages in one family, as iptables-save lines: our chains, then FIP rules elsewhere."""
    lines = ['-A %s %s' % (chain, rule) for chain in ours for rule in rules.get(chain, [])]
    return lines + ['-A %s %s' % (chain, rule) for chain, rule in strays]


def run(module):
    """Validate, then under the host lock: one save per family, plan both families before
    writing anything, one restore per family, then the conntrack flush. Returns the result."""
    params = module.params
    try:
        wanted = validate(params['floating_ips'], params['state'], params['dnat_chain'], params['snat_chain'])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = {'changed': False}
    with host_lock(module):
        plans = {}
        for family in FAMILIES:
            table = ipt.save_table(module, family, TABLE)
            try:
                plans[family] = plan(table, wanted[family], params['state'], params['exclusive'], params['dnat_chain'], params['snat_chain'])
            except ValueError as exc:
                module.fail_json(msg=str(exc))
        # Checked before anything is written; pyroute2 is needed only when there is something to flush.
        flush = params['flush_conntrack'] and any(plans[family].flush for family in FAMILIES)
        missing = conntrack.require() if flush else None
        if missing:
            module.fail_json(msg=missing_required_lib('pyroute2'), exception=missing)
        for family in FAMILIES:
            payload = ipt.render_restore(TABLE, plans[family].lines)
            if payload and not module.check_mode:
                ipt.restore(module, family, payload)
            flushed = 0
            if flush:
                sources = set(internal for _external, internals in plans[family].flush for internal in internals)
                destinations = set(external for external, _internals in plans[family].flush)
                try:
                    flushed = conntrack.flush(family, sources, destinations, module.check_mode)
                except conntrack.ConntrackError as exc:
                    module.fail_json(msg='%s (the rules were applied)' % exc, **result)
            result[family] = dict(added=plans[family].added, changed=plans[family].changed, removed=plans[family].removed,
                                  payload=payload, conntrack_flushed=flushed)
            result['changed'] = result['changed'] or bool(payload) or bool(flushed)
    if module._diff:
        result['diff'] = ipt.diff(*(dict((family, getattr(plans[family], key)) for family in FAMILIES) for key in ('before', 'after')))
    return result
