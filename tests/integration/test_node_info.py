"""clusternet.node.node_info against the real kernel, in a namespace per test: what it reports
matches the kernel's own tools, feeding each fact back to its module changes nothing, and
reading changes nothing (full dumps compared)."""

import json

import pytest

# ifb: a link type every kernel here has (this one lacks dummy); node_info reports whichever kind.
KIND = 'ifb'
NODE_IPS = ['192.168.50.10', 'fd50::10']

SETS = {'name': 'cn-info-pods', 'set_type': 'hash:net', 'entries': ['10.42.0.0/24', 'fd00:42::/64']}
VIPS = ['10.96.0.1', 'fd00:10:96::1']
FIPS = [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'},
        {'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10::5'}]
MASQ = {'cluster_cidrs': ['10.42.0.0/16', 'fd00:42::/56'], 'pod_cidrs': ['10.42.1.0/24', 'fd00:42:0:1::/64']}


@pytest.fixture
def node(netns):
    netns.run('sysctl -qw net.ipv6.conf.default.accept_dad=0 && ip link add eth0 type veth peer name eth0p'
              ' && ip link set eth0 up && ip link set eth0p up && ip addr add %s/24 dev eth0'
              ' && ip addr add %s/64 dev eth0 nodad' % tuple(NODE_IPS))
    return netns


def converge(ns, via='direct'):
    for name, args in (('ipset', SETS), ('vip', {'link_kind': KIND, 'addresses': VIPS, 'node_ips': NODE_IPS}),
                       ('masquerade', MASQ), ('fip', {'floating_ips': FIPS})):
        assert ns.module(name, args, via=via)['changed'], name


LINK_DUMPS = ('ip -d addr show', 'ip -4 route show table all', 'ip -6 route show table all')


def dumps(ns, commands=('ipset save', 'iptables-save -t nat', 'ip6tables-save -t nat') + LINK_DUMPS):
    """Full dumps, iptables-save's timestamped comment lines left out."""
    return [ns.out(cmd + " | grep -v '^#'") for cmd in commands]


def facts(ns, via='direct', **args):
    result = ns.module('node_info', args, via=via)
    assert result['changed'] is False
    return result['clusternet_node']


def test_reports_what_the_kernel_holds_and_round_trips(node):
    """Every module through ansible-playbook once, as users run them (tests/harness.py)."""
    converge(node, via='playbook')
    node.run('ipset add cn-info-pods 10.42.9.0/24')  # another writer's entry
    before = dumps(node)
    got = facts(node, via='playbook')
    assert dumps(node) == before, 'node_info changed the kernel'

    ipsets = dict((item['name'], item) for item in got['ipsets'])
    assert sorted(ipsets) == sorted(set(name.replace('inet6:', '', 1) for name in node.out('ipset list -n').split()))
    assert ipsets['cn-info-pods']['families'] == ['ipv4', 'ipv6']
    assert ipsets['cn-info-pods']['entries'] == ['10.42.0.0/24', '10.42.9.0/24', 'fd00:42::/64']

    kernel_addrs = json.loads(node.out('ip -j addr show dev kube-dummy-if'))[0]['addr_info']
    assert got['vips']['present'] and got['vips']['ours'] and got['vips']['kind'] == KIND
    assert sorted(got['vips']['addresses']) == sorted(a['local'] for a in kernel_addrs if a['scope'] != 'link')

    assert sorted(got['floating_ips'], key=lambda f: f['external_ip']) == sorted(FIPS, key=lambda f: f['external_ip'])
    for family, save in (('ipv4', 'iptables-save -t nat'), ('ipv6', 'ip6tables-save -t nat')):
        kernel = [line.split(' ', 2)[2] for line in node.out(save).splitlines() if line.startswith('-A CLUSTERNET-POSTRTG ')]
        assert got['masquerade'][family]['CLUSTERNET-POSTRTG'] == kernel, family
    assert got['other_backend'] == {}

    # each fact back to its module is a no-op
    item = ipsets['cn-info-pods']
    assert not node.module('ipset', dict((k, item[k]) for k in ('name', 'set_type', 'families', 'entries')))['changed']
    assert not node.module('fip', {'floating_ips': got['floating_ips']})['changed']
    assert feed_nat_facts_back(node, got) == [False, False]
    assert not node.module('vip', {'link_kind': KIND, 'addresses': got['vips']['addresses'], 'node_ips': NODE_IPS})['changed']
    assert got['vips']['node_ips'] == NODE_IPS
    assert not node.module('vip', dict((k, got['vips'][k]) for k in ('interface', 'addresses', 'node_ips')))['changed']
    assert dumps(node) == before


