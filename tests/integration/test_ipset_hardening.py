"""clusternet.node.ipset against hostile and edge-case input, on the real kernel, inside
throwaway network namespaces (issue 12, the ipset classes).

- values ipset's parsers would misread, and out-of-range numbers, are refused before the
  first write: the full `ipset save`, `iptables-save` and `ip6tables-save` are unchanged;
- `X nomatch` in the kernel is not the entry X;
- a replacement that does not fit beside the old entries is filled into a temporary set
  and swapped in: the set is never empty or partly replaced, not even when the restore is
  killed, and the next run removes what a killed run left;
- a restore that fails part-way names exactly what it applied.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from harness import REPO, run_playbook

sys.path.insert(0, os.path.join(REPO, 'build', 'collections'))
from ansible_collections.clusternet.node.plugins.module_utils.ipset import tmp_name  # noqa: E402

OLD4 = ['10.1.%d.%d' % (i // 250, i % 250 + 1) for i in range(50000)]
NEW4 = ['10.2.%d.%d' % (i // 250, i % 250 + 1) for i in range(50000)]
OLD6 = ['2001:db8:1::%x' % (i + 1) for i in range(50000)]
NEW6 = ['2001:db8:2::%x' % (i + 1) for i in range(50000)]


def dumps(ns):
    """Everything a refused run must leave as it was: every set and both families' rules."""
    return {
        'ipset': sorted(ns.out('ipset save').splitlines()),
        'iptables': [line for line in ns.out('iptables-save').splitlines() if not line.startswith('#')],
        'ip6tables': [line for line in ns.out('ip6tables-save').splitlines() if not line.startswith('#')],
    }


def saved(ns, name):
    """The `add` lines of one set, without `add NAME ` (entry and its extras); None if it does not exist."""
    proc = ns.run('ipset save %s' % name, check=False)
    if proc.returncode != 0:
        assert 'does not exist' in proc.stderr, proc.stderr
        return None
    return set(line.split(' ', 2)[2] for line in proc.stdout.splitlines() if line.startswith('add '))


def names(ns):
    return set(ns.out('ipset list -n').split())


def plant(ns):
    """Foreign state that must survive: sets, one referenced by a rule in each family."""
    ns.run('ipset create other hash:ip && ipset add other 10.9.9.9 && '
           'ipset create inet6:other hash:net family inet6 && ipset add inet6:other 2001:db8:9::/48 && '
           'ipset create pods hash:ip && ipset add pods 10.0.0.5 && '
           'iptables -w -A INPUT -m set --match-set other src -j DROP && '
           'ip6tables -w -A INPUT -m set --match-set inet6:other src -j DROP')


# --- class 1: values that would reach ipset's option parser or fail mid-batch -------------

