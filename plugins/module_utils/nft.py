# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables kernel object: our own table per family, one `nft -f` transaction per run.

Everything in `ip clusternet` and `ip6 clusternet` is ours and nothing outside them
is ever named: a transaction starts with `add table; delete table` (the table exists,
then it is gone, whatever was tampered into it) and, unless it removes the table,
declares the whole content again. nft applies a file all or nothing, so the kernel
holds either the old table or the new one. kubernetes/knftables and kube-proxy
reach the same state with `add` + `flush` of each object; a delete and re-add also
drops chains and sets someone added to our table, which a flush would keep.

Layout (ip6 is the same with ip6 addresses, `ipv6_addr` and ff00::/8):
    set masq-cluster { type ipv4_addr; flags interval; }      cluster CIDRs, collapsed
    set masq-pod     { type ipv4_addr; flags interval; }      pod CIDRs, collapsed
    map fip-dnat     { type ipv4_addr : ipv4_addr; }          external -> internal
    map fip-snat     { type ipv4_addr : ipv4_addr; }          internal -> external
    chain fip-prerouting  nat prerouting  -90   dnat to ip daddr map @fip-dnat
    chain fip-output      nat output      -90   dnat to ip daddr map @fip-dnat
    chain fip-postrouting nat postrouting 105   snat to ip saddr map @fip-snat
    chain masq-postrouting nat postrouting 110  Flannel's rule order:
        meta mark & MASK == MARK return
        ip saddr @masq-pod ip daddr @masq-cluster return
        ip saddr @masq-cluster ip daddr @masq-pod return
        ip saddr != @masq-cluster ip daddr @masq-pod return
        ip saddr @masq-cluster ip daddr != 224.0.0.0/4 masquerade fully-random
        ip saddr != @masq-cluster ip daddr @masq-cluster masquerade fully-random
The sets stand for Flannel's per (cluster, pod) pair rules: each rule's union over
the pairs is the same match over the unions.

Hook priorities. For a new connection the kernel runs the nat base chains of a hook
in priority order (lower first) and stops at the first one that sets a NAT binding;
later chains of that hook never see the connection. kube-proxy's nftables mode
(`ip kube-proxy` / `ip6 kube-proxy`) hooks nat-prerouting and nat-output at dstnat
(-100) and nat-postrouting at srcnat (100), where its `masquerading` chain
masquerades packets carrying mark 0x4000; iptables-nft's `ip nat` and Flannel's
tables sit at the same -100/100. Ours come strictly after them, so their NAT always
takes effect first:
  - dstnat -90 (prerouting and output): a kube-proxy service DNAT wins over a FIP;
  - srcnat 105 for the FIP SNAT: after kube-proxy's mark-0x4000 masquerade, before
    our masquerade, so a FIP's internal IP leaves as its external IP, not the node's;
  - srcnat 110 for the masquerade.
Numbers, not `dstnat + 10`: nft 1.0.6 refuses the name `dstnat` on the output hook.

Reads parse `nft -j list table` (json_schema_version 1): the content comes back in
the modules' option shape, and the table is also compared, object by object with
handles left out, with what a transaction of that content would load; any
difference (an extra rule, chain or set, another priority) is reported as drift.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import ipaddress
import json
import re
import socket

from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV4, IPV6

TABLE = 'clusternet'
TABLE_COMMENT = 'managed by clusternet.node'
NFT_FAMILY = {IPV4: 'ip', IPV6: 'ip6'}
ADDR_TYPE = {IPV4: 'ipv4_addr', IPV6: 'ipv6_addr'}
VERSION = {IPV4: 4, IPV6: 6}
MULTICAST = {IPV4: ipaddress.ip_network('224.0.0.0/4'), IPV6: ipaddress.ip_network('ff00::/8')}
MIN_VERSION = (1, 0, 1)
FULL_MARK = 0xffffffff
NAME_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_-]{0,62}$')
HOOKS = ('prerouting', 'output', 'postrouting')

MASQ_CLUSTER, MASQ_POD, MASQ_CHAIN = 'masq-cluster', 'masq-pod', 'masq-postrouting'
FIP_DNAT, FIP_SNAT = 'fip-dnat', 'fip-snat'
FIP_PREROUTING, FIP_OUTPUT, FIP_POSTROUTING = 'fip-prerouting', 'fip-output', 'fip-postrouting'
DSTNAT_PRIORITY = -90
FIP_SNAT_PRIORITY = 105
MASQ_PRIORITY = 110


