# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ipset save / restore text: normalize entries, parse live sets, diff, render one batch.

Everything above the "kernel I/O" line is pure. An entry is kept as the exact text
`ipset save` prints for it (host networks without /32 or /128, IPv6 compressed,
protocols lowercase, service names as port numbers), so comparing the desired list
with the kernel's is a comparison of strings and a second run finds nothing to do.
Below it: Kernel, the seam every ipset command of a run goes through, and the Engine
that engine.run drives over it (Engine.own decides which sets are ours).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import os
import re
import socket
import tempfile

from ansible_collections.clusternet.node.plugins.module_utils import engine
from ansible_collections.clusternet.node.plugins.module_utils.engine import EngineError, KernelError, Plan, Step
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV4, IPV6, family_of_version, parse_address, parse_network
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock
from ansible_collections.clusternet.node.plugins.module_utils.names import IPSET_MAXNAMELEN, check_interface_name, check_set_name

MAX_NAME = IPSET_MAXNAMELEN - 1
DEFAULT_MAXELEM = 65536
# the kernel raises a smaller hashsize to 64 and rounds it up to a power of two;
# it needs fls(hashsize - 1) <= 31 (ip_set_hash_gen.h); maxelem is a u32
MIN_HASHSIZE = 64
MAX_HASHSIZE = 1 << 31
MAX_MAXELEM = (1 << 32) - 1
TMP_PREFIX = '~cn-tmp-'
IPV6_PREFIX = 'inet6:'
KERNEL_FAMILY = {IPV4: 'inet', IPV6: 'inet6'}
FAMILY_OF_KERNEL = dict((v, k) for k, v in KERNEL_FAMILY.items())
PORT_PROTOCOLS = ('tcp', 'udp', 'sctp', 'udplite')
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
# The kernel cannot store the all-zero address as these types' first part (hash:ip says
# "Null-valued element", hash:ip,port EINVAL); the three-part types take it.
NO_ZERO_ADDRESS = ('hash:ip', 'hash:ip,port')


def shape(set_type):
    return ','.join(EXAMPLE[kind] for kind in SET_TYPES[set_type])


# --- names ------------------------------------------------------------------

def tmp_name(name):
    """The temporary set a replacement of `name` is filled in before the swap: 31
    characters, starting with the TMP_PREFIX that set_names refuses in a user's name,
    so it cannot be a set this module was asked to manage, and derived from `name` alone,
    so the next run finds what a killed run left behind."""
    digest = hashlib.sha256(b'clusternet.node ipset swap ' + name.encode('ascii')).digest()
    return TMP_PREFIX + base64.b32encode(digest).decode('ascii').lower()[:MAX_NAME - len(TMP_PREFIX)]


def set_names(name, ipv6_name, families):
    """{family: set name} for the requested families; ValueError naming a bad name.

    Each final name follows names.check_set_name, and so does an IPv6 name without its
    inet6: prefix; a name starting with "~" is refused as the temporary sets' prefix.
    """
    if not families:
        raise ValueError('families is empty: name at least one of ipv4, ipv6')
    names = {IPV4: name, IPV6: ipv6_name or IPV6_PREFIX + name}
    if name.startswith(IPV6_PREFIX):
        raise ValueError('name %r must not start with %r: that prefix marks the IPv6 copy' % (name, IPV6_PREFIX))
    out = {}
    for family in families:
        final = check_set_name(names[family], '%s set name' % family)
        body = final
        if family == IPV6 and final.startswith(IPV6_PREFIX):
            body = check_set_name(final[len(IPV6_PREFIX):], '%s set name %r without its %s prefix,' % (family, final, IPV6_PREFIX))
        if body.startswith(TMP_PREFIX[0]):
            raise ValueError('%s set name %r starts with %r, which this module keeps for its temporary sets' % (family, final, TMP_PREFIX[0]))
        out[family] = final
    if len(set(out.values())) != len(out):
        raise ValueError('the IPv4 and IPv6 sets must have different names, both are %r' % name)
    return out


