# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lifecycle scenario's nodes, and the foreign state prepare.yml planted on each."""

import hoststate as hs
import pytest

NODES = {'n1': 'cn-mol-lc-n1', 'gwa': 'cn-mol-lc-gwa', 'gwb': 'cn-mol-lc-gwb'}
FOREIGN_SETS = {'foreign-allow': ('ipv4', {'192.0.2.99'}), 'inet6:foreign-allow': ('ipv6', {'2001:db8:99::9'})}
FOREIGN_RULES = {
    'ipv4': [('POSTROUTING', '-s 10.99.0.0/16 -m comment --comment "foreign masq" -j MASQUERADE'),
             ('PREROUTING', '-d 192.0.2.99/32 -m comment --comment "foreign dnat" -j DNAT --to-destination 10.99.0.9')],
    'ipv6': [('POSTROUTING', '-s fd99::/64 -m comment --comment "foreign masq" -j MASQUERADE')],
}


@pytest.fixture(scope='module', params=sorted(NODES))
def node(request):
    return request.param, hs.box(NODES[request.param])


@pytest.fixture
def foreign_state_intact():
    """A check that the foreign sets and NAT rules are still on a node, unchanged."""
    def check(box):
        sets = hs.ipsets(box)
        for name, (family, members) in FOREIGN_SETS.items():
            assert name in sets, 'foreign set %s was removed' % name
            assert (sets[name]['type'], sets[name]['family'], sets[name]['members']) == ('hash:ip', family, members), name
        for family, rules in FOREIGN_RULES.items():
            chains = hs.nat(box, family)
            for chain, rule in rules:
                assert chains[chain].count(rule) == 1, 'foreign %s rule in %s: %s' % (family, chain, rule)
    return check
