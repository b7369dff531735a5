"""Switching backend migrates in one run (module_utils/nat_backend.py), on a real kernel in a test
namespace: iptables -> nftables -> iptables for masquerade and fip, nothing of the other backend
left after each switch, a rerun changes nothing, check mode writes nothing, a foreign rule in
iptables' nat table and a foreign nftables table stay byte-identical; `auto` follows kube-proxy's tables."""

import pytest

MASQ = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64']}
FIPS = {'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.0.0.5'},
                         {'external_ip': '2001:db8:ff::10', 'internal_ip': 'fd00:10::5'}]}
FOREIGN_NFT = 'table ip foreign {\n\tchain post {\n\t\ttype nat hook postrouting priority 100; policy accept;\n\t\tip saddr 192.0.2.0/24 masquerade\n\t}\n}\n'


def iptables(ns):
    """Both nat tables as the save tools print them, without their timestamped comments."""
    return '\n'.join(line for line in ns.out('iptables-save -t nat; ip6tables-save -t nat').splitlines() if not line.startswith('#'))


def ours_in_iptables(ns):
    return [line for line in iptables(ns).splitlines() if 'CLUSTERNET' in line or 'clusternet' in line]


def foreign(ns):
    """The foreign rule in ip nat (as iptables-nft lists it) and the foreign table, handles included."""
    return ns.out('nft -a list table ip foreign'), [line for line in iptables(ns).splitlines() if 'someone else' in line]


@pytest.mark.parametrize('name, args, half', [('masquerade', MASQ, 'masq-postrouting'), ('fip', FIPS, 'fip-dnat')])
def test_iptables_to_nftables_and_back_in_one_run_each(netns, name, args, half):
    netns.run('iptables -t nat -A POSTROUTING -s 192.0.2.0/24 -m comment --comment "someone else" -j MASQUERADE')
    netns.run('nft -f -', input=FOREIGN_NFT)
    before = foreign(netns)
    assert netns.module(name, args)['backend'] == 'iptables' and ours_in_iptables(netns)
    saved = iptables(netns)

    check = netns.module(name, dict(args, backend='nftables'), check=True, diff=True)
    assert check['changed'] is True and check['migrated']['backend'] == 'iptables'
    assert check['migrated']['ipv4']['payload'] and check['migrated']['ipv4']['applied'] is False
    assert '# backend iptables:' in check['diff']['before']
    assert iptables(netns) == saved and 'clusternet' not in netns.out('nft list tables'), 'check mode writes nothing'

    moved = netns.module(name, dict(args, backend='nftables'))
    assert moved['backend'] == 'nftables' and moved['migrated']['ipv6']['applied'] is True
    assert ours_in_iptables(netns) == [], 'no chain, jump or rule of ours left in iptables'
    assert half in netns.out('nft list table ip clusternet') and half in netns.out('nft list table ip6 clusternet')
    again = netns.module(name, dict(args, backend='nftables'))
    assert again['changed'] is False and 'migrated' not in again

    back = netns.module(name, args)
    assert back['backend'] == 'iptables' and back['migrated']['backend'] == 'nftables'
    assert 'clusternet' not in netns.out('nft list tables'), 'the module held all of our tables: they are gone'
    assert iptables(netns) == saved, 'the same iptables rules as before the round trip'
    assert netns.module(name, args)['changed'] is False
    assert foreign(netns) == before, 'foreign rules untouched'


def test_a_switch_keeps_the_other_modules_half_and_auto_follows_kube_proxy(netns):
    netns.module('fip', dict(FIPS, backend='nftables'))
    netns.module('masquerade', MASQ)
    assert netns.module('masquerade', dict(MASQ, backend='auto'))['backend'] == 'iptables', 'no kube-proxy tables: iptables'
    netns.run('nft add table ip6 kube-proxy')
    auto = netns.module('masquerade', dict(MASQ, backend='auto'))
    assert auto['backend'] == 'nftables' and auto['migrated']['backend'] == 'iptables' and ours_in_iptables(netns) == []
    back = netns.module('masquerade', MASQ)
    assert back['migrated']['ipv4']['removed'] == {'cluster_cidrs': ['10.244.0.0/16'], 'pod_cidrs': ['10.244.1.0/24']}
    tables = netns.out('nft list table ip clusternet') + netns.out('nft list table ip6 clusternet')
    assert 'masq-postrouting' not in tables and 'fip-dnat' in tables, "fip's half kept"
