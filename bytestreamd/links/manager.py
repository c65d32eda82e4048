"""
The link registry: outgoing links, the control backend, and the effects of
each link's machine (:mod:`bytestreamd.links.machine`).  Offers are in
:mod:`bytestreamd.links.incoming`.
"""

from __future__ import annotations

import os
import secrets
from typing import Callable, Dict, List, Optional, Sequence

from twisted.internet import defer
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd import application as app
from bytestreamd.errors import (
    NoSuchLink, NotConnected, PeerError, ResourceLimit, SyntaxErrorInArgument)
from bytestreamd.events import BAD, CLOS, ERR, Event, LinkInfo
from bytestreamd.links.budget import ByteBudget
from bytestreamd.interfaces import IControlBackend, IE2EControl, INegotiator
from bytestreamd.links import machine as m
from bytestreamd.links.effects import Effects
from bytestreamd.links.e2e import E2ELinks
from bytestreamd.links.incoming import IncomingOffers
from bytestreamd.links.link import Link
from bytestreamd.links.many import ManyConnections, ManySocketFactory
from bytestreamd.local.ends import makeEnd
from bytestreamd.local.sockets import LinkSocketFactory, Splice, listenLinkSocket
from bytestreamd.report import daemonStatus, peerSummary
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


@implementer(IControlBackend, IE2EControl)
class LinkManager(IncomingOffers, Effects, E2ELinks):
    """
    Owns every link.  ``negotiators`` are the INegotiator providers in
    preference order (one is picked per peer, see :meth:`negotiatorFor`),
    ``discovery`` the PeerDiscovery cache, ``xmpp`` the client service
    (for ``connected`` and the own JID).
    """

    def __init__(self, reactor, config, xmpp, negotiators: Sequence[INegotiator],
                 discovery, methodNames: List[str], endChannel=None, monitor=None,
                 presence=None, e2e=None):
        self.reactor = reactor
        #: The E2EService (bytestreamd.e2e.service); made from the config
        #: on first use when not given.
        self._e2eService = e2e
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
        #: What all links together may hold of their local clients' bytes.
        self.budget = ByteBudget(getattr(config, "max_buffered", 8 * 1024 * 1024))

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

    # --- the machine --------------------------------------------------------

    def _feed(self, link: Link, input: str, **context) -> None:
        """Feed ``input`` to ``link``'s machine and perform its outputs."""
        for output in link.machine.feed(input):
            getattr(self, "_do" + output)(link, **context)

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
        if link.many is not None:
            factory = ManySocketFactory(link.many)  # the anchor's splice stays bare
        try:
            os.makedirs(self._linksDir, mode=0o700, exist_ok=True)  # made at start
            link.port = listenLinkSocket(self.reactor, path, factory,
                                         self.config.socket_mode,
                                         self.config.socket_group)
        except Exception as e:
            words = getattr(e, "strerror", None) or str(e) or e.__class__.__name__
            log.warn("link {id}: cannot create its socket {path}: {why}",
                     id=link.id, path=path, why=words)
            link.splice = None
            self._feed(link, m.FORGOTTEN,
                       reason="cannot create the link socket: %s" % (words,))
            # Nothing to remove: listenLinkSocket leaves nothing of ours
            # behind, and what is at the path is not ours (issue 8).
            raise ResourceLimit("cannot create the link socket: %s" % (words,))
        link.socketPath = path

    def _newSplice(self, link: Link) -> Splice:
        """The link's ILinkEnd (bytestreamd.local.ends): a Splice, or a
        StanzaRelay for an e2e=xmpp link."""
        link.splice = makeEnd(link.e2eMode,
                              lambda reason: self._feed(link, m.REMOTE_ENDED, failure=reason),
                              clock=self.reactor, holdLimit=self.config.link_buffer,
                              settleTimeout=self.config.peer_timeout,
                              onLocalConnected=lambda: self._localConnected(link),
                              budget=self.budget)
        return link.splice

    def _localConnected(self, link: Link) -> None:
        timer, link.attachTimer = link.attachTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def negotiatorFor(self, peer: JID, methods=None, application=None) -> INegotiator:
        """
        The first negotiator (in preference order) that ``peer``'s cached
        disco features support.  Nothing cached, or nothing supported: the
        first, which asks disco itself and says why it cannot go on.
        """
        info = self.discovery.cached(peer) if self.discovery is not None else None
        return self._supporting(info.features if info is not None else None, methods,
                                application)

    def _supporting(self, features, methods=None, application=None) -> INegotiator:
        """
        The first negotiator that supports ``features`` and can carry this
        ``application`` by one of ``methods`` (when the OPEN named them) to
        this peer -- a negotiator may say so with ``canCarry(features,
        methods, application)``; Jingle does (a file goes by SI until a
        Jingle file application is registered).
        """
        if features is not None:
            for negotiator in self.negotiators:
                if not negotiator.supports(features):
                    continue
                canCarry = getattr(negotiator, "canCarry", None)
                if canCarry is not None and not canCarry(features, methods, application):
                    continue
                return negotiator
        return self.negotiators[0]

    def _namedNegotiator(self, name: str) -> INegotiator:
        """``OPEN ... negotiation=NAME``: 512 if it is not enabled here."""
        for negotiator in self.negotiators:
            if negotiator.name == name:
                return negotiator
        raise SyntaxErrorInArgument(
            "negotiation %s is not enabled (enabled: %s)"
            % (name, ",".join(n.name for n in self.negotiators)))

    def _offerBy(self, link: Link, negotiator: Optional[INegotiator], peer: JID,
                 *args) -> defer.Deferred:
        """
        Offer by ``negotiator``; without one (several enabled, the peer's
        features not cached yet) ask disco first, then pick -- so a peer
        that only speaks SI gets SI even when Jingle comes first.
        """
        if negotiator is not None:
            return negotiator.offer(peer, *args)

        async def choose():
            try:
                features = await self.discovery.features(peer)
            except defer.CancelledError:
                raise
            except Exception:
                features = None  # the first negotiator says why
            chosen = self._supporting(features, args[1], args[0])
            link.negotiation = chosen.name
            return await chosen.offer(peer, *args)

        return defer.Deferred.fromCoroutine(choose())

    def _progress(self, link: Link):
        def progress(state: str, method: Optional[str], reason: Optional[str]):
            self._feed(link, m.PROGRESS, progress=(state, method, reason))
        return progress

    def _negotiate(self, link: Link, d: defer.Deferred) -> None:
        """Follow a negotiation (ours or an accepted offer) to its end."""
        link.pending = d

        def established(stream):
            link.pending = None
            self._feed(link, m.ESTABLISHED, stream=stream)

        def failed(f):
            link.pending = None
            self._feed(link, m.CANCELLED if f.check(defer.CancelledError) else m.FAILED,
                       failure=f)

        d.addCallback(self._secureIfAsked, link)
        d.addCallbacks(established, failed)

    # --- outgoing -----------------------------------------------------------

    def open(self, peer: JID, owner, service=None, methods=None,
             blockSize=None, stanza=None, profile=None, headers=None,
             e2e=None, negotiation=None, connections=None) -> LinkInfo:
        """
        ``profile`` names the application (bytestreamd.application; default
        a link to ``service``); for a file, ``headers`` are its ``name``,
        ``size``, ``date``, ``hash``, ``desc`` and ``range`` (``"true"`` when
        the sender can start at an offset).
        """
        application = app.fromControl(profile, service, headers)
        e2eMode, e2eRequired = self._e2eWanted(application, e2e)
        many = connections == "many"
        if many:
            # Each local connection is one more stream in one Jingle
            # session, joined to the peer's [services] entry (links.many).
            if not isinstance(application, app.LinkApplication) or not service:
                raise SyntaxErrorInArgument("connections=many needs service=NAME "
                                            "(a link to a service)")
            if negotiation not in (None, "jingle"):
                raise SyntaxErrorInArgument("connections=many needs negotiation=jingle")
            if e2eMode is not None and e2eRequired:
                # Each connection is a bytestream of its own, and only the
                # anchor's would be secured: refuse rather than send clear.
                raise SyntaxErrorInArgument("connections=many cannot be end-to-end "
                                            "secured (e2e=off)")
            e2eMode = None  # [links] e2e = preferred: plain, as for a peer without e2e
            negotiation = "jingle"
            application = app.LinkApplication(service, many=True)
        if not self.xmpp.connected:
            raise NotConnected()
        if methods:
            unknown = [name for name in methods if name not in self.methodNames]
            if unknown:
                raise SyntaxErrorInArgument(
                    "unknown or disabled method %s (enabled: %s)"
                    % (",".join(unknown), ",".join(self.methodNames)))
        if peer.resource is None:
            raise SyntaxErrorInArgument(
                "%s is a bare JID: a link needs the peer's full JID "
                "(user@domain/resource)" % (peer.full(),))
        self._checkLimit()
        if e2eMode is not None:
            application = self._e2eApplication(application, e2eMode)
        negotiator: Optional[INegotiator] = None
        if negotiation:
            negotiator = self._namedNegotiator(negotiation)
        elif len(self.negotiators) == 1 or self.discovery is None \
                or self.discovery.cached(peer) is not None:
            negotiator = self.negotiatorFor(peer, methods, application)
        link = Link(self._newId(), peer, "out", owner, application,
                    (negotiator or self.negotiators[0]).name, service=service)
        link.e2eMode, link.e2eRequired = e2eMode, e2eRequired
        self._links[link.id] = link
        if many:
            link.many = ManyConnections(self, link)
        self._openSocket(link)
        options = {}
        if blockSize:
            options["block-size"] = blockSize
        if stanza:
            options["stanza"] = stanza
        isFile = isinstance(application, app.FileApplication)
        log.info("link {id}: opening to {peer} by {nego}{svc}", id=link.id,
                 peer=peer.full(), nego=negotiator.name if negotiator else
                 "the first of %s the peer supports"
                 % ",".join(n.name for n in self.negotiators),
                 svc=" for service %s" % service if service else
                 (" for file %r (%s bytes)" % (application.name, application.size)
                  if isFile else ""))
        # A file's answer can ask for a range; a link's accepts e2e.
        answered = ((lambda asked: self._answered(link, asked))
                    if isFile or e2eMode is not None else None)
        self._negotiate(link, self._offerBy(link, negotiator, peer, application, methods,
                                            options, self._progress(link), answered))
        return link.info()

    def _answered(self, link: Link, asked: Optional[app.RangeAnswer]) -> None:
        if asked is not None:
            link.peerE2E = asked.e2e  # the e2e stream the acceptor agreed to
        if isinstance(asked, app.LinkAnswer):
            return
        if asked is not None and not getattr(link.application, "range", False):
            # XEP-0096: without <range/> in the offer the whole file is sent.
            log.warn("link {id}: {peer} asked for a range we did not offer; "
                     "sending the whole file", id=link.id, peer=link.peer.full())
            asked = None
        link.answer = asked

    # --- liveness -------------------------------------------------------------

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
            if link.peer == peer:
                self._feed(link, m.PEER_GONE, reason=reason)

    # --- control ------------------------------------------------------------

    def close(self, linkId: str) -> None:
        self._feed(self._get(linkId), m.CLOSE_REQUESTED)

    def links(self) -> List[LinkInfo]:
        return [link.info() for link in self._links.values()]

    def forgetOwner(self, owner) -> None:
        for link in self._links.values():
            if link.owner is owner:
                link.owner = None

    def status(self) -> List[tuple]:
        return daemonStatus(self.xmpp, self.methodNames,
                            [link.state for link in self._links.values()]) + self._e2eStatus()

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
            if link.machine.phase == m.OFFERED:
                link.offer.reject("daemon shutting down")
            self._feed(link, m.FORGOTTEN, reason="daemon shutting down")


def _words(e: Exception) -> str:
    from twisted.words.protocols.jabber.error import StanzaError
    from bytestreamd.errors import describeStanzaError
    if isinstance(e, StanzaError):
        return describeStanzaError(e)
    return str(e) or e.__class__.__name__