def check_create_options(hashsize, maxelem):
    """ValueError for a hashsize or maxelem the kernel would refuse or silently change."""
    if hashsize is not None:
        if not MIN_HASHSIZE <= hashsize <= MAX_HASHSIZE:
            raise ValueError('hashsize %d is out of range: the kernel takes a power of two from %d to %d'
                             % (hashsize, MIN_HASHSIZE, MAX_HASHSIZE))
        if hashsize & (hashsize - 1):
            raise ValueError('hashsize %d is not a power of two: the kernel would make it %d' % (hashsize, 1 << hashsize.bit_length()))
    if maxelem is not None and not 1 <= maxelem <= MAX_MAXELEM:
        raise ValueError('maxelem %d is out of range: ipset takes 1 to %d (32 bits)' % (maxelem, MAX_MAXELEM))


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


def _decimal(text):
    """Whether text is a decimal number in ASCII digits: str.isdigit() and int() also
    take other scripts' digits ('\u0668' is 8), which ipset does not."""
    return bool(text) and all('0' <= c <= '9' for c in text)


def _prefix(text, plen, version):
    bits = 32 if version == 4 else 128
    if not _decimal(plen) or int(plen) > bits:
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
    if _decimal(port):
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
    check_interface_name(name)
    if '"' in name:
        # the kernel allows it, ipset restore takes it as a quote
        raise ValueError('interface name %r contains \'"\', which ipset restore cannot pass' % name)
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
                if options[0] in ('0.0.0.0', '::') and not texts[0] and set_type in NO_ZERO_ADDRESS:
                    raise ValueError('the kernel cannot store the all-zero address %s in %s' % (options[0], set_type))
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
    known = list((known or {}).items())
    for value in entries:
        for family, live in known:
            if value in live:
                out[family].add(value)
                break
        else:
            family, texts = normalize_entry(value, set_type)
            if family not in out:
                raise ValueError('entry %r is %s but families is %s' % (value, family, ', '.join(families)))
            out[family].update(texts)
    return out


# --- live sets --------------------------------------------------------------

class IpSet(object):
    """One set of an `ipset save` dump. An entry is its key (what `del` needs);
    `nomatch` entries are kept apart, since `X nomatch` is not the entry X."""

    def __init__(self, name, set_type, header):
        self.name = name
        self.type = set_type
        self.header = header  # the create options as saved, initval left out
        self.options = parse_header(header.split())
        self.entries = set()  # keys of plain entries
        self.nomatch = set()  # keys of entries flagged nomatch
        self.extras = {}  # key -> what `ipset save` printed after it (timeout, counters, comment, nomatch)

    @property
    def family(self):
        return FAMILY_OF_KERNEL.get(self.options.get('family'), self.options.get('family'))

    def labels(self):
        """Every entry as its key, with ' nomatch' after a nomatch one."""
        return self.entries | set(key + ' nomatch' for key in self.nomatch)


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


def _is_nomatch(extras):
    # outside the double quotes of a comment (ipset comments cannot hold a quote)
    return any('nomatch' in part.split() for part in extras.split('"')[::2])


def parse_save(text):
    """Parse `ipset save` output into {name: IpSet}."""
    sets = {}
    current = None
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split(None, 3)
        if len(tokens) == 3 and tokens[0] == 'add' and current and tokens[1] == current.name:
            current.entries.add(tokens[2])  # the common case, kept fast
        elif not tokens:
            continue
        elif tokens[0] == 'create' and len(tokens) >= 3:
            header = line.split()[3:]
            if 'initval' in header[:-1]:
                at = header.index('initval')
                del header[at:at + 2]
            current = sets[tokens[1]] = IpSet(tokens[1], tokens[2], ' '.join(header))
        elif tokens[0] == 'add' and len(tokens) == 4 and tokens[1] in sets:
            target, key, extras = sets[tokens[1]], tokens[2], tokens[3]
            (target.nomatch if _is_nomatch(extras) else target.entries).add(key)
            target.extras[key] = extras
        elif tokens[0] == 'add' and len(tokens) == 3 and tokens[1] in sets:
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

