# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fip module's checks of a FIP against its gateway, before any write.

A FIP's DNAT rule sits in PREROUTING and OUTPUT: with an external IP the gateway holds
itself, every packet to that address, the host's own included (SSH to a node IP), goes
to the pod; with an internal IP equal to the external one the rules map the address to
itself. Both are refused naming the FIP. Kept apart from fip.py so the check is pure,
and the address read is one `ip -j address show`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.clusternet.node.plugins.module_utils.families import parse_address


def held_addresses(ip_json):
    """{address: [interface names]} from `ip -j address show` output."""
    held = {}
    for link in json.loads(ip_json or '[]'):
        for info in link.get('addr_info', []):
            if 'local' in info:
                held.setdefault(parse_address(info['local']), []).append(link.get('ifname', '?'))
    return held


def check(wanted, held):
    """wanted: fip.validate's {family: {external: internal}}; held: held_addresses()."""
    for pairs in wanted.values():
        for external, internal in pairs.items():
            if internal == external:
                raise ValueError('floating IP %s: internal_ip is the external IP itself' % external)
            if external in held:
                raise ValueError('floating IP %s is already an address of %s on this gateway: its DNAT would take '
                                 "the host's own traffic to it" % (external, ', '.join(sorted(held[external]))))

