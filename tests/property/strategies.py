"""Hypothesis strategies: each module's arguments, mixing valid values, special-purpose
ones (loopback, link-local, multicast, IPv4-mapped, zone ids, node IPs, addresses local on
eth0, foreign names, option-like and unquoted-safe text, non-ASCII digits, huge and
negative numbers) and malformed ones."""

from hypothesis import strategies as st
from state import FOREIGN_IF, NODE_IPS, OTHER_LOCAL

V4 = ['10.42.1.5', '10.42.1.6', '10.43.0.10', '198.51.100.10', '10.42.2.7']
V6 = ['2001:db8:42:1::5', '2001:DB8:42:1::5', '2001:db8:42:1:0:0:0:5', '2001:db8:43::10', '2001:db8:100::10']
SPECIAL = ['127.0.0.1', '127.1.2.3', '::1', '169.254.1.1', 'fe80::1', 'fe80::1%eth0', '2001:db8:42:1::5%1',
           '224.0.0.1', 'ff02::1', '::ffff:10.42.1.5', '::ffff:7f00:1', '0.0.0.0', '::', '255.255.255.255',
           '240.0.0.1', '10.42.1.255', '10.42.1.0'] + list(NODE_IPS) + list(OTHER_LOCAL)
MALFORMED = ['', ' ', '10.42.1', '10.42.1.256', '-1', '--help', '-exist', ' 10.42.1.5', '10.42.1.5 ', 'abc',
             '\u0661\u0660.\u0664\u0662.\u0661.\u0665', '\uff11\uff10.42.1.5', '10.42.1.\u0665',
             '10.42.1.5,tcp:80', '99999999999', '0x0a.0.0.1', '010.042.001.005', '10.42.1.5/32', '10.42.1.0/24',
             '10.42.1.5\ndestroy kube-router-pods', '10.42.1.5\n-A POSTROUTING -j ACCEPT', '2001:db8::1/129',
             '2001:db8::g', '1:2:3:4:5:6:7:8:9', '10.42.1.5 -j ACCEPT', '"', "'", '\\']
CIDRS = ['10.42.0.0/16', '10.42.1.0/24', '2001:db8:42::/56', '2001:db8:42:1::/64', '10.244.0.0/16',
         '0.0.0.0/0', '::/0', '10.42.1.5/16', '10.42.0.0/33', '10.42.0.0/-1', '127.0.0.0/8', '224.0.0.0/4',
         'fe80::/10', 'ff00::/8', '::ffff:10.42.0.0/112', '169.254.0.0/16', '10.42.0.0', '2001:db8:42::',
         '10.42.0.0/16 -j ACCEPT', '10.42.0.0/16\n-A POSTROUTING -j ACCEPT', '-s 10.42.0.0/16',
         '10.42.0.0/\u0661\u0666', '2001:db8:42::/56%eth0']
CHAINS = ['CLUSTERNET-POSTRTG', 'CLUSTERNET-FIP-DNAT', 'CLUSTERNET-FIP-SNAT', 'CN-TEST', 'KUBE-POSTRTG', 'KUBE-FIP',
          'CLUSTERNET-OLD', 'POSTROUTING', 'PREROUTING', 'OUTPUT', 'INPUT', 'RETURN', 'ACCEPT', 'MASQUERADE', 'DNAT',
          '-j', '--flush', '-F', '', ' ', 'A' * 28, 'A' * 29, 'A' * 30, 'has space', 'new\nline', 'CN-\u00c4',
          'CN-\u0661', '!', 'CN-TEST ', 'cn-test']
COMMENTS = ['clusternet masq', 'clusternet', 'cn_masq-1', 'clusternet fip', 'clusternet masquerade', 'kube masq',
            'foreign_snat-1', '--comment', '-j ACCEPT', 'a"b', "it's", 'back\\slash', 'x' * 256, 'x' * 257, '',
            ' ', 'caf\u00e9', 'new\nline', '\u0661\u0662', 'a' * 255 + '\u00e9', '#', '*nat', 'COMMIT']
MARKS = ['0x4000/0x4000', '', '0x4000', '16384', '0xffffffff/0xffffffff', '0x1ffffffff', '-1', '--x', 'abc',
         '0x4000/0x8000', '0x\u0664000', '0x4000/', '/0x4000', '0x0/0x0', '0X4000/0X4000', '99999999999999999999']
NUMBERS = [None, 65536, 1024, 0, 1, -1, -65536, 2 ** 31, 2 ** 32, 2 ** 64, '1e3', '\u0661\u0660\u0662\u0664', 'x']
IFNAMES = ['kube-dummy-if', FOREIGN_IF, 'lo', 'cn-test', 'a' * 15, 'a' * 16, '-x', '--help', 'bad name', 'bad/name',
           '', '.', '..', 'all', 'default', '\u00fc' * 8, '\u00fc' * 7 + 'a', 'kube-dummy-if\n', 'eth0:1', 'x@y',
           'kube%d']
SET_NAMES = ['cn-pods', 'cn-svip', 'kube-router-pods', 'inet6:kube-router-pods', 'istio-nets', 'istio6', 'svc-ports',
             'a' * 31, 'a' * 32, 'inet6:' + 'a' * 25, 'inet6:' + 'a' * 26, '-x', '--exist', '-', '', ' ', 'has space',
             'new\nline', 'caf\u00e9', '\u0661\u0662', 'inet6:', 'inet6:inet6:x', 'x"y', "x'y", 'destroy']
