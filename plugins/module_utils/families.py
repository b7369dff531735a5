# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address families: parse and validate addresses and CIDRs, sort them by family.

Pure functions over strings. Every error is a ValueError whose message names the
offending value, so a module can fail with it before touching the kernel.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
from collections import namedtuple

IPV4 = 'ipv4'
IPV6 = 'ipv6'
FAMILIES = (IPV4, IPV6)
FULL_PREFIX = {IPV4: 32, IPV6: 128}


def family_of_version(version):
    return IPV4 if version == 4 else IPV6


def parse_address(value, what='address'):
    """Return an ip_address for a bare address, or a /32 (/128) host address."""
    text = str(value).strip()
    try:
        if '/' in text:
            iface = ipaddress.ip_interface(text)
            if iface.network.prefixlen != iface.max_prefixlen:
                raise ValueError
            return iface.ip
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError('invalid %s %r: expected an IPv4 or IPv6 address' % (what, value)) from None


def special_purpose(address):
    """Why an address cannot stand for a host on a network (a VIP, a node IP, either end
    of a FIP), or None. Zone ids are refused too: the kernel and the save tools print
    them differently from how they are written."""
    if getattr(address, 'scope_id', None):
        return 'it carries a zone id'
    entry = special_range(address)
    if entry is None or not entry.refused:
        return None
    return 'it is %s' % (entry.address or 'in %s (%s)' % (entry.network, entry.label))


def parse_unicast(value, what='address'):
    """parse_address, refusing special-purpose addresses with a message naming the value."""
    address = parse_address(value, what)
    reason = special_purpose(address)
    if reason:
        raise ValueError('invalid %s %r: %s, not a unicast host address' % (what, value, reason))
    return address


def parse_network(value, what='CIDR', strict=True):
    """Return an ip_network; a bare address is a host network.

    strict: host bits must be zero (10.0.0.1/8 is an error that names the value).
    """
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text, strict=strict)
    except ValueError:
        raise ValueError('invalid %s %r: expected an IPv4 or IPv6 network with zero host bits' % (what, value)) from None


def family_of(value):
    """Family of an address or network object, or of its text."""
    if isinstance(value, str):
        value = parse_network(value, strict=False)
    return family_of_version(value.version)


def split_by_family(values):
    """Group parsed addresses or networks into {'ipv4': [...], 'ipv6': [...]}, order kept."""
    out = dict((family, []) for family in FAMILIES)
    for value in values:
        out[family_of_version(value.version)].append(value)
    return out


def find_duplicate(values, key=None):
    """Return the first value seen twice (by key), or None."""
    seen = set()
    for value in values:
        k = key(value) if key else value
        if k in seen:
            return value
        seen.add(k)
    return None


def one_per_family(values, what):
    """Map family -> the single value of that family; more than one is an error."""
    out = {}
    for value in values:
        family = family_of_version(value.version)
        if family in out:
            raise ValueError('more than one %s of family %s: %s and %s' % (what, family, out[family], value))
        out[family] = value
    return out


class SpecialRange(namedtuple('SpecialRange', 'network label refused why address')):
    """One row of SPECIAL_RANGES. address: what an address inside it is, for an error
    message ('a loopback address'); None says 'in NETWORK (LABEL)'."""


def _row(network, label, refused, why, address=None):
    return SpecialRange(ipaddress.ip_network(network), label, refused, why, address)


