"""The kernel state the property test plants, dumps and compares, inside the current
network namespace (the driver runs under `ip netns exec`).

Foreign state is everything planted here: ipsets in both families, nat chains and rules
with and without comments (quoted, unquoted-safe, prefixes of ours, and comments one character
away from ours), a filter rule, an interface `eth0` holding the node IPs with routes, and lo.
The ownership classes (issue 23) are planted too: routes to VIP addresses via eth0 in main,
in table 100 and in table local (the vip module must refuse that VIP: nothing changes), and,
in IPv4, foreign chains jumping to our default chains (JUMPS_TO_OURS): masquerade and fip keep
such a jump, and refuse to remove a chain it still jumps to. A dump is the text of the
tools named in the invariant; `foreign()` keeps from a dump only what the run may not
touch, decided from the run's parameters, never from what the module reports.
"""

import ctypes
import ipaddress
import os
import re
import shlex
import subprocess
import time

FOREIGN_IF = 'eth0'
NODE_IPS = ('192.0.2.11', '2001:db8:50::11')
# Local on eth0 too, but not node IPs: a VIP equal to one of these takes a host address.
OTHER_LOCAL = ('192.0.2.12', '2001:db8:50::12')

IPSETS = """\
create kube-router-pods hash:ip family inet hashsize 1024 maxelem 65536
add kube-router-pods 10.42.1.5
add kube-router-pods 10.42.2.7
create inet6:kube-router-pods hash:ip family inet6 hashsize 1024 maxelem 65536
add inet6:kube-router-pods 2001:db8:42:1::5
create istio-nets hash:net family inet hashsize 1024 maxelem 65536
add istio-nets 10.96.0.0/12
create istio6 hash:net family inet6 hashsize 1024 maxelem 65536
add istio6 2001:db8:96::/64
create svc-ports hash:ip,port family inet hashsize 1024 maxelem 65536
add svc-ports 10.43.0.10,tcp:53
"""
FOREIGN_SETS = frozenset(line.split()[1] for line in IPSETS.splitlines())

NAT = """\
*nat
:KUBE-POSTRTG - [0:0]
:KUBE-FIP - [0:0]
:CLUSTERNET-OLD - [0:0]
-A PREROUTING -d {dnat} -m comment --comment "foreign dnat" -j DNAT --to-destination {internal}
-A PREROUTING -j KUBE-FIP
-A PREROUTING -d {fip} -m comment --comment "clusternet fip  {fipx}" -j DNAT --to-destination {fipi}
-A OUTPUT -m comment --comment clusternet-fip -j KUBE-FIP
-A POSTROUTING -j KUBE-POSTRTG
-A POSTROUTING -s {snat} -m comment --comment foreign_snat-1 -j MASQUERADE
-A POSTROUTING -s {snat} -m comment --comment "clusternet masquerade" -j RETURN
-A POSTROUTING -m comment --comment clusternet -j CLUSTERNET-OLD
-A POSTROUTING -s {fipn} -m comment --comment "clusternet fip {fip}" -j SNAT --to-source {fipx}
-A POSTROUTING -s {snat} -m comment --comment "clusternet masq " -j RETURN
-A POSTROUTING -s {snat} -m comment --comment "Clusternet masq" -j RETURN
-A KUBE-POSTRTG -s {cluster} -m comment --comment "kube masq" -j MASQUERADE
-A KUBE-POSTRTG -d {cluster} -j RETURN
-A KUBE-FIP -d {dnat} -m comment --comment "clusternet fip" -j DNAT --to-destination {internal}
-A CLUSTERNET-OLD -s {cluster} -j RETURN
COMMIT
*filter
-A INPUT -s {snat} -m comment --comment "foreign filter" -j ACCEPT
COMMIT
"""
# IPv4 only: foreign chains jumping to our default chains, which exist as the modules left them
# (marked). A run that leaves a family without rules removes our chain there, and is refused
# while a foreign jump remains: planted in one family, the other keeps the removal paths reachable.
JUMPS_TO_OURS = """\
:CLUSTERNET-POSTRTG - [0:0]
:CLUSTERNET-FIP-DNAT - [0:0]
-A KUBE-POSTRTG -j CLUSTERNET-POSTRTG
-A KUBE-FIP -j CLUSTERNET-FIP-DNAT
-A CLUSTERNET-POSTRTG -m comment --comment "clusternet.node masquerade chain"
-A CLUSTERNET-FIP-DNAT -m comment --comment "clusternet.node fip chain"
COMMIT
"""
NAT_V4 = NAT.replace('COMMIT\n', JUMPS_TO_OURS, 1).format(
    dnat='203.0.113.5/32', internal='10.42.9.9', snat='10.8.0.0/16', cluster='10.244.0.0/16',
    fip='203.0.113.77/32', fipx='203.0.113.77', fipi='10.42.9.7', fipn='10.42.9.7/32')
