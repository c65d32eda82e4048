"""
Finding XEP-0065 proxies (section 4) and asking for their addresses.

Configured proxy JIDs are asked for their streamhost address; without
configuration the server's disco#items are examined for an identity of
category ``proxy`` and type ``bytestreams``.  The answer is cached for the
session (a server's services do not change under a client) and shared by
concurrent callers; discovery never fails -- a proxy that does not answer
is simply not offered, and direct candidates still are.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, List, Optional, Sequence

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco

from bytestreamd import ns
from bytestreamd.errors import MethodFailed, describeStanzaError
from bytestreamd.xmpp.stanzas import RequestTimeout, makeIQ
from bytestreamd.wire.s5b import AddressAnswer, AddressRequest, MalformedS5B, StreamHost
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

#: disco#items entries of our server examined when looking for proxies.
MAX_PROXY_ITEMS = 32

Ask = Callable[[domish.Element, float, str], Awaitable[domish.Element]]


async def ask(handler: Any, iq: domish.Element, timeout: float, who: str) -> domish.Element:
    """
    ``handler.request(iq, timeout)``, with every failure but a cancel made a
    :class:`MethodFailed` whose reason names ``who`` and what went wrong.
    """
    try:
        return await handler.request(iq, timeout)
    except StanzaError as e:
        raise MethodFailed("%s refused: %s" % (who, describeStanzaError(e)),
                           condition=e.condition)
    except RequestTimeout:
        raise MethodFailed("no answer from %s within %gs" % (who, timeout))
    except defer.CancelledError:
        raise
    except Exception as e:
        raise MethodFailed("no answer from %s: %s" % (who, str(e) or e.__class__.__name__))


def queryOf(element: domish.Element, uri: str) -> domish.Element:
    """The ``<query xmlns=uri/>`` child of an answer, or MalformedS5B."""
    for child in element.elements():
        if child.uri == uri and child.name == "query":
            return child
    raise MalformedS5B("answer from %s has no %s query"
                       % (element.getAttribute("from", "?"), uri))


class ProxyDirectory:
    """
    The proxy streamhosts to offer.  ``ask`` is :func:`ask` bound to the
    handler; ``proxies``: ``None`` to discover, else the JIDs to use.
    """

    def __init__(self, ask: Ask, proxies: Optional[Sequence[JID]], timeout: float):
        self._ask = ask
        #: Why each configured or discovered proxy is not being used, for
        #: the BAD reason when no streamhost is left to offer.
        self.problems: dict = {}
        self.proxies = None if proxies is None else list(proxies)
        self.timeout = timeout
        self._cache: Optional[List[StreamHost]] = None
        self._generation = 0
        self._discovery: Optional[defer.Deferred] = None
        self._waiters: List[defer.Deferred] = []

    def knows(self, host: StreamHost) -> bool:
        """
        ``host`` is exactly (JID, host, port) a proxy of ours gave us this
        session: the target side connects to it without checking
        ``[s5b] connect`` (the operator chose that proxy, not the peer).
        """
        return self._cache is not None and host in self._cache

    def forget(self) -> None:
        """The session ended: discover again next time."""
        self._cache = None
        self._generation += 1

    def streamhosts(self, domain: JID) -> "defer.Deferred[List[StreamHost]]":
        """The proxies' streamhosts (discovered on ``domain``); never fails."""
        if self.proxies == []:
            return defer.succeed([])
        if self._cache is not None:
            return defer.succeed(list(self._cache))

        def cancel(waiter: defer.Deferred) -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

        waiter: defer.Deferred = defer.Deferred(cancel)
        self._waiters.append(waiter)
        if self._discovery is None:
            generation = self._generation
            self._discovery = defer.Deferred.fromCoroutine(self._discover(domain))
            self._discovery.addBoth(self._discovered, generation)
        return waiter

    def _discovered(self, result: Any, generation: int) -> None:
        self._discovery = None
        if isinstance(result, failure.Failure):
            log.failure("s5b: proxy discovery failed", result)
            hosts: List[StreamHost] = []
        else:
            hosts = result
            if generation == self._generation:
                self._cache = list(hosts)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(list(hosts))

    async def _discover(self, domain: JID) -> List[StreamHost]:
        candidates = self.proxies if self.proxies is not None else await self._find(domain)
        answers = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._address(jid)) for jid in candidates],
            consumeErrors=True)
        hosts = [host for ok, value in answers if ok for host in value]
        log.info("s5b: proxy streamhosts: {hosts}",
                 hosts=", ".join(h.describe() for h in hosts) or "none")
        return hosts

    async def _find(self, domain: JID) -> List[JID]:
        iq = makeIQ("get", domain)
        iq.addElement((ns.NS_DISCO_ITEMS, "query"))
        try:
            result = await self._ask(iq, self.timeout, "%s (disco#items)" % domain.full())
            items = disco.DiscoItems.fromElement(queryOf(result, ns.NS_DISCO_ITEMS))
        except (MethodFailed, MalformedS5B) as e:
            log.info("s5b: cannot list the services of {domain}: {e}",
                     domain=domain.full(), e=e)
            return []
        jids = [item.entity for item in items
                if getattr(item, "entity", None) is not None and not item.nodeIdentifier]
        jids = jids[:MAX_PROXY_ITEMS]
        answers = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._isProxy(jid)) for jid in jids],
            consumeErrors=True)
        return [jid for jid, (ok, isProxy) in zip(jids, answers) if ok and isProxy]

    async def _isProxy(self, jid: JID) -> bool:
        iq = makeIQ("get", jid)
        iq.addElement((ns.NS_DISCO_INFO, "query"))
        try:
            result = await self._ask(iq, self.timeout, "%s (disco#info)" % jid.full())
            info = disco.DiscoInfo.fromElement(queryOf(result, ns.NS_DISCO_INFO))
        except (MethodFailed, MalformedS5B):
            return False
        return ("proxy", "bytestreams") in info.identities

    async def _address(self, jid: JID) -> List[StreamHost]:
        iq = makeIQ("get", jid)
        iq.addChild(AddressRequest().toElement())
        try:
            result = await self._ask(iq, self.timeout, "proxy %s" % jid.full())
            hosts = AddressAnswer.fromElement(queryOf(result, ns.NS_S5B)).streamhosts
            self.problems.pop(jid.full(), None)
            return hosts
        except (MethodFailed, MalformedS5B) as e:
            log.info("s5b: not using proxy {jid}: {e}", jid=jid.full(), e=e)
            self.problems[jid.full()] = str(e)
            return []
