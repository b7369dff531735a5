# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod masquerade rules: validate the intent, render the desired chain per family.

Pure functions, except the kernel edge at the end. The rule set is Flannel's
(pkg/trafficmngr/iptables), rendered as iptables-save orders it, so the shared
iptables engine compares it with the kernel's chain by structure, order and
duplicates. A family without a cluster CIDR has no rules of ours: its chain and
jump are removed, and "nothing there yet" is simply an empty table, never an
error. The chain is managed only while it is ours (iptables.foreign_content):
every rule in it carries our comment, or it is empty and only our jumps reach it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.families import (
    FAMILIES,
    IPV4,
    IPV6,
    find_duplicate,
    parse_network,
    special_network,
    split_by_family,
)
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock

TABLE = 'nat'
PARENT = 'POSTROUTING'
# Printable ASCII without quotes or backslashes, at most 255 characters (xt_comment keeps 256 bytes with the NUL).
COMMENT_RE = re.compile(r'^[ !#-&(-\[\]-~]{1,255}$')
# fip finds its rules by this comment prefix anywhere in the table: a masquerade comment of that form would be taken for a FIP.
FIP_COMMENT = 'clusternet fip'
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


def plan(table, chain, rules, comment, allow_foreign_chain=False):
    """Restore lines for one family: reconcile our chain and its single jump, or
    remove both when the family has no rules. ValueError, naming the chain and a
    foreign rule, when the chain is not ours and allow_foreign_chain is false."""
    if not allow_foreign_chain:
        problem = ipt.foreign_content(table, chain, lambda rule: rule.comment == comment, comment)
        if problem:
            raise ValueError('refusing to manage chain %r: %s (this module\'s comment is %r); '
                             'set allow_foreign_chain to take the chain over' % (chain, problem, comment))
    if not rules:
        return ipt.remove_chain(table, chain)
    return ipt.reconcile_chain(table, chain, rules, [PARENT], comment)


def view(table, chain):
    """What this module manages in one family, as iptables-save lines: the jumps to our
    chain (POSTROUTING's, then any other chain's), then the chain's rules."""
    jumps = sorted(table.jumps_to(chain), key=lambda jump: jump[0] != PARENT)
    return [ipt.line('-A', parent, rule) for parent, rule in jumps] + [ipt.line('-A', chain, rule) for rule in table.chain_rules(chain)]


def expected_view(chain, rules, comment):
    """view() of a table once plan() has been applied."""
    if not rules:
        return []
    return [ipt.line('-A', PARENT, ipt.jump_rule(chain, comment))] + [ipt.line('-A', chain, rule) for rule in rules]


# --- kernel edge --------------------------------------------------------------

BINARY = {IPV4: 'iptables', IPV6: 'ip6tables'}


def supports_random_fully(module, family):
    """Whether this host's (ip6)tables binary knows MASQUERADE --random-fully."""
    binary = module.get_bin_path(BINARY[family], required=True)
    _rc, out, err = module.run_command([binary, '-j', 'MASQUERADE', '--help'])
    return '--random-fully' in out + err


def _family_rules(module, intent, family):
    random_fully = intent.random_fully
    if random_fully and intent.clusters[family] and not supports_random_fully(module, family):
        module.warn('%s lacks MASQUERADE --random-fully: %s rules are written without it' % (BINARY[family], family))
        random_fully = False
    return desired_rules(family, intent.clusters[family], intent.pods[family], intent.comment, intent.skip_mark, random_fully)


def _other_backend(module, intent, family, table):
    """Our chain in the backend the active iptables does not use: {backend, found, payload}, or None.
    Warns naming it; with purge_other_backend plans its removal (same ownership rule)."""
    other = ipt.other_backend_table(module, family, table)
    if other is None or not (other.has_chain(intent.chain) or other.jumps_to(intent.chain)):
        return None
    backend = ipt.OTHER_BACKEND[table.backend]
    found = ([':%s - [0:0]' % intent.chain] if other.has_chain(intent.chain) else []) + view(other, intent.chain)
    payload = ''
    if intent.purge_other_backend:
        try:
            payload = ipt.render_restore(TABLE, plan(other, intent.chain, [], intent.comment, intent.allow_foreign_chain))
        except ValueError as exc:
            module.fail_json(msg='%s, %s backend: %s' % (family, backend, exc))
    else:
        module.warn('the %s backend (%s -t %s) still holds this module\'s chain %s; its rules still apply to packets: '
                    'set purge_other_backend to remove it' % (backend, ipt.backend_tool(family, backend, 'save'), TABLE, intent.chain))
    return {'backend': backend, 'found': found, 'payload': payload, 'applied': False}


def run(module):
    """Validate, then under the host lock: per family one save (and one of the other backend's
    table where it has one), plan both families, then one restore per family. Returns the result."""
    try:
        intent = build_intent(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = {'changed': False}
    steps = []
    purges = []
    with host_lock(module):
        for family in FAMILIES:
            rules = _family_rules(module, intent, family)
            table = ipt.save_table(module, family, TABLE)
            try:
                payload = ipt.render_restore(TABLE, plan(table, intent.chain, rules, intent.comment, intent.allow_foreign_chain))
            except ValueError as exc:
                module.fail_json(msg='%s: %s' % (family, exc))
            before = view(table, intent.chain)
            state = result[family] = {
                'before': before,
                'after': expected_view(intent.chain, rules, intent.comment) if payload else before,
                'payload': payload,
                'applied': False,
            }
            other = _other_backend(module, intent, family, table)
            if other is not None:
                state['other_backend'] = other
                if other['payload']:
                    tool = ipt.backend_tool(family, other['backend'], 'restore')
                    purges.append(('%s chain %s removed through %s' % (family, intent.chain, tool),
                                   ipt.restore_step(module, family, other, other['payload'], tool)))
            if payload:
                steps.append(('%s rules' % family, ipt.restore_step(module, family, state, payload)))
            result['changed'] = result['changed'] or bool(payload) or bool(other and other['payload'])
        if not module.check_mode:
            ipt.run_steps(module, steps + purges, result)
    if module._diff:
        result['diff'] = ipt.diff(*(dict((family, result[family][key]) for family in FAMILIES) for key in ('before', 'after')))
    return result
