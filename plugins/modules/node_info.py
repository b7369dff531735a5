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
    changes nothing (a round trip). RV(clusternet_node.ipsets) and RV(clusternet_node.floating_ips) are the
    modules' arguments as they are; RV(clusternet_node.vips) holds the vip module's (see its description).
  - Each subset costs the one dump its module reads, C(ipset save), C(iptables-save -t nat) and
    C(ip6tables-save -t nat), or one netlink dump each of links, addresses and routes (per family).
  - Also reports this collection's chains left in the iptables backend the active tools do not use
    (see O(clusternet.node.fip#module:purge_other_backend)).
  - Never writes and takes no lock.
version_added: 0.2.0
author: clusternet maintainers (@clusternet)
requirements:
  - the C(ipset) command for the C(ipsets) subset
  - iptables and ip6tables for C(masquerade) and C(floating_ips)
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

- name: Put the FIPs back exactly as read (changes nothing)
  clusternet.node.fip:
    floating_ips: "{{ node.clusternet_node.floating_ips }}"

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
    floating_ips:
      description: The floating IPs, in the shape of O(clusternet.node.fip#module:floating_ips).
      returned: when gather_subset has floating_ips
      type: list
      elements: dict
      sample: [{external_ip: 203.0.113.10, internal_ip: 10.42.1.5}]
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