def delta(current_entries, desired, exclusive, nomatch=frozenset(), desired_nomatch=frozenset()):
    """(added, removed) labels, each sorted: only what differs, nothing in both is touched.

    A label is the key, with ' nomatch' after it for a key added flagged so. `add -exist`
    sets or clears the flag in place, so a key whose flag changes is added, never absent.
    With exclusive, undesired entries are removed, nomatch ones too (as 'KEY nomatch').
    """
    added = sorted((desired - current_entries) | set(key + ' nomatch' for key in desired_nomatch - nomatch))
    removed = sorted((current_entries | nomatch) - desired - desired_nomatch) if exclusive else []
    return added, removed


def key_of(label):
    """The key of a label ('10.0.0.0/8 nomatch' -> '10.0.0.0/8'); a key holds no space."""
    return label.split(' ', 1)[0]


def check_nomatch(set_type, desired, desired_nomatch):
    """ValueError for nomatch entries the set type cannot flag, or an entry asked both ways."""
    if any(desired_nomatch.values()) and 'net' not in SET_TYPES[set_type]:
        raise ValueError('nomatch entries need a set type with a network part (%s), not %s'
                         % (', '.join(t for t, kinds in SET_TYPES.items() if 'net' in kinds), set_type))
    for family, keys in desired_nomatch.items():
        both = sorted(keys & desired[family])
        if both:
            raise ValueError('entry %r is in both entries and nomatch' % both[0])


def create_options(family, hashsize=None, maxelem=None):
    """The options of a create line: 'family inet hashsize 64 maxelem 1000'."""
    options = 'family %s' % KERNEL_FAMILY[family]
    if hashsize:
        options += ' hashsize %d' % hashsize
    if maxelem:
        options += ' maxelem %d' % maxelem
    return options


def render_create(name, set_type, family, hashsize=None, maxelem=None):
    """The create line of a new set (what Transaction.create queues for it)."""
    return 'create %s %s %s' % (name, set_type, create_options(family, hashsize, maxelem))


def render_changes(batch, name, added, removed):
    """A set's delta in place: adds first, so a set being replaced is never empty.
    Only for a delta that fits beside the old entries (see render_swap). `added` are
    labels: 'KEY nomatch' is the ipset restore syntax for a key flagged nomatch."""
    batch.add(name, added)
    batch.delete(name, removed)


def render_swap(batch, current, entries, nomatch=frozenset()):
    """A set's replacement when the new entries do not fit beside the old ones: fill
    the temporary set, then swap it in (kube-router's way), so the set holds all of its
    old entries or all of its new ones, whenever the batch stops. Kept entries keep
    what `ipset save` printed after them (timeout, counters, comment); `nomatch` are
    the keys to add flagged so."""
    tmp = tmp_name(current.name)
    batch.create(tmp, current.type, current.header)
    batch.flush(tmp)
    extras = {}
    for key in nomatch:
        extras[key] = current.extras.get(key) if key in current.nomatch else 'nomatch'
    for key in entries & current.entries:
        if key in current.extras:
            extras[key] = current.extras[key]
    batch.add(tmp, sorted(entries | nomatch), extras)
    # the temporary name last: a line cut short cannot name another set
    batch.swap(current.name, tmp)
    return tmp


def render_carry_over(batch, read, old, added, removed):
    """After a swap, `old` (the temporary set's content) is the replaced set as it was
    at the swap: give the new set what other writers did to it since `read`, as the
    in-place delta would have kept it (entries they added, entries they removed that this
    run did not touch), then destroy the temporary set."""
    before = read.entries | read.nomatch
    now = old.entries | old.nomatch
    batch.add(read.name, sorted(now - before), old.extras)
    batch.delete(read.name, sorted(before - now - set(key_of(label) for label in added + removed)))
    batch.destroy(old.name)


def render_set(name, entries):
    """A set's entries as sorted 'add' lines, for diff mode."""
    return ''.join('add %s %s\n' % (name, entry) for entry in sorted(entries))


def _one_line(what, values):
    """ValueError naming the value unless each is non-empty text on one line (one scan of the joined text)."""
    joined = ''.join(values)
    if '\n' in joined or '\r' in joined or '\0' in joined or not all(values):
        bad = next(value for value in values if not value or '\n' in value or '\r' in value or '\0' in value)
        raise ValueError('invalid %s %r queued in an ipset restore batch: expected text on one line' % (what, bad[:80]))