class NftError(Exception):
    """nft is missing, too old, refused a transaction or printed what we cannot read."""


def _cut(text, limit=200):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + '...'


# --- rule expressions: each renders its nft text and the JSON `nft -j` prints back ---

class Mark(object):
    """meta mark & MASK == VALUE (meta mark VALUE with the full mask)."""

    def __init__(self, value, mask=FULL_MARK):
        if not (0 <= mask <= FULL_MARK and 0 <= value <= FULL_MARK) or value & ~mask:
            raise ValueError('invalid mark 0x%x/0x%x: value and mask are 32-bit and the value lies inside the mask' % (value, mask))
        self.value, self.mask = value, mask

    def text(self, family):
        if self.mask == FULL_MARK:
            return 'meta mark 0x%08x' % self.value
        return 'meta mark & 0x%08x == 0x%08x' % (self.mask, self.value)

    def json(self, family):
        left = {'meta': {'key': 'mark'}}
        if self.mask != FULL_MARK:
            left = {'&': [left, self.mask]}
        return {'match': {'op': '==', 'left': left, 'right': self.value}}


class Addr(object):
    """ip saddr|daddr [!=] @SET or NETWORK."""

    def __init__(self, field, value, negate=False):
        if field not in ('saddr', 'daddr'):
            raise ValueError('invalid address field %r' % (field,))
        self.field, self.value, self.negate = field, value, negate

    def text(self, family):
        value = '@' + self.value.name if isinstance(self.value, Set) else _text(self.value)
        return '%s %s %s%s' % (NFT_FAMILY[family], self.field, '!= ' if self.negate else '', value)

    def json(self, family):
        if isinstance(self.value, Set):
            right = '@' + self.value.name
        else:
            right = _element_json(self.value)
        return {'match': {'op': '!=' if self.negate else '==',
                          'left': {'payload': {'protocol': NFT_FAMILY[family], 'field': self.field}}, 'right': right}}


class Verdict(object):
    def __init__(self, verdict):
        if verdict != 'return':
            raise ValueError('invalid verdict %r' % (verdict,))
        self.verdict = verdict

    def text(self, family):
        return self.verdict

    def json(self, family):
        return {self.verdict: None}


class Masquerade(object):
    def __init__(self, fully_random):
        self.fully_random = bool(fully_random)

    def text(self, family):
        return 'masquerade fully-random' if self.fully_random else 'masquerade'

    def json(self, family):
        return {'masquerade': {'flags': 'fully-random'} if self.fully_random else None}


class NatMap(object):
    """dnat|snat to ip daddr|saddr map @MAP."""

    def __init__(self, kind, field, nat_map):
        if (kind, field) not in (('dnat', 'daddr'), ('snat', 'saddr')):
            raise ValueError('invalid nat %r by %r' % (kind, field))
        self.kind, self.field, self.map = kind, field, nat_map

    def text(self, family):
        return '%s to %s %s map @%s' % (self.kind, NFT_FAMILY[family], self.field, self.map.name)

    def json(self, family):
        return {self.kind: {'addr': {'map': {'key': {'payload': {'protocol': NFT_FAMILY[family], 'field': self.field}},
                                             'data': '@' + self.map.name}}}}


def _element_json(value):
    """A network as `nft -j` prints it (a host network as a bare address)."""
    if value.prefixlen == value.max_prefixlen:
        return _text(value.network_address)
    return {'prefix': {'addr': _text(value.network_address), 'len': value.prefixlen}}


# --- typed objects of one table ---

class Set(object):
    """A set (interval: of networks) or, with is_map, a map address -> address (elements are pairs)."""

    def __init__(self, name, interval=False, is_map=False):
        self.name, self.interval, self.is_map = name, interval, is_map
        self.elements = []


class Chain(object):
    def __init__(self, name, hook, priority):
        self.name, self.hook, self.priority = name, hook, priority
        self.rules = []


