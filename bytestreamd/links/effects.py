"""
The effects of a link's machine (:mod:`bytestreamd.links.machine`): one
``_do<Output>`` per output, performed by :meth:`LinkManager._feed` in the
order the machine returns them.  A mixin of
:class:`bytestreamd.links.LinkManager`, whose registry, events and timers
they use.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import error
from twisted.python.failure import Failure

from bytestreamd.links.confirm import peerConfirms
from bytestreamd.errors import MethodFailed, NegotiationFailed, NotConnected, OfferRejected
from bytestreamd.events import BAD, CLOS, ERR, GOOD, INIT
from bytestreamd.links.lifecycle import LinkLifecycle
from bytestreamd.links import machine as m
from bytestreamd.links.link import Link
from bytestreamd.local.sockets import LinkClosed
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


def _endDetails(link: Link) -> tuple:
    """What the stream's application said about its end (XEP-0234: the
    daemon's verdict on the sender's checksum, ``verified=`` ``sha256=``)."""
    return tuple(getattr(link.stream, "endDetails", None) or ())


class Effects:
    """What each machine output does."""

    def _doShowInit(self, link: Link, **_) -> None:
        link.state = INIT

    def _doEmitProgress(self, link: Link, progress, **_) -> None:
        state, method, reason = progress
        self._linkEvent(link, state, method, reason)

    def _doAskFeatures(self, link: Link, stream, **_) -> None:
        # Whether the peer confirms ends decides how this link may end; its
        # features were fetched for the offer (ours) or when the offer came
        # (theirs), so this is almost always answered from the cache.
        link.stream = stream
        info = self.discovery.cached(link.peer) if self.discovery is not None else None
        if info is None and self.discovery is not None:
            d = self.discovery.features(link.peer)
            d.addCallbacks(
                lambda features: self._feed(link, m.FEATURES_KNOWN, features=features),
                lambda f: self._feed(link, m.FEATURES_KNOWN, features=None))
            return
        self._feed(link, m.FEATURES_KNOWN,
                   features=info.features if info is not None else None)

    def _doStartGood(self, link: Link, features, **_) -> None:
        stream = link.stream
        confirmed = self.endChannel is not None and (
            peerConfirms(features) or self.endChannel.heardEarly(link.peer, _session(stream)))
        lifecycle = LinkLifecycle(
            confirmed, self.config.peer_timeout,
            halfClose=getattr(stream, "loseWriteConnection", None) is not None,
            eofOnTransport=not getattr(stream, "relayed", True),
            checksDrain=True)
        splice = link.splice
        if confirmed:
            link.session = self.endChannel.open(
                link.peer, _session(stream), splice.peerEOF, splice.peerEnded,
                splice.peerRefusedEnd)
            link.session.onFlush = splice.peerAskedFlush
        if self.presence is not None:
            self.presence.announce(link.peer)
        if self.monitor is not None:
            link.watched = _session(stream) if confirmed else True
            self.monitor.watch(link.peer, _session(stream) if confirmed else None)
            if not getattr(stream, "inBand", False):
                # In-band data is seen by the monitor's stanza observer;
                # only an out-of-band transport needs the per-chunk mark.
                splice.onActivity = self.monitor.heardFrom(link.peer.full())
        self._linkEvent(link, GOOD, stream.method,
                        extra=tuple(link.rangeDetails()) + self._e2eGood(link))
        if not splice.hasLocal and link.port is not None and link.many is None:
            link.attachTimer = self.reactor.callLater(
                self.config.attach_timeout, self._feed, link, m.ATTACH_EXPIRED)
        splice.streamReady(stream, lifecycle, link.session)
        if link.many is not None:
            link.many.good(stream)  # connections=many: the stream is the anchor
        if link.session is not None:
            self.endChannel.replay(link.session)

    def _doEmitFinalBad(self, link: Link, failure: Failure, **_) -> None:
        exc = failure.value
        reason = getattr(exc, "reason", None) or failure.getErrorMessage()
        condition = getattr(exc, "condition", None)
        if condition and condition not in reason:
            # Scripts match on the XMPP condition; people read the words.
            reason = "%s (%s)" % (reason, condition)
        if not failure.check(MethodFailed, NegotiationFailed, NotConnected, OfferRejected):
            log.failure("link {id}: negotiation failed unexpectedly", failure, id=link.id)
        self._linkEvent(link, BAD, reason=reason, final=True)

    def _doEmitBadCancelled(self, link: Link, **_) -> None:
        self._linkEvent(link, BAD, reason="cancelled", final=True)

    def _doEmitClosLocal(self, link: Link, **_) -> None:
        self._linkEvent(link, CLOS, reason="closed by local request")

    def _doEmitClosUnconfirmed(self, link: Link, **_) -> None:
        self._linkEvent(link, CLOS, reason="closed by local request",
                        extra=(("confirmed", "no"),))

    def _doEmitErr(self, link: Link, reason: str, **_) -> None:
        self._linkEvent(link, ERR, reason=reason)

    def _doEmitEnd(self, link: Link, failure: Optional[Failure], **_) -> None:
        """The lifecycle's verdict: CLOS (confirmed or not) or ERR."""
        if failure is None or failure.check(error.ConnectionDone):
            exc = failure.value if failure is not None else None
            confirmed = isinstance(exc, LinkClosed) and exc.confirmed
            why = exc.reason if isinstance(exc, LinkClosed) else None
            self._linkEvent(link, CLOS, reason=why,
                            extra=(("confirmed", "yes" if confirmed else "no"),)
                            + _endDetails(link))
        else:
            exc = failure.value
            why = getattr(exc, "reason", None) or failure.getErrorMessage()
            self._linkEvent(link, ERR, reason=why, extra=_endDetails(link))

    def _doCancelNegotiation(self, link: Link, **_) -> None:
        if link.pending is not None:
            link.pending.cancel()

    def _doRejectOffer(self, link: Link, reason: Optional[str] = None, **_) -> None:
        """REJECT (``reason``) or CLOSE (none) of an offer: refuse it, and say so."""
        link.offer.reject(reason or "closed by the receiver")
        log.info("link {id}: offer from {peer} rejected: {why}", id=link.id,
                 peer=link.peer.full(), why=reason or "closed by the receiver")
        self._doEmitOfferEnded(link, reason)

    def _doEmitOfferEnded(self, link: Link, reason: Optional[str] = None, **_) -> None:
        """
        An offer that was announced (``650 OFFER``) and ends without being
        accepted gets a last event too, so that no link id a watcher saw is
        left without one (issue 6: a link never ends without saying so).
        ``CLOSE`` of the offer: ``CLOS`` as for any link closed here; declined
        (``REJECT``), withdrawn by the peer, timed out, refused at ``ACCEPT``
        or dropped at shutdown: ``BAD final=yes`` with why -- it never
        became a link.
        """
        if not link.announced:
            return
        if reason is None:
            self._linkEvent(link, CLOS, reason="closed by local request")
        else:
            self._linkEvent(link, BAD, reason=reason, final=True)

    def _doRequestClose(self, link: Link, **_) -> None:
        link.splice.requestClose()

    def _doDelegatePeerGone(self, link: Link, reason: str, **_) -> None:
        link.splice.peerGone(reason)

    def _doFailUnattached(self, link: Link, **_) -> None:
        link.attachTimer = None
        link.splice.fail("no local client connected to %s within %gs (attach_timeout)"
                         % (link.socketPath, self.config.attach_timeout))

    def _doAbortStream(self, link: Link, stream=None, **_) -> None:
        stream = stream if stream is not None else link.stream
        if stream is not None:
            stream.abortConnection()

    def _doAbortLocal(self, link: Link, **_) -> None:
        if link.splice is not None:
            link.splice.abort()

    def _doFinish(self, link: Link, **_) -> None:
        """Forget a link that reached a final state; remove its socket."""
        self._links.pop(link.id, None)
        if link.many is not None:
            link.many.finish()
        if link.port is not None:
            port, link.port = link.port, None
            port.stopListening()
        self._localConnected(link)  # the attach timer, if any
        if link.session is not None:
            session, link.session = link.session, None
            session.close()
        if self.endChannel is not None and link.offer is not None:
            self.endChannel.unexpect(link.peer, link.offer.sid)
        if link.watched:
            sid = link.watched if isinstance(link.watched, str) else None
            link.watched = False
            if self.monitor is not None:
                self.monitor.unwatch(link.peer, sid)


def _session(stream) -> str:
    """
    The id the end confirmation and the liveness probe name a link by: the
    negotiation session (SI: the SI id, which is also the transport sid;
    Jingle: the Jingle sid, while each stream has its own transport sid).
    """
    return getattr(stream, "sessionId", None) or stream.sid
