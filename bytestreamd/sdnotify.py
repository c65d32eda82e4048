"""
systemd's readiness protocol (``sd_notify``), without libsystemd.

With ``Type=notify`` systemd waits for ``READY=1`` on the datagram socket
named by ``$NOTIFY_SOCKET``; the daemon sends it once the control socket is
listening, and ``STATUS=...`` lines for ``systemctl status``.  Outside
systemd there is no ``$NOTIFY_SOCKET`` and :func:`notify` does nothing.

A failure to notify must never take the daemon down -- at worst systemd
times the start out, which it reports itself -- so errors are logged, not
raised.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional

from twisted.logger import Logger

log = Logger()


def notify(*assignments: str,
           environ: Optional[Mapping[str, str]] = None) -> bool:
    """
    Send ``assignments`` (e.g. ``"READY=1"``, ``"STATUS=connected"``) as
    one datagram, newline-separated, to ``$NOTIFY_SOCKET``: a path, or an
    abstract socket written ``@name``.

    Returns True when a datagram was sent, False otherwise (no socket
    configured, nothing to send, or an error, which is logged).
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address or not assignments:
        return False
    try:
        payload = "\n".join(assignments).encode("utf-8")
        if address.startswith("@"):
            target = "\0" + address[1:]
        elif address.startswith("/"):
            target = address
        else:
            log.warn("NOTIFY_SOCKET={address!r} is neither a path nor "
                     "@abstract; not notifying systemd", address=address)
            return False
        with socket.socket(socket.AF_UNIX,
                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, target)
    except Exception as e:
        log.warn("could not notify systemd at {address}: {error}",
                 address=address, error=e)
        return False
    return True
