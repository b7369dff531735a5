# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables-save / iptables-restore text: parse, diff our own chains, render one batch.

Everything above the "kernel I/O" line is pure: text in, data out, data in, text
out. A rule is compared by its structure, never by its text: iptables-save
chooses its own quoting (a comment of only [A-Za-z0-9_-] is printed bare, any
other double-quoted with \\ escapes) and prints IPv6 addresses through inet_ntop
(::ffff:10.42.0.0 where Python prints ::ffff:a2a:0). A rule's structure is its
options in order, each with its "!" and its values, quotes removed and address
values re-read as addresses, so any form the save tools print compares equal to
the form we render.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import ipaddress
import os
import re

from ansible_collections.clusternet.node.plugins.module_utils.engine import KernelError, Step
from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV4, IPV6
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock

TOOL_PREFIX = {IPV4: 'iptables', IPV6: 'ip6tables'}
MULTICAST = {IPV4: '224.0.0.0/4', IPV6: 'ff00::/8'}
MAX_CHAIN = 28  # iptables: chain names must be under 29 characters
BUILTIN_NAMES = ('PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING', 'ACCEPT', 'DROP', 'RETURN', 'QUEUE', 'ERROR')
# The target extensions of iptables 1.8 (libxt_/libipt_/libip6t_ NAME.so, NAT's aliases included):
# `-j NAME` means the extension, not a chain of that name, and iptables -N refuses them, but
# iptables-restore creates such a chain. The host's own extension directory is searched too.
TARGET_NAMES = (
    'AUDIT', 'CHECKSUM', 'CLASSIFY', 'CLUSTERIP', 'CONNMARK', 'CONNSECMARK', 'CT', 'DNAT', 'DNPT', 'DSCP', 'ECN', 'HL',
    'HMARK', 'IDLETIMER', 'LED', 'LOG', 'MARK', 'MASQUERADE', 'MIRROR', 'NAT', 'NETMAP', 'NFLOG', 'NFQUEUE', 'NOTRACK',
    'RATEEST', 'REDIRECT', 'REJECT', 'SAME', 'SECMARK', 'SET', 'SNAT', 'SNPT', 'STANDARD', 'SYNPROXY', 'TCPMSS',
    'TCPOPTSTRIP', 'TEE', 'TOS', 'TPROXY', 'TRACE', 'TTL', 'ULOG')
EXTENSION_DIRS = ('/usr/lib/*/xtables', '/usr/lib/xtables', '/usr/lib64/xtables', '/lib/xtables', '/usr/local/lib/xtables')
CHAIN_RE = re.compile(r'^[A-Za-z0-9_.][A-Za-z0-9_.-]*$')

# A token is a run of bare characters and "quoted" parts (iptables-restore's own rule:
# backslash escapes only inside quotes); quotes may start mid-token.
TOKEN_RE = re.compile(r'(?:[^\s"]+|"(?:[^"\\]|\\.)*")+')
QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
ESCAPE_RE = re.compile(r'\\(.)')
# Options whose single value is free text: taken as it is even when it looks like an option (--comment -j).
FREE_TEXT = frozenset(('--comment', '--log-prefix', '--nflog-prefix'))
NETWORK_OPTIONS = frozenset(('-s', '-d', '--source', '--destination'))
ADDRESS_VALUED = NETWORK_OPTIONS | frozenset(('--to-destination', '--to-source'))
TARGET_OPTIONS = frozenset(('-j', '-g', '--jump', '--goto'))


def check_quotes(text):
    """ValueError naming the rule when a quote is left open (cheap without backslashes)."""
    if '"' in text and (TOKEN_RE.sub('', text).strip() if '\\' in text else text.count('"') % 2):
        raise ValueError('unbalanced quote in rule %r' % (text,))


def tokenize(text):
    """iptables-restore's split of a rule into arguments; ValueError on an unclosed quote."""
    if '"' not in text:
        return text.split()
    check_quotes(text)
    return [_unquote(token) if '"' in token else token for token in TOKEN_RE.findall(text)]


def _unquote(token):
    if token[0] == token[-1] == '"' and '\\' not in token and token.count('"') == 2:
        return token[1:-1]  # the usual case, cheaply
    return QUOTED_RE.sub(lambda m: ESCAPE_RE.sub(r'\1', m.group(1)), token)


