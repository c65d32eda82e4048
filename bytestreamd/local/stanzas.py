"""
The end of an ``e2e=xmpp`` link: its local socket carries the stanzas of
the XEP-0246 stream (docs/e2e.rst, "e2e=xmpp: the local framing").

The framing, for a local program:

* **From the daemon**: each stanza the peer sent, as one complete XML
  element -- ``<message/>``, ``<presence/>`` or ``<iq/>`` carrying
  ``xmlns='jabber:client'`` -- one after another, nothing between them, UTF-8.
  Each can be parsed on its own.  The peer's ``from`` has been checked (it
  is the negotiated JID, bare or full, or absent).
* **To the daemon**: the same -- stanzas one after another (whitespace
  between them is ignored), with or without ``xmlns='jabber:client'``.  No
  stream header, no XML declaration, no ``</stream:stream>``: the daemon
  does the headers, STARTTLS and the stream restart.  A stanza must be
  well-formed, be a message, presence or iq, claim no other ``from`` than
  this daemon's JID, and be at most 1 MiB; anything else ends the link
  ``ERR`` with a reason naming what was wrong (nothing of it is sent).
* **The end**: the local program's EOF (or close) ends the XML stream
  (``</stream:stream>``, XEP-0246 section 5); the link is ``CLOS`` once the
  peer answered with its own.  The peer's ``</stream:stream>`` gives the
  local program EOF after every stanza before it.  The stream's own close
  handshake, inside TLS, is the end confirmation: an end without it is ERR.

This is an :class:`~bytestreamd.interfaces.ILinkEnd`; the stream it is
handed is a :class:`bytestreamd.e2e.secure.SecuredStream` in xmpp mode.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.python import failure
from twisted.words.xish import domish
from zope.interface import implementer

from bytestreamd.e2e import stream as e2e
from bytestreamd.errors import BytestreamBroken
from bytestreamd.interfaces import ILinkEnd
from bytestreamd.local.splice import LinkClosed

NS_CLIENT = "jabber:client"
#: What the local program may write in one stanza.
MAX_LOCAL_STANZA = e2e.MAX_STANZA_BYTES
#: Stanzas from the peer held for a local program not connected yet; beyond
#: it the stream is paused (backpressure to the peer).
HOLD_STANZAS = 64
#: How long our </stream:stream> waits for the peer's.
CLOSE_TIMEOUT = 30.0


class _Counts:
    """What LINKS and CLOS show as sent/received: stanza bytes."""

    sent = 0
    delivered = 0
    finished = None


class _LocalParser:
    """Parses the local program's stanzas inside a virtual stream."""

    def __init__(self, onStanza: Callable[[domish.Element], None],
                 onError: Callable[[str], None]):
        self._onStanza, self._onError = onStanza, onError
        self._parser = domish.elementStream()
        self._parser.DocumentStartEvent = lambda root: None
        self._parser.ElementEvent = self._element
        self._parser.DocumentEndEvent = lambda: None
        raw = self._parser.parser

        def restricted(*args: object) -> None:
            raise ValueError("a DTD, comment or processing instruction (XMPP forbids them)")

        raw.StartDoctypeDeclHandler = restricted
        raw.CommentHandler = restricted
        raw.ProcessingInstructionHandler = restricted
        raw.EntityDeclHandler = restricted
        raw.XmlDeclHandler = restricted
        self._parser.parse(b"<stream xmlns='%s'>" % NS_CLIENT.encode())
        self._since = 0
        self.failed = False

    def _element(self, element: domish.Element) -> None:
        self._since = 0
        self._onStanza(element)

    def feed(self, data: bytes) -> None:
        if self.failed:
            return
        self._since += len(data)
        try:
            self._parser.parse(data)
        except Exception as e:
            self.failed = True
            self._onError("the local program sent malformed XML (%s)" % (e,))
            return
        if self._since > MAX_LOCAL_STANZA and not self.failed:
            self.failed = True
            self._onError("the local program sent a stanza over %d bytes" % MAX_LOCAL_STANZA)


