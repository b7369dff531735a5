# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""After playbooks/teardown.yml: nothing the collection manages remains on any node (its
boot-time unit and persisted files included), and the foreign state is untouched."""

import hoststate as hs
import pytest

VIPS = ('10.60.0.10', 'fd60::10')


def test_no_set_of_ours(node):
    name, box = node
    assert not [s for s in hs.ipsets(box) if s.startswith(('cn-', 'inet6:cn-'))], name


@pytest.mark.parametrize('family', ('ipv4', 'ipv6'))
def test_no_chain_and_no_jump_of_ours(node, family):
    name, box = node
    chains = hs.nat(box, family)
    assert not [c for c in chains if c.startswith('CLUSTERNET-')], name
    assert not [r for rules in chains.values() for r in rules if '-j CLUSTERNET-' in r], name


def test_no_vip_interface_and_no_vip_route(node):
    name, box = node
    assert hs.addresses(box, 'kube-dummy-if') is None, name
    assert not [route for vip in VIPS for route in hs.routes_to(box, vip)], name


def test_foreign_state_survives(node, foreign_state_intact):
    foreign_state_intact(node[1])


def test_no_unit_and_no_persisted_state(node):
    name, box = node
    assert not box.file('/etc/systemd/system/clusternet-node.service').exists, name
    assert not box.file('/etc/systemd/system/multi-user.target.wants/clusternet-node.service').exists, name
    assert not box.file('/var/lib/clusternet-node').exists, name
