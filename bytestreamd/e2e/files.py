"""
Private files in the state directory: checked directories, atomic writes.

The state directory holds the daemon's private key and the fingerprints it
trusts, so both the directory and the files are guarded the way ssh guards
``~/.ssh``: a directory owned by someone else, or one that others may write
to, is refused (whoever can write there can swap the key or the pins), and
every file is written whole to a temporary name and renamed into place, so a
crash or a full disk never leaves half a key or half a known-peers file.
"""

from __future__ import annotations

import os
import secrets
import stat
from typing import Callable, Optional

from bytestreamd.errors import ConfigError

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


class UnsafeStateDirectory(ConfigError):
    """
    The state directory (or a file in it) could be changed or read by
    someone other than the daemon's user.  The one-line message names the
    path and the fix (``chown``/``chmod``); the daemon does not start.
    """


def ensureDirectory(path: str,
                    geteuid: Callable[[], int] = os.geteuid) -> str:
    """
    Create ``path`` (mode 0700, parents as needed) if it is missing, then
    check it with :func:`checkDirectory`.  Returns the absolute path.
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        try:
            os.makedirs(os.path.dirname(path), mode=DIRECTORY_MODE, exist_ok=True)
            os.mkdir(path, DIRECTORY_MODE)
        except FileExistsError:
            pass  # another process made it between the check and here
        except OSError as e:
            raise UnsafeStateDirectory(
                "cannot create state directory %s: %s" % (path, e.strerror))
    checkDirectory(path, geteuid)
    return path


def checkDirectory(path: str, geteuid: Callable[[], int] = os.geteuid) -> None:
    """Refuse a directory another user owns or others may write to."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UnsafeStateDirectory(
            "state directory %s: %s" % (path, e.strerror))
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeStateDirectory("state directory %s is not a directory" % path)
    euid = geteuid()
    if st.st_uid != euid:
        raise UnsafeStateDirectory(
            "state directory %s is owned by uid %d, not by this daemon's "
            "uid %d: chown it or choose another (state_dir)" % (path, st.st_uid, euid))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStateDirectory(
            "state directory %s is writable by group or others (mode %04o): "
            "chmod 700 %s" % (path, stat.S_IMODE(st.st_mode), path))


def checkPrivateFile(path: str, geteuid: Callable[[], int] = os.geteuid) -> None:
    """Refuse a file another user owns, or one that others may read or write."""
    st = os.stat(path)
    if st.st_uid != geteuid():
        raise UnsafeStateDirectory(
            "%s is owned by uid %d, not by this daemon's uid %d: chown it"
            % (path, st.st_uid, geteuid()))
    if st.st_mode & 0o077:
        raise UnsafeStateDirectory(
            "%s may be read or written by group or others (mode %04o): "
            "chmod 600 %s" % (path, stat.S_IMODE(st.st_mode), path))


def _writeTemporary(path: str, data: bytes) -> str:
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, ".%s.%s.tmp" % (name, secrets.token_hex(6)))
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(temporary)
        raise
    return temporary


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _syncDirectory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replaceAtomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) by temporary file + rename."""
    temporary = _writeTemporary(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        _unlink(temporary)
        raise
    _syncDirectory(os.path.dirname(os.path.abspath(path)))


def createAtomically(path: str, data: bytes) -> bool:
    """
    Write ``data`` to ``path`` (mode 0600) only if ``path`` does not exist:
    the temporary file is hard-linked into place, which fails instead of
    replacing.  Returns False if another process created ``path`` first --
    two daemons started at once then end up with the same key, not with one
    each and a file that matches only the second.
    """
    temporary = _writeTemporary(path, data)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        _unlink(temporary)
    _syncDirectory(os.path.dirname(os.path.abspath(path)))
    return True


def readPrivateFile(path: str, geteuid: Callable[[], int] = os.geteuid
                    ) -> Optional[bytes]:
    """The contents of ``path`` after :func:`checkPrivateFile`; None if missing."""
    try:
        checkPrivateFile(path, geteuid)
    except FileNotFoundError:
        return None
    with open(path, "rb") as f:
        return f.read()


def checkProtectedFile(path: str, geteuid: Callable[[], int] = os.geteuid) -> None:
    """
    Refuse a file another user owns or others may write to (reading is
    fine: it holds no secret, but whoever writes it decides whom we trust).
    """
    st = os.stat(path)
    if st.st_uid != geteuid():
        raise UnsafeStateDirectory(
            "%s is owned by uid %d, not by this daemon's uid %d: chown it"
            % (path, st.st_uid, geteuid()))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeStateDirectory(
            "%s is writable by group or others (mode %04o): chmod 600 %s"
            % (path, stat.S_IMODE(st.st_mode), path))
