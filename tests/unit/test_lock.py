import fcntl
import os
import threading

import pytest
from ansible_collections.clusternet.node.plugins.module_utils import lock


class Failed(Exception):
    pass


class Module(object):
    """Stands in for AnsibleModule.fail_json only: the lock itself is a real flock."""

    def fail_json(self, msg):
        raise Failed(msg)


def test_lock_is_exclusive_and_released(tmp_path):
    path = str(tmp_path / 'host.lock')
    with lock.host_lock(path=path, timeout=1):
        fd = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    with lock.host_lock(path=path, timeout=1):
        pass


def test_timeout_fails_the_module_cleanly(tmp_path):
    path = str(tmp_path / 'host.lock')
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
            with lock.host_lock(Module(), path=path, timeout=0.2):
                pass
        with pytest.raises(lock.LockTimeout):
            with lock.host_lock(path=path, timeout=0.2):
                pass
    finally:
        release.set()
        thread.join()