def test_subsets_and_an_empty_node(netns):
    got = facts(netns, gather_subset=['ipsets', 'vips'], interface='kube-dummy-if')
    assert sorted(got) == ['ipsets', 'vips']
    assert got['ipsets'] == []
    assert got['vips'] == {'interface': 'kube-dummy-if', 'present': False, 'kind': None, 'up': False, 'ours': False, 'addresses': []}
    got = facts(netns, gather_subset=['floating_ips'])
    assert got == {'floating_ips': [], 'half_floating_ips': [], 'floating_ip_args': [], 'other_backend': {},
                   'nat_backends': {'floating_ips': []}, 'nat_drift': []}


def test_an_unknown_subset_is_refused(netns):
    result = netns.module('node_info', {'gather_subset': ['routes']}, expect_failure=True)
    assert 'routes' in result['msg'] and 'gather_subset' in result['msg']


# Sets planted with the kernel's own tool, in shapes the ipset module would not choose itself.
PLANTED = '''create istio6 hash:ip family inet6
add istio6 fd00::6
create cn-subnets hash:net family inet counters
add cn-subnets 10.42.0.0/16
add cn-subnets 10.42.7.0/24 nomatch
create inet6:cn-subnets hash:net family inet6
add inet6:cn-subnets fd00:42::/56
add inet6:cn-subnets fd00:42:0:7::/64 nomatch
create inet6:only6 hash:net,port family inet6
add inet6:only6 fd00:9::/64,udp:53 nomatch
create mixed hash:ip family inet
add mixed 10.0.0.1
create inet6:mixed hash:net family inet6
add inet6:mixed fd00:1::/64
create inet6:v4named hash:ip family inet
add inet6:v4named 10.0.0.9
create members list:set
add members mixed
'''


def test_every_ipset_fact_fed_back_verbatim_changes_nothing(netns):
    netns.run('ipset restore', input=PLANTED)
    before = netns.out('ipset save')
    got = facts(netns, gather_subset=['ipsets'])
    kernel_names = set(netns.out('ipset list -n').split())
    # every set is reported, as module arguments or as unmanageable with the reason
    fed = set()
    for item in got['ipsets']:
        result = netns.module('ipset', item)
        assert result['changed'] is False, (item, result)
        fed.update(result[family]['name'] for family in item['families'])
        assert netns.out('ipset save') == before, item
    unmanageable = dict((item['name'], item) for item in got['unmanageable_ipsets'])
    assert fed | set(unmanageable) == kernel_names and not fed & set(unmanageable)
    assert sorted(unmanageable) == ['inet6:v4named', 'members']
    # the facts that failed to round-trip before: an IPv6 set without inet6:, nomatch entries
    by_name = dict(((item['name'], tuple(item['families'])), item) for item in got['ipsets'])
    assert by_name[('istio6', ('ipv6',))]['ipv6_name'] == 'istio6'
    assert by_name[('cn-subnets', ('ipv4', 'ipv6'))]['nomatch'] == ['10.42.7.0/24', 'fd00:42:0:7::/64']
    assert by_name[('only6', ('ipv6',))]['nomatch'] == ['fd00:9::/64,udp:53']


def test_nomatch_option_flags_and_unflags_in_place(netns):
    netns.run('ipset create n hash:net && ipset add n 10.0.0.0/8 && ipset add n 10.1.0.0/16 nomatch')
    result = netns.module('ipset', {'name': 'n', 'set_type': 'hash:net', 'families': ['ipv4'],
                                    'entries': ['10.1.0.0/16'], 'nomatch': ['10.0.0.0/8', '10.2.0.0/16']})
    assert result['changed'] and result['ipv4']['added'] == ['10.0.0.0/8 nomatch', '10.1.0.0/16', '10.2.0.0/16 nomatch']
    assert sorted(netns.out('ipset save n').splitlines()[1:]) == [
        'add n 10.0.0.0/8 nomatch', 'add n 10.1.0.0/16', 'add n 10.2.0.0/16 nomatch']
    before = netns.out('ipset save')
    refused = netns.module('ipset', {'name': 'i', 'families': ['ipv4'], 'nomatch': ['10.0.0.1']}, expect_failure=True)
    assert 'nomatch entries need a set type with a network part' in refused['msg']
    assert netns.out('ipset save') == before


def test_vips_planted_with_ip_fed_back_change_nothing(node):
    """The state the vip module keeps, written with ip(8): node_info's interface, addresses and
    node_ips given back to the vip module change nothing."""
    node.run('ip link add kube-dummy-if type ifb && ip link set kube-dummy-if alias clusternet.node up'
             ' && ip addr add 10.96.0.1/32 dev kube-dummy-if'
             ' && ip route replace local 10.96.0.1 dev kube-dummy-if table local proto kernel scope host src %s'
             ' && ip -6 addr add fd00:10:96::1/128 dev kube-dummy-if nodad noprefixroute' % NODE_IPS[0])
    # the kernel adds its IPv6 local route from a work queue: wait for it, then put ours in its place
    node.run('for i in $(seq 50); do ip -6 route show table local | grep -q "^local fd00:10:96::1 " && break; sleep 0.1; done'
             ' && ip -6 route del local fd00:10:96::1 dev kube-dummy-if table local'
             ' && ip -6 route add local fd00:10:96::1 dev kube-dummy-if table local proto kernel src %s' % NODE_IPS[1])
    before = dumps(node, LINK_DUMPS)
    got = facts(node, gather_subset=['vips'])['vips']
    assert (got['addresses'], got['node_ips']) == (VIPS, NODE_IPS)
    assert not node.module('vip', dict((k, got[k]) for k in ('interface', 'addresses', 'node_ips')))['changed']
    assert dumps(node, LINK_DUMPS) == before


