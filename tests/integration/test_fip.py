"""clusternet.node.fip against a real kernel: an outside, a gateway and an internal
namespace joined by veth pairs, real TCP traffic through the FIPs, conntrack read
back with `conntrack -L` inside the gateway."""

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

EXT4, EXT4B = '198.51.100.10', '198.51.100.11'
EXT6, EXT6B = '2001:db8:ff::10', '2001:db8:ff::11'
INT4, INT4B = '10.0.0.5', '10.0.0.6'
INT6, INT6B = 'fd00:10::5', 'fd00:10::6'
OUT4, OUT6 = '203.0.113.2', '2001:db8:1::2'
GW4, GW6 = '203.0.113.1', '2001:db8:1::1'
PORT = 8080
FIPS = [{'external_ip': EXT4, 'internal_ip': INT4}, {'external_ip': EXT6, 'internal_ip': INT6}]
FIPS_B = [{'external_ip': EXT4B, 'internal_ip': INT4B}, {'external_ip': EXT6B, 'internal_ip': INT6B}]

# Answers every connection with "LOCAL PEER" as the server saw them, then closes
# first, so each connection leaves a TIME_WAIT conntrack entry (120 s) behind.
SERVER = r'''
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[1])))
s.listen(16)
print('ready', flush=True)
while True:
    c, peer = s.accept()
    c.sendall(('%s %s' % (c.getsockname()[0], peer[0])).replace('::ffff:', '').encode())
    c.close()
'''
CLIENT = r'''
import socket, sys
addr, port, source, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
c = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_STREAM)
c.settimeout(timeout)
if source:
    c.bind((source, 0))
c.connect((addr, port))
print(c.recv(200).decode())
'''
FLOW_RE = re.compile(r'src=(\S+) dst=(\S+) .*?src=(\S+) dst=(\S+)')