def _canonical(option, value):
    """Address values as Python prints them, whatever form inet_ntop chose; anything else unchanged.

    Both print IPv4 dotted and IPv6 compressed in lower case (RFC 5952) alike, except an
    IPv6 address that inet_ntop ends in dotted IPv4 (::ffff:0:0/96, ::/96): only those are
    re-read, which keeps a 1000-FIP dump cheap to parse."""
    if '.' not in value or ':' not in value:
        return value
    try:
        if option in NETWORK_OPTIONS:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def parse_rule(text):
    """A rule's structure: ((negated, option, values), ...) in order."""
    tokens = tokenize(text)
    options = []
    negated = False
    index, count = 0, len(tokens)
    while index < count:
        option = tokens[index]
        index += 1
        if option == '!':
            negated = True
            continue
        start = index
        if option in FREE_TEXT and index < count:
            index += 1
        else:
            while index < count:
                token = tokens[index]
                if token == '!' or (token[0] == '-' and len(token) > 1 and not token[1].isdigit()):
                    break
                index += 1
        values = tuple(tokens[start:index])
        if option in ADDRESS_VALUED:
            values = tuple(_canonical(option, value) for value in values)
            # iptables-save leaves out -s/-d 0.0.0.0/0 (::/0): it is no match at all.
            if not negated and option in NETWORK_OPTIONS and values in (('0.0.0.0/0',), ('::/0',)):
                negated = False
                continue
        options.append((negated, option, values))
        negated = False
    return tuple(options)


class Rule(object):
    """One rule (the text after "-A CHAIN "): its text, kept to write it back, and its structure
    (parse_rule, read on first use), which is what rules are compared by. Equal text is equal
    structure, so the usual case, iptables-save printing a rule as we wrote it, costs no parse."""

    __slots__ = ('text', '_key', '_tokens')

    def __init__(self, text):
        self.text = text
        self._key = None
        self._tokens = None

    @property
    def key(self):
        if self._key is None:
            self._key = parse_rule(self.text)
        return self._key

    @property
    def tokens(self):
        if self._tokens is None:
            self._tokens = tokenize(self.text)
        return self._tokens

    def __eq__(self, other):
        return isinstance(other, Rule) and (self.text == other.text or self.key == other.key)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return 'Rule(%r)' % self.text

    def value(self, option):
        """The value after the last occurrence of option (not counting a free-text value that
        looks like it, as in --comment -j), or None. Read from the tokens: no full parse."""
        tokens = self.tokens
        found, index = None, 0
        while index < len(tokens) - 1:
            if tokens[index] == option:
                found = tokens[index + 1]
            # A free-text value is skipped whole, even one that reads as an option (--comment --comment).
            index += 2 if tokens[index] in FREE_TEXT else 1
        return found

    @property
    def target(self):
        """The -j/-g target, or None."""
        return self.value('-j') or self.value('-g')

    @property
    def comment(self):
        return self.value('--comment')


def rules_equal(current, desired):
    """Whether two lists of Rule hold the same rules in the same order (duplicates count)."""
    return len(current) == len(desired) and all(a == b for a, b in zip(current, desired))


class Table(object):
    """One table of an iptables-save dump: chains in order and their Rules in order.
    backend: 'nft' or 'legacy', as the dump's header says."""

    def __init__(self, name, backend=None):
        self.name = name
        self.backend = backend
        self.policies = {}
        self.rules = {}

    def has_chain(self, chain):
        return chain in self.rules

    def chain_rules(self, chain):
        return list(self.rules.get(chain, []))

    def jumps_to(self, target):
        """[(chain, Rule)] of every rule anywhere in the table that jumps or goes to target."""
        return [(chain, rule) for chain, rules in self.rules.items() for rule in rules if rule.target == target]


def parse_save(text):
    """Parse iptables-save output into {table name: Table}."""
    tables = {}
    table = None
    backend = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith('#'):
            if line.startswith('# Generated by '):
                backend = 'nft' if '(nf_tables)' in line else 'legacy'
            continue
        if line.startswith('*'):
            table = tables.setdefault(line[1:], Table(line[1:], backend))
        elif line == 'COMMIT':
            table = None
        elif table is None:
            raise ValueError('iptables-save line %d outside a table: %r' % (lineno, raw))
        elif line.startswith(':'):
            fields = line[1:].split()
            if len(fields) < 2:
                raise ValueError('iptables-save line %d declares no chain and policy: %r' % (lineno, raw))
            name, policy = fields[:2]
            table.policies[name] = policy
            table.rules.setdefault(name, [])
        elif line.startswith('-A '):
            chain, _sep, rule = line[3:].partition(' ')
            try:
                check_quotes(rule)
            except ValueError as exc:
                raise ValueError('iptables-save line %d: %s' % (lineno, exc)) from None
            table.rules.setdefault(chain, []).append(Rule(rule))
        else:
            raise ValueError('unexpected iptables-save line %d: %r' % (lineno, raw))
    return tables