class Transaction(list):
    """One `ipset restore -exist` batch, built from typed operations (create, add, delete,
    flush, swap, destroy), each checked when queued (a set name ipset's parsers read as
    itself, entries on one line), so a bad value fails before anything is written. The
    list holds the restore lines; ops says what each does, (set name, action, key), so a
    failure at line N can say exactly what lines 1 to N-1 did; render() joins the text once.
    swaps: (set read before the swap, its temporary set's name, added, removed)."""

    def __init__(self):
        list.__init__(self)
        self.ops = []
        self.swaps = []

    def put(self, line, target, action, key=None):
        """Queue one line as it is: the typed operations below check their values first."""
        self.append(line)
        self.ops.append((target, action, key))

    def create(self, name, set_type, header):
        check_set_name(name)
        if set_type not in SET_TYPES:
            raise ValueError('invalid set type %r queued in an ipset restore batch: expected one of %s' % (set_type, ', '.join(SET_TYPES)))
        line = ' '.join(part for part in ('create', name, set_type, header) if part)
        _one_line('create line', [line])
        self.put(line, name, 'create')

    def add(self, name, labels, extras=None):
        """One add line per label (a key, or 'KEY nomatch'), with what extras gives for a key
        after it (nomatch, timeout, counters, comment, as `ipset save` printed them)."""
        if not labels:
            return
        check_set_name(name)
        _one_line('entry of %s' % name, labels)
        if extras:
            texts = [extras.get(label) for label in labels]
            _one_line('entry options of %s' % name, [text for text in texts if text])
            self.extend(['add %s %s %s' % (name, label, text) if text else 'add %s %s' % (name, label) for label, text in zip(labels, texts)])
        else:
            self.extend(['add %s %s' % (name, label) for label in labels])
        self.ops.extend([(name, 'add', label) for label in labels])

    def delete(self, name, keys):
        if not keys:
            return
        check_set_name(name)
        _one_line('entry of %s' % name, keys)
        self.extend(['del %s %s' % (name, key) for key in keys])
        self.ops.extend([(name, 'del', key) for key in keys])

    def flush(self, name):
        self.put('flush %s' % check_set_name(name), name, 'flush')

    def swap(self, name, other):
        self.put('swap %s %s' % (check_set_name(name), check_set_name(other)), name, 'swap', other)

    def destroy(self, name):
        self.put('destroy %s' % check_set_name(name), name, 'destroy')

    def render(self):
        """The restore text, '' when nothing is queued."""
        return '\n'.join(self) + '\n' if self else ''


def applied(ops):
    """{set name: what ops did to it} in the order the sets were first touched."""
    done = {}
    for target, action, key in ops:
        did = done.setdefault(target, {})
        if action in ('add', 'del'):
            did.setdefault('added' if action == 'add' else 'removed', []).append(key)
        else:
            did[{'create': 'created', 'flush': 'flushed', 'swap': 'swapped_with', 'destroy': 'destroyed'}[action]] = key or True
    return done


def say(done):
    if not done:
        return 'nothing'
    parts = []
    for name, did in done.items():
        words = [word for word in ('created', 'flushed') if word in did]
        words += ['%d added' % len(did['added'])] if 'added' in did else []
        words += ['%d removed' % len(did['removed'])] if 'removed' in did else []
        words += ['swapped with %s' % did['swapped_with']] if 'swapped_with' in did else []
        words += ['destroyed'] if 'destroyed' in did else []
        parts.append('%s: %s' % (name, ', '.join(words)))
    return '; '.join(parts)


# --- kernel I/O -------------------------------------------------------------

class RestoreError(KernelError):
    """`ipset restore` failed; line: the line ipset named (1-based), or None when it named none."""

    def __init__(self, msg, line=None):
        super(RestoreError, self).__init__(msg)
        self.line = line


def restore_error(err):
    """The RestoreError of what `ipset restore` printed on failure."""
    err = err.strip()
    found = re.search(r'Error in line (\d+):', err)
    return RestoreError(err, int(found.group(1)) if found else None)


