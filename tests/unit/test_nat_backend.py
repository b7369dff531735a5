"""nat_backend: what `auto` chooses, and a backend switch planned and applied in one run on
FakeNat (recorded iptables dumps and `nft -j list table` output): the module's part moves, the
other module's part and every foreign rule stay, check mode writes nothing, a rerun is a no-op,
a refusal of the old backend stops the run before its first write."""

import os

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import fip, masquerade, nat_backend, nft
from fakes import Failed, FakeModule, FakeNat, fixture

NFT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'nft')
MASQ = {'cluster_cidrs': ['10.244.0.0/16', 'fd00:10:244::/56'], 'pod_cidrs': ['10.244.1.0/24', 'fd00:10:244:1::/64'],
        'chain': 'CLUSTERNET-POSTRTG', 'comment': 'clusternet masq', 'random_fully': True, 'skip_mark': '0x4000/0x4000',
        'allow_foreign_chain': False, 'purge_other_backend': False, 'state': 'present', 'backend': 'iptables'}
FIP = {'floating_ips': [{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.5'}], 'exclusive': True,
       'dnat_chain': 'CLUSTERNET-FIP-DNAT', 'snat_chain': 'CLUSTERNET-FIP-SNAT', 'flush_conntrack': True,
       'allow_foreign_chain': False, 'purge_other_backend': False, 'state': 'present', 'backend': 'iptables'}


def nft_recorded(name):
    with open(os.path.join(NFT, name)) as handle:
        return ''.join(line for line in handle if not line.startswith('#'))


def fake(name, **kwargs):
    return FakeNat({('ipv4', 'nft'): fixture(name + '.v4'), ('ipv6', 'nft'): fixture(name + '.v6')}, **kwargs)


def run(module_utils, params, kernel, check_mode=False, diff=False):
    return module_utils.run(FakeModule(params, check_mode=check_mode, diff=diff), kernel)


def lines(kernel, family):
    return [line for line in kernel.dump(family).splitlines() if not line.startswith('#')]


@pytest.mark.parametrize('listed, has_iptables, chosen', [
    (set(), True, 'iptables'),
    ({('ip', 'nat'), ('inet', 'kube-proxy'), ('ip', 'clusternet')}, True, 'iptables'),
    ({('ip6', 'kube-proxy')}, True, 'nftables'),
    ({('ip', 'kube-proxy')}, True, 'nftables'),
    (set(), False, 'nftables'),
])
def test_auto_chooses_nftables_beside_kube_proxys_tables_or_without_iptables(listed, has_iptables, chosen):
    assert nat_backend.choose(listed, has_iptables) == chosen
    kernel = fake('nat-empty', listed=listed, has_iptables=has_iptables)
    assert run(masquerade, dict(MASQ, backend='auto'), kernel)['backend'] == chosen


def test_masquerade_to_nftables_removes_only_its_iptables_part_then_reruns_as_no_op():
    kernel = fake('nat-ours')
    kept = dict((family, [line for line in lines(kernel, family) if 'CLUSTERNET-POSTRTG' not in line]) for family in ('ipv4', 'ipv6'))
    check = run(masquerade, dict(MASQ, backend='nftables'), kernel, check_mode=True, diff=True)
    assert check['changed'] is True and check['migrated']['backend'] == 'iptables'
    assert check['migrated']['ipv4']['payload'].splitlines()[-3:] == [':CLUSTERNET-POSTRTG - [0:0]', '-X CLUSTERNET-POSTRTG', 'COMMIT']
    assert '# backend iptables:\n-A POSTROUTING -m comment --comment "clusternet masq" -j CLUSTERNET-POSTRTG' in check['diff']['before']
    assert kernel.restores == [] and kernel.applied == [], 'check mode writes nothing'

    moved = run(masquerade, dict(MASQ, backend='nftables'), kernel)
    assert moved['backend'] == 'nftables' and moved['migrated']['ipv6']['applied'] is True
    assert [family for family, _backend, _text in kernel.restores] == ['ipv4', 'ipv6']
    assert len(kernel.applied) == 2, 'the nft tables are written first, then iptables cleaned'
    for family in ('ipv4', 'ipv6'):
        assert lines(kernel, family) == kept[family], "fip's chains and every foreign rule stay"
    again = run(masquerade, dict(MASQ, backend='nftables'), kernel)
    assert again['changed'] is False and 'migrated' not in again and len(kernel.applied) == 2


def test_fip_back_to_iptables_removes_its_half_of_our_tables_and_keeps_the_masquerade():
    kernel = fake('nat-empty', nft_tables={'ipv4': nft_recorded('ipv4-full.json.txt')})
    back = run(fip, FIP, kernel, diff=True)
    assert back['backend'] == 'iptables' and back['migrated']['backend'] == 'nftables'
    assert back['migrated']['ipv4']['removed'] == [{'external_ip': '198.51.100.10', 'internal_ip': '10.42.1.5'},
                                                   {'external_ip': '198.51.100.11', 'internal_ip': '10.42.1.6'}]
    assert back['migrated']['ipv4']['conntrack_flushed'] == 0, 'the switch flushes no conntrack'
    table = kernel.table('ipv4')
    assert table.fips == {} and table.masquerade['cluster_cidrs'] and table.drift == []
    assert [line for line in lines(kernel, 'ipv4') if 'clusternet fip 198.51.100.10' in line]
    assert '# ipv4\n# backend nftables:\nadd map ip clusternet fip-dnat { type ipv4_addr : ipv4_addr; }' in back['diff']['before']
    again = run(fip, FIP, kernel)
    assert again['changed'] is False and 'migrated' not in again


def test_a_refusal_on_the_old_backend_stops_the_run_before_any_write():
    kernel = fake('nat-hostile')
    with pytest.raises(Failed) as err:
        run(masquerade, dict(MASQ, backend='nftables'), kernel)
    assert err.value.result['msg'].startswith("ipv4: refusing to remove chain 'CLUSTERNET-POSTRTG': a rule without this module's comment")
    assert kernel.restores == [] and kernel.applied == []


def test_nft_list_tables_is_read_as_family_and_name_and_a_failing_nft_lists_none():
    text = 'table ip nat\ntable ip6 kube-proxy\ntable inet filter\n'
    assert nft.parse_tables(text) == {('ip', 'nat'), ('ip6', 'kube-proxy'), ('inet', 'filter')}
    assert nft.NftKernel(lambda args: (0, text, '')).tables() == nft.parse_tables(text)
    assert nft.NftKernel(lambda args: (1, '', 'Operation not supported')).tables() == frozenset()


@pytest.mark.parametrize('overrides', [{'exclusive': False}, {'state': 'absent'}], ids=['not-exclusive', 'absent'])
def test_a_switch_that_would_drop_fips_it_does_not_carry_on_is_refused_before_any_write(overrides):
    kernel = fake('nat-empty', nft_tables={'ipv4': nft_recorded('ipv4-full.json.txt')})
    with pytest.raises(Failed) as err:
        run(fip, dict(FIP, **overrides), kernel)
    assert err.value.result['msg'].startswith('refusing to switch from backend nftables: it holds floating IPs this run would remove '
                                              'there without carrying them on (198.51.100.11);'), 'the named one is not lost'
    assert kernel.restores == [] and kernel.applied == []