def quote(value):
    """Double-quote a value for iptables-restore (which undoes \\ escapes inside quotes)."""
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


def comment_match(comment):
    return '-m comment --comment %s' % quote(comment) if comment else ''


def jump_rule(chain, comment):
    return Rule(' '.join(part for part in (comment_match(comment), '-j', chain) if part))


def line(action, chain, rule):
    """One iptables-save line for a Rule: '-A CHAIN RULE'."""
    return '%s %s %s' % (action, chain, rule.text)


class Transaction(object):
    """One iptables-restore --noflush transaction for one table, which the kernel applies all
    or nothing. Operations are typed and checked when queued (a chain name the tools take, a
    Rule on one line with its quotes closed), so a bad value fails before anything is written;
    the text is rendered once, by render()."""

    def __init__(self, table_name):
        self.table_name = table_name
        self.ops = []

    def __bool__(self):
        return bool(self.ops)

    __nonzero__ = __bool__

    def _check(self, chain):
        if not CHAIN_RE.match(chain or '') or len(chain) > MAX_CHAIN:
            raise ValueError('invalid chain %r queued in a %s transaction' % (chain, self.table_name))

    def _queue(self, op, chain, rule=None):
        self._check(chain)
        if rule is not None:
            if not isinstance(rule, Rule) or '\n' in rule.text or '\r' in rule.text:
                raise ValueError('not a one-line Rule for chain %s: %r' % (chain, rule))
            check_quotes(rule.text)
        self.ops.append((op, chain, rule))

    def declare(self, chain):
        """Create chain, or flush it when it exists (atomically, under --noflush)."""
        self._queue(':%s - [0:0]', chain)

    def append(self, chain, rule):
        self._queue('-A %s %s', chain, rule)

    def delete(self, chain, rule):
        """Delete one rule of chain equal to rule (the whole transaction fails when there is none)."""
        self._queue('-D %s %s', chain, rule)

    def jump(self, parent, chain, comment, position=1):
        """Insert the jump from parent to chain at position (1: first) in parent."""
        self._check(chain)
        self._queue('-I %%s %d %%s' % position, parent, jump_rule(chain, comment))

    def destroy(self, chain):
        """Delete chain: it must be empty and unreferenced when the transaction commits."""
        self._queue('-X %s', chain)

    def render(self):
        """The restore text, '' when nothing is queued."""
        if not self.ops:
            return ''
        lines = [op % ((chain,) if rule is None else (chain, rule.text)) for op, chain, rule in self.ops]
        return '*%s\n%s\nCOMMIT\n' % (self.table_name, '\n'.join(lines))


def mark_rule(mark):
    """The rule that marks a chain as created by a module: no target, so packets go on to the
    next rule (a no-op), only a comment match carrying mark. iptables chains carry no comment
    of their own; this rule, written first whenever the module (re)builds the chain, is what
    says "ours" after anyone appends to, inserts into or reorders the chain."""
    return Rule(comment_match(mark))


def our_jumps(table, chain, comment, parents=None):
    """[(parent, Rule)] of the jumps to chain that are ours: they carry exactly comment (and sit in
    one of parents, when given). Every other rule that jumps or goes to chain is someone else's."""
    return [(parent, rule) for parent, rule in table.jumps_to(chain)
            if rule.comment == comment and (parents is None or parent in parents)]


def reconcile_chain(transaction, table, chain, desired, parents, comment=None, after=None):
    """Queue what makes `chain` hold exactly `desired` (Rules, in order) and be jumped to
    exactly once by our jump (the one carrying comment) from each chain in `parents`: inserted
    first when missing, or, given the predicate `after`, right after the last rule of the parent
    it matches (moved there when it sits before one). Jumps to chain without that comment are
    someone else's: left alone.

    When the chain's content differs in any way (missing, extra, duplicated or
    reordered rules) it is redeclared, which iptables-restore --noflush applies as an
    atomic flush, and rebuilt in the same transaction. Queues nothing when nothing differs.
    """
    if not table.has_chain(chain) or not rules_equal(table.chain_rules(chain), desired):
        transaction.declare(chain)
        for rule in desired:
            transaction.append(chain, rule)
    jump = jump_rule(chain, comment)
    for parent in parents:
        existing = [rule for _parent, rule in our_jumps(table, chain, comment, (parent,))]
        rules = table.chain_rules(parent)
        if rules_equal(existing, [jump]) and not (after and any(after(rule) for rule in rules[rules.index(existing[0]) + 1:])):
            continue
        for rule in existing:
            transaction.delete(parent, rule)
        # Positions once the deletions above are applied (they come first in the transaction).
        kept = [rule for rule in rules if not any(rule is ours for ours in existing)]
        position = 1 + max([index + 1 for index, rule in enumerate(kept) if after and after(rule)] or [0])
        transaction.jump(parent, chain, comment, position)


