r"""
The link registry: the one module that knows every layer.

A *link* is one bytestream the daemon exposes as a local socket.  This module
creates links for ``OPEN`` and for offers, drives them through Stream
Initiation and the XEP-0041 link states, joins the established bytestream to
the link's UNIX socket (or to a ``[services]`` endpoint), emits the ``650``
events, and enforces the limits and the ``[accept]`` policy.  It provides
:class:`IControlBackend` to the control channel and the offer acceptor to
:mod:`bytestreamd.negotiation.si`.

State of a link, as ``LINKS`` shows it::

    out:  NEGO -> INIT -> (BAD -> INIT)* -> GOOD -> CLOS | ERR
                      \-> BAD (final)
    in:   OFFER -> INIT -> GOOD -> CLOS | ERR
               \-> (rejected / expired: gone)   \-> BAD (final)

Every state is bounded: NEGO by the disco and offer-answer timeouts, INIT by
``attempt_timeout``, OFFER by ``offer_timeout``, GOOD without a local client
by ``attach_timeout``, GOOD waiting on the peer by the liveness check
(:mod:`bytestreamd.liveness`, ``peer_timeout``), and the end itself by
:mod:`bytestreamd.lifecycle` (when a link may say CLOS, and how a
bytestreamd peer confirms it).
"""

from __future__ import annotations

import os
import secrets
from typing import Callable, Dict, List, Optional, Sequence

from twisted.internet import defer, endpoints, error
from twisted.python import failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd import application as app
from bytestreamd.errors import (
    MethodFailed, NegotiationFailed, NoSuchLink, NotConnected,
    OfferRejected, PeerError, ResourceLimit, SyntaxErrorInArgument)
from bytestreamd.events import (
    BAD, CLOS, ERR, GOOD, INIT, NEGOTIATING, OFFER, Event, LinkInfo)
from bytestreamd.interfaces import IControlBackend, INegotiator
from bytestreamd.confirm import peerConfirms
from bytestreamd.lifecycle import LinkLifecycle
from bytestreamd.local import (LinkClosed, LinkSocketFactory, ServiceFactory, Splice,
                               listenLinkSocket)
from bytestreamd.report import daemonStatus, peerSummary
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)



class Link:
    """One link's state; plain data plus the objects that carry it."""

    def __init__(self, linkId: str, peer: JID, direction: str, owner,
                 application: app.Application, negotiation: str,
                 service: Optional[str] = None):
        self.id = linkId
        self.peer = peer
        self.direction = direction
        self.owner = owner
        #: What the link is for (bytestreamd.application) and the name of
        #: the negotiator that carries it (``negotiation=`` in LINKS/events).
        self.application = application
        self.negotiation = negotiation
        #: The ``[services]`` name shown in LINKS (a link application's).
        self.service = service
        self.profile = application.profile
        self.state = NEGOTIATING if direction == "out" else OFFER
        self.method: Optional[str] = None
        self.reason: Optional[str] = None
        self.socketPath: Optional[str] = None
        self.port = None
        self.splice: Optional[Splice] = None
        self.stream = None
        self.pending: Optional[defer.Deferred] = None
        self.offer = None
        #: What the accepting side asked of the sender (a file's range);
        #: shown on GOOD.
        self.answer: Optional[app.RangeAnswer] = None
        self.closing = False
        #: Reached a final state (final BAD, CLOS, ERR) or was forgotten.
        self.done = False
        #: The end-confirmation session with a bytestreamd peer, if any.
        self.session = None
        #: Running while a GOOD link has no local client yet.
        self.attachTimer = None
        self.watched = False

    @property
    def lifecycle(self) -> Optional[LinkLifecycle]:
        return self.splice.lifecycle if self.splice is not None else None

    @property
    def sent(self) -> int:
        lifecycle = self.lifecycle
        if lifecycle is not None:
            return lifecycle.sent
        return getattr(self.stream, "bytesSent", 0) if self.stream else 0

    @property
    def received(self) -> int:
        lifecycle = self.lifecycle
        if lifecycle is not None:
            return lifecycle.delivered
        return getattr(self.stream, "bytesReceived", 0) if self.stream else 0

    def info(self) -> LinkInfo:
        return LinkInfo(
            id=self.id, state=self.state, peer=self.peer.full(),
            direction=self.direction, method=self.method,
            socket=self.socketPath, service=self.service, profile=self.profile,
            sent=self.sent, received=self.received, reason=self.reason,
            extra=(("negotiation", self.negotiation),)
            + ((("sid", self.stream.sid),) if self.stream is not None else ())
            + app.details(self.application, self.answer))

    def rangeDetails(self) -> tuple:
        return self.answer.details() if self.answer is not None else ()


