"""clusternet.node.ipset against the real kernel, inside throwaway network namespaces.

Every assertion reads the kernel (`ipset save`, `ipset list`) rather than trusting
what the module says it did.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import harness
import pytest

V4 = ['10.%d.%d.%d' % (i // 62500, i // 250 % 250, i % 250 + 1) for i in range(10000)]
V6 = ['2001:db8:42:%x::%x' % (i // 4096 + 1, i % 4096 + 1) for i in range(10000)]


def entries(ns, name):
    """The set's entries as `ipset save NAME` prints them; None when it does not exist."""
    proc = ns.run('ipset save %s' % name, check=False)
    if proc.returncode != 0:
        assert 'does not exist' in proc.stderr, proc.stderr
        return None
    return set(line.split()[2] for line in proc.stdout.splitlines() if line.startswith('add '))


def header(ns, name):
    return ns.out('ipset save %s' % name).splitlines()[0]


def save(ns):
    """Every set in the namespace, sorted line by line (entry order is hash order)."""
    return sorted(ns.out('ipset save').splitlines())


def test_pod_recreated_both_families_end_exactly_right(netns, python):
    """kube-router #1665: a pod at 10.42.1.6 / 2001:db8:42:1::6 is recreated at .7 / ::7."""
    others = ['10.42.2.3', '2001:db8:42:2::3']
    netns.module('ipset', {'name': 'kube-router-pod-ips', 'entries': ['10.42.1.6', '2001:db8:42:1::6'] + others}, python=python)
    netns.module('ipset', {'name': 'kube-router-pod-ips', 'entries': ['10.42.1.7', '2001:db8:42:1::7'] + others}, python=python)
    assert entries(netns, 'kube-router-pod-ips') == {'10.42.1.7', '10.42.2.3'}
    assert entries(netns, 'inet6:kube-router-pod-ips') == {'2001:db8:42:1::7', '2001:db8:42:2::3'}
    assert ' family inet ' in header(netns, 'kube-router-pod-ips')
    assert ' family inet6 ' in header(netns, 'inet6:kube-router-pod-ips')


def test_one_family_task_leaves_the_other_family_set_alone(netns):
    netns.run('ipset create inet6:pods hash:ip family inet6 && ipset add inet6:pods 2001:db8::99')
    netns.module('ipset', {'name': 'pods', 'families': ['ipv4'], 'entries': ['10.0.0.1']})
    netns.module('ipset', {'name': 'pods', 'ipv6_name': 'pods-v6', 'families': ['ipv6'], 'entries': ['2001:DB8::1']})
    assert entries(netns, 'pods') == {'10.0.0.1'}
    assert entries(netns, 'pods-v6') == {'2001:db8::1'}
    assert entries(netns, 'inet6:pods') == {'2001:db8::99'}


@pytest.mark.parametrize('set_type, given, saved', [
    ('hash:net', ['10.42.0.0/16', '10.0.0.6/32', '2001:DB8:0::/64', '0.0.0.0/0'], ['10.42.0.0/16', '10.0.0.6', '0.0.0.0/1', '128.0.0.0/1', '2001:db8::/64']),
    ('hash:ip,port', ['10.96.0.1,tcp:443', '10.96.0.10,53', '2001:db8::a,UDP:domain'], ['10.96.0.1,tcp:443', '10.96.0.10,tcp:53', '2001:db8::a,udp:53']),
    ('hash:net,port', ['10.42.0.0/16,udp:53', '::/0,sctp:9'], ['10.42.0.0/16,udp:53', '::/1,sctp:9', '8000::/1,sctp:9']),
    ('hash:ip,port,ip', ['10.0.0.1,tcp:80,10.0.0.2', '2001:db8::1,tcp:80,2001:db8::2'], ['10.0.0.1,tcp:80,10.0.0.2', '2001:db8::1,tcp:80,2001:db8::2']),
    ('hash:ip,port,net', ['10.0.0.1,tcp:80,10.1.0.0/16', '10.0.0.1,tcp:81,10.1.0.1/32'], ['10.0.0.1,tcp:80,10.1.0.0/16', '10.0.0.1,tcp:81,10.1.0.1']),
    ('hash:net,iface', ['10.0.0.0/8,eth0', '0.0.0.0/0,physdev:eth1', '2001:db8::/32,lo'], ['10.0.0.0/8,eth0', '0.0.0.0/0,physdev:eth1', '2001:db8::/32,lo']),
])
def test_every_type_is_normalized_to_what_ipset_save_prints(netns, set_type, given, saved):
    netns.module('ipset', {'name': 's', 'set_type': set_type, 'entries': given})
    kernel = (entries(netns, 's') or set()) | (entries(netns, 'inet6:s') or set())
    assert kernel == set(saved)
    assert netns.module('ipset', {'name': 's', 'set_type': set_type, 'entries': given})['changed'] is False


