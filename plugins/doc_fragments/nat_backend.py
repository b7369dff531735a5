# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The backend option of masquerade and fip: one text for both (each module's notes say
    # what its own part of the nftables table holds).
    DOCUMENTATION = r'''
options:
  backend:
    description:
      - V(iptables) keeps the rules in the C(nat) tables of iptables and ip6tables, as described above.
      - "V(nftables) keeps them in nftables tables of this collection's own, C(ip clusternet) and C(ip6 clusternet)
        (not C(inet): no set type holds both families), shared by M(clusternet.node.masquerade) and
        M(clusternet.node.fip); each run reads the whole table of a family (C(nft -j list table)) and, unless it already
        holds exactly the intended content, writes it whole in one C(nft -f) transaction, keeping the other module's part.
        Everything inside those tables is this collection's: anything else found there is removed by the next run of either
        module; nothing outside them (kube-proxy's C(kube-proxy) tables, Flannel's, iptables-nft's C(ip nat)) is read or written.
        Needs C(nft) >= 1.0.1."
      - "Hook priorities of the nftables chains, all C(type nat): FIP DNAT at -90 in C(prerouting) and C(output), FIP SNAT at
        105 and the masquerade at 110 in C(postrouting). kube-proxy's nftables mode, Flannel and iptables-nft hook at -100 (dstnat)
        and 100 (srcnat), so their NAT takes effect first: a kube-proxy service DNAT wins over a FIP, kube-proxy's
        mark-0x4000 masquerade over the FIP SNAT, and a FIP's SNAT over the masquerade."
      - Moving between backends does not remove the other backend's rules yet (run O(state=absent) with the old backend first),
        and O(purge_other_backend) is refused with V(nftables).
    type: str
    choices: [iptables, nftables]
    default: iptables
    version_added: 0.2.0
'''
