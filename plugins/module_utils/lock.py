# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host lock: one writer of this collection's state at a time on a host.

An exclusive flock on /run/clusternet-node.lock. It is per host, not per network
namespace (every namespace shares /run), which is what serializing writers needs:
two runs against the same kernel objects must not interleave their read-diff-write
cycles.

The file lives directly in /run (root-only, 0755), as xtables keeps /run/xtables.lock,
not in the world-writable /run/lock: there any local user could create the file first
and hold an flock on it (every run would time out), or plant a symlink that makes root
create a file where the user chooses. So the directory must be writable by its owner
alone, the path is opened with O_NOFOLLOW, and the opened file must be a regular file of
ours with one link that group and others cannot write; one they can read is made 0600
(an flock needs only a read-only descriptor, so a file others can open is one they can
block us with). Each refusal is
one clear error naming the path. The old /run/lock/clusternet-node.lock is no longer
used and left alone.

Order with xtables: runs take this lock first, then iptables-restore -w takes
xtables.lock inside it and releases it when it exits; nothing of ours takes this lock
while holding xtables', so the two cannot deadlock each other.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import stat
import time

DEFAULT_LOCK_PATH = '/run/clusternet-node.lock'
DEFAULT_TIMEOUT = 120
FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, 'O_CLOEXEC', 0)


class LockError(Exception):
    """The lock path is unsafe to use: the message names it and why."""


class LockTimeout(LockError):
    pass


def _owners():
    return (0, os.geteuid())


def check_directory(path):
    """The lock's directory must be a directory only its owner (root or us) can write."""
    directory = os.path.dirname(path) or '.'
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise LockError('cannot use host lock %s: directory %s: %s' % (path, directory, exc.strerror)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise LockError('cannot use host lock %s: %s is not a directory' % (path, directory))
    if st.st_uid not in _owners() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LockError('refusing host lock %s: directory %s is owned by uid %d, mode %04o; it must be writable by root alone'
                        % (path, directory, st.st_uid, stat.S_IMODE(st.st_mode)))


def check_file(path, st):
    """Refuse anything but a regular file of ours with one link that only its owner may write."""
    if not stat.S_ISREG(st.st_mode):
        raise LockError('refusing host lock %s: not a regular file' % path)
    if st.st_uid not in _owners():
        raise LockError('refusing host lock %s: owned by uid %d, not root' % (path, st.st_uid))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LockError('refusing host lock %s: mode %04o lets group or others write it'
                        % (path, stat.S_IMODE(st.st_mode)))
    if st.st_nlink != 1:
        raise LockError('refusing host lock %s: it has %d hard links' % (path, st.st_nlink))


def open_lock(path):
    """Open (create 0600) the lock file safely; returns the descriptor or raises LockError."""
    check_directory(path)
    try:
        fd = os.open(path, FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError('refusing host lock %s: it is a symbolic link' % path) from None
        if exc.errno == errno.EISDIR:
            raise LockError('refusing host lock %s: not a regular file' % path) from None
        raise LockError('cannot open host lock %s: %s' % (path, exc.strerror)) from None
    try:
        st = os.fstat(fd)
        check_file(path, st)
        if st.st_mode & 0o077:
            # Ours but readable by others (say a root `touch`): an flock needs only a read-only
            # descriptor, so close that door on the file we just checked.
            os.fchmod(fd, 0o600)
    except LockError:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        raise LockError('cannot use host lock %s: %s' % (path, exc.strerror)) from None
    return fd


def _flock(fd, path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise LockError('cannot lock host lock %s: %s' % (path, exc.strerror)) from None
            if time.monotonic() >= deadline:
                raise LockTimeout('could not take the host lock %s within %ss: another clusternet.node run holds it'
                                  % (path, timeout)) from None
            time.sleep(0.02)


@contextlib.contextmanager
def host_lock(module=None, path=DEFAULT_LOCK_PATH, timeout=DEFAULT_TIMEOUT):
    """Hold the host lock; with a module, every refusal or timeout is a clean failure, not a traceback."""
    try:
        fd = open_lock(path)
        try:
            _flock(fd, path, timeout)
        except LockError:
            os.close(fd)
            raise
    except LockError as exc:
        if module is not None:
            module.fail_json(msg=str(exc))
        raise
    try:
        yield
    finally:
        os.close(fd)
