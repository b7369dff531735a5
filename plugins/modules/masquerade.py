#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: masquerade
short_description: Masquerade pod traffic leaving the cluster, per address family
description:
  - Keeps Flannel's masquerade rule set in a chain of its own in the C(nat) table, jumped to
    exactly once from C(POSTROUTING), for every family (IPv4, IPv6) that has a cluster CIDR.
  - The jump is inserted first in C(POSTROUTING), but after M(clusternet.node.fip)'s SNAT jump
    (and moved there when found before it), so a floating IP's pod leaves with its floating IP.
  - "Rules per family, every one commented, in this order: first the chain's mark
    C(-m comment --comment \"clusternet.node masquerade chain\") (no target: a no-op); C(-m mark --mark SKIP_MARK -j RETURN);
    for each cluster CIDR in address order and each pod CIDR in address order
    C(-s POD -d CLUSTER -j RETURN), C(-s CLUSTER -d POD -j RETURN), C(! -s CLUSTER -d POD -j RETURN);
    then for each cluster CIDR C(-s CLUSTER ! -d 224.0.0.0/4 -j MASQUERADE --random-fully)
    (C(ff00::/8) for IPv6) and C(! -s CLUSTER -d CLUSTER -j MASQUERADE --random-fully)."
  - The kernel is read on every run (one C(iptables-save -t nat) per family) and the chain is compared by
    content, order and duplicates; any difference rebuilds it, and repairs a missing or repeated jump, in one
    C(iptables-restore --noflush) transaction per family, so the chain is never seen half-built.
  - A family without a cluster CIDR has none of these rules, so removing a family from the intent removes
    its chain and jump; a host with no previous rules is simply an empty state.
  - Only the chain and the jumps to it that carry exactly O(comment) are touched; every other rule of the host is left
    alone, including a rule of someone else's that jumps to the chain (it is never taken for a repeated jump).
    Removing the chain (O(state=absent), or a family without cluster CIDRs) while such a rule still jumps to it fails
    naming that rule and changes nothing. Changing O(chain) does not remove the chain of the old name; run
    O(state=absent) with the old name first.
  - "The chain is managed only while it is this module's: it does not exist yet; or it holds the mark rule this module
    writes first in every chain it creates (then any other rule in it is a stray and the next run removes it); or every
    rule in it carries O(comment) (a chain of an earlier release, marked on the next run); or it is empty and every
    rule that jumps to it carries O(comment). Otherwise (a chain of someone else, or of M(clusternet.node.fip)) the run
    fails naming the chain and a foreign rule, and changes nothing, in both families, unless O(allow_foreign_chain=true)."
  - Rules are compared by their structure (options and values, the comment as a value however iptables-save quotes it,
    addresses as addresses), never by text, so every form the save tools print converges.
  - "The backend the active C(iptables) does not use (C(iptables-legacy) beside C(iptables-nft), or the reverse) is read
    once per family when its save tool exists and it has a nat table (for legacy, as listed in C(/proc/net/ip_tables_names),
    so reading never creates it); a chain of this name there is named in a warning, and removed only with
    O(purge_other_backend=true)."
  - A failure after a write says exactly which family's transaction was applied and which was not.
  - Writers of this collection are serialized by a host lock.
version_added: 0.1.0
author: clusternet maintainers (@clusternet)
requirements:
  - iptables (iptables-save, iptables-restore, ip6tables-save, ip6tables-restore)
  - nft >= 1.0.1 (package nftables) with O(backend=nftables)
extends_documentation_fragment:
  - clusternet.node.attributes
  - clusternet.node.nat_backend
options:
  cluster_cidrs:
    description:
      - The cluster's pod networks, IPv4 and IPv6 mixed. A family with none has no rules of this module.
    type: list
    elements: str
    default: []
  pod_cidrs:
    description:
      - This node's pod subnets, IPv4 and IPv6 mixed. Each must lie inside a cluster CIDR of its family.
    type: list
    elements: str
    default: []
  chain:
    description:
      - The nat chain that holds the rules (at most 28 characters). Built-in chain and target names, and the name of any
        target extension (C(MASQUERADE), C(DNAT), C(LOG), C(MARK), ...; the host's xtables extension directory is searched too),
        are refused in any case.
    type: str
    default: CLUSTERNET-POSTRTG
  comment:
    description:
      - Comment put on every rule and on the jump (1-255 printable ASCII characters without quotes or backslashes).
        It marks the rules as this module's; comments starting with C(clusternet fip) belong to M(clusternet.node.fip) and are refused.
    type: str
    default: clusternet masq
  random_fully:
    description:
      - Add C(--random-fully) to the MASQUERADE rules. Omitted, with a warning, where the iptables binary lacks it.
    type: bool
    default: true
  skip_mark:
    description:
      - Packets carrying this firewall mark (C(VALUE) or C(VALUE/MASK)) are never masqueraded.
      - An empty string leaves that rule out.
    type: str
    default: 0x4000/0x4000
  allow_foreign_chain:
    description:
      - Manage O(chain) even though it holds rules without O(comment) (or is empty and jumped to by such a rule).
        The chain is then rebuilt to hold exactly this module's mark and rules, so those rules are removed, and it is
        this module's from then on.
    type: bool
    default: false
    version_added: 0.2.0
  purge_other_backend:
    description:
      - Remove O(chain) and the jumps to it from the other iptables backend (see the description) in the same run, through
        its own C(iptables-legacy-restore) or C(iptables-nft-restore). The ownership rule of O(allow_foreign_chain) applies there too.
    type: bool
    default: false
    version_added: 0.2.0
  state:
    description:
      - V(present) keeps the rules for the given CIDRs; V(absent) removes the chain and its jumps in both families.
    type: str
    choices: [present, absent]
    default: present
notes:
  - "With V(nftables) the cluster and pod CIDRs are interval sets (C(masq-cluster), C(masq-pod), overlapping and adjacent
    networks merged, and reported so in RV(ipv4.added) and RV(ipv4.removed)) used by Flannel's rule order in chain
    C(masq-postrouting); O(chain), O(comment) and O(allow_foreign_chain) apply to V(iptables) only."
'''

EXAMPLES = r'''
- name: Masquerade dual-stack pod traffic leaving the cluster
  clusternet.node.masquerade:
    cluster_cidrs: [10.244.0.0/16, "fd00:10:244::/56"]
    pod_cidrs: [10.244.1.0/24, "fd00:10:244:1::/64"]

- name: IPv4 only, plain source port selection, no skip mark (removes the IPv6 rules if any)
  clusternet.node.masquerade:
    cluster_cidrs: [10.244.0.0/16]
    pod_cidrs: [10.244.1.0/24]
    random_fully: false
    skip_mark: ""

- name: Remove the chain and its jumps in both families
  clusternet.node.masquerade:
    state: absent
'''

RETURN = r'''
ipv4:
  description: What this module manages in the IPv4 nat table, as iptables-save lines, and the transaction applied.
    With O(backend=nftables) the lines are the C(nft -f) lines that declare the masquerade part of C(ip clusternet),
    C(before) starting with a C(# drift:) line for anything found in the table that a run would not write.
  returned: always
  type: dict
  contains:
    before:
      description: The POSTROUTING jumps to the chain and the chain's rules before the run.
      type: list
      elements: str
      sample: []
    after:
      description: The same lines after the run (predicted in check mode).
      type: list
      elements: str
      sample:
        - -A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG
        - -A CLUSTERNET-POSTRTG -m comment --comment "clusternet.node masquerade chain"
        - -A CLUSTERNET-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "clusternet masq" -j RETURN
    payload:
      description: The iptables-restore --noflush input applied (would be applied in check mode); empty when in sync.
        With O(backend=nftables), the C(nft -f) input that replaces the whole table.
      type: str
      sample: "*nat\n:CLUSTERNET-POSTRTG - [0:0]\n...\nCOMMIT\n"
    applied:
      description: Whether RV(ipv4.payload) was written (false in check mode, when in sync, or when the run failed first).
      type: bool
      sample: true
    added:
      description: The CIDRs the run adds to the chain (would add, in check mode), in the shape of the options.
      type: dict
      sample: {cluster_cidrs: [10.244.0.0/16], pod_cidrs: [10.244.1.0/24]}
    removed:
      description: The CIDRs the chain held that the run removes from it, in the shape of the options.
      type: dict
      sample: {cluster_cidrs: [], pod_cidrs: []}
    other_backend:
      description: Present when the other iptables backend holds the chain or a jump to it.
      type: dict
      returned: when the other backend holds the chain
      contains:
        backend:
          description: V(legacy) or V(nft).
          type: str
          sample: legacy
        found:
          description: The chain and the rules that jump to it there, as iptables-save lines.
          type: list
          elements: str
          sample: [":CLUSTERNET-POSTRTG - [0:0]"]
        payload:
          description: The removal applied through that backend's restore tool; empty without O(purge_other_backend).
          type: str
          sample: ""
        applied:
          description: Whether that removal was written.
          type: bool
          sample: false
ipv6:
  description: The same keys as RV(ipv4), for the IPv6 nat table (ip6tables).
  returned: always
  type: dict
backend:
  description: The backend the run used, V(iptables) or V(nftables) (what O(backend=auto) chose).
  returned: always
  type: str
  sample: iptables
migrated:
  description:
    - What the run removed (would remove, in check mode) of this module from the other backend, after a switch of O(backend).
      C(ipv4) and C(ipv6) hold the other backend's own result keys (payload, applied, ...), as a run there would report them.
  returned: when the other backend held something of this module
  type: dict
  contains:
    backend:
      description: The other backend, V(iptables) or V(nftables).
      type: str
      sample: iptables
    ipv4:
      description: The IPv4 part of the removal.
      type: dict
    ipv6:
      description: The IPv6 part of the removal.
      type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clusternet.node.plugins.module_utils import masquerade as masq


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cluster_cidrs=dict(type='list', elements='str', default=[]),
            pod_cidrs=dict(type='list', elements='str', default=[]),
            chain=dict(type='str', default='CLUSTERNET-POSTRTG'),
            comment=dict(type='str', default='clusternet masq'),
            random_fully=dict(type='bool', default=True),
            skip_mark=dict(type='str', default='0x4000/0x4000'),
            allow_foreign_chain=dict(type='bool', default=False),
            purge_other_backend=dict(type='bool', default=False),
            backend=dict(type='str', choices=['iptables', 'nftables', 'auto'], default='iptables'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**masq.run(module))


if __name__ == '__main__':
    main()
