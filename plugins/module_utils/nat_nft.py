# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables backend of masquerade and fip: two engines for engine.run over nft.NftKernel.

Both modules share one table per family (`ip clusternet`, `ip6 clusternet`, laid out in
nft.py). A run reads the whole table, keeps the other module's half as it was read
(Table.masquerade or Table.fips), and writes the whole table again in one `nft -f`
transaction per family, under the host lock. The write is skipped when the content is
the intended one and the read found no drift; anything tampered into the table (an
extra rule, set or element, another priority) is drift, so it is repaired by the next
run of either module. Nothing outside our tables is read or written.

Validation is each module's own (masquerade.build_intent, fip.validate); the FIP
conntrack flush is fip.Engine's step over the same conntrack code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.clusternet.node.plugins.module_utils import fip, fip_gateway, nft
from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils import masquerade as masq
from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError, Plan, Step
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES

NO_PURGE = ('purge_other_backend is not supported with backend nftables: a run on nftables removes this module\'s rules '
            'from both iptables backends by itself')


class Kernel(fip.Kernel):
    """fip's kernel object (host lock, the gateway's own addresses, conntrack) with nft in place
    of iptables; nft's failures become KernelError, so engine.run reports what was applied."""

    def __init__(self, module, nft_kernel=None):
        super(Kernel, self).__init__(module)
        self.nft = nft_kernel

    def _nft(self):
        """The NftKernel, or None where nft is not installed."""
        if self.nft is None:
            path = self.module.get_bin_path('nft')
            self.nft = nft.NftKernel(self.module.run_command, path) if path else None
        return self.nft

    def preflight(self):
        try:
            if self._nft() is None:
                raise nft.NftError('nft is not installed: backend nftables needs the nftables package (nft >= %s)'
                                   % '.'.join(map(str, nft.MIN_VERSION)))
            return self.nft.preflight()
        except nft.NftError as exc:
            raise KernelError(str(exc)) from None

    def nft_tables(self):
        """{(family, name)} of every nftables table; empty where nft is missing (nat_backend's question)."""
        return self.nft.tables() if self._nft() is not None else frozenset()

    def has_iptables(self):
        """Whether every tool the iptables engines run is installed."""
        return all(self.has_tool('%s-%s' % (prefix, kind)) for prefix in ipt.TOOL_PREFIX.values() for kind in ('save', 'restore'))

    def table(self, family):
        """The family's table as read (nft.Table; absent: present False)."""
        try:
            return nft.parse_table(family, self.nft.read(family))
        except nft.NftError as exc:
            raise KernelError(str(exc)) from None

    def apply(self, transaction):
        try:
            self.nft.apply(transaction)
        except nft.NftError as exc:
            raise KernelError(str(exc)) from None


def read_tables(kernel):
    """{family: nft.Table}, after the nft version check."""
    kernel.preflight()
    return dict((family, kernel.table(family)) for family in FAMILIES)


def view(family, masquerade=None, fips=None):
    """One module's half of a table as the `nft -f` lines that declare it (the table line left out)."""
    return nft.table_transaction(family, masquerade, fips).render().splitlines()[3:]


def needs_write(table, masquerade, fips):
    """Whether the family's table differs from this content: other content, drift, or a table left with nothing."""
    if table.drift:
        return True
    if not masquerade and not fips:
        return table.present
    return table.masquerade != masquerade or table.fips != fips


def half(family, masquerade, fips, ours):
    """view() of the module's own half: ours is 'masquerade' or 'fips'."""
    return view(family, masquerade) if ours == 'masquerade' else view(family, None, fips)


def family_plan(plan, family, table, masquerade, fips, state, ours):
    """Record one family in plan: the transaction when the table needs a write (its step
    appended), and before/after of our half, ours ('masquerade' or 'fips'), drift listed first
    in before (after is rendered only for a write: at 5,000 FIPs it costs a tenth of a second).
    Returns the state dict."""
    transaction = nft.table_transaction(family, masquerade, fips) if needs_write(table, masquerade, fips) else None
    state.update(payload=transaction.render() if transaction else '', applied=False)
    plan.before[family] = ['# drift: %s' % drift for drift in table.drift] + half(family, table.masquerade, table.fips, ours)
    plan.after[family] = half(family, masquerade, fips, ours) if transaction else plan.before[family]
    plan.result[family] = state
    if transaction:
        plan.result['changed'] = True
        plan.steps.append(apply_step('%s table' % family, state, transaction))
    return state


def apply_step(label, state, transaction):
    """A Step applying transaction, recording in state['applied'] that nft acked it."""
    def action(kernel, _check_mode):
        kernel.apply(transaction)
        state['applied'] = True
    return Step(label, action)


# --- masquerade --------------------------------------------------------------------

def mark_tuple(mark):
    """masquerade.canonical_mark's '0x4000/0x4000' -> (0x4000, 0x4000); None stays None."""
    if mark is None:
        return None
    value, _sep, mask = mark.partition('/')
    return (int(value, 16), int(mask, 16) if mask else nft.FULL_MARK)


