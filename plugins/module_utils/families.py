# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address families: parse and validate addresses and CIDRs, sort them by family.

Pure functions over strings. Every error is a ValueError whose message names the
offending value, so a module can fail with it before touching the kernel.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

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
    of a FIP), or None. Zone ids and IPv4-mapped forms are refused too: the kernel and
    the save tools print them differently from how they are written."""
    if getattr(address, 'scope_id', None):
        return 'it carries a zone id'
    if address.version == 6 and address.ipv4_mapped is not None:
        return 'it is IPv4-mapped; write the IPv4 address instead'
    for reason, flag in (('an unspecified', address.is_unspecified), ('a loopback', address.is_loopback),
                         ('a multicast', address.is_multicast), ('a link-local', address.is_link_local)):
        if flag:
            return 'it is %s address' % reason
    if address.version == 4 and address.is_reserved:
        return 'it is in 240.0.0.0/4 (reserved, broadcast)'
    return None


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


# Special-purpose space (RFC 6890) no pod, service or cluster network may overlap: the
# kernel routes these itself, and a rule or VIP covering them captures the host's own traffic.
SPECIAL_NETWORKS = tuple((ipaddress.ip_network(net), reason) for net, reason in (
    ('0.0.0.0/8', 'unspecified, "this network"'), ('127.0.0.0/8', 'loopback'), ('169.254.0.0/16', 'link-local'),
    ('224.0.0.0/4', 'multicast'), ('240.0.0.0/4', 'reserved, broadcast'),
    ('::/128', 'unspecified'), ('::1/128', 'loopback'), ('::ffff:0:0/96', 'IPv4-mapped'),
    ('fe80::/10', 'link-local'), ('ff00::/8', 'multicast')))


def special_network(network):
    """Why a network cannot be a pod, service or cluster network, or None: it overlaps
    special-purpose space (so 0.0.0.0/0 and ::/0 are refused too)."""
    for special, reason in SPECIAL_NETWORKS:
        if special.version == network.version and network.overlaps(special):
            return 'it overlaps %s (%s)' % (special, reason)
    return None
