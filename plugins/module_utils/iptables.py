# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables-save / iptables-restore text: parse, diff our own chains, render one batch.

Everything above the "kernel I/O" line is pure: text in, data out, data in, text
out. A rule is kept as the exact text iptables-save prints after "-A CHAIN ", so a
desired rule must be rendered in that canonical form (addresses with their
prefix length, comment double-quoted, matches before the target).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES, IPV4, IPV6

SAVE = {IPV4: 'iptables-save', IPV6: 'ip6tables-save'}
RESTORE = {IPV4: 'iptables-restore', IPV6: 'ip6tables-restore'}
MULTICAST = {IPV4: '224.0.0.0/4', IPV6: 'ff00::/8'}
MAX_CHAIN = 28  # iptables: chain names must be under 29 characters
RESERVED_NAMES = ('PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING', 'ACCEPT', 'DROP', 'RETURN', 'QUEUE')
CHAIN_RE = re.compile(r'^[A-Za-z0-9_.][A-Za-z0-9_.-]*$')


class Table(object):
    """One table of an iptables-save dump: chains in order and their rules in order."""

    def __init__(self, name):
        self.name = name
        self.policies = {}
        self.rules = {}

    def has_chain(self, chain):
        return chain in self.rules

    def chain_rules(self, chain):
        return list(self.rules.get(chain, []))

    def jumps_to(self, target):
        """[(chain, rule)] of every rule anywhere in the table that jumps or goes to target."""
        found = []
        for chain, rules in self.rules.items():
            for rule in rules:
                if rule_target(rule) == target:
                    found.append((chain, rule))
        return found


def parse_save(text):
    """Parse iptables-save output into {table name: Table}."""
    tables = {}
    table = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('*'):
            table = tables.setdefault(line[1:], Table(line[1:]))
        elif line == 'COMMIT':
            table = None
        elif table is None:
            raise ValueError('iptables-save line %d outside a table: %r' % (lineno, raw))
        elif line.startswith(':'):
            name, policy = line[1:].split()[:2]
            table.policies[name] = policy
            table.rules.setdefault(name, [])
        elif line.startswith('-A '):
            chain, _sep, rule = line[3:].partition(' ')
            table.rules.setdefault(chain, []).append(rule)
        else:
            raise ValueError('unexpected iptables-save line %d: %r' % (lineno, raw))
    return tables


def rule_target(rule):
    """The -j/-g target of a rule's text, or None."""
    tokens = shlex.split(rule)
    for flag in ('-j', '-g', '--jump', '--goto'):
        if flag in tokens:
            index = tokens.index(flag)
            if index + 1 < len(tokens):
                return tokens[index + 1]
    return None


def rule_comment(rule):
    tokens = shlex.split(rule)
    if '--comment' in tokens:
        index = tokens.index('--comment')
        if index + 1 < len(tokens):
            return tokens[index + 1]
    return None


def quote(value):
    """Quote a comment the way iptables-save prints it."""
    return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')


def comment_match(comment):
    return '-m comment --comment %s' % quote(comment) if comment else ''


def jump_rule(chain, comment):
    return ' '.join(part for part in (comment_match(comment), '-j', chain) if part)


def reconcile_chain(table, chain, desired, parents, comment=None):
    """Restore lines that make `chain` hold exactly `desired` (in order) and be
    jumped to exactly once from each chain in `parents` (inserted first when missing).

    When the chain's content differs in any way (missing, extra, duplicated or
    reordered rules) it is redeclared, which iptables-restore --noflush applies as an
    atomic flush, and rebuilt in the same transaction. Returns [] when nothing differs.
    """
    lines = []
    if not table.has_chain(chain) or table.chain_rules(chain) != list(desired):
        lines.append(':%s - [0:0]' % chain)
        lines.extend('-A %s %s' % (chain, rule) for rule in desired)
    jump = jump_rule(chain, comment)
    for parent in parents:
        existing = [rule for rule in table.chain_rules(parent) if rule_target(rule) == chain]
        if existing == [jump]:
            continue
        lines.extend('-D %s %s' % (parent, rule) for rule in existing)
        lines.append('-I %s 1 %s' % (parent, jump))
    return lines


def remove_chain(table, chain):
    """Restore lines that delete every jump to `chain` and the chain itself; [] if absent."""
    lines = ['-D %s %s' % (parent, rule) for parent, rule in table.jumps_to(chain)]
    if table.has_chain(chain):
        lines.extend([':%s - [0:0]' % chain, '-X %s' % chain])
    return lines


def check_chain(chain, what='chain'):
    """ValueError naming the value unless it is a usable user chain name."""
    if not CHAIN_RE.match(chain or '') or len(chain) > MAX_CHAIN or chain.upper() in RESERVED_NAMES:
        raise ValueError('invalid %s %r: expected a user chain name of 1-%d letters, digits, "_", "." or "-"' % (what, chain, MAX_CHAIN))


def diff_text(views):
    """{family: [iptables-save lines]} -> one string with a header per family, for diff mode."""
    return ''.join('# %s\n%s' % (family, ''.join(line + '\n' for line in views[family])) for family in FAMILIES)


def diff(before, after):
    """Diff mode's {before, after} from {family: [lines]} views of both."""
    return {'before': diff_text(before), 'after': diff_text(after)}


def render_restore(table_name, lines):
    """One iptables-restore --noflush transaction for one table; '' when no lines."""
    if not lines:
        return ''
    return '*%s\n%s\nCOMMIT\n' % (table_name, '\n'.join(lines))


# --- kernel I/O -------------------------------------------------------------

def save_table(module, family, table_name):
    """One iptables-save of one table; an absent table is an empty Table."""
    binary = module.get_bin_path(SAVE[family], required=True)
    rc, out, err = module.run_command([binary, '-t', table_name])
    if rc != 0:
        module.fail_json(msg='%s -t %s failed: %s' % (SAVE[family], table_name, err.strip()))
    return parse_save(out).get(table_name) or Table(table_name)


def restore(module, family, payload):
    """Apply one payload with iptables-restore --noflush -w (all-or-nothing per table)."""
    binary = module.get_bin_path(RESTORE[family], required=True)
    rc, _out, err = module.run_command([binary, '--noflush', '-w', '5'], data=payload, binary_data=True)
    if rc != 0:
        module.fail_json(msg='%s failed, nothing applied: %s' % (RESTORE[family], err.strip()), payload=payload)


def sync_table(module, family, table_name, plan):
    """Read one table of one family, let plan(table) -> restore lines decide the
    delta, and apply it as one transaction unless in check mode.

    Returns (table as read, payload); payload is '' when nothing differs.
    """
    table = save_table(module, family, table_name)
    payload = render_restore(table_name, plan(table))
    if payload and not module.check_mode:
        restore(module, family, payload)
    return table, payload
