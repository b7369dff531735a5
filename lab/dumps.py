# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's host state as the stock tools print it, normalized so that two boots of
the same state compare equal: the dumps a reboot (or a wipe and restore) must keep.

What differs between two creations of the same state and is normalized, nothing else:
- `ipset save`: each set's random `initval` (and `bucketsize`), and the order of
  entries (a hash set prints them in hash order, which the initval changes);
- `iptables-save`: packet/byte counters and the `#` header and footer lines (our nft
  tables hold no counters: `nft list table` prints them as they are);
- local routes: the order the kernel lists them in (it follows the order their links
  were created in, which a boot changes), so they are sorted;
- links: the interface index, the MAC address (random for dummy/ifb/veth) and the
  IPv6 link-local address the kernel derives from it (EUI-64), shown as
  `fe80::eui64(IFNAME)`.
"""

import difflib
import json
import re

# name -> command, run on the node
COMMANDS = (
    ('ipset', 'ipset save'),
    ('nat ipv4', 'iptables-save -t nat'),
    ('nat ipv6', 'ip6tables-save -t nat'),
    # the NAT backend nftables' tables; none (empty) on the iptables backend
    ('nft ipv4', 'nft list table ip clusternet 2>/dev/null'),
    ('nft ipv6', 'nft list table ip6 clusternet 2>/dev/null'),
    ('kube-dummy-if', 'ip -d addr show kube-dummy-if'),
    ('local ipv4', 'ip -4 route show table local'),
    ('local ipv6', 'ip -6 route show table local'),
)
LINKS = 'ip -j link show'
COUNTERS = re.compile(r'\[\d+:\d+\]')
SET_RANDOM = re.compile(r' (initval 0x[0-9a-f]+|bucketsize \d+)')
IFINDEX = re.compile(r'^\d+: ', re.M)
MAC = re.compile(r'link/ether [0-9a-f:]{17}')


def eui64(mac):
    """The link-local address the kernel gives a link with this MAC."""
    octets = [int(part, 16) for part in mac.split(':')]
    octets[0] ^= 0x02
    words = octets[:3] + [0xff, 0xfe] + octets[3:]
    groups = ['%x' % (words[i] << 8 | words[i + 1]) for i in range(0, 8, 2)]
    return 'fe80::' + ':'.join(groups)


def link_locals(links_json):
    """{EUI-64 link-local address: placeholder naming its link} for every link with a MAC."""
    found = {}
    for link in json.loads(links_json or '[]'):
        mac = link.get('address')
        if link.get('link_type') == 'ether' and mac and mac != '00:00:00:00:00:00':
            found[eui64(mac)] = 'fe80::eui64(%s)' % link['ifname']
    return found


def normalize(name, text, locals_=None):
    if name == 'ipset':
        return '\n'.join(sorted(SET_RANDOM.sub('', line) for line in text.splitlines()))
    if name.startswith('nat'):
        return '\n'.join(COUNTERS.sub('[0:0]', line) for line in text.splitlines() if not line.startswith('#'))
    text = IFINDEX.sub('N: ', MAC.sub('link/ether MAC', text))
    for address, placeholder in sorted((locals_ or {}).items()):
        text = re.sub(r'\b%s\b' % re.escape(address), placeholder, text)
    if name.startswith('local'):
        return '\n'.join(sorted(text.splitlines()))
    return text.strip()


def collect(run):
    """{dump name: normalized text}; run(command) returns the command's stdout on the node."""
    locals_ = link_locals(run(LINKS))
    return dict((name, normalize(name, run(command), locals_)) for name, command in COMMANDS)


def differences(before, after):
    """A readable line diff per dump that differs; empty when equal."""
    out = []
    for name, _command in COMMANDS:
        if before.get(name) != after.get(name):
            out.append('--- %s\n%s' % (name, '\n'.join(difflib.unified_diff(
                (before.get(name) or '').splitlines(), (after.get(name) or '').splitlines(), 'before', 'after', lineterm=''))))
    return '\n'.join(out)