def test_second_run_unchanged_and_check_mode_changes_nothing(netns, python):
    args = {'name': 'svc', 'entries': ['10.96.0.1', '2001:db8::1'], 'maxelem': 1000, 'hashsize': 64}
    result = netns.module('ipset', args, check=True, python=python)
    assert result['changed'] is True
    assert save(netns) == []
    netns.module('ipset', args, python=python)
    before = save(netns)
    assert 'maxelem 1000' in header(netns, 'svc') and 'hashsize 64' in header(netns, 'svc')
    assert netns.module('ipset', args, python=python)['changed'] is False
    other = dict(args, entries=['10.96.0.2'], families=['ipv4'])
    assert netns.module('ipset', other, check=True, diff=True, python=python)['changed'] is True
    netns.module('ipset', dict(args, state='absent'), check=True, python=python)
    assert save(netns) == before


def test_diff_mode_shows_entries_before_and_after(netns):
    netns.module('ipset', {'name': 'svc', 'entries': ['10.96.0.1']})
    diff = netns.module('ipset', {'name': 'svc', 'entries': ['10.96.0.2', '2001:db8::2']}, diff=True)['diff']
    assert diff['before'] == 'add svc 10.96.0.1\n'
    assert diff['after'] == 'add svc 10.96.0.2\nadd inet6:svc 2001:db8::2\n'


def test_exclusive_false_only_adds(netns):
    netns.module('ipset', {'name': 'svc', 'entries': ['10.96.0.1', '2001:db8::1']})
    netns.module('ipset', {'name': 'svc', 'entries': ['10.96.0.2'], 'exclusive': False})
    assert entries(netns, 'svc') == {'10.96.0.1', '10.96.0.2'}
    assert entries(netns, 'inet6:svc') == {'2001:db8::1'}


def background(ns, script):
    """Run a shell loop in the namespace until the returned stop() is called (60 s at most)."""
    tmp = tempfile.mkdtemp(prefix='ipset-test-')
    stop_file = os.path.join(tmp, 'stop')
    proc = ns.popen('cd %s && timeout 60 sh -c \'%s\'' % (tmp, script.replace('STOP', stop_file)))

    def stop():
        open(stop_file, 'w').close()
        proc.wait(timeout=70)
        return tmp
    return tmp, stop


def test_concurrent_writer_entries_are_not_lost(netns):
    """kube-router #1732: a writer adds to the same set while a 20,000-entry run is under way."""
    netns.run('ipset create pods hash:ip maxelem 100000')
    tmp, stop = background(netns, 'i=0; while [ ! -e STOP ]; do i=$((i+1)); '
                           'e=10.200.$((i / 250)).$((i % 250 + 1)); ipset add pods $e && echo $e >> written; done')
    time.sleep(0.3)
    netns.module('ipset', {'name': 'pods', 'entries': V4 + V6, 'exclusive': False})
    time.sleep(0.3)
    stop()
    with open(os.path.join(tmp, 'written')) as handle:
        written = set(handle.read().split())
    assert len(written) > 50
    assert entries(netns, 'pods') == set(V4) | written
    assert entries(netns, 'inet6:pods') == set(V6)


def test_large_exclusive_replacement_never_drops_a_kept_entry(netns):
    old, new = V4[:7500] + V6[:7500], V4[2500:] + V6[2500:]
    keep = V4[2500:7500] + V6[2500:7500]
    netns.module('ipset', {'name': 'pods', 'entries': old})
    with tempfile.NamedTemporaryFile('w', suffix='.keep', delete=False) as handle:
        handle.write(''.join('add pods %s\n' % e for e in keep if ':' not in e))
        handle.write(''.join('add inet6:pods %s\n' % e for e in keep if ':' in e))
    tmp, stop = background(netns, 'while [ ! -e STOP ]; do '
                                  '{ ipset save pods; ipset save inet6:pods; } | grep -cxFf %s >> counts; done' % handle.name)
    time.sleep(0.3)
    netns.module('ipset', {'name': 'pods', 'entries': new})
    stop()
    with open(os.path.join(tmp, 'counts')) as counts:
        seen = [int(line) for line in counts.read().split()]
    os.unlink(handle.name)
    assert len(seen) >= 5
    assert set(seen) == {len(keep)}
    assert entries(netns, 'pods') == set(V4[2500:]) and entries(netns, 'inet6:pods') == set(V6[2500:])


def test_sets_not_named_are_never_touched(netns):
    """kube-router #1918: another controller's sets keep exactly their content."""
    netns.run('ipset create pods-other hash:ip && ipset add pods-other 10.0.0.9 && '
              'ipset create inet6:istio hash:net family inet6 && ipset add inet6:istio 2001:db8::/48 && '
              'ipset create all list:set && ipset add all pods-other')
    others = save(netns)
    netns.module('ipset', {'name': 'pods', 'entries': ['10.0.0.1', '2001:db8::1']})
    netns.module('ipset', {'name': 'pods', 'entries': ['10.0.0.2']})
    netns.module('ipset', {'name': 'pods', 'state': 'absent'})
    assert save(netns) == others


