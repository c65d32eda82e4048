"""
The XMPP side of end confirmation: carries ``<eof/>`` and ``<end/>``
(:mod:`bytestreamd.wire.end`) between two daemons, one session per link.

Incoming requests are matched by *sender full JID and sid*: a request for a
sid we do not have with that sender -- a stranger guessing, or a peer whose
link we already forgot -- is answered ``item-not-found`` and touches no
link.  Outgoing requests are ordinary IQ requests; an error or a timeout
answer is handed to the link (the peer cannot confirm: the link ends ERR).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco, iwokkel
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.errors import NotConnected, stanzaError
from bytestreamd.xmpp.stanzas import LATER, Handler, failureText, makeIQ, parseJID
from bytestreamd.text import SafeLogger
from bytestreamd.wire import end as wire

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

REQUEST = "/iq[@type='set']/*[@xmlns='%s']" % ns.NS_END
#: ``<iq type='get'><session xmlns='urn:x-bytestreamd:end:0' sid='X'/></iq>``:
#: "do you still have link session X with me?"  The liveness probe for a
#: bytestreamd peer: a daemon that restarted under the same full JID answers
#: pings but knows none of its old links (answered item-not-found).
SESSION_QUERY = "/iq[@type='get']/session[@xmlns='%s']" % ns.NS_END


class EndSession:
    """
    One link's end of the channel.  ``onEOF(sent)``, ``onEnd(End)`` receive
    the peer's messages; ``onRefused(reason)`` is told when the peer answers
    ours with an error (or not at all).
    """

    def __init__(self, channel: "EndChannel", peer: JID, sid: str,
                 onEOF: Callable[[int], None], onEnd: Callable[[wire.End], None],
                 onRefused: Callable[[str], None]):
        self._channel = channel
        self.peer = peer
        self.sid = sid
        self.onEOF = onEOF
        self.onEnd = onEnd
        self.onRefused = onRefused
        #: Called when the peer asks us to flush: with no argument (half-close
        #: the transport), or with how many of our bytes arrived (send the
        #: rest in-band, see ``sendTail``).
        self.onFlush: Optional[Callable[..., None]] = None
        #: Called with (offset, bytes) for each ``<tail/>`` the peer sends.
        self.onTail: Optional[Callable[[int, bytes], None]] = None
        self._pending: list = []

    def sendEOF(self, sent: int) -> None:
        self._send(wire.EOF(self.sid, sent).toElement())

    def sendFlush(self, received: Optional[int] = None) -> None:
        self._send(wire.Flush(self.sid, received).toElement())

    def sendTail(self, offset: int, data: bytes) -> None:
        """Our stream's bytes from ``offset`` on, in-band, in order."""
        log.info("re-sending {n} bytes of session {sid} from offset {offset} to {peer} "
                 "in-band (a relay stranded them)", n=len(data), sid=self.sid,
                 offset=offset, peer=self.peer.full())
        for start in range(0, len(data), wire.TAIL_CHUNK):
            chunk = data[start:start + wire.TAIL_CHUNK]
            self._send(wire.Tail(self.sid, offset + start, chunk).toElement())

    def sendEnd(self, end) -> None:
        self._send(wire.End(self.sid, end.sent, end.received, end.status,
                            end.text).toElement())

    def _send(self, element: domish.Element) -> None:
        d = self._channel._request(self.peer, element)
        self._pending.append(d)

        def done(result):
            if d in self._pending:
                self._pending.remove(d)
            return result

        def failed(f):
            if f.check(defer.CancelledError):
                return None
            self.onRefused("%s (%s)" % (failureText(f), element.name))
            return None

        d.addBoth(done).addErrback(failed)

    def close(self) -> None:
        """The link is over: forget the session, stop waiting for answers."""
        self._channel._forget(self)
        pending, self._pending = self._pending, []
        for d in pending:
            d.cancel()


