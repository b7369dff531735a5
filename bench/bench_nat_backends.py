"""The NAT backends side by side: 500 IPv4 + 500 IPv6 floating IPs and the masquerade rules
(clusternet.node.masquerade, then clusternet.node.fip) with backend nftables and with
backend iptables, each against a raw load of the same ruleset through
ansible.builtin.shell: `nft -f` of our two tables, or iptables-restore and
ip6tables-restore of the nat tables. "The same ruleset" is what the modules wrote, read
back with the stock tools, so the baselines load exactly what the modules hold.

The modules are two tasks, the raw load one: Ansible's cost per task (a module run, not
the kernel work) is most of what separates them at this size, so the raw load is also
timed as two tasks, one per module (the masquerade's table, then the whole ruleset
replacing it), the way the modules write.

Target: backend nftables' first run costs at most 1.3x its `nft -f` baseline. The
iptables rows, each backend's in-sync re-run and a no-change run at 5,000 FIPs per
family are printed for information. Wall times on a shared machine: load-sensitive.
"""

import ipaddress
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import interleaved, play, report, timed, with_netns  # noqa: E402

COUNT = 500
LARGE = 5000
RANGES = (('100.64.0.0/16', '10.10.0.0/16'), ('2001:db8:ff::/64', 'fd00:10::/64'))
MASQUERADE = {'cluster_cidrs': ['10.10.0.0/16', 'fd00:10::/64'], 'pod_cidrs': ['10.10.1.0/24', 'fd00:10::/80']}
CLEAN = 'nft flush ruleset && iptables -t nat -F && iptables -t nat -X && ip6tables -t nat -F && ip6tables -t nat -X'
# backend: (what reads the ruleset the modules wrote, what loads such a file in place of ours)
REPLACE_NFT = 'add table ip clusternet\ndelete table ip clusternet\nadd table ip6 clusternet\ndelete table ip6 clusternet\n'
DUMP = {
    'nftables': ('nft list table ip clusternet && nft list table ip6 clusternet', 'nft -f {0}'),
    'iptables': ('iptables-save -t nat > {0}.v4 && ip6tables-save -t nat > {0}.v6', 'iptables-restore < {0}.v4 && ip6tables-restore < {0}.v6'),
}


def floating_ips(count):
    out = []
    for external, internal in RANGES:
        ext, intl = ipaddress.ip_network(external), ipaddress.ip_network(internal)
        out += [{'external_ip': str(ext[i + 1]), 'internal_ip': str(intl[i + 1])} for i in range(count)]
    return out


def modules_play(backend, count):
    """The masquerade task, then with count the fip task."""
    tasks = [{'clusternet.node.masquerade': dict(MASQUERADE, backend=backend)}]
    if count:
        tasks.append({'clusternet.node.fip': {'floating_ips': floating_ips(count), 'backend': backend}})
    return play(tasks)


def clean(netns):
    netns.run(CLEAN)


def ruleset(ns, backend, count, path):
    """Converge the modules once (untimed) and save what they wrote to path, for the baseline
    and the in-sync setups; returns the shell command that loads it."""
    clean(ns)
    timed(ns, modules_play(backend, count), repeats=1)
    dump, load = DUMP[backend]
    if backend == 'nftables':
        with open(path, 'w') as handle:
            handle.write(REPLACE_NFT + ns.out(dump))
    else:
        ns.run(dump.format(path))
    return load.format(path)


def main(ns):
    seconds, loads = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ('nftables', 'iptables'):
            for count in (0, COUNT, LARGE):
                loads[backend, count] = ruleset(ns, backend, count, os.path.join(tmp, '%s-%d' % (backend, count)))
        cases = []
        for backend in ('nftables', 'iptables'):
            load = loads[backend, COUNT]
            cases += [
                ('%s raw' % backend, play([{'ansible.builtin.shell': load}]), clean),
                ('%s raw, per module' % backend, play([{'ansible.builtin.shell': loads[backend, 0]}, {'ansible.builtin.shell': load}]), clean),
                ('%s create' % backend, modules_play(backend, COUNT), clean),
                ('%s rerun' % backend, modules_play(backend, COUNT), lambda netns, load=load: netns.run(CLEAN + ' && ' + load)),
            ]
        for backend in ('nftables', 'iptables'):
            load = loads[backend, LARGE]
            cases.append(('%s rerun %d' % (backend, LARGE), modules_play(backend, LARGE),
                          lambda netns, load=load: netns.run(CLEAN + ' && ' + load)))
        seconds.update(interleaved(ns, cases))
    rows = []
    for backend, raw in (('nftables', 'nft -f of our two tables'), ('iptables', 'iptables-restore + ip6tables-restore of table nat')):
        base = seconds['%s raw' % backend]
        rows += [
            ('%s: ansible.builtin.shell, %s' % (backend, raw), base, None, None),
            ('%s: the same as two shell tasks, one per module' % backend, seconds['%s raw, per module' % backend], base, None),
            ('%s: masquerade + fip, create' % backend, seconds['%s create' % backend], base, 1.3 if backend == 'nftables' else None),
            ('%s: masquerade + fip, create, against the two-task load' % backend, seconds['%s create' % backend],
             seconds['%s raw, per module' % backend], None),
            ('%s: masquerade + fip, re-run in sync' % backend, seconds['%s rerun' % backend], base, None),
        ]
    rows += [('%s: masquerade + fip, re-run in sync, %d FIPs per family' % (backend, LARGE), seconds['%s rerun %d' % (backend, LARGE)], None, None)
             for backend in ('nftables', 'iptables')]
    return report('NAT backends: %d IPv4 + %d IPv6 floating IPs and the masquerade rules' % (COUNT, COUNT), rows)


if __name__ == '__main__':
    sys.exit(0 if with_netns(main) else 1)