class Transaction(object):
    """Typed operations on one family's table, each validated when queued (ValueError naming
    the value), rendered once into one `nft -f` file. Modelled on knftables' Transaction."""

    def __init__(self, family):
        if family not in FAMILIES:
            raise ValueError('invalid family %r' % (family,))
        self.family = family
        self.nft_family = NFT_FAMILY[family]
        self.ops = []          # (line, what it came from) in order
        self.sets = {}
        self.chains = {}
        self.exists = False    # whether the table is declared after the ops so far

    def _table(self):
        return '%s %s' % (self.nft_family, TABLE)

    def _name(self, name, what):
        if not NAME_RE.match(str(name)):
            raise ValueError('invalid %s name %r: expected a letter then up to 62 letters, digits, _ or -' % (what, _cut(name, 80)))
        if name in self.sets or name in self.chains:
            raise ValueError('%s %r is declared twice in one transaction' % (what, name))
        if not self.exists:
            raise ValueError('%s %r: the table is not declared at this point of the transaction' % (what, name))

    def _address(self, value, what):
        if getattr(value, 'version', None) != VERSION[self.family]:
            raise ValueError('%s %s is not an %s value of %s' % (what, _cut(value, 80), self.family, self._table()))
        if getattr(value, 'scope_id', None):
            raise ValueError('%s %s carries a zone id, which nft has no syntax for' % (what, _cut(value, 80)))
        return value

    def replace_table(self):
        """Make sure the table exists, then delete it: the start of every transaction."""
        self.ops.append(('add table %s' % self._table(), 'table'))
        self.ops.append(('delete table %s' % self._table(), 'table'))
        self.sets, self.chains, self.exists = {}, {}, False

    def add_table(self):
        self.ops.append(('add table %s { comment "%s"; }' % (self._table(), TABLE_COMMENT), 'table'))
        self.exists = True

    def add_set(self, name, interval=False, is_map=False):
        self._name(name, 'map' if is_map else 'set')
        if interval and is_map:
            raise ValueError('map %r: interval maps are not used here' % (name,))
        self.sets[name] = Set(name, interval, is_map)
        addr = ADDR_TYPE[self.family]
        if is_map:
            self.ops.append(('add map %s %s { type %s : %s; }' % (self._table(), name, addr, addr), 'map ' + name))
        else:
            self.ops.append(('add set %s %s { type %s;%s }' % (self._table(), name, addr, ' flags interval;' if interval else ''), 'set ' + name))
        return self.sets[name]

    def add_elements(self, name, elements):
        """Networks for an interval set (no two may overlap: collapse them first), addresses
        for a plain set, (key, value) address pairs for a map (each key once)."""
        target = self.sets.get(name)
        if target is None:
            raise ValueError('elements for %r: no such set or map in this transaction' % (name,))
        elements = list(elements)
        if not elements:
            return
        for element in elements:
            if target.is_map:
                key, value = element
                self._address(key, 'map %s key' % name)
                self._address(value, 'map %s value' % name)
            else:
                self._address(element, 'set %s element' % name)
                if target.interval != isinstance(element, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                    raise ValueError('set %s element %s: an interval set holds networks, a plain set addresses' % (name, element))
        keys = [element[0] for element in elements] if target.is_map else elements
        known = [element[0] for element in target.elements] if target.is_map else target.elements
        if len(set(keys) | set(known)) != len(keys) + len(known):
            raise ValueError('%s %s: an element is listed twice' % ('map' if target.is_map else 'set', name))
        if target.interval:
            ordered = sorted(set(keys) | set(known))
            for low, high in zip(ordered, ordered[1:]):
                if low.overlaps(high):
                    raise ValueError('set %s: %s overlaps %s (collapse the networks first)' % (name, low, high))
        target.elements.extend(elements)
        # Rendered only with the file: a read compares addresses, never their text.
        self.ops.append((functools.partial(_element_line, self._table(), name, elements, target.is_map),
                         '%s %s' % ('map' if target.is_map else 'set', name)))

    def add_chain(self, name, hook, priority):
        self._name(name, 'chain')
        if hook not in HOOKS:
            raise ValueError('chain %s: invalid hook %r' % (name, hook))
        if not isinstance(priority, int) or isinstance(priority, bool) or not -400 <= priority <= 400:
            raise ValueError('chain %s: invalid priority %r (an integer in -400..400)' % (name, priority))
        self.chains[name] = Chain(name, hook, priority)
        self.ops.append(('add chain %s %s { type nat hook %s priority %d; policy accept; }' % (self._table(), name, hook, priority),
                         'chain ' + name))

    def add_rule(self, chain, *exprs):
        if chain not in self.chains:
            raise ValueError('rule for chain %r: no such chain in this transaction' % (chain,))
        if not exprs:
            raise ValueError('rule for chain %s: no expression' % chain)
        for expr in exprs:
            used = expr.value if isinstance(expr, Addr) else expr.map if isinstance(expr, NatMap) else None
            if isinstance(used, Set):
                if self.sets.get(used.name) is not used:
                    raise ValueError('rule in %s names %s %r, not declared in this transaction' % (chain, 'map' if used.is_map else 'set', used.name))
                if used.is_map != isinstance(expr, NatMap):
                    raise ValueError('rule in %s: %r is used as a %s' % (chain, used.name, 'map' if isinstance(expr, NatMap) else 'set'))
            elif isinstance(expr, Addr):
                self._address(expr.value, 'rule in %s: network' % chain)
        self.chains[chain].rules.append(exprs)
        text = ' '.join(expr.text(self.family) for expr in exprs)
        self.ops.append(('add rule %s %s %s' % (self._table(), chain, text), 'rule in ' + chain))

    def render(self):
        """The `nft -f` file: one operation per line."""
        return ''.join(_line(op[0]) + '\n' for op in self.ops)

    def origin(self, line_number):
        """The operation a line of the rendered file came from (nft reports errors by line)."""
        if 1 <= line_number <= len(self.ops):
            line, what = self.ops[line_number - 1]
            return '%s: %s' % (what, _cut(_line(line)))
        return None

    def expected(self):
        """The table as `nft -j list table` prints it after this transaction, handles left out:
        {('set'|'map'|'chain', name): object, ('rule', chain): [expr lists]}; None when it removes the table."""
        if not self.exists:
            return None
        view = {}
        for name, target in self.sets.items():
            obj = {'family': self.nft_family, 'name': name, 'table': TABLE, 'type': ADDR_TYPE[self.family]}
            if target.is_map:
                obj['map'] = ADDR_TYPE[self.family]
                if target.elements:
                    obj['elem'] = frozenset(target.elements)
                view[('map', name)] = obj
            else:
                if target.interval:
                    obj['flags'] = ['interval']
                if target.elements:
                    obj['elem'] = sorted([_element_json(element) for element in target.elements], key=_sort_key)
                view[('set', name)] = obj
        for name, chain in self.chains.items():
            view[('chain', name)] = {'family': self.nft_family, 'table': TABLE, 'name': name, 'type': 'nat',
                                     'hook': chain.hook, 'prio': chain.priority, 'policy': 'accept'}
            view[('rule', name)] = [[expr.json(self.family) for expr in exprs] for exprs in chain.rules]
        return view


def _sort_key(element):
    return json.dumps(element, sort_keys=True)


def _by_address(pair):
    return int(pair[0])


def _element_line(table, name, elements, is_map):
    if is_map:
        texts = ('%s : %s' % (_text(key), _text(value)) for key, value in elements)
    else:
        texts = (_text(element) for element in elements)
    return 'add element %s %s { %s }' % (table, name, ', '.join(texts))


def _line(line):
    return line() if callable(line) else line


def _text(value):
    """An address or network as nft prints it: inet_ntop, like nft itself. For IPv6 it is ~10x
    faster than str(), which matters at 5,000 FIPs per family, and it prints the IPv4-compatible
    ::a.b.c.d dotted where str() prints ::xxxx:xxxx."""
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return '%s/%d' % (_text(value.network_address), value.prefixlen)
    if value.version == 6:
        return socket.inet_ntop(socket.AF_INET6, value.packed)
    return str(value)


def _parse_address(text):
    """An address nft printed (inet_pton, ~10x faster than ipaddress for IPv6); ValueError otherwise."""
    try:
        if ':' in text:
            return ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, TypeError):
        raise ValueError(text) from None


