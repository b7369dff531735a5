#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ipset
short_description: Manage one logical ipset in both address families
description:
  - Keeps an IPv4 set and its IPv6 copy holding exactly (or at least) the given entries.
  - The IPv4 set is O(name); the IPv6 set is C(inet6:) + O(name) (the kube-router convention) or O(ipv6_name).
  - Every entry goes to its own family's set only; each family is read, diffed and planned on its own.
  - Every run reads the live sets with C(ipset save NAME), computes the delta and applies only that delta
    in one C(ipset restore -exist) batch, so entries another process adds meanwhile are kept.
    Entries present in both the old and the new list are never removed, not even for a moment.
  - When the new entries do not fit beside the old ones within the set's maxelem, the new content is
    filled into a temporary set and swapped in with C(ipset swap), as kube-router does; the set holds
    all of its old entries or all of its new ones at every moment, even when the run is killed.
    Entries other writers added or removed meanwhile are carried over after the swap. The temporary
    set is named C(~cn-tmp-) plus 23 characters derived from the set's name; one left by a killed run
    is destroyed (with a warning) by the next run on that set, if it is unreferenced and of the set's family.
  - An entry flagged C(nomatch) in the kernel is not the plain entry. A key listed in O(entries) but held as
    C(nomatch) becomes a plain entry in place, and a key listed in O(nomatch) but held plain is flagged in place
    (never absent); C(nomatch) entries in neither list are removed with O(exclusive=true) and kept with
    O(exclusive=false).
  - C(ipset restore) is not transactional and stops at its first error. A failed run names the failing
    line and exactly what the lines before it applied (also in C(applied)).
  - Sets not named by the task are never written, flushed, swapped or destroyed; of them only the names
    are read (C(ipset list -n)), to find a temporary set a killed run left.
  - Runs of this collection's modules on one host are serialized by a host lock.
  - All input is validated before the kernel is touched.
version_added: 0.1.0
author: clusternet maintainers (@clusternet)
requirements:
  - the C(ipset) command (7.x) on the managed node
extends_documentation_fragment:
  - clusternet.node.attributes
