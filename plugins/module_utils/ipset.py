# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ipset save / restore text: normalize entries, parse live sets, diff, render one batch.

Everything above the "kernel I/O" line is pure. An entry is kept as the exact text
`ipset save` prints for it (host networks without /32 or /128, IPv6 compressed,
protocols lowercase, service names as port numbers), so comparing the desired list
with the kernel's is a comparison of strings and a second run finds nothing to do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV4, IPV6, family_of_version, parse_address, parse_network
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock

MAX_NAME = 31
DEFAULT_MAXELEM = 65536
IPV6_PREFIX = 'inet6:'
KERNEL_FAMILY = {IPV4: 'inet', IPV6: 'inet6'}
FAMILY_OF_KERNEL = dict((v, k) for k, v in KERNEL_FAMILY.items())
PORT_PROTOCOLS = ('tcp', 'udp', 'sctp', 'udplite')
MAX_IFACE = 15
# create options that take no value; every other option is followed by one
HEADER_FLAGS = ('counters', 'comment', 'skbinfo', 'forceadd')

# Each type's entry shape, one kind per comma-separated part.
SET_TYPES = {
    'hash:ip': ('ip',),
    'hash:net': ('net',),
    'hash:ip,port': ('ip', 'port'),
    'hash:net,port': ('net', 'port'),
    'hash:ip,port,ip': ('ip', 'port', 'ip'),
    'hash:ip,port,net': ('ip', 'port', 'net'),
    'hash:net,iface': ('net', 'iface'),
}
EXAMPLE = {
    'ip': '10.42.1.6', 'net': '10.42.0.0/16', 'port': 'tcp:443', 'iface': 'eth0',
}
# The kernel refuses a /0 in these types; like kube-router, /0 becomes two /1.
SPLIT_ZERO = ('hash:net', 'hash:net,port', 'hash:ip,port,net')
ZERO_HALVES = {4: ('0.0.0.0/1', '128.0.0.0/1'), 6: ('::/1', '8000::/1')}


def shape(set_type):
    return ','.join(EXAMPLE[kind] for kind in SET_TYPES[set_type])


# --- names ------------------------------------------------------------------

def set_names(name, ipv6_name, families):
    """{family: set name} for the requested families; ValueError naming a bad name."""
    if not families:
        raise ValueError('families is empty: name at least one of ipv4, ipv6')
    names = {IPV4: name, IPV6: ipv6_name or IPV6_PREFIX + name}
    if name.startswith(IPV6_PREFIX):
        raise ValueError('name %r must not start with %r: that prefix marks the IPv6 copy' % (name, IPV6_PREFIX))
    out = {}
    for family in families:
        final = names[family]
        if not final or len(final) > MAX_NAME:
            raise ValueError('%s set name %r is %d characters; ipset allows 1 to %d' % (family, final, len(final), MAX_NAME))
        if final != final.strip() or any(c.isspace() for c in final):
            raise ValueError('%s set name %r contains whitespace' % (family, final))
        out[family] = final
    if len(set(out.values())) != len(out):
        raise ValueError('the IPv4 and IPv6 sets must have different names, both are %r' % name)
    return out


# --- entries ----------------------------------------------------------------

def _packed(text, parse):
    """(version, packed bytes) of an address. inet_pton/inet_ntop are what ipset
    itself uses, so inet_ntop prints an address exactly as `ipset save` does
    (::ffff:1.2.3.4 included); on error, `parse` raises the family module's message."""
    af = socket.AF_INET6 if ':' in text else socket.AF_INET
    try:
        return (6 if af == socket.AF_INET6 else 4), socket.inet_pton(af, text)
    except (OSError, socket.error):
        parse(text)
        # Python accepts a few forms ipset does not (an IPv6 zone such as fe80::1%eth0).
        raise ValueError('invalid address %r: ipset does not accept this form' % text) from None


