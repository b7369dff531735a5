# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flush conntrack entries by original source or destination address, per family.

Through pyroute2's netfilter socket (NFCTSocket), whose dump and entry calls
behave alike from 0.7.2 to 0.9.x. The table is dumped unfiltered and matched in
Python: on this kernel the kernel-side tuple filter for IPv6 returns exactly the
non-matching entries, which would flush the wrong flows. Each match is then
deleted by its original tuple, so the count is exact; an entry that expired
between dump and delete is not counted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import ipaddress
import socket
import traceback

from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError
from ansible_collections.clusternet.node.plugins.module_utils.families import IPV4, IPV6

ADDRESS_FAMILY = {IPV4: socket.AF_INET, IPV6: socket.AF_INET6}
# pyroute2's names, imported by require() on first need: the import costs more than a
# whole run that has nothing to flush (creating 1000 FIPs), so such runs skip it.
LIB = {}


class ConntrackError(KernelError):
    pass


def require():
    """Import pyroute2's conntrack socket once; None, or the ImportError traceback."""
    if not LIB:
        try:
            from pyroute2.netlink.exceptions import NetlinkError
            from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple, NFCTSocket
        except ImportError:
            return traceback.format_exc()
        LIB.update(NetlinkError=NetlinkError, NFCTAttrTuple=NFCTAttrTuple, NFCTSocket=NFCTSocket)
    return None


def selects(orig_src, orig_dst, sources, destinations):
    """Whether an entry whose original tuple is orig_src -> orig_dst is to be flushed."""
    return ipaddress.ip_address(orig_dst) in destinations or ipaddress.ip_address(orig_src) in sources


def original_tuple(address_family, msg):
    """A dumped entry's original tuple, complete enough to delete it by.

    pyroute2 reads ports only for TCP and UDP; SCTP, UDP-Lite, DCCP ports and GRE keys
    travel in the same attributes, and without them the kernel rejects the delete.
    """
    raw = msg.get_attr('CTA_TUPLE_ORIG')
    orig = LIB['NFCTAttrTuple'].from_netlink(address_family, raw)
    if orig.sport is None:
        proto = raw.get_attr('CTA_TUPLE_PROTO')
        orig.sport = proto.get_attr('CTA_PROTO_SRC_PORT')
        orig.dport = proto.get_attr('CTA_PROTO_DST_PORT')
    return orig


def flush(family, sources, destinations, check_mode=False):
    """Delete every entry of the family whose original source is in sources or whose
    original destination is in destinations (sets of ip_address); return how many
    went (would go, in check mode). require() must have succeeded."""
    if not sources and not destinations:
        return 0
    address_family = ADDRESS_FAMILY[family]
    try:
        return _flush(address_family, sources, destinations, check_mode)
    except LIB['NetlinkError'] as exc:
        raise ConntrackError('conntrack %s flush of the entries from %s or to %s failed: %s' % (
            family, ', '.join(sorted(map(str, sources))) or 'no address', ', '.join(sorted(map(str, destinations))) or 'no address', exc)) from exc


def _flush(address_family, sources, destinations, check_mode):
    sock = LIB['NFCTSocket'](nfgen_family=address_family)
    try:
        # Collect first: deleting on the socket while its dump is being read would interleave replies.
        tuples = [original_tuple(address_family, msg) for msg in sock.dump()]
        tuples = [orig for orig in tuples if selects(orig.saddr, orig.daddr, sources, destinations)]
        if check_mode:
            return len(tuples)
        flushed = 0
        for orig in tuples:
            try:
                sock.entry('del', tuple_orig=orig)
            except LIB['NetlinkError'] as exc:
                if exc.code != errno.ENOENT:
                    raise
                continue
            flushed += 1
        return flushed
    finally:
        sock.close()
