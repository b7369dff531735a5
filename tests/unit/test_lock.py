import fcntl
import os
import stat
import threading
import time

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import engine, lock


class Failed(Exception):
    pass


class Module(object):
    """Stands in for AnsibleModule.fail_json only: the lock itself is a real flock."""

    def fail_json(self, msg):
        raise Failed(msg)


def module_run(path, timeout=0.2):
    """What a module's run does with a lock it cannot take: engine.report's one fail_json."""
    def take():
        with lock.host_lock(path=path, timeout=timeout):
            pytest.fail('the lock was taken')
    engine.report(Module(), take)


@pytest.fixture
def lockdir(tmp_path):
    directory = tmp_path / 'run'
    directory.mkdir(mode=0o755)
    os.chmod(str(directory), 0o755)
    return directory


@pytest.fixture
def private(lockdir):
    """The lock's own directory, as a previous run of ours left it."""
    directory = lockdir / 'clusternet-node'
    directory.mkdir(mode=0o700)
    return directory


def test_default_path_is_in_a_directory_of_our_own_under_root_only_run():
    assert lock.DEFAULT_LOCK_PATH == '/run/clusternet-node/lock'


def test_lock_is_exclusive_and_released(lockdir):
    path = str(lockdir / 'clusternet-node' / 'lock')
    with lock.host_lock(path=path, timeout=1):
        fd = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    with lock.host_lock(path=path, timeout=1):
        pass


def test_created_file_is_private_regular_and_ours(lockdir):
    path = str(lockdir / 'clusternet-node' / 'lock')
    old = os.umask(0)
    try:
        with lock.host_lock(path=path, timeout=1):
            pass
    finally:
        os.umask(old)
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()


def test_timeout_fails_the_module_cleanly(lockdir):
    path = str(lockdir / 'clusternet-node' / 'lock')
    held, release = threading.Event(), threading.Event()

    def holder():
        with lock.host_lock(path=path, timeout=1):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(Failed, match='another clusternet.node run holds it'):
            module_run(path)
        with pytest.raises(lock.LockTimeout):
            with lock.host_lock(path=path, timeout=0.2):
                pass
    finally:
        release.set()
        thread.join()


def _refused(path, reason):
    """Both forms: the module fails with the message, the bare call raises LockError; nothing is locked."""
    with pytest.raises(Failed) as failed:
        module_run(path)
    assert path in str(failed.value) and reason in str(failed.value)
    with pytest.raises(lock.LockError, match=reason):
        with lock.host_lock(path=path, timeout=0.2):
            pytest.fail('the lock was taken')
    return str(failed.value)


def test_dangling_symlink_is_refused_and_nothing_is_created(lockdir, private, tmp_path):
    path, target = str(lockdir / 'clusternet-node' / 'lock'), tmp_path / 'chosen-by-attacker'
    os.symlink(str(target), path)
    _refused(path, 'it is a symbolic link')
    assert not target.exists()


def test_symlink_to_a_root_file_is_refused_and_the_file_untouched(lockdir, private, tmp_path):
    path, target = str(lockdir / 'clusternet-node' / 'lock'), tmp_path / 'root-file'
    target.write_text('precious\n')
    os.chmod(str(target), 0o600)
    os.symlink(str(target), path)
    _refused(path, 'it is a symbolic link')
    fd = os.open(str(target), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # not left locked either
    finally:
        os.close(fd)
    assert target.read_text() == 'precious\n'


def test_directory_is_refused_without_traceback(lockdir, private):
    path = lockdir / 'clusternet-node' / 'lock'
    path.mkdir()
    _refused(str(path), 'not a regular file')


def test_fifo_is_refused_without_blocking(lockdir, private):
    path = str(lockdir / 'clusternet-node' / 'lock')
    os.mkfifo(path, 0o600)
    _refused(path, 'not a regular file')


NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason='giving a file to another user (chown) needs root; make test runs as root')


@NEEDS_ROOT
def test_file_of_another_owner_is_refused(lockdir, private):
    path = str(lockdir / 'clusternet-node' / 'lock')
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chown(path, 65534, 65534)
    assert 'owned by uid 65534' in _refused(path, 'not root')


@pytest.mark.parametrize('mode', [0o620, 0o602, 0o660, 0o666, 0o622])
def test_file_others_can_write_is_refused(lockdir, private, mode):
    path = str(lockdir / 'clusternet-node' / 'lock')
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, mode)
    assert '%04o' % mode in _refused(path, 'lets group or others write it')
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def _reader(path):
    """What any user could do with a lock file it can read: open it read-only and hold an flock."""
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