def masquerade_content(intent, family):
    """The masquerade half of the family's table for intent, or None when the family has no cluster CIDR."""
    if not intent.clusters[family]:
        return None
    return {'cluster_cidrs': nft.collapse(intent.clusters[family]), 'pod_cidrs': nft.collapse(intent.pods[family]),
            'skip_mark': mark_tuple(intent.skip_mark), 'random_fully': intent.random_fully}


def cidrs(content):
    """{cluster_cidrs, pod_cidrs} as text, as the tables hold them (collapsed)."""
    content = content or {'cluster_cidrs': [], 'pod_cidrs': []}
    return dict((key, [str(net) for net in content[key]]) for key in ('cluster_cidrs', 'pod_cidrs'))


class MasqueradeEngine(object):
    """masquerade with backend nftables: the `masq-*` half of our table, the FIPs kept."""

    def validate(self, params):
        if params.get('purge_other_backend'):
            raise ValueError(NO_PURGE)
        return masq.build_intent(params)

    def read(self, kernel, intent):
        return read_tables(kernel)

    def own(self, tables, intent):
        """Everything in our tables is ours, nothing else is read: nothing to refuse."""
        return tables

    def plan(self, tables, intent):
        plan = Plan(result={'changed': False})
        for family in FAMILIES:
            table, content = tables[family], masquerade_content(intent, family)
            added, removed = masq.delta(cidrs(table.masquerade), cidrs(content))
            state = family_plan(plan, family, table, content, table.fips, {'added': added, 'removed': removed}, 'masquerade')
            state['before'], state['after'] = plan.before[family], plan.after[family]
        return plan


# --- fip -----------------------------------------------------------------------------

class FipDelta(object):
    """One family's FIPs after the run (final: {external: internal}), the changes in the
    module's option shape, and flush: [(external, [internals])] whose conntrack entries go."""

    def __init__(self):
        self.final = {}
        self.added, self.changed, self.removed, self.flush = [], [], [], []


def plan_fips(current, wanted, state, exclusive):
    """FipDelta of one family. current: {external: internal} as read; wanted: {external: internal or None}.

    present: the named FIPs point to their internal IPs; with exclusive every other FIP goes,
    without it stays. absent: the named FIPs go, whatever they point to. ValueError when a
    named internal IP is the target of a FIP that stays (fip.plan's rule)."""
    delta = FipDelta()
    if state == 'present':
        kept = dict((ext, intl) for ext, intl in current.items() if ext not in wanted and not exclusive)
        taken = dict((intl, ext) for ext, intl in kept.items())
        delta.final = dict(kept)
        for external, internal in wanted.items():
            if internal in taken:
                raise ValueError('internal_ip %s of floating IP %s is already used by floating IP %s' % (internal, external, taken[internal]))
            delta.final[external] = internal
            previous = current.get(external)
            if previous is None:
                delta.added.append({'external_ip': str(external), 'internal_ip': str(internal)})
            elif previous != internal:
                delta.changed.append({'external_ip': str(external), 'internal_ip': str(internal), 'previous_internal_ip': str(previous)})
                delta.flush.append((external, [previous]))
    else:
        delta.final = dict((ext, intl) for ext, intl in current.items() if ext not in wanted)
    for external in sorted(current):
        if external not in delta.final:
            delta.removed.append({'external_ip': str(external), 'internal_ip': str(current[external])})
            delta.flush.append((external, [current[external]]))
    return delta


class FipEngine(object):
    """fip with backend nftables: the `fip-*` half of our table (maps and chains), the
    masquerade kept; per family the table's transaction, then the conntrack flush."""

    def validate(self, params):
        if params.get('purge_other_backend'):
            raise ValueError(NO_PURGE)
        return fip.Engine().validate(params)

    def read(self, kernel, intent):
        """({family: nft.Table}, the gateway's own addresses: read only for state present)."""
        return read_tables(kernel), kernel.held_addresses() if intent.params['state'] == 'present' else {}

    def own(self, read, intent):
        """Refuse a FIP whose external IP the gateway holds (fip_gateway.check); everything in our tables is ours."""
        tables, held = read
        fip_gateway.check(intent.wanted, held)
        return tables

    def plan(self, tables, intent):
        params = intent.params
        deltas = dict((family, plan_fips(tables[family].fips, intent.wanted[family], params['state'], params['exclusive']))
                      for family in FAMILIES)
        plan = Plan(result={'changed': False})
        flush = params['flush_conntrack'] and any(deltas[family].flush for family in FAMILIES)
        if flush:
            plan.preflight.append(lambda kernel: fip.Engine._require_conntrack(kernel, deltas))
        for family in FAMILIES:
            table, delta = tables[family], deltas[family]
            state = family_plan(plan, family, table, table.masquerade, delta.final,
                                dict(added=delta.added, changed=delta.changed, removed=delta.removed, conntrack_flushed=0),
                                'fips')
            if flush and delta.flush:
                state['conntrack_flushed'] = None
                plan.steps.append(fip.Engine._flush_step(plan.result, family, state, delta.flush))
        return plan