def referenced_by(table, chain, comment):
    """Why `chain` cannot be removed: a rule without comment that jumps or goes to it, or None."""
    for parent, rule in table.jumps_to(chain):
        if rule.comment != comment:
            return 'a rule without this module\'s comment jumps to it: -A %s %s' % (parent, rule.text)
    return None


def remove_chain(transaction, table, chain, comment):
    """Queue the deletion of our jumps to `chain` (those carrying comment) and of the chain
    itself; nothing when absent. ValueError naming the rule when a rule of someone else's
    still jumps to it (removing the chain would need deleting that rule: never ours to do)."""
    problem = referenced_by(table, chain, comment)
    if problem:
        raise ValueError('refusing to remove chain %r: %s; delete that rule, or keep the chain' % (chain, problem))
    for parent, rule in our_jumps(table, chain, comment):
        transaction.delete(parent, rule)
    if table.has_chain(chain):
        transaction.declare(chain)
        transaction.destroy(chain)


def foreign_content(table, chain, owns, jump_comment, mark):
    """Why `chain` is not ours, naming one offending rule, or None when it is.

    A chain is ours when it does not exist; or when it holds mark_rule(mark) anywhere (we
    created it: any other rule in it is a stray, repaired by the next rebuild); or, for a
    chain written before marks existed, when it holds rules and owns(rule) claims every one
    (each carries this module's comment: the next run adds the mark); or when it is empty
    and every rule that jumps or goes to it carries this module's jump comment (an empty
    chain nothing foreign points at holds nothing to lose). Anything else was made by
    someone else.
    """
    if not table.has_chain(chain):
        return None
    rules = table.rules[chain]
    marker = mark_rule(mark)
    if any(rule == marker for rule in rules):
        return None
    foreign = [rule for rule in rules if not owns(rule)]
    if foreign:
        # Name a rule that does something (another module's mark is only a comment).
        rule = next((rule for rule in foreign if rule.target), foreign[0])
        return 'it holds a rule without this module\'s comment: -A %s %s' % (chain, rule.text)
    if not rules:
        problem = referenced_by(table, chain, jump_comment)
        if problem:
            return 'it is empty and ' + problem
    return None


def check_chain(chain, what='chain'):
    """ValueError naming the value unless it is a usable user chain name: not a built-in chain
    or target, nor a target extension (any case), at most MAX_CHAIN characters."""
    if not CHAIN_RE.match(chain or '') or len(chain) > MAX_CHAIN:
        raise ValueError('invalid %s %r: expected a user chain name of 1-%d letters, digits, "_", "." or "-"' % (what, chain, MAX_CHAIN))
    if chain.upper() in BUILTIN_NAMES:
        raise ValueError('invalid %s %r: it is a built-in chain or target name' % (what, chain))
    if chain.upper() in TARGET_NAMES:
        raise ValueError('invalid %s %r: it is the name of an iptables target extension, so -j %s would not reach a chain'
                         % (what, chain, chain))


def extension_target(chain, patterns=EXTENSION_DIRS):
    """The path of a target extension this host's xtables would load for -j chain, or None."""
    directories = os.environ.get('XTABLES_LIBDIR', '').split(':') + [d for pattern in patterns for d in glob.glob(pattern)]
    for directory in filter(None, directories):
        for prefix in ('libxt_', 'libipt_', 'libip6t_'):
            path = os.path.join(directory, '%s%s.so' % (prefix, chain))
            if os.path.exists(path):
                return path
    return None


def check_chains(chains):
    """check_chain on each (name, what), then the host's extension directories; ValueError names the value."""
    for chain, what in chains:
        check_chain(chain, what)
    for chain, what in chains:
        path = extension_target(chain)
        if path:
            raise ValueError('invalid %s %r: this host has a target extension of that name (%s)' % (what, chain, path))


# --- kernel I/O -------------------------------------------------------------

OTHER_BACKEND = {'nft': 'legacy', 'legacy': 'nft'}
# Tables the legacy backend holds in this network namespace; its save tool would create a missing one.
LEGACY_NAMES = {IPV4: '/proc/net/ip_tables_names', IPV6: '/proc/net/ip6_tables_names'}