def test_two_runs_at_once_both_succeed_and_do_not_interleave(netns):
    first, second = V4[:5000], V4[5000:]
    netns.module('ipset', {'name': 'pods', 'families': ['ipv4'], 'entries': V4[2500:7500]})
    runs = [start_run(netns, {'name': 'pods', 'families': ['ipv4'], 'entries': wanted}) for wanted in (first, second)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    # without the lock both would diff against the same old state and leave a mix
    assert entries(netns, 'pods') in (set(first), set(second))


def test_a_run_waits_for_the_host_lock(netns):
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == 'held\n'
    run = start_run(netns, {'name': 'pods', 'entries': ['10.0.0.1']})
    deadline = time.monotonic() + 120
    while not module_running(netns, 'ipset'):
        assert time.monotonic() < deadline and run.poll() is None, 'the module never started'
        time.sleep(0.1)
    time.sleep(1)
    assert entries(netns, 'pods') is None
    holder.communicate('release\n')
    assert run.wait(timeout=200) == 0, run.communicate()[0]
    assert entries(netns, 'pods') == {'10.0.0.1'}


def module_running(netns, name):
    """Whether a process running clusternet.node.NAME (harness.DIRECT) runs inside netns."""
    inode = netns.out('stat -L -c %i /proc/self/ns/net').strip()
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
            if harness.DIRECT.encode() in argv and name.encode() in argv and str(os.stat('/proc/%s/ns/net' % pid).st_ino) == inode:
                return True
        except OSError:
            continue
    return False


def start_run(netns, args):
    """Run the module in a separate process (harness.run_module); exit status 0 on success."""
    return subprocess.Popen([sys.executable, '-c', RUN_MODULE, netns.name, json.dumps(args)], cwd=TESTS,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_MODULE = '''
import json, sys
from harness import run_module
run_module("ipset", json.loads(sys.argv[2]), netns=sys.argv[1])
'''
HOLD_LOCK = '''
import sys
sys.path.insert(0, "%s")
from ansible_collections.clusternet.node.plugins.module_utils.lock import host_lock
with host_lock():
    print("held", flush=True)
    sys.stdin.readline()
''' % os.path.join(os.path.dirname(TESTS), 'build', 'collections')


@pytest.mark.parametrize('args, message', [
    ({'entries': ['10.0.0.1', '10.0.0.256']}, "'10.0.0.256'"),
    ({'set_type': 'hash:net', 'entries': ['10.0.0.1/8']}, "'10.0.0.1/8'"),
    ({'families': ['ipv4'], 'entries': ['10.0.0.1', '2001:db8::1']}, "'2001:db8::1' is ipv6 but families is ipv4"),
    ({'set_type': 'hash:ip,port', 'entries': ['10.0.0.1,tcp:80', '10.0.0.2']}, "'10.0.0.2' does not fit set_type hash:ip,port"),
    ({'name': 'p' * 26}, "'inet6:%s' is 32 characters" % ('p' * 26)),
    ({'set_type': 'hash:net', 'entries': ['10.0.0.0/8']}, "'pods' exists with type hash:ip, not hash:net"),
    ({'entries': ['10.0.0.1'], 'maxelem': 10}, "'pods' exists with maxelem 65536, not 10"),
])
def test_invalid_input_is_a_clear_error_and_changes_nothing(netns, args, message):
    netns.run('ipset create pods hash:ip && ipset add pods 10.0.0.5 && ipset create pods2 hash:ip')
    before = save(netns)
    result = netns.module('ipset', dict({'name': 'pods', 'entries': ['10.0.0.1']}, **args), expect_failure=True)
    assert message in result['msg']
    assert save(netns) == before


def test_absent_destroys_both_families(netns, python):
    netns.module('ipset', {'name': 'pods', 'entries': ['10.0.0.1', '2001:db8::1']}, python=python)
    netns.run('ipset create keep hash:ip')
    assert netns.module('ipset', {'name': 'pods', 'state': 'absent'}, python=python)['changed'] is True
    assert entries(netns, 'pods') is None and entries(netns, 'inet6:pods') is None
    assert entries(netns, 'keep') == set()
    assert netns.module('ipset', {'name': 'pods', 'state': 'absent'}, python=python)['changed'] is False


def test_absent_refuses_a_set_in_use_and_destroys_nothing(netns):
    netns.module('ipset', {'name': 'pods', 'entries': ['10.0.0.1', '2001:db8::1']})
    netns.run('ip6tables -w -A INPUT -m set --match-set inet6:pods src -j DROP')
    before = save(netns)
    result = netns.module('ipset', {'name': 'pods', 'state': 'absent'}, expect_failure=True)
    assert "'inet6:pods' is in use" in result['msg']
    assert save(netns) == before
