"""
Asking peers what they support (XEP-0030), with a small cache.

Every OPEN needs the peer's features before it can offer anything, and a
script opening many links to one peer should not cost a disco round trip
each.  Answers are cached per full JID -- a resource's features change only
when it restarts, which it announces with unavailable presence -- in a
bounded LRU, dropped on that presence and all of it when the XMPP stream
goes away.  Concurrent asks for one JID share a single request; every caller
still gets its own Deferred, so cancelling one never disturbs the others.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Tuple

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco as wdisco

from bytestreamd import ns
from bytestreamd.xmpp.stanzas import Handler, IQBoundary, makeIQ, parseJID


class PeerInfo(NamedTuple):
    """What a disco#info answer says: ``(identities, features)``."""

    identities: FrozenSet[Tuple[str, str]]
    features: FrozenSet[str]


class PeerItem(NamedTuple):
    """One disco#items entry."""

    entity: JID
    node: str
    name: Optional[str]


class MalformedDisco(ValueError):
    """A disco answer had no ``<query/>`` of the expected namespace."""


class _Pending:
    def __init__(self, request: defer.Deferred):
        self.request = request
        self.waiters: List[defer.Deferred] = []


class PeerDiscovery(Handler):
    """
    disco#info and disco#items requests on the daemon's connection.

    ``timeout`` bounds each request (seconds); ``maxEntries`` bounds the
    cache of disco#info answers.
    """

    def __init__(self, timeout: float = 10.0, maxEntries: int = 256):
        Handler.__init__(self)
        self.timeout = timeout
        self.maxEntries = maxEntries
        self._cache: "OrderedDict[str, PeerInfo]" = OrderedDict()
        self._pending: Dict[str, _Pending] = {}

    # -- connection life ----------------------------------------------------

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence[@type='unavailable']", self._onUnavailable)

    def connectionLost(self, reason) -> None:
        # A new session may meet restarted peers; requests in flight are
        # failed by the Connection itself.
        self._cache.clear()
        Handler.connectionLost(self, reason)

    def _onUnavailable(self, presence: domish.Element) -> None:
        sender = parseJID(presence.getAttribute("from"))
        if sender is not None:
            self._cache.pop(sender.full(), None)

    # -- queries ------------------------------------------------------------

    def cached(self, jid: JID) -> Optional[PeerInfo]:
        """The cached answer for ``jid``, without asking."""
        return self._cache.get(jid.full())

    def forget(self, jid: JID) -> None:
        """Drop what is cached for ``jid`` (e.g. after it failed to answer an offer)."""
        self._cache.pop(jid.full(), None)

    def info(self, jid: JID) -> "defer.Deferred[PeerInfo]":
        """
        The peer's identities and features.  Fails with ``StanzaError`` (the
        peer's or its server's answer), ``RequestTimeout``, ``NotConnected``,
        the disconnect reason, or :class:`MalformedDisco`.
        """
        key = jid.full()
        if key in self._cache:
            self._cache.move_to_end(key)
            return defer.succeed(self._cache[key])

        pending = self._pending.get(key)

        def cancel(waiter: defer.Deferred) -> None:
            entry = self._pending.get(key)
            if entry is not None and waiter in entry.waiters:
                entry.waiters.remove(waiter)
                if not entry.waiters:
                    del self._pending[key]
                    entry.request.cancel()

        waiter: defer.Deferred = defer.Deferred(cancel)
        if pending is not None:
            pending.waiters.append(waiter)
            return waiter

        iq = makeIQ("get", jid)
        iq.addElement((ns.NS_DISCO_INFO, "query"))
        entry = _Pending(self.request(iq, self.timeout))
        entry.waiters.append(waiter)
        self._pending[key] = entry
        entry.request.addCallback(self._parseInfo)
        entry.request.addBoth(self._deliver, key, entry)
        return waiter

    def features(self, jid: JID) -> "defer.Deferred[FrozenSet[str]]":
        """The peer's disco#info features (see :meth:`info` for failures)."""
        return self.info(jid).addCallback(lambda info: info.features)

    def items(self, jid: JID, node: str = "") -> "defer.Deferred[List[PeerItem]]":
        """
        The entity's disco#items (used to find SOCKS5 proxies on the
        server).  Not cached: it is asked once per session at most.
        """
        iq = makeIQ("get", jid)
        query = iq.addElement((ns.NS_DISCO_ITEMS, "query"))
        if node:
            query["node"] = node
        d = self.request(iq, self.timeout)

        def parse(result: domish.Element) -> List[PeerItem]:
            query = _query(result, ns.NS_DISCO_ITEMS)
            return [PeerItem(item.entity, item.nodeIdentifier, item.name)
                    for item in wdisco.DiscoItems.fromElement(query)
                    if item.entity is not None]

        return d.addCallback(parse)

    # -- internals ------------------------------------------------------------

    @staticmethod
    def _parseInfo(result: domish.Element) -> PeerInfo:
        info = wdisco.DiscoInfo.fromElement(_query(result, ns.NS_DISCO_INFO))
        return PeerInfo(frozenset(info.identities), frozenset(str(f) for f in info.features))

    def _deliver(self, result, key: str, entry: _Pending) -> None:
        if self._pending.get(key) is entry:
            del self._pending[key]
        if isinstance(result, failure.Failure):
            if result.check(defer.CancelledError) and not entry.waiters:
                return None
            for waiter in list(entry.waiters):
                waiter.errback(result)
            return None
        if self.parent is not None and self.parent.xmlstream is not None:
            self._store(key, result)
        for waiter in list(entry.waiters):
            waiter.callback(result)
        return None

    def _store(self, key: str, info: PeerInfo) -> None:
        self._cache[key] = info
        self._cache.move_to_end(key)
        while len(self._cache) > self.maxEntries:
            self._cache.popitem(last=False)


