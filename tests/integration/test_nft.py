"""The nftables kernel object (module_utils/nft.py) against a real kernel, inside network
namespaces: transactions load and read back equal, reapply as no-ops, remove everything,
leave kube-proxy's and iptables-nft's tables byte-identical, and NAT real traffic in both
families in the order the module docstring promises."""

import ipaddress
import subprocess
import sys

import pytest
from harness import link_collection

sys.path.insert(0, link_collection())

from ansible_collections.clusternet.node.plugins.module_utils import nft  # noqa: E402

N, A = ipaddress.ip_network, ipaddress.ip_address
EXT4, INT4, PLAIN4 = '198.51.100.10', '10.0.0.5', '10.0.0.7'
EXT6, INT6, PLAIN6 = '2001:db8:ff::10', 'fd00:10::5', 'fd00:10::7'
OUT4, OUT6 = '203.0.113.2', '2001:db8:1::2'
GW4, GW6 = '203.0.113.1', '2001:db8:1::1'
VIP4, VIP6 = '172.30.0.10', 'fd00:30::10'
PORT = 8080
CONTENT = {
    'ipv4': ({'cluster_cidrs': [N('10.0.0.0/16')], 'pod_cidrs': [N('10.0.0.0/24')], 'skip_mark': (0x4000, 0x4000), 'random_fully': True},
             {A(EXT4): A(INT4)}),
    'ipv6': ({'cluster_cidrs': [N('fd00:10::/56')], 'pod_cidrs': [N('fd00:10::/64')], 'skip_mark': (0x4000, 0x4000), 'random_fully': True},
             {A(EXT6): A(INT6)}),
}
NFT = {'ipv4': 'ip', 'ipv6': 'ip6'}

# kube-proxy's nftables mode, reduced to the shape that matters here (pkg/proxy/nftables/proxier.go):
# a service DNAT that marks for masquerade, and the mark-0x4000 masquerade at srcnat.
KUBE_PROXY = '''
table {fam} kube-proxy {{
    comment "rules for kube-proxy"
    chain mark-for-masquerade {{ meta mark set meta mark | 0x00004000; }}
    chain masquerading {{
        meta mark & 0x00004000 == 0x00000000 return
        meta mark set meta mark ^ 0x00004000
        masquerade fully-random
    }}
    chain svc {{ jump mark-for-masquerade; meta l4proto tcp dnat to {backend}; }}
    chain services {{ {fam} daddr {vip} tcp dport {port} jump svc; }}
    chain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}
    chain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}
    chain nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; jump masquerading; }}
}}
'''


