# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host lock: one writer of this collection's state at a time on a host.

An exclusive flock on /run/clusternet-node/lock. It is per host, not per network
namespace (every namespace shares /run), which is what serializing writers needs:
two runs against the same kernel objects must not interleave their read-diff-write
cycles.

An flock needs only a read-only descriptor, and no chmod revokes a descriptor already
open: so a lock file anyone else could ever open is one they can block every run with.
The file therefore lives in a directory of our own, /run/clusternet-node, mode 0700,
which no other user can even search; its parent must be writable by its owner alone
(/run, as xtables keeps /run/xtables.lock; not the world-writable /run/lock, where any
user could create the names first). The directory and the file are opened with
O_NOFOLLOW and must be root's; the file must be a regular file with one link that group
and others cannot write. Each refusal is one clear error naming the path. A lock file
that someone else could have opened (the directory or the file was found with group or
other permissions) is replaced by a fresh 0600 file, never reused; a run that locked a
file since replaced retries on the new one, so concurrent runs still meet on one file.
The older /run/clusternet-node.lock and /run/lock/clusternet-node.lock are no longer
used and are left alone.

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

DEFAULT_LOCK_PATH = '/run/clusternet-node/lock'
DEFAULT_TIMEOUT = 120
CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC
PRIVATE = 0o077  # any permission for group or others


class LockError(Exception):
    """The lock path is unsafe to use: the message names it and why."""


class LockTimeout(LockError):
    pass


def _owners():
    return (0, os.geteuid())


def check_parent(path, parent):
    """The private directory's parent must be a directory only its owner (root or us) can write."""
    try:
        st = os.stat(parent)
    except OSError as exc:
        raise LockError('cannot use host lock %s: directory %s: %s' % (path, parent, exc.strerror)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise LockError('cannot use host lock %s: %s is not a directory' % (path, parent))
    if st.st_uid not in _owners() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LockError('refusing host lock %s: directory %s is owned by uid %d, mode %04o; it must be writable by root alone'
                        % (path, parent, st.st_uid, stat.S_IMODE(st.st_mode)))


def open_private_directory(path, directory):
    """Open (create 0700) the lock's own directory; (descriptor, whether others could search it)."""
    try:
        os.mkdir(directory, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise LockError('cannot create host lock directory %s: %s' % (directory, exc.strerror)) from None
    try:
        dir_fd = os.open(directory, DIR_FLAGS)
    except OSError as exc:
        # O_DIRECTORY | O_NOFOLLOW fails a symlink with ENOTDIR (or ELOOP): name which it was.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
            raise LockError('refusing host lock %s: directory %s is a symbolic link' % (path, directory)) from None
        if exc.errno == errno.ENOTDIR:
            raise LockError('refusing host lock %s: %s is not a directory' % (path, directory)) from None
        raise LockError('cannot open host lock directory %s: %s' % (directory, exc.strerror)) from None
    try:
        st = os.fstat(dir_fd)
        if st.st_uid not in _owners():
            raise LockError('refusing host lock %s: directory %s is owned by uid %d, not root' % (path, directory, st.st_uid))
        opened = bool(st.st_mode & PRIVATE)
        if opened:
            os.fchmod(dir_fd, 0o700)
    except LockError:
        os.close(dir_fd)
        raise
    except OSError as exc:
        os.close(dir_fd)
        raise LockError('cannot use host lock directory %s: %s' % (directory, exc.strerror)) from None
    return dir_fd, opened


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


def _open_file(path, name, dir_fd, flags):
    try:
        return os.open(name, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError('refusing host lock %s: it is a symbolic link' % path) from None
        if exc.errno == errno.EISDIR:
            raise LockError('refusing host lock %s: not a regular file' % path) from None
        raise LockError('cannot open host lock %s: %s' % (path, exc.strerror)) from None


def _replace(path, name, dir_fd):
    """A fresh 0600 file renamed over the lock: descriptors others hold on the old one lock nothing of ours."""
    spare = '.%s.%d' % (name, os.getpid())  # a leftover of a killed run of ours (the directory is root's alone)
    try:
        os.unlink(spare, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = _open_file(path, spare, dir_fd, FLAGS | os.O_EXCL)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.rename(spare, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        os.close(fd)
        raise
    return fd


def open_lock(path):
    """Open (create 0600, in a 0700 directory of ours) the lock file safely; the descriptor, or LockError."""
    directory = os.path.dirname(path) or '.'
    name = os.path.basename(path)
    check_parent(path, os.path.dirname(directory) or '.')
    dir_fd, opened = open_private_directory(path, directory)
    try:
        fd = _open_file(path, name, dir_fd, FLAGS)
        try:
            st = os.fstat(fd)
            check_file(path, st)
        except LockError:
            os.close(fd)
            raise
        if opened or st.st_mode & PRIVATE:
            # Someone else could have this file open (and flock it): replace, do not reuse.
            os.close(fd)
            fd = _replace(path, name, dir_fd)
    except OSError as exc:
        raise LockError('cannot use host lock %s: %s' % (path, exc.strerror)) from None
    finally:
        os.close(dir_fd)
    return fd


def _is_current(fd, path):
    """Whether path still names the file fd locked (another run may have replaced it meanwhile)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LockError('cannot use host lock %s: %s' % (path, exc.strerror)) from None
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _flock(fd, path, deadline, timeout):
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


def take_lock(path=DEFAULT_LOCK_PATH, timeout=DEFAULT_TIMEOUT):
    """The descriptor of the locked host lock file; LockError (LockTimeout after timeout s) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        fd = open_lock(path)
        try:
            _flock(fd, path, deadline, timeout)
            if _is_current(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def host_lock(path=DEFAULT_LOCK_PATH, timeout=DEFAULT_TIMEOUT):
    """Hold the host lock; a refusal or timeout raises LockError (engine.report fails the module)."""
    fd = take_lock(path, timeout)
    try:
        yield
    finally:
        os.close(fd)
