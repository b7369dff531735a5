"""A fake of the ipset engine's kernel object, over `ipset save` dumps recorded on the real kernel.

tests/unit/fixtures/ipset-*.save hold `ipset save` output captured in a throwaway netns
(record_ipset.sh made each; its header gives the commands that planted the state). FakeIpset
loads them, applies `ipset restore -exist` text to its in-memory sets line by line as ipset 7
does (not transactional: it stops at the first error, the lines before it stay applied, with
the error texts ipset v7.17 prints), and dumps the sets back in `ipset save`'s format, so the
ipset engine's run() is tested end to end without root.
"""

import contextlib
import os

from ansible_collections.clusternet.node.plugins.module_utils import ipset
from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
LIST_TYPE = 'list:set'
# What ipset save prints for options a create line left out, and the order it prints them in.
DEFAULTS = {'family': 'inet', 'hashsize': '1024', 'maxelem': '65536', 'bucketsize': '12'}
ORDER = ('family', 'hashsize', 'maxelem', 'timeout', 'counters', 'comment', 'skbinfo', 'forceadd', 'bucketsize')


def header_of(options):
    """A create line's options as ipset save prints them (flags bare, in its order)."""
    keys = [key for key in ORDER if key in options] + [key for key in options if key not in ORDER]
    return ' '.join(key if options[key] is True else '%s %s' % (key, options[key]) for key in keys)


def fixture(name):
    """A recorded dump without its header comments."""
    with open(os.path.join(FIXTURES, name)) as handle:
        return ''.join(line for line in handle if not line.startswith('#'))


class FakeIpset(ipset.Kernel):
    """ipset.Kernel over in-memory sets ({name: IpSet}, in creation order) loaded from a dump.

    rule_references: {set name: count} of iptables rules using a set (ipset save cannot show
    them; list:set members are counted from the sets themselves). before_restore: a callable of
    this fake run once, just before the first restore (another writer acting at the worst
    moment). restores: the text of every restore applied, failed ones included; destroyed: the
    names `ipset destroy` removed.
    """

    def __init__(self, dump='', rule_references=None, before_restore=None):
        super(FakeIpset, self).__init__(module=None)
        self.sets = ipset.parse_save(dump)
        self.rule_references = dict(rule_references or {})
        self.before_restore = before_restore
        self.restores = []
        self.destroyed = []

    def lock(self):
        return contextlib.nullcontext()

    def dump(self):
        """`ipset save` of every set: create line, then its entries (sorted: the kernel's hash order is its own)."""
        lines = []
        for current in self.sets.values():
            lines.append(' '.join(part for part in ('create', current.name, current.type, current.header) if part))
            for key in sorted(current.entries | current.nomatch):
                extras = current.extras.get(key)
                lines.append('add %s %s %s' % (current.name, key, extras) if extras else 'add %s %s' % (current.name, key))
        return ''.join(line + '\n' for line in lines)

    def references(self, name):
        members = sum(1 for current in self.sets.values() if current.type == LIST_TYPE and name in current.entries)
        return members + self.rule_references.get(name, 0)

    # --- the kernel object -------------------------------------------------------------

    def list_names(self):
        return set(self.sets)

    def save(self, name=None):
        sets = ipset.parse_save(self.dump())  # through the real parser, as the engine reads the kernel
        if name is None:
            return sets
        return {name: sets[name]} if name in sets else {}

    def terse(self, name):
        current = self.sets.get(name)
        if current is None:
            return None
        return {'Name': name, 'Type': current.type, 'Revision': '6', 'Header': current.header,
                'References': str(self.references(name)), 'Number of entries': str(len(current.entries | current.nomatch))}

    def restore(self, transaction):
        if self.before_restore:
            fault, self.before_restore = self.before_restore, None
            fault(self)
        text = transaction.render()
        self.restores.append(text)
        for number, line in enumerate(text.splitlines(), 1):
            why = self.apply_line(line)
            if why:
                raise ipset.restore_error('ipset v7.17: Error in line %d: %s\n' % (number, why))

    def destroy(self, name):
        if name in self.sets:
            if self.references(name):
                raise KernelError('ipset destroy %s failed: ipset v7.17: Set cannot be destroyed: it is in use by a kernel component' % name)
            del self.sets[name]
            self.destroyed.append(name)

    # --- restore, one line at a time (with -exist) -------------------------------------------

    def apply_line(self, line):
        """Apply one restore line; None, or the reason ipset v7.17 prints when it refuses it."""
        tokens = line.split(None, 3)
        op, name = tokens[0], tokens[1]
        if op == 'create':
            return self._create(name, tokens[2], ' '.join(tokens[3:]))
        current = self.sets.get(name)
        if current is None:
            # -exist makes destroying a missing set a no-op
            return None if op == 'destroy' else 'The set with the given name does not exist'
        if op == 'add':
            return self._add(current, tokens[2], tokens[3] if len(tokens) > 3 else None)
        if op == 'del':
            key = tokens[2]
            current.entries.discard(key)
            current.nomatch.discard(key)
            current.extras.pop(key, None)
        elif op == 'flush':
            current.entries, current.nomatch, current.extras = set(), set(), {}
        elif op == 'destroy':
            if self.references(name):
                return 'Set cannot be destroyed: it is in use by a kernel component'
            del self.sets[name]
        elif op == 'swap':
            other = self.sets.get(tokens[2])
            if other is None:
                return 'Sets cannot be swapped: the second set does not exist'
            if other.type != current.type or other.family != current.family:
                return 'The sets cannot be swapped: their type does not match'
            # the names trade places, each set keeps its content
            self.sets[name], self.sets[other.name] = other, current
            current.name, other.name = other.name, name
        else:
            return 'Unknown command %s' % op
        return None

    def _create(self, name, set_type, header):
        new = ipset.IpSet(name, set_type, header)
        old = self.sets.get(name)
        if old is not None:
            # -exist takes a create only when it asks for what the set already is
            same = old.type == set_type and all(old.options.get(key) == value for key, value in new.options.items())
            return None if same else 'Set cannot be created: set with the same name already exists'
        if set_type != LIST_TYPE:
            new = ipset.IpSet(name, set_type, header_of(dict(DEFAULTS, **new.options)))
        self.sets[name] = new
        return None

    def _add(self, current, key, extras):
        if current.type != LIST_TYPE:
            address = key.split(',', 1)[0].split('/', 1)[0]
            if (':' in address) != (current.family == 'ipv6'):
                return 'Syntax error: cannot parse %s: resolving to %s address failed' % (key, 'IPv6' if current.family == 'ipv6' else 'IPv4')
        elif key not in self.sets:
            return 'Set to be added/deleted/tested as element does not exist.'
        known = key in current.entries or key in current.nomatch
        if not known and len(current.entries) + len(current.nomatch) >= int(current.options.get('maxelem', 65536)):
            return 'Hash is full, cannot add more elements'
        nomatch = bool(extras) and ipset._is_nomatch(extras)
        (current.nomatch if nomatch else current.entries).add(key)
        (current.entries if nomatch else current.nomatch).discard(key)
        if extras:
            current.extras[key] = extras
        else:
            current.extras.pop(key, None)
        return None
