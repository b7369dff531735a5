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
      - "V(auto) chooses V(nftables) where kube-proxy's nftables tables (C(ip kube-proxy) or C(ip6 kube-proxy)) exist or
        the iptables tools are not installed, V(iptables) otherwise, on every run; RV(backend) says which one ran."
      - "Switching backend migrates in the same run: after writing the module's rules on the chosen backend, the run removes
        what the module holds on the other one, as O(state=absent) there would (and the same refusals stop the run before
        its first write). From iptables: its chains, their commented jumps and its commented rules, in both families and
        in both iptables backends (legacy and nft); foreign rules stay. From nftables: its half of C(ip clusternet) and
        C(ip6 clusternet) (the other module's half stays; a table left empty is deleted). RV(migrated) and diff mode show
        it; a second run changes nothing. Conntrack entries are not flushed by the migration, so a FIP removed or remapped
        in the very run that switches keeps its established flows. M(clusternet.node.fip) refuses a switch that would remove
        there a FIP it neither lists nor removes (C(exclusive=false) or C(state=absent)): it would be lost, not moved."
      - The other backend is read only where it can hold something (iptables tools installed and a nat table, or one of
        our nftables tables listed by C(nft list tables)).
      - O(purge_other_backend) is refused with V(nftables), which removes this module's rules from both iptables backends by
        itself.
    type: str
    choices: [iptables, nftables, auto]
    default: iptables
    version_added: 0.2.0
'''
