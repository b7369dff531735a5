#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: fip
short_description: Floating IPs (1:1 DNAT and SNAT) on a gateway, IPv4 and IPv6
description:
  - Maps external IPs to internal IPs in table C(nat) of each address family, the way Kube-OVN's VPC NAT
    gateway and OpenStack Neutron do, for IPv4 and IPv6 alike.
  - "Per FIP: C(-d EXTERNAL -j DNAT --to-destination INTERNAL) in O(dnat_chain), jumped to from C(PREROUTING)
    and from C(OUTPUT) (so the gateway itself reaches the FIP), and C(-s INTERNAL -j SNAT --to-source EXTERNAL)
    in O(snat_chain), jumped to from C(POSTROUTING)."
  - "Every rule of a FIP carries the comment C(clusternet fip EXTERNAL), EXTERNAL written as dotted IPv4 or
    compressed lower-case IPv6 (for example C(clusternet fip 2001:db8::10)), so a FIP is found and removed by its
    external IP alone, wherever its rules are. Only that exact comment counts: one that merely resembles it (other
    spacing, C(/32), upper-case IPv6) is someone else's and is left alone. The jumps carry the comment C(clusternet fip);
    each chain starts with its mark C(-m comment --comment \"clusternet.node fip chain\") (no target: a no-op)."
  - The kernel is read on every run (one C(iptables-save -t nat) per family). Any difference rebuilds both chains
    of a family in one C(iptables-restore --noflush -w) transaction, so a FIP's rules appear or disappear together,
    even if the run is killed. A family without FIPs has no chains and no jumps.
  - Rules without a FIP comment outside the two chains are never touched, nor jumps to the chains without
    C(clusternet fip); removing a chain that such a rule still jumps to fails naming that rule and changes nothing.
  - "O(dnat_chain) and O(snat_chain) are managed only while they are this module's: absent; or holding the mark this module
    writes first in each chain it creates (then any rule without a FIP comment in them is a stray and the next run removes
    it); or every rule in them carries a FIP comment (chains of an earlier release, marked on the next run); or empty
    with every jump to them carrying C(clusternet fip). Otherwise (a chain of someone else, or of
    M(clusternet.node.masquerade)) the run fails naming the chain and a foreign rule and changes nothing, in both families,
    unless O(allow_foreign_chain=true)."
  - Rules are compared by their structure (options and values, comments however iptables-save quotes them, addresses as
    addresses), never by text.
  - "The backend the active C(iptables) does not use (C(iptables-legacy) beside C(iptables-nft), or the reverse) is read
    once per family when its save tool exists and it has a nat table (for legacy, as listed in C(/proc/net/ip_tables_names),
    so reading never creates it); FIP chains or rules found there are named in a warning, and removed only with
    O(purge_other_backend=true)."
  - A failure after a write says exactly what was applied, per family (rules, conntrack flush), and what was not.
  - When a FIP is removed, or its external IP is mapped to another internal IP, the conntrack entries of the old
    mapping are deleted after the rules changed, in both directions (original destination the external IP,
    original source the old internal IP), so established flows do not keep using it. Other entries stay.
  - Writers of this collection are serialized by a host lock.
version_added: 0.1.0
author: clusternet maintainers (@clusternet)
requirements:
  - iptables (iptables-save, iptables-restore, ip6tables-save, ip6tables-restore)
  - pyroute2 >= 0.7.2 when O(flush_conntrack=true) and a FIP is removed or remapped
  - nft >= 1.0.1 (package nftables) with O(backend=nftables)
extends_documentation_fragment:
  - clusternet.node.attributes
  - clusternet.node.nat_backend
options:
  floating_ips:
    description:
      - The FIPs, IPv4 and IPv6 mixed. An external IP and an internal IP may each appear once.
    type: list
    elements: dict
    default: []
    suboptions:
      external_ip:
        description:
          - The floating (public) address. An address the gateway itself holds on any interface is refused (with
            O(state=present)), since the DNAT would take the host's own traffic to it. So are the refused special-purpose
            ranges (as in M(clusternet.node.vip)).
        type: str
        required: true
      internal_ip:
        description:
          - The address the FIP maps to, of the same family as O(floating_ips[].external_ip).
          - Required with O(state=present); ignored with O(state=absent), where the external IP alone finds the FIP.
          - It may not be the external IP itself.
        type: str
  exclusive:
    description:
      - With O(state=present), remove every FIP of this module that is not listed.
      - When false, FIPs not listed keep their rules as they are. Not used with O(state=absent).
    type: bool
    default: true
  dnat_chain:
    description:
      - The nat chain that holds the DNAT rules (at most 28 characters).
        Built-in chain and target names and target extension names (C(DNAT), C(MASQUERADE), ...) are refused.
    type: str
    default: CLUSTERNET-FIP-DNAT
  snat_chain:
    description:
      - The nat chain that holds the SNAT rules (at most 28 characters).
        Built-in chain and target names and target extension names (C(DNAT), C(MASQUERADE), ...) are refused.
    type: str
    default: CLUSTERNET-FIP-SNAT
  flush_conntrack:
    description:
      - Delete the conntrack entries of removed and remapped FIPs.
    type: bool
    default: true
  allow_foreign_chain:
    description:
      - Manage O(dnat_chain) and O(snat_chain) even though they hold rules without a FIP comment (or are empty and jumped to
        by a rule without C(clusternet fip)). Those rules are kept, in front of the FIP rules, and the chains are not
        marked, so they stay someone else's.
    type: bool
    default: false
    version_added: 0.2.0
  purge_other_backend:
    description:
      - Remove this module's chains, jumps and FIP rules from the other iptables backend (see the description) in the same
        run, through its own restore tool. Its conntrack entries are not flushed (conntrack is shared by both backends).
    type: bool
    default: false
    version_added: 0.2.0
  state:
    description:
      - V(present) adds or updates the listed FIPs; V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
notes:
  - "With V(nftables) the FIPs are two maps, C(fip-dnat) (external to internal) and C(fip-snat) (internal to external),
    each used by one rule (chains C(fip-prerouting), C(fip-output), C(fip-postrouting)), so a packet costs one map lookup
    however many FIPs there are. Conntrack is flushed on removal and remap exactly as with V(iptables).
    O(dnat_chain), O(snat_chain) and O(allow_foreign_chain) apply to V(iptables) only."
  - Conntrack entries are read and deleted over netlink with pyroute2. The table is dumped unfiltered and matched in
    Python, because the kernel's IPv6 address filter is not reliable on every kernel; each match is deleted by its
    original tuple (ports or GRE keys included), so C(conntrack_flushed) is exact. Entries in a non-default
    conntrack zone are not deleted.
  - Changing O(dnat_chain) or O(snat_chain) moves the listed FIPs' rules to the new chains (and, with O(exclusive), removes
    the others'); the old chains and their jumps stay.
'''

EXAMPLES = r'''
- name: Dual-stack floating IPs; any other FIP of this module is removed
  clusternet.node.fip:
    floating_ips:
      - external_ip: 198.51.100.10
        internal_ip: 10.0.0.5
      - external_ip: "2001:db8:ff::10"
        internal_ip: "fd00:10::5"

- name: Add one FIP and leave the others alone
  clusternet.node.fip:
    floating_ips:
      - external_ip: 198.51.100.11
        internal_ip: 10.0.0.6
    exclusive: false

- name: Remove a FIP by its external IP alone
  clusternet.node.fip:
    floating_ips:
      - external_ip: 198.51.100.10
    state: absent
'''

RETURN = r'''
ipv4:
  description: What the run did (would do, in check mode) in the IPv4 nat table.
  returned: always
  type: dict
  contains: &family_result
    added:
      description: FIPs that had no rule before.
      type: list
      elements: dict
      sample: [{external_ip: 198.51.100.10, internal_ip: 10.0.0.5}]
    changed:
      description: FIPs whose rules were rewritten; C(previous_internal_ip) is the one their DNAT rule named.
      type: list
      elements: dict
      sample: [{external_ip: 198.51.100.10, internal_ip: 10.0.0.6, previous_internal_ip: 10.0.0.5}]
    removed:
      description: FIPs whose every rule was removed; C(internal_ip) as their rules named it.
      type: list
      elements: dict
      sample: [{external_ip: 198.51.100.10, internal_ip: 10.0.0.5}]
    payload:
      description: The (ip6)tables-restore --noflush input applied (would be applied in check mode); empty when in sync.
        With O(backend=nftables), the C(nft -f) input that replaces the whole table.
      type: str
      sample: "*nat\n:CLUSTERNET-FIP-DNAT - [0:0]\n...\nCOMMIT\n"
    applied:
      description: Whether the payload was written (false in check mode, when in sync, or when the run failed first).
      type: bool
      sample: true
    conntrack_flushed:
      description: Conntrack entries deleted (that would be deleted, in check mode); null when the run failed before the flush.
      type: int
      sample: 2
    other_backend:
      description: Present when the other iptables backend holds this module's chains or FIP rules.
      type: dict
      returned: when the other backend holds them
      contains:
        backend:
          description: V(legacy) or V(nft).
          type: str
          sample: legacy
        found:
          description: What was found there, as C(chain NAME) and C(rules of floating IP ADDRESS).
          type: list
          elements: str
          sample: [chain CLUSTERNET-FIP-DNAT]
        payload:
          description: The removal applied through that backend's restore tool; empty without O(purge_other_backend).
          type: str
          sample: ""
        applied:
          description: Whether that removal was written.
          type: bool
          sample: false
ipv6:
  description: The same for the IPv6 nat table.
  returned: always
  type: dict
  contains: *family_result
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
from ansible_collections.clusternet.node.plugins.module_utils import fip


def main():
    module = AnsibleModule(
        argument_spec=dict(
            floating_ips=dict(type='list', elements='dict', default=[], options=dict(
                external_ip=dict(type='str', required=True),
                internal_ip=dict(type='str'),
            )),
            exclusive=dict(type='bool', default=True),
            dnat_chain=dict(type='str', default='CLUSTERNET-FIP-DNAT'),
            snat_chain=dict(type='str', default='CLUSTERNET-FIP-SNAT'),
            flush_conntrack=dict(type='bool', default=True),
            allow_foreign_chain=dict(type='bool', default=False),
            purge_other_backend=dict(type='bool', default=False),
            backend=dict(type='str', choices=['iptables', 'nftables', 'auto'], default='iptables'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**fip.run(module))


if __name__ == '__main__':
    main()