REFUSED = [
    ({'name': '-n'}, "'-n' starts with \"-\""),
    ({'name': '-exist'}, "'-exist' starts with \"-\""),
    ({'name': '-f', 'families': ['ipv4']}, "'-f' starts with \"-\""),
    ({'name': '--name'}, "'--name' starts with \"-\""),
    ({'name': 'pods', 'ipv6_name': 'inet6:-n'}, "'-n' starts with \"-\""),
    ({'name': 'a"b'}, "contains '\"'"),
    ({'name': '"pods"', 'families': ['ipv4']}, "contains '\"'"),
    ({'name': 'po,ds'}, "contains ','"),
    ({'name': 'p\u00f6ds'}, "contains '\u00f6'"),
    ({'name': 'po ds', 'families': ['ipv4']}, 'whitespace'),
    ({'name': tmp_name('pods'), 'families': ['ipv4']}, 'temporary sets'),
    ({'hashsize': -1}, 'hashsize -1 is out of range'),
    ({'hashsize': 0}, 'hashsize 0 is out of range'),
    ({'hashsize': 2 ** 40}, 'hashsize 1099511627776 is out of range'),
    ({'hashsize': 1000}, 'hashsize 1000 is not a power of two'),
    ({'maxelem': 0}, 'maxelem 0 is out of range'),
    ({'maxelem': -5}, 'maxelem -5 is out of range'),
    ({'maxelem': 2 ** 40}, 'maxelem 1099511627776 is out of range'),
    ({'set_type': 'hash:net,iface', 'entries': ['10.0.0.0/8,eth0', '10.1.0.0/16,' + 'e' * 16]}, "'10.1.0.0/16,%s'" % ('e' * 16)),
    ({'set_type': 'hash:net,iface', 'entries': ['10.0.0.0/8,' + '\u00e9' * 8]}, 'interface name'),
    ({'set_type': 'hash:net,iface', 'entries': ['10.0.0.0/8,physdev:a"b']}, 'interface name'),
    ({'set_type': 'hash:ip,port', 'entries': ['10.0.0.1,tcp:80', '10.0.0.1,tcp:\u0668\u0660']}, "'10.0.0.1,tcp:\u0668\u0660'"),
    ({'set_type': 'hash:net', 'entries': ['10.0.0.0/8', '10.0.0.0/\u0668']}, "'10.0.0.0/\u0668'"),
    ({'set_type': 'hash:net', 'entries': ['2001:db8::/\u0663\u0662']}, "'2001:db8::/\u0663\u0662'"),
    ({'entries': ['10.0.0.1', '0.0.0.0']}, "'0.0.0.0' does not fit set_type hash:ip"),
    ({'set_type': 'hash:ip,port', 'entries': ['2001:db8::1,udp:53', '::,tcp:80']}, "'::,tcp:80'"),
]


