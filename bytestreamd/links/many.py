"""
``connections=many`` links: one link, one Jingle session, any number of
local connections at once.

The link's own stream (the one negotiated with the session) is its
*anchor*: it makes the link GOOD and ends it (CLOSE, the peer's end), and
carries no bytes.  Every local connection is one more stream in the same
session (:meth:`OutgoingSession.addStream`) -- an IBB session authorized by
a Jingle transport-info (XEP-0261 section 2.4) when the anchor is IBB, a
SOCKS5 stream in a content of its own (content-add, XEP-0260,
:mod:`bytestreamd.negotiation.jingle_more`) when it is SOCKS5 -- spliced to its own
connection to the peer's ``[services]`` endpoint, and ends on its own, with
the same :class:`~bytestreamd.local.splice.Splice` and
:class:`~bytestreamd.links.lifecycle.LinkLifecycle` as a link (unconfirmed:
the end confirmation names a link by its session, which the connections
share).

* The opener: the link socket accepts every connection
  (:class:`ManySocketFactory`); each asks the session for a stream once the
  link is GOOD (connections made before wait for it).
* The responder: the offer must name a ``[services]`` entry (there is no
  socket to hand out); each stream the initiator adds is joined to a new
  connection to that endpoint; a stream whose endpoint does not answer is
  closed.
"""

from __future__ import annotations

from typing import Any, List, Optional, Set

from twisted.internet import endpoints, protocol

from bytestreamd.links.lifecycle import LinkLifecycle
from bytestreamd.local.sockets import LocalProtocol, ServiceFactory
from bytestreamd.local.splice import Splice
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


class ManyConnections:
    """The connections of one ``connections=many`` link (``link.many``)."""

    def __init__(self, manager: Any, link: Any):
        self.manager = manager
        self.link = link
        self.control: Any = None
        self.splices: Set[Splice] = set()
        self.waiting: List[Splice] = []
        self.opened = 0
        self.closed = False

    # -- both sides ---------------------------------------------------------------

    def _splice(self) -> Splice:
        config = self.manager.config
        splice = Splice(config.link_buffer, lambda reason: self._ended(splice, reason),
                        clock=self.manager.reactor, settleTimeout=config.peer_timeout,
                        budget=getattr(self.manager, "budget", None))
        self.splices.add(splice)
        return splice

    def _ended(self, splice: Splice, reason: Any) -> None:
        self.splices.discard(splice)

    def _join(self, splice: Splice, stream: Any) -> None:
        lifecycle = LinkLifecycle(
            False, self.manager.config.peer_timeout,
            halfClose=getattr(stream, "loseWriteConnection", None) is not None,
            eofOnTransport=not getattr(stream, "relayed", True), checksDrain=True)
        splice.streamReady(stream, lifecycle)

    def good(self, stream: Any) -> None:
        """The anchor is up: find the session, start what waits."""
        negotiator = next((n for n in self.manager.negotiators
                           if getattr(n, "sessionControl", None) is not None), None)
        sid = getattr(stream, "sessionId", None)
        self.control = negotiator.sessionControl(self.link.peer, sid) \
            if negotiator is not None and sid else None
        if self.control is None:
            log.warn("link {id}: connections=many, but no Jingle session {sid}",
                     id=self.link.id, sid=sid)
            self.finish()
            return
        if self.link.direction == "in":
            self.control.onExtraStream = self._streamArrived
        waiting, self.waiting = self.waiting, []
        for splice in waiting:
            self._request(splice)

    def finish(self) -> None:
        """The link ended: every connection ends with it."""
        self.closed = True
        if self.control is not None:
            self.control.onExtraStream = None
        for splice in list(self.splices) + self.waiting:
            if splice.stream is None:
                splice.abort()
        self.waiting = []

    # -- the opener ------------------------------------------------------------------

    def localConnection(self) -> Optional[Splice]:
        """A new local connection: its splice, or None to refuse it."""
        if self.closed:
            return None
        splice = self._splice()
        if self.control is None:
            self.waiting.append(splice)
        else:
            self.manager.reactor.callLater(0, self._request, splice)
        return splice

    def _request(self, splice: Splice) -> None:
        if self.closed or self.control is None:
            splice.abort()
            return
        self.opened += 1

        def up(stream):
            if self.closed:
                stream.abortConnection()
                splice.abort()
                return
            self._join(splice, stream)

        def failed(f):
            log.warn("link {id}: a connection's stream failed: {why}", id=self.link.id,
                     why=f.getErrorMessage())
            self.splices.discard(splice)
            splice.abort()

        self.control.addStream().addCallbacks(up, failed)

    # -- the responder -----------------------------------------------------------------

    def _streamArrived(self, stream: Any) -> None:
        if self.closed:
            stream.abortConnection()
            return
        endpointString = self.manager.config.services.get(self.link.service or "")
        if endpointString is None:
            stream.abortConnection()
            return
        self.opened += 1
        splice = self._splice()
        try:
            ep = endpoints.clientFromString(self.manager.reactor, endpointString)
            d = ep.connect(ServiceFactory(splice))
        except Exception as e:
            log.warn("link {id}: service {svc}: {why}", id=self.link.id,
                     svc=self.link.service, why=str(e))
            stream.abortConnection()
            return

        def connected(proto):
            self._join(splice, stream)

        def failed(f):
            log.warn("link {id}: service {svc} unavailable for a connection: {why}",
                     id=self.link.id, svc=self.link.service, why=f.getErrorMessage())
            self.splices.discard(splice)
            stream.loseConnection()

        d.addCallbacks(connected, failed)


class ManySocketFactory(protocol.Factory):
    """The link socket of a ``connections=many`` link: every connection in."""

    def __init__(self, many: ManyConnections):
        self.many = many

    def buildProtocol(self, addr):
        splice = self.many.localConnection()
        if splice is None:
            return None
        p = LocalProtocol()
        p.splice = splice
        return p