class Kernel(object):
    """The seam of the ipset engine: every `ipset list`, `save`, `restore` and `destroy` of a run
    goes through one of these (tests put fake_ipset.FakeIpset, over recorded dumps, in its place).
    Failures raise engine.KernelError naming the command."""

    def __init__(self, module):
        self.module = module

    def lock(self):
        return host_lock()

    def _run(self, args):
        return self.module.run_command([self.module.get_bin_path('ipset', required=True)] + args)

    def list_names(self):
        """The names of every set (one `ipset list -n`)."""
        rc, out, err = self._run(['list', '-n'])
        if rc != 0:
            raise KernelError('ipset list -n failed: %s' % err.strip())
        return set(out.splitlines())

    def save(self, name=None):
        """{name: IpSet} of one `ipset save NAME` ({} when it does not exist), or of every set."""
        rc, out, err = self._run(['save'] + ([name] if name else []))
        if rc != 0:
            if name and 'does not exist' in err:
                return {}
            raise KernelError('ipset save%s failed: %s' % (' ' + name if name else '', err.strip()))
        try:
            return parse_save(out)
        except ValueError as exc:
            raise KernelError('ipset save: %s' % exc) from None

    def terse(self, name):
        """`ipset list -t NAME` as {'Type': ..., 'Header': ..., 'References': ...}, or None."""
        rc, out, err = self._run(['list', '-t', name])
        if rc != 0:
            if 'does not exist' in err:
                return None
            raise KernelError('ipset list -t %s failed: %s' % (name, err.strip()))
        return dict(line.split(': ', 1) for line in out.splitlines() if ': ' in line)

    def restore(self, transaction):
        """One `ipset restore -exist` of the transaction, read from a file written in full first,
        so a killed run cannot hand ipset a cut-off line (`add s 10.0.0.12` cut to
        `add s 10.0.0.1`). -exist makes an add of an entry a concurrent writer already
        added, or a del of one it already removed, a no-op. RestoreError on failure."""
        fd, path = tempfile.mkstemp(prefix='ipset-restore-', dir=self.module.tmpdir)
        try:
            with os.fdopen(fd, 'w', encoding='utf-8', errors='surrogateescape') as handle:
                handle.write(transaction.render())
            rc, _out, err = self._run(['restore', '-exist', '-file', path])
        finally:
            os.unlink(path)
        if rc != 0:
            raise restore_error(err)

    def destroy(self, name):
        """`ipset destroy NAME`; a set already gone is no failure."""
        rc, _out, err = self._run(['destroy', name])
        if rc != 0 and 'does not exist' not in err:
            raise KernelError('ipset destroy %s failed: %s' % (name, err.strip()))


def restore(kernel, batch, before=None):
    """Apply the batch through kernel. ipset restore stops at the first error and is not
    transactional: the EngineError names what the lines before it did (its result's
    applied, per set), and what the batch `before` (already applied) did."""
    try:
        kernel.restore(batch)
        return
    except RestoreError as exc:
        err, line = str(exc), exc.line
    earlier = ' An earlier batch of this run had applied: %s.' % say(applied(before.ops)) if before else ''
    if line is None:
        raise EngineError('ipset restore failed without naming a line: %s. What it applied is unknown; '
                          'read the sets with ipset save.%s' % (err, earlier), result={'applied': None})
    line = min(line, len(batch))
    done = applied(batch.ops[:line - 1])
    cleanup = _drop_temporaries(kernel, batch.ops[:line])
    raise EngineError(
        'ipset restore failed at line %d of %d (%s): %s. ipset restore is not transactional and stops at the '
        'first error: the lines before it applied %s; that line and the %d after it applied nothing.%s%s'
        % (line, len(batch), batch[line - 1], err, say(done), len(batch) - line, cleanup, earlier),
        result={'applied': done, 'failed_line': batch[line - 1]})