def backend_tool(family, backend, kind):
    """'iptables-legacy-save', 'ip6tables-nft-restore', ..."""
    return '%s-%s-%s' % (TOOL_PREFIX[family], backend, kind)


def backend_of(text):
    """'nft' or 'legacy' from an iptables-save header, or None without one."""
    for raw in text.splitlines():
        if raw.startswith('# Generated by '):
            return 'nft' if '(nf_tables)' in raw else 'legacy'
    return None


class Kernel(object):
    """The seam of the iptables engines: every iptables-save and iptables-restore of a run, per
    family and per backend, goes through one of these (tests put FakeIptables, over recorded
    dumps, in its place). Failures raise engine.KernelError naming the tool."""

    def __init__(self, module):
        self.module = module

    def lock(self):
        return host_lock()

    def _run(self, tool, args, data=None):
        binary = self.module.get_bin_path(tool, required=True)
        if data is None:
            return self.module.run_command([binary] + args)
        return self.module.run_command([binary] + args, data=data, binary_data=True)

    def _tool(self, family, backend, kind):
        return backend_tool(family, backend, kind) if backend else TOOL_PREFIX[family] + '-' + kind

    def save(self, family, table_name, backend=None):
        """One save of one table by the active (ip6)tables-save, or by backend's; an absent table is an empty Table."""
        tool = self._tool(family, backend, 'save')
        rc, out, err = self._run(tool, ['-t', table_name])
        if rc != 0:
            raise KernelError('%s -t %s failed (exit %d): %s' % (tool, table_name, rc, err.strip()))
        try:
            tables = parse_save(out)
        except ValueError as exc:
            raise KernelError('%s -t %s: %s' % (tool, table_name, exc)) from None
        return tables.get(table_name) or Table(table_name, backend_of(out))

    def legacy_tables(self, family):
        """The tables the legacy backend holds in this network namespace, read from /proc
        (iptables-legacy-save would create a missing one); [] when it holds none."""
        try:
            with open(LEGACY_NAMES[family]) as handle:
                return handle.read().split()
        except (IOError, OSError):
            return []

    def has_tool(self, tool):
        return bool(self.module.get_bin_path(tool))

    def other_backend(self, family, table):
        """The same table in the backend the active tools do not use, or None when that backend's
        save tool is missing or it has no such table. Never writes."""
        other = OTHER_BACKEND.get(table.backend)
        if other is None:
            return None
        if other == 'legacy' and table.name not in self.legacy_tables(family):
            return None
        if not self.has_tool(backend_tool(family, other, 'save')):
            return None
        return self.save(family, table.name, other)

    def restore(self, family, transaction, backend=None):
        """Apply one Transaction with (ip6)tables-restore --noflush -w (all or nothing per table)."""
        tool = self._tool(family, backend, 'restore')
        rc, _out, err = self._run(tool, ['--noflush', '-w', '5'], transaction.render())
        if rc != 0:
            raise KernelError('%s --noflush failed (exit %d): %s' % (tool, rc, err.strip()))

    def supports_random_fully(self, family):
        """Whether this host's (ip6)tables knows MASQUERADE --random-fully."""
        _rc, out, err = self._run(TOOL_PREFIX[family], ['-j', 'MASQUERADE', '--help'])
        return '--random-fully' in out + err


class Seen(object):
    """One family's table as read: the active backend's, and the other backend's (or None)."""

    def __init__(self, table, other):
        self.table = table
        self.other = other


def read(kernel, table_name):
    """{family: Seen}: one save of the table per family, and of the other backend's where it has one."""
    seen = {}
    for family in FAMILIES:
        table = kernel.save(family, table_name)
        seen[family] = Seen(table, kernel.other_backend(family, table))
    return seen


def other_backend_step(plan, family, backend, state, found, transaction, what):
    """Record in state['other_backend'] what the backend the active tools do not use holds of
    ours (found) and its removal; the Step that applies it through that backend's restore tool
    (labelled with what it removes), or None when nothing is to be removed."""
    other = state['other_backend'] = {'backend': backend, 'found': found, 'payload': transaction.render(), 'applied': False}
    plan.result['changed'] = plan.result['changed'] or bool(transaction)
    if not transaction:
        return None
    label = '%s %s removed through %s' % (family, what, backend_tool(family, backend, 'restore'))
    return restore_step(label, family, other, transaction, backend)


def restore_step(label, family, state, transaction, backend=None):
    """An engine Step applying transaction, recording in state['applied'] that the kernel acked it."""
    def action(kernel, _check_mode):
        kernel.restore(family, transaction, backend)
        state['applied'] = True
    return Step(label, action)