def _prefix(text, plen, version):
    bits = 32 if version == 4 else 128
    if not plen.isdigit() or int(plen) > bits:
        raise ValueError('invalid prefix length in %r: expected 0 to %d' % (text, bits))
    return bits, int(plen)


def _ip(text):
    address, sep, plen = text.partition('/')
    version, packed = _packed(address, parse_address)
    if sep:
        bits, prefix = _prefix(text, plen, version)
        if prefix != bits:
            parse_address(text)
    return version, [socket.inet_ntop(socket.AF_INET6 if version == 6 else socket.AF_INET, packed)]


def _net(text, split_zero):
    address, sep, plen = text.partition('/')
    version, packed = _packed(address, parse_network)
    bits, prefix = _prefix(text, plen, version) if sep else (len(packed) * 8, len(packed) * 8)
    if int.from_bytes(packed, 'big') & ((1 << (bits - prefix)) - 1):
        parse_network(text)
    canonical = socket.inet_ntop(socket.AF_INET6 if version == 6 else socket.AF_INET, packed)
    if prefix == bits:
        return version, [canonical]
    if prefix == 0 and split_zero:
        return version, list(ZERO_HALVES[version])
    return version, ['%s/%d' % (canonical, prefix)]


def _port(text):
    proto, sep, port = text.partition(':')
    if not sep:
        proto, port = 'tcp', text
    proto = proto.lower()
    if proto not in PORT_PROTOCOLS:
        raise ValueError('protocol %r is not one of %s' % (proto, ', '.join(PORT_PROTOCOLS)))
    if port.isdigit():
        number = int(port)
    else:
        try:
            number = socket.getservbyname(port, proto)
        except (OSError, socket.error):
            raise ValueError('port %r is neither a number nor a known %s service' % (port, proto)) from None
    if not 0 <= number <= 65535:
        raise ValueError('port %r is out of range 0-65535' % port)
    return None, ['%s:%d' % (proto, number)]


def _iface(text):
    name = text[len('physdev:'):] if text.startswith('physdev:') else text
    if not name or len(name) > MAX_IFACE or '/' in name or any(c.isspace() for c in name) or name in ('.', '..'):
        raise ValueError('interface name %r is not a valid Linux interface name' % name)
    return None, [text]


def normalize_entry(value, set_type):
    """(family, [canonical entry text]) for one entry; ValueError naming the value.

    More than one text only when a /0 is split into its two /1 halves.
    """
    parts = str(value).strip().split(',')
    kinds = SET_TYPES[set_type]
    if len(parts) != len(kinds):
        raise ValueError('entry %r does not fit set_type %s: expected %s' % (value, set_type, shape(set_type)))
    versions = set()
    texts = ['']
    for kind, part in zip(kinds, parts):
        try:
            if kind == 'ip':
                version, options = _ip(part)
            elif kind == 'net':
                version, options = _net(part, set_type in SPLIT_ZERO)
            elif kind == 'port':
                version, options = _port(part)
            else:
                version, options = _iface(part)
        except ValueError as exc:
            raise ValueError('entry %r does not fit set_type %s (%s): %s' % (value, set_type, shape(set_type), exc)) from None
        if version:
            versions.add(version)
        texts = [(head + ',' + option) if head else option for head in texts for option in options]
    if len(versions) != 1:
        raise ValueError('entry %r mixes IPv4 and IPv6 addresses' % (value,))
    return family_of_version(versions.pop()), texts


def desired_entries(entries, set_type, families, known=None):
    """{family: set of canonical entries} for each requested family.

    Every entry is validated; one of a family not in `families` is an error, so
    an entry can only ever reach its own family's set. `known` maps a family to
    the entries `ipset save` printed for a live set of this set_type: such text is
    already canonical and valid for that family, so it skips re-parsing (the
    no-change run of a large set is mostly this).
    """
    out = dict((family, set()) for family in families)
    known = known or {}
    for value in entries:
        family = next((fam for fam, live in known.items() if value in live), None)
        if family:
            out[family].add(value)
            continue
        family, texts = normalize_entry(value, set_type)
        if family not in out:
            raise ValueError('entry %r is %s but families is %s' % (value, family, ', '.join(families)))
        out[family].update(texts)
    return out


