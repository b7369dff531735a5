#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: node_info
short_description: Read the data-plane state this collection manages on a node
description:
  - Returns what the node holds, in the shape the modules take, so that a fact fed back to its module
    changes nothing (a round trip). Each item of RV(clusternet_node.ipsets), RV(clusternet_node.masquerade_args) and
    RV(clusternet_node.floating_ip_args) is the arguments of its module as they are; RV(clusternet_node.vips) holds the
    vip module's (see its description).
  - A state no module writes is reported as such, never as a whole one, and its arguments repair it (they do not
    round-trip); RV(clusternet_node.nat_drift) names what they would rewrite, and RV(clusternet_node.half_floating_ips)
    the floating IPs with only their DNAT or only their SNAT rule.
  - Each subset costs the one dump its module reads, C(ipset save), C(iptables-save -t nat) and
    C(ip6tables-save -t nat) plus C(nft -j list table) of C(ip clusternet) and C(ip6 clusternet) (when C(nft) is
    installed), or one netlink dump each of links, addresses and routes (per family).
  - Also reports this collection's chains left in the iptables backend the active tools do not use
    (see O(clusternet.node.fip#module:purge_other_backend)), and warns when both backends (iptables and
    nftables) hold masquerade or floating IPs of this collection.
  - Never writes and takes no lock.
version_added: 0.2.0
author: clusternet maintainers (@clusternet)
requirements:
  - the C(ipset) command for the C(ipsets) subset
  - iptables and ip6tables for C(masquerade) and C(floating_ips); nft >= 1.0.1 to read the nftables backend too
  - the Python library pyroute2 on the managed node for C(vips)
options:
  gather_subset:
    description:
      - What to read. V(all) is every subset.
    type: list
    elements: str
    choices: [all, ipsets, vips, masquerade, floating_ips]
    default: [all]
  interface:
    description: The VIP interface to report (the default of M(clusternet.node.vip)).
    type: str
    default: kube-dummy-if
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    platforms: linux
    support: full
seealso:
  - module: clusternet.node.ipset
  - module: clusternet.node.vip
  - module: clusternet.node.masquerade
  - module: clusternet.node.fip
'''

EXAMPLES = r'''
- name: Read every set, VIP and NAT rule the collection manages
  clusternet.node.node_info:
  register: node

- name: Show the floating IPs the node holds
  ansible.builtin.debug:
    var: node.clusternet_node.floating_ips

- name: Put the VIPs back exactly as read (changes nothing)
  clusternet.node.vip:
    interface: "{{ node.clusternet_node.vips.interface }}"
    addresses: "{{ node.clusternet_node.vips.addresses }}"
    node_ips: "{{ node.clusternet_node.vips.node_ips }}"

- name: Put the FIPs back exactly as read, chains and backend included (changes nothing)
  clusternet.node.fip: "{{ item }}"
  loop: "{{ node.clusternet_node.floating_ip_args }}"

- name: Put the masquerade back exactly as read (changes nothing)
  clusternet.node.masquerade: "{{ item }}"
  loop: "{{ node.clusternet_node.masquerade_args }}"

- name: Only the ipsets
  clusternet.node.node_info:
    gather_subset: [ipsets]
  register: sets

- name: Put every set back exactly as read (changes nothing)
  clusternet.node.ipset:
    name: "{{ item.name }}"
    ipv6_name: "{{ item.ipv6_name | default(omit) }}"
    set_type: "{{ item.set_type }}"
    families: "{{ item.families }}"
    entries: "{{ item.entries }}"
    nomatch: "{{ item.nomatch }}"
  loop: "{{ sets.clusternet_node.ipsets }}"
'''

RETURN = r'''
clusternet_node:
  description: The subsets asked for.
  returned: always
  type: dict
  contains:
    ipsets:
      description:
        - Every set on the node that M(clusternet.node.ipset) can manage, each as that module's arguments, so that a
          set given back to it as it is changes nothing. Temporary C(~cn-tmp-) sets are left out.
        - An IPv4 set C(NAME) and an IPv6 set C(inet6:NAME) of the same type are one item with both families.
          Any other IPv6 set is an item of its own, C(inet6:NAME) as O(clusternet.node.ipset#module:name) C(NAME), and
          a set of another name (C(ipset create istio6 hash:ip family inet6)) with
          O(clusternet.node.ipset#module:ipv6_name) set to it; C(ipv6_name) is present only then.
        - C(nomatch) lists the entries flagged C(nomatch) (O(clusternet.node.ipset#module:nomatch)).
        - Create options (C(maxelem), C(hashsize), C(counters), C(comment), C(timeout)) are not reported; an existing
          set keeps them, and what each entry carries is kept too.
      returned: when gather_subset has ipsets
      type: list
      elements: dict
      sample:
        - {name: kube-router-pod-subnets, set_type: hash:net, families: [ipv4, ipv6],
           entries: [10.42.0.0/16, fd00:42::/56], nomatch: [10.42.7.0/24]}
        - {name: istio6, ipv6_name: istio6, set_type: hash:ip, families: [ipv6], entries: ['fd00::6'], nomatch: []}
    unmanageable_ipsets:
      description:
        - The sets M(clusternet.node.ipset) cannot manage, so none of RV(clusternet_node.ipsets), each with the reason,
          a type it does not know (C(list:set)), or a name it refuses (an IPv4 set named C(inet6:...)).
      returned: when gather_subset has ipsets and such a set exists
      type: list
      elements: dict
      version_added: 0.2.0
      sample: [{name: members, set_type: 'list:set', family: null, reason: 'the ipset module does not manage type list:set'}]
    vips:
      description:
        - The VIP interface; C(ours) says it carries this collection's marker, C(addresses) the VIPs on it.
        - For a present interface, C(node_ips) are the sources of the VIPs' local routes on it, each once, IPv4 first.
        - Not the vip module's arguments as a whole, since C(present), C(kind), C(up) and C(ours) are not options;
          C(interface), C(addresses) and C(node_ips) given back as the options of those names of
          M(clusternet.node.vip) change nothing on an interface that is C(ours) and in the state that module keeps.
          Two sources in one family (routes written by others) are reported as they are, and the vip module refuses them.
      returned: when gather_subset has vips
      type: dict
      sample: {interface: kube-dummy-if, present: true, kind: dummy, up: true, ours: true, addresses: [10.43.0.10, 'fd00:43::10'],
               node_ips: [192.168.1.10, '2001:db8:1::10']}
    masquerade:
      description: Per family, the rules of each C(CLUSTERNET-) chain of the nat table other than the FIP chains, as C(iptables-save) prints them.
      returned: when gather_subset has masquerade
      type: dict
      sample: {ipv4: {CLUSTERNET-POSTRTG: ['-s 10.42.0.0/16 ! -d 10.42.0.0/16 -m comment --comment "clusternet masq" -j MASQUERADE']}, ipv6: {}}
    masquerade_args:
      description:
        - The arguments of M(clusternet.node.masquerade) that write the masquerade as it is, one item per iptables
          chain (every C(CLUSTERNET-) chain but the FIP chains, and any chain starting with that module's mark) and
          one for the nftables backend; each given back to the module as it is
          (in a loop, as the module's arguments C("{{ item }}")) changes nothing.
        - C(comment) is the chain's rules' (or its jump's); C(skip_mark) is V('') without the skip-mark rule;
          C(random_fully) is true only when every MASQUERADE rule of the chain has it. The nftables item has no
          C(chain) or C(comment) (options of the iptables backend), its CIDRs as the table holds them (merged).
        - A chain that is not as the module writes it (a stray rule, a foreign chain, families that differ) is still
          reported, with what feeding it back would do in RV(clusternet_node.nat_drift).
      returned: when gather_subset has masquerade
      type: list
      elements: dict
      version_added: 0.2.0
      sample:
        - {backend: iptables, chain: CLUSTERNET-POSTRTG, comment: clusternet masq, cluster_cidrs: [10.42.0.0/16, 'fd00:42::/56'],
           pod_cidrs: [10.42.1.0/24, 'fd00:42:0:1::/64'], skip_mark: 0x4000/0x4000, random_fully: true}
    floating_ips:
      description:
        - The floating IPs of the iptables backend, in the shape of O(clusternet.node.fip#module:floating_ips), a half one
          (RV(clusternet_node.half_floating_ips)) included with the internal IP its one rule names.
      returned: when gather_subset has floating_ips
      type: list
      elements: dict
      sample: [{external_ip: 203.0.113.10, internal_ip: 10.42.1.5}]
    floating_ip_args:
      description:
        - The arguments of M(clusternet.node.fip) that write the floating IPs as they are, one item per backend that holds
          any; each given back to the module as it is (in a loop, C("{{ item }}")) changes nothing.
        - For iptables, C(dnat_chain) and C(snat_chain) are the chains that hold the FIPs' DNAT and SNAT rules (the
          most used ones if they are spread; the module's defaults when there is none).
        - A half FIP is listed as a whole one with the internal IP its rule names, so feeding the item back
          B(repairs) it, writing its missing rule (the fip module reports it in C(changed)); the other way to repair it
          is M(clusternet.node.fip) with O(clusternet.node.fip#module:state=absent) and its external IP.
      returned: when gather_subset has floating_ips
      type: list
      elements: dict
      version_added: 0.2.0
      sample:
        - {backend: iptables, dnat_chain: CLUSTERNET-FIP-DNAT, snat_chain: CLUSTERNET-FIP-SNAT,
           floating_ips: [{external_ip: 203.0.113.10, internal_ip: 10.42.1.5}]}
    half_floating_ips:
      description:
        - The FIPs of the iptables backend that have only their DNAT or only their SNAT rule (C(missing) is V(dnat) or
          V(snat)), so they do not work as FIPs. See RV(clusternet_node.floating_ip_args) for how feeding the facts back
          repairs them.
      returned: when gather_subset has floating_ips
      type: list
      elements: dict
      version_added: 0.2.0
      sample: [{external_ip: 203.0.113.10, internal_ip: 10.42.1.5, missing: snat}]
    nat_backends:
      description:
        - Per subset (C(masquerade), C(floating_ips)), the backends that hold this collection's state, V(iptables) and
          V(nftables) (the tables C(ip clusternet) and C(ip6 clusternet)). Two backends for one subset both apply to
          packets and come with a warning; remove one with the module's O(clusternet.node.fip#module:state=absent) on that backend.
      returned: when gather_subset has masquerade or floating_ips
      type: dict
      version_added: 0.2.0
      sample: {masquerade: [iptables], floating_ips: [iptables, nftables]}
    nat_drift:
      description:
        - What feeding RV(clusternet_node.masquerade_args) and RV(clusternet_node.floating_ip_args) back would rewrite
          (per family, or the nftables table's drift as the modules name it); empty when both round-trip.
      returned: when gather_subset has masquerade or floating_ips
      type: list
      elements: str
      version_added: 0.2.0
      sample: ['ipv4: the fip module would rewrite chains CLUSTERNET-FIP-DNAT and CLUSTERNET-FIP-SNAT (a half floating IP is completed, a stray rule removed)']
    other_backend:
      description: Per family, the C(CLUSTERNET-) chains of the nat table in the backend the active tools do not use.
      returned: when gather_subset has masquerade or floating_ips
      type: dict
      sample: {ipv4: {backend: legacy, chains: [CLUSTERNET-POSTRTG]}}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clusternet.node.plugins.module_utils import info


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather_subset=dict(type='list', elements='str', default=['all'], choices=['all'] + list(info.SUBSETS)),
            interface=dict(type='str', default='kube-dummy-if'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**info.run(module))


if __name__ == '__main__':
    main()
