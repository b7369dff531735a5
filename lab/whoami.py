# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's traffic probe, run by the containers' /usr/bin/python3 (stdlib only).

`serve [PORT]` is every lab container's main process: a dual-stack TCP listener that
answers each connection with one JSON line saying who answered (`host`), on which
address (`local`) and whom it saw as the peer (`peer`). `ask ADDRESS [PORT]`
connects, prints that line plus the source address the client used (`source`), and
exits non-zero when nothing answered in time. A check therefore reads both ends of
one real connection: what left the client and what arrived at the server.
"""

import json
import socket
import sys

PORT = 8080
TIMEOUT = 3.0


def plain(address):
    """An IPv4 peer on a dual-stack socket is ::ffff:a.b.c.d."""
    return address[7:] if address.startswith('::ffff:') else address


def serve(port):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(('::', port))
    sock.listen(16)
    while True:
        conn, peer = sock.accept()
        with conn:
            answer = {'host': socket.gethostname(), 'local': plain(conn.getsockname()[0]), 'peer': plain(peer[0])}
            conn.sendall((json.dumps(answer) + '\n').encode())


def ask(address, port):
    try:
        with socket.create_connection((address, port), timeout=TIMEOUT) as conn:
            source = conn.getsockname()[0]
            answer = json.loads(conn.makefile().readline())
    except (OSError, ValueError) as exc:
        print(json.dumps({'error': '%s %s' % (type(exc).__name__, exc)}))
        return 1
    answer['source'] = source
    print(json.dumps(answer))
    return 0


if __name__ == '__main__':
    if sys.argv[1:2] == ['serve']:
        serve(int(sys.argv[2]) if len(sys.argv) > 2 else PORT)
    elif sys.argv[1:2] == ['ask'] and len(sys.argv) in (3, 4):
        sys.exit(ask(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else PORT))
    else:
        sys.exit('usage: whoami.py serve [PORT] | ask ADDRESS [PORT]')