# --- live sets --------------------------------------------------------------

class IpSet(object):
    """One set of an `ipset save` dump: its header and the key of every entry."""

    def __init__(self, name, set_type, options):
        self.name = name
        self.type = set_type
        self.options = options
        self.entries = set()

    @property
    def family(self):
        return FAMILY_OF_KERNEL.get(self.options.get('family'), self.options.get('family'))


def parse_header(tokens):
    """Options of a create line: 'family inet hashsize 1024 counters ...' -> dict."""
    options = {}
    index = 0
    while index < len(tokens):
        key = tokens[index]
        if key in HEADER_FLAGS or index + 1 == len(tokens):
            options[key] = True
            index += 1
        else:
            options[key] = tokens[index + 1]
            index += 2
    return options


def parse_save(text):
    """Parse `ipset save` output into {name: IpSet}. Per-entry extras (timeout,
    counters, comment) are dropped: an entry is its key, what `del` needs."""
    sets = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        tokens = line.split()
        if tokens[0] == 'create' and len(tokens) >= 3:
            sets[tokens[1]] = IpSet(tokens[1], tokens[2], parse_header(tokens[3:]))
        elif tokens[0] == 'add' and len(tokens) >= 3 and tokens[1] in sets:
            sets[tokens[1]].entries.add(tokens[2])
        else:
            raise ValueError('unexpected ipset save line %d: %r' % (lineno, line))
    return sets


def check_existing(current, set_type, family, maxelem):
    """ValueError when a live set cannot hold what is asked without being recreated."""
    if current.type != set_type:
        raise ValueError('set %r exists with type %s, not %s; remove it first (state: absent)' % (current.name, current.type, set_type))
    if current.family != family:
        raise ValueError('set %r exists with family %s, not %s' % (current.name, current.family, family))
    if maxelem is not None and int(current.options.get('maxelem', 0)) != maxelem:
        raise ValueError('set %r exists with maxelem %s, not %d; ipset cannot change it in place, remove it first (state: absent)'
                         % (current.name, current.options.get('maxelem'), maxelem))


# --- delta ------------------------------------------------------------------

def delta(current_entries, desired, exclusive):
    """(added, removed), each sorted: only what differs, nothing in both is touched."""
    added = sorted(desired - current_entries)
    removed = sorted(current_entries - desired) if exclusive else []
    return added, removed


def render_create(name, set_type, family, hashsize=None, maxelem=None):
    line = 'create %s %s family %s' % (name, set_type, KERNEL_FAMILY[family])
    if hashsize:
        line += ' hashsize %d' % hashsize
    if maxelem:
        line += ' maxelem %d' % maxelem
    return line


def render_changes(name, added, removed, size, maxelem):
    """Restore lines for one set. Adds go first so a set being replaced is never
    empty, unless that would overflow maxelem; then removes go first."""
    adds = ['add %s %s' % (name, entry) for entry in added]
    dels = ['del %s %s' % (name, entry) for entry in removed]
    if size + len(added) > maxelem:
        return dels + adds
    return adds + dels


def render_set(name, entries):
    """A set's entries as sorted 'add' lines, for diff mode."""
    return ''.join('add %s %s\n' % (name, entry) for entry in sorted(entries))


# --- kernel I/O -------------------------------------------------------------

def _ipset(module):
    return module.get_bin_path('ipset', required=True)


def save_set(module, name):
    """The live set `name` (one `ipset save NAME`), or None if it does not exist."""
    rc, out, err = module.run_command([_ipset(module), 'save', name])
    if rc != 0:
        if 'does not exist' in err:
            return None
        module.fail_json(msg='ipset save %s failed: %s' % (name, err.strip()))
    return parse_save(out).get(name)


