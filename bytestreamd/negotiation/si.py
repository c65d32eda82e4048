"""
Stream Initiation (XEP-0095) with XEP-0020 stream-method negotiation, the
si-multiple extension, and XEP-0041 keepAlive-style re-offers.

Negotiation ends in one of three ways and never hangs: a bytestream
(the caller reports ``GOOD``), :class:`NegotiationFailed` (nothing was tried:
the peer refused, does not support us, or nothing is in common), or
:class:`MethodFailed` after every chosen method failed (the caller reports
the final ``BAD``).  Between those, ``progress(state, method, reason)``
reports ``INIT`` for each method tried and ``BAD`` for each that failed while
another one is still to come -- never for the last.

It is the :class:`~bytestreamd.interfaces.INegotiator` named ``si``: the
link layer hands it framework-neutral applications
(:mod:`bytestreamd.application`), which :mod:`.si_profiles` turns into SI
profiles and back.  How the chosen methods are tried (in order, each
bounded; the target's race) is :mod:`.attempts`; an incoming offer is
:mod:`.si_offer`.  Methods are known only through :class:`IStreamMethod`;
this module neither opens sockets nor parses bytestream stanzas.  See
docs/negotiation.rst.

Why one long module: the SI handler's offer and answer sides; the incoming offer, the profiles and the attempts are already apart.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer, task
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco as wdisco
from wokkel import iwokkel
from zope.interface import implementer

from bytestreamd import ns, registry
from bytestreamd.errors import (MethodFailed, NegotiationFailed, NotConnected,
                                OfferBusy, OfferRejected, describeStanzaError, stanzaError)
from bytestreamd.application import Application, RangeAnswer
from bytestreamd.interfaces import INegotiator, StreamContext
from bytestreamd.negotiation.si_offer import IncomingOffer
from bytestreamd.negotiation import si_profiles
from bytestreamd.negotiation.attempts import Attempts, Progress, noProgress
from bytestreamd.negotiation.attempts import words as _words
from bytestreamd.xmpp.stanzas import (LATER, Handler, RequestTimeout, errorFor, makeIQ,
                                 parseJID)
from bytestreamd.text import SafeLogger
from bytestreamd.wire.si import (PROFILES, MalformedSI, SIAccept, SIOffer,
                                 answerHeaders, headersFromPayload, payloadFromHeaders)

#: Names for the method namespaces we may meet in a peer's features, to say
#: what it does support when nothing is in common.
KNOWN_METHODS = registry.methodNamesByNamespace()

#: ``resource-constraint`` of type ``wait`` (a peer with too many pending
#: offers): retry after these delays, doubling up to the last, for as long
#: as ``attemptTimeout`` allows (issue 8 item 7: a burst of OPENs used to
#: fail at once).
RETRY_FIRST, RETRY_MAX = 0.5, 8.0

OFFER_PATH = "/iq[@type='set']/si[@xmlns='%s']" % ns.NS_SI

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


def _siCondition(exc: StanzaError) -> str:
    """The SI application condition when there is one, else the XMPP one."""
    app = exc.appCondition
    if app is not None and app.uri == ns.NS_SI:
        return app.name
    return exc.condition


@implementer(iwokkel.IDisco, INegotiator)
class StreamInitiation(Handler):
    """
    Offers and answers Stream Initiation on the daemon's connection.

    ``methods`` are the enabled bytestream methods in our preference order;
    ``acceptor`` (an :class:`IOfferAcceptor`) decides about incoming offers:
    given here, or once with :meth:`setAcceptor` when the acceptor (the
    link manager) is built after this handler.  ``maxPendingOffers`` caps
    offers waiting for ACCEPT/REJECT (the daemon passes ``max_links``);
    beyond it a peer is told ``resource-constraint`` (type ``wait``).
    ``attemptTimeout`` bounds each method attempt, ``offerTimeout`` how long
    an incoming offer waits for ACCEPT/REJECT, ``answerTimeout`` how long we
    wait for the peer to answer our offer (default: ``offerTimeout + 10``,
    so a peer with the same configuration times out first and says so).
    """

    name = "si"

    def __init__(self, clock, methods: Sequence[Any], discovery: Any, acceptor: Any,
                 attemptTimeout: float = 30.0, offerTimeout: float = 60.0,
                 profiles: Sequence[str] = (ns.NS_LINK_PROFILE,),
                 answerTimeout: Optional[float] = None, maxPendingOffers: int = 64,
                 sidFactory: Optional[Callable[[], str]] = None):
        Handler.__init__(self)
        unknown = [p for p in profiles if p not in PROFILES]
        if unknown:
            raise ValueError("no codec for SI profile %s" % ", ".join(unknown))
        self.clock = clock
        self.methods = list(methods)
        self.discovery = discovery
        self.acceptor = acceptor
        self.attemptTimeout = attemptTimeout
        self.offerTimeout = offerTimeout
        self.answerTimeout = offerTimeout + 10 if answerTimeout is None else answerTimeout
        self.profiles = tuple(profiles)
        self.maxPendingOffers = maxPendingOffers
        self._newSid = sidFactory or (lambda: "bsd" + secrets.token_hex(10))
        self._offers: Dict[Tuple[str, str], IncomingOffer] = {}

    # -- disco -----------------------------------------------------------------

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if nodeIdentifier:
            return []
        features = [ns.NS_SI, ns.NS_FEATURE_NEG, ns.NS_SI_MULTIPLE] + list(self.profiles)
        return [wdisco.DiscoFeature(f) for f in features]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

    def setAcceptor(self, acceptor: Any) -> None:
        """Wire the IOfferAcceptor (once, before the XMPP connection starts)."""
        if self.acceptor is not None:
            raise RuntimeError("the SI offer acceptor is already set")
        self.acceptor = acceptor

    # -- INegotiator ------------------------------------------------------------

    def supports(self, features) -> bool:
        """A peer that advertises XEP-0095 (profiles and methods are checked
        when offering, with reasons)."""
        return features is not None and ns.NS_SI in features

    # -- outgoing ----------------------------------------------------------------

    def offer(self, peer: JID, application: Application,
              methods: Optional[Sequence[str]] = None,
              options: Optional[Dict[str, Any]] = None,
              progress: Optional[Progress] = None,
              answered: Optional[Callable[[Optional[RangeAnswer]], None]] = None
              ) -> "defer.Deferred[Any]":
        """
        Offer ``application`` to the full JID ``peer`` by SI and open a
        bytestream by ``methods`` (names; default all enabled).

        Fires with the established IBytestream; fails with NegotiationFailed
        before any INIT, MethodFailed after.  Cancelling it stops whatever is
        in flight (disco, offer, method attempt).  ``answered(rangeAnswer)``
        is called with what each accepting answer's profile element asks of
        us (a file's range; None for most answers), before the methods are
        tried.
        """
        profile, headers = si_profiles.toHeaders(application)
        onAnswer = None if answered is None else (
            lambda asked: answered(si_profiles.answerFromHeaders(asked)))
        return defer.Deferred.fromCoroutine(self._offer(
            peer, profile, headers, methods, dict(options or {}),
            progress or noProgress, onAnswer))

    def _ourMethods(self, methodNames: Optional[Sequence[str]]) -> List[Any]:
        if methodNames is None:
            return list(self.methods)
        names = [m.name for m in self.methods]
        unknown = [n for n in methodNames if n not in names]
        if unknown:
            raise NegotiationFailed("unknown or disabled bytestream method %s; enabled: %s"
                                    % (", ".join(unknown), ", ".join(names) or "none"))
        return [m for m in self.methods if m.name in methodNames]

    async def _offer(self, peer, profile, headers, methodNames, options, progress,
                     answered=None):
        if profile not in self.profiles:
            raise NegotiationFailed("profile %s is not enabled" % profile,
                                    condition="bad-profile")
        try:
            payload = payloadFromHeaders(profile, headers)
        except MalformedSI as e:
            raise NegotiationFailed("cannot offer %s: %s" % (profile, e),
                                    condition="bad-request")
        ours = self._ourMethods(methodNames)
        features = await self._peerFeatures(peer)
        missing = [f for f in (ns.NS_SI, profile) if f not in features]
        if missing:
            raise NegotiationFailed("peer %s does not support %s"
                                    % (peer.full(), " nor ".join(missing)),
                                    condition="service-unavailable")
        remaining = [m for m in ours if m.namespace in features]
        if not remaining:
            theirs = sorted({m.name for m in self.methods if m.namespace in features}
                            | {n for f, n in KNOWN_METHODS.items() if f in features})
            raise NegotiationFailed(
                "no bytestream method in common: we offer %s, peer supports %s"
                % (", ".join(m.name for m in ours) or "none",
                   ", ".join(theirs) or "none of them"),
                condition="no-valid-streams")
        multiple = ns.NS_SI_MULTIPLE in features

        attempts = Attempts(self.clock, self.attemptTimeout, progress)
        while True:
            sid = self._newSid()
            offer = SIOffer(sid, profile, [m.namespace for m in remaining],
                            multiple=multiple, payload=payload)
            try:
                answer = await self._ask(peer, offer)
                chosen = self._chosen(peer, answer, remaining)
                asked = self._answerHeaders(peer, profile, answer)
            except NegotiationFailed as e:
                if not attempts.failures:
                    raise
                # A keepAlive re-offer was refused: BADs were already
                # reported, so this ends as a method failure.
                raise MethodFailed("%s; re-offer of %s refused: %s"
                                   % (attempts.summary(),
                                      ", ".join(m.name for m in remaining), e.reason),
                                   condition=e.condition)
            if answered is not None:
                answered(asked)
            keepAlive = not answer.multiple
            later = [m for m in remaining if m not in chosen] if keepAlive else []
            ctx = StreamContext(sid, self.ownJID, peer, True, options,
                                session=sid, offeredBy=self.ownJID)
            stream = await attempts.inOrder(chosen, ctx, more=bool(later))
            if stream is not None:
                return stream
            remaining = later

    async def _peerFeatures(self, peer: JID):
        try:
            return await self.discovery.features(peer)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise NegotiationFailed(
                "cannot reach peer %s: %s" % (peer.full(), _words(e)),
                condition=e.condition if isinstance(e, StanzaError) else None)

    async def _ask(self, peer: JID, offer: SIOffer) -> SIAccept:
        """
        Send ``offer`` and decode the answer.  A peer that says
        ``resource-constraint`` with type ``wait`` (too many offers pending
        there) is asked again after a growing delay, for as long as the
        attempt timeout allows; then its refusal stands.
        """
        deadline = self.clock.seconds() + self.attemptTimeout
        delay = RETRY_FIRST
        while True:
            try:
                return await self._askOnce(peer, offer)
            except _Busy as busy:
                now = self.clock.seconds()
                if now + delay > deadline:
                    raise busy.failure
                log.info("peer {peer} is busy (resource-constraint); offering {sid} "
                         "again in {delay}s", peer=peer.full(), sid=offer.id, delay=delay)
                await task.deferLater(self.clock, delay, lambda: None)
                delay = min(delay * 2, RETRY_MAX)

    async def _askOnce(self, peer: JID, offer: SIOffer) -> SIAccept:
        iq = makeIQ("set", peer)
        iq.addChild(offer.toElement())
        try:
            result = await self.request(iq, self.answerTimeout)
        except StanzaError as e:
            if e.condition == "resource-constraint" and e.type == "wait":
                raise _Busy(NegotiationFailed(
                    "peer %s refused the offer: %s" % (peer.full(), describeStanzaError(e)),
                    condition=_siCondition(e)))
            raise NegotiationFailed("peer %s refused the offer: %s"
                                    % (peer.full(), describeStanzaError(e)),
                                    condition=_siCondition(e))
        except RequestTimeout:
            raise NegotiationFailed("peer %s did not answer the offer within %gs"
                                    % (peer.full(), self.answerTimeout),
                                    condition="remote-server-timeout")
        except NotConnected as e:
            raise NegotiationFailed(str(e))
        except defer.CancelledError:
            raise
        except Exception as e:
            raise NegotiationFailed("offer to %s failed: %s" % (peer.full(), _words(e)))
        sis = [c for c in result.elements() if (c.uri, c.name) == (ns.NS_SI, "si")]
        try:
            return SIAccept.fromElement(sis[0] if sis else None)
        except MalformedSI as e:
            raise NegotiationFailed("peer %s accepted with a malformed answer: %s"
                                    % (peer.full(), e), condition="bad-request")

    @staticmethod
    def _answerHeaders(peer: JID, profile: str, answer: SIAccept) -> Dict[str, str]:
        try:
            return answerHeaders(profile, answer.payload)
        except MalformedSI as e:
            raise NegotiationFailed("peer %s accepted with a malformed answer: %s"
                                    % (peer.full(), e), condition="bad-request")

    @staticmethod
    def _chosen(peer: JID, answer: SIAccept, offered: List[Any]) -> List[Any]:
        """Our method objects in the peer's order (si-multiple says: its order)."""
        byNamespace = {m.namespace: m for m in offered}
        chosen = [byNamespace[n] for n in answer.chosen if n in byNamespace]
        if not chosen:
            raise NegotiationFailed("peer %s chose %s, which we did not offer"
                                    % (peer.full(), ", ".join(answer.chosen)),
                                    condition="bad-request")
        return chosen

    # -- incoming ----------------------------------------------------------------

    def connectionInitialized(self) -> None:
        self.observeIQ(OFFER_PATH, self._onOffer)

    def connectionLost(self, reason) -> None:
        Handler.connectionLost(self, reason)
        offers = list(self._offers.values())
        self._offers.clear()
        for offer in offers:
            offer.end("expired")
            self.acceptor.offerExpired(offer, "XMPP connection lost")

    def answer(self, element: domish.Element) -> None:
        try:
            self.send(element)
        except NotConnected:
            log.info("cannot answer SI offer {id}: not connected", id=element.getAttribute("id"))

    def _onOffer(self, iq: domish.Element) -> object:
        """
        An offer (through the IQ boundary): refused at once when it cannot
        be taken, else kept for the acceptor, which answers it later
        (:class:`~bytestreamd.negotiation.si_offer.IncomingOffer`).
        """
        try:
            offer = self._parseOffer(iq)
        except StanzaError as e:
            log.info("refused SI offer from {peer}: {why}",
                     peer=iq.getAttribute("from"), why=describeStanzaError(e))
            raise
        self._offers[(offer.peer.full(), offer.sid)] = offer
        offer.timer = self.clock.callLater(self.offerTimeout, self._expire, offer)
        try:
            self.acceptor.offerReceived(offer)
        except OfferBusy as e:
            if self.settle(offer, "rejected"):
                raise stanzaError("resource-constraint", e.reason, type="wait")
        except OfferRejected as e:
            offer.reject(e.reason)
        except Exception:
            if self.settle(offer, "rejected"):
                raise   # the boundary logs it and answers internal-server-error
            log.failure("offer acceptor failed on {sid}", sid=offer.sid)
        return LATER

    def _parseOffer(self, iq: domish.Element) -> IncomingOffer:
        def bad(text, app=None):
            element = None if app is None else domish.Element((ns.NS_SI, app))
            return stanzaError("bad-request", text, element, type="cancel")

        peer = parseJID(iq.getAttribute("from"))
        if peer is None:
            raise bad("offer has no valid sender")
        if self.acceptor is None:
            # Not wired yet (setAcceptor): nobody could decide.
            raise stanzaError("service-unavailable", "not accepting offers", type="cancel")
        element = next(iq.elements(ns.NS_SI, "si"))
        try:
            offer = SIOffer.fromElement(element)
        except MalformedSI as e:
            raise bad(str(e))
        if offer.profile not in self.profiles:
            raise bad("profile %s is not supported" % offer.profile, "bad-profile")
        try:
            headers = headersFromPayload(offer.profile, offer.payload)
        except MalformedSI as e:
            raise bad(str(e))
        methods = [m for m in self.methods if m.namespace in offer.methods]
        if not methods:
            raise bad("none of the offered stream methods is enabled here",
                      "no-valid-streams")
        if (peer.full(), offer.id) in self._offers:
            raise bad("stream id %s is already offered" % offer.id)
        if len(self._offers) >= self.maxPendingOffers:
            raise stanzaError("resource-constraint", "too many pending offers",
                              type="wait")
        try:
            application = si_profiles.fromHeaders(offer.profile, headers)
        except MalformedSI as e:
            raise bad(str(e))
        return IncomingOffer(self, iq, offer.id, peer, offer.profile, headers,
                             methods, offer.multiple, offer.mimeType, application)

    def settle(self, offer: IncomingOffer, state: str) -> bool:
        """Take ``offer`` out of the pending set; False if it already was."""
        if self._offers.get((offer.peer.full(), offer.sid)) is not offer:
            return False
        del self._offers[(offer.peer.full(), offer.sid)]
        offer.end(state)
        return True

    def _expire(self, offer: IncomingOffer) -> None:
        offer.timer = None
        reason = "offer timed out after %gs" % self.offerTimeout
        if self.settle(offer, "expired"):
            self.answer(errorFor(offer.iq, stanzaError("forbidden", reason, type="cancel")))
            self.acceptor.offerExpired(offer, reason)

    @property
    def pendingOffers(self) -> List[IncomingOffer]:
        return list(self._offers.values())


class _Busy(Exception):
    """The peer said ``resource-constraint``/``wait``; ``failure`` if we stop."""

    def __init__(self, failure: NegotiationFailed):
        Exception.__init__(self)
        self.failure = failure