class Site(object):
    """outside --veth-- gateway --veth-- internal, dual-stack, the gateway forwarding.
    FIPs live in 198.51.100.0/24 and 2001:db8:ff::/64, routed by the outside to the gateway."""

    def __init__(self, make, tmp):
        self.outside, self.gateway, self.internal = make(), make(), make()
        for ns in (self.outside, self.gateway, self.internal):
            ns.run('sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0')
        g, o, i = self.gateway, self.outside, self.internal
        g.run('ip link add eo type veth peer name oe netns %s && ip link add ei type veth peer name ie netns %s' % (o.name, i.name))
        g.run('sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1'
              ' && ip addr add %s/24 dev eo && ip addr add %s/64 dev eo nodad'
              ' && ip addr add 10.0.0.1/24 dev ei && ip addr add fd00:10::1/64 dev ei nodad'
              ' && ip link set eo up && ip link set ei up'
              ' && ip route add default via %s && ip -6 route add default via %s' % (GW4, GW6, OUT4, OUT6))
        o.run('ip addr add %s/24 dev oe && ip addr add %s/64 dev oe nodad && ip link set oe up'
              ' && ip route add 198.51.100.0/24 via %s && ip -6 route add 2001:db8:ff::/64 via %s' % (OUT4, OUT6, GW4, GW6))
        i.run('ip addr add %s/24 dev ie && ip addr add %s/24 dev ie && ip addr add %s/64 dev ie nodad && ip addr add %s/64 dev ie nodad'
              ' && ip link set ie up && ip route add default via 10.0.0.1 && ip -6 route add default via fd00:10::1' % (INT4, INT4B, INT6, INT6B))
        self.scripts = {}
        for name, text in (('server', SERVER), ('client', CLIENT)):
            self.scripts[name] = str(tmp / (name + '.py'))
            with open(self.scripts[name], 'w') as handle:
                handle.write(text)
        self.servers = []

    def serve(self, ns):
        proc = ns.popen('exec %s %s %d' % (sys.executable, self.scripts['server'], PORT), stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == 'ready'
        self.servers.append(proc)

    def connect(self, ns, addr, source='', timeout=3):
        """(local, peer) as the server saw the connection, or None when it failed."""
        proc = ns.run('%s %s %s %d "%s" %s' % (sys.executable, self.scripts['client'], addr, PORT, source, timeout), check=False)
        return tuple(proc.stdout.split()) if proc.returncode == 0 else None

    def stop(self):
        for proc in self.servers:
            proc.kill()
            proc.wait()


@pytest.fixture
def site(netns_factory, tmp_path):
    made = Site(netns_factory, tmp_path)
    yield made
    made.stop()


def flows(ns):
    """(orig src, orig dst, reply src, reply dst) of every conntrack entry, both families."""
    out = ns.run('conntrack -L -f ipv4; conntrack -L -f ipv6', check=False).stdout
    return [match.groups() for match in map(FLOW_RE.search, out.splitlines()) if match]


def nat_rules(ns):
    """Every rule line of both nat tables."""
    return [line for line in ns.out('iptables-save -t nat; ip6tables-save -t nat').splitlines() if line.startswith('-A ')]


def rules_of(ns, external):
    return [line for line in nat_rules(ns) if '"clusternet fip %s"' % external in line]


def complete(ns, external, internal, prefix):
    """The FIP's exact two rules, nothing more."""
    return sorted(rules_of(ns, external)) == sorted([
        '-A CLUSTERNET-FIP-DNAT -d %s/%d -m comment --comment "clusternet fip %s" -j DNAT --to-destination %s' % (external, prefix, external, internal),
        '-A CLUSTERNET-FIP-SNAT -s %s/%d -m comment --comment "clusternet fip %s" -j SNAT --to-source %s' % (internal, prefix, external, external),
    ])


@pytest.fixture
def restores(tmp_path, monkeypatch):
    """Put logging (ip6)iptables-restore wrappers first on PATH; returns a function listing the payloads per binary.
    mode 'half' for iptables-restore feeds the real binary the first half of its input, then kills the module."""
    shims = tmp_path / 'shims'
    shims.mkdir()
    # Resolved once, before the shims are on PATH: a shim must never find itself.
    reals = dict((name, shutil.which(name)) for name in ('iptables-restore', 'ip6tables-restore'))
    assert all(real and not real.startswith(str(shims)) for real in reals.values())
    path = os.environ['PATH']

    def install(half=False):
        for name, real in reals.items():
            feed = 'head -n $(( $(wc -l < "$log") / 2 )) "$log"' if half and name == 'iptables-restore' else 'cat "$log"'
            tail = 'kill -9 $PPID; exit 137' if half and name == 'iptables-restore' else ''
            shim = shims / name
            shim.write_text('#!/bin/sh\nlog=%s/%s.$(date +%%s%%N)\ncat > "$log"\n%s | %s "$@"\nrc=$?\n%s\nexit $rc\n' % (shims, name, feed, real, tail))
            shim.chmod(0o755)
        monkeypatch.setenv('PATH', '%s:%s' % (shims, path))

    def payloads(name):
        return [(shims / entry).read_text() for entry in sorted(os.listdir(str(shims))) if entry.startswith(name + '.')]

    payloads.install = install
    return payloads


def test_real_traffic_dual_stack(site):
    site.serve(site.internal)
    site.serve(site.outside)
    assert site.connect(site.outside, EXT4, timeout=1) is None, 'no FIP yet: the outside must not reach the internal host'

    result = site.gateway.module('fip', {'floating_ips': FIPS})
    assert result['changed']
    for ext, internal, outside in ((EXT4, INT4, OUT4), (EXT6, INT6, OUT6)):
        assert site.connect(site.outside, ext) == (internal, outside), 'outside -> FIP reaches the internal host'
        assert site.connect(site.internal, outside, source=internal) == (outside, ext), 'outbound traffic leaves with the FIP as source'
        seen = site.connect(site.gateway, ext)
        assert seen and seen[0] == internal, 'the gateway itself reaches the FIP (OUTPUT DNAT)'


def test_remove_by_external_ip_flushes_both_directions_only(site, python):
    g = site.gateway
    g.module('fip', {'floating_ips': FIPS + FIPS_B}, python=python)
    site.serve(site.internal)
    site.serve(site.outside)
    for ext, internal, outside in ((EXT4, INT4, OUT4), (EXT6, INT6, OUT6), (EXT4B, INT4B, OUT4), (EXT6B, INT6B, OUT6)):
        assert site.connect(site.outside, ext) == (internal, outside)
        assert site.connect(site.internal, outside, source=internal) == (outside, ext)
        assert site.connect(site.gateway, ext)[0] == internal
    g.run('conntrack -I -p tcp -s 192.0.2.7 -d 192.0.2.8 --sport 1000 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300'
          ' && conntrack -I -p tcp -s 2001:db8:9::7 -d 2001:db8:9::8 --sport 1000 --dport 80 --state ESTABLISHED -u SEEN_REPLY -t 300')
    # Protocols whose tuple pyroute2 does not read whole: the kernel refuses a delete without their ports/keys.
    g.run('conntrack -I -p gre -s %s -d %s --srckey 1 --dstkey 2 -t 300'
          ' && conntrack -I -p sctp -s %s -d %s --sport 5 --dport 6 --state ESTABLISHED --orig-vtag 1 --reply-vtag 2 -t 300'
          ' && conntrack -I -p udplite -s %s -d %s --sport 7 --dport 8 -t 300' % (OUT4, EXT4, OUT4, EXT4, OUT6, EXT6))
    before = flows(g)

    def doomed(flow):
        return flow[1] in (EXT4, EXT6) or flow[0] in (INT4, INT6)

    gone = [flow for flow in before if doomed(flow)]
    # Both directions, both families, all three paths (outside in, internal out, gateway in), plus the inserted ones.
    assert {(flow[0] in (INT4, INT6), ':' in flow[0]) for flow in gone} == {(True, False), (True, True), (False, False), (False, True)}
    assert len(gone) == 9

    absent = {'floating_ips': [{'external_ip': EXT4}, {'external_ip': EXT6}], 'state': 'absent'}
    check = g.module('fip', absent, check=True, python=python)
    assert check['ipv4']['conntrack_flushed'] + check['ipv6']['conntrack_flushed'] == 9
    assert sorted(flows(g)) == sorted(before) and rules_of(g, EXT4)

    result = g.module('fip', absent, python=python)
    assert result['ipv4']['removed'] == [{'external_ip': EXT4, 'internal_ip': INT4}]
    assert result['ipv6']['removed'] == [{'external_ip': EXT6, 'internal_ip': INT6}]
    assert rules_of(g, EXT4) == [] and rules_of(g, EXT6) == []
    assert complete(g, EXT4B, INT4B, 32) and complete(g, EXT6B, INT6B, 128)
    after = flows(g)
    assert [flow for flow in after if doomed(flow)] == []
    assert sorted(after) == sorted(flow for flow in before if not doomed(flow)), 'unrelated entries stay'
    assert result['ipv4']['conntrack_flushed'] == 5 and result['ipv6']['conntrack_flushed'] == 4
    assert site.connect(site.outside, EXT4B) == (INT4B, OUT4), 'the other FIP still works'
    assert g.module('fip', absent, python=python)['changed'] is False


def test_remap_replaces_rules_in_one_transaction_and_flushes_old_mapping(site, restores):
    g = site.gateway
    g.module('fip', {'floating_ips': FIPS})
    site.serve(site.internal)
    for ext, internal in ((EXT4, INT4), (EXT6, INT6)):
        assert site.connect(site.outside, ext) == (internal, OUT4 if ':' not in ext else OUT6)
    assert [flow for flow in flows(g) if flow[2] in (INT4, INT6)], 'old mapping has conntrack entries'

    restores.install()
    remapped = [{'external_ip': EXT4, 'internal_ip': INT4B}, {'external_ip': EXT6, 'internal_ip': INT6B}]
    result = g.module('fip', {'floating_ips': remapped})
    assert result['ipv4']['changed'] == [{'external_ip': EXT4, 'internal_ip': INT4B, 'previous_internal_ip': INT4}]
    for name in ('iptables-restore', 'ip6tables-restore'):
        payloads = restores(name)
        assert len(payloads) == 1 and payloads[0].count('COMMIT') == 1
        assert 'DNAT --to-destination' in payloads[0] and 'SNAT --to-source' in payloads[0]
    assert complete(g, EXT4, INT4B, 32) and complete(g, EXT6, INT6B, 128)
    assert [flow for flow in flows(g) if flow[2] in (INT4, INT6) or flow[0] in (INT4, INT6)] == []
    assert result['ipv4']['conntrack_flushed'] >= 1 and result['ipv6']['conntrack_flushed'] >= 1
    for ext, internal in ((EXT4, INT4B), (EXT6, INT6B)):
        assert site.connect(site.outside, ext)[0] == internal


def test_killed_mid_transaction_leaves_no_half_fip(netns, restores):
    netns.module('fip', {'floating_ips': FIPS})
    before = nat_rules(netns)
    restores.install(half=True)
    # Swap the IPv4 internal IPs, add a second IPv6 FIP.
    wanted = [{'external_ip': EXT4, 'internal_ip': INT4B}, {'external_ip': EXT4B, 'internal_ip': INT4}, FIPS[1], FIPS_B[1]]
    netns.module('fip', {'floating_ips': wanted}, expect_failure=True)
    sent = restores('iptables-restore')
    assert len(sent) == 1 and INT4B in sent[0], 'the whole IPv4 change went to one restore'
    assert nat_rules(netns) == before, 'a killed transaction applies nothing'
    assert restores('ip6tables-restore') == [], 'the run died before the IPv6 restore'

    restores.install()
    netns.module('fip', {'floating_ips': wanted})
    assert complete(netns, EXT4, INT4B, 32) and complete(netns, EXT4B, INT4, 32)
    assert complete(netns, EXT6, INT6, 128) and complete(netns, EXT6B, INT6B, 128)


def test_racing_create_delete_leaves_nothing(netns):
    netns.module('fip', {'floating_ips': FIPS_B})
    runs = [{'floating_ips': FIPS, 'exclusive': False} if n % 2 == 0 else
            {'floating_ips': [{'external_ip': EXT4}, {'external_ip': EXT6}], 'state': 'absent'} for n in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda args: netns.module('fip', args), runs))
    assert all(not result.get('failed') for result in results)
    netns.module('fip', {'floating_ips': [{'external_ip': EXT4}, {'external_ip': EXT6}], 'state': 'absent'})
    assert rules_of(netns, EXT4) == [] and rules_of(netns, EXT6) == []
    assert complete(netns, EXT4B, INT4B, 32) and complete(netns, EXT6B, INT6B, 128)


