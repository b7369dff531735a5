# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod masquerade rules: validate the intent, render the desired chain per family.

Pure functions, and the Engine that engine.run drives over the iptables kernel object
(iptables.Kernel). The rule set is Flannel's
(pkg/trafficmngr/iptables), rendered as iptables-save orders it, so the shared
iptables engine compares it with the kernel's chain by structure, order and
duplicates. A family without a cluster CIDR has no rules of ours: its chain and
jump are removed, and "nothing there yet" is simply an empty table, never an
error. The chain is managed only while it is ours (decided in Engine.own, by
iptables.foreign_content): it holds our mark (MARK, the no-op first rule written with the
chain), or every rule in it carries our comment (a chain of a release before marks), or it
is empty and only our jumps reach it. In a chain of ours any other rule is a stray, removed.
Outside it only the jump carrying our comment is ours: any other rule that jumps to the
chain is left alone, and removing the chain while one does is refused naming it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.engine import Plan
from ansible_collections.clusternet.node.plugins.module_utils.families import (
    FAMILIES,
    find_duplicate,
    parse_network,
    special_network,
    split_by_family,
)

TABLE = 'nat'
PARENT = 'POSTROUTING'
# Printable ASCII without quotes or backslashes, at most 255 characters (xt_comment keeps 256 bytes with the NUL).
COMMENT_RE = re.compile(r'^[ !#-&(-\[\]-~]{1,255}$')
# fip finds its rules by this comment prefix anywhere in the table: a masquerade comment of that form would be taken for a FIP.
# It is also fip's jump comment: our jump in POSTROUTING goes after fip's SNAT jump.
FIP_COMMENT = 'clusternet fip'
# The comment of the no-op first rule that marks a chain as created by this module (iptables.mark_rule).
MARK = 'clusternet.node masquerade chain'
MARK_RE = re.compile(r'^(0x[0-9a-f]+|0|[1-9][0-9]*)(?:/(0x[0-9a-f]+|0|[1-9][0-9]*))?$', re.IGNORECASE)
FULL_MARK = 0xffffffff
IPV4_MAPPED = ipaddress.ip_network('::ffff:0:0/96')


class Intent(object):
    """Validated options: per family the sorted cluster and pod networks."""

    def __init__(self, params, clusters, pods, skip_mark):
        self.clusters = clusters
        self.pods = pods
        self.chain = params['chain']
        self.comment = params['comment']
        self.skip_mark = skip_mark
        self.random_fully = params['random_fully']
        self.allow_foreign_chain = params.get('allow_foreign_chain', False)
        self.purge_other_backend = params.get('purge_other_backend', False)


def parse_networks(values, what):
    networks = []
    for value in values or []:
        network = parse_network(value, what)
        if network.prefixlen == 0:
            raise ValueError('invalid %s %r: a /0 leaves nothing outside the cluster to masquerade to' % (what, value))
        if network.version == 6 and network.subnet_of(IPV4_MAPPED):
            raise ValueError('invalid %s %r: it is IPv4-mapped (inside ::ffff:0:0/96); write the IPv4 network instead' % (what, value))
        reason = special_network(network)
        if reason:
            raise ValueError('invalid %s %r: %s, not a pod or cluster network' % (what, value, reason))
        networks.append(network)
    duplicate = find_duplicate(networks)
    if duplicate is not None:
        raise ValueError('%s %s is listed twice' % (what, duplicate))
    return dict((family, sorted(nets)) for family, nets in split_by_family(networks).items())


def canonical_mark(value):
    """'16384/16384' -> '0x4000/0x4000' as iptables-save prints it; '' -> None."""
    text = str(value or '').strip()
    if not text:
        return None
    match = MARK_RE.match(text)
    if not match:
        raise ValueError('invalid skip_mark %r: expected VALUE or VALUE/MASK (decimal or 0x hex)' % (value,))
    mark = int(match.group(1), 0)
    mask = int(match.group(2), 0) if match.group(2) else FULL_MARK
    if mark > FULL_MARK or mask > FULL_MARK:
        raise ValueError('invalid skip_mark %r: value and mask are 32-bit' % (value,))
    if mark & ~mask:
        raise ValueError('invalid skip_mark %r: the value has bits outside the mask, it could never match' % (value,))
    return '0x%x' % mark if mask == FULL_MARK else '0x%x/0x%x' % (mark, mask)


def check_comment(comment):
    if not COMMENT_RE.match(comment or ''):
        raise ValueError('invalid comment %r: expected 1-255 printable ASCII characters without quotes or backslashes' % (comment,))
    if comment == FIP_COMMENT or comment.startswith(FIP_COMMENT + ' '):
        raise ValueError('invalid comment %r: comments starting with %r mark clusternet.node.fip rules' % (comment, FIP_COMMENT))


