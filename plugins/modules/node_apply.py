#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the work is done by the action plugin plugins/action/node_apply.py.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: node_apply
short_description: Apply one node's share of the rendered cluster intent
description:
  - Runs on the controller (an action) and calls M(clusternet.node.ipset) for the five managed sets, then
    M(clusternet.node.vip), M(clusternet.node.masquerade) and M(clusternet.node.fip) on the node, with the
    arguments the P(clusternet.node.node_state#filter) filter would give, taken from a plan that the
    P(clusternet.node.node_plan#filter) filter rendered once for the play.
  - The cluster-wide lists go to the modules as the plan holds them, without a templating pass per host;
    only C(changed), C(failed) and C(msg) of each module result are kept, and the diffs of all of them (diff mode).
  - Every call first runs in check mode (each module validates its arguments, reads the node's kernel and plans, writing
    nothing), in that order; the first refusal fails the node with nothing changed. Only then do the calls that would
    change something run for real, in the same order; a call whose check run changes nothing is not run again.
    A failure names the module and what the modules before it changed.
  - A C(backend) of V(auto) for M(clusternet.node.masquerade) or M(clusternet.node.fip) is resolved by the check run; the
    real run and the O(persist) file use the backend it chose.
  - The P(clusternet.node.node_network#role) role is the usual way to run it.
version_added: 0.2.0
author: clusternet maintainers (@clusternet)
extends_documentation_fragment:
  - clusternet.node.attributes
options:
  node:
    description: This node's key in the intent's C(nodes). Required with O(state=present).
    type: str
  state:
    description:
      - V(present) applies the node's share of the plan.
      - V(absent) needs no plan and removes the five sets, the VIPs and their interface, the masquerade
        chain and every floating IP with its chains.
    type: str
    choices: [present, absent]
    default: present
  prefix:
    description: Prefix of every managed set name; C(inet6:) + prefix + C(pod-subnets) must fit in 31 characters.
    type: str
    default: cn-
  masquerade_families:
    description: The families whose pod traffic is masqueraded; the others get no masquerade rules.
    type: list
    elements: str
    choices: [ipv4, ipv6]
    default: [ipv4, ipv6]
  persist:
    description:
      - A file (on the node) to write, once every module call succeeded, with the arguments of those calls as JSON
        (a C(calls) list of C(module) and C(args)), mode 0600, through C(ansible.builtin.copy), which is what
        P(clusternet.node.persistence#role)'s runner replays at boot. A failed run leaves the last converged file.
      - Not written with O(state=absent). Check mode writes nothing; diff mode shows the file's change.
    type: path
  plan_var:
    description:
      - Name of the variable that holds the output of P(clusternet.node.node_plan#filter). It is read as it is,
        not templated, which is what keeps the per-host cost independent of the cluster's size.
    type: str
    default: node_network_plan
  ipset:
    description: Further options for every M(clusternet.node.ipset) call; only C(exclusive).
    type: dict
    default: {}
  vip:
    description: Further options for M(clusternet.node.vip) (C(interface), C(link_kind), C(exclusive), C(adopt)).
    type: dict
    default: {}
  masquerade:
    description:
      - Further options for M(clusternet.node.masquerade) (C(chain), C(comment), C(random_fully), C(skip_mark),
        C(allow_foreign_chain), C(purge_other_backend), C(backend)).
    type: dict
    default: {}
  fip:
    description:
      - Further options for M(clusternet.node.fip) (C(exclusive), C(dnat_chain), C(snat_chain), C(flush_conntrack),
        C(allow_foreign_chain), C(purge_other_backend), C(backend)).
    type: dict
    default: {}
notes:
  - The plan is taken as the play holds it; render it with C(run_once) so that an invalid intent fails every host
    before any node is touched.
seealso:
  - module: clusternet.node.ipset
  - module: clusternet.node.vip
  - module: clusternet.node.masquerade
  - module: clusternet.node.fip
'''

EXAMPLES = r'''
- name: Render the intent once for the play
  ansible.builtin.set_fact:
    node_network_plan: "{{ clusternet_cluster | clusternet.node.node_plan }}"
  run_once: true

- name: Apply this node's share
  clusternet.node.node_apply:
    node: "{{ inventory_hostname }}"
    vip:
      link_kind: ifb

- name: Remove everything the collection manages; no intent needed
  clusternet.node.node_apply:
    state: absent
'''

RETURN = r'''
results:
  description: One entry per module call, in order.
  returned: always
  type: list
  elements: dict
  contains:
    module:
      description: The module, C(ipset), C(vip), C(masquerade) or C(fip).
      type: str
      sample: ipset
    item:
      description: The set name for C(ipset), otherwise what the call manages.
      type: str
      sample: cn-svip
    changed:
      description: Whether that call changed (would change, in check mode) the node.
      type: bool
      sample: false
    msg:
      description: The module's error, on failure.
      type: str
      returned: on failure
      sample: ""
  sample:
    - {module: ipset, item: cn-pod-subnets, changed: false}
    - {module: vip, item: VIPs, changed: true}
'''