def references(module, name):
    """How many kernel components (iptables rules, list:set sets) use the set."""
    rc, out, err = module.run_command([_ipset(module), 'list', '-t', name])
    if rc != 0:
        module.fail_json(msg='ipset list -t %s failed: %s' % (name, err.strip()))
    for line in out.splitlines():
        if line.startswith('References:'):
            return int(line.split(':', 1)[1])
    return 0


def restore(module, lines):
    """One `ipset restore -exist` batch. -exist makes an add of an entry a
    concurrent writer already added, or a del of one it already removed, a no-op."""
    payload = '\n'.join(lines) + '\n'
    rc, _out, err = module.run_command([_ipset(module), 'restore', '-exist'], data=payload, binary_data=True)
    if rc != 0:
        module.fail_json(msg='ipset restore failed (ipset restore is not transactional: lines before the failing one were applied): %s' % err.strip())


# --- the module's run -------------------------------------------------------

def _plan_present(params, names, desired, live):
    """(restore lines, per-family result, diff before, diff after) for state=present."""
    lines, result, before, after = [], {}, [], []
    for family, name in names.items():
        current = live[family]
        entries = current.entries if current else set()
        if current:
            check_existing(current, params['set_type'], family, params['maxelem'])
            maxelem = int(current.options.get('maxelem', DEFAULT_MAXELEM))
        else:
            lines.append(render_create(name, params['set_type'], family, params['hashsize'], params['maxelem']))
            maxelem = params['maxelem'] or DEFAULT_MAXELEM
        final = desired[family] if params['exclusive'] else entries | desired[family]
        if len(final) > maxelem:
            raise ValueError('set %r would hold %d entries, more than its maxelem %d' % (name, len(final), maxelem))
        added, removed = delta(entries, desired[family], params['exclusive'])
        lines.extend(render_changes(name, added, removed, len(entries), maxelem))
        result[family] = {'name': name, 'added': added, 'removed': removed}
        before.append(render_set(name, entries) if current else '')
        after.append(render_set(name, final))
    return lines, result, before, after


def _plan_absent(module, names, live):
    """Destroy lines for the existing sets; fails before any line if one is in use."""
    existing = [family for family in names if live[family]]
    for family in existing:
        count = references(module, names[family])
        if count:
            raise ValueError('set %r is in use by %d kernel reference(s) (an iptables rule or a list:set): '
                             'remove them first; nothing was destroyed' % (names[family], count))
    lines = ['destroy %s' % names[family] for family in existing]
    result = dict((family, {'name': name, 'added': [],
                            'removed': sorted(live[family].entries) if live[family] else []})
                  for family, name in names.items())
    before = [render_set(names[family], live[family].entries) for family in existing]
    return lines, result, before, []


def run(module):
    """Validate everything, then under the host lock read each named set, diff,
    and apply the delta in one `ipset restore` batch. Returns the result dict."""
    params = module.params
    families = [family for family in FAMILIES if family in params['families']]
    try:
        names = set_names(params['name'], params['ipv6_name'], families)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    with host_lock(module):
        live = dict((family, save_set(module, name)) for family, name in names.items())
        try:
            if params['state'] == 'present':
                known = dict((family, current.entries) for family, current in live.items()
                             if current and current.type == params['set_type'] and current.family == family)
                desired = desired_entries(params['entries'], params['set_type'], families, known)
                lines, result, before, after = _plan_present(params, names, desired, live)
            else:
                lines, result, before, after = _plan_absent(module, names, live)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        if lines and not module.check_mode:
            restore(module, lines)
    result['changed'] = bool(lines)
    if module._diff:
        result['diff'] = {'before': ''.join(before), 'after': ''.join(after)}
    return result
