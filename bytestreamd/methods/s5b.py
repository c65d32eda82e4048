"""
XEP-0065 SOCKS5 Bytestreams (TCP mode) as an :class:`IStreamMethod`.

Roles, as the XEP assigns them (the initiator is the XEP's "requester"):

* initiator -- offers streamhosts: its own direct SOCKS5 server
  (:class:`~bytestreamd.methods.s5b_tcp.DirectStreamhost`: the
  ``advertise`` addresses, or the listening ones) first, then proxies
  (configured, or discovered on the server:
  :class:`~bytestreamd.methods.s5b_proxies.ProxyDirectory`).  The target
  answers with the one it connected to: a direct one means the incoming
  SOCKS5 connection with the right DST.ADDR *is* the stream; a proxy
  means we connect to it too and ask it to ``activate`` the session.
* target -- tries the offered streamhosts in order, ``candidateTimeout``
  each (name resolution + connect + SOCKS5), answers ``streamhost-used``
  for the first that works, or a bare ``item-not-found``.  An offer that no
  ``expect`` announced is refused with ``not-acceptable``.

What a peer learns, and where we connect
    A peer picks the addresses our target side connects to, so every
    candidate address is checked against ``[s5b] connect``
    (:class:`~bytestreamd.methods.s5b_policy.ConnectPolicy`; host names
    are resolved first and every address checked, and we connect only to
    checked addresses).  The exception is a streamhost that is exactly
    what a proxy of ours told us (configured, or discovered on our own
    server): the operator chose it.  The initiator's own proxy join is
    never checked for the same reason.  Errors sent to a peer carry the
    XEP's condition and nothing else -- no per-candidate "connection
    refused" or "not a SOCKS5 server (first byte 0x53)" that would make us
    a port scanner and banner oracle; those details are the local BAD
    reason (and the log) only.  The initiator's own reason names the
    streamhosts it offered and what its direct streamhost saw.

The established stream is an :class:`~bytestreamd.methods.s5b_stream.S5BStream`:
the TCP transport behind a thin facade.

Proxies and early bytes
    Since XEP-0065 1.8 a proxy may drop bytes a party sends before the
    initiator's ``activate``, and the target is never told when that
    happened.  So a target that used a proxy reports the stream only when
    the first byte arrives from the initiator (which writes only after
    activation) or ``proxyGrace`` seconds after answering, whichever is
    first; bytes the local side writes meanwhile wait in the link layer.

Everything a peer can make us hold is bounded: handshakes by time and size
(``greetingTimeout``, ``handshakeTimeout``, the SOCKS5 machines) and number
(``maxHandshakes``, evicting the oldest of the busiest source rather than
refusing a newcomer: see :mod:`bytestreamd.methods.s5b_policy`), direct
connections accepted only while a session waits for one and at most a few
per session, streamhosts tried per offer (``maxCandidates``), addresses per
host name, and data received before a protocol is attached.
docs/security-s5b.rst has the whole threat model.

Why one long module: the XEP-0065 handler's two roles share its expectations and errors; the policy and proxies are already apart (s5b_policy, s5b_proxies).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco, iwokkel
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.errors import MethodFailed, stanzaError
from bytestreamd.interfaces import IStreamMethod, StreamContext
from bytestreamd.methods.s5b_policy import (
    ConnectPolicy,
    MIN_HANDSHAKES,
    defaultMaxHandshakes,
)
from bytestreamd.methods.s5b_proxies import ProxyDirectory, ask, queryOf
from bytestreamd.methods.s5b_stream import HOLD_LIMIT, S5BStream
from bytestreamd.methods.s5b_tcp import (
    GREETING_TIMEOUT,
    CandidateFailed,
    DirectStreamhost,
    S5BServerFactory,
    connectStreamhost,
    hostAddresses,
    isAddressLiteral,
    resolveHost,
)
from bytestreamd.xmpp.stanzas import LATER, Handler, makeIQ, parseJID, resultFor
from bytestreamd.wire.s5b import (
    MODE_TCP,
    Activate,
    MalformedS5B,
    Query,
    StreamHost,
    StreamHostUsed,
    dstAddr,
)
from bytestreamd.text import SafeLogger

__all__ = ["S5BMethod", "S5BStream", "S5BServerFactory", "DirectStreamhost",
           "ProxyDirectory", "CandidateFailed", "ConnectPolicy", "connectStreamhost",
           "hostAddresses", "fromConfig", "HOLD_LIMIT"]

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

QUERY_SET = "/iq[@type='set']/query[@xmlns='%s']" % ns.NS_S5B


@implementer(IStreamMethod, iwokkel.IDisco)
class S5BMethod(Handler):
    """
    The XEP-0065 handler and stream method.

    ``reactor`` provides IReactorTCP, IReactorTime and
    IReactorPluggableNameResolver.  ``listen``, ``advertise``,
    ``interfaceAddresses``, ``handshakeTimeout``, ``greetingTimeout`` and
    ``maxHandshakes`` configure the direct streamhost (:attr:`direct`, see
    :class:`DirectStreamhost`); it starts listening when the XMPP session
    is first up, unless :meth:`startListening` was called before.
    ``connect``: which candidate addresses a peer may make us connect to
    (default: :class:`ConnectPolicy`'s, every address but loopback,
    link-local, unspecified, multicast and broadcast).
    ``proxies``: ``None`` discovers proxies on our server (disco#items,
    identity proxy/bytestreams) once per session, ``[]`` uses none, else a
    list of proxy JIDs.  ``candidateTimeout`` bounds each streamhost attempt
    (connect + SOCKS5), ``requestTimeout`` each disco/address/activate
    request; ``maxCandidates`` is how many streamhosts of an offer we try
    (and offer); ``proxyGrace``: see the module docstring.
    """

    name = "s5b"
    namespace = ns.NS_S5B

    def __init__(self, reactor: Any, listen: Sequence[Tuple[str, int]] = (),
                 advertise: Sequence[Tuple[str, Optional[int]]] = (),
                 proxies: Optional[Sequence[JID]] = None,
                 candidateTimeout: float = 5.0, handshakeTimeout: float = 10.0,
                 requestTimeout: float = 10.0, proxyGrace: float = 2.0,
                 maxCandidates: int = 8,
                 interfaceAddresses: Optional[Callable[[], List[str]]] = None,
                 connect: Optional[ConnectPolicy] = None,
                 maxHandshakes: int = MIN_HANDSHAKES,
                 greetingTimeout: float = GREETING_TIMEOUT):
        Handler.__init__(self)
        self.reactor = reactor
        self.candidateTimeout = candidateTimeout
        self.requestTimeout = requestTimeout
        self.proxyGrace = proxyGrace
        self.maxCandidates = maxCandidates
        self.connectPolicy = connect if connect is not None else ConnectPolicy()
        self.direct = DirectStreamhost(reactor, listen, advertise, handshakeTimeout,
                                       interfaceAddresses, maxHandshakes=maxHandshakes,
                                       greetingTimeout=greetingTimeout)
        self.proxyDirectory = ProxyDirectory(self._ask, proxies, requestTimeout)
        self._expected: Dict[Tuple[str, str], "_Expectation"] = {}

    # -- wiring -------------------------------------------------------------------------

    @property
    def serverFactory(self) -> S5BServerFactory:
        """The factory to listen with for the direct streamhost."""
        return self.direct.factory

    @property
    def proxies(self) -> Optional[List[JID]]:
        return self.proxyDirectory.proxies

    def startListening(self) -> List[Any]:
        """Listen on every configured address now; raises CannotListenError."""
        return self.direct.startListening()

    def addListeningPort(self, port: Any) -> None:
        """A port bound elsewhere with :attr:`serverFactory`."""
        self.direct.addListeningPort(port)

    def stopListening(self) -> defer.Deferred:
        return self.direct.stopListening()

    def directCandidates(self, jid: JID) -> List[StreamHost]:
        return self.direct.candidates(jid)

    # -- XMPPHandler ---------------------------------------------------------------

    def connectionInitialized(self) -> None:
        self.proxyDirectory.forget()  # a new session may offer other services
        self.observeIQ(QUERY_SET, self._onQuery)
        if self.direct.listen and not self.direct.listenTried:
            try:
                self.direct.startListening()
            except Exception:
                log.failure("s5b: cannot listen for direct SOCKS5 connections; "
                            "offering proxies only")

    def connectionLost(self, reason: Any) -> None:
        Handler.connectionLost(self, reason)
        self.proxyDirectory.forget()
        expected, self._expected = self._expected, {}
        for expectation in expected.values():
            expectation.stop(MethodFailed(
                "XMPP connection lost before %s offered streamhosts for %s"
                % (expectation.ctx.initiator.full(), expectation.ctx.sid)))

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if not nodeIdentifier:
            return [disco.DiscoFeature(ns.NS_S5B)]
        return []

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

    def _ask(self, iq: domish.Element, timeout: float, who: str):
        return ask(self, iq, timeout, who)

    # -- initiator ---------------------------------------------------------------------

    def initiate(self, ctx: StreamContext) -> "defer.Deferred[S5BStream]":
        return defer.Deferred.fromCoroutine(self._initiate(ctx))

    async def _initiate(self, ctx: StreamContext) -> S5BStream:
        address = dstAddr(ctx.sid, ctx.initiator, ctx.target)
        direct = self.direct.candidates(ctx.initiator)
        evictedBefore = self.direct.factory.evicted
        pending = None
        stream: Optional[S5BStream] = None
        if direct:
            try:
                pending = self.direct.expect(address)
            except ValueError:
                raise MethodFailed("session %s with %s is already being offered"
                                   % (ctx.sid, ctx.target.full()))
        try:
            proxies = await self.proxyDirectory.streamhosts(JID(ctx.initiator.host))
            hosts = (direct + proxies)[:self.maxCandidates]
            if not hosts:
                problems = self.proxyDirectory.problems
                raise MethodFailed(
                    "no streamhost to offer: no direct address (listening on %s) "
                    "and no proxy%s" % (
                        self.direct.describeListening(),
                        " (%s)" % "; ".join(problems.values()) if problems else ""))
            iq = makeIQ("set", ctx.target)
            iq.addChild(Query(ctx.sid, hosts, MODE_TCP).toElement())
            answerTimeout = self.candidateTimeout * len(hosts) + self.requestTimeout
            try:
                answer = await self._ask(iq, answerTimeout, "%s (streamhost offer)"
                                         % ctx.target.full())
            except MethodFailed as e:
                raise MethodFailed(e.reason + self._offerNotes(hosts, direct, pending,
                                                               evictedBefore),
                                   condition=e.condition)
            try:
                used = StreamHostUsed.fromElement(queryOf(answer, ns.NS_S5B)).jid
            except MalformedS5B as e:
                raise MethodFailed("%s answered the streamhost offer with junk: %s"
                                   % (ctx.target.full(), e))
            if pending is not None and used == ctx.initiator:
                stream = pending.take()
                if stream is None:
                    raise MethodFailed(
                        "%s says it connected to our streamhost, but no SOCKS5 "
                        "connection for this session is up%s" % (
                            ctx.target.full(), self._evictionNote(evictedBefore)))
                stream.bind(ctx, hosts[0], relayed=False)
            else:
                proxy = next((h for h in proxies if h.jid == used and h in hosts), None)
                if proxy is None:
                    raise MethodFailed("%s used streamhost %s, which we did not offer"
                                       % (ctx.target.full(), used.full()))
                stream = await self._joinProxy(ctx, proxy, address)
        except BaseException:
            if stream is not None:
                stream.abortConnection()
            raise
        finally:
            if pending is not None:
                self.direct.forget(address, keep=stream)
        return stream

    def _offerNotes(self, hosts: List[StreamHost], direct: List[StreamHost],
                    pending: Any, evictedBefore: int) -> str:
        """
        What we know ourselves when the target used none of our streamhosts:
        what we offered and what our direct streamhost saw.  (The target's
        reasons stay with the target: see the module docstring.)
        """
        notes = "; we offered %s" % ", ".join(h.describe() for h in hosts)
        if pending is not None and any(h in hosts for h in direct):
            if pending.arrived:
                notes += "; %d SOCKS5 connection%s for this session reached our " \
                    "direct streamhost" % (pending.arrived, "" if pending.arrived == 1 else "s")
            else:
                notes += "; no SOCKS5 connection for this session reached our " \
                    "direct streamhost"
            notes += self._evictionNote(evictedBefore)
        return notes

    def _evictionNote(self, evictedBefore: int) -> str:
        evicted = self.direct.factory.evicted - evictedBefore
        if evicted <= 0:
            return ""
        return ("; meanwhile our direct streamhost closed %d SOCKS5 handshake%s to make "
                "room, all %d slots ([s5b] max_handshakes) being in use"
                % (evicted, "" if evicted == 1 else "s", self.direct.factory.maxHandshakes))

    async def _joinProxy(self, ctx: StreamContext, proxy: StreamHost, address: str
                         ) -> S5BStream:
        try:
            stream = await connectStreamhost(self.reactor, proxy.host, proxy.port,
                                             address, self.candidateTimeout)
        except CandidateFailed as e:
            raise MethodFailed("cannot join proxy %s: %s" % (proxy.describe(), e.reason))
        stream.bind(ctx, proxy, relayed=True)
        try:
            iq = makeIQ("set", proxy.jid)
            iq.addChild(Activate(ctx.sid, ctx.target).toElement())
            await self._ask(iq, self.requestTimeout, "proxy %s (activate)" % proxy.jid.full())
        except BaseException:
            stream.abortConnection()
            raise
        return stream

    # -- target ----------------------------------------------------------------------------

    def expect(self, ctx: StreamContext) -> "defer.Deferred[S5BStream]":
        key = (ctx.initiator.full(), ctx.sid)
        if key in self._expected:
            return defer.fail(MethodFailed("already waiting for %s to offer %s"
                                           % (ctx.initiator.full(), ctx.sid)))
        expectation = _Expectation(self, ctx, key)
        self._expected[key] = expectation
        return expectation.deferred

    def _onQuery(self, iq: domish.Element) -> object:
        """A streamhost offer (through the IQ boundary); answered once one works."""
        sender = parseJID(iq.getAttribute("from"))
        query = queryOf(iq, ns.NS_S5B)
        sid = query.getAttribute("sid")
        if not sid:
            raise stanzaError("bad-request", type="modify")
        expectation = self._expected.get((sender.full() if sender else "", sid))
        if expectation is None or expectation.started:
            log.info("s5b: refused a streamhost offer for {sid} from {sender}: not announced",
                     sid=sid, sender=iq.getAttribute("from"))
            raise stanzaError("not-acceptable", type="modify")
        del self._expected[expectation.key]
        try:
            offer = Query.fromElement(query)
        except MalformedS5B as e:
            self._answer(iq, stanzaError("bad-request", type="modify"))
            expectation.stop(MethodFailed("%s sent a malformed streamhost offer: %s"
                                          % (sender.full(), e)))
            return LATER
        if offer.mode != MODE_TCP:
            self._answer(iq, stanzaError("not-acceptable", type="modify"))
            expectation.stop(MethodFailed("%s offered mode %s; only tcp is supported"
                                          % (sender.full(), offer.mode)))
            return LATER
        expectation.start(iq, offer)
        return LATER

    def _answer(self, iq: domish.Element, answer: Any) -> None:
        """
        Send a result element or a StanzaError answering ``iq`` (through
        the IQ boundary's :meth:`replyTo`); never raise.  Errors carry their
        condition only: whatever we know about why is for the local reason,
        not for the peer (see the module docstring).
        """
        if isinstance(answer, StanzaError):
            answer = stanzaError(answer.condition, type=answer.type)
        self.replyTo(iq, answer)

    async def _tryStreamhosts(self, ctx: StreamContext, iq: domish.Element, offer: Query
                              ) -> S5BStream:
        address = dstAddr(ctx.sid, ctx.initiator, ctx.target)
        failures: List[str] = []
        candidates = offer.streamhosts[:self.maxCandidates]
        stream: Optional[S5BStream] = None
        try:
            for host in candidates:
                try:
                    stream = await self._reach(host, address)
                except CandidateFailed as e:
                    failures.append("%s: %s" % (host.describe(), e.reason))
                    continue
                stream.bind(ctx, host, relayed=host.jid != ctx.initiator)
                break
            if stream is None:
                skipped = len(offer.streamhosts) - len(candidates)
                if skipped:
                    failures.append("%d more not tried" % skipped)
                reason = "no streamhost of %s worked: %s" % (
                    ctx.initiator.full(), "; ".join(failures))
                self._answer(iq, stanzaError("item-not-found", type="cancel"))
                raise MethodFailed(reason, condition="item-not-found")
            answer = resultFor(iq)
            answer.addChild(StreamHostUsed(stream.streamhost.jid, ctx.sid).toElement())
            self.send(answer)
            if stream.streamhost.jid != ctx.initiator:
                await self._activationGrace(stream)
        except defer.CancelledError:
            if stream is None:
                self._answer(iq, stanzaError("item-not-found", type="cancel"))
            if stream is not None:
                stream.abortConnection()
            raise
        except MethodFailed:
            raise
        except Exception as e:
            if stream is not None:
                stream.abortConnection()
            raise MethodFailed("cannot answer %s: %s" % (ctx.initiator.full(), e))
        return stream

    async def _reach(self, host: StreamHost, address: str) -> S5BStream:
        """
        One candidate, within ``candidateTimeout``: resolve its host, check
        every address against ``[s5b] connect`` (unless it is exactly a
        proxy of ours), then try the addresses in turn.  CandidateFailed
        says why not, for the local reason only.
        """
        if self.proxyDirectory.knows(host):
            return await connectStreamhost(self.reactor, host.host, host.port, address,
                                           self.candidateTimeout)
        deadline = self.reactor.seconds() + self.candidateTimeout
        addresses = await resolveHost(self.reactor, host.host, self.candidateTimeout)
        literal = isAddressLiteral(host.host)
        for ip in addresses:
            refused = self.connectPolicy.check(ip)
            if refused is not None:
                raise CandidateFailed(refused if literal else "%s resolves to %s; %s"
                                      % (host.host, ", ".join(addresses), refused))
        problems: List[str] = []
        for ip in addresses:
            # Milliseconds are enough, and "timed out after 5s" reads better
            # than 4.99997s in a reason.
            remaining = round(deadline - self.reactor.seconds(), 3)
            if remaining <= 0:
                problems.append("%s: not tried, no time left" % ip)
                continue
            try:
                return await connectStreamhost(self.reactor, ip, host.port, address,
                                               remaining)
            except CandidateFailed as e:
                problems.append(e.reason if literal else "%s: %s" % (ip, e.reason))
        raise CandidateFailed("; ".join(problems))

    def _activationGrace(self, stream: S5BStream) -> defer.Deferred:
        """Fire on the initiator's first byte, or after ``proxyGrace``."""
        d: defer.Deferred = defer.Deferred(lambda _: cleanup())
        call = None

        def cleanup() -> None:
            stream.onFirstData = None
            if call is not None and call.active():
                call.cancel()

        def fire() -> None:
            cleanup()
            if not d.called:
                d.callback(None)

        def lost(reason: failure.Failure) -> None:
            cleanup()
            if not d.called:
                d.errback(MethodFailed("proxy %s closed the connection before activation: %s"
                                       % (stream.streamhost.describe(),
                                          reason.getErrorMessage())))

        if stream.bytesReceived or self.proxyGrace <= 0:
            return defer.succeed(None)
        call = self.reactor.callLater(self.proxyGrace, fire)
        stream.onFirstData = fire
        stream.onLost = lost
        return d



class _Expectation:
    """What ``expect`` waits for: one offer of ``ctx.sid`` by its initiator."""

    def __init__(self, method: S5BMethod, ctx: StreamContext, key: Tuple[str, str]):
        self.method = method
        self.ctx = ctx
        self.key = key
        self.started = False
        self.task: Optional[defer.Deferred] = None
        self.deferred: defer.Deferred = defer.Deferred(self._cancel)

    def start(self, iq: domish.Element, offer: Query) -> None:
        self.started = True
        self.task = defer.Deferred.fromCoroutine(
            self.method._tryStreamhosts(self.ctx, iq, offer))
        self.task.addBoth(self._deliver)

    def _deliver(self, result: Any) -> None:
        self.task = None
        if self.deferred.called:
            if isinstance(result, S5BStream):
                result.abortConnection()
            return None
        if isinstance(result, failure.Failure):
            self.deferred.errback(result)
        else:
            self.deferred.callback(result)
        return None

    def stop(self, exc: Exception) -> None:
        if self.method._expected.get(self.key) is self:
            del self.method._expected[self.key]
        if not self.deferred.called:
            self.deferred.errback(exc)

    def _cancel(self, d: defer.Deferred) -> None:
        if self.method._expected.get(self.key) is self:
            del self.method._expected[self.key]
        if self.task is not None:
            self.task.cancel()


def fromConfig(reactor: Any, config: Any) -> S5BMethod:
    """
    The method as ``[s5b]`` configures it (``bytestreamd.daemon`` calls
    this): ``s5b_listen``, ``s5b_advertise``, ``s5b_proxy`` (``None``:
    discover, ``""``: none, else a proxy JID), ``s5b_connect`` (the
    ``[s5b] connect`` rules), ``s5b_max_handshakes`` (``None``: follow
    ``max_links``, see :func:`defaultMaxHandshakes`).
    """
    if config.s5b_proxy is None:
        proxies: Optional[List[JID]] = None
    elif config.s5b_proxy == "":
        proxies = []
    else:
        proxies = [JID(config.s5b_proxy)]
    maxHandshakes = config.s5b_max_handshakes or defaultMaxHandshakes(config.max_links)
    return S5BMethod(reactor, listen=list(config.s5b_listen),
                     advertise=list(config.s5b_advertise), proxies=proxies,
                     connect=ConnectPolicy(config.s5b_connect),
                     maxHandshakes=maxHandshakes)
