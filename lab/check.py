# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The last step of `make lab`, and `lab.sh check`: print each node's host state as the
kernel holds it, run real-traffic checks derived from the inventory's cluster intent,
and end with one verdict line; exit 1 when any check failed.

usage: check.py INVENTORY [RECAP_LOG] [--expect-unchanged] [--reboot NODE] [--tamper NODE] [--nat-backend BACKEND]

With RECAP_LOG (the converge's output) the recap is checked too. With --reboot NODE,
NODE is then rebooted with no playbook run (lab/reboot.py): its dumps must equal those
before, its clusternet-node.service must be active, and every traffic check runs again.
With --tamper NODE, NODE's host state is then tampered with (lab/tamper.py): within its
reconcile interval clusternet-node-reconcile.service must journal and repair the drift of
each module tampered with, its metric file must count those repairs, and every traffic
check runs again. Each node's NAT rules are read from the backend it converged with: its
clusternet_nat_backend (the role's default iptables), or --nat-backend for every node (the
value lab.sh passed to the converge from CLUSTERNET_NAT_BACKEND).
"""

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hoststate as hs  # noqa: E402
import labnet  # noqa: E402
import reboot  # noqa: E402
import tamper  # noqa: E402

# The roles' defaults, which the lab keeps.
VIP_DEV = 'kube-dummy-if'
MASQ_CHAIN = 'CLUSTERNET-POSTRTG'
DNAT_CHAIN = 'CLUSTERNET-FIP-DNAT'
NFT_MASQ_CHAIN, NFT_DNAT_MAP = 'masq-postrouting', 'fip-dnat'  # the nftables backend's
RECAP = re.compile(r'^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)')
DNAT = re.compile(r'-d (\S+?)(?:/\d+)? .*--to-destination (\S+)')


class Verdict(object):
    def __init__(self):
        self.failed = []
        self.total = 0

    def check(self, what, ok, detail):
        self.total += 1
        if not ok:
            self.failed.append(what)
        print('  [%s] %s: %s' % ('ok' if ok else 'FAIL', what, detail))


def inventory(path):
    ansible_inventory = os.path.join(os.path.dirname(sys.executable), 'ansible-inventory')
    out = subprocess.run([ansible_inventory, '-i', path, '--list'], capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    hostvars = data['_meta']['hostvars']
    nodes = data['clusternet_nodes'].get('hosts') or []
    for child in data['clusternet_nodes'].get('children') or []:
        nodes += data[child].get('hosts') or []
    return dict((node, hostvars[node]) for node in sorted(nodes))


def by_family(values):
    return dict((hs.family(value), value) for value in values)


def nat_summary(host, fam, backend):
    """One family's masquerade and FIPs as the node's NAT backend holds them."""
    if backend == 'nftables':
        table = hs.nft(host, fam)
        if table is None:
            return 'table %s absent' % hs.NFT_TABLE[fam]
        masq = table['chains'].get(NFT_MASQ_CHAIN)
        return 'table %s: masquerade %s; FIPs %s' % (
            hs.NFT_TABLE[fam], '%s (%d rules)' % (NFT_MASQ_CHAIN, len(masq['rules'])) if masq else 'none',
            ', '.join(sorted(pair.replace(' : ', ' -> ') for pair in table['sets'].get(NFT_DNAT_MAP, ()))) or 'none')
    chains = hs.nat(host, fam)
    masq = chains.get(MASQ_CHAIN)
    fips = ['%s -> %s' % DNAT.search(rule).groups() for rule in chains.get(DNAT_CHAIN, []) if DNAT.search(rule)]
    return 'masquerade %s; FIPs %s' % (
        '%s (%d rules, %d jumps)' % (MASQ_CHAIN, len(masq), len(hs.jumps(chains, 'POSTROUTING', MASQ_CHAIN)))
        if masq is not None else 'none', ', '.join(fips) or 'none')


def summary(node, host, vips, backend):
    """One node's host state, read from its kernel."""
    sets = hs.ipsets(host)
    print('%s (%s)' % (node, host.backend.name))
    print('  ipsets     ' + ', '.join('%s %d' % (name, len(s['members'])) for name, s in sorted(sets.items())))
    on_dev = hs.addresses(host, VIP_DEV)
    print('  VIPs       %s: %s' % (VIP_DEV, ' '.join(on_dev) if on_dev is not None else 'absent'))
    srcs = sorted(set(route.get('prefsrc', '-') for vip in vips for route in hs.routes_to(host, vip) if route.get('table') == 'local'))
    print('  VIP src    ' + (' '.join(srcs) or 'none'))
    for fam in ('ipv4', 'ipv6'):
        print('  %s       %s' % (fam, nat_summary(host, fam, backend)))


def check_recap(verdict, path, nodes, expect_unchanged):
    recap = {}
    with open(path) as log:
        for line in log:
            match = RECAP.match(line)
            if match:
                recap[match.group(1)] = tuple(int(n) for n in match.group(2, 3, 4))
    bad = [node for node in nodes if node not in recap or recap[node][1] or recap[node][2]]
    verdict.check('converge', not bad, 'site.yml reached every node without failure' if not bad else 'failed or missing: %s' % ', '.join(bad))
    if expect_unchanged:
        changed = ['%s changed=%d' % (node, recap[node][0]) for node in nodes if node in recap and recap[node][0]]
        verdict.check('re-converge', not changed, 'changed=0 on every host' if not changed else ', '.join(changed))


def traffic(verdict, hosts, cluster, lab, after=''):
    """The VIP-route and traffic checks; after names the reboot they follow, if any."""
    services = cluster.get('services') or []
    vips = [ip for service in services for ip in service.get('cluster_ips', []) + service.get('external_ips', [])]
    outside = hs.box(labnet.outside_name(lab['prefix']))
    v6_vip = next((ip for service in services for ip in service.get('cluster_ips', []) if hs.family(ip) == 'ipv6'), None)
    for node, host in hosts.items():
        node_ips = by_family(cluster['nodes'][node]['node_ips'])
        wrong = []
        for vip in vips:
            routes = hs.routes_to(host, vip)
            if [(r.get('type'), r.get('table'), r.get('prefsrc')) for r in routes] != [('local', 'local', node_ips[hs.family(vip)])]:
                wrong.append('%s: %s' % (vip, routes))
        verdict.check('%s VIP routes%s' % (node, after), not wrong,
                      'each of %d VIPs has exactly one route: local, table local, src the node IP' % len(vips) if not wrong else '; '.join(wrong))
        if v6_vip:
            answer = hs.ask(host, v6_vip)
            ok = answer.get('host') == host.backend.name and answer.get('peer') == node_ips['ipv6']
            verdict.check('%s -> own IPv6 VIP%s' % (node, after), ok, '[%s]:8080 answered by %s, seen from %s (want %s)' % (
                v6_vip, answer.get('host'), answer.get('peer'), node_ips['ipv6']) if 'error' not in answer else '%s: %s' % (v6_vip, answer['error']))
    pods = cluster.get('pods') or []
    for fip in cluster.get('floating_ips') or []:
        pod = next((p for p in pods if fip['internal_ip'] in p['ips']), None)
        want = labnet.pod_name(lab['prefix'], pod) if pod else None
        answer = hs.ask(outside, fip['external_ip'])
        ok = want is not None and answer.get('host') == want and answer.get('local') == fip['internal_ip']
        verdict.check('outside -> FIP %s%s' % (fip['external_ip'], after), ok, 'answered by %s on %s (want %s on %s)' % (
            answer.get('host'), answer.get('local'), want, fip['internal_ip']) if 'error' not in answer else answer['error'])
    outside_ips = by_family(lab['outside'])
    masqueraded = set(hs.family(cidr) for cidr in cluster['cluster_cidrs'])
    for pod in pods:
        node_ips = by_family(cluster['nodes'][pod['node']]['node_ips'])
        for ip in pod['ips']:
            fam = hs.family(ip)
            if fam not in masqueraded:
                continue
            answer = hs.ask(hs.box(labnet.pod_name(lab['prefix'], pod)), outside_ips[fam])
            ok = answer.get('source') == ip and answer.get('peer') == node_ips[fam]
            verdict.check('pod %s masqueraded (%s)%s' % (pod['name'], fam, after), ok, 'left as %s, outside saw %s (want %s)' % (
                answer.get('source'), answer.get('peer'), node_ips[fam]) if 'error' not in answer else answer['error'])


def check_tamper(verdict, node, done):
    """The reconcile's journal names a drifted object of each module tampered with; its
    metric file counts a repair for each."""
    print('  tampered:\n    %s' % '\n    '.join(done['done']))
    print('  journal of %s:\n    %s' % (tamper.UNIT, done['journal'].replace('\n', '\n    ')))
    modules = ('ipset', 'masquerade', 'vip')
    unjournaled = [module for module in modules if 'drift: module=%s ' % module not in done['journal']]
    verdict.check('%s tampered: drift journaled' % node, not unjournaled and 'repaired' in done['journal'],
                  'a drifted object of each of %s, then repaired, %.0f s after the tampering' % (', '.join(modules), done['seconds'])
                  if not unjournaled else 'no drift line for %s' % ', '.join(unjournaled))

    def repairs(metrics, module):
        return sum(value for (name, labels), value in metrics.items()
                   if name == 'clusternet_node_reconcile_repairs_total' and dict(labels)['module'] == module)
    uncounted = [module for module in modules if repairs(done['after'], module) <= repairs(done['before'], module)]
    verdict.check('%s tampered: metrics' % node, not uncounted and done['after'].get(('clusternet_node_reconcile_success', ())) == 1,
                  '%s: clusternet_node_reconcile_repairs_total went up for %s, last reconcile succeeded' % (
                      tamper.METRICS, ', '.join(modules)) if not uncounted else 'no repair counted for %s' % ', '.join(uncounted))


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('inventory')
    parser.add_argument('recap', nargs='?', help='the converge output whose recap is checked')
    parser.add_argument('--expect-unchanged', action='store_true', help='the lab existed already: site.yml must change nothing')
    parser.add_argument('--reboot', metavar='NODE', help='then reboot NODE with no playbook run and check again')
    parser.add_argument('--tamper', metavar='NODE', help='then tamper with NODE\'s host state, wait for its reconcile, check again')
    parser.add_argument('--nat-backend', choices=('iptables', 'nftables'), help='every node\'s NAT backend (default: its clusternet_nat_backend)')
    args = parser.parse_args(argv)

    nodes = inventory(args.inventory)
    first = nodes[sorted(nodes)[0]]
    cluster, lab = first['clusternet_cluster'], first['clusternet_lab']
    hosts = dict((node, hs.box(hostvars['ansible_host'])) for node, hostvars in nodes.items())
    services = cluster.get('services') or []
    vips = [ip for service in services for ip in service.get('cluster_ips', []) + service.get('external_ips', [])]
    backends = dict((node, args.nat_backend or hostvars.get('clusternet_nat_backend', 'iptables')) for node, hostvars in nodes.items())

    print('\n== host state per node ==')
    for node, host in hosts.items():
        summary(node, host, vips, backends[node])

    print('\n== checks ==')
    verdict = Verdict()
    if args.recap:
        check_recap(verdict, args.recap, nodes, args.expect_unchanged)
    traffic(verdict, hosts, cluster, lab)
    if args.reboot:
        print('\n== reboot %s, no playbook run ==' % args.reboot)
        done = reboot.reboot(args.inventory, nodes[args.reboot]['ansible_host'])
        print('  journal of %s:\n    %s' % (reboot.UNIT, done['journal'].replace('\n', '\n    ')))
        verdict.check('%s rebooted: %s' % (args.reboot, reboot.UNIT), done['unit'] == 'active', '%s after a %.1f s boot' % (done['unit'], done['seconds']))
        verdict.check('%s rebooted: host state' % args.reboot, done['equal'],
                      'ipset save, nat and our nft tables both families, kube-dummy-if, local routes both families equal those before'
                      if done['equal'] else done['diff'])
        traffic(verdict, hosts, cluster, lab, after=' after %s reboot' % args.reboot)

    if args.tamper:
        print('\n== tamper %s, no playbook run ==' % args.tamper)
        check_tamper(verdict, args.tamper, tamper.run(nodes[args.tamper]['ansible_host'], backends[args.tamper]))
        traffic(verdict, hosts, cluster, lab, after=' after %s tamper' % args.tamper)

    if verdict.failed:
        print('\nLAB FAILED: %d of %d checks failed: %s' % (len(verdict.failed), verdict.total, ', '.join(verdict.failed)))
        return 1
    print('\nLAB OK: all %d checks passed on %d nodes' % (verdict.total, len(hosts)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
