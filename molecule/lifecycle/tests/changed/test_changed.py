# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""After the changed intent: app-0 recreated with new IPs, its FIPs moved from gwa
to gwb, IPv6 dropped from masquerade. Nothing of the old state may remain anywhere."""

import hoststate as hs
import pytest

OLD_POD = {'ipv4': '10.50.1.5', 'ipv6': 'fd50:0:0:1::5'}
NEW_POD = {'ipv4': '10.50.1.77', 'ipv6': 'fd50:0:0:1::77'}
FIP = {'ipv4': '203.0.113.20', 'ipv6': '2001:db8:203::20'}
N1 = {'ipv4': '192.168.70.11', 'ipv6': 'fd00:70::11'}
OUTSIDE = {'ipv4': '192.168.70.100', 'ipv6': 'fd00:70::100'}
FAMILIES = ('ipv4', 'ipv6')


def test_old_pod_ips_are_in_no_set(node):
    name, box = node
    old = set(OLD_POD.values())
    for set_name, content in hs.ipsets(box).items():
        assert not old & set(member.split(',')[0] for member in content['members']), '%s %s' % (name, set_name)


def test_local_pods_hold_the_new_ips_each_in_its_family_set(node):
    name, box = node
    sets = hs.ipsets(box)
    want = NEW_POD if name == 'n1' else {'ipv4': None, 'ipv6': None}
    assert sets['cn-local-pods']['members'] == set(filter(None, [want['ipv4']]))
    assert sets['inet6:cn-local-pods']['members'] == set(filter(None, [want['ipv6']]))


@pytest.mark.parametrize('family', FAMILIES)
def test_old_gateway_keeps_no_fip_rule_and_no_conntrack_entry(family):
    box = hs.box('cn-mol-lc-gwa')
    chains = hs.nat(box, family)
    assert not [chain for chain in chains if chain.startswith('CLUSTERNET-FIP')]
    assert not [(chain, rule) for chain, rules in chains.items() for rule in rules if FIP[family] in rule]
    assert FIP[family] not in box.run('conntrack -L -f %s -d %s' % (family, FIP[family])).stdout


@pytest.mark.parametrize('family', FAMILIES)
def test_new_gateway_maps_the_fip_to_the_new_pod_ips(family):
    chains = hs.nat(hs.box('cn-mol-lc-gwb'), family)
    bits = 32 if family == 'ipv4' else 128
    assert [hs.without_comments(r) for r in chains['CLUSTERNET-FIP-DNAT']] == ['-d %s/%d -j DNAT --to-destination %s' % (FIP[family], bits, NEW_POD[family])]
    assert [hs.without_comments(r) for r in chains['CLUSTERNET-FIP-SNAT']] == ['-s %s/%d -j SNAT --to-source %s' % (NEW_POD[family], bits, FIP[family])]


def test_masquerade_is_gone_in_ipv6_and_kept_in_ipv4(node):
    name, box = node
    v6, v4 = hs.nat(box, 'ipv6'), hs.nat(box, 'ipv4')
    assert 'CLUSTERNET-POSTRTG' not in v6 and not hs.jumps(v6, 'POSTROUTING', 'CLUSTERNET-POSTRTG'), name
    assert len(v4['CLUSTERNET-POSTRTG']) == 6 and len(hs.jumps(v4, 'POSTROUTING', 'CLUSTERNET-POSTRTG')) == 1, name


def test_outside_reaches_the_recreated_pod_through_the_new_gateway():
    answer = hs.ask(hs.box('cn-mol-lc-outside'), FIP['ipv4'])
    assert (answer.get('host'), answer.get('local'), answer.get('peer')) == ('cn-mol-lc-pod-app-0', NEW_POD['ipv4'], '192.168.70.13'), answer


def test_pod_traffic_is_masqueraded_in_ipv4_only():
    pod = hs.box('cn-mol-lc-pod-app-0')
    answer = hs.ask(pod, OUTSIDE['ipv4'])
    assert (answer.get('source'), answer.get('peer')) == (NEW_POD['ipv4'], N1['ipv4']), answer
    # Not masqueraded, the pod's IPv6 source reaches the outside, which has no route back.
    assert 'error' in hs.ask(pod, OUTSIDE['ipv6'])


def test_foreign_state_survives(node, foreign_state_intact):
    foreign_state_intact(node[1])
