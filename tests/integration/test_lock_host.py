"""The host lock against a local attacker, for real: an unprivileged user (nobody) plants
files, symlinks, directories and flocks (on any lock file it can open), then root runs
clusternet.node.ipset (harness.run_module).

Each scenario runs this file as a script inside `ip netns exec NS unshare -m
--propagation private`, which mounts fresh tmpfs on /run (root 0755, the stand-in for the
lock's directory) and /run/lock (1777, as Debian has it). So the host's real /run and
/run/lock are never touched: the mounts exist only in that private mount namespace and
vanish with it. The script prints one JSON report of what it saw; the test asserts on it.
"""

import json
import os
import subprocess
import sys
import time

import pytest

DIR = '/run/clusternet-node'
NEW = DIR + '/lock'
OLD = '/run/lock/clusternet-node.lock'
PREVIOUS = '/run/clusternet-node.lock'  # release 0.2's path: a file others could open
HOLD = 30  # seconds a reader holds its flock: a run that waited for it takes at least that long
SET = 'cnt-lock'
NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']

# Steps done as nobody at the old, world-writable path: none may block or redirect a run.
ATTACKS = {
    'user file': 'touch %s' % OLD,
    'dangling symlink': 'ln -s /run/attacker-chosen %s' % OLD,
    'symlink to a root file': 'ln -s /run/root-file %s' % OLD,
    'directory': 'mkdir %s' % OLD,
    'symlink to the new path': 'ln -s %s %s' % (NEW, OLD),
}

# States at the new path only root can make (a mistake, or an old compromise): each is refused
# with a message naming the path, and the run changes nothing.
MKDIR = 'mkdir -m 0700 %s && ' % DIR
PLANTED = {
    'dangling symlink': (MKDIR + 'ln -s /run/attacker-chosen %s' % NEW, 'it is a symbolic link'),
    'symlink to a root file': (MKDIR + 'ln -s /run/root-file %s' % NEW, 'it is a symbolic link'),
    'directory': (MKDIR + 'mkdir %s' % NEW, 'not a regular file'),
    'file owned by nobody': (MKDIR + 'touch %s && chown nobody %s' % (NEW, NEW), 'owned by uid 65534, not root'),
    'file others can write': (MKDIR + 'touch %s && chmod 0646 %s' % (NEW, NEW), 'mode 0646 lets group or others write it'),
    'hard link': (MKDIR + 'touch /run/elsewhere && chmod 0600 /run/elsewhere && ln /run/elsewhere %s' % NEW, 'it has 2 hard links'),
    'world-writable /run': ('chmod 1777 /run', 'directory /run is owned by uid 0, mode 1777'),
    'directory a symlink': ('mkdir -m 0700 /run/elsewhere && ln -s /run/elsewhere %s' % DIR, 'directory %s is a symbolic link' % DIR),
    'directory owned by nobody': (MKDIR + 'chown nobody %s' % DIR, 'directory %s is owned by uid 65534, not root' % DIR),
}

# Lock files root made that others can open (umask 022): nobody opens one read-only and holds
# an flock on it; no run may wait for that.
READERS = {
    "release 0.2's path": ('umask 022 && touch %s' % PREVIOUS, PREVIOUS),
    'file others can read': (MKDIR + 'chmod 0711 %s && umask 022 && touch %s' % (DIR, NEW), NEW),
    'directory others can search': ('mkdir -m 0755 %s && touch %s && chmod 0644 %s && chmod 0755 %s' % (DIR, NEW, NEW, DIR), NEW),
}


def sh(cmd, user=None):
    argv = (NOBODY if user else []) + ['sh', '-c', cmd]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return {'rc': proc.returncode, 'err': proc.stderr.strip()}