# --- content: what the modules manage, in their option shape ---

def collapse(networks):
    """Networks of one family, overlapping and adjacent ones merged, in address order."""
    return list(ipaddress.collapse_addresses(sorted(set(networks))))


def format_mark(mark):
    """(value, mask) -> '0x4000/0x4000' (or '0x4000' with the full mask), as the masquerade module writes it."""
    value, mask = mark
    return '0x%x' % value if mask == FULL_MARK else '0x%x/0x%x' % (value, mask)


def table_transaction(family, masquerade=None, fips=None):
    """The one transaction that leaves the family's table holding exactly this content.

    masquerade: None, or a dict with `cluster_cidrs` and `pod_cidrs` (networks of this
    family; clusters non-empty), `skip_mark` ((value, mask) or None), `random_fully`.
    fips: {external: internal} addresses of this family.
    With neither, the transaction removes the table.
    """
    tx = Transaction(family)
    tx.replace_table()
    if not masquerade and not fips:
        return tx
    tx.add_table()
    if fips:
        dnat = tx.add_set(FIP_DNAT, is_map=True)
        snat = tx.add_set(FIP_SNAT, is_map=True)
        pairs = sorted(fips.items(), key=_by_address)
        if len(set(fips.values())) != len(pairs):
            raise ValueError('FIPs of %s: an internal IP is the target of two external IPs' % family)
        tx.add_elements(FIP_DNAT, pairs)
        tx.add_elements(FIP_SNAT, sorted(((internal, external) for external, internal in pairs), key=_by_address))
        tx.add_chain(FIP_PREROUTING, 'prerouting', DSTNAT_PRIORITY)
        tx.add_chain(FIP_OUTPUT, 'output', DSTNAT_PRIORITY)
        tx.add_chain(FIP_POSTROUTING, 'postrouting', FIP_SNAT_PRIORITY)
        tx.add_rule(FIP_PREROUTING, NatMap('dnat', 'daddr', dnat))
        tx.add_rule(FIP_OUTPUT, NatMap('dnat', 'daddr', dnat))
        tx.add_rule(FIP_POSTROUTING, NatMap('snat', 'saddr', snat))
    if masquerade:
        clusters, pods = collapse(masquerade['cluster_cidrs']), collapse(masquerade['pod_cidrs'])
        if not clusters:
            raise ValueError('masquerade for %s needs a cluster CIDR' % family)
        cluster = tx.add_set(MASQ_CLUSTER, interval=True)
        pod = tx.add_set(MASQ_POD, interval=True)
        tx.add_elements(MASQ_CLUSTER, clusters)
        tx.add_elements(MASQ_POD, pods)
        tx.add_chain(MASQ_CHAIN, 'postrouting', MASQ_PRIORITY)
        if masquerade.get('skip_mark'):
            tx.add_rule(MASQ_CHAIN, Mark(*masquerade['skip_mark']), Verdict('return'))
        tx.add_rule(MASQ_CHAIN, Addr('saddr', pod), Addr('daddr', cluster), Verdict('return'))
        tx.add_rule(MASQ_CHAIN, Addr('saddr', cluster), Addr('daddr', pod), Verdict('return'))
        tx.add_rule(MASQ_CHAIN, Addr('saddr', cluster, negate=True), Addr('daddr', pod), Verdict('return'))
        masq = Masquerade(masquerade['random_fully'])
        tx.add_rule(MASQ_CHAIN, Addr('saddr', cluster), Addr('daddr', MULTICAST[family], negate=True), masq)
        tx.add_rule(MASQ_CHAIN, Addr('saddr', cluster, negate=True), Addr('daddr', cluster), masq)
    return tx


