"""
Is the peer of a link still there?  XEP-0199 pings and a watch on silence.

A link that waits on its peer -- for data, acknowledgements, the end's
confirmation -- must not wait forever on a peer that is gone, and must never
give up on a peer that is merely slow (a slow local reader over there holds
its acknowledgements back: that is backpressure).  Transport timeouts
cannot tell the two apart; asking the peer can.  So:

* every stanza from a watched peer's full JID, and every chunk of data from
  its transports, counts as "heard";
* when nothing has been heard for ``peerTimeout / 3``, the peer is probed;
  any answer from its full JID means alive -- a result, or an error the
  peer's *client* produced;
* a probe that gets no answer within the rest of ``peerTimeout``, or whose
  error says the peer's session is gone, ends the peer's links ERR.

For a bytestreamd peer the probe asks about one of the live link sessions
(``<session xmlns='urn:x-bytestreamd:end:0' sid=.../>``): a daemon that
crashed and came back under the same full JID answers pings, but knows none
of its old links, and says ``item-not-found`` (measured against two
federated Prosody servers: the restarted peer is back within seconds).  For
other peers the probe is an XEP-0199 ping when the peer's disco advertises
``urn:xmpp:ping``, else a disco#info request (every client we meet answers
it).  The split matters: RFC 6120 8.4 makes a client answer an IQ it does
not understand with ``service-unavailable``, and RFC 6121 8.5.3.2.1 makes a
server answer an IQ to a full JID with no session with the *same*
condition.  Pinging a client without XEP-0199 would therefore look exactly
like pinging one that is gone; a disco#info request cannot be mistaken that
way.  Conditions that mean "gone": service-unavailable,
recipient-unavailable, remote-server-not-found, remote-server-timeout, gone.

The daemon answers pings itself (and advertises ``urn:xmpp:ping``).  An
``unavailable`` presence from the peer's full JID (its server announces it
to those it sent directed presence to) ends its links at once.
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, Optional

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco, iwokkel
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.errors import NotConnected
from bytestreamd.xmpp.stanzas import Handler, RequestTimeout, makeIQ
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

PING_GET = "/iq[@type='get']/ping[@xmlns='%s']" % ns.NS_PING

#: Error conditions that mean the peer's session is gone, not that its
#: client refused the probe.
GONE = frozenset({"service-unavailable", "recipient-unavailable",
                  "remote-server-not-found", "remote-server-timeout", "gone"})


class _Watch:
    __slots__ = ("peer", "count", "lastHeard", "probing", "onGone", "sids")

    def __init__(self, peer: JID, now: float, onGone):
        self.peer = peer
        self.sids: Dict[str, int] = {}
        self.count = 0
        self.lastHeard = now
        self.probing: Optional[defer.Deferred] = None
        self.onGone = onGone


@implementer(iwokkel.IDisco)
class PeerMonitor(Handler):
    """
    Watches the peers of live links.  ``features(peer)`` returns the cached
    disco features of a peer (or ``None``); ``onGone(peer, reason)`` is
    called once when a watched peer is found gone.
    """

    def __init__(self, clock, peerTimeout: float,
                 features: Callable[[JID], Optional[FrozenSet[str]]],
                 onGone: Callable[[JID, str], None]):
        Handler.__init__(self)
        self.clock = clock
        self.peerTimeout = peerTimeout
        self.features = features
        self.onGone = onGone
        self._watched: Dict[str, _Watch] = {}
        self._ticker = None

    @property
    def interval(self) -> float:
        return max(0.5, self.peerTimeout / 3.0)

    # -- XMPPHandler ----------------------------------------------------------

    def connectionInitialized(self) -> None:
        xs = self.xmlstream
        self.observeIQ(PING_GET, self._onPing)
        # Priority above the IBB handler's: every stanza from a watched peer
        # is a sign of life, and this is a dict lookup.
        xs.addObserver("/iq", self._onStanza, priority=10)
        xs.addObserver("/message", self._onStanza, priority=10)
        xs.addObserver("/presence", self._onStanza, priority=10)

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        return [] if nodeIdentifier else [disco.DiscoFeature(ns.NS_PING)]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

    def _onPing(self, iq: domish.Element) -> None:
        """XEP-0199: an empty result (through the IQ boundary)."""
        return None

    def _onStanza(self, stanza: domish.Element) -> None:
        sender = stanza.getAttribute("from")
        watch = self._watched.get(sender) if sender else None
        if watch is None:
            return
        if stanza.name == "presence" and stanza.getAttribute("type") == "unavailable":
            self._gone(watch, "peer %s went offline (unavailable presence)"
                       % (watch.peer.full(),))
            return
        watch.lastHeard = self.clock.seconds()

    # -- watching --------------------------------------------------------------

    def watch(self, peer: JID, sid: Optional[str] = None) -> None:
        """
        Watch ``peer``; ``sid`` names a confirmed link session with it, which
        the probe then asks about (see bytestreamd.links.confirm SESSION_QUERY).
        """
        key = peer.full()
        watch = self._watched.get(key)
        if watch is None:
            watch = self._watched[key] = _Watch(peer, self.clock.seconds(), self.onGone)
        watch.count += 1
        if sid is not None:
            watch.sids[sid] = watch.sids.get(sid, 0) + 1
        if self._ticker is None:
            self._ticker = self.clock.callLater(self.interval, self._tick)

    def unwatch(self, peer: JID, sid: Optional[str] = None) -> None:
        key = peer.full()
        watch = self._watched.get(key)
        if watch is None:
            return
        if sid is not None and sid in watch.sids:
            watch.sids[sid] -= 1
            if watch.sids[sid] <= 0:
                del watch.sids[sid]
        watch.count -= 1
        if watch.count <= 0:
            del self._watched[key]
            if watch.probing is not None:
                watch.probing.cancel()
        if not self._watched and self._ticker is not None:
            if self._ticker.active():
                self._ticker.cancel()
            self._ticker = None

    def heard(self, peer: JID) -> None:
        """A sign of life that did not come as a stanza (transport data)."""
        watch = self._watched.get(peer.full())
        if watch is not None:
            watch.lastHeard = self.clock.seconds()

    def heardFrom(self, key: str) -> Callable[[], None]:
        """A cheap callable for the data path: marks ``key`` (a full JID) heard."""
        clock, watched = self.clock, self._watched

        def mark() -> None:
            watch = watched.get(key)
            if watch is not None:
                watch.lastHeard = clock.seconds()
        return mark

    def _tick(self) -> None:
        self._ticker = None
        now = self.clock.seconds()
        for watch in list(self._watched.values()):
            silent = now - watch.lastHeard
            if silent >= self.peerTimeout and watch.probing is None:
                self._gone(watch, "nothing heard from %s for %.0fs (peer_timeout %gs)"
                           % (watch.peer.full(), silent, self.peerTimeout))
            elif silent >= self.interval and watch.probing is None:
                self._probe(watch, max(1.0, self.peerTimeout - silent))
        if self._watched:
            self._ticker = self.clock.callLater(self.interval, self._tick)

    def _probe(self, watch: _Watch, timeout: float) -> None:
        features = self.features(watch.peer) or frozenset()
        iq = makeIQ("get", watch.peer)
        sid = next(iter(watch.sids), None)
        if sid is not None:
            iq.addElement((ns.NS_END, "session"))["sid"] = sid
            what = "question about link session %s" % sid
        elif ns.NS_PING in features:
            iq.addElement((ns.NS_PING, "ping"))
            what = "ping"
        else:
            iq.addElement((ns.NS_DISCO_INFO, "query"))
            what = "disco#info probe"
        try:
            d = self.request(iq, timeout)
        except NotConnected:
            return  # tried again next tick; silence still counts
        watch.probing = d

        def answered(_):
            watch.probing = None
            watch.lastHeard = self.clock.seconds()

        def failed(f):
            watch.probing = None
            if f.check(defer.CancelledError):
                return None
            if f.check(StanzaError):
                condition = f.value.condition
                if sid is not None and condition == "item-not-found" and sid in watch.sids:
                    self._gone(watch, "peer %s no longer knows link session %s (it "
                               "restarted or ended the link)" % (watch.peer.full(), sid))
                elif condition in GONE:
                    self._gone(watch, "peer %s is gone: its %s was answered %s"
                               % (watch.peer.full(), what, condition))
                else:
                    watch.lastHeard = self.clock.seconds()  # its client said no
                return None
            if f.check(RequestTimeout):
                self._gone(watch, "peer %s did not answer a %s within %.0fs (nothing "
                           "heard for %.0fs; peer_timeout %gs)"
                           % (watch.peer.full(), what, timeout,
                              self.clock.seconds() - watch.lastHeard, self.peerTimeout))
                return None
            if f.check(NotConnected):
                return None
            log.info("probe of {peer} failed: {why}", peer=watch.peer.full(),
                     why=f.getErrorMessage())
            return None

        d.addCallbacks(answered, failed)

    def _gone(self, watch: _Watch, reason: str) -> None:
        if self._watched.get(watch.peer.full()) is not watch:
            return
        log.warn("{reason}", reason=reason)
        # Links unwatch as they end; a later link watches afresh.
        watch.lastHeard = self.clock.seconds()
        self.onGone(watch.peer, reason)
