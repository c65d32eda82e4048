"""
Offers from peers: the ``[accept]`` policy, ``max_links``, ``OFFER``
events, ``ACCEPT`` (with a file range), ``REJECT``, and offers for a
``[services]`` entry, which the daemon accepts by itself once the endpoint
answers.  A mixin of :class:`bytestreamd.links.LinkManager`, which provides
the registry and performs the machine's outputs.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer, endpoints
from zope.interface import implementer

from bytestreamd import application as app
from bytestreamd.errors import NoSuchLink, OfferBusy, OfferRejected, ResourceLimit
from bytestreamd.events import Event, LinkInfo
from bytestreamd.interfaces import IIncomingOffer, IOfferAcceptor
from bytestreamd.links import machine as m
from bytestreamd.links.link import Link
from bytestreamd.links.many import ManyConnections
from bytestreamd.local.sockets import ServiceFactory
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


@implementer(IOfferAcceptor)
class IncomingOffers:
    """IOfferAcceptor for every negotiator, and ACCEPT/REJECT."""

    def offerReceived(self, offer: IIncomingOffer) -> None:
        peer = offer.peer
        if not self._allowed(peer):
            log.warn("refused an offer from {peer}: not allowed by [accept] allow",
                     peer=peer.full())
            raise OfferRejected("%s is not allowed to open links here" % (peer.userhost(),))
        if len(self._links) >= self.config.max_links:
            log.warn("refused an offer from {peer}: max_links reached", peer=peer.full())
            raise OfferBusy("too many links (max_links = %d)" % (self.config.max_links,))
        application = offer.application
        # Only a link offer can name a [services] entry: a file offer
        # always waits for ACCEPT.
        service = (application.service
                   if isinstance(application, app.LinkApplication) else None)
        link = Link(self._newId(), peer, "in", None, application, offer.negotiation,
                    service=service)
        link.offer = offer
        self._e2eOffered(link)  # may refuse it (OfferRejected, with why)
        self._links[link.id] = link
        if self.discovery is not None:
            # Whether the peer confirms link ends is decided at GOOD; ask now.
            self.discovery.features(peer).addErrback(lambda f: None)
        log.info("link {id}: offer from {peer} by {nego} (profile {profile}{svc})",
                 id=link.id, peer=peer.full(), nego=offer.negotiation,
                 profile=application.profile,
                 svc=", service %s" % service if service else "")
        if getattr(application, "many", False):
            # connections=many: every stream goes to the service; there is
            # no socket to hand out, so it needs one (links.many).
            if service is None or service not in self.config.services:
                self._links.pop(link.id, None)
                raise OfferRejected("connections=many needs a [services] entry here "
                                    "(asked: %s)" % (service or "none",))
            link.many = ManyConnections(self, link)
            link.socketPath = None
            self._newSplice(link)
            self._feed(link, m.SERVICE_CONNECTING)
            self._feed(link, m.SERVICE_UP)
            self._startAccept(link)
            return
        if service is not None and service in self.config.services:
            self._acceptForService(link, self.config.services[service])
            return
        opts = [("from", peer.full())]
        if service:
            opts.append(("service", service))
        opts.append(("profile", application.profile))
        opts.extend(application.offerDetails())
        opts.append(("negotiation", offer.negotiation))
        link.announced = True
        self.emit(Event("OFFER", (link.id,), tuple(opts), linkId=link.id))

    def offerExpired(self, offer: IIncomingOffer, reason: str = "offer timed out") -> None:
        for link in list(self._links.values()):
            if link.offer is offer and link.machine.phase == m.OFFERED:
                log.info("link {id}: offer from {peer} withdrawn: {reason}",
                         id=link.id, peer=link.peer.full(), reason=reason)
                self._feed(link, m.FORGOTTEN, reason="the offer ended: %s" % (reason,))

    def peerAllowed(self, peer) -> bool:
        """
        ``[accept] allow``: may ``peer`` offer links here at all.  Jingle
        asks before acknowledging a session-initiate (XEP-0166 section
        6.3.2: an unknown initiator gets an error, not an ack).
        """
        allowed = self._allowed(peer)
        if not allowed:
            log.warn("refused an offer from {peer}: not allowed by [accept] allow",
                     peer=peer.full())
        return allowed

    def _allowed(self, peer) -> bool:
        from bytestreamd.config import allowed
        return allowed(self.config, peer)

    def _pendingOffer(self, linkId: str) -> Link:
        link = self._get(linkId)
        if link.machine.phase != m.OFFERED:
            raise NoSuchLink("link %s is not a pending offer (state %s)"
                             % (linkId, link.state))
        return link

    def accept(self, linkId: str, owner, offset: Optional[int] = None,
               length: Optional[int] = None) -> LinkInfo:
        """
        ``offset``/``length`` ask a file's sender for part of the file
        (a ranged transfer); only when its offer allowed ranges.
        """
        link = self._pendingOffer(linkId)
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
        self._feed(link, m.ACCEPTED)
        self._startAccept(link, rangeAnswer)
        return link.info()

    def _startAccept(self, link: Link, rangeAnswer: Optional[app.RangeAnswer] = None) -> None:
        if self.endChannel is not None:
            self.endChannel.expect(link.peer, link.offer.sid)
        answer = self._e2eAnswer(link, rangeAnswer)
        self._negotiate(link, link.offer.accept(self._progress(link), answer))

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
        self._feed(link, m.SERVICE_CONNECTING)

        def connected(proto):
            if link.done:
                proto.transport.loseConnection()
                return
            log.info("link {id}: service {svc} connected ({ep})", id=link.id,
                     svc=link.service, ep=endpointString)
            self._feed(link, m.SERVICE_UP)
            self._startAccept(link)

        def failed(f):
            reason = "service %s (%s) unavailable: %s" % (
                link.service, endpointString, f.getErrorMessage())
            log.warn("link {id}: {reason}", id=link.id, reason=reason)
            if not link.done:
                link.offer.reject("service %s unavailable" % (link.service,))
                self._feed(link, m.FORGOTTEN)

        d.addCallbacks(connected, failed)

    def reject(self, linkId: str, reason: Optional[str] = None) -> None:
        link = self._pendingOffer(linkId)
        self._feed(link, m.CLOSE_REQUESTED, reason=reason or "offer declined")