INVALID = [
    ([{'external_ip': EXT4, 'internal_ip': INT6}], INT6),
    ([{'external_ip': EXT4, 'internal_ip': INT4}, {'external_ip': EXT4, 'internal_ip': INT4B}], EXT4),
    ([{'external_ip': EXT4, 'internal_ip': INT4}, {'external_ip': EXT4B, 'internal_ip': INT4}], INT4),
    ([{'external_ip': '198.51.100.256', 'internal_ip': INT4}], '198.51.100.256'),
    ([{'external_ip': EXT6, 'internal_ip': 'fd00::10::5'}], 'fd00::10::5'),
]


def test_invalid_input_fails_naming_value_and_changes_nothing(netns):
    netns.module('fip', {'floating_ips': FIPS_B})
    before = nat_rules(netns)
    for fips, named in INVALID:
        result = netns.module('fip', {'floating_ips': fips}, expect_failure=True)
        assert named in result['msg']
        assert nat_rules(netns) == before


def test_foreign_rules_idempotence_check_mode_exclusive_and_diff(netns):
    netns.run('iptables -t nat -A PREROUTING -d 192.0.2.1 -j DNAT --to-destination 10.9.9.9'
              ' && iptables -t nat -A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE'
              ' && iptables -t nat -N OTHER && iptables -t nat -A OTHER -m comment --comment "clusternet fipx" -j RETURN'
              ' && ip6tables -t nat -A OUTPUT -d 2001:db8:9::1 -j DNAT --to-destination fd00:9::9')
    foreign = nat_rules(netns)

    check = netns.module('fip', {'floating_ips': FIPS}, check=True, diff=True)
    assert check['changed'] and nat_rules(netns) == foreign
    assert isinstance(check['diff']['before'], str) and 'clusternet fip %s' % EXT6 in check['diff']['after']

    first = netns.module('fip', {'floating_ips': FIPS})
    assert first['changed'] and complete(netns, EXT4, INT4, 32) and complete(netns, EXT6, INT6, 128)
    assert netns.module('fip', {'floating_ips': list(reversed(FIPS))})['changed'] is False

    netns.module('fip', {'floating_ips': FIPS_B, 'exclusive': False})
    assert all(complete(netns, *args) for args in ((EXT4, INT4, 32), (EXT6, INT6, 128), (EXT4B, INT4B, 32), (EXT6B, INT6B, 128)))
    result = netns.module('fip', {'floating_ips': FIPS_B})
    assert [fip['external_ip'] for fip in result['ipv4']['removed'] + result['ipv6']['removed']] == [EXT4, EXT6]
    assert rules_of(netns, EXT4) == [] and complete(netns, EXT4B, INT4B, 32)

    netns.module('fip', {'floating_ips': []})
    assert nat_rules(netns) == foreign, 'no FIP left: chains and jumps gone, foreign rules exactly as before'