@pytest.mark.parametrize('args, message', REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_refused_input_names_the_value_and_changes_nothing(netns, args, message):
    plant(netns)
    before = dumps(netns)
    result = netns.module('ipset', dict({'name': 'fresh', 'entries': ['10.0.0.1', '2001:db8::1']}, **args), expect_failure=True)
    assert message in result['msg']
    assert dumps(netns) == before


@pytest.mark.parametrize('set_type, entry', [('hash:ip', '0.0.0.0'), ('hash:ip family inet6', '::'),
                                             ('hash:ip,port', '0.0.0.0,tcp:80'), ('hash:ip,port family inet6', '::,udp:53')])
def test_the_kernel_refuses_the_all_zero_address_where_validation_does(netns, set_type, entry):
    """Why the all-zero address is refused in these types: ipset restore would create the
    set and stop at the entry, half-way through the batch."""
    netns.run('ipset create z %s' % set_type)
    assert netns.run('ipset add z %s' % entry, check=False).returncode != 0
    assert saved(netns, 'z') == set()


def test_the_all_zero_address_is_stored_in_the_three_part_types(netns):
    args = {'name': 'zeros', 'set_type': 'hash:ip,port,ip', 'entries': ['0.0.0.0,tcp:80,0.0.0.0', '::,udp:53,::']}
    assert netns.module('ipset', args)['changed'] is True
    assert saved(netns, 'zeros') == {'0.0.0.0,tcp:80,0.0.0.0'}
    assert saved(netns, 'inet6:zeros') == {'::,udp:53,::'}
    assert netns.module('ipset', args)['changed'] is False


def test_ipset_has_no_end_of_options_marker(netns):
    """Why a leading "-" is refused rather than passed after "--": ipset 7 takes "--" as
    the set name, and still reads an option after it."""
    proc = netns.run('ipset create -- x hash:ip', check=False)
    assert proc.returncode != 0 and "typename 'x' is unknown" in proc.stderr
    netns.run('ipset create -- hash:ip')
    assert names(netns) == {'--'}


def test_names_with_characters_ipset_passes_unchanged_round_trip(netns):
    name = "a'b#c:d.e+f_g=h@%$;/"
    args = {'name': name, 'entries': ['10.0.0.1', '2001:db8::1']}
    assert netns.module('ipset', args)['changed'] is True
    assert names(netns) == {name, 'inet6:' + name}
    assert saved(netns, shlex.quote(name)) == {'10.0.0.1'}
    assert netns.module('ipset', args)['changed'] is False
    netns.module('ipset', dict(args, state='absent'))
    assert names(netns) == set()


def test_iface_of_15_bytes_and_physdev_are_stored(netns):
    iface = '\u00e9' * 7 + 'e'  # 8 characters, 15 bytes
    args = {'name': 'ifs', 'set_type': 'hash:net,iface', 'families': ['ipv4'],
            'entries': ['10.0.0.0/8,' + iface, '10.1.0.0/16,physdev:' + 'e' * 15]}
    netns.module('ipset', args)
    assert saved(netns, 'ifs') == {'10.0.0.0/8,' + iface, '10.1.0.0/16,physdev:' + 'e' * 15}
    assert netns.module('ipset', args)['changed'] is False


# --- class 2: nomatch, and round trips of every value class ------------------------------

def test_a_nomatch_entry_is_not_the_plain_entry(netns):
    netns.run('ipset create n hash:net && ipset add n 10.0.0.0/8 nomatch && ipset add n 10.1.0.0/16 nomatch && '
              'ipset add n 10.3.0.0/16 && ipset create inet6:n hash:net family inet6 && ipset add inet6:n 2001:db8::/32 nomatch')
    args = {'name': 'n', 'set_type': 'hash:net', 'entries': ['10.0.0.0/8', '10.3.0.0/16', '2001:db8::/32']}
    result = netns.module('ipset', args)
    assert saved(netns, 'n') == {'10.0.0.0/8', '10.3.0.0/16'}
    assert saved(netns, 'inet6:n') == {'2001:db8::/32'}
    assert netns.run('ipset test n 10.0.0.1', check=False).returncode == 0
    assert result['ipv4']['removed'] == ['10.1.0.0/16 nomatch']
    assert netns.module('ipset', args)['changed'] is False


def test_nomatch_entries_without_exclusive_are_kept_unless_listed(netns):
    netns.run('ipset create n hash:net,port && ipset add n 10.0.0.0/8,tcp:80 nomatch && ipset add n 10.1.0.0/16,tcp:80 nomatch')
    args = {'name': 'n', 'set_type': 'hash:net,port', 'families': ['ipv4'], 'exclusive': False, 'entries': ['10.0.0.0/8,http']}
    netns.module('ipset', args)
    assert saved(netns, 'n') == {'10.0.0.0/8,tcp:80', '10.1.0.0/16,tcp:80 nomatch'}
    assert netns.module('ipset', args)['changed'] is False


ROUND_TRIPS = [
    ('hash:ip', ['10.0.0.1/32', '2001:DB8:0:0::1', '::ffff:1.2.3.4', '2001:db8:0:1:1:1:1:1', 'fd00::1/128'],
     ['10.0.0.1', '2001:db8::1', '::ffff:1.2.3.4', '2001:db8:0:1:1:1:1:1', 'fd00::1']),
    ('hash:net', ['0.0.0.0/0', '::/0', '2001:db8:0::/48', '10.0.0.0/8'],
     ['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1', '2001:db8::/48', '10.0.0.0/8']),
    ('hash:ip,port', ['10.0.0.1,https', '10.0.0.1,udp:domain', '2001:db8::1,sctp:9', '2001:db8::1,UDPLITE:0'],
     ['10.0.0.1,tcp:443', '10.0.0.1,udp:53', '2001:db8::1,sctp:9', '2001:db8::1,udplite:0']),
    ('hash:net,port', ['::/0,ssh', '10.0.0.0/8,udp:65535'], ['::/1,tcp:22', '8000::/1,tcp:22', '10.0.0.0/8,udp:65535']),
    ('hash:ip,port,ip', ['2001:db8::1,tcp:80,2001:DB8::2'], ['2001:db8::1,tcp:80,2001:db8::2']),
    ('hash:ip,port,net', ['2001:db8::1,tcp:80,::/0', '10.0.0.1,80,10.0.0.0/24'],
     ['2001:db8::1,tcp:80,::/1', '2001:db8::1,tcp:80,8000::/1', '10.0.0.1,tcp:80,10.0.0.0/24']),
    ('hash:net,iface', ['::/0,eth0', '2001:db8::/64,physdev:br0'], ['::/0,eth0', '2001:db8::/64,physdev:br0']),
]


@pytest.mark.parametrize('set_type, given, kernel', ROUND_TRIPS, ids=[case[0] for case in ROUND_TRIPS])
def test_every_value_class_round_trips(netns, set_type, given, kernel):
    args = {'name': 'rt', 'set_type': set_type, 'entries': given}
    netns.module('ipset', args)
    assert (saved(netns, 'rt') or set()) | (saved(netns, 'inet6:rt') or set()) == set(kernel)
    assert netns.module('ipset', args)['changed'] is False


@pytest.mark.parametrize('maxelem', [65536, 3], ids=['in-place', 'swap'])
def test_live_set_with_timeout_counters_comment_keeps_what_kept_entries_carry(netns, maxelem):
    """A set another tool created with timeout, counters and comment: the module manages its
    entries; a kept entry keeps its comment and counters, in place and through a swap."""
    netns.run('ipset create live hash:ip timeout 0 counters comment maxelem %d && '
              'ipset add live 10.0.0.1 comment "keep me" packets 7 bytes 700 && ipset add live 10.0.0.2 timeout 600 && '
              'ipset add live 10.0.0.3' % maxelem)
    args = {'name': 'live', 'families': ['ipv4'], 'entries': ['10.0.0.1', '10.0.0.4', '10.0.0.5']}
    netns.module('ipset', args)
    kept = saved(netns, 'live')
    assert '10.0.0.1 timeout 0 packets 7 bytes 700 comment "keep me"' in kept
    assert set(line.split()[0] for line in kept) == {'10.0.0.1', '10.0.0.4', '10.0.0.5'}
    assert ' timeout 0 counters comment' in netns.out('ipset save live').splitlines()[0]
    assert netns.module('ipset', args)['changed'] is False
    assert names(netns) == {'live'}


# --- class 3: a replacement larger than maxelem allows beside the old entries ---------------

def counter(ns, names_):
    """Sample the entry counts of the sets until the returned stop(), which returns the
    samples, one 'COUNT,COUNT' line each."""
    tmp = tempfile.mkdtemp(prefix='ipset-count-')
    with open(os.path.join(tmp, 'probe.sh'), 'w') as handle:
        handle.write('while [ ! -e stop ]; do { %s; } | paste -sd, >> counts; done\n' % '; '.join(
            'ipset list -t %s | sed -n "s/^Number of entries: //p"' % name for name in names_))
    proc = ns.popen('cd %s && timeout 300 sh probe.sh' % tmp)

    def stop():
        open(os.path.join(tmp, 'stop'), 'w').close()
        proc.wait(timeout=60)
        with open(os.path.join(tmp, 'counts')) as handle:
            return [line for line in handle.read().splitlines() if line]
    return stop


def test_50k_to_50k_per_family_is_swapped_never_empty_and_keeps_references(netns):
    netns.module('ipset', {'name': 'big', 'entries': OLD4 + OLD6})
    netns.run('iptables -w -A INPUT -m set --match-set big src -j ACCEPT && '
              'ip6tables -w -A INPUT -m set --match-set inet6:big src -j ACCEPT')
    stop = counter(netns, ['big', 'inet6:big'])
    time.sleep(0.3)
    result = netns.module('ipset', {'name': 'big', 'entries': NEW4 + NEW6})
    samples = stop()
    assert len(samples) >= 5
    assert set(samples) == {'50000,50000'}, sorted(set(samples))
    assert saved(netns, 'big') == set(NEW4) and saved(netns, 'inet6:big') == set(NEW6)
    assert len(result['ipv4']['added']) == len(result['ipv6']['removed']) == 50000
    assert names(netns) == {'big', 'inet6:big'}
    # the rules still use the sets, now holding the new entries
    assert 'References: 1' in netns.out('ipset list -t big') and 'References: 1' in netns.out('ipset list -t inet6:big')
    assert netns.module('ipset', {'name': 'big', 'entries': NEW4 + NEW6})['changed'] is False


def test_swap_keeps_entries_another_writer_adds_meanwhile(netns):
    """A writer starts adding when the module's restore starts (after its read, so none of
    its entries are the module's to remove) and goes on past the swap: every entry it
    added is in the set afterwards, through the carry-over or straight into the new set."""
    old, new = OLD4[:40000], NEW4[:40000]
    netns.module('ipset', {'name': 'big', 'families': ['ipv4'], 'entries': old})
    tmp = tempfile.mkdtemp(prefix='ipset-writer-')
    writer = ("(cd %s && i=0; while [ ! -e stop ]; do i=$((i+1)); e=10.200.$((i / 250)).$((i %% 250 + 1)); "
              "ipset add big $e && echo $e >> written; done) >/dev/null 2>&1 &" % tmp)
    run_with_fault(netns, {'name': 'big', 'families': ['ipv4'], 'entries': new}, writer, expect_failure=False)
    time.sleep(0.5)
    open(os.path.join(tmp, 'stop'), 'w').close()
    time.sleep(0.5)
    with open(os.path.join(tmp, 'written')) as handle:
        written = set(handle.read().split())
    assert len(written) > 50
    assert saved(netns, 'big') == set(new) | written
    assert names(netns) == {'big'}


def restore_pid(ns):
    """The pid of an `ipset restore` running inside ns, or None."""
    inode = os.stat('/run/netns/%s' % ns.name).st_ino
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
            if argv[:2] == [b'/usr/sbin/ipset', b'restore'] and os.stat('/proc/%s/ns/net' % pid).st_ino == inode:
                return int(pid)
        except OSError:
            continue
    return None


def start_module(ns, args):
    """The module in a process of its own (its own ansible-playbook), whatever its outcome."""
    play = tempfile.NamedTemporaryFile('w', suffix='.json', delete=False)
    with play:
        json.dump([{'hosts': 'all', 'gather_facts': False, 'tasks': [{'clusternet.node.ipset': args}]}], play)
    return subprocess.Popen([sys.executable, '-c', RUN_MODULE, ns.name, play.name], cwd=os.path.join(REPO, 'tests'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


RUN_MODULE = '''
import sys
from harness import run_playbook
print(run_playbook(open(sys.argv[2]).read(), netns=sys.argv[1]).stdout)
'''


def kill_restore_after(netns, delay):
    """Replace 50k old entries per family by 50k new ones, SIGKILL the module's first
    `ipset restore` `delay` seconds after it starts; check each set holds exactly its old
    or its new entries, then that the next run converges and removes any temporary set
    the killed one left (with a warning naming it). Returns (sets still old, sets left)."""
    netns.module('ipset', {'name': 'big', 'entries': OLD4 + OLD6})
    run = start_module(netns, {'name': 'big', 'entries': NEW4 + NEW6})
    deadline = time.monotonic() + 300  # beyond the module's 120 s host-lock wait
    pid = None
    while pid is None:
        assert time.monotonic() < deadline and run.poll() is None, 'no ipset restore seen'
        pid = restore_pid(netns)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    run.communicate(timeout=200)
    still_old = set()
    for name, old, new in (('big', OLD4, NEW4), ('inet6:big', OLD6, NEW6)):
        content = saved(netns, name)
        assert content in (set(old), set(new)), '%s holds %d entries, neither all old nor all new' % (name, len(content or ()))
        if content == set(old):
            still_old.add(name)
    left = names(netns) - {'big', 'inet6:big'}
    assert left <= {tmp_name('big'), tmp_name('inet6:big')}
    result = netns.module('ipset', {'name': 'big', 'entries': NEW4 + NEW6})
    assert saved(netns, 'big') == set(NEW4) and saved(netns, 'inet6:big') == set(NEW6)
    assert names(netns) == {'big', 'inet6:big'}
    for tmp in left:
        assert any(tmp in warning for warning in result.get('warnings', [])), result.get('warnings')
    return still_old, left


def test_kill_9_mid_restore_leaves_old_or_new_never_empty_and_the_next_run_cleans_up(netns):
    """Each kill must leave every set all old or all new; and at least one kill must land
    before a swap (a set still old, a temporary set left), or the test proved nothing."""
    landed = []
    for delay in (0.05, 0.2, 0.02, 0.4, 0.1):
        still_old, left = kill_restore_after(netns, delay)
        if still_old and left:
            landed.append(delay)
        if len(landed) == 2:
            break
    assert landed, 'no kill landed before a swap'


def test_kill_9_of_the_module_lets_the_restore_finish_whole(netns):
    """The batch is a file written before ipset starts: killing the module cannot hand
    ipset a cut-off line, and the restore it started runs to its end."""
    netns.module('ipset', {'name': 'big', 'entries': OLD4 + OLD6})
    run = start_module(netns, {'name': 'big', 'entries': NEW4 + NEW6})
    deadline = time.monotonic() + 300  # beyond the module's 120 s host-lock wait
    while restore_pid(netns) is None:
        assert time.monotonic() < deadline and run.poll() is None
    inode = os.stat('/run/netns/%s' % netns.name).st_ino
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                if b'AnsiballZ_ipset.py' in handle.read() and os.stat('/proc/%s/ns/net' % pid).st_ino == inode:
                    os.kill(int(pid), signal.SIGKILL)
        except OSError:
            continue
    run.communicate(timeout=200)
    deadline = time.monotonic() + 60
    while restore_pid(netns) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert saved(netns, 'big') in (set(OLD4), set(NEW4)) and saved(netns, 'inet6:big') in (set(OLD6), set(NEW6))
    netns.module('ipset', {'name': 'big', 'entries': NEW4 + NEW6})
    assert names(netns) == {'big', 'inet6:big'}


def test_a_stale_temporary_set_that_is_not_ours_is_refused_and_left(netns):
    tmp = tmp_name('pods')
    netns.run('ipset create pods hash:ip && ipset create %s hash:ip && iptables -w -A INPUT -m set --match-set %s src -j DROP'
              % (tmp, tmp))
    before = dumps(netns)
    result = netns.module('ipset', {'name': 'pods', 'families': ['ipv4'], 'entries': ['10.0.0.1']}, expect_failure=True)
    assert tmp in result['msg'] and 'nothing was changed' in result['msg']
    assert dumps(netns) == before


# --- class 4: a restore that fails part-way says what it applied ---------------------------

def run_with_fault(ns, args, fault, expect_failure=True):
    """Run the module with an `ipset` first in PATH that runs `fault` (shell, real ipset)
    once, just before the module's first restore: another writer acting at the worst moment."""
    tmp = tempfile.mkdtemp(prefix='ipset-fault-')
    with open(os.path.join(tmp, 'ipset'), 'w') as handle:
        handle.write('#!/bin/sh\nif [ "$1" = restore ] && [ ! -e %s/done ]; then\ntouch %s/done\n%s\nfi\nexec /usr/sbin/ipset "$@"\n'
                     % (tmp, tmp, fault.replace('ipset ', '/usr/sbin/ipset ')))
    os.chmod(os.path.join(tmp, 'ipset'), 0o755)
    play = json.dumps([{'hosts': 'all', 'gather_facts': False, 'tasks': [{'clusternet.node.ipset': args}]}])
    proc = run_playbook(play, netns=ns.name, env={'PATH': tmp + os.pathsep + os.environ['PATH']})
    result = json.loads(proc.stdout)['plays'][0]['tasks'][0]['hosts']['localhost']
    assert bool(result.get('failed')) == expect_failure, result
    return result


def test_failure_mid_batch_names_the_line_and_what_was_applied(netns):
    # the IPv6 set appears with another type between the read and the write
    result = run_with_fault(netns, {'name': 'pods', 'entries': ['10.0.0.1', '10.0.0.2', '10.0.0.3', '2001:db8::1']},
                            'ipset create inet6:pods hash:net family inet6')
    assert 'failed at line 5 of 6 (create inet6:pods hash:ip family inet6)' in result['msg']
    assert 'the lines before it applied pods: created, 3 added;' in result['msg']
    assert result['applied'] == {'pods': {'created': True, 'added': ['10.0.0.1', '10.0.0.2', '10.0.0.3']}}
    assert saved(netns, 'pods') == {'10.0.0.1', '10.0.0.2', '10.0.0.3'}
    assert saved(netns, 'inet6:pods') == set() and 'hash:net' in netns.out('ipset save inet6:pods')


def test_failure_when_another_writer_fills_the_set_stops_at_the_first_error(netns):
    netns.run('ipset create pods hash:ip maxelem 5 && ipset add pods 10.0.0.1 && ipset add pods 10.0.0.2')
    result = run_with_fault(netns, {'name': 'pods', 'families': ['ipv4'], 'entries': ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']},
                            'ipset add pods 10.9.0.1 && ipset add pods 10.9.0.2')
    assert 'failed at line 2 of 3 (add pods 10.0.0.4)' in result['msg'] and 'Hash is full' in result['msg']
    assert result['applied'] == {'pods': {'added': ['10.0.0.3']}}
    assert saved(netns, 'pods') == {'10.0.0.1', '10.0.0.2', '10.0.0.3', '10.9.0.1', '10.9.0.2'}


def test_failure_before_the_swap_leaves_the_live_set_and_no_temporary_set(netns):
    netns.run('ipset create pods hash:ip maxelem 2 && ipset add pods 10.0.0.1 && ipset add pods 10.0.0.2')
    tmp = tmp_name('pods')
    # the set is recreated with another family: the swap is refused
    result = run_with_fault(netns, {'name': 'pods', 'families': ['ipv4'], 'entries': ['10.0.0.3', '10.0.0.4']},
                            'ipset destroy pods && ipset create pods hash:ip family inet6 maxelem 2 && ipset add pods 2001:db8::9')
    assert 'failed at line 5 of 5 (swap pods %s)' % tmp in result['msg']
    assert result['applied'] == {tmp: {'created': True, 'flushed': True, 'added': ['10.0.0.3', '10.0.0.4']}}
    assert 'destroyed again' in result['msg']
    assert names(netns) == {'pods'} and saved(netns, 'pods') == {'2001:db8::9'}


def test_a_temporary_set_a_killed_run_left_is_removed_by_a_no_change_run(netns):
    args = {'name': 'pods', 'families': ['ipv4'], 'entries': ['10.0.0.1']}
    netns.module('ipset', args)
    tmp = tmp_name('pods')
    netns.run('ipset create %s hash:ip && ipset add %s 10.0.0.7' % (tmp, tmp))
    check = netns.module('ipset', args, check=True)
    assert check['changed'] is True and tmp in names(netns)
    result = netns.module('ipset', args)
    assert result['changed'] is True and any(tmp in warning for warning in result['warnings'])
    assert names(netns) == {'pods'} and saved(netns, 'pods') == {'10.0.0.1'}
    assert netns.module('ipset', args)['changed'] is False
