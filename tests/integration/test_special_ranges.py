"""families.SPECIAL_RANGES on the real kernel: a value in a refused range fails the run
naming it, before any write, in every module that takes addresses; an allowed one
(100.64.0.0/10, shared address space) is taken. A namespace per test."""

import re

import pytest

NODE4, NODE6 = '192.168.50.10', 'fd50::10'
THIS_NETWORK = 'it is in 0.0.0.0/8 (unspecified, "this network")'


@pytest.fixture
def node(netns):
    """Node IPs on a veth; a VIP, masquerade and a FIP already in place, so a refused run has state to break."""
    netns.run('sysctl -qw net.ipv6.conf.default.accept_dad=0 && '
              'ip link add eth0 type veth peer name eth0p && ip link set eth0 up && ip link set eth0p up'
              ' && ip addr add %s/24 dev eth0 && ip addr add %s/64 dev eth0 nodad' % (NODE4, NODE6))
    vip(netns, ['10.96.0.1', 'fd00:10:96::1'])
    netns.module('masquerade', {'cluster_cidrs': ['10.244.0.0/16']})
    netns.module('fip', {'floating_ips': [{'external_ip': '198.51.100.11', 'internal_ip': '10.244.0.6'}]})
    return netns


def vip(ns, addresses, **kw):
    return ns.module('vip', {'link_kind': 'ifb', 'addresses': addresses, 'node_ips': [NODE4, NODE6]}, **kw)


def dumps(ns):
    text = ns.out('iptables-save; ip6tables-save; ip -d addr; ip -4 route show table all; ip -6 route show table all')
    return [re.sub(r'\[\d+:\d+\]', '[0:0]', line) for line in text.splitlines() if not line.startswith('#')]


@pytest.mark.parametrize('name, args, message', [
    ('vip', {'addresses': ['10.96.0.1', '0.1.2.3']}, "invalid VIP address '0.1.2.3': " + THIS_NETWORK),
    ('vip', {'addresses': ['10.96.0.1', '255.255.255.255']}, "invalid VIP address '255.255.255.255': it is in 240.0.0.0/4"),
    ('vip', {'addresses': ['fd00:10:96::1', '100::1']}, "invalid VIP address '100::1': it is in 100::/64 (discard-only)"),
    ('fip', {'floating_ips': [{'external_ip': '0.1.2.3', 'internal_ip': '10.244.0.7'}]}, "invalid external_ip '0.1.2.3': " + THIS_NETWORK),
    ('fip', {'floating_ips': [{'external_ip': '198.51.100.12', 'internal_ip': '0.1.2.3'}]}, "invalid internal_ip '0.1.2.3': " + THIS_NETWORK),
    ('masquerade', {'cluster_cidrs': ['10.244.0.0/16', '0.1.2.0/24']},
     "invalid cluster CIDR '0.1.2.0/24': it overlaps 0.0.0.0/8 (unspecified, \"this network\")"),
], ids=['vip-this-network', 'vip-broadcast', 'vip-discard', 'fip-external', 'fip-internal', 'masq-cidr'])
def test_a_refused_range_fails_naming_the_value_and_changes_nothing(node, name, args, message):
    if name == 'vip':
        args = dict(args, link_kind='ifb', node_ips=[NODE4, NODE6])
    before = dumps(node)
    result = node.module(name, args, expect_failure=True)
    assert message in result['msg'], result['msg']
    assert dumps(node) == before


def test_shared_address_space_is_an_ordinary_vip(node):
    assert vip(node, ['10.96.0.1', 'fd00:10:96::1', '100.64.0.1'])['changed'] is True
    assert 'inet 100.64.0.1/32' in node.out('ip addr show dev kube-dummy-if')
