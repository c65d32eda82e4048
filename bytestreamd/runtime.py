"""
The runtime directory: ``<runtime_dir>/control`` and ``<runtime_dir>/links/``.

Whoever can replace this directory, or a socket in it, can read and write
every link.  So it is checked the way Tor checks its DataDirectory and
OpenSSH its ``StrictModes`` paths, before anything is created in it:

* the directory and ``links/`` are looked at with ``lstat``: a symlink is
  refused, never followed;
* each must be a directory owned by the daemon's effective uid and not
  writable by group or others (a sticky 1777 directory is refused too:
  others could still create names in it);
* every ancestor (of the real path) must be owned by root or by us and not
  writable by group or others unless it is sticky, like ``/tmp``: else
  someone could rename our directory away and put theirs in its place;
* the daemon changes modes and groups only of directories it has just
  created; an existing directory that is more open than needed (e.g.
  readable by others) is used as it is, with a warning;
* a path is removed only when it is a socket nobody listens on (a stale
  socket of ours); a file, a directory or a live socket is refused.

Every refusal is a :class:`RuntimeDirError` (a :class:`ConfigError`): one
line naming the path, which the daemon prints before it stops.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Callable, List, Optional

from bytestreamd.errors import ConfigError

#: Where link sockets live, under the runtime directory.
LINKS = "links"
#: The control socket's name in the runtime directory.
CONTROL = "control"


class RuntimeDirError(ConfigError):
    """The runtime directory, or a path in it, is not safe to use."""


def directoryMode(socketMode: int, socketGroup: Optional[int]) -> int:
    """
    0700 -- link ids are capabilities of a sort, other users have no
    business listing them -- or 0750 when the sockets are shared with a
    group (``socket_group`` or a group bit in ``socket_mode``).
    """
    shared = socketGroup is not None or bool(socketMode & 0o070)
    return 0o750 if shared else 0o700


def prepareRuntimeDir(path: str, socketMode: int = 0o600,
                      socketGroup: Optional[int] = None, *,
                      euid: Optional[int] = None) -> List[str]:
    """
    Check (or create) ``path`` and ``path/links`` as the module docstring
    says; returns warnings for the log (an existing directory more open than
    needed).  Raises :class:`RuntimeDirError`.
    """
    euid = os.geteuid() if euid is None else euid
    mode = directoryMode(socketMode, socketGroup)
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    _makeParents(parent, path)
    _checkAncestors(os.path.realpath(parent), path, euid)
    warnings: List[str] = []
    # Below the checked (real) parent nothing is followed any more.
    real = os.path.join(os.path.realpath(parent), os.path.basename(path))
    for where, shown in ((real, path), (os.path.join(real, LINKS), os.path.join(path, LINKS))):
        if _makeDirectory(where, shown, mode, socketGroup):
            continue
        warning = _checkDirectory(where, shown, euid, mode)
        if warning:
            warnings.append(warning)
    if not os.access(real, os.W_OK | os.X_OK, effective_ids=True):
        raise RuntimeDirError("%s: not writable by uid %d; the daemon creates its "
                              "sockets there" % (path, euid))
    return warnings


def _makeParents(parent: str, path: str) -> None:
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise RuntimeDirError("%s: cannot create its parent directory %s: %s"
                              % (path, parent, e.strerror or e))


def _makeDirectory(path: str, shown: str, mode: int, gid: Optional[int]) -> bool:
    """Create ``path``; True if we did (then, and only then, set its mode)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return False
    except OSError as e:
        raise RuntimeDirError("%s: cannot create the directory: %s"
                              % (shown, e.strerror or e))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise RuntimeDirError("%s: cannot open the new directory: %s"
                              % (shown, e.strerror or e))
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away
        if gid is not None:
            os.fchown(fd, -1, gid)
    except OSError as e:
        raise RuntimeDirError("%s: cannot set mode %04o%s: %s"
                              % (shown, mode, "" if gid is None else " and group %d" % gid,
                                 e.strerror or e))
    finally:
        os.close(fd)
    return True


def _checkDirectory(path: str, shown: str, euid: int, mode: int) -> Optional[str]:
    """Refuse an existing directory we must not use; a warning if too open."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise RuntimeDirError("%s: %s" % (shown, e.strerror or e))
    if stat.S_ISLNK(st.st_mode):
        raise RuntimeDirError("%s is a symlink; refusing to follow it (use the "
                              "real directory, or remove the link)" % shown)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeDirError("%s exists and is not a directory" % shown)
    if st.st_uid != euid:
        raise RuntimeDirError("%s is owned by uid %d, not by the daemon's user "
                              "(uid %d)" % (shown, st.st_uid, euid))
    current = stat.S_IMODE(st.st_mode)
    if current & 0o022:
        raise RuntimeDirError("%s is writable by %s (mode %04o); make it 0700 "
                              "(0750 to share the sockets with a group)"
                              % (shown, _who(current), current))
    if current & ~mode & 0o077:
        return ("%s has mode %04o, more open than the %04o the daemon would "
                "give it; left as it is" % (shown, current, mode))
    if mode & 0o010 and not current & 0o010:
        return ("%s has mode %04o: the group cannot reach the sockets in it "
                "(chmod 0750 it to share them); left as it is" % (shown, current))
    return None


def _who(mode: int) -> str:
    both = mode & 0o020 and mode & 0o002
    return "group and others" if both else ("group" if mode & 0o020 else "others")


def _checkAncestors(realParent: str, path: str, euid: int) -> None:
    """Every directory above ours: root's or ours, and only we may write it."""
    current = realParent
    while True:
        try:
            st = os.stat(current)
        except OSError as e:
            raise RuntimeDirError("%s: cannot check %s: %s"
                                  % (path, current, e.strerror or e))
        if st.st_uid not in (0, euid):
            raise RuntimeDirError(
                "%s: its parent directory %s is owned by uid %d (only root or uid "
                "%d may own the directories above the runtime directory)"
                % (path, current, st.st_uid, euid))
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise RuntimeDirError(
                "%s: its parent directory %s is writable by %s (mode %04o) and "
                "not sticky; anyone could replace the runtime directory"
                % (path, current, _who(st.st_mode), stat.S_IMODE(st.st_mode)))
        up = os.path.dirname(current)
        if up == current:
            return
        current = up


def isListening(path: str) -> bool:
    """Whether a process accepts connections on the UNIX socket ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        return e.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        s.close()
    return True


def removeStaleSocket(path: str, what: str = "socket", *,
                      euid: Optional[int] = None,
                      listening: Callable[[str], bool] = isListening) -> None:
    """
    Make room for a socket at ``path``: nothing there is fine; our own
    socket with no listener (left by a crash) is removed; anything else --
    a file, a directory, a symlink, another user's socket, a live socket --
    is refused with :class:`RuntimeDirError`, and left alone.
    """
    euid = os.geteuid() if euid is None else euid
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise RuntimeDirError("%s: %s" % (path, e.strerror or e))
    if not stat.S_ISSOCK(st.st_mode):
        raise RuntimeDirError("%s exists and is not a %s; not removing it"
                              % (path, what))
    if st.st_uid != euid:
        raise RuntimeDirError("%s is a socket of uid %d, not ours; not removing it"
                              % (path, st.st_uid))
    if listening(path):
        raise RuntimeDirError("%s is in use: another bytestreamd is running with "
                              "this runtime_dir" % (path,))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise RuntimeDirError("%s: cannot remove the stale socket: %s"
                              % (path, e.strerror or e))