PORT_ENTRIES = ['10.42.1.5,tcp:80', '10.42.1.5,udp:53', '10.42.1.5,80', '2001:db8:42:1::5,tcp:443', '10.42.1.5,tcp:0',
                '10.42.1.5,tcp:65536', '10.42.1.5,tcp:-1', '10.42.1.5,icmp:ping', '10.42.1.5,tcp:\u0668\u0660',
                '10.42.1.5,sctp:9', '10.42.1.5,tcp:http', '10.42.1.5,tcp:80-90', '10.42.1.5,tcp:80,10.0.0.1']
IFACE_ENTRIES = ['10.42.0.0/16,eth0', '10.42.0.0/16,' + 'a' * 16, '10.42.0.0/16,-x', '10.42.0.0/16,bad name',
                 '2001:db8:42::/56,cni0', '10.42.0.0/16,\u00fc' * 8, '10.42.0.0/16,physdev:eth0']
SET_TYPES = ['hash:ip', 'hash:net', 'hash:ip,port', 'hash:net,port', 'hash:ip,port,ip', 'hash:ip,port,net',
             'hash:net,iface', 'list:set', 'hash:mac', 'bitmap:ip', '']


def _valid4():
    return st.ip_addresses(v=4, network='10.42.0.0/16').map(str)


def _valid6():
    return st.ip_addresses(v=6, network='2001:db8:42::/48').map(str)


def address():
    return st.one_of(st.sampled_from(V4 + V6), st.sampled_from(SPECIAL), st.sampled_from(MALFORMED),
                     _valid4(), _valid6(), st.text(max_size=6))


def good_address():
    return st.one_of(st.sampled_from(V4 + V6), _valid4(), _valid6())


def addresses(max_size=4):
    # Mostly good lists, so the write paths are reached, with special and malformed values mixed in.
    return st.one_of(st.lists(good_address(), max_size=max_size), st.lists(address(), max_size=max_size))


def sometimes(pool, default):
    return st.one_of(st.just(default), st.just(default), st.sampled_from(pool), st.text(max_size=8))


def state():
    return st.one_of(st.sampled_from(['present', 'present', 'absent']), st.sampled_from(['', 'Present', '-x']))


def ipset():
    entry = st.one_of(address(), st.sampled_from(CIDRS), st.sampled_from(PORT_ENTRIES), st.sampled_from(IFACE_ENTRIES))
    odd_families = [['ipv4'], ['ipv6'], [], ['ipv6', 'ipv4'], ['ipv4', 'ipv4'], ['inet'], ['IPv4']]
    families = st.one_of(st.just(['ipv4', 'ipv6']), st.sampled_from(odd_families))
    return st.fixed_dictionaries({
        'name': sometimes(SET_NAMES, 'cn-pods'),
        'entries': st.one_of(addresses(), st.lists(entry, max_size=4)),
    }, optional={
        'ipv6_name': st.sampled_from(SET_NAMES),
        'set_type': st.sampled_from(SET_TYPES),
        'families': families,
        'exclusive': st.booleans(),
        'maxelem': st.sampled_from(NUMBERS),
        'hashsize': st.sampled_from(NUMBERS),
        'state': state(),
    })


def vip():
    node_ips = st.one_of(st.just(list(NODE_IPS)), st.just(list(NODE_IPS)), st.lists(address(), max_size=3))
    return st.fixed_dictionaries({
        'addresses': addresses(),
        'node_ips': node_ips,
        'link_kind': st.one_of(st.just('ifb'), st.just('ifb'), st.sampled_from(['dummy', 'bridge', 'veth', '', 'bogus'])),
    }, optional={
        'interface': sometimes(IFNAMES, 'kube-dummy-if'),
        'exclusive': st.booleans(),
        'state': state(),
        'delete_interface': st.booleans(),
    })


def masquerade():
    cidr = st.one_of(st.sampled_from(CIDRS), st.text(max_size=6))
    good = st.sampled_from(CIDRS[:5])
    return st.fixed_dictionaries({
        'cluster_cidrs': st.one_of(st.lists(good, max_size=3), st.lists(cidr, max_size=3)),
        'pod_cidrs': st.one_of(st.lists(good, max_size=3), st.lists(cidr, max_size=3)),
    }, optional={
        'chain': sometimes(CHAINS, 'CLUSTERNET-POSTRTG'),
        'comment': sometimes(COMMENTS, 'clusternet masq'),
        'random_fully': st.booleans(),
        'skip_mark': sometimes(MARKS, '0x4000/0x4000'),
        'state': state(),
    })


def fip():
    pair = st.fixed_dictionaries({'external_ip': address()}, optional={'internal_ip': address()})
    good = st.fixed_dictionaries({'external_ip': good_address(), 'internal_ip': good_address()})
    return st.fixed_dictionaries({
        'floating_ips': st.one_of(st.lists(good, max_size=3), st.lists(pair, max_size=3)),
    }, optional={
        'exclusive': st.booleans(),
        'dnat_chain': sometimes(CHAINS, 'CLUSTERNET-FIP-DNAT'),
        'snat_chain': sometimes(CHAINS, 'CLUSTERNET-FIP-SNAT'),
        'flush_conntrack': st.booleans(),
        'state': state(),
    })


ARGS = {'ipset': ipset, 'vip': vip, 'masquerade': masquerade, 'fip': fip}
