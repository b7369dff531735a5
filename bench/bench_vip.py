"""500 IPv4 + 500 IPv6 VIPs: clusternet.node.vip vs one `ip -batch` file run by
ansible.builtin.command (address adds and route replaces). Target: at most 2.0x.

Every timed run starts from an empty, up interface (recreated untimed). The module
also deletes the kernel's IPv6 local routes, which the batch leaves in place.
"""

import ipaddress
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import play, report, timed, with_netns  # noqa: E402

COUNT = 500
TARGET = 2.0
IF = 'kube-dummy-if'
NODE4, NODE6 = '192.168.50.10', 'fd50::10'
VIPS4 = [str(ipaddress.ip_address('10.96.0.1') + i) for i in range(COUNT)]
VIPS6 = [str(ipaddress.ip_address('fd00:10:96::1') + i) for i in range(COUNT)]


def link_kind(ns):
    if ns.run('ip link add probe0 type dummy', check=False).returncode == 0:
        ns.run('ip link del probe0')
        return 'dummy'
    return 'ifb'


def batch_text():
    lines = []
    for vips, node, length in ((VIPS4, NODE4, 32), (VIPS6, NODE6, 128)):
        for vip in vips:
            lines.append('address add %s/%d dev %s' % (vip, length, IF))
            lines.append('route replace local %s dev %s table local proto kernel scope host src %s' % (vip, IF, node))
    return '\n'.join(lines) + '\n'


def check_module_result(ns):
    """The timed module runs must have done the whole job: read it back from the kernel."""
    routes = json.loads(ns.out('ip -j -6 route show table all'))
    ours = [r for r in routes if r.get('prefsrc') == NODE6 and r.get('dev') == IF]
    strays = [r for r in routes if r.get('dev') == IF and r.get('prefsrc') is None and r['dst'] in set(VIPS6)]
    v4 = [r for r in json.loads(ns.out('ip -j -4 route show table local')) if r.get('prefsrc') == NODE4 and r.get('dev') == IF]
    if len(ours) != COUNT or strays or len(v4) != COUNT:
        raise SystemExit('module left the kernel wrong: %d IPv6 routes, %d strays, %d IPv4 routes' % (len(ours), len(strays), len(v4)))


def main(ns):
    kind = link_kind(ns)
    ns.run('sysctl -qw net.ipv6.conf.default.accept_dad=0 && ip link add eth0 type veth peer name eth0p && ip link set eth0 up'
           ' && ip link set eth0p up && ip addr add %s/24 dev eth0 && ip addr add %s/64 dev eth0' % (NODE4, NODE6))

    def fresh(netns):
        # Ours and empty: the alias is the collection's marker (module_utils/vip.py MARKER).
        netns.run('ip link del %s 2>/dev/null; ip link add %s type %s && ip link set %s alias clusternet.node up' % (IF, IF, kind, IF))

    vip_args = {'interface': IF, 'link_kind': kind, 'addresses': VIPS4 + VIPS6, 'node_ips': [NODE4, NODE6]}
    module_play = play([{'clusternet.node.vip': vip_args}])
    with tempfile.NamedTemporaryFile('w', suffix='.ipbatch') as handle:
        handle.write(batch_text())
        handle.flush()
        baseline = timed(ns, play([{'ansible.builtin.command': 'ip -batch %s' % handle.name}]), setup=fresh)
    module = timed(ns, module_play, setup=fresh)
    check_module_result(ns)
    unchanged = timed(ns, module_play)
    bounced = timed(ns, module_play, setup=lambda netns: netns.run(
        'sysctl -qw net.ipv6.conf.%s.keep_addr_on_down=1 && ip link set %s down && ip link set %s up' % (IF, IF, IF)))
    check_module_result(ns)
    return report('vip: %d IPv4 + %d IPv6 VIPs on %s (%s)' % (COUNT, COUNT, IF, kind), [
        ('ip -batch via ansible.builtin.command', baseline, None, None),
        ('clusternet.node.vip, from empty', module, baseline, TARGET),
        ('clusternet.node.vip, in sync (no change)', unchanged, baseline, None),
        ('clusternet.node.vip, repair after link bounce', bounced, baseline, None),
    ])


if __name__ == '__main__':
    sys.exit(0 if with_netns(main) else 1)