@implementer(ILinkEnd)
class StanzaRelay:
    """Joins a local connection and an e2e=xmpp stream (module docstring)."""

    def __init__(self, onRemoteClosed: Callable[[failure.Failure], None], clock: Any = None,
                 onLocalConnected: Optional[Callable[[], None]] = None,
                 closeTimeout: float = CLOSE_TIMEOUT):
        self.onRemoteClosed = onRemoteClosed
        self.clock = clock
        self.onLocalConnected = onLocalConnected
        self.closeTimeout = closeTimeout
        self.local: Any = None
        self.stream: Any = None
        self.lifecycle: Optional[_Counts] = None
        self.channel = None
        self.onActivity: Optional[Callable[[], None]] = None
        self._fromLocal: List[bytes] = []
        self._toLocal: List[bytes] = []
        self._localEOF = False
        self._peerClosed = False
        self._ended = False
        self._timer = None
        self._parser = _LocalParser(self._localStanza, self._localError)

    # --- local side --------------------------------------------------------------

    @property
    def hasLocal(self) -> bool:
        return self.local is not None

    def localConnected(self, proto: Any) -> None:
        self.local = proto
        if self.onLocalConnected is not None:
            self.onLocalConnected()
        if self._ended:
            proto.transport.loseConnection()
            return
        self._flushToLocal()

    def fromLocal(self, data: bytes) -> None:
        if self.stream is None:
            self._fromLocal.append(data)
            return
        self._parser.feed(data)

    def localEOF(self) -> None:
        self._localEOF = True
        if self.stream is not None:
            self.requestClose()

    def localLost(self, reason: Any) -> None:
        self.local = None
        self._localEOF = True
        if self.stream is not None and not self._ended:
            self.requestClose()

    def _localStanza(self, element: domish.Element) -> None:
        if self._ended:
            return
        if element.uri in (None, ""):
            element.uri = element.defaultUri = NS_CLIENT
        try:
            self.stream.sendStanza(element)
        except e2e.BadStanza as e:
            self._localError("the local program sent a stanza the daemon refuses: %s" % (e,))
            return
        self.lifecycle.sent += len(element.toXml().encode("utf-8"))

    def _localError(self, reason: str) -> None:
        if self.stream is None or self._ended:
            return
        # the peer is told the stream ends; nothing of the bad stanza was sent
        self.stream.closeStream()
        self._end(None, reason)

    # --- remote side -------------------------------------------------------------

    def streamReady(self, stream: Any, lifecycle: Any = None, channel: Any = None) -> None:
        self.stream = stream
        self.lifecycle = _Counts()
        stream.onStanza = self._peerStanza
        stream.onStreamEnd = self._streamEnded
        held, self._fromLocal = self._fromLocal, []
        for data in held:
            self._parser.feed(data)
        if self._localEOF and not self._ended:
            self.requestClose()
        stream.resumeProducing()

    def _peerStanza(self, element: domish.Element) -> None:
        # toXml() of a parsed stanza names its namespace: each stanza
        # written to the local program parses on its own.
        data = element.toXml().encode("utf-8")
        self.lifecycle.delivered += len(data)
        if self.onActivity is not None:
            self.onActivity()
        if self.local is not None and not self._toLocal:
            self.local.transport.write(data)
            return
        self._toLocal.append(data)
        if len(self._toLocal) >= HOLD_STANZAS:
            self.stream.pauseProducing()

    def _flushToLocal(self) -> None:
        held, self._toLocal = self._toLocal, []
        if held:
            self.local.transport.writeSequence(held)
            if self.stream is not None:
                self.stream.resumeProducing()
        if self._peerClosed:
            self._closeLocal()

    def _streamEnded(self, reason: Optional[str]) -> None:
        """The XML stream ended: cleanly both ways (None) or not."""
        if reason is None:
            self._peerClosed = True
            if self.local is not None:
                self._flushToLocal()
            self._end(None, None)
        else:
            self._end(reason, None)

    # --- the link layer ------------------------------------------------------------

    def requestClose(self) -> None:
        if self.stream is None or self._ended:
            return
        self.stream.closeStream()
        if self.clock is not None and self._timer is None:
            self._timer = self.clock.callLater(self.closeTimeout, self._closeTimedOut)

    def _closeTimedOut(self) -> None:
        self._timer = None
        self.stream.abortConnection()
        self._end("the peer did not answer </stream:stream> within %gs" % self.closeTimeout,
                  None)

    def peerEOF(self, sent: int) -> None:
        pass  # the XML stream's close handshake is this link's confirmation

    def peerEnded(self, end: Any) -> None:
        pass

    def peerRefusedEnd(self, reason: str) -> None:
        pass

    def peerAskedFlush(self) -> None:
        pass

    def peerGone(self, reason: str) -> None:
        self._abort(reason)

    def fail(self, reason: str) -> None:
        self._abort(reason)

    def abort(self) -> None:
        if self.local is not None:
            self.local.transport.abortConnection()
        self.local = None

    def _abort(self, reason: str) -> None:
        if self.stream is not None:
            self.stream.abortConnection()
        self._end(reason, None)

    def _closeLocal(self) -> None:
        local, self.local = self.local, None
        if local is not None:
            local.transport.loseConnection()

    def _end(self, error_: Optional[str], localError: Optional[str]) -> None:
        """``error_``: the link failed (ERR); ``localError``: the local
        program broke the framing (ERR too); neither: CLOS, confirmed."""
        if self._ended:
            return
        self._ended = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        why = error_ or localError
        if why is None:
            if self.local is not None and not self._toLocal:
                self._closeLocal()
            reason = failure.Failure(LinkClosed("the e2e stream was closed",
                                                confirmed=True))
        else:
            if self.local is not None:
                self.local.transport.abortConnection()
                self.local = None
            reason = failure.Failure(BytestreamBroken(why))
        self.onRemoteClosed(reason)


__all__ = ["StanzaRelay"]
