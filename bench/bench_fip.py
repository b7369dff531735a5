"""500 IPv4 + 500 IPv6 floating IPs: clusternet.node.fip vs. the same rules in one
iptables-restore --noflush per family through ansible.builtin.shell.

Target: the module's first run costs at most 1.5x the shell baseline. The module's
in-sync re-run and its removal of every FIP are printed for information.
"""

import ipaddress
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import interleaved, play, report, with_netns  # noqa: E402

COUNT = 500
RANGES = (('100.64.0.0/16', '10.10.0.0/16'), ('2001:db8:ff::/64', 'fd00:10::/64'))
FLUSH = 'iptables -t nat -F && iptables -t nat -X && ip6tables -t nat -F && ip6tables -t nat -X'


def pairs():
    out = []
    for external, internal in RANGES:
        ext, intl = ipaddress.ip_network(external), ipaddress.ip_network(internal)
        out.append([(ext[i + 1], intl[i + 1]) for i in range(COUNT)])
    return out


def payload(family_pairs):
    """The rules the module writes, as one restore transaction of table nat."""
    lines = ['*nat', ':CLUSTERNET-FIP-DNAT - [0:0]', ':CLUSTERNET-FIP-SNAT - [0:0]']
    for ext, intl in family_pairs:
        tag = '-m comment --comment "clusternet fip %s"' % ext
        lines.append('-A CLUSTERNET-FIP-DNAT -d %s/%d %s -j DNAT --to-destination %s' % (ext, ext.max_prefixlen, tag, intl))
    for ext, intl in family_pairs:
        tag = '-m comment --comment "clusternet fip %s"' % ext
        lines.append('-A CLUSTERNET-FIP-SNAT -s %s/%d %s -j SNAT --to-source %s' % (intl, intl.max_prefixlen, tag, ext))
    jump = '-m comment --comment "clusternet fip" -j CLUSTERNET-FIP-'
    lines += ['-I PREROUTING 1 %sDNAT' % jump, '-I OUTPUT 1 %sDNAT' % jump, '-I POSTROUTING 1 %sSNAT' % jump, 'COMMIT', '']
    return '\n'.join(lines)


def main(ns):
    families = pairs()
    fips = [{'external_ip': str(ext), 'internal_ip': str(intl)} for family_pairs in families for ext, intl in family_pairs]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, family_pairs in zip(('v4', 'v6'), families):
            files.append(os.path.join(tmp, name))
            with open(files[-1], 'w') as handle:
                handle.write(payload(family_pairs))
        restore_both = 'iptables-restore --noflush < %s && ip6tables-restore --noflush < %s' % tuple(files)

        def clean(netns):
            netns.run(FLUSH)

        def programmed(netns):
            netns.run(FLUSH + ' && ' + restore_both)

        module_play = play([{'clusternet.node.fip': {'floating_ips': fips}}])
        seconds = interleaved(ns, [
            ('shell', play([{'ansible.builtin.shell': restore_both}]), clean),
            ('create', module_play, clean),
            ('rerun', module_play, programmed),
            ('remove', play([{'clusternet.node.fip': {'floating_ips': []}}]), programmed),
        ])
        rules = ns.out('iptables-save -t nat; ip6tables-save -t nat').count('"clusternet fip ')
    if rules:
        raise SystemExit('removal left %d FIP rules behind' % rules)
    shell = seconds['shell']
    return report('fip: %d IPv4 + %d IPv6 floating IPs' % (COUNT, COUNT), [
        ('ansible.builtin.shell: one iptables-restore --noflush per family', shell, None, None),
        ('clusternet.node.fip: create', seconds['create'], shell, 1.5),
        ('clusternet.node.fip: re-run, in sync', seconds['rerun'], shell, None),
        ('clusternet.node.fip: remove all (exclusive, empty list)', seconds['remove'], shell, None),
    ])


if __name__ == '__main__':
    sys.exit(0 if with_netns(main) else 1)
