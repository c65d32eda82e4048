"""
The clients a memory-tier test drives a daemon with: its control socket
(:class:`ControlClient`, in the manner of the real tier's
``harness.control.ControlClient``), a link socket (:class:`LocalClient`),
and a plain XMPP session (:class:`XMPPClient`).  Their waits run the
:class:`tests.memory.world.World` (``runUntil``): timeouts are fake seconds.
"""

from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Pattern, Sequence, Union

from twisted.internet import error, interfaces, protocol
from twisted.python import failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from tests.integration.harness.control import Line, Reply

Matcher = Union[str, Pattern, Callable[[Line], bool]]


class WorldError(AssertionError):
    """Something a test waited for did not happen (in fake time)."""


class XMPPClient:
    """
    A bare XMPP client session: ``send(element or XML text)``, ``received``
    (every stanza that arrived, as domish elements), ``waitStanza(pred)``,
    ``request(iq)`` (the answer element; an ``error`` answer too), and
    ``disconnect()``.  ``jid`` is its full JID.
    """

    def __init__(self, world: Any, jid: JID, password: str, server: str, port: int):
        from twisted.words.protocols.jabber import client as jclient, xmlstream

        self.world = world
        self.jid = jid
        self.received: List[Any] = []
        self.xmlstream: Any = None
        factory = jclient.XMPPClientFactory(jid, password)
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authd)
        self._connector = world.tester.connectTCP(server, port, factory)

    def _authd(self, xs: Any) -> None:
        self.xmlstream = xs
        xs.addObserver("/*", self.received.append)

    def send(self, stanza: Any) -> None:
        self.xmlstream.send(stanza)

    def waitStanza(self, pred: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """The first received stanza (ever) for which ``pred`` is true."""
        found: List[Any] = []

        def done() -> bool:
            found[:] = [s for s in self.received if pred(s)][:1]
            return bool(found)

        self.world.runUntil(done, timeout, "a stanza for %s" % (self.jid.full(),))
        return found[0]

    def request(self, iq: Any, timeout: float = 30.0) -> Any:
        if not iq.getAttribute("id"):
            iq.addUniqueId()
        iqId = iq["id"]
        self.send(iq)
        return self.waitStanza(lambda s: s.name == "iq" and s.getAttribute("id") == iqId
                               and s.getAttribute("type") in ("result", "error"), timeout)

    def disconnect(self) -> None:
        self._connector.disconnect()
        self.world.pump()


class OneShotFactory(protocol.ClientFactory):
    """Connects one given protocol; ``done`` once connected or failed (``reason``)."""

    def __init__(self, proto: protocol.Protocol):
        self.proto = proto
        self.done = False
        self.reason: Optional[failure.Failure] = None

    def buildProtocol(self, addr):
        self.done = True
        return self.proto

    def clientConnectionFailed(self, connector, reason):
        self.done = True
        self.reason = reason


def _matcher(match: Matcher) -> Callable[[Line], bool]:
    if callable(match):
        return match
    pattern = re.compile(match) if isinstance(match, str) else match
    return lambda line: pattern.search(line) is not None


class ControlClient(protocol.Protocol):
    """
    A control-socket client in the memory tier, in the manner of the real
    tier's ``harness.control.ControlClient`` (same ``Line``/``Reply``):
    ``command``/``expect`` send a line and wait for its reply,
    ``waitEvent``/``waitLinkState`` for a ``650`` event; ``events`` keeps
    every event, ``pending`` those no wait has claimed.  Waits advance the
    fake clock; their timeouts are fake seconds.
    """

    def __init__(self, world: Any, path: str):
        self.world = world
        self.path = path
        self.buffer = b""
        self.events: List[Line] = []
        self.pending: List[Line] = []
        self.replies: List[Reply] = []
        self.interleaved: List[Line] = []
        self._lines: List[str] = []
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            raw, _, self.buffer = self.buffer.partition(b"\n")
            line = Line(raw.rstrip(b"\r").decode("utf-8"))
            if line.startswith("650 "):
                if self._lines:
                    self.interleaved.append(line)
                self.events.append(line)
                self.pending.append(line)
                continue
            if len(line) < 4 or not line[:3].isdigit() or line[3] not in " -":
                raise WorldError("malformed control line %r" % (line,))
            self._lines.append(line[4:])
            if line[3] == " ":
                self.replies.append(Reply(int(line[:3]), self._lines))
                self._lines = []

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True

    def send(self, line: str) -> None:
        """One raw line, LF added; no wait."""
        self.transport.write(line.encode("utf-8") + b"\n")

    def readReply(self, timeout: float = 30.0) -> Reply:
        self.world.runUntil(lambda: self.replies or self.closed, timeout,
                            "a reply on %s" % self.path)
        if not self.replies:
            raise WorldError("control connection %s closed without a reply" % self.path)
        return self.replies.pop(0)

    def command(self, line: str, timeout: float = 30.0) -> Reply:
        self.send(line)
        return self.readReply(timeout)

    def expect(self, line: str, code: int = 250, timeout: float = 30.0) -> Reply:
        reply = self.command(line, timeout)
        if reply.code != code:
            raise WorldError("%r: expected %d, got %r" % (line, code, reply))
        return reply

    def waitEvent(self, match: Matcher, timeout: float = 30.0) -> Line:
        """The first unclaimed event matching ``match`` (regex or predicate); removes it."""
        pred = _matcher(match)
        found: List[Line] = []

        def done() -> bool:
            if found:
                return True
            for i, event in enumerate(self.pending):
                if pred(event):
                    found.append(self.pending.pop(i))
                    return True
            return False

        try:
            self.world.runUntil(done, timeout, "an event matching %r on %s" % (match, self.path))
        except WorldError as e:
            raise WorldError("%s\nevents seen: %s" % (e, self.events[-10:])) from None
        return found[0]

    def waitLinkState(self, linkId: str, states: Sequence[str] = ("CLOS", "ERR", "BAD"),
                      timeout: float = 30.0) -> Line:
        return self.waitEvent(lambda e: e.words[:2] == ["LINK", linkId] and len(e.words) > 2
                              and e.words[2] in states, timeout)

    def linkEvents(self, linkId: str) -> List[Line]:
        return [e for e in self.events if e.words[:2] == ["LINK", linkId]]

    def close(self) -> None:
        self.transport.loseConnection()
        self.world.pump()


@implementer(interfaces.IHalfCloseableProtocol)
class LocalClient(protocol.Protocol):
    """
    A program on a link socket (``nc -U`` with half-close): ``write``,
    ``writeEOF`` (shutdown of its sending side), ``close``, ``abort``,
    ``stopReading``/``startReading``; ``received`` is everything that
    arrived, ``eof`` says the daemon half-closed, ``lost`` is the reason the
    connection ended (``None`` while open).
    """

    def __init__(self, world: Any):
        self.world = world
        self.received = bytearray()
        self.eof = False
        self.wroteEOF = False
        self.lost: Optional[failure.Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.eof = True
        if self.wroteEOF:
            # Both directions done: close, as nc and socat do.
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason or failure.Failure(error.ConnectionDone())
        if reason is None or reason.check(error.ConnectionDone):
            self.eof = True

    @property
    def closedCleanly(self) -> bool:
        return self.lost is not None and self.lost.check(error.ConnectionDone) is not None

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def writeEOF(self) -> None:
        self.wroteEOF = True
        if self.eof:
            self.transport.loseConnection()
        else:
            self.transport.loseWriteConnection()

    def close(self) -> None:
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()

    def stopReading(self) -> None:
        self.transport.pauseProducing()

    def startReading(self) -> None:
        self.transport.resumeProducing()

    def waitReceived(self, count: int, timeout: float = 30.0) -> bytes:
        """Wait until ``count`` bytes arrived (or the connection ended)."""
        self.world.runUntil(lambda: len(self.received) >= count or self.lost is not None,
                            timeout, "%d bytes on a link socket (have %d)"
                            % (count, len(self.received)))
        return bytes(self.received)

    def waitEOF(self, timeout: float = 30.0) -> None:
        self.world.runUntil(lambda: self.eof or self.lost is not None, timeout,
                            "EOF on a link socket")
