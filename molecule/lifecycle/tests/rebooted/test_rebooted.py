# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""After every node rebooted with no playbook run (reboot.yml, which already compared each
node's dumps before and after): the boot restored ours beside netfilter-persistent's
foreign state, netfilter-persistent finished first, and traffic behaves as before the
reboot (tests/changed): the moved FIP answers through its new gateway, pods are
masqueraded in IPv4 only."""

import hoststate as hs

OUTSIDE = hs.box('cn-mol-lc-outside')


def test_foreign_state_restored_beside_ours(node, foreign_state_intact):
    foreign_state_intact(node[1])


def test_both_units_ran_at_boot(node):
    name, box = node
    for unit in ('netfilter-persistent.service', 'clusternet-node.service'):
        assert box.run('systemctl is-active %s' % unit).stdout.strip() == 'active', (name, unit)
    # netfilter-persistent's iptables-restore flushes whole tables: it must be done first.
    done = int(box.check_output('systemctl show -P ExecMainExitTimestampMonotonic netfilter-persistent.service'))
    started = int(box.check_output('systemctl show -P ExecMainStartTimestampMonotonic clusternet-node.service'))
    assert 0 < done <= started, (name, done, started)
    journal = box.check_output('journalctl -b -o cat -u clusternet-node.service')
    assert 'FAILED' not in journal and 'vip kube-dummy-if: restored (changed)' in journal, journal


def test_fip_answers_through_the_new_gateway():
    """IPv4 only, as in tests/changed: the changed intent drops IPv6 masquerade, without
    which the IPv6 FIP's replies cannot come back (the same before the reboot)."""
    answer = hs.ask(OUTSIDE, '203.0.113.20')
    assert (answer.get('host'), answer.get('local')) == ('cn-mol-lc-pod-app-0', '10.50.1.77'), answer


def test_pod_traffic_is_masqueraded_in_ipv4_only():
    pod = hs.box('cn-mol-lc-pod-app-0')
    answer = hs.ask(pod, '192.168.70.100')
    assert (answer.get('source'), answer.get('peer')) == ('10.50.1.77', '192.168.70.11'), answer
    assert 'error' in hs.ask(pod, 'fd00:70::100')