def _query(result: domish.Element, uri: str) -> domish.Element:
    for child in result.elements():
        if child.uri == uri and child.name == "query":
            return child
    raise MalformedDisco("answer from %s has no %s query"
                         % (result.getAttribute("from", "?"), uri))


class DiscoResponder(IQBoundary, wdisco.DiscoHandler):
    """
    wokkel's disco#info/#items responder (it asks every IDisco sibling
    handler what to advertise), minus one weakness: wokkel parses each
    request's ``from`` and ``to`` with ``jid.internJID``, which caches every
    JID it ever sees in a module-level dict that is never pruned -- memory any
    peer can grow by asking from ever new resources.  Requests are parsed
    with plain ``JID()`` here, and answered through the daemon's one IQ
    boundary (:class:`~bytestreamd.xmpp.stanzas.IQBoundary`) rather than
    wokkel's ``IQHandlerMixin``; the gathering is wokkel's.
    """

    def connectionInitialized(self) -> None:
        self.observeIQ(wdisco.DISCO_INFO, self._onDiscoInfo)
        self.observeIQ(wdisco.DISCO_ITEMS, self._onDiscoItems)

    def _request(self, iq: domish.Element, verb: str) -> wdisco._DiscoRequest:
        query = iq.query
        node = query.getAttribute("node", "") if query is not None else ""
        return wdisco._DiscoRequest(verb, node,
                                    recipient=parseJID(iq.getAttribute("to")),
                                    sender=parseJID(iq.getAttribute("from")))

    def _answer(self, iq: domish.Element, verb: str):
        request = self._request(iq, verb)
        gather = self.info if verb == "info" else self.items
        response = wdisco.DiscoInfo() if verb == "info" else wdisco.DiscoItems()
        response.nodeIdentifier = request.nodeIdentifier

        def toResponse(entries):
            if verb == "info" and request.nodeIdentifier and not entries:
                raise StanzaError("item-not-found")
            for entry in entries:
                response.append(entry)
            return response.toElement()

        return gather(request.sender, request.recipient,
                      request.nodeIdentifier).addCallback(toResponse)

    def _onDiscoInfo(self, iq: domish.Element):
        return self._answer(iq, "info")

    def _onDiscoItems(self, iq: domish.Element):
        return self._answer(iq, "items")