options:
  name:
    description:
      - Name of the IPv4 set, and base of the IPv6 set's name.
      - Must not start with C(inet6:). Final names are limited to 31 characters, C(inet6:) included.
      - A set name is printable ASCII without space, C(") or C(,), and does not start with C(-)
        (ipset would read it as one of its options, such as C(-n) or C(-exist), on any command line and
        restore line, and ipset has no C(--)) or C(~) (kept for the module's temporary sets).
    type: str
    required: true
  ipv6_name:
    description:
      - Name of the IPv6 set. Default C(inet6:) + O(name).
      - Follows the rule of O(name); so does the part after an C(inet6:) prefix.
    type: str
  set_type:
    description:
      - The ipset type of both sets. It decides the shape of an entry.
      - C(hash:ip) V(10.42.1.6); C(hash:net) V(10.42.0.0/16); C(hash:ip,port) V(10.96.0.1,tcp:443);
        C(hash:net,port) V(10.42.0.0/16,udp:53); C(hash:ip,port,ip) V(10.0.0.1,tcp:80,10.0.0.2);
        C(hash:ip,port,net) V(10.0.0.1,tcp:80,10.1.0.0/16); C(hash:net,iface) V(10.42.0.0/16,eth0)
        or V(10.42.0.0/16,physdev:eth0); the interface name follows the kernel's rule (1 to 15 bytes of
        UTF-8, no C(/), C(:) or whitespace) and must not hold C(").
      - A port is V(PROTO:PORT) with PROTO one of C(tcp), C(udp), C(sctp), C(udplite) and PORT a number or a
        service name; a bare port means C(tcp). Port ranges and ICMP types are not supported.
      - Numbers (ports, prefix lengths) are ASCII digits only.
      - A network's host bits must be zero. A C(/0) network, which the kernel refuses in C(hash:net),
        C(hash:net,port) and C(hash:ip,port,net), is stored as its two C(/1) halves, as kube-router does.
    type: str
    default: hash:ip
    choices: ["hash:ip", "hash:net", "hash:ip,port", "hash:net,port", "hash:ip,port,ip", "hash:ip,port,net", "hash:net,iface"]
  entries:
    description:
      - Entries of both families, mixed. Each is normalized to the form C(ipset save) prints
        (compressed lowercase IPv6, no C(/32) or C(/128) on host networks, service names as numbers).
      - An entry of a family not in O(families) is an error.
    type: list
    elements: str
    default: []
  nomatch:
    description:
      - Entries to hold flagged C(nomatch), in the forms O(entries) takes. The kernel skips such an entry in a
        match and does not look further, so it carves an exception out of a wider network (C(ipset add NAME KEY nomatch)).
      - Only for a O(set_type) with a network part (C(hash:net), C(hash:net,port), C(hash:ip,port,net),
        C(hash:net,iface)); the kernel refuses the flag in the others.
      - An entry listed both here and in O(entries) is an error. With O(exclusive=true) the sets hold exactly
        O(entries) plain and O(nomatch) flagged.
      - M(clusternet.node.node_info) reports a set's C(nomatch) entries under this name, so a set read from it
        and given back changes nothing.
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  families:
    description:
      - The families whose set this task manages. The other family's set is not touched.
    type: list
    elements: str
    choices: [ipv4, ipv6]
    default: [ipv4, ipv6]
  exclusive:
    description:
      - V(true) removes entries not in O(entries); V(false) only adds.
    type: bool
    default: true
  maxelem:
    description:
      - Maximum number of entries, used when a set is created (kernel default 65536). 1 to 4294967295.
      - An existing set with another maxelem is an error, since ipset cannot change it in place.
    type: int
  hashsize:
    description:
      - Initial hash size, used when a set is created. The kernel grows it as needed, so it is
        not compared on existing sets.
      - A power of two from 64 to 2147483648, the values the kernel keeps as given (it raises a smaller
        value to 64 and rounds others up). The kernel allocates 8 bytes per bucket at once.
    type: int
  state:
    description:
      - V(present) creates the sets as needed and reconciles their entries.
      - V(absent) destroys the sets. A set still referenced (for example by an iptables
        C(-m set) rule) is an error and then no set is destroyed.
    type: str
    choices: [present, absent]
    default: present
notes:
  - A set that exists with another type or family is an error; remove it first with O(state=absent).
'''

EXAMPLES = r'''
- name: Pod IPs of both families, exactly these
  clusternet.node.ipset:
    name: kube-router-pod-ips
    entries:
      - 10.42.1.7
      - 2001:db8:42:1::7

- name: Service VIP ports, IPv4 only, only add
  clusternet.node.ipset:
    name: kube-router-svip-prt
    set_type: hash:ip,port
    families: [ipv4]
    exclusive: false
    entries:
      - 10.96.0.1,tcp:443
      - 10.96.0.10,udp:53

- name: Pod subnets, with room for many entries
  clusternet.node.ipset:
    name: kube-router-pod-subnets
    set_type: hash:net
    maxelem: 262144
    entries: "{{ pod_cidrs }}"

- name: Pod subnets with one range carved out
  clusternet.node.ipset:
    name: kube-router-pod-subnets
    set_type: hash:net
    entries: [10.42.0.0/16]
    nomatch: [10.42.255.0/24]

- name: Remove both families' sets
  clusternet.node.ipset:
    name: kube-router-pod-ips
    state: absent
'''

RETURN = r'''
changed:
  description: Whether any set was created, changed or destroyed (or would be, in check mode).
  returned: always
  type: bool
ipv4:
  description: The IPv4 set, when O(families) has C(ipv4).
  returned: success and ipv4 in families
  type: dict
  contains:
    name:
      description: The set's name.
      type: str
      sample: kube-router-pod-ips
    added:
      description: Entries added (or whose C(nomatch) flag changed), in C(ipset save) form, sorted; one flagged as C(KEY nomatch).
      type: list
      elements: str
      sample: [10.42.1.7]
    removed:
      description: Entries removed (all of them when the set was destroyed), sorted; a C(nomatch) one as C(KEY nomatch).
      type: list
      elements: str
      sample: [10.42.1.6]
ipv6:
  description: The IPv6 set, when O(families) has C(ipv6). Same keys as RV(ipv4).
  returned: success and ipv6 in families
  type: dict
  contains:
    name:
      description: The set's name.
      type: str
      sample: inet6:kube-router-pod-ips
    added:
      description: Entries added (or whose C(nomatch) flag changed), in C(ipset save) form, sorted; one flagged as C(KEY nomatch).
      type: list
      elements: str
      sample: ['2001:db8:42:1::7']
    removed:
      description: Entries removed (all of them when the set was destroyed), sorted; a C(nomatch) one as C(KEY nomatch).
      type: list
      elements: str
      sample: ['2001:db8:42:1::6']
applied:
  description:
    - When C(ipset restore) failed part-way, what the lines before the failing one did, per set
      (the temporary set included); V(null) when ipset named no line. The failing line is RV(failed_line).
  returned: failure of ipset restore
  type: dict
  sample: {"pods": {"created": true, "added": ["10.42.1.7"]}}
failed_line:
  description: The C(ipset restore) line that failed.
  returned: failure of ipset restore with a line number
  type: str
  sample: create inet6:pods hash:ip family inet6
diff:
  description: The sets' entries before and after, as C(add NAME ENTRY) lines.
  returned: diff mode
  type: dict
  contains:
    before:
      description: Entries before the run.
      type: str
    after:
      description: Entries after the run.
      type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clusternet.node.plugins.module_utils import ipset


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            ipv6_name=dict(type='str'),
            set_type=dict(type='str', default='hash:ip', choices=list(ipset.SET_TYPES)),
            entries=dict(type='list', elements='str', default=[]),
            nomatch=dict(type='list', elements='str', default=[]),
            families=dict(type='list', elements='str', choices=['ipv4', 'ipv6'], default=['ipv4', 'ipv6']),
            exclusive=dict(type='bool', default=True),
            maxelem=dict(type='int'),
            hashsize=dict(type='int'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**ipset.run(module))


if __name__ == '__main__':
    main()