def kernel(ns):
    def run(args, data=None):
        proc = subprocess.run(['ip', 'netns', 'exec', ns.name] + args, input=data, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    return nft.NftKernel(run)


def apply(ns, family, masquerade=None, fips=None):
    kernel(ns).apply(nft.table_transaction(family, masquerade, fips))


def read(ns, family):
    return nft.parse_table(family, kernel(ns).read(family))


def listing(ns, family):
    return ns.out('nft list table %s clusternet' % NFT[family])


def plant_foreign(ns):
    """kube-proxy's tables in both families and iptables-nft's `ip nat`, as those tools leave them."""
    ns.run('nft -f -', input=KUBE_PROXY.format(fam='ip', vip=VIP4, port=PORT, backend='%s:%d' % (OUT4, PORT))
           + KUBE_PROXY.format(fam='ip6', vip=VIP6, port=PORT, backend='[%s]:%d' % (OUT6, PORT)))
    ns.run('iptables -t nat -A POSTROUTING -s 192.0.2.0/24 -m comment --comment "someone else" -j MASQUERADE'
           ' && iptables -t nat -N OTHER && iptables -t nat -A PREROUTING -j OTHER')


def foreign(ns):
    """The foreign tables, byte for byte, handles included (a recreated table gets new handles), counters left out."""
    return dict((table, ns.out('nft -a -s list table %s' % table)) for table in ('ip kube-proxy', 'ip6 kube-proxy', 'ip nat'))


def test_preflight_accepts_this_hosts_nft(netns):
    assert kernel(netns).preflight() >= nft.MIN_VERSION


@pytest.mark.parametrize('family', ['ipv4', 'ipv6'])
def test_loads_reads_back_equal_and_reapplies_as_no_op(netns, family):
    masquerade, fips = CONTENT[family]
    assert read(netns, family).present is False
    apply(netns, family, masquerade, fips)
    table = read(netns, family)
    assert table.drift == []
    assert table.masquerade == masquerade and table.fips == fips
    before = listing(netns, family)
    apply(netns, family, masquerade, fips)
    assert listing(netns, family) == before
    assert read(netns, family).drift == []


def test_ipv4_compatible_ipv6_cidrs_read_back_without_drift(netns):
    """nft prints ::1.2.3.0 dotted (inet_ntop), Python's str() as ::102:300: compared as nft prints them."""
    masquerade = dict(CONTENT['ipv6'][0], cluster_cidrs=[N('::1.2.3.0/120'), N('fd00:10::/56')], pod_cidrs=[N('::1.2.3.4/128')])
    apply(netns, 'ipv6', masquerade)
    assert '::1.2.3.0/120' in listing(netns, 'ipv6')
    table = read(netns, 'ipv6')
    assert table.drift == [] and table.masquerade == masquerade


def test_five_thousand_fips_per_family_load_and_read_back_equal(netns):
    for family, ext, intl in (('ipv4', '198.18.0.1', '10.64.0.1'), ('ipv6', '2001:db8:ff::1', 'fd00:64::1')):
        fips = dict((A(ext) + i, A(intl) + i) for i in range(5000))
        apply(netns, family, CONTENT[family][0], fips)
        table = read(netns, family)
        assert table.drift == [] and table.fips == fips


def test_tampering_is_seen_and_the_next_transaction_repairs_it(netns):
    masquerade, fips = CONTENT['ipv4']
    apply(netns, 'ipv4', masquerade, fips)
    clean = listing(netns, 'ipv4')
    netns.run('nft insert rule ip clusternet masq-postrouting ip saddr 10.0.0.9 accept'
              ' && nft add set ip clusternet extra { type ipv4_addr\\; }'
              ' && nft add element ip clusternet fip-dnat { 198.51.100.99 : 10.0.0.99 }')
    table = read(netns, 'ipv4')
    assert table.drift == ['map fip-snat differs', 'rule masq-postrouting differs', 'unexpected set extra']
    assert A('198.51.100.99') in table.fips, 'a planted dnat element reads as a FIP'
    apply(netns, 'ipv4', masquerade, fips)
    assert listing(netns, 'ipv4') == clean
    assert read(netns, 'ipv4').drift == []


def test_removal_leaves_nothing_and_removing_nothing_succeeds(netns):
    for family in ('ipv4', 'ipv6'):
        apply(netns, family)
    assert netns.out('nft list ruleset') == ''
    for family in ('ipv4', 'ipv6'):
        apply(netns, family, *CONTENT[family])
    for family in ('ipv4', 'ipv6'):
        apply(netns, family)
        assert read(netns, family).present is False
    assert netns.out('nft list ruleset') == ''


def test_foreign_tables_stay_byte_identical(netns):
    plant_foreign(netns)
    before = foreign(netns)
    assert 'masquerading' in before['ip kube-proxy'] and 'jump OTHER' in before['ip nat']
    for family in ('ipv4', 'ipv6'):
        apply(netns, family, *CONTENT[family])
        apply(netns, family, CONTENT[family][0], None)
        apply(netns, family)
    assert foreign(netns) == before


def test_bad_value_is_refused_before_nft_runs(netns):
    calls = []
    real = kernel(netns)

    def run(args, data=None):
        calls.append(args)
        return real.run(args, data)

    with pytest.raises(ValueError, match='fd00:10::5 is not an ipv4 value'):
        nft.NftKernel(run).apply(nft.table_transaction('ipv4', None, {A(EXT4): A(INT6)}))
    assert calls == [] and netns.out('nft list ruleset') == ''


def test_a_transaction_the_kernel_refuses_changes_nothing_and_names_the_line(netns):
    apply(netns, 'ipv4', *CONTENT['ipv4'])
    before = netns.out('nft -a list ruleset')
    tx = nft.Transaction('ipv4')
    tx.replace_table()
    tx.add_table()
    snat = tx.add_set('to-source', is_map=True)
    tx.add_chain('pre', 'prerouting', -90)
    tx.add_rule('pre', nft.NatMap('snat', 'saddr', snat))  # valid text; the kernel has no snat before routing
    with pytest.raises(nft.NftError) as err:
        kernel(netns).apply(tx)
    assert 'nothing applied), at rule in pre: add rule ip clusternet pre snat to ip saddr map @to-source' in str(err.value)
    assert netns.out('nft -a list ruleset') == before


# --- real traffic: outside --veth-- gateway --veth-- internal, dual-stack ---

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
addr, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_STREAM)
c.settimeout(2)
if source:
    c.bind((source, 0))
