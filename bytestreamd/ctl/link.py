"""
The client's side of one link socket: finding it in the daemon's reply,
connecting to it, and the non-blocking reads, half-closes and selector
bookkeeping that both the stdin/stdout splice (:mod:`.pipe`) and the file
transfers (:mod:`.transfer`) do while they watch the link's events.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import Any, Dict, Optional, Tuple

from bytestreamd.ctl.client import (CHUNK, ControlClosed, ControlConnection, CtlError, Reply,
                                    linkFailure)

#: Seconds to wait for the link's last event once its socket has ended
#: (or for the socket to end once ``CLOS`` came): the two arrive on
#: different sockets, in either order.
LINGER = 2.0


def linkSocket(reply: Reply, default: Optional[str] = None) -> Tuple[str, str]:
    """
    The link id and socket path an ``OPEN`` or ``ACCEPT`` reply names; the
    id is ``default`` when the reply has none.
    """
    options = reply.options()
    linkId, path = options.get("link", default), options.get("socket")
    if not linkId or not path or path == "-":
        raise CtlError("the daemon's reply names no link socket: %s" % reply.text)
    return linkId, path


def connectLink(control: ControlConnection, linkId: str, path: str,
                linger: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(control.timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        # The link may already have failed and its socket gone: its event
        # has the better explanation.
        deadline = time.monotonic() + linger
        while True:
            try:
                event = control.nextLinkEvent(linkId, deadline)
            except ControlClosed:
                event = None
            if event is None:
                break
            if event.final:
                raise linkFailure(linkId, event)
        raise CtlError("cannot connect to link socket %s: %s" % (path, exc.strerror or exc))
    return sock


def pollSelector() -> selectors.BaseSelector:
    # epoll refuses regular files, and `connect ... < file` is a normal use.
    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.SelectSelector()  # pragma: no cover


def setInterest(sel: selectors.BaseSelector, registered: Dict[Any, int],
                wanted: Dict[Any, int]) -> None:
    """Make ``sel`` (whose registrations ``registered`` mirrors) watch ``wanted``."""
    for fileobj in list(registered):
        if fileobj not in wanted:
            sel.unregister(fileobj)
            del registered[fileobj]
    for fileobj, mask in wanted.items():
        if fileobj not in registered:
            sel.register(fileobj, mask)
        elif registered[fileobj] != mask:
            sel.modify(fileobj, mask)
        registered[fileobj] = mask


def recvSome(sock: socket.socket) -> Optional[bytes]:
    """One ``recv``: ``None`` when nothing is there yet, ``b""`` at EOF or on an error."""
    try:
        return sock.recv(CHUNK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def shutWrite(sock: socket.socket) -> None:
    """Half-close: the peer sees EOF; a socket already gone is no error."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