NAT_DUMPS = ('iptables-save -t nat', 'ip6tables-save -t nat', 'nft list ruleset')


def feed_nat_facts_back(ns, got):
    """Each masquerade and FIP fact given to its module as it is: the results' changed."""
    return ([ns.module('masquerade', args)['changed'] for args in got.get('masquerade_args', [])]
            + [ns.module('fip', args)['changed'] for args in got['floating_ip_args']])


def test_nat_facts_of_each_backend_fed_back_change_nothing_and_both_are_flagged(netns_factory):
    """Masquerade and FIPs written with other options than the defaults in iptables, and on
    nftables: the facts are those options, fed back they change nothing, byte for byte. A host
    holding both backends is flagged and warned about; its facts are not fed back as a no-op
    there, since a run on one backend migrates the module's objects away from the other."""
    masq = {'chain': 'MY-MASQ', 'comment': 'my masq', 'random_fully': False, 'skip_mark': '0x10/0xff',
            'cluster_cidrs': MASQ['cluster_cidrs'], 'pod_cidrs': MASQ['pod_cidrs']}
    fips = {'dnat_chain': 'MY-DNAT', 'snat_chain': 'MY-SNAT', 'floating_ips': FIPS}
    nft_masq = dict(MASQ, backend='nftables', skip_mark='0x4000/0x4000', random_fully=True)
    nft_fips = {'backend': 'nftables', 'floating_ips': [{'external_ip': '198.51.100.20', 'internal_ip': '10.0.0.20'}]}
    iptables_ns, nftables_ns = netns_factory(), netns_factory()
    for ns, calls, args in ((iptables_ns, (('masquerade', masq), ('fip', fips)), ([dict(masq, backend='iptables')], [dict(fips, backend='iptables')])),
                            (nftables_ns, (('masquerade', nft_masq), ('fip', nft_fips)), ([nft_masq], [nft_fips]))):
        for name, call in calls:
            assert ns.module(name, call)['changed'], (name, call)
        before = dumps(ns, NAT_DUMPS)
        got = facts(ns, gather_subset=['masquerade', 'floating_ips'])
        assert dumps(ns, NAT_DUMPS) == before, 'node_info changed the kernel'
        assert (got['masquerade_args'], got['floating_ip_args']) == args
        assert (got['half_floating_ips'], got['nat_drift']) == ([], [])
        assert feed_nat_facts_back(ns, got) == [False, False]
        assert dumps(ns, NAT_DUMPS) == before
    # The switch of masquerade to nftables removes its iptables chain by name (the run's own,
    # the default): MY-MASQ stays, and the host is flagged. fip's removes every FIP rule of ours.
    for name, call in (('masquerade', nft_masq), ('fip', nft_fips)):
        assert iptables_ns.module(name, call)['changed'], (name, call)
    result = iptables_ns.module('node_info', {'gather_subset': ['masquerade', 'floating_ips']})
    assert result['clusternet_node']['nat_backends'] == {'masquerade': ['iptables', 'nftables'], 'floating_ips': ['nftables']}
    assert any('both iptables and nftables hold' in warning for warning in result.get('warnings', []))


def test_a_half_fip_is_reported_and_its_facts_fed_back_complete_it(netns):
    assert netns.module('fip', {'floating_ips': FIPS})['changed']
    whole = dumps(netns, NAT_DUMPS)
    netns.run('iptables -t nat -D CLUSTERNET-FIP-SNAT -s 10.0.0.5/32 -m comment --comment "clusternet fip 198.51.100.10"'
              ' -j SNAT --to-source 198.51.100.10')
    got = facts(netns, gather_subset=['floating_ips'])
    assert got['half_floating_ips'] == [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5', 'missing': 'snat'}]
    assert got['nat_drift'] == ['ipv4: the fip module would rewrite chains CLUSTERNET-FIP-DNAT and CLUSTERNET-FIP-SNAT '
                                '(a half floating IP is completed, a stray rule removed)']
    assert feed_nat_facts_back(netns, got) == [True]
    assert dumps(netns, NAT_DUMPS) == whole, 'completed as the fip module writes it'
    got = facts(netns, gather_subset=['floating_ips'])
    assert (got['half_floating_ips'], got['nat_drift']) == ([], [])
    assert feed_nat_facts_back(netns, got) == [False]
    assert dumps(netns, NAT_DUMPS) == whole
