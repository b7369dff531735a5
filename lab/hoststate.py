# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a lab container's kernel state and send real traffic, for `make lab` and the
Molecule verifiers alike. Every function takes a testinfra host (`podman://NAME`)
and reads the kernel inside that container with the stock tools; nothing here uses
the collection's own parsers, so a check never agrees with the code it checks by
construction.
"""

import ipaddress
import json
import re

import testinfra

PROBE = '/usr/local/lib/clusternet/whoami.py'  # lab/whoami.py, mounted by labnet.py
SAVE = {'ipv4': 'iptables-save', 'ipv6': 'ip6tables-save'}
NFT_TABLE = {'ipv4': 'ip clusternet', 'ipv6': 'ip6 clusternet'}  # the NAT backend nftables' table
COMMENT = re.compile(r' -m comment --comment ("[^"]*"|\S+)')


def box(name):
    """The testinfra host of a lab container."""
    return testinfra.get_host('podman://' + name)


def family(value):
    return 'ipv%d' % ipaddress.ip_network(value, strict=False).version


def ipsets(host):
    """{set name: {'type', 'family', 'members': set of entries}} from `ipset save`."""
    sets = {}
    for line in host.check_output('ipset save').splitlines():
        words = line.split()
        if words[:1] == ['create']:
            options = dict(zip(words[3::2], words[4::2]))
            sets[words[1]] = {'type': words[2], 'family': 'ipv6' if options.get('family') == 'inet6' else 'ipv4', 'members': set()}
        elif words[:1] == ['add']:
            sets[words[1]]['members'].add(words[2])
    return sets


def nat(host, fam):
    """{chain: [rule text after `-A CHAIN `]} of the nat table, in kernel order, without rules
    that do nothing to a packet (no target, only a comment: the mark that makes a chain ours)."""
    chains = {}
    for line in host.check_output('%s -t nat' % SAVE[fam]).splitlines():
        if line.startswith(':'):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith('-A '):
            parts = line[3:].partition(' ')
            if without_comments(' ' + parts[2]).strip():
                chains.setdefault(parts[0], []).append(parts[2])
    return chains


def nft(host, fam):
    """Our table of the NAT backend nftables, or None when the family has none:
    {'chains': {chain: {'hook', 'priority', 'rules': [rule text as `nft list` prints it]}},
    'sets': {set or map: set of elements, a map's as 'KEY : VALUE'}}. Hooks, priorities and
    elements come from `nft -j` (numbers, not nft's symbolic priorities), rules from `nft list`."""
    listed = host.run('nft -j list table %s' % NFT_TABLE[fam])
    if listed.rc != 0:
        return None
    table = {'chains': {}, 'sets': {}}
    for item in json.loads(listed.stdout)['nftables']:
        if 'chain' in item:
            chain = item['chain']
            table['chains'][chain['name']] = {'hook': chain.get('hook'), 'priority': chain.get('prio'), 'rules': []}
        for kind in ('set', 'map'):
            if kind in item:
                table['sets'][item[kind]['name']] = set(element(value) for value in item[kind].get('elem', []))
    chain = None
    for line in host.check_output('nft list table %s' % NFT_TABLE[fam]).splitlines():
        line = line.strip()
        if line.startswith('chain ') and line.endswith('{'):
            chain = table['chains'][line.split()[1]]
        elif line == '}':
            chain = None
        elif chain is not None and line and not line.startswith('type '):
            chain['rules'].append(line)
    return table


def element(value):
    """One element of `nft -j` as nft writes it: an address, ADDR/LEN, or a map's KEY : VALUE."""
    if isinstance(value, list):
        return ' : '.join(element(part) for part in value)
    if isinstance(value, dict) and 'prefix' in value:
        return '%s/%d' % (value['prefix']['addr'], value['prefix']['len'])
    return str(value)


def jumps(chains, parent, target):
    """The rules of parent that jump to target."""
    return [rule for rule in chains.get(parent, []) if rule.split()[-2:] == ['-j', target]]


def routes_to(host, address):
    """Every route, in every table, whose destination is exactly address (a /32 or /128)."""
    fam = family(address)
    out = host.check_output('ip -j -%s route show table all' % fam[-1])
    wanted = ipaddress.ip_network(address)
    return [route for route in json.loads(out or '[]')
            if route['dst'] != 'default' and ipaddress.ip_network(route['dst'], strict=False) == wanted]


def addresses(host, dev):
    """The global addresses on dev, or None when dev does not exist."""
    result = host.run('ip -j addr show dev %s' % dev)
    if result.rc != 0:
        return None
    return [info['local'] for link in json.loads(result.stdout) for info in link['addr_info'] if info.get('scope') == 'global']


def ask(host, address, port=8080):
    """Connect from host to address with lab/whoami.py: {'host', 'local', 'peer', 'source'} of the
    answering container, or {'error': ...} when nothing answered."""
    return json.loads(host.run('python3 %s ask %s %d' % (PROBE, address, port)).stdout or '{"error": "no output"}')


def without_comments(rule):
    """A rule's matches and target with its `-m comment` removed: what the kernel does with it."""
    return COMMENT.sub('', rule)
