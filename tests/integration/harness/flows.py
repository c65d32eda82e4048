"""
Link-level steps the end-to-end tests share, written against INTERFACE.md
only: OPEN a link, take the next OFFER and ACCEPT it, move a file through
both link sockets with netcat and check every contract point on the way
(socket created at OPEN/ACCEPT, INIT before GOOD, CLOS on both sides,
sockets removed, byte counters if reported).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .control import ControlClient, Line
from .daemon import DaemonProcess
from .transfer import (ncReceive, ncSend, sha256File, waitForPath, waitGone, waitProcess,
                       writeRandomFile)

MiB = 1 << 20


def openLink(ctl: ControlClient, peer: str, options: str = "") -> Tuple[str, str]:
    """``OPEN peer options`` -> (link id, socket path); asserts 250 and both fields."""
    reply = ctl.command(("OPEN %s %s" % (peer, options)).strip())
    assert reply.code == 250, "OPEN %s %s -> %r" % (peer, options, reply)
    linkId, path = reply.get("link"), reply.get("socket")
    assert linkId and path, "OPEN reply lacks link= or socket=: %r" % reply
    return linkId, path


def acceptNextOffer(watch: ControlClient, fromBare: str,
                    timeout: float = 30.0) -> Tuple[Line, str, str]:
    """Wait for ``650 OFFER`` from ``fromBare``, ACCEPT it -> (offer, link id, socket)."""
    offer = watch.waitEvent(lambda e: e.words[:1] == ["OFFER"], timeout)
    sender = offer.options.get("from", "")
    assert sender.split("/")[0] == fromBare, "offer from %r, expected %s" % (offer, fromBare)
    offerId = offer.words[1]
    reply = watch.command("ACCEPT %s" % offerId)
    assert reply.code == 250, "ACCEPT %s -> %r" % (offerId, reply)
    linkId, path = reply.get("link"), reply.get("socket")
    assert linkId and path, "ACCEPT reply lacks link= or socket=: %r" % reply
    return offer, linkId, path


def linkStates(ctl: ControlClient, linkId: str) -> List[str]:
    return [e.words[2] for e in ctl.linkEvents(linkId) if len(e.words) > 2]


@dataclass
class Transfer:
    size: int
    digest: str
    copyDigest: str
    senderLink: str
    receiverLink: str
    senderEvents: List[Line] = field(default_factory=list)
    receiverEvents: List[Line] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """MiB/s, for the log."""
        return self.size / MiB / self.seconds if self.seconds else 0.0


def transferFile(src: DaemonProcess, dst: DaemonProcess, tmpdir, size: int,
                 options: str = "methods=ibb", method: Optional[str] = "ibb",
                 timeout: float = 120.0) -> Transfer:
    """
    Move ``size`` random bytes from ``src`` to ``dst`` over a new link:
    ``nc -N -U <src socket> < file`` and ``nc -d -U <dst socket> > copy``.
    Asserts the whole contract of a clean transfer; returns what happened.
    """
    tmpdir = str(tmpdir)
    name = "%s-to-%s-%d" % (src.account, dst.account, size)
    original = os.path.join(tmpdir, name + ".bin")
    copy = os.path.join(tmpdir, name + ".copy")
    digest = writeRandomFile(original, size)

    watch = dst.control(watch=True)
    ctl = src.control()
    started = time.monotonic()
    senderLink, senderSocket = openLink(ctl, dst.jid, options)
    assert senderSocket.startswith(src.linksDir), senderSocket
    assert waitForPath(senderSocket, 5), "OPEN socket %s never appeared" % senderSocket
    sender = ncSend(senderSocket, original)  # bytes before GOOD are held

    offer, receiverLink, receiverSocket = acceptNextOffer(watch, src.bareJID)
    assert receiverSocket.startswith(dst.linksDir), receiverSocket
    assert waitForPath(receiverSocket, 5), "ACCEPT socket %s never appeared" % receiverSocket
    receiver = ncReceive(receiverSocket, copy)

    good = ctl.waitLinkState(senderLink, ("GOOD", "BAD", "ERR", "CLOS"), 60)
    assert good.words[2] == "GOOD", "link %s: %s" % (senderLink, ctl.linkEvents(senderLink))
    if method:
        assert good.options.get("method") == method, good
    assert "INIT" in linkStates(ctl, senderLink), ctl.linkEvents(senderLink)

    deadline = started + timeout
    assert waitProcess(sender, max(1, deadline - time.monotonic()), "nc sender") == 0
    assert waitProcess(receiver, max(1, deadline - time.monotonic()), "nc receiver") == 0
    seconds = time.monotonic() - started

    end = ctl.waitLinkState(senderLink, ("CLOS", "ERR", "BAD"), 30)
    assert end.words[2] == "CLOS", "sender side: %s" % ctl.linkEvents(senderLink)
    rend = watch.waitLinkState(receiverLink, ("CLOS", "ERR", "BAD"), 30)
    assert rend.words[2] == "CLOS", "receiver side: %s" % watch.linkEvents(receiverLink)
    if "sent" in end.options:
        assert int(end.options["sent"]) == size, end
    if "received" in rend.options:
        assert int(rend.options["received"]) == size, rend
    for state in ("BAD", "ERR"):
        assert state not in linkStates(ctl, senderLink), ctl.linkEvents(senderLink)

    copyDigest = sha256File(copy)
    assert os.path.getsize(copy) == size, "received %d of %d bytes" % (
        os.path.getsize(copy), size)
    assert copyDigest == digest, "sha256 differs"
    assert waitGone(senderSocket, 5), "socket %s left after CLOS" % senderSocket
    assert waitGone(receiverSocket, 5), "socket %s left after CLOS" % receiverSocket
    os.unlink(original)
    os.unlink(copy)
    result = Transfer(size, digest, copyDigest, senderLink, receiverLink,
                      ctl.linkEvents(senderLink), watch.linkEvents(receiverLink), seconds)
    ctl.close()
    watch.close()
    return result