def test_without_pyroute2_create_works_and_removal_fails_before_writing(netns, tmp_path, monkeypatch):
    fake = tmp_path / 'nolib' / 'pyroute2'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text('raise ImportError("pyroute2 hidden by the test")\n')
    monkeypatch.setenv('PYTHONPATH', str(fake.parent))
    netns.module('fip', {'floating_ips': FIPS})
    assert complete(netns, EXT4, INT4, 32), 'nothing to flush: pyroute2 is not needed'
    result = netns.module('fip', {'floating_ips': FIPS_B}, expect_failure=True)
    assert 'pyroute2' in result['msg']
    assert complete(netns, EXT4, INT4, 32) and rules_of(netns, EXT4B) == [], 'failed before any write'
    netns.module('fip', {'floating_ips': FIPS_B, 'flush_conntrack': False})
    assert rules_of(netns, EXT4) == [] and complete(netns, EXT4B, INT4B, 32)


@pytest.mark.parametrize('setup, fips, named', [
    # The gateway's own address (its SSH address, say): OUTPUT's DNAT would take the host's traffic to it.
    ('ip addr add %s/24 dev eth0' % EXT4, FIPS, 'floating IP %s is already an address of eth0 on this gateway' % EXT4),
    ('ip addr add %s/128 dev lo' % EXT6, FIPS, 'floating IP %s is already an address of lo on this gateway' % EXT6),
    ('true', [{'external_ip': EXT4, 'internal_ip': EXT4}], 'floating IP %s: internal_ip is the external IP itself' % EXT4),
], ids=['held-on-eth0', 'held-on-lo', 'internal-is-external'])
def test_an_external_ip_the_gateway_holds_or_maps_to_itself_is_refused(netns, setup, fips, named):
    netns.run('ip link add eth0 type veth peer name eth0p && ip link set eth0 up && ip link set lo up && ' + setup)
    netns.module('fip', {'floating_ips': FIPS_B})
    before = nat_rules(netns), netns.out('conntrack -L 2>/dev/null; ip addr')
    result = netns.module('fip', {'floating_ips': FIPS_B + fips}, expect_failure=True)
    assert named in result['msg'], result['msg']
    assert (nat_rules(netns), netns.out('conntrack -L 2>/dev/null; ip addr')) == before