NAT_V6 = NAT.format(dnat='2001:db8:113::5/128', internal='2001:db8:42:9::9', snat='2001:db8:8::/48',
                    cluster='2001:db8:244::/56', fip='2001:db8:113::77/128', fipx='2001:db8:113::77',
                    fipi='2001:db8:42:9::7', fipn='2001:db8:42:9::7/128')
FOREIGN_CHAINS = frozenset(['KUBE-POSTRTG', 'KUBE-FIP', 'CLUSTERNET-OLD'])
BUILTIN = frozenset(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'])

LINKS = """\
link set lo up
link add eth0 type ifb
addr add 192.0.2.11/24 dev eth0
addr add 192.0.2.12/32 dev eth0
addr add 2001:db8:50::11/64 dev eth0 nodad
addr add 2001:db8:50::12/128 dev eth0 nodad
link set eth0 up
route add 203.0.113.0/24 dev eth0
route add 2001:db8:99::/64 dev eth0
route add 10.42.1.6/32 dev eth0
route add 10.42.1.5/32 dev eth0 table 100
route add 2001:db8:42:1::5/128 dev eth0 table 100
route add 10.43.0.10/32 dev eth0 table local
route add 2001:db8:43::10/128 dev eth0 table local
"""
FOREIGN_LINKS = frozenset(['lo', FOREIGN_IF])

DUMPS = (
    ('ipset', ['ipset', 'save']),
    ('ipv4', ['iptables-save']),
    ('ipv6', ['ip6tables-save']),
    ('addr', ['ip', '-d', 'addr']),
    ('route4', ['ip', '-4', 'route', 'show', 'table', 'all']),
    ('route6', ['ip', '-6', 'route', 'show', 'table', 'all']),
)
COUNTERS = re.compile(r' \[\d+:\d+\]$')
TIMERS = re.compile(r'(_timer) +[\d.]+')  # a bridge's running timers in `ip -d addr`


def sh(argv, stdin=None):
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (' '.join(argv), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def plant():
    sh(['ip', '-batch', '-'], LINKS)
    sh(['ipset', 'restore'], IPSETS)
    sh(['iptables-restore', '-w'], NAT_V4)
    sh(['ip6tables-restore', '-w'], NAT_V6)


def normalize(name, text):
    lines = []
    for line in text.splitlines():
        if name in ('ipv4', 'ipv6'):
            if line.startswith('#'):
                continue
            line = COUNTERS.sub('', line)
        elif name == 'addr':
            line = TIMERS.sub(r'\1', line)
        lines.append(line)
    return lines


def dump():
    """Every dump of the invariant, run concurrently: {name: [lines]}. While an IPv6 address
    is tentative (DAD on a link that does it, e.g. a bridge) the kernel is still adding its
    link-local routes by itself: wait for that, so a dump shows what runs did, not when."""
    for _attempt in range(100):
        procs = [(name, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for name, argv in DUMPS]
        out = {}
        for name, proc in procs:
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError('%s failed: %s' % (name, stderr))
            out[name] = normalize(name, stdout)
        if not any(' tentative' in line for line in out['addr']):
            return out
        time.sleep(0.05)
    raise RuntimeError('IPv6 addresses stayed tentative: %s' % [line for line in out['addr'] if 'tentative' in line])


def _ipset_name(line):
    parts = line.split(None, 2)
    return parts[1] if len(parts) > 1 else None


def _comment(rule):
    try:
        tokens = shlex.split(rule)
    except ValueError:
        return None
    for i, token in enumerate(tokens[:-1]):
        if token == '--comment':
            return tokens[i + 1]
    return None


def _target(rule):
    tokens = rule.split()
    return tokens[tokens.index('-j') + 1] if '-j' in tokens and tokens.index('-j') + 1 < len(tokens) else None


def _iptables(lines, chains, is_ours):
    """Drop our chains (declarations and rules) and, in built-in chains, rules jumping to
    them or carrying our comment; every other line must stay, in order."""
    kept = []
    for line in lines:
        if line.startswith(':') and line[1:].split(' ', 1)[0] in chains:
            continue
        if line.startswith('-A '):
            chain, rule = (line[3:].split(' ', 1) + [''])[:2]
            if chain in chains:
                continue
            if chain in BUILTIN and (_target(rule) in chains or is_ours(_comment(rule))):
                continue
        kept.append(line)
    return kept


def _addr_blocks(lines, ours):
    kept, skipping = [], False
    for line in lines:
        match = re.match(r'^\d+: ([^:@]+)[@:]', line)
        if match:
            skipping = match.group(1) in ours
        if not skipping:
            kept.append(line)
    return kept


def fip_comment(comment):
    """Whether a rule's comment is one the fip module writes: its jump comment, or exactly
    "clusternet fip ADDRESS" in the address's canonical spelling (not "clusternet fip  ADDRESS",
    nor one with a prefix length: those are someone else's, planted above)."""
    if comment == 'clusternet fip':
        return True
    if not comment or not comment.startswith('clusternet fip '):
        return False
    try:
        return comment == 'clusternet fip ' + str(ipaddress.ip_address(comment[len('clusternet fip '):]))
    except ValueError:
        return False


def foreign(state, owned):
    """The part of a dump a run with these owned objects must leave byte-identical."""
    sets = set(owned.get('sets', ()))
    chains = set(owned.get('chains', ())) - FOREIGN_CHAINS - BUILTIN
    links = set(owned.get('links', ())) - FOREIGN_LINKS
    is_ours = owned.get('comment', lambda comment: False)
    out = dict(state)
    out['ipset'] = [line for line in state['ipset'] if _ipset_name(line) not in sets]
    for family in ('ipv4', 'ipv6'):
        out[family] = _iptables(state[family], chains, is_ours)
    out['addr'] = _addr_blocks(state['addr'], links)
    for key in ('route4', 'route6'):
        out[key] = [line for line in state[key] if not any((' dev %s ' % link) in line + ' ' for link in links)]
    return out


def first_difference(before, after):
    for name, _argv in DUMPS:
        if before[name] != after[name]:
            gone = [line for line in before[name] if line not in after[name]]
            new = [line for line in after[name] if line not in before[name]]
            return '%s: removed %r, added %r' % (name, gone[:6], new[:6]) if gone or new else '%s: order changed' % name
    return None


def reset(owned):
    """Cheap: remove what a run may have made; the caller checks the dump against the baseline.
    Foreign sets are emptied and refilled, not recreated: `ipset save` shows each set's random
    initval, so a recreated set is a changed one."""
    for link in set(owned.get('links', ())) - FOREIGN_LINKS:
        subprocess.run(['ip', 'link', 'del', 'dev', link], capture_output=True, check=False)
    if owned.get('chains'):
        sh(['iptables-restore', '-w', '-T', 'nat'], NAT_V4)
        sh(['ip6tables-restore', '-w', '-T', 'nat'], NAT_V6)
    if owned.get('sets'):
        names = [_ipset_name(line) for line in sh(['ipset', 'save']).splitlines() if line.startswith('create ')]
        payload = ['destroy %s' % name for name in names if name not in FOREIGN_SETS]
        for name in set(owned['sets']) & FOREIGN_SETS:
            payload.append('flush %s' % name)
            payload.extend(line for line in IPSETS.splitlines() if line.startswith('add %s ' % name))
        subprocess.run(['ipset', 'restore'], input=''.join(line + '\n' for line in payload),
                       capture_output=True, text=True, check=False)


CLONE_NEWNET = 0x40000000


def fresh_namespace(name):
    """Move this process into a new network namespace with the foreign state planted:
    the robust reset after a run left something the cheap one could not undo."""
    sh(['ip', 'netns', 'add', name])
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open('/run/netns/%s' % name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), 'setns %s' % name)
    finally:
        os.close(fd)
    plant()