def lstat(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return {'mode': '%o' % st.st_mode, 'uid': st.st_uid, 'nlink': st.st_nlink}


def inside(kind, name):
    """Runs as root in the test's network namespace and a private mount namespace."""
    from harness import run_module

    subprocess.run(['mount', '-n', '-t', 'tmpfs', '-o', 'mode=0755,size=1m', 'cnt-run', '/run'], check=True)
    os.mkdir('/run/lock')
    subprocess.run(['mount', '-n', '-t', 'tmpfs', '-o', 'mode=1777,size=1m', 'cnt-run-lock', '/run/lock'], check=True)
    # Nothing below may run unless both are the fresh, empty stand-ins.
    assert os.listdir('/run') == ['lock'] and os.listdir('/run/lock') == [], (os.listdir('/run'), os.listdir('/run/lock'))
    with open('/run/root-file', 'w') as handle:
        handle.write('precious\n')
    os.chmod('/run/root-file', 0o600)
    report = {'attacker': {}, 'holder': None}
    # Whatever else, nobody cannot create anything at the lock's directory.
    for what, cmd in (('file', 'touch ' + DIR), ('symlink', 'ln -s /tmp/x ' + DIR), ('directory', 'mkdir ' + DIR)):
        report['attacker'][what] = sh(cmd, user=True)
    holder, held = None, None
    if kind == 'attack':
        report['step'] = sh(ATTACKS[name], user=True)
        if name == 'user file':
            held = OLD  # nobody holds an flock on the file it made
    elif kind == 'planted':
        report['step'] = sh(PLANTED[name][0])
    else:  # a reader: root made a lock file others can open
        report['step'] = sh(READERS[name][0])
        held = READERS[name][1]
    if held:
        holder = subprocess.Popen(NOBODY + ['/usr/bin/python3', '-c', (
            'import fcntl, os, sys, time\n'
            'fd = os.open(%r, os.O_RDONLY)\n'
            'fcntl.flock(fd, fcntl.LOCK_EX)\n'
            'print(os.fstat(fd).st_ino, flush=True)\n'
            'time.sleep(%d)\n') % (held, HOLD)], stdout=subprocess.PIPE, text=True)
        report['holder'] = holder.stdout.readline().strip()
    report['planted_mode'] = lstat(NEW)
    report['old_before'] = lstat(OLD)
    before = subprocess.run(['ipset', 'save'], capture_output=True, text=True, check=True).stdout
    start = time.monotonic()
    try:
        report['result'] = run_module('ipset', {'name': SET, 'entries': ['10.0.0.1']}, expect_failure=kind == 'planted')
    finally:
        report['seconds'] = time.monotonic() - start
        if holder:
            holder.kill()
            holder.wait()
    report['ipset_before'] = before
    report['ipset_after'] = subprocess.run(['ipset', 'save'], capture_output=True, text=True, check=True).stdout
    report['old_after'] = lstat(OLD)
    report['new'] = lstat(NEW)
    report['dir'] = lstat(DIR)
    report['new_inode'] = os.lstat(NEW).st_ino if report['new'] else None
    report['attacker_chosen'] = lstat('/run/attacker-chosen')
    with open('/run/root-file') as handle:
        report['root_file'] = handle.read()
    # After a run made the lock, nobody cannot even open it, so cannot flock it.
    report['nobody_open_new'] = sh('exec 3<%s' % NEW, user=True)
    print(json.dumps(report))


def scenario(netns, kind, name):
    here = os.path.abspath(__file__)
    tests = os.path.dirname(os.path.dirname(here))
    proc = subprocess.run(
        ['ip', 'netns', 'exec', netns.name, 'unshare', '-m', '--propagation', 'private',
         sys.executable, here, kind, name],
        capture_output=True, text=True, check=False, timeout=200, env=dict(os.environ, PYTHONPATH=tests))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def assert_nobody_cannot_touch_the_lock_directory(report):
    for what in ('file', 'symlink', 'directory'):
        step = report['attacker'][what]
        assert step['rc'] != 0 and 'Permission denied' in step['err'], (what, step)


@pytest.mark.parametrize('name', sorted(ATTACKS))
def test_user_planted_old_path_neither_blocks_nor_redirects_a_run(netns, name):
    report = scenario(netns, 'attack', name)
    assert report['step']['rc'] == 0, report['step']
    assert report['old_before'] is not None
    assert_nobody_cannot_touch_the_lock_directory(report)
    # The run succeeded promptly (the old code waited out its 120 s timeout on a held flock).
    assert report['result']['changed'] is True
    assert report['seconds'] < HOLD / 2, report['seconds']
    assert 'add %s 10.0.0.1' % SET in report['ipset_after']
    # It used the root-only path: a root-owned private regular file with one link, in a private directory.
    assert report['new'] == {'mode': '100600', 'uid': 0, 'nlink': 1}
    assert report['dir'] == {'mode': '40700', 'uid': 0, 'nlink': 2}
    # What nobody planted is untouched and redirected nothing.
    assert report['old_after'] == report['old_before']
    assert report['attacker_chosen'] is None
    assert report['root_file'] == 'precious\n'
    assert report['nobody_open_new']['rc'] != 0 and 'Permission denied' in report['nobody_open_new']['err']
    if name == 'user file':
        assert report['old_before']['uid'] == 65534 and report['holder'].isdigit()


@pytest.mark.parametrize('name', sorted(PLANTED))
def test_unsafe_new_path_is_refused_by_name_and_changes_nothing(netns, name):
    report = scenario(netns, 'planted', name)
    assert report['step']['rc'] == 0, report['step']
    result = report['result']
    assert result['failed'] is True
    assert NEW in result['msg'] and PLANTED[name][1] in result['msg'], result['msg']
    assert 'Traceback' not in json.dumps(result)
    assert report['ipset_after'] == report['ipset_before']
    assert report['attacker_chosen'] is None
    assert report['root_file'] == 'precious\n'


@pytest.mark.parametrize('name', sorted(READERS))
def test_a_reader_holding_a_lock_file_it_could_open_blocks_no_run(netns, name):
    """An flock needs only a read-only descriptor and no chmod revokes one: a lock file others
    could open is replaced, not reused, so the reader's flock holds nothing of ours."""
    report = scenario(netns, 'reader', name)
    assert report['step']['rc'] == 0, report['step']
    assert report['holder'].isdigit(), report  # nobody opened and locked it
    assert report['result']['changed'] is True and 'add %s 10.0.0.1' % SET in report['ipset_after']
    assert report['seconds'] < HOLD / 2, report['seconds']
    assert report['new'] == {'mode': '100600', 'uid': 0, 'nlink': 1} and report['new_inode'] != int(report['holder'])
    assert report['dir'] == {'mode': '40700', 'uid': 0, 'nlink': 2}
    assert report['nobody_open_new']['rc'] != 0 and 'Permission denied' in report['nobody_open_new']['err']
    assert_nobody_cannot_touch_the_lock_directory(report)


if __name__ == '__main__':
    inside(sys.argv[1], sys.argv[2])