def build_intent(params):
    """Validate every option before anything touches the kernel; ValueError names the culprit."""
    ipt.check_chains([(params['chain'], 'chain')])
    check_comment(params['comment'])
    skip_mark = canonical_mark(params['skip_mark'])
    clusters = parse_networks(params['cluster_cidrs'], 'cluster CIDR')
    pods = parse_networks(params['pod_cidrs'], 'pod CIDR')
    for family in FAMILIES:
        for pod in pods[family]:
            if not clusters[family]:
                raise ValueError('pod CIDR %s is %s but cluster_cidrs has no %s network' % (pod, family, family))
            if not any(pod.subnet_of(cluster) for cluster in clusters[family]):
                raise ValueError('pod CIDR %s is outside every %s cluster CIDR (%s)' % (
                    pod, family, ', '.join(str(cluster) for cluster in clusters[family])))
    if params['state'] == 'absent':
        clusters = dict((family, []) for family in FAMILIES)
        pods = dict(clusters)
    return Intent(params, clusters, pods, skip_mark)


def desired_rules(family, clusters, pods, comment, skip_mark, random_fully):
    """Our chain's rules for one family (Rules, in iptables-save order), in a fixed order:
    the skip-mark RETURN; for each cluster CIDR (address order) and each pod CIDR
    (address order) the three RETURN rules of that pair; then for each cluster CIDR
    its two MASQUERADE rules. [] when the family has no cluster CIDR.
    """
    if not clusters:
        return []
    tag = ipt.comment_match(comment)
    masquerade = 'MASQUERADE --random-fully' if random_fully else 'MASQUERADE'
    rules = ['-m mark --mark %s %s -j RETURN' % (skip_mark, tag)] if skip_mark else []
    for cluster in clusters:
        for pod in pods:
            rules.append('-s %s -d %s %s -j RETURN' % (pod, cluster, tag))
            rules.append('-s %s -d %s %s -j RETURN' % (cluster, pod, tag))
            rules.append('! -s %s -d %s %s -j RETURN' % (cluster, pod, tag))
    for cluster in clusters:
        rules.append('-s %s ! -d %s %s -j %s' % (cluster, ipt.MULTICAST[family], tag, masquerade))
        rules.append('! -s %s -d %s %s -j %s' % (cluster, cluster, tag, masquerade))
    return [ipt.Rule(rule) for rule in rules]


def refuse_foreign(table, intent):
    """own(): ValueError naming the chain and a foreign rule unless intent.chain is ours in table
    (or allow_foreign_chain takes it over, marking it). Ours: iptables.foreign_content with our
    MARK, our comment on each rule, and our comment on each jump."""
    if intent.allow_foreign_chain:
        return
    problem = ipt.foreign_content(table, intent.chain, lambda rule: rule.comment == intent.comment, intent.comment, MARK)
    if problem:
        raise ValueError('refusing to manage chain %r: %s (this module\'s comment is %r); '
                         'set allow_foreign_chain to take the chain over' % (intent.chain, problem, intent.comment))


def plan_family(table, chain, rules, comment):
    """The Transaction of one family: reconcile our chain (our mark, then rules) and its single
    jump, or remove both when the family has no rules; empty when the table is in sync.
    ValueError when the chain is to go but a foreign rule still jumps to it."""
    transaction = ipt.Transaction(TABLE)
    if rules:
        # Our jump follows the fip module's SNAT jump: a FIP's pod leaves with its FIP, not the node's address.
        ipt.reconcile_chain(transaction, table, chain, [ipt.mark_rule(MARK)] + rules, [PARENT], comment,
                            after=lambda rule: rule.comment == FIP_COMMENT)
    else:
        ipt.remove_chain(transaction, table, chain, comment)
    return transaction


def held(table, chain):
    """The CIDRs our chain holds, in the module's option shape: {cluster_cidrs, pod_cidrs}
    (clusters from the MASQUERADE rules' source, pods from the RETURN rules POD -> CLUSTER)."""
    clusters, pods = [], []
    for rule in table.chain_rules(chain):
        options = dict((option, (negated, values)) for negated, option, values in rule.key)
        source, destination = options.get('-s'), options.get('-d')
        if source and not source[0] and rule.target == 'MASQUERADE':
            clusters.append(source[1][0])
        elif source and destination and not source[0] and not destination[0] and rule.target == 'RETURN':
            pods.append((source[1][0], destination[1][0]))
    return {'cluster_cidrs': sorted(set(clusters)), 'pod_cidrs': sorted(set(pod for pod, cluster in pods if cluster in clusters))}


def delta(current, desired):
    """(added, removed): {option: [values]} of desired not in current and of current not in desired."""
    return tuple(dict((key, [value for value in a[key] if value not in b[key]]) for key in sorted(a)) for a, b in ((desired, current), (current, desired)))


def view(table, chain):
    """What this module manages in one family, as iptables-save lines: the jumps to our
    chain (POSTROUTING's, then any other chain's), then the chain's rules."""
    jumps = sorted(table.jumps_to(chain), key=lambda jump: jump[0] != PARENT)
    return [ipt.line('-A', parent, rule) for parent, rule in jumps] + [ipt.line('-A', chain, rule) for rule in table.chain_rules(chain)]


