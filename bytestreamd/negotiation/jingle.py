"""
Jingle (XEP-0166) as the second :class:`~bytestreamd.interfaces.INegotiator`,
a peer of Stream Initiation (:mod:`bytestreamd.negotiation.si`).

:class:`JingleNegotiator` is the XMPP handler: it decodes every
``urn:xmpp:jingle:1`` request, feeds it to the sans-I/O session table
(:mod:`.jingle_sessions`, :mod:`.jingle_session`) and performs the effects
the machine returns -- the answer first (the responder acknowledges at once
and acts afterwards), then requests, timers and events.  It does nothing
else: what a session is *for* (a link, a file) and how its bytes travel are
the session controllers' (:mod:`.jingle_streams`), which drive the
transports (:mod:`.jingle_via_ibb` for XEP-0261, :mod:`.jingle_via_s5b` for
XEP-0260) through the same :class:`~bytestreamd.interfaces.IStreamMethod`
objects SI uses.

Who may touch a session: the table keys sessions by (peer full JID, sid),
so a request for a session from any other full JID is ``unknown-session``.
A malformed request is ``bad-request`` with the codec's words.  Every
request we send is bounded by ``requestTimeout``; every state by the
machine's :class:`~.jingle_effects.Timeouts`.  See docs/jingle.rst.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco as wdisco
from wokkel import iwokkel
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.application import Application, RangeAnswer
from bytestreamd.errors import NegotiationFailed, NotConnected, stanzaError
from bytestreamd.interfaces import INegotiator
from bytestreamd.negotiation import jingle_apps
from bytestreamd.negotiation.attempts import Progress, words as _words
from bytestreamd.negotiation.jingle_effects import (
    Ack, Effect, Event, Refuse, Send, StartTimer, StopTimer, Timeouts)
from bytestreamd.negotiation.jingle_session import JingleSession
from bytestreamd.negotiation.jingle_sessions import JingleSessions
from bytestreamd.negotiation.jingle_streams import IncomingSession, OutgoingSession
from bytestreamd.text import SafeLogger
from bytestreamd.wire import jingle as J
from bytestreamd.xmpp.stanzas import (Handler, RequestTimeout, errorFor, makeIQ,
                                      parseJID, resultFor)

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

REQUEST_PATH = "/iq[@type='set']/jingle[@xmlns='%s']" % ns.NS_JINGLE

#: Transport namespaces by the method name that carries them.
TRANSPORT_NAMESPACES = {"ibb": ns.NS_JINGLE_IBB, "s5b": ns.NS_JINGLE_S5B}

Key = Tuple[str, str]

#: Our requests after whose acknowledgement the peer usually sends the
#: next one at once (see :meth:`JingleNegotiator._nudge`).
NUDGE_AFTER = frozenset([J.SESSION_INITIATE, J.SESSION_ACCEPT, J.TRANSPORT_REPLACE,
                         J.TRANSPORT_ACCEPT])

#: Transports wired so far.
READY = ("ibb", "s5b")


def requestCondition(exc: BaseException) -> Tuple[str, str]:
    """(condition, words) of a failed request: the Jingle condition when the
    error carries one, else the stanza condition."""
    if isinstance(exc, StanzaError):
        app = exc.appCondition
        condition = exc.condition
        if app is not None and app.uri == ns.NS_JINGLE_ERRORS:
            condition = app.name
        return condition, exc.text or ""
    if isinstance(exc, RequestTimeout):
        return "timeout", str(exc)
    return "general-error", _words(exc)


@implementer(iwokkel.IDisco, INegotiator)
class JingleNegotiator(Handler):
    """
    Offers and answers Jingle sessions on the daemon's connection.

    ``methods`` are the enabled bytestream methods in our preference order;
    those Jingle has a transport for (``ibb``, ``s5b``) are used.
    ``attemptTimeout`` bounds each transport attempt, ``offerTimeout`` how
    long an incoming offer waits for ACCEPT/REJECT, ``answerTimeout`` how
    long we wait for session-accept (default ``offerTimeout + 10``),
    ``requestTimeout`` the answer to each Jingle request.
    """

    name = "jingle"

    def __init__(self, clock, methods: Sequence[Any], discovery: Any, acceptor: Any,
                 attemptTimeout: float = 30.0, offerTimeout: float = 60.0,
                 answerTimeout: Optional[float] = None, requestTimeout: float = 30.0,
                 maxPendingOffers: int = 64,
                 sidFactory: Optional[Callable[[], str]] = None):
        Handler.__init__(self)
        self.clock = clock
        self.methods = [m for m in methods if m.name in TRANSPORT_NAMESPACES
                        and m.name in READY]
        self.discovery = discovery
        self.acceptor = acceptor
        self.attemptTimeout = attemptTimeout
        self.offerTimeout = offerTimeout
        self.answerTimeout = offerTimeout + 10 if answerTimeout is None else answerTimeout
        self.requestTimeout = requestTimeout
        self.maxPendingOffers = maxPendingOffers
        self.timeouts = Timeouts(
            pending=self.answerTimeout,
            # every transport, the fallback's replace and its answer
            transport=attemptTimeout * (len(self.methods) + 1) + requestTimeout,
            answer=requestTimeout)
        self._newSid = sidFactory or (lambda: "bsj" + secrets.token_hex(8))
        self.table: Optional[JingleSessions] = None
        self._live: Dict[Key, JingleSession] = {}
        self._controls: Dict[Key, Any] = {}
        self._timers: Dict[Tuple[str, str, str], Any] = {}

    # -- disco ---------------------------------------------------------------

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if nodeIdentifier:
            return []
        features = [ns.NS_JINGLE] + [TRANSPORT_NAMESPACES[m.name] for m in self.methods]
        features += list(jingle_apps.NAMESPACES)
        return [wdisco.DiscoFeature(f) for f in features]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

    def setAcceptor(self, acceptor: Any) -> None:
        if self.acceptor is not None:
            raise RuntimeError("the Jingle offer acceptor is already set")
        self.acceptor = acceptor

    # -- INegotiator -------------------------------------------------------------

    def transportsIn(self, features) -> List[Any]:
        """Our enabled methods whose Jingle transport ``features`` advertise."""
        return [m for m in self.methods if TRANSPORT_NAMESPACES[m.name] in features]

    def supports(self, features) -> bool:
        """A peer that advertises Jingle, one of our transports and one of
        our applications."""
        return (features is not None and ns.NS_JINGLE in features
                and bool(self.transportsIn(features))
                and any(n in features for n in jingle_apps.NAMESPACES))

    def canCarry(self, features, methods: Optional[Sequence[str]] = None,
                 application: Optional[Application] = None) -> bool:
        """
        Whether we can offer ``application`` (a translator knows it and the
        peer advertises its namespace) by one of ``methods`` (a Jingle
        transport of ours the peer has); ``None``: not asked.
        """
        features = features or ()
        if methods and not any(m.name in methods for m in self.transportsIn(features)):
            return False
        if application is not None:
            description = jingle_apps.toDescription(application)
            if description is None or J.payloadKey(description)[0] not in features:
                return False
        return True

    def offer(self, peer: JID, application: Application,
              methods: Optional[Sequence[str]] = None,
              options: Optional[Dict[str, Any]] = None,
              progress: Optional[Progress] = None,
              answered: Optional[Callable[[Optional[RangeAnswer]], None]] = None
              ) -> "defer.Deferred[Any]":
        """
        Initiate a session with ``peer`` for ``application`` and establish
        its transport: the first of ``methods`` (default: every enabled one)
        that the peer advertises, then IBB by transport-replace if that was
        SOCKS5 and it failed.  See :class:`INegotiator`.
        """
        control = OutgoingSession(self, peer, application, dict(options or {}),
                                  progress, answered)
        d = defer.Deferred.fromCoroutine(self._offer(control, peer, application, methods))
        d.addErrback(control.failBeforeStart)
        return control.result

    async def _offer(self, control: OutgoingSession, peer: JID, application: Application,
                     methodNames: Optional[Sequence[str]]) -> None:
        names = [m.name for m in self.methods]
        if methodNames is not None:
            unknown = [n for n in methodNames if n not in names]
            if unknown:
                raise NegotiationFailed(
                    "no Jingle transport for method %s; enabled: %s"
                    % (", ".join(unknown), ", ".join(names) or "none"))
        ours = [m for m in self.methods if methodNames is None or m.name in methodNames]
        description = jingle_apps.toDescription(application)
        if description is None:
            raise NegotiationFailed("no Jingle application for %s" % application.profile)
        try:
            features = await self.discovery.features(peer)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise NegotiationFailed("cannot reach peer %s: %s" % (peer.full(), _words(e)),
                                    condition=e.condition if isinstance(e, StanzaError)
                                    else None)
        appNs = J.payloadKey(description)[0]
        missing = [f for f in (ns.NS_JINGLE, appNs) if f not in features]
        if missing:
            raise NegotiationFailed("peer %s does not support %s"
                                    % (peer.full(), " nor ".join(missing)),
                                    condition="service-unavailable")
        usable = [m for m in ours if TRANSPORT_NAMESPACES[m.name] in features]
        if appNs == ns.NS_JINGLE_XMLSTREAM:
            # XEP-0247 section 4.2: IBB MUST be the lowest preference.
            usable.sort(key=lambda m: m.name == "ibb")
        if not usable:
            raise NegotiationFailed(
                "no Jingle transport in common: we offer %s, peer supports %s"
                % (", ".join(m.name for m in ours) or "none",
                   ", ".join(n for n, f in TRANSPORT_NAMESPACES.items() if f in features)
                   or "none of them"), condition="unsupported-transports")
        if self.table is None:
            raise NegotiationFailed("not connected")
        # an application may say more to a peer it knows (XEP-0234: hashes
        # in the offer for a bytestreamd peer, never for Libervia 0.9)
        description = jingle_apps.descriptionForPeer(description, application, features)
        await control.start(usable, description)

    # -- sessions: start, effects ---------------------------------------------------

    def register(self, session: JingleSession, control: Any) -> None:
        self._controls[(session.peer.full(), session.sid)] = control

    def perform(self, effects: List[Effect], iq: Optional[domish.Element] = None) -> None:
        """Do what the machine asked, in order."""
        for effect in effects:
            try:
                self._performOne(effect, iq)
            except Exception:
                log.failure("jingle: performing {effect} failed", effect=repr(effect)[:200])

    def _performOne(self, effect: Effect, iq: Optional[domish.Element]) -> None:
        if isinstance(effect, Ack):
            self._answer(resultFor(iq))
        elif isinstance(effect, Refuse):
            log.info("jingle: refused a request from {peer}: {cond}: {text}",
                     peer=iq.getAttribute("from"), cond=effect.condition, text=effect.text)
            self._answer(errorFor(iq, effect.toStanzaError()))
        elif isinstance(effect, Send):
            self._request(effect)
        elif isinstance(effect, StartTimer):
            key = (effect.peer.full(), effect.sid, effect.name)
            old = self._timers.pop(key, None)
            if old is not None and old.active():
                old.cancel()
            self._timers[key] = self.clock.callLater(effect.seconds, self._timerFired,
                                                     key)
        elif isinstance(effect, StopTimer):
            old = self._timers.pop((effect.peer.full(), effect.sid, effect.name), None)
            if old is not None and old.active():
                old.cancel()
        elif isinstance(effect, Event):
            self._event(effect)

    def _answer(self, element: domish.Element) -> None:
        try:
            self.send(element)
        except NotConnected:
            log.info("jingle: cannot answer {id}: not connected", id=element.getAttribute("id"))

    def _request(self, effect: Send) -> None:
        jingle = effect.jingle
        session = self._live.get((effect.to.full(), jingle.sid))
        iq = makeIQ("set", effect.to)
        iq.addChild(jingle.toElement())
        d = defer.maybeDeferred(self.request, iq, self.requestTimeout)
        if jingle.action == J.SESSION_TERMINATE:
            # Nobody waits for its answer (XEP-0166 section 6.7).
            d.addErrback(lambda f: None)
            return

        def done(_):
            if jingle.action in NUDGE_AFTER:
                self._nudge()
            if session is not None:
                self.perform(session.acknowledged(jingle))

        def failed(f: failure.Failure):
            if f.check(defer.CancelledError) or session is None:
                return
            condition, text = requestCondition(f.value)
            log.info("jingle: {peer} answered our {action} of {sid} with {cond} {text}",
                     peer=effect.to.full(), action=jingle.action, sid=jingle.sid,
                     cond=condition, text=text)
            self.perform(session.requestFailed(jingle, condition, text))

        d.addCallbacks(done, failed)

    def _nudge(self) -> None:
        """
        Send a whitespace keepalive (RFC 6120 section 4.6.1) now.  The
        acknowledgement we just received is a small segment the server
        wrote to us; the peer's next request (session-accept, an <open/>,
        a candidate report) is usually right behind it, and a server with
        Nagle on (stock Prosody) holds that one until our TCP acknowledges
        the first -- which the kernel delays by up to 40 ms when we have
        nothing to send.  Sending something makes the ACK go at once.
        """
        try:
            self.send(" ")
        except Exception:
            pass

    def _timerFired(self, key: Tuple[str, str, str]) -> None:
        self._timers.pop(key, None)
        session = self._live.get(key[:2])
        if session is not None:
            self.perform(session.timerExpired(key[2]))

    def _event(self, event: Event) -> None:
        key = (event.peer.full(), event.sid)
        log.debug("jingle {sid} with {peer}: {kind}: {reason}", sid=event.sid,
                  peer=event.peer.full(), kind=event.kind, reason=event.reason)
        if event.kind == "incoming":
            self._incoming(key, event)
            return
        control = self._controls.get(key)
        if control is not None:
            try:
                control.event(event)
            except Exception:
                log.failure("jingle: session {sid} failed on {kind}", sid=event.sid,
                            kind=event.kind)
        if event.kind == "ended":
            self._controls.pop(key, None)
            self._live.pop(key, None)
            for timer in [k for k in self._timers if k[:2] == key]:
                call = self._timers.pop(timer)
                if call.active():
                    call.cancel()

    # -- incoming ---------------------------------------------------------------------

    def connectionInitialized(self) -> None:
        self.table = JingleSessions(self.ownJID, self.timeouts)
        self.xmlstream.addObserver(REQUEST_PATH, self._onRequest)

    def connectionLost(self, reason) -> None:
        Handler.connectionLost(self, reason)
        controls = list(self._controls.values())
        self._controls.clear()
        self._live.clear()
        self.table = None
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
        for control in controls:
            control.connectionLost()

    def _onRequest(self, iq: domish.Element) -> None:
        iq.handled = True
        sender = parseJID(iq.getAttribute("from"))
        element = next(iq.elements(ns.NS_JINGLE, "jingle"))
        if sender is None:
            self._answer(errorFor(iq, stanzaError("bad-request", "no valid sender",
                                                  type="modify")))
            return
        try:
            request = J.Jingle.fromElement(element)
        except J.MalformedJingle as e:
            log.info("jingle: malformed request from {peer}: {why}", peer=sender.full(),
                     why=str(e))
            self._answer(errorFor(iq, stanzaError("bad-request", str(e), type="modify")))
            return
        if self.table is None:
            self._answer(errorFor(iq, stanzaError("service-unavailable", type="cancel")))
            return
        if request.action == J.SESSION_INITIATE and not self._mayInitiate(sender):
            # XEP-0166 section 6.3.2: an initiator we do not communicate
            # with gets service-unavailable instead of an acknowledgement.
            self._answer(errorFor(iq, stanzaError(
                "service-unavailable", "%s is not allowed to open links here"
                % sender.userhost(), type="cancel")))
            return
        effects = self.table.receive(sender, request)
        if request.action == J.SESSION_INITIATE:
            session = self.table.get(sender, request.sid)
            if session is not None:
                self._live.setdefault((sender.full(), request.sid), session)
        self.perform(effects, iq)

    def _mayInitiate(self, peer: JID) -> bool:
        allowed = getattr(self.acceptor, "peerAllowed", None)
        return allowed is None or allowed(peer)

    def _incoming(self, key: Key, event: Event) -> None:
        session = self._live.get(key)
        if session is None:
            return
        control = IncomingSession(self, session, event.jingle)
        self.register(session, control)
        control.decide()

    @property
    def pendingOffers(self) -> List[IncomingSession]:
        return [c for c in self._controls.values()
                if isinstance(c, IncomingSession) and c.pending]

    def sessionControl(self, peer: JID, sid: str) -> Optional[Any]:
        """
        The controller (OutgoingSession / IncomingSession) of the live
        session ``sid`` with ``peer`` -- an established stream's
        ``sessionId`` -- for an application that sends or hears
        session-info (XEP-0234's checksum): ``sendSessionInfo(payloads)``,
        ``infoListener``.
        """
        return self._controls.get((peer.full(), sid))

    def method(self, name: str) -> Optional[Any]:
        for m in self.methods:
            if m.name == name:
                return m
        return None
