#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: vip
short_description: Service VIPs on a local interface, with routes the node itself can use
description:
  - Puts service VIPs of both families on a local interface (kube-router's C(kube-dummy-if)) as C(/32) or C(/128)
    and gives each exactly the route host-originated traffic needs,
    C(local VIP dev IF table local proto kernel scope host src NODE_IP), with the node IP of the VIP's family.
  - No other route to the VIP is left on O(interface). The kernel adds a main-table prefix route (metric 256) and a
    local-table route (metric 0, no source) for every IPv6 address, which make the VIP unreachable from the node itself
    (kube-router issue 1698); this module deletes them. Routes to the VIP elsewhere are not the module's (see the notes).
  - The kernel re-adds its routes when an address is re-added or the link comes back up. Every run reads the
    kernel afresh (one link dump, one address dump, one route dump per family) and repairs them.
  - IPv6 VIPs are added with C(nodad) and C(noprefixroute), so they are usable at once and the kernel adds
    no main-table route for them, not even on link up.
  - Links, addresses and routes are read with pyroute2 netlink dumps. Each address or route change is one netlink
    request, encoded with pyroute2's message classes and sent in batches whose every request is acknowledged.
  - The kernel inserts an IPv6 address's local route from a work queue, after the add has returned. The module
    waits for these routes (at most 5 seconds) and deletes them as they appear.
  - Runs of this collection's modules on one host are serialized by a host lock.
  - All input is validated before the kernel is touched; a node IP must be a local address of another interface.
  - VIPs and node IPs must be unicast host addresses; addresses in the refused special-purpose ranges (C(0.0.0.0/8),
    loopback, link-local, multicast, C(240.0.0.0/4) with broadcast, C(::), IPv4-mapped, C(100::/64) discard-only,
    C(100:0:0:1::/64)) and zone ids (C(fd00::9%eth0)) are refused; C(100.64.0.0/10) and the other special-purpose ranges
    are allowed. A VIP that is already local to
    the host on another interface (one of its addresses, or a local, broadcast or anycast route such as a subnet's
    broadcast address) is refused too, since its route would take the place of the host's own.
  - The module manages only an interface it created (it sets the interface's alias to C(clusternet.node)) or one it
    is told to adopt (O(adopt)); it never manages the loopback interface. Any refusal happens before the first write.
  - When a write fails, the module stops there. The steps of an address are sent only after every earlier step of that
    address was acknowledged without error, and no further batch is sent. The failure message names the failed step
    and its value, and RV(applied) lists every change the kernel acknowledged before the run stopped.
version_added: 0.1.0
author: clusternet maintainers (@clusternet)
requirements:
  - pyroute2 0.7.2 or later on the managed node (Debian 12 C(python3-pyroute2) works)
extends_documentation_fragment:
  - clusternet.node.attributes
options:
  interface:
    description:
      - The interface that holds the VIPs. It is created with O(link_kind) when missing, marked as this collection's
        with the alias C(clusternet.node), and brought up. An existing interface without that alias needs O(adopt).
    type: str
    default: kube-dummy-if
  adopt:
    description:
      - Manage an existing O(interface) that this collection did not create, that is, one whose alias is not
        C(clusternet.node). Without it such an interface is refused before any change.
      - Adopting sets the alias to C(clusternet.node), so later runs manage the interface without O(adopt), as if
        the module had created it; O(exclusive) then removes its other addresses and O(delete_interface) deletes it.
      - A C(kube-dummy-if) made by a release of this collection before the alias was introduced has no alias; run
        once with O(adopt=true) to take it over.
      - The loopback interface is refused even with O(adopt=true).
    type: bool
    default: false
  link_kind:
    description:
      - The link kind used when the interface must be created, a single NOARP device, C(dummy), or C(ifb) where the
        kernel has no C(dummy). Other kinds are refused (C(veth) would create a second interface, a bridge runs
        duplicate address detection). An existing interface of ours is used whatever its kind.
    type: str
    choices: [dummy, ifb]
    default: dummy
  addresses:
    description:
      - The VIPs, IPv4 and IPv6 mixed, bare or as C(/32) and C(/128). Duplicates count once.
    type: list
    elements: str
    default: []
  node_ips:
    description:
      - The node's own addresses, at most one per family, used as the source of the VIPs' routes.
      - Required for every family that has a VIP when O(state=present). Each must be a local address of an
        interface other than O(interface).
    type: list
    elements: str
    default: []
  exclusive:
    description:
      - With O(state=present), V(true) removes addresses on O(interface) that are not in O(addresses),
        with their routes. With O(state=absent), V(true) removes all of them.
      - IPv6 link-local addresses are never touched.
    type: bool
    default: true
  state:
    description:
      - V(present) puts the VIPs and their routes in place.
      - V(absent) removes the listed VIPs and their routes (all addresses on the interface when O(exclusive)).
    type: str
    choices: [present, absent]
    default: present
  delete_interface:
    description:
      - With O(state=absent), delete the interface itself, and with it all its addresses and routes. Only an interface
        this collection created or adopted is deleted; any other is refused (see O(adopt)).
    type: bool
    default: false
notes:
  - An existing address of a VIP with another prefix length is replaced by the C(/32) or C(/128).
  - "Which routes are the module's: a route to a VIP's C(/32) or C(/128) that leaves through O(interface), in any
    table, is the module's: the local route it writes and the routes the kernel adds there for the address. Every other
    route to that address (via another device, or without one, such as a C(blackhole) or C(unreachable) route) is
    foreign and never changed or deleted, not even by O(state=absent) or O(exclusive)."
  - "A foreign route to a VIP in a table other than C(local) is kept: the host looks up table C(local) first, so the
    VIP's local route decides the node's own traffic to the VIP whatever the other tables say."
  - "A foreign route to a VIP in table C(local) refuses that VIP, before any change, with an error naming the route:
    it either holds the place the VIP's local route needs (a replace would overwrite it) or competes with it by metric
    (a lower metric wins, as the kernel's own route did in kube-router issue 1698). Delete the route, or leave the
    address out of O(addresses)."
  - In check mode a missing or down interface is reported as created or brought up, and the plan is made from
    the current routes, without the ones the kernel would add on link up.
'''

EXAMPLES = r'''
- name: Service VIPs of both families, reachable from the node itself
  clusternet.node.vip:
    addresses:
      - 10.96.0.10
      - 10.96.0.1/32
      - fd00:10:96::a
    node_ips:
      - 192.168.1.10
      - 2001:db8:1::10

- name: Add one VIP, keep the others, on a kernel without dummy links
  clusternet.node.vip:
    interface: vips0
    link_kind: ifb
    exclusive: false
    addresses: [10.96.0.53]
    node_ips: [192.168.1.10]

- name: Remove two VIPs and their routes, keep the rest
  clusternet.node.vip:
    state: absent
    exclusive: false
    addresses: [10.96.0.53, fd00:10:96::35]

- name: Take over a kube-dummy-if that an earlier release of this collection created (it has no alias yet)
  clusternet.node.vip:
    adopt: true
    addresses: [10.96.0.10]
    node_ips: [192.168.1.10]

- name: Remove every VIP and the interface
  clusternet.node.vip:
    state: absent
    delete_interface: true
'''

RETURN = r'''
changed:
  description: Whether the interface, a VIP or a route was changed (or would be, in check mode).
  returned: always
  type: bool
interface:
  description: What happened to the interface.
  returned: success
  type: dict
  contains:
    name:
      description: The interface's name.
      type: str
      sample: kube-dummy-if
    created:
      description: Whether it was created.
      type: bool
    adopted:
      description: Whether an existing interface was adopted (given the alias C(clusternet.node)), see O(adopt).
      type: bool
    set_up:
      description: Whether it was brought up.
      type: bool
    deleted:
      description: Whether it was deleted.
      type: bool
ipv4:
  description: IPv4 changes.
  returned: success
  type: dict
  contains: &family_result
    added:
      description: VIPs added, sorted.
      type: list
      elements: str
      sample: [10.96.0.10]
    removed:
      description: Addresses removed from the interface, sorted.
      type: list
      elements: str
      sample: [10.96.0.11]
    routes_added:
      description: Routes added or replaced, as C(ip route) prints them, sorted.
      type: list
      elements: str
      sample: [local 10.96.0.10 dev kube-dummy-if table local proto kernel scope host src 192.168.1.10]
    routes_removed:
      description: Routes that existed before the run and were removed or replaced, sorted.
      type: list
      elements: str
      sample: [local 10.96.0.10 dev kube-dummy-if table local proto kernel scope host src 10.96.0.10]
ipv6:
  description: IPv6 changes, as for C(ipv4). Routes the kernel adds for a new address and this run deletes are in neither list.
  returned: success
  type: dict
  contains: *family_result
applied:
  description:
    - Every change the kernel acknowledged, in order, as the C(ip) command that makes it; when the run fails after it
      began to write, what it did before it stopped. Empty in check mode, when in sync, or when the failure came
      before any change.
  returned: success, and failure after the kernel checks passed
  type: list
  elements: str
  sample: [link add kube-dummy-if type dummy, link set kube-dummy-if alias clusternet.node, link set kube-dummy-if up,
           address add 10.96.0.10/32 dev kube-dummy-if]
diff:
  description: The interface, its addresses and each address's routes, before and after.
  returned: diff mode
  type: dict
  contains:
    before:
      description: State before the run.
      type: str
    after:
      description: State after the run.
      type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clusternet.node.plugins.module_utils import vip


def main():
    module = AnsibleModule(
        argument_spec=dict(
            interface=dict(type='str', default='kube-dummy-if'),
            adopt=dict(type='bool', default=False),
            link_kind=dict(type='str', default='dummy', choices=['dummy', 'ifb']),
            addresses=dict(type='list', elements='str', default=[]),
            node_ips=dict(type='list', elements='str', default=[]),
            exclusive=dict(type='bool', default=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            delete_interface=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**vip.run(module))


if __name__ == '__main__':
    main()