@implementer(IControlBackend)
class LinkManager:
    """
    Owns every link.  ``negotiators`` are the INegotiator providers in
    preference order (one is picked per peer, see :meth:`negotiatorFor`),
    ``discovery`` the PeerDiscovery cache, ``xmpp`` the client service
    (for ``connected`` and the own JID).
    """

    def __init__(self, reactor, config, xmpp, negotiators: Sequence[INegotiator],
                 discovery, methodNames: List[str], endChannel=None, monitor=None,
                 presence=None):
        self.reactor = reactor
        self.config = config
        self.xmpp = xmpp
        self.negotiators = list(negotiators)
        if not self.negotiators:
            raise ValueError("a LinkManager needs at least one negotiator")
        self.discovery = discovery
        self.methodNames = list(methodNames)
        #: :class:`bytestreamd.confirm.EndChannel` (optional in tests).
        self.endChannel = endChannel
        #: :class:`bytestreamd.liveness.PeerMonitor` (optional in tests).
        self.monitor = monitor
        #: A PeerPresence (optional in tests).
        self.presence = presence
        self._links: Dict[str, Link] = {}
        self._sinks: List[Callable[[Event], None]] = []
        self._linksDir = os.path.join(config.runtime_dir, "links")

    # --- events -----------------------------------------------------------

    def subscribe(self, sink) -> None:
        self._sinks.append(sink)

    def unsubscribe(self, sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def emit(self, event: Event) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:
                log.failure("event sink failed")

    def _linkEvent(self, link: Link, state: str, method: Optional[str] = None,
                   reason: Optional[str] = None, final: bool = False,
                   extra: tuple = ()) -> None:
        link.state = state
        if method is not None:
            link.method = method
        if reason is not None:
            link.reason = reason
        opts = []
        shown = method or (link.method if state != BAD else None)
        if shown:
            opts.append(("method", shown))
        opts.append(("peer", link.peer.full()))
        opts.append(("negotiation", link.negotiation))
        opts.extend(extra)
        if reason:
            opts.append(("reason", reason))
        if state in (CLOS, ERR):
            opts.append(("sent", str(link.sent)))
            opts.append(("received", str(link.received)))
        if final:
            opts.append(("final", "yes"))
        if final or state in (CLOS, ERR):
            link.done = True
        self.emit(Event("LINK", (link.id, state), tuple(opts), linkId=link.id))
        logger = log.warn if state in (BAD, ERR) else log.info
        logger("link {id} {dir} {peer}: {state}{method}{reason}", id=link.id,
               dir="to" if link.direction == "out" else "from",
               peer=link.peer.full(), state=state,
               method=" via " + (method or link.method) if (method or link.method) else "",
               reason=" (%s)" % reason if reason else "")

    def serverStateChanged(self, connected: bool, reason: str) -> None:
        opts = (("reason", reason),) if reason else ()
        self.emit(Event("SERVER", ("connected" if connected else "disconnected",),
                        opts, broadcast=True))

    # --- helpers ------------------------------------------------------------

    def _newId(self) -> str:
        while True:
            linkId = secrets.token_hex(4)
            if linkId not in self._links:
                return linkId

    def _checkLimit(self) -> None:
        if len(self._links) >= self.config.max_links:
            raise ResourceLimit("too many links (max_links = %d)"
                                % (self.config.max_links,))

    def _get(self, linkId: str) -> Link:
        link = self._links.get(linkId)
        if link is None:
            raise NoSuchLink("no such link or offer: %s" % (linkId,))
        return link

    def _openSocket(self, link: Link) -> None:
        """
        Create the link's socket, or raise ResourceLimit (451) with a
        one-line reason and leave nothing behind -- out of file descriptors
        is a limit like max_links, not an internal error (issue 6 h).
        """
        path = os.path.join(self._linksDir, link.id)
        factory = LinkSocketFactory(link.id, self._newSplice(link))
        try:
            os.makedirs(self._linksDir, mode=0o700, exist_ok=True)  # made at start
            link.port = listenLinkSocket(self.reactor, path, factory,
                                         self.config.socket_mode,
                                         self.config.socket_group)
        except Exception as e:
            words = getattr(e, "strerror", None) or str(e) or e.__class__.__name__
            log.warn("link {id}: cannot create its socket {path}: {why}",
                     id=link.id, path=path, why=words)
            self._links.pop(link.id, None)
            link.done = True
            link.splice = None
            # Nothing to remove: listenLinkSocket leaves nothing of ours
            # behind, and what is at the path is not ours (issue 8).
            raise ResourceLimit("cannot create the link socket: %s" % (words,))
        link.socketPath = path

    def _newSplice(self, link: Link) -> Splice:
        link.splice = Splice(self.config.link_buffer,
                             lambda reason: self._remoteEnded(link, reason),
                             clock=self.reactor,
                             settleTimeout=self.config.peer_timeout,
                             onLocalConnected=lambda: self._localConnected(link))
        return link.splice

    def _localConnected(self, link: Link) -> None:
        timer, link.attachTimer = link.attachTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _finish(self, link: Link) -> None:
        """Forget a link that reached a final state; remove its socket."""
        link.done = True
        self._links.pop(link.id, None)
        if link.port is not None:
            port, link.port = link.port, None
            port.stopListening()
        self._localConnected(link)  # the attach timer, if any
        if link.session is not None:
            session, link.session = link.session, None
            session.close()
        if link.watched:
            sid = link.watched if isinstance(link.watched, str) else None
            link.watched = False
            if self.monitor is not None:
                self.monitor.unwatch(link.peer, sid)

    def negotiatorFor(self, peer: JID) -> INegotiator:
        """
        The first negotiator (in preference order) that ``peer``'s cached
        disco features support.  Nothing cached, or nothing supported: the
        first, which asks disco itself and says why it cannot go on.
        """
        info = self.discovery.cached(peer) if self.discovery is not None else None
        if info is not None:
            for negotiator in self.negotiators:
                if negotiator.supports(info.features):
                    return negotiator
        return self.negotiators[0]

    def _progress(self, link: Link):
        def progress(state: str, method: Optional[str], reason: Optional[str]):
            if link.done:
                return
            self._linkEvent(link, state, method, reason)
        return progress

    # --- outgoing -----------------------------------------------------------

    def open(self, peer: JID, owner, service=None, methods=None,
             blockSize=None, stanza=None, profile=None, headers=None) -> LinkInfo:
        """
        ``profile`` names the application (bytestreamd.application; default
        a link to ``service``); for a file, ``headers`` are its ``name``,
        ``size``, ``date``, ``hash``, ``desc`` and ``range`` (``"true"`` when
        the sender can start at an offset).
        """
        application = app.fromControl(profile, service, headers)
        if not self.xmpp.connected:
            raise NotConnected()
        if methods:
            unknown = [m for m in methods if m not in self.methodNames]
            if unknown:
                raise SyntaxErrorInArgument(
                    "unknown or disabled method %s (enabled: %s)"
                    % (",".join(unknown), ",".join(self.methodNames)))
        if peer.resource is None:
            raise SyntaxErrorInArgument(
                "%s is a bare JID: a link needs the peer's full JID "
                "(user@domain/resource)" % (peer.full(),))
        self._checkLimit()
        negotiator = self.negotiatorFor(peer)
        link = Link(self._newId(), peer, "out", owner, application, negotiator.name,
                    service=service)
        self._links[link.id] = link
        self._openSocket(link)
        options = {}
        if blockSize:
            options["block-size"] = blockSize
        if stanza:
            options["stanza"] = stanza
        isFile = isinstance(application, app.FileApplication)
        log.info("link {id}: opening to {peer} by {nego}{svc}", id=link.id,
                 peer=peer.full(), nego=negotiator.name,
                 svc=" for service %s" % service if service else
                 (" for file %r (%s bytes)" % (application.name, application.size)
                  if isFile else ""))
        # Only a file's answer can ask for something (a range).
        answered = (lambda asked: self._answered(link, asked)) if isFile else None
        d = negotiator.offer(peer, application, methods, options,
                             self._progress(link), answered)
        link.pending = d
        d.addCallbacks(lambda stream: self._established(link, stream),
                       lambda f: self._negotiationFailed(link, f))
        return link.info()

    def _answered(self, link: Link, asked: Optional[app.RangeAnswer]) -> None:
        if asked is not None and not getattr(link.application, "range", False):
            # XEP-0096: without <range/> in the offer the whole file is sent.
            log.warn("link {id}: {peer} asked for a range we did not offer; "
                     "sending the whole file", id=link.id, peer=link.peer.full())
            asked = None
        link.answer = asked

    def _established(self, link: Link, stream) -> None:
        link.pending = None
        if link.done or link.closing:
            stream.abortConnection()
            return
        link.stream = stream
        # Whether the peer confirms ends decides how this link may end; its
        # features were fetched for the offer (ours) or when the offer came
        # (theirs), so this is almost always answered from the cache.
        info = self.discovery.cached(link.peer) if self.discovery is not None else None
        if info is None and self.discovery is not None:
            d = self.discovery.features(link.peer)
            d.addCallbacks(lambda features: self._good(link, stream, features),
                           lambda f: self._good(link, stream, None))
            return
        self._good(link, stream, info.features if info is not None else None)

    def _good(self, link: Link, stream, features) -> None:
        if link.done or link.closing:
            if link.closing and not link.done:
                stream.abortConnection()
                self._linkEvent(link, CLOS, reason="closed by local request",
                                extra=(("confirmed", "no"),))
                link.splice.abort()
                self._finish(link)
            return
        confirmed = self.endChannel is not None and peerConfirms(features)
        lifecycle = LinkLifecycle(
            confirmed, self.config.peer_timeout,
            halfClose=getattr(stream, "loseWriteConnection", None) is not None,
            eofOnTransport=not getattr(stream, "relayed", True))
        splice = link.splice
        if confirmed:
            link.session = self.endChannel.open(
                link.peer, stream.sid, splice.peerEOF, splice.peerEnded,
                splice.peerRefusedEnd)
            link.session.onFlush = splice.peerAskedFlush
        if self.presence is not None:
            self.presence.announce(link.peer)
        if self.monitor is not None:
            link.watched = stream.sid if confirmed else True
            self.monitor.watch(link.peer, stream.sid if confirmed else None)
            splice.onActivity = self.monitor.heardFrom(link.peer.full())
        self._linkEvent(link, GOOD, stream.method, extra=tuple(link.rangeDetails()))
        if not splice.hasLocal and link.port is not None:
            link.attachTimer = self.reactor.callLater(
                self.config.attach_timeout, self._attachExpired, link)
        splice.streamReady(stream, lifecycle, link.session)

    def _attachExpired(self, link: Link) -> None:
        link.attachTimer = None
        if not link.done and link.splice is not None:
            link.splice.fail("no local client connected to %s within %gs (attach_timeout)"
                             % (link.socketPath, self.config.attach_timeout))

    def _negotiationFailed(self, link: Link, f: failure.Failure) -> None:
        link.pending = None
        if link.done:
            return
        if f.check(defer.CancelledError):
            if link.closing:
                self._linkEvent(link, CLOS, reason="closed by local request")
            else:
                self._linkEvent(link, BAD, reason="cancelled", final=True)
        else:
            exc = f.value
            reason = getattr(exc, "reason", None) or f.getErrorMessage()
            condition = getattr(exc, "condition", None)
            if condition and condition not in reason:
                # Scripts match on the XMPP condition; people read the words.
                reason = "%s (%s)" % (reason, condition)
            if not f.check(MethodFailed, NegotiationFailed, NotConnected, OfferRejected):
                log.failure("link {id}: negotiation failed unexpectedly", f, id=link.id)
            self._linkEvent(link, BAD, reason=reason, final=True)
        if link.splice is not None:
            link.splice.abort()
        self._finish(link)

    def _remoteEnded(self, link: Link, reason: failure.Failure) -> None:
        if link.done:
            return
        if reason is None or reason.check(error.ConnectionDone):
            exc = reason.value if reason is not None else None
            confirmed = isinstance(exc, LinkClosed) and exc.confirmed
            why = exc.reason if isinstance(exc, LinkClosed) else None
            self._linkEvent(link, CLOS, reason=why,
                            extra=(("confirmed", "yes" if confirmed else "no"),))
        else:
            exc = reason.value
            why = getattr(exc, "reason", None) or reason.getErrorMessage()
            self._linkEvent(link, ERR, reason=why)
        self._finish(link)

    def peerOffline(self, peer: JID) -> None:
        """
        ``peer``'s XMPP session ended: its links can carry nothing more (IBB)
        and can confirm nothing (SOCKS5), so they end ERR now instead of
        waiting forever.
        """
        self.peerGone(peer, "peer %s went offline (unavailable presence); the "
                      "link is gone" % (peer.full(),))

    def peerGone(self, peer: JID, reason: str) -> None:
        """Liveness: ``peer`` is gone; every established link with it ends ERR."""
        for link in list(self._links.values()):
            if link.peer != peer or link.stream is None or link.done:
                continue
            if link.lifecycle is not None:
                link.splice.peerGone(reason)
            else:
                self._linkEvent(link, ERR, reason=reason)
                link.splice.abort()
                link.stream.abortConnection()
                self._finish(link)

    # --- incoming (IOfferAcceptor) -----------------------------------------

    def offerReceived(self, offer) -> None:
        peer = offer.peer
        if not self._allowed(peer):
            log.warn("refused an offer from {peer}: not allowed by [accept] allow",
                     peer=peer.full())
            raise OfferRejected("%s is not allowed to open links here" % (peer.userhost(),))
        if len(self._links) >= self.config.max_links:
            log.warn("refused an offer from {peer}: max_links reached", peer=peer.full())
            raise OfferRejected("too many links")
        application = offer.application
        # Only a link offer can name a [services] entry: a file offer
        # always waits for ACCEPT.
        service = (application.service
                   if isinstance(application, app.LinkApplication) else None)
        link = Link(self._newId(), peer, "in", None, application, offer.negotiation,
                    service=service)
        link.offer = offer
        self._links[link.id] = link
        if self.discovery is not None:
            # Whether the peer confirms link ends is decided at GOOD; ask now.
            self.discovery.features(peer).addErrback(lambda f: None)
        log.info("link {id}: offer from {peer} by {nego} (profile {profile}{svc})",
                 id=link.id, peer=peer.full(), nego=offer.negotiation,
                 profile=application.profile,
                 svc=", service %s" % service if service else "")
        if service is not None and service in self.config.services:
            self._acceptForService(link, self.config.services[service])
            return
        opts = [("from", peer.full())]
        if service:
            opts.append(("service", service))
        opts.append(("profile", application.profile))
        opts.extend(application.offerDetails())
        opts.append(("negotiation", offer.negotiation))
        self.emit(Event("OFFER", (link.id,), tuple(opts), linkId=link.id))

    def offerExpired(self, offer, reason: str = "offer timed out") -> None:
        for link in list(self._links.values()):
            if link.offer is offer and link.state == OFFER:
                log.info("link {id}: offer from {peer} withdrawn: {reason}",
                         id=link.id, peer=link.peer.full(), reason=reason)
                self._finish(link)

    def _allowed(self, peer: JID) -> bool:
        from bytestreamd.config import allowed
        return allowed(self.config, peer)

    def accept(self, linkId: str, owner, offset: Optional[int] = None,
               length: Optional[int] = None) -> LinkInfo:
        """
        ``offset``/``length`` ask a file-transfer sender for part of the
        file (XEP-0096 ranged transfer); only when its offer had ``<range/>``.
        """
        link = self._get(linkId)
        if link.state != OFFER:
            raise NoSuchLink("link %s is not a pending offer (state %s)"
                             % (linkId, link.state))
        rangeAnswer = None
        if offset is not None or length is not None:
            rangeAnswer = app.requestRange(link.id, link.application, offset, length)
            link.answer = rangeAnswer
        link.owner = owner
        try:
            self._openSocket(link)
        except ResourceLimit as e:
            link.offer.reject("cannot accept now: %s" % (e.text,))
            raise
        self._startAccept(link, rangeAnswer)
        return link.info()

    def _startAccept(self, link: Link, rangeAnswer=None) -> None:
        link.state = INIT
        d = link.offer.accept(self._progress(link), rangeAnswer)
        link.pending = d
        d.addCallbacks(lambda stream: self._established(link, stream),
                       lambda f: self._negotiationFailed(link, f))

    def _acceptForService(self, link: Link, endpointString: str) -> None:
        """
        Connect the configured endpoint first and accept only once it
        answers: a peer whose sshd is down gets a clear refusal, not a link
        that dies after GOOD.
        """
        link.socketPath = None
        factory = ServiceFactory(self._newSplice(link))
        try:
            ep = endpoints.clientFromString(self.reactor, endpointString)
            d = ep.connect(factory)
        except Exception as e:
            d = defer.fail(e)
        link.state = INIT

        def connected(proto):
            if link.id not in self._links:
                proto.transport.loseConnection()
                return
            log.info("link {id}: service {svc} connected ({ep})", id=link.id,
                     svc=link.service, ep=endpointString)
            self._startAccept(link)

        def failed(f):
            reason = "service %s (%s) unavailable: %s" % (
                link.service, endpointString, f.getErrorMessage())
            log.warn("link {id}: {reason}", id=link.id, reason=reason)
            link.offer.reject("service %s unavailable" % (link.service,))
            self._finish(link)

        d.addCallbacks(connected, failed)

    def reject(self, linkId: str, reason: Optional[str] = None) -> None:
        link = self._get(linkId)
        if link.state != OFFER:
            raise NoSuchLink("link %s is not a pending offer (state %s)"
                             % (linkId, link.state))
        link.offer.reject(reason or "offer declined")
        log.info("link {id}: offer from {peer} rejected{why}", id=link.id,
                 peer=link.peer.full(), why=": %s" % reason if reason else "")
        self._finish(link)

    # --- control ------------------------------------------------------------

    def close(self, linkId: str) -> None:
        link = self._get(linkId)
        if link.state == OFFER:
            self.reject(linkId, "closed by the receiver")
            return
        link.closing = True
        if link.stream is not None:
            if link.lifecycle is not None:
                link.splice.requestClose()
            # else: _good sees ``closing`` when the peer's features arrive.
        elif link.pending is not None:
            link.pending.cancel()
        else:
            self._linkEvent(link, CLOS, reason="closed by local request")
            self._finish(link)

    def links(self) -> List[LinkInfo]:
        return [link.info() for link in self._links.values()]

    def forgetOwner(self, owner) -> None:
        for link in self._links.values():
            if link.owner is owner:
                link.owner = None

    def status(self) -> List[tuple]:
        return daemonStatus(self.xmpp, self.methodNames,
                            [link.state for link in self._links.values()])

    @defer.inlineCallbacks
    def probe(self, peer: JID):
        if not self.xmpp.connected:
            raise NotConnected()
        try:
            identities, features = yield self.discovery.info(peer)
        except Exception as e:
            raise PeerError("cannot reach %s: %s" % (peer.full(), _words(e)))
        return peerSummary(peer.full(), identities, features)

    def shutdown(self) -> None:
        """Daemon stopping: end every link (the peer sees a close)."""
        for link in list(self._links.values()):
            if link.state == OFFER:
                link.offer.reject("daemon shutting down")
            elif link.stream is not None:
                link.stream.abortConnection()
                if link.splice is not None:
                    link.splice.abort()
            elif link.pending is not None:
                link.closing = True
                link.pending.cancel()
            self._finish(link)


def _words(e: Exception) -> str:
    from twisted.words.protocols.jabber.error import StanzaError
    from bytestreamd.errors import describeStanzaError
    if isinstance(e, StanzaError):
        return describeStanzaError(e)
    return str(e) or e.__class__.__name__