def expected_view(table, chain, rules, comment):
    """view() of a table once plan_family() has been applied: our one jump, the jumps that are
    not ours (kept), our mark and rules."""
    if not rules:
        return []
    ours = ipt.our_jumps(table, chain, comment, (PARENT,))
    jumps = [(PARENT, ipt.jump_rule(chain, comment))] + [jump for jump in table.jumps_to(chain) if jump not in ours]
    jumps.sort(key=lambda jump: jump[0] != PARENT)
    return [ipt.line('-A', parent, rule) for parent, rule in jumps] + [ipt.line('-A', chain, rule) for rule in [ipt.mark_rule(MARK)] + rules]


# --- the engine ---------------------------------------------------------------


class Engine(object):
    """Masquerade on engine.run: per family one save (and the other backend's table where it
    has one), then one restore per family, then the other backend's purges."""

    def validate(self, params):
        return build_intent(params)

    def read(self, kernel, intent):
        seen = ipt.read(kernel, TABLE)
        for family in FAMILIES:
            asked = intent.random_fully and bool(intent.clusters[family])
            seen[family].random_fully = kernel.supports_random_fully(family) if asked else None
        return seen

    def own(self, seen, intent):
        """Refuse unless our chain is ours in each family (and in the other backend when purging it).
        The other backend's chain counts only when it holds the chain or a jump to it."""
        for family in FAMILIES:
            try:
                refuse_foreign(seen[family].table, intent)
            except ValueError as exc:
                raise ValueError('%s: %s' % (family, exc)) from None
            other = seen[family].other
            if other is not None and not (other.has_chain(intent.chain) or other.jumps_to(intent.chain)):
                seen[family].other = None
            elif other is not None and intent.purge_other_backend:
                try:
                    refuse_foreign(other, intent)
                except ValueError as exc:
                    raise ValueError('%s, %s backend: %s' % (family, ipt.OTHER_BACKEND[seen[family].table.backend], exc)) from None
        return seen

    def plan(self, owned, intent):
        plan = Plan(result={'changed': False})
        purges = []
        desired_cidrs = dict((family, {'cluster_cidrs': [str(net) for net in intent.clusters[family]],
                                       'pod_cidrs': [str(net) for net in intent.pods[family]]}) for family in FAMILIES)
        for family in FAMILIES:
            seen = owned[family]
            random_fully = intent.random_fully
            if seen.random_fully is False:
                plan.warnings.append('%s lacks MASQUERADE --random-fully: %s rules are written without it' % (ipt.TOOL_PREFIX[family], family))
                random_fully = False
            rules = desired_rules(family, intent.clusters[family], intent.pods[family], intent.comment, intent.skip_mark, random_fully)
            try:
                transaction = plan_family(seen.table, intent.chain, rules, intent.comment)
            except ValueError as exc:
                raise ValueError('%s: %s' % (family, exc)) from None
            before = view(seen.table, intent.chain)
            added, removed = delta(held(seen.table, intent.chain), desired_cidrs[family])
            state = plan.result[family] = {
                'before': before,
                'after': expected_view(seen.table, intent.chain, rules, intent.comment) if transaction else before,
                'payload': transaction.render(),
                'applied': False,
                'added': added,
                'removed': removed,
            }
            plan.before[family], plan.after[family] = state['before'], state['after']
            if transaction:
                plan.steps.append(ipt.restore_step('%s rules' % family, family, state, transaction))
            plan.result['changed'] = plan.result['changed'] or bool(transaction)
            if seen.other is not None:
                purge = self._other_backend(plan, intent, family, seen, state)
                if purge:
                    purges.append(purge)
        plan.steps.extend(purges)
        return plan

    @staticmethod
    def _other_backend(plan, intent, family, seen, state):
        """Record our chain in the backend the active iptables does not use in state['other_backend'];
        warn naming it, or with purge_other_backend return the Step that removes it."""
        other = seen.other
        backend = ipt.OTHER_BACKEND[seen.table.backend]
        found = ([':%s - [0:0]' % intent.chain] if other.has_chain(intent.chain) else []) + view(other, intent.chain)
        transaction = ipt.Transaction(TABLE)
        if intent.purge_other_backend:
            try:
                transaction = plan_family(other, intent.chain, [], intent.comment)
            except ValueError as exc:
                raise ValueError('%s, %s backend: %s' % (family, backend, exc)) from None
        else:
            plan.warnings.append('the %s backend (%s -t %s) still holds this module\'s chain %s; its rules still apply to packets: '
                                 'set purge_other_backend to remove it' % (backend, ipt.backend_tool(family, backend, 'save'), TABLE, intent.chain))
        return ipt.other_backend_step(plan, family, backend, state, found, transaction, 'chain %s' % intent.chain)


def run(module, kernel=None):
    """The module's result: nat_backend.run over this engine and the nftables one (or kernel)."""
    # Imported here: nat_backend builds on this module.
    from ansible_collections.clusternet.node.plugins.module_utils import nat_backend
    return nat_backend.run(module, 'masquerade', kernel)