# --- reading `nft -j list table` back ---

class Table(object):
    """One family's table as read: the content in the modules' option shape, and the drift
    (what differs from a transaction of that content, each named), empty when it matches."""

    def __init__(self, family, present, masquerade, fips, drift):
        self.family, self.present = family, present
        self.masquerade, self.fips, self.drift = masquerade, fips, drift

    def options(self):
        """{'masquerade': {cluster_cidrs, pod_cidrs, skip_mark, random_fully} or None,
        'floating_ips': [{external_ip, internal_ip}]} with addresses as text."""
        masq = None
        if self.masquerade:
            masq = {'cluster_cidrs': [str(n) for n in self.masquerade['cluster_cidrs']],
                    'pod_cidrs': [str(n) for n in self.masquerade['pod_cidrs']],
                    'skip_mark': format_mark(self.masquerade['skip_mark']) if self.masquerade['skip_mark'] else '',
                    'random_fully': self.masquerade['random_fully']}
        return {'masquerade': masq,
                'floating_ips': [{'external_ip': str(ext), 'internal_ip': str(intl)} for ext, intl in sorted(self.fips.items())]}


def _objects(family, text):
    try:
        data = json.loads(text)
        items = data['nftables']
        meta = items[0]['metainfo']
    except (ValueError, KeyError, IndexError, TypeError):
        raise NftError('nft -j list table %s %s printed no nftables JSON: %s' % (NFT_FAMILY[family], TABLE, _cut(text))) from None
    if meta.get('json_schema_version') != 1:
        raise NftError('nft prints JSON schema version %r; this module reads version 1' % (meta.get('json_schema_version'),))
    view, unknown = {}, []
    for item in items[1:]:
        kind, obj = next(iter(item.items()))
        obj = dict(obj)
        obj.pop('handle', None)
        if kind == 'table':
            continue
        if obj.get('table') != TABLE or obj.get('family') != NFT_FAMILY[family]:
            raise NftError('nft -j list table %s %s printed an object of another table: %s' % (NFT_FAMILY[family], TABLE, _cut(json.dumps(item))))
        if kind == 'rule':
            view.setdefault(('rule', obj['chain']), []).append(obj['expr'])
        elif kind in ('set', 'map', 'chain'):
            if kind == 'map' and 'elem' in obj:
                obj['elem'] = _pairs(obj['name'], obj['elem'])
            elif 'elem' in obj:
                obj['elem'] = sorted(obj['elem'], key=_sort_key)
            view[(kind, obj['name'])] = obj
        else:
            unknown.append('%s %s' % (kind, obj.get('name')))
    return view, unknown