@pytest.mark.parametrize('mode', [0o644, 0o604, 0o640, 0o744])
def test_own_file_others_can_read_is_replaced_not_reused(lockdir, private, mode):
    """fchmod does not revoke a descriptor already open: a file others could open is replaced."""
    path = str(private / 'lock')
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, mode)
    held = _reader(path)
    try:
        old = os.fstat(held).st_ino
        with lock.host_lock(path=path, timeout=0.2):
            st = os.stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_ino != old and st.st_nlink == 1
        assert sorted(os.listdir(str(private))) == ['lock']
    finally:
        os.close(held)


@pytest.mark.parametrize('mode', [0o755, 0o711, 0o750, 0o701])
def test_directory_others_could_search_is_closed_and_its_file_replaced(lockdir, private, mode):
    path = str(private / 'lock')
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(str(private), mode)
    held = _reader(path)
    try:
        old = os.fstat(held).st_ino
        with lock.host_lock(path=path, timeout=0.2):
            assert os.stat(path).st_ino != old
        assert stat.S_IMODE(os.stat(str(private)).st_mode) == 0o700
    finally:
        os.close(held)


def test_private_file_in_private_directory_is_reused(lockdir, private):
    path = str(private / 'lock')
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    old = os.stat(path).st_ino
    with lock.host_lock(path=path, timeout=0.2):
        assert os.stat(path).st_ino == old


def test_created_directory_is_ours_and_private(lockdir):
    path = str(lockdir / 'clusternet-node' / 'lock')
    old = os.umask(0)
    try:
        with lock.host_lock(path=path, timeout=1):
            pass
    finally:
        os.umask(old)
    st = os.lstat(str(lockdir / 'clusternet-node'))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()


def test_private_directory_as_symlink_is_refused(lockdir, tmp_path):
    target = tmp_path / 'elsewhere'
    target.mkdir(mode=0o700)
    os.symlink(str(target), str(lockdir / 'clusternet-node'))
    _refused(str(lockdir / 'clusternet-node' / 'lock'), 'is a symbolic link')
    assert os.listdir(str(target)) == []


@NEEDS_ROOT
def test_private_directory_of_another_owner_is_refused(lockdir, private):
    os.chown(str(private), 65534, 65534)
    assert 'owned by uid 65534' in _refused(str(private / 'lock'), 'not root')
    assert os.listdir(str(private)) == []


def test_private_directory_as_a_file_is_refused(lockdir):
    (lockdir / 'clusternet-node').write_text('')
    _refused(str(lockdir / 'clusternet-node' / 'lock'), 'is not a directory')


def test_a_run_that_locked_a_file_since_replaced_retries_on_the_new_one(lockdir, private):
    """Two runs that each replace or lock a file meet on the one the path names."""
    path = str(private / 'lock')
    first = lock.take_lock(path, timeout=1)
    got = {}
    waiting = threading.Thread(target=lambda: got.update(fd=lock.take_lock(path, timeout=5)))
    waiting.start()
    try:
        deadline = time.monotonic() + 5
        while sum(os.path.realpath('/proc/self/fd/' + fd) == path for fd in os.listdir('/proc/self/fd')) < 2:
            assert time.monotonic() < deadline, 'the second run never opened the lock'
            time.sleep(0.01)
        spare = str(private / 'spare')
        os.close(os.open(spare, os.O_CREAT | os.O_WRONLY, 0o600))
        os.rename(spare, path)  # what a replacing run does
    finally:
        os.close(first)  # releases the old file's lock
    waiting.join(5)
    try:
        assert os.fstat(got['fd']).st_ino == os.stat(path).st_ino
    finally:
        os.close(got['fd'])


def test_hard_link_is_refused(lockdir, private, tmp_path):
    path, other = str(lockdir / 'clusternet-node' / 'lock'), str(tmp_path / 'elsewhere')
    os.close(os.open(other, os.O_CREAT | os.O_WRONLY, 0o600))
    os.link(other, path)
    _refused(path, 'it has 2 hard links')


@pytest.mark.parametrize('mode', [0o777, 0o1777, 0o775])
def test_directory_others_can_write_is_refused(tmp_path, mode):
    directory = tmp_path / 'shared'
    directory.mkdir()
    os.chmod(str(directory), mode)
    path = str(directory / 'clusternet-node' / 'lock')
    message = _refused(path, 'writable by root alone')
    assert 'directory %s' % directory in message and '%04o' % mode in message
    assert os.listdir(str(directory)) == []


def test_missing_directory_fails_cleanly(tmp_path):
    path = str(tmp_path / 'missing' / 'clusternet-node' / 'lock')
    _refused(path, 'No such file or directory')
    assert not os.path.exists(str(tmp_path / 'missing'))
