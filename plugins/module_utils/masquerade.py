# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod masquerade rules: validate the intent, render the desired chain per family.

Pure functions, except supports_random_fully at the end. The rule set is
Flannel's (pkg/trafficmngr/iptables), rendered in the exact text iptables-save
prints, so the shared iptables engine can compare it with the kernel's chain by
content, order and duplicates. A family without a cluster CIDR has no rules of
ours: its chain and jump are removed, and "nothing there yet" is simply an empty
table, never an error.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import re

from ansible_collections.clusternet.node.plugins.module_utils import iptables as ipt
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV4, IPV6, find_duplicate, parse_network, split_by_family
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock

TABLE = 'nat'
PARENT = 'POSTROUTING'
# iptables-save escapes quotes and backslashes in comments its own way; keep them out.
COMMENT_RE = re.compile(r'^[ !#-&(-\[\]-~]{1,256}$')
MARK_RE = re.compile(r'^(0x[0-9a-f]+|0|[1-9][0-9]*)(?:/(0x[0-9a-f]+|0|[1-9][0-9]*))?$', re.IGNORECASE)
FULL_MARK = 0xffffffff


class Intent(object):
    """Validated options: per family the sorted cluster and pod networks."""

    def __init__(self, clusters, pods, chain, comment, skip_mark, random_fully):
        self.clusters = clusters
        self.pods = pods
        self.chain = chain
        self.comment = comment
        self.skip_mark = skip_mark
        self.random_fully = random_fully


def parse_networks(values, what):
    networks = [parse_network(value, what) for value in values or []]
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
        raise ValueError('invalid comment %r: expected 1-256 printable ASCII characters without quotes or backslashes' % (comment,))


def build_intent(params):
    """Validate every option before anything touches the kernel; ValueError names the culprit."""
    ipt.check_chain(params['chain'])
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
    return Intent(clusters, pods, params['chain'], params['comment'], skip_mark, params['random_fully'])


def desired_rules(family, clusters, pods, comment, skip_mark, random_fully):
    """Our chain's rules for one family, in iptables-save text, in a fixed order:
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
    return rules


def plan(table, chain, rules, comment):
    """Restore lines for one family: reconcile our chain and its single jump, or
    remove both when the family has no rules."""
    if not rules:
        return ipt.remove_chain(table, chain)
    return ipt.reconcile_chain(table, chain, rules, [PARENT], comment)


def view(table, chain):
    """What this module manages in one family, as iptables-save lines: the
    POSTROUTING jumps to our chain, then the chain's rules."""
    jumps = ['-A %s %s' % (PARENT, rule) for rule in table.chain_rules(PARENT) if ipt.rule_target(rule) == chain]
    return jumps + ['-A %s %s' % (chain, rule) for rule in table.chain_rules(chain)]


def expected_view(chain, rules, comment):
    """view() of a table once plan() has been applied."""
    if not rules:
        return []
    return ['-A %s %s' % (PARENT, ipt.jump_rule(chain, comment))] + ['-A %s %s' % (chain, rule) for rule in rules]


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


def run(module):
    """Validate, then under the host lock: per family one save, plan, one restore. Returns the result."""
    try:
        intent = build_intent(module.params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = {'changed': False}
    with host_lock(module):
        for family in FAMILIES:
            rules = _family_rules(module, intent, family)
            table, payload = ipt.sync_table(module, family, TABLE, functools.partial(plan, chain=intent.chain, rules=rules, comment=intent.comment))
            before = view(table, intent.chain)
            result[family] = {
                'before': before,
                'after': expected_view(intent.chain, rules, intent.comment) if payload else before,
                'payload': payload,
            }
            result['changed'] = result['changed'] or bool(payload)
    if module._diff:
        result['diff'] = ipt.diff(*(dict((family, result[family][key]) for family in FAMILIES) for key in ('before', 'after')))
    return result