def _pairs(name, elements):
    """A map's elements as a frozenset of (key, value) addresses."""
    try:
        return frozenset((_parse_address(key), _parse_address(value)) for key, value in elements)
    except (ValueError, TypeError):
        raise NftError('map %s holds an element this module does not write: %s' % (name, _cut(json.dumps(elements)))) from None


def _addresses(elements, what):
    found = []
    for element in elements:
        try:
            if isinstance(element, dict) and 'prefix' in element:
                found.append(ipaddress.ip_network('%s/%s' % (element['prefix']['addr'], element['prefix']['len'])))
            elif isinstance(element, str):
                found.append(ipaddress.ip_network(element))
            else:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise NftError('%s holds an element this module does not write: %s' % (what, _cut(json.dumps(element)))) from None
    return sorted(found)


def parse_table(family, text):
    """A Table from `nft -j list table` output; text None (no such table) is an absent table."""
    if text is None:
        return Table(family, False, None, {}, [])
    view, unknown = _objects(family, text)
    fips = dict((view.get(('map', FIP_DNAT)) or {}).get('elem', ()))
    masq = None
    clusters = view.get(('set', MASQ_CLUSTER))
    if clusters:
        masq = {'cluster_cidrs': _addresses(clusters.get('elem', []), 'set ' + MASQ_CLUSTER),
                'pod_cidrs': _addresses((view.get(('set', MASQ_POD)) or {}).get('elem', []), 'set ' + MASQ_POD),
                'skip_mark': None, 'random_fully': True}
        # Searched for, not taken from fixed positions: a rule tampered in before or after ours must not
        # change what the other module's next run writes back (it keeps this half as read).
        rules = view.get(('rule', MASQ_CHAIN)) or []
        marks = [mark for mark in map(_mark_of, rules) if mark]
        masq['skip_mark'] = marks[0] if marks else None
        masq['random_fully'] = all(rule[-1]['masquerade'] == {'flags': 'fully-random'} for rule in rules if rule and 'masquerade' in rule[-1])
    try:
        expected = table_transaction(family, masq, fips).expected() or {}
    except ValueError as exc:
        expected = {}
        unknown.append('content no transaction of this module writes (%s)' % exc)
    drift = list(unknown)
    for key in sorted(set(view) | set(expected)):
        if key not in expected:
            drift.append('unexpected %s %s' % key)
        elif key not in view:
            drift.append('missing %s %s' % key)
        elif view[key] != expected[key]:
            drift.append('%s %s differs' % key)
    return Table(family, True, masq, fips, drift)