_HOST_ONLY = 'the kernel routes it as ordinary unicast and real networks use it'
# The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and later), plus
# multicast (RFC 5771, RFC 4291), in address order. A refused row is no VIP, node IP or
# FIP end, and no pod, service or cluster network overlaps it: the kernel gives these
# addresses a meaning of their own, and a VIP, rule or route covering them captures or
# drops the host's own traffic. An allowed row is here to say why it is allowed.
SPECIAL_RANGES = (
    _row('0.0.0.0/8', 'unspecified, "this network"', True, 'no host may use it as an address (RFC 791, RFC 1122)'),
    _row('0.0.0.0/32', 'unspecified', True, '"this host on this network": only a source before a host has an address',
         'an unspecified address'),
    _row('10.0.0.0/8', 'private-use', False, _HOST_ONLY),
    _row('100.64.0.0/10', 'shared address space', False, 'CGNAT space; pod and node networks in it are real (RFC 6598)'),
    _row('127.0.0.0/8', 'loopback', True, 'the kernel answers it on lo whatever the interface', 'a loopback address'),
    _row('169.254.0.0/16', 'link-local', True, 'valid on one link only; cloud metadata lives here', 'a link-local address'),
    _row('172.16.0.0/12', 'private-use', False, _HOST_ONLY),
    _row('192.0.0.0/24', 'IETF protocol assignments', False,
         'DS-Lite, the RFC 7600 dummy address and the PCP, TURN and NAT64 discovery anycasts are unicast a node may serve'),
    _row('192.0.2.0/24', 'documentation, TEST-NET-1', False, 'labs and tests use it; ' + _HOST_ONLY),
    _row('192.31.196.0/24', 'AS112-v4', False, _HOST_ONLY),
    _row('192.52.193.0/24', 'AMT', False, _HOST_ONLY),
    _row('192.88.99.0/24', 'deprecated 6to4 relay anycast', False, _HOST_ONLY),
    _row('192.168.0.0/16', 'private-use', False, _HOST_ONLY),
    _row('192.175.48.0/24', 'AS112 direct delegation', False, _HOST_ONLY),
    _row('198.18.0.0/15', 'benchmarking', False, 'labs use it; ' + _HOST_ONLY),
    _row('198.51.100.0/24', 'documentation, TEST-NET-2', False, 'labs and tests use it; ' + _HOST_ONLY),
    _row('203.0.113.0/24', 'documentation, TEST-NET-3', False, 'labs and tests use it; ' + _HOST_ONLY),
    _row('224.0.0.0/4', 'multicast', True, 'a group, not a host (RFC 5771)', 'a multicast address'),
    # 255.255.255.255/32, the limited broadcast, is the top of this row.
    _row('240.0.0.0/4', 'reserved, broadcast', True, 'the kernel refuses to route to or from it'),
    _row('::/128', 'unspecified', True, 'only a source before a host has an address', 'an unspecified address'),
    _row('::1/128', 'loopback', True, 'the kernel answers it on lo whatever the interface', 'a loopback address'),
    _row('::ffff:0:0/96', 'IPv4-mapped', True, 'the tools print it as IPv4; write the IPv4 address',
         'IPv4-mapped; write the IPv4 address instead'),
    _row('64:ff9b::/96', 'NAT64 well-known prefix', False, 'NAT64 clusters route it (RFC 6052)'),
    _row('64:ff9b:1::/48', 'local-use NAT64', False, 'NAT64 clusters route it (RFC 8215)'),
    _row('100::/64', 'discard-only', True, 'traffic to it is meant to be dropped (RFC 6666)'),
    _row('100:0:0:1::/64', 'dummy IPv6 prefix', True, 'a source for hosts with no IPv6 address, never a destination (RFC 9780)'),
    _row('2001::/23', 'IETF protocol assignments', False,
         'Teredo, benchmarking, AMT, AS112, ORCHIDv2, DETs and the PCP, TURN and DNS-SD anycasts are unicast a node may serve'),
    _row('2001:db8::/32', 'documentation', False, 'labs and tests use it; ' + _HOST_ONLY),
    _row('2002::/16', '6to4', False, _HOST_ONLY),
    _row('2620:4f:8000::/48', 'AS112 direct delegation', False, _HOST_ONLY),
    _row('3fff::/20', 'documentation', False, 'labs and tests use it; ' + _HOST_ONLY),
    _row('5f00::/16', 'SRv6 SIDs', False, 'segment routing puts its SIDs on nodes (RFC 9602)'),
    _row('fc00::/7', 'unique-local', False, _HOST_ONLY),
    _row('fe80::/10', 'link-local', True, 'valid on one link only, and needs a zone id', 'a link-local address'),
    _row('ff00::/8', 'multicast', True, 'a group, not a host (RFC 4291)', 'a multicast address'),
)
REFUSED_RANGES = tuple(row for row in SPECIAL_RANGES if row.refused)


def special_range(address):
    """The most specific SPECIAL_RANGES row holding address, or None."""
    rows = [row for row in SPECIAL_RANGES if row.network.version == address.version and address in row.network]
    return max(rows, key=lambda row: row.network.prefixlen) if rows else None


def special_network(network):
    """Why a network cannot be a pod, service or cluster network, or None: it overlaps
    a refused special-purpose range (so 0.0.0.0/0 and ::/0 are refused too)."""
    for row in REFUSED_RANGES:
        if row.network.version == network.version and network.overlaps(row.network):
            return 'it overlaps %s (%s)' % (row.network, row.label)
    return None
