"""Which way should the nftables backend read its table: the `nft -j list table` CLI or
libnftables' JSON API (Debian's python3-nftables, in process)? Not part of `make bench`:
a one-off measurement behind a design choice (issue 24), printed as medians.

Loads one table of FIPS FIPs per family into a throwaway network namespace, then times,
inside it, with the system Python (the one python3-nftables installs into):
  cli:  subprocess `nft -j list table` + nft.parse_table
  lib:  nftables.Nftables().cmd('list table ...') with JSON output + nft.parse_table
and the same for applying the 5,000-FIP transaction (`nft -f -` vs Nftables().cmd(text)).
"""

import ipaddress
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))

from harness import Netns, link_collection  # noqa: E402

sys.path.insert(0, link_collection())

from ansible_collections.clusternet.node.plugins.module_utils import nft  # noqa: E402

FIPS = int(os.environ.get('NFT_FIPS', '5000'))
REPEATS = int(os.environ.get('BENCH_REPEATS', '7'))
SYSTEM_PYTHON = '/usr/bin/python3'


def content(family):
    """FIPS pairs: external 198.18.0.0/15 (2001:db8:ff::/64) -> internal 10.64.0.0/10 (fd00:64::/64)."""
    ext, intl = ((ipaddress.ip_address('198.18.0.1'), ipaddress.ip_address('10.64.0.1')) if family == 'ipv4'
                 else (ipaddress.ip_address('2001:db8:ff::1'), ipaddress.ip_address('fd00:64::1')))
    masquerade = {'cluster_cidrs': [ipaddress.ip_network('10.64.0.0/10' if family == 'ipv4' else 'fd00:64::/48')],
                  'pod_cidrs': [], 'skip_mark': (0x4000, 0x4000), 'random_fully': True}
    return masquerade, dict((ext + i, intl + i) for i in range(FIPS))


def median(fn):
    times = []
    for _repeat in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child():
    """Runs inside the namespace: time both ways and print one line per measurement."""
    import nftables  # python3-nftables
    lib = nftables.Nftables()
    lib.set_json_output(True)

    def cli_run(args, data=None):
        proc = subprocess.run(args, input=data, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    kernel = nft.NftKernel(cli_run)

    def lib_read(family):
        rc, out, err = lib.cmd('list table %s %s' % (nft.NFT_FAMILY[family], nft.TABLE))
        if rc != 0:
            raise SystemExit(err)
        return out

    for family in ('ipv4', 'ipv6'):
        measure(family, kernel, lib, lib_read)


def measure(family, kernel, lib, lib_read):
    tx = nft.table_transaction(family, *content(family))
    text = tx.render()
    cli_write = median(lambda: kernel.apply(tx))

    def lib_apply():
        if lib.cmd(text)[0] != 0:
            raise SystemExit('libnftables refused the transaction')
    lib_write = median(lib_apply)
    for way, read in (('cli', lambda: kernel.read(family)), ('lib', lambda: lib_read(family))):
        table = nft.parse_table(family, read())
        assert len(table.fips) == FIPS and table.drift == [], (way, table.drift)
    cli_read = median(lambda: nft.parse_table(family, kernel.read(family)))
    lib_read_parse = median(lambda: nft.parse_table(family, lib_read(family)))
    cli_raw = median(lambda: kernel.read(family))
    lib_raw = median(lambda: lib_read(family))
    print('%s %d FIPs: read+parse  cli %.3f s  lib %.3f s   (read alone: cli %.3f s  lib %.3f s)' % (
        family, FIPS, cli_read, lib_read_parse, cli_raw, lib_raw))
    print('%s %d FIPs: apply       cli %.3f s  lib %.3f s' % (family, FIPS, cli_write, lib_write))


def main():
    if not os.path.exists(SYSTEM_PYTHON) or subprocess.run([SYSTEM_PYTHON, '-c', 'import nftables'], check=False).returncode:
        raise SystemExit('%s cannot import nftables: apt-get install python3-nftables' % SYSTEM_PYTHON)
    ns = Netns()
    try:
        ns.run('nft --version')
        proc = subprocess.run(['ip', 'netns', 'exec', ns.name, SYSTEM_PYTHON, os.path.abspath(__file__), '--child'], check=False)
        sys.exit(proc.returncode)
    finally:
        ns.delete()


if __name__ == '__main__':
    child() if sys.argv[1:] == ['--child'] else main()
