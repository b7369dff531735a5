# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host lock: one writer of this collection's state at a time on a host.

An exclusive flock on a file in /run/lock. It is per host, not per network
namespace, which is what serializing writers needs: two runs against the same
kernel objects must not interleave their read-diff-write cycles.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import time

DEFAULT_LOCK_PATH = '/run/lock/clusternet-node.lock'
DEFAULT_TIMEOUT = 120


class LockTimeout(Exception):
    pass


@contextlib.contextmanager
def host_lock(module=None, path=DEFAULT_LOCK_PATH, timeout=DEFAULT_TIMEOUT):
    """Hold the host lock; with a module, a timeout is a clean failure, not a traceback."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    msg = 'could not take the host lock %s within %ss: another clusternet.node run holds it' % (path, timeout)
                    if module is not None:
                        module.fail_json(msg=msg)
                    raise LockTimeout(msg) from exc
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)