def _mark_of(exprs):
    """(value, mask) of a skip-mark rule's match, or None when the rule is another one."""
    if len(exprs) != 2 or exprs[1] != {'return': None}:
        return None
    match = exprs[0].get('match', {})
    left, right = match.get('left'), match.get('right')
    if match.get('op') != '==' or not isinstance(right, int):
        return None
    if left == {'meta': {'key': 'mark'}}:
        return (right, FULL_MARK)
    if isinstance(left, dict) and isinstance(left.get('&'), list) and left['&'][0] == {'meta': {'key': 'mark'}} and isinstance(left['&'][1], int):
        return (right, left['&'][1])
    return None


# --- the kernel edge: nft on this host ---

def _has_table(text):
    try:
        return any(item.get('table', {}).get('name') == TABLE for item in json.loads(text)['nftables'])
    except (ValueError, KeyError, TypeError, AttributeError):
        return True  # unreadable: do not take it for an absent table


def parse_tables(text):
    """{(family, name)} from `nft list tables` ("table ip kube-proxy" per line)."""
    return frozenset(tuple(line.split()[1:3]) for line in (text or '').splitlines() if len(line.split()) == 3 and line.split()[0] == 'table')


def parse_version(text):
    match = re.search(r'\bv(\d+)\.(\d+)(?:\.(\d+))?', text or '')
    if not match:
        raise NftError('cannot read the nft version from %r' % _cut((text or '').strip(), 120))
    return tuple(int(part or 0) for part in match.groups())


class NftKernel(object):
    """Runs nft through run(args, data=None) -> (rc, stdout, stderr), such as
    AnsibleModule.run_command, or a prefix such as ['ip', 'netns', 'exec', NS] in tests."""

    def __init__(self, run, nft='nft'):
        self.run, self.nft = run, nft

    def preflight(self):
        """The nft version; NftError unless it reads and writes JSON (>= 1.0.1, as knftables requires)."""
        try:
            rc, out, err = self.run([self.nft, '--version'])
        except OSError as exc:
            raise NftError('nft is not installed (%s): install the nftables package' % exc) from None
        if rc != 0:
            raise NftError('%s --version failed (%d): %s' % (self.nft, rc, _cut((err or out).strip())))
        version = parse_version(out)
        if version < MIN_VERSION:
            raise NftError('nft %s is too old: the nftables backend needs nft >= %s' % (
                '.'.join(map(str, version)), '.'.join(map(str, MIN_VERSION))))
        return version

    def tables(self):
        """Every table of every family, as parse_tables reads them; frozenset() when nft cannot list
        them (no nf_tables in this kernel): none can hold anything then. Works on any nft version."""
        try:
            rc, out, _err = self.run([self.nft, 'list', 'tables'])
        except OSError:
            return frozenset()
        return parse_tables(out) if rc == 0 else frozenset()

    def read(self, family):
        """`nft -j list table` text, or None when the table does not exist."""
        rc, out, err = self.run([self.nft, '-j', 'list', 'table', NFT_FAMILY[family], TABLE])
        if rc == 0:
            return out
        # Absent or broken? Ask the table list rather than match strerror's text, which the locale may translate.
        listed_rc, listed, _err = self.run([self.nft, '-j', 'list', 'tables', NFT_FAMILY[family]])
        if listed_rc == 0 and not _has_table(listed):
            return None
        raise NftError('nft -j list table %s %s failed (%d): %s' % (NFT_FAMILY[family], TABLE, rc, _cut(err.strip())))

    def apply(self, tx):
        rc, out, err = self.run([self.nft, '-f', '-'], data=tx.render())
        if rc != 0:
            lines = [int(n) for n in re.findall(r'^[^:\n]*:(\d+):', err or '', re.MULTILINE)]
            origin = tx.origin(lines[0]) if lines else None
            raise NftError('nft refused the %s transaction (nothing applied)%s: %s' % (
                tx.family, ', at ' + origin if origin else '', _cut((err or out).strip(), 400)))
