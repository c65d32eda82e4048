"""
One Jingle session that carries one bytestream: what it is for, which
transport carries it, and the fallback.

:class:`OutgoingSession` is ours (``INegotiator.offer``), :class:`IncomingSession`
the peer's (an :class:`~bytestreamd.interfaces.IIncomingOffer` for the link
layer).  Both react to the session machine's events (accepted, ended,
transport-info, transport-replace...) and drive one *transport driver* at a
time (:mod:`.jingle_via_ibb`, :mod:`.jingle_via_s5b`), which tells them
``transportUp(stream)`` or ``transportFailed(reason)``.

Progress is reported as SI reports it, so that ``650 LINK`` reads the same:
``INIT method=<transport>`` when the transport is agreed (session-accept,
transport-accept), ``BAD method=s5b reason=...`` then ``INIT method=ibb``
when SOCKS5 failed and the initiator replaces it by IBB
(XEP-0260 section 2.6: the initiator drives the replace; a peer that answers
it with session-accept is tolerated by the machine).  The final failure is
the caller's ``BAD``.

Once the stream is up, its end ends the session with ``success``
(session-terminate): the initiator sends it, the responder acknowledges it
(and sends its own only if none came within :data:`TERMINATE_GRACE`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, TYPE_CHECKING

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd.application import Application, RangeAnswer
from bytestreamd.errors import MethodFailed, NegotiationFailed, OfferBusy, OfferRejected
from bytestreamd.interfaces import IIncomingOffer, StreamContext
from bytestreamd.negotiation import jingle_apps
from bytestreamd.negotiation import jingle_file_session as FT
from bytestreamd.negotiation.attempts import Progress, noProgress, summary
from bytestreamd.negotiation.jingle_contents import State
from bytestreamd.negotiation.jingle_effects import Event, Send
from bytestreamd.negotiation.jingle_more import MoreStreams
from bytestreamd.negotiation.jingle_via_ibb import IBBDriver
from bytestreamd.negotiation.jingle_via_s5b import S5BDriver
from bytestreamd.text import SafeLogger
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle import Content
from bytestreamd.wire.jingle_ibb import IBBTransport
from bytestreamd.wire.jingle_s5b import S5BTransport

if TYPE_CHECKING:
    from bytestreamd.negotiation.jingle import JingleNegotiator

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

DRIVERS = {"ibb": IBBDriver, "s5b": S5BDriver}

#: How long the responder waits for the initiator's session-terminate
#: after its stream ended before it sends its own.
TERMINATE_GRACE = 5.0

#: A peer that ends our session-initiate with ``busy``: offer again after
#: these delays, doubling, within ``attempt_timeout`` (as SI does).
RETRY_FIRST, RETRY_MAX = 0.5, 8.0


def driverNameFor(payload: Any) -> Optional[str]:
    if isinstance(payload, IBBTransport):
        return "ibb"
    if isinstance(payload, S5BTransport):
        return "s5b"
    return None


def watchEnd(stream: Any, onEnd: Callable[[], None]) -> None:
    """
    Call ``onEnd`` once ``stream`` has delivered its end to whatever
    protocol the link layer attaches: the protocol is wrapped by a thin
    forwarder (half-close included), so nothing of the stream changes.
    """
    attach = stream.attachProtocol

    def attachProtocol(protocol: Any) -> None:
        attach(_EndWatch.around(protocol, onEnd))

    stream.attachProtocol = attachProtocol


class _EndWatch:
    """Forwards every protocol call; tells ``onEnd`` after connectionLost."""

    def __init__(self, inner: Any, onEnd: Callable[[], None]):
        self.inner = inner
        self.onEnd = onEnd

    @staticmethod
    def around(inner: Any, onEnd: Callable[[], None]) -> Any:
        from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
        from zope.interface import alsoProvides
        if IHalfCloseableProtocol.providedBy(inner):
            watch: Any = _HalfCloseableEndWatch(inner, onEnd)
        else:
            watch = _EndWatch(inner, onEnd)
        if IHandshakeListener.providedBy(inner):
            # an e2e link's negotiation (e2e.secure) hears its TLS handshake
            # through us: TLSMemoryBIOProtocol asks the wrapped protocol
            alsoProvides(watch, IHandshakeListener)
        return watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def makeConnection(self, transport: Any) -> None:
        self.inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        try:
            self.inner.connectionLost(reason)
        finally:
            onEnd, self.onEnd = self.onEnd, None
            if onEnd is not None:
                onEnd()


def _halfCloseable():
    from twisted.internet.interfaces import IHalfCloseableProtocol

    @implementer(IHalfCloseableProtocol)
    class _HalfCloseableEndWatch(_EndWatch):
        def readConnectionLost(self) -> None:
            self.inner.readConnectionLost()

        def writeConnectionLost(self) -> None:
            self.inner.writeConnectionLost()

    return _HalfCloseableEndWatch


_HalfCloseableEndWatch = _halfCloseable()


class _StreamSession:
    """What both sides share: the driver, progress, the end."""

    weAreInitiator = False

    def __init__(self, negotiator: "JingleNegotiator", peer: JID,
                 application: Optional[Application], options: Dict[str, Any],
                 progress: Optional[Progress]):
        self.negotiator = negotiator
        self.peer = peer
        self.application = application
        self.options = options
        self.progress: Progress = progress or noProgress
        self.session: Any = None
        self.key: Optional[Tuple[str, str]] = None
        self.driver: Any = None
        self.stream: Any = None
        self.inited = False
        self.failures: List[Tuple[str, str]] = []
        self.result: defer.Deferred = defer.Deferred(self._cancel)
        #: Names of the methods both sides have, in our order.
        self.usable: List[str] = []
        #: Streams beyond the first (XEP-0261 section 2.4), ended with the session.
        self.extras: List[Any] = []
        #: Streams in contents of their own (content-add; :mod:`.jingle_more`).
        self.more = MoreStreams(self)
        self.cancelling = False
        #: XEP-0234: the range asked in session-accept, the end of the transfer.
        self.fileRange: Optional[RangeAnswer] = None
        self.fileEnd: Optional[FT.FileStreamEnd] = None

    # -- identity -------------------------------------------------------------------

    @property
    def sid(self) -> Optional[str]:
        return self.session.sid if self.session is not None else None

    @property
    def own(self) -> JID:
        return self.negotiator.ownJID

    @property
    def initiator(self) -> JID:
        return self.own if self.weAreInitiator else self.peer

    @property
    def responder(self) -> JID:
        return self.peer if self.weAreInitiator else self.own

    @property
    def role(self) -> str:
        return J.INITIATOR if self.weAreInitiator else J.RESPONDER

    def context(self, transportSid: str, options: Optional[Dict[str, Any]] = None,
                offeredBy: Optional[JID] = None) -> StreamContext:
        """The StreamContext of a transport of this session."""
        return StreamContext(transportSid, self.initiator, self.responder,
                             self.weAreInitiator, dict(options or {}),
                             session=self.sid, offeredBy=offeredBy or self.initiator)

    @property
    def clock(self):
        return self.negotiator.clock

    @property
    def live(self) -> bool:
        return self.session is not None and self.session.state is not State.ENDED

    def perform(self, effects) -> None:
        self.negotiator.perform(effects)

    def newDriver(self, name: str) -> Any:
        method = self.negotiator.method(name)
        return DRIVERS[name](self, method)

    # -- the result -------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.result.called

    def fail(self, reason: str, condition: Optional[str] = None) -> None:
        if self.finished or self.cancelling:
            return  # a cancel fires the result itself (CancelledError)
        if self.driver is not None:
            self.driver.stop()
        if self.inited:
            exc: Exception = MethodFailed(reason, condition)
        else:
            exc = NegotiationFailed(reason, condition=condition)
        self.result.errback(exc)

    def terminate(self, condition: str, text: Optional[str] = None) -> None:
        if self.live:
            self.perform(self.session.terminate(condition, text))

    def _cancel(self, d: defer.Deferred) -> None:
        self.cancelling = True
        if self.driver is not None:
            self.driver.stop()
        self.terminate("cancel", "the link was closed before its stream was up")

    def connectionLost(self) -> None:
        if self.fileEnd is not None:
            self.fileEnd.sessionEnded("connectivity-error", "XMPP connection lost", False)
            self.fileEnd.stop()
        self.fail("XMPP connection lost")

    # -- transports -------------------------------------------------------------------

    def transportUp(self, driver: Any, stream: Any) -> None:
        if driver is not self.driver or self.finished or not self.live:
            stream.abortConnection()
            return
        self.stream = stream
        self.perform(self.session.transportEstablished(self.key))
        if FT.isFile(self.application):
            self.fileEnd = self._fileEnd()
            self.fileEnd.watch(stream)
            fileEnd = self.fileEnd
            self.infoListener = lambda event: fileEnd.sessionInfo(
                event.jingle.info if event.jingle is not None else ())
        else:
            watchEnd(stream, self._streamEnded)
        self.result.callback(stream)

    def _fileEnd(self) -> "FT.FileStreamEnd":
        """XEP-0234: the sender is the initiator (we do not serve requests)."""
        application = self.application
        assert application is not None and self.key is not None
        answer = self.fileRange or RangeAnswer(0, None)
        size = getattr(application, "size", 0)
        count = size - answer.offset if answer.length is None else answer.length
        return FT.FileStreamEnd(self, application, self.key[0], self.key[1],
                                sending=self.weAreInitiator, size=count,
                                whole=answer.offset == 0 and answer.length is None,
                                sentRange=answer)

    def _streamEnded(self) -> None:
        # XEP-0261 section 2.5: one party sends session-terminate and the
        # other acknowledges it.  The initiator does, at once; the responder
        # only if none came within a few seconds (an initiator that
        # vanished), so the two do not cross.
        if self.weAreInitiator:
            self.terminate("success")
        else:
            self.clock.callLater(TERMINATE_GRACE, self.terminate, "success")

    def transportFailed(self, driver: Any, reason: str,
                        condition: Optional[str] = None) -> None:
        if driver is not self.driver or self.finished:
            return
        self.failures.append((driver.name, reason))
        if self.weAreInitiator and driver.name != "ibb" and "ibb" in self.usable \
                and self.live:
            self.progress("BAD", driver.name, reason)
            self._replaceWithIBB()
            return
        if not self.weAreInitiator and driver.name != "ibb" and "ibb" in self.usable \
                and self.live:
            # The initiator drives the fallback: wait for its replace
            # (bounded by the machine's transport timer).
            self.progress("BAD", driver.name, reason)
            self.driver = None
            return
        self.terminate("failed-transport", summary(self.failures))
        self.fail(summary(self.failures), condition)

    def _replaceWithIBB(self) -> None:
        self.driver = self.newDriver("ibb")
        driver = self.driver

        def offered(transport):
            if driver is self.driver and self.live:
                self.perform(self.session.replaceTransport(self.key, transport))

        driver.prepare().addCallbacks(offered, lambda f: self.transportFailed(
            driver, f.getErrorMessage()))

    # -- events -----------------------------------------------------------------------

    def event(self, event: Event) -> None:
        if self.more.owns(event):
            self.more.event(event)
            return
        handler = getattr(self, "_on_" + event.kind.replace("-", "_"), None)
        if handler is not None:
            handler(event)

    def _contentOf(self, event: Event) -> Optional[Content]:
        if event.jingle is None or self.key is None:
            return None
        return event.jingle.content(*self.key)

    def _on_ended(self, event: Event) -> None:
        if self.driver is not None:
            self.driver.stop()
        self.more.ended()
        extras, self.extras = self.extras, []
        for stream in extras:
            if stream.connected:
                stream.loseConnection()
        if self.fileEnd is not None:
            reason = event.jingle.reason if event.jingle is not None else None
            if reason is not None:
                self.fileEnd.sessionEnded(reason.condition, reason.text, True)
            else:
                self.fileEnd.sessionEnded("general-error", event.reason, False)
            self.fileEnd.stop()
        if not self.finished:
            if self.failures:
                self.fail("%s; %s" % (summary(self.failures), event.reason))
            else:
                self.fail(event.reason)
        else:
            log.info("jingle session {sid} with {peer} ended: {why}", sid=self.sid,
                     peer=self.peer.full(), why=event.reason)
            if event.jingle is not None and self.stream is not None \
                    and self.stream.connected:
                # The peer ended the session; its transport's end should
                # follow.  A peer that leaves it open (it failed the
                # application, it forgot) does not keep the link forever.
                self.clock.callLater(self.negotiator.requestTimeout, self._endStream,
                                     event.reason)

    def _endStream(self, why: str) -> None:
        stream = self.stream
        if stream is not None and stream.connected and not stream.disconnecting:
            log.info("jingle session {sid}: the stream outlived the session ({why}); "
                     "closing it", sid=self.sid, why=why)
            stream.loseConnection()

    #: Called with each session-info / description-info Event (e.g. XEP-0234's
    #: checksum and received); set by the application that needs them.
    infoListener: Optional[Callable[[Event], None]] = None

    def _on_session_info(self, event: Event) -> None:
        if self.infoListener is not None:
            self.infoListener(event)

    _on_description_info = _on_session_info

    def sendSessionInfo(self, payloads) -> None:
        """Send a session-info with ``payloads`` (XEP-0234 checksum, received)."""
        if self.live:
            self.perform(self.session.sendSessionInfo(payloads))

    def _on_transport_info(self, event: Event) -> None:
        content = self._contentOf(event)
        if content is None:
            return
        transport = content.transport
        if (isinstance(transport, IBBTransport) and self.stream is not None
                and not self.weAreInitiator and transport.sid != self.stream.sid):
            self._extraOffered(transport)
            return
        if self.driver is not None:
            self.driver.info(transport)

    # -- several IBB sessions in one Jingle session (XEP-0261 section 2.4) ------------

    #: The responder's listener for extra streams: ``onExtraStream(stream)``.
    #: Without one, a transport-info offering another IBB session is
    #: acknowledged and ignored, so its ``<open/>`` is refused not-acceptable.
    onExtraStream: Optional[Callable[[Any], None]] = None

    def _extraOffered(self, transport: IBBTransport) -> None:
        if self.onExtraStream is None or self.negotiator.method("ibb") is None:
            log.info("jingle session {sid}: ignored another IBB session {ibb} from {peer}",
                     sid=self.sid, ibb=transport.sid, peer=self.peer.full())
            return
        extra = _ExtraStream(self)
        extra.driver.answer(transport)
        extra.result.addCallbacks(self._extraUp, lambda f: None)

    def _extraUp(self, stream: Any) -> None:
        if self.onExtraStream is not None and self.live:
            self.onExtraStream(stream)
        else:
            stream.abortConnection()

    def addStream(self, options: Optional[Dict[str, Any]] = None) -> "defer.Deferred[Any]":
        """
        The initiator: one more IBB session in this Jingle session
        (XEP-0261 section 2.4): a transport-info authorizes its sid, then
        the ``<open/>`` follows (XMPP keeps the order).  Fires with the
        stream, or fails with MethodFailed.  Each such stream is opened,
        used and closed on its own; ending the session ends them all.
        When the session's stream is SOCKS5, the new stream is SOCKS5 too,
        in a content of its own (:mod:`.jingle_more`).
        """
        if not self.weAreInitiator or not self.live or self.stream is None:
            return defer.fail(MethodFailed("session %s carries no stream to add to"
                                           % self.sid))
        if self.driver is not None and self.driver.name == "s5b" \
                and self.negotiator.method("s5b") is not None:
            # XEP-0260 binds one negotiation to one content: one content each.
            return self.more.add("s5b", options)
        if "ibb" not in self.usable or self.negotiator.method("ibb") is None:
            return defer.fail(MethodFailed("%s has no IBB transport for more streams"
                                           % self.peer.full()))
        extra = _ExtraStream(self, options)

        def offered(transport):
            if not self.live:
                raise MethodFailed("session %s ended" % self.sid)
            self.perform(self.session.sendTransportInfo(self.key, transport))
            extra.driver.start(transport)
            return extra.result

        return extra.driver.prepare().addCallback(offered)

    def _on_transport_rejected(self, event: Event) -> None:
        if event.jingle is not None and self.weAreInitiator:
            self.terminate("failed-transport", "%s rejected the fallback to IBB"
                           % self.peer.full())

    def _on_transport_accepted(self, event: Event) -> None:
        if not self.weAreInitiator or self.driver is None:
            return
        content = self._contentOf(event)
        transport = content.transport if content is not None else None
        if transport is None:
            transport = self.session.contents[self.key].transport
        self.progress("INIT", self.driver.name, None)
        self.driver.start(transport)

    def _on_transport_replace(self, event: Event) -> None:
        if self.weAreInitiator:
            # Only the initiator replaces here; a crossing replace lost.
            self.perform(self.session.rejectTransport(self.key))
            return
        content = self._contentOf(event)
        name = driverNameFor(content.transport if content else None)
        if name not in self.usable:
            self.perform(self.session.rejectTransport(self.key))
            return
        if self.driver is not None:
            old = self.driver
            old.stop()
            if not any(n == old.name for n, _ in self.failures):
                self.failures.append((old.name, "replaced by %s" % name))
                self.progress("BAD", old.name, "replaced by %s" % name)
        self.driver = self.newDriver(name)
        driver = self.driver

        def answered(answer):
            if driver is self.driver and self.live:
                self.perform(self.session.acceptTransport(self.key, answer))
                self.progress("INIT", driver.name, None)
                driver.startAnswered(content.transport)

        driver.answer(content.transport).addCallbacks(
            answered, lambda f: self.transportFailed(driver, f.getErrorMessage()))


class _ExtraStream:
    """
    What an IBB driver reports to, for a stream beyond the session's first
    (XEP-0261 section 2.4): the session's identity, its own result.
    """

    weAreInitiator = property(lambda self: self.parent.weAreInitiator)

    def __init__(self, parent: _StreamSession, options: Optional[Dict[str, Any]] = None):
        self.parent = parent
        self.options = dict(parent.options, **(options or {}))
        self.negotiator = parent.negotiator
        self.clock = parent.clock
        self.result: defer.Deferred = defer.Deferred(lambda d: self.driver.stop())
        self.driver = IBBDriver(self, parent.negotiator.method("ibb"))

    def context(self, transportSid: str, options=None, offeredBy=None) -> StreamContext:
        return self.parent.context(transportSid, options, offeredBy)

    def transportUp(self, driver: Any, stream: Any) -> None:
        if self.result.called:
            stream.abortConnection()
        else:
            self.parent.extras.append(stream)
            self.result.callback(stream)

    def transportFailed(self, driver: Any, reason: str,
                        condition: Optional[str] = None) -> None:
        if not self.result.called:
            self.result.errback(MethodFailed(reason, condition))


class OutgoingSession(_StreamSession):
    """Our session-initiate, up to the stream."""

    weAreInitiator = True

    def __init__(self, negotiator, peer, application, options, progress,
                 answered: Optional[Callable[[Optional[RangeAnswer]], None]] = None):
        _StreamSession.__init__(self, negotiator, peer, application, options, progress)
        self.answered = answered
        self.retry: Any = None
        self.description: Any = None
        self.deadline = 0.0
        self.retryDelay = RETRY_FIRST

    def failBeforeStart(self, f: failure.Failure) -> None:
        if f.check(defer.CancelledError):
            return
        if not self.finished:
            self.result.errback(f)

    async def start(self, usable: List[Any], description: Any) -> None:
        self.usable = [m.name for m in usable]
        self.description = description
        self.deadline = self.clock.seconds() + self.negotiator.attemptTimeout
        self.retryDelay = RETRY_FIRST
        await self._initiate()

    async def _initiate(self) -> None:
        description = self.description
        _, contentName = jingle_apps.describe(self.application)
        self.driver = self.newDriver(self.usable[0])
        transport = await self.driver.prepare()
        if self.finished:
            self.driver.stop()
            return
        content = Content(J.INITIATOR, contentName or "link", description=description,
                          transport=transport)
        self.key = content.key
        if self.negotiator.table is None:
            self.driver.stop()
            raise NegotiationFailed("not connected to the XMPP server")
        # Register before the effects run, so no event is missed.
        session, effects = self.negotiator.table.initiate(
            self.peer, [content], self.negotiator._newSid())
        self.session = session
        self.negotiator._live[(self.peer.full(), session.sid)] = session
        self.negotiator.register(session, self)
        self.perform(effects)

    def _on_ended(self, event: Event) -> None:
        reason = event.jingle.reason if event.jingle is not None else None
        if (not self.inited and not self.finished and reason is not None
                and reason.condition == "busy"
                and self.clock.seconds() + self.retryDelay <= self.deadline):
            # Too many offers pending there (its max_links): ask again
            # after a growing delay, within attempt_timeout, as SI does
            # with resource-constraint/wait.
            if self.driver is not None:
                self.driver.stop()
            delay, self.retryDelay = self.retryDelay, min(self.retryDelay * 2, RETRY_MAX)
            log.info("peer {peer} is busy ({why}); offering again in {delay}s",
                     peer=self.peer.full(), why=reason.describe(), delay=delay)
            self.session = None
            self.retry = self.clock.callLater(delay, self._retry)
            return
        if event.jingle is None and event.reason.startswith("tie-break:") \
                and not self.inited:
            self._withdrawOverruled(event)
        _StreamSession._on_ended(self, event)

    def _withdrawOverruled(self, event: Event) -> None:
        """
        Our session-initiate lost a tie-break to the peer's.  The machine
        ends ours silently (the peer refuses it tie-break); but a peer
        whose own session-initiate was acknowledged before ours reached it
        sees no crossing and would take ours as a new offer.  A
        session-terminate ``alternative-session`` (naming the winner)
        withdraws it there, and is answered unknown-session otherwise.
        """
        winner = None
        for key, session in self.negotiator._live.items():
            if key[0] == self.peer.full() and session.role == J.RESPONDER \
                    and session.sid in event.reason:
                winner = session.sid
        self.negotiator.perform([Send(self.peer, J.Jingle(
            J.SESSION_TERMINATE, event.sid, reason=J.Reason(
                "alternative-session", "tie-break: your session-initiate crossed "
                "ours and wins", alternativeSid=winner)))])

    def _retry(self) -> None:
        self.retry = None
        if self.finished:
            return
        d = defer.Deferred.fromCoroutine(self._initiate())
        d.addErrback(self.failBeforeStart)

    def _cancel(self, d: defer.Deferred) -> None:
        retry, self.retry = self.retry, None
        if retry is not None and retry.active():
            retry.cancel()
        _StreamSession._cancel(self, d)

    def _on_accepted(self, event: Event) -> None:
        content = self._contentOf(event)
        transport = content.transport if content is not None else None
        if driverNameFor(transport) != self.driver.name:
            self.terminate("failed-transport", "%s accepted with another transport"
                           % self.peer.full())
            return
        try:
            # ValueError: an answer the application refuses (a range beyond
            # the file, an e2e fingerprint with the wrong setup role)
            asked = (jingle_apps.rangeFromAnswer(content.description)
                     if content is not None and content.description is not None else None)
            self.fileRange = FT.checkedRange(self.application, asked)
        except ValueError as e:
            self.terminate("failed-application", str(e))
            return
        if self.answered is not None:
            self.answered(asked)
        self.inited = True
        self.progress("INIT", self.driver.name, None)
        self.driver.start(transport)


@implementer(IIncomingOffer)
class IncomingSession(_StreamSession):
    """The peer's session-initiate: an offer for the link layer."""

    negotiation = "jingle"

    def __init__(self, negotiator: "JingleNegotiator", session: Any, request: J.Jingle):
        _StreamSession.__init__(self, negotiator, session.peer, None, {}, None)
        self.session = session
        self.request = request
        self.state = "pending"
        self.timer = None
        self.offered: Any = None

    def __repr__(self) -> str:
        return "<Jingle IncomingSession %s from %s %s>" % (self.sid, self.peer.full(),
                                                            self.state)

    @property
    def pending(self) -> bool:
        return self.state == "pending"

    def decide(self) -> None:
        """Check the offer, then hand it to the acceptor."""
        neg = self.negotiator
        chosen = None
        problem = "unsupported-applications", "no content of a known application"
        for content in self.request.contents:
            try:
                application = jingle_apps.fromDescription(content.description)
            except ValueError as e:
                problem = "failed-application", str(e)
                continue
            if application is None:
                continue
            name = driverNameFor(content.transport)
            if name is None or neg.method(name) is None:
                problem = "unsupported-transports", "transport %s is not enabled here" % (
                    "{%s}%s" % J.payloadKey(content.transport))
                continue
            chosen = content, application, name
            break
        if chosen is None:
            self.state = "rejected"
            self.terminate(*problem)
            return
        content, self.application, name = chosen
        self.key = content.key
        self.offered = content
        self.usable = [name] + (["ibb"] if name != "ibb" and neg.method("ibb") else [])
        if neg.acceptor is None:
            self.state = "rejected"
            self.terminate("general-error", "not accepting offers")
            return
        if len(neg.pendingOffers) > neg.maxPendingOffers:
            self.state = "rejected"
            self.terminate("busy", "too many pending offers")
            return
        self.timer = self.clock.callLater(neg.offerTimeout, self._expire)
        try:
            neg.acceptor.offerReceived(self)
        except OfferBusy as e:
            self._settle("rejected")
            self.terminate("busy", e.reason)
        except OfferRejected as e:
            self._settle("rejected")
            self.terminate("decline", e.reason)
        except Exception:
            log.failure("offer acceptor failed on {sid}", sid=self.sid)
            self._settle("rejected")
            self.terminate("general-error", "internal error")

    def _settle(self, state: str) -> bool:
        if self.state != "pending":
            return False
        self.state = state
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        return True

    def _expire(self) -> None:
        self.timer = None
        reason = "offer timed out after %gs" % self.negotiator.offerTimeout
        if self._settle("expired"):
            self.terminate("timeout", reason)
            self.negotiator.acceptor.offerExpired(self, reason)

    def reject(self, reason: str = "Offer Declined") -> None:
        if self._settle("rejected"):
            self.terminate("decline", reason)

    def accept(self, progress: Optional[Progress] = None,
               rangeAnswer: Optional[RangeAnswer] = None,
               options: Optional[Dict[str, Any]] = None) -> "defer.Deferred[Any]":
        if not self.live or not self._settle("accepted"):
            return defer.fail(NegotiationFailed(
                "offer %s from %s is no longer pending (%s)"
                % (self.sid, self.peer.full(), self.state)))
        self.progress = progress or noProgress
        self.options = dict(options or {})
        self.driver = self.newDriver(self.usable[0])
        driver = self.driver

        def answered(answer):
            if driver is not self.driver or not self.live:
                return
            c = self.offered
            self.fileRange = rangeAnswer if FT.isFile(self.application) else None
            description = jingle_apps.answerDescription(c.description, rangeAnswer)
            self.perform(self.session.accept([Content(
                c.creator, c.name, c.senders, c.disposition, description, answer,
                c.security)]))
            self.inited = True
            self.progress("INIT", driver.name, None)
            driver.startAnswered(c.transport)

        def failed(f):
            self.terminate("failed-transport", f.getErrorMessage())
            self.fail(f.getErrorMessage())

        driver.answer(self.offered.transport).addCallbacks(answered, failed)
        return self.result

    def _on_ended(self, event: Event) -> None:
        if self._settle("expired"):
            self.negotiator.acceptor.offerExpired(self, event.reason)
            return
        if self.state == "accepted":
            _StreamSession._on_ended(self, event)

    def connectionLost(self) -> None:
        if self._settle("expired"):
            self.negotiator.acceptor.offerExpired(self, "XMPP connection lost")
            return
        _StreamSession.connectionLost(self)