c.connect((addr, port))
print(c.recv(200).decode())
'''


@pytest.fixture
def site(netns_factory, tmp_path):
    """The outside routes the FIP ranges to the gateway but has no route to the internal
    networks: internal hosts reach it only through our SNAT or masquerade."""
    outside, gateway, internal = netns_factory(), netns_factory(), netns_factory()
    for ns in (outside, gateway, internal):
        ns.run('sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0')
    gateway.run('ip link add eo type veth peer name oe netns %s && ip link add ei type veth peer name ie netns %s' % (outside.name, internal.name))
    gateway.run('sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1'
                ' && ip addr add %s/24 dev eo && ip addr add %s/64 dev eo nodad'
                ' && ip addr add 10.0.0.1/24 dev ei && ip addr add fd00:10::1/64 dev ei nodad'
                ' && ip link set eo up && ip link set ei up'
                ' && ip route add default via %s && ip -6 route add default via %s' % (GW4, GW6, OUT4, OUT6))
    outside.run('ip addr add %s/24 dev oe && ip addr add %s/64 dev oe nodad && ip link set oe up'
                ' && ip route add 198.51.100.0/24 via %s && ip -6 route add 2001:db8:ff::/64 via %s' % (OUT4, OUT6, GW4, GW6))
    internal.run('ip addr add %s/24 dev ie && ip addr add %s/24 dev ie && ip addr add %s/64 dev ie nodad && ip addr add %s/64 dev ie nodad'
                 ' && ip link set ie up && ip route add default via 10.0.0.1 && ip -6 route add default via fd00:10::1'
                 % (INT4, PLAIN4, INT6, PLAIN6))
    for name, text in (('server', SERVER), ('client', CLIENT)):
        (tmp_path / (name + '.py')).write_text(text)
    servers = []
    for ns in (outside, internal):
        proc = ns.popen('exec %s %s %d' % (sys.executable, tmp_path / 'server.py', PORT), stdout=subprocess.PIPE, text=True)
        servers.append(proc)
        assert proc.stdout.readline().strip() == 'ready'

    def connect(ns, addr, source=''):
        """(local, peer) as the server saw the connection, or None when it failed."""
        proc = ns.run('%s %s %s %d "%s"' % (sys.executable, tmp_path / 'client.py', addr, PORT, source), check=False)
        return tuple(proc.stdout.split()) if proc.returncode == 0 else None

    yield outside, gateway, internal, connect
    for proc in servers:
        proc.kill()
        proc.wait()


def test_real_traffic_through_masquerade_and_fip_beside_kube_proxy(site):
    outside, gateway, internal, connect = site
    assert connect(internal, OUT4, PLAIN4) is None, 'no NAT yet: the outside has no way back'
    plant_foreign(gateway)
    foreign_before = foreign(gateway)
    for family in ('ipv4', 'ipv6'):
        apply(gateway, family, *CONTENT[family])
    for out, gw, ext, fip_internal, plain, vip in ((OUT4, GW4, EXT4, INT4, PLAIN4, VIP4), (OUT6, GW6, EXT6, INT6, PLAIN6, VIP6)):
        assert connect(internal, out, plain) == (out, gw), 'a pod without a FIP leaves with the node address (masquerade)'
        assert connect(internal, out, fip_internal) == (out, ext), 'a FIP pod leaves with its FIP: FIP snat (105) before masquerade (110)'
        assert connect(outside, ext) == (fip_internal, out), 'outside -> FIP reaches the internal host (prerouting dnat)'
        assert connect(gateway, ext)[0] == fip_internal, 'the gateway itself reaches the FIP (output dnat)'
        # kube-proxy DNATs its service to the outside and marks 0x4000: its masquerade (100) runs
        # before our FIP snat (105), so the outside sees the gateway, not the FIP.
        assert connect(internal, vip, fip_internal) == (out, gw), "kube-proxy's mark-0x4000 masquerade takes effect first"
    assert foreign(gateway) == foreign_before