@implementer(iwokkel.IDisco)
class EndChannel(Handler):
    """Advertises ``urn:x-bytestreamd:end:0`` and routes eof/end by (peer, sid)."""

    #: Messages held per expected session (a peer sends eof, end, maybe a flush).
    MAX_EARLY = 4

    def __init__(self, requestTimeout: float = 30.0):
        Handler.__init__(self)
        self.requestTimeout = requestTimeout
        self._sessions: Dict[Tuple[str, str], EndSession] = {}
        #: Sessions we accepted an offer for but whose link is not GOOD yet:
        #: a SOCKS5 target that used a proxy reports GOOD only on the first
        #: byte or after a grace, while the initiator may already have sent
        #: its eof.  Their messages wait here instead of being refused.
        self._early: Dict[Tuple[str, str], list] = {}

    def expect(self, peer: JID, sid: str) -> None:
        """An offer from ``peer`` for ``sid`` was accepted: hold its early messages."""
        self._early.setdefault((peer.full(), sid), [])

    def unexpect(self, peer: JID, sid: str) -> None:
        self._early.pop((peer.full(), sid), None)

    def heardEarly(self, peer: JID, sid: str) -> bool:
        """
        ``peer`` already sent eof/end for ``sid`` before its link was GOOD:
        it speaks the end protocol, whatever its disco said (or did not say:
        a disco request that timed out).  Without this, a peer that CLOSEd
        while we still waited for its features was never heard, and its
        close waited for peer_timeout.
        """
        return bool(self._early.get((peer.full(), sid)))

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        return [] if nodeIdentifier else [disco.DiscoFeature(ns.NS_END)]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

    def connectionInitialized(self) -> None:
        self.observeIQ(REQUEST, self._onRequest)
        self.observeIQ(SESSION_QUERY, self._onSessionQuery)

    def _onSessionQuery(self, iq: domish.Element) -> None:
        """Does this session exist here? (through the IQ boundary)"""
        element = next(iq.elements(ns.NS_END, "session"), None)
        sender = parseJID(iq.getAttribute("from"))
        sid = element.getAttribute("sid") if element is not None else None
        if sender is None or not sid or (sender.full(), sid) not in self._sessions:
            raise stanzaError("item-not-found", type="cancel")

    def open(self, peer: JID, sid: str, onEOF, onEnd, onRefused) -> EndSession:
        session = EndSession(self, peer, sid, onEOF, onEnd, onRefused)
        self._sessions[(peer.full(), sid)] = session
        return session

    def replay(self, session: EndSession) -> None:
        """Deliver what the peer sent before the session was opened."""
        for value in self._early.pop((session.peer.full(), session.sid), []):
            self._deliver(session, value)

    def _deliver(self, session: EndSession, value) -> None:
        if isinstance(value, wire.EOF):
            session.onEOF(value.sent)
        elif isinstance(value, wire.Flush):
            if session.onFlush is not None:
                if value.received is None:
                    session.onFlush()
                else:
                    session.onFlush(value.received)
        elif isinstance(value, wire.Tail):
            if session.onTail is not None:
                session.onTail(value.offset, value.data)
        else:
            session.onEnd(value)

    def _forget(self, session: EndSession) -> None:
        key = (session.peer.full(), session.sid)
        if self._sessions.get(key) is session:
            del self._sessions[key]

    def _request(self, peer: JID, element: domish.Element) -> defer.Deferred:
        iq = makeIQ("set", peer)
        iq.addChild(element)
        try:
            return self.request(iq, self.requestTimeout)
        except NotConnected as e:
            return defer.fail(e)

    def _onRequest(self, iq: domish.Element) -> None:
        """An eof, end or flush (through the IQ boundary)."""
        element = next(iq.elements(ns.NS_END), None)
        sender = parseJID(iq.getAttribute("from"))
        try:
            if element is None or sender is None:
                raise wire.MalformedEnd("no element or no sender")
            value = wire.parse(element)
        except wire.MalformedEnd as e:
            raise stanzaError("bad-request", str(e), type="modify")
        key = (sender.full(), value.sid)
        session = self._sessions.get(key)
        if session is None:
            early = self._early.get(key)
            if early is not None and len(early) < self.MAX_EARLY:
                early.append(value)
                return
            log.info("end confirmation for unknown session {sid} from {peer}",
                     sid=value.sid, peer=sender.full())
            raise stanzaError("item-not-found", type="cancel")
        # Answered before it is acted on, as before the boundary: what the
        # session does next (its own end) must follow this result.
        self.replyTo(iq, None)
        self._deliver(session, value)
        return LATER

    @property
    def sessions(self) -> Dict[Tuple[str, str], EndSession]:
        return dict(self._sessions)


def peerConfirms(features: Optional[frozenset]) -> bool:
    """Does a peer with these disco features confirm link ends?"""
    return bool(features) and ns.NS_END in features