def _drop_temporaries(kernel, ops):
    """Destroy the temporary sets a failed batch created (best effort: the next run
    removes what is left). Returns a sentence for the failure message."""
    temporaries = sorted(set(target for target, action, _key in ops if action == 'create' and target.startswith(TMP_PREFIX)))
    if not temporaries:
        return ''
    left = []
    for name in temporaries:
        try:
            kernel.destroy(name)
        except KernelError:
            left.append(name)
    if left:
        return ' Temporary set(s) %s are left; the next run removes them.' % ', '.join(left)
    return ' The temporary set(s) %s were destroyed again.' % ', '.join(temporaries)


def apply_batch(kernel, batch):
    """Run the batch; then, for each set replaced by a swap, carry over what other
    writers did meanwhile and destroy its temporary set, in a second batch."""
    restore(kernel, batch)
    if not batch.swaps:
        return
    second = Transaction()
    for read, tmp, added, removed in batch.swaps:
        try:
            old = kernel.save(tmp).get(tmp)
        except KernelError as exc:
            raise EngineError('%s; the batch before had applied: %s' % (exc, say(applied(batch.ops))),
                              result={'applied': applied(batch.ops)}) from None
        if old is None:
            raise EngineError('temporary set %s vanished after the swap into %s: another writer destroyed it; '
                              '%s holds its new entries' % (tmp, read.name, read.name), result={'applied': applied(batch.ops)})
        render_carry_over(second, read, old, added, removed)
    restore(kernel, second, before=batch)


# --- the engine -------------------------------------------------------------

class Intent(object):
    """Validated options: params, and {family: set name} of the requested families."""

    def __init__(self, params, names):
        self.params = params
        self.names = names
        self.families = list(names)


class Seen(object):
    """What read() found. live: {family: IpSet of the named set, or None}; temporaries:
    {family: `ipset list -t` of a set named tmp_name(its set)}; references: {family: how many
    kernel components use the named set} (read for state=absent only); stale: the temporary
    sets own() found ours, to destroy."""

    def __init__(self, live, temporaries, references):
        self.live = live
        self.temporaries = temporaries
        self.references = references
        self.stale = []


def _plan_present(params, names, desired, live, batch=None, desired_nomatch=None):
    """(restore lines, per-family result, diff before, diff after) for state=present.
    `desired` and `desired_nomatch` map a family to the keys wanted plain and flagged nomatch."""
    batch = Transaction() if batch is None else batch
    result, before, after = {}, [], []
    for family, name in names.items():
        current = live[family]
        entries = current.entries if current else set()
        nomatch = current.nomatch if current else set()
        wanted, wanted_nomatch = desired[family], (desired_nomatch or {}).get(family, set())
        if current:
            check_existing(current, params['set_type'], family, params['maxelem'])
            maxelem = int(current.options.get('maxelem', DEFAULT_MAXELEM))
        else:
            batch.create(name, params['set_type'], create_options(family, params['hashsize'], params['maxelem']))
            maxelem = params['maxelem'] or DEFAULT_MAXELEM
        if params['exclusive']:
            final, final_nomatch = wanted, wanted_nomatch
        else:
            final, final_nomatch = (entries - wanted_nomatch) | wanted, (nomatch - wanted) | wanted_nomatch
        if len(final) + len(final_nomatch) > maxelem:
            raise ValueError('set %r would hold %d entries, more than its maxelem %d' % (name, len(final) + len(final_nomatch), maxelem))
        added, removed = delta(entries, wanted, params['exclusive'], nomatch, wanted_nomatch)
        # a flag set or cleared in place takes no room
        if len(entries) + len(nomatch) + len(set(key_of(label) for label in added) - entries - nomatch) <= maxelem:
            render_changes(batch, name, added, removed)
        else:
            # only an exclusive run gets here: without it the old entries stay, so they fit
            batch.swaps.append((current, render_swap(batch, current, wanted, wanted_nomatch), added, removed))
        result[family] = {'name': name, 'added': added,
                          'removed': [key + ' nomatch' if key in nomatch else key for key in removed]}
        before.append(render_set(name, current.labels()) if current else '')
        after.append(render_set(name, final | set(key + ' nomatch' for key in final_nomatch)))
    return batch, result, before, after


def _plan_absent(names, live, references, batch=None):
    """Destroy lines for the existing sets; ValueError before any line if one is in use."""
    batch = Transaction() if batch is None else batch
    existing = [family for family in names if live[family]]
    for family in existing:
        count = references.get(family, 0)
        if count:
            raise ValueError('set %r is in use by %d kernel reference(s) (an iptables rule or a list:set): '
                             'remove them first; nothing was destroyed' % (names[family], count))
    for family in existing:
        batch.destroy(names[family])
    result = dict((family, {'name': name, 'added': [],
                            'removed': sorted(live[family].labels()) if live[family] else []})
                  for family, name in names.items())
    before = [render_set(names[family], live[family].labels()) for family in existing]
    return batch, result, before, []


class Engine(object):
    """ipset on engine.run: one `ipset list -n`, one `ipset save NAME` per named set, then one
    `ipset restore` batch (and a second one after a swap). check_mode only words the warning
    about a temporary set an interrupted run left."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode

    def validate(self, params):
        families = [family for family in FAMILIES if family in params['families']]
        names = set_names(params['name'], params['ipv6_name'], families)
        check_create_options(params['hashsize'], params['maxelem'])
        return Intent(params, names)

    def read(self, kernel, intent):
        existing = kernel.list_names()
        live = dict((family, kernel.save(name).get(name) if name in existing else None) for family, name in intent.names.items())
        temporaries = dict((family, kernel.terse(tmp_name(name))) for family, name in intent.names.items() if tmp_name(name) in existing)
        references = {}
        if intent.params['state'] == 'absent':
            references = dict((family, int((kernel.terse(name) or {}).get('References', 0)))
                              for family, name in intent.names.items() if live[family])
        return Seen(live, temporaries, references)

    def own(self, seen, intent):
        """Ours: the sets the task names (read by name, nothing else is), and the temporary set
        tmp_name() gives for one of them when it is a hash type of that family that nothing
        references (what a killed run leaves). Any other set of a temporary's name is refused,
        before anything is changed; every other set is never read, so never written."""
        for family, name in intent.names.items():
            tmp, info = tmp_name(name), seen.temporaries.get(family)
            if info is None:
                continue
            header = info.get('Header', '').split()
            ours = (info.get('Type') in SET_TYPES and header[:2] == ['family', KERNEL_FAMILY[family]]
                    and info.get('References') == '0')
            if not ours:
                raise ValueError('set %r has the name of the temporary set for %r but is not one this module left '
                                 '(type %s, %s, %s references); remove it by hand; nothing was changed'
                                 % (tmp, name, info.get('Type'), info.get('Header'), info.get('References')))
            seen.stale.append(tmp)
        return seen

    def plan(self, owned, intent):
        params, names, live = intent.params, intent.names, owned.live
        batch = Transaction()
        for tmp in owned.stale:
            batch.destroy(tmp)
        if params['state'] == 'present':
            known = dict((family, current.entries | current.nomatch) for family, current in live.items()
                         if current and current.type == params['set_type'] and current.family == family)
            desired = desired_entries(params['entries'], params['set_type'], intent.families, known)
            desired_nomatch = desired_entries(params['nomatch'], params['set_type'], intent.families, known)
            check_nomatch(params['set_type'], desired, desired_nomatch)
            batch, result, before, after = _plan_present(params, names, desired, live, batch, desired_nomatch)
        else:
            batch, result, before, after = _plan_absent(names, live, owned.references, batch)
        result['changed'] = bool(batch)
        plan = Plan(result=result)
        text = {'before': ''.join(before), 'after': ''.join(after)}  # its add lines, as before the engine
        plan.diff = lambda: text
        plan.warnings = ['%s the temporary set %s an interrupted run left' % ('would destroy' if self.check_mode else 'destroyed', tmp)
                         for tmp in owned.stale]
        if batch:
            plan.steps.append(Step('ipset restore', lambda kernel, _check_mode: apply_batch(kernel, batch)))
        return plan


def run(module, kernel=None):
    """The module's result (engine.run over the real ipset, or kernel)."""
    return engine.run(module, Engine(module.check_mode), kernel or Kernel(module))
