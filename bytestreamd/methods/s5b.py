"""
XEP-0065 SOCKS5 Bytestreams (TCP mode) as an :class:`IStreamMethod`.

Roles, as the XEP assigns them (the initiator is the XEP's "requester"):

* initiator -- offers streamhosts: its own direct SOCKS5 server
  (:class:`S5BServerFactory`, addresses from ``advertise`` or the
  listening ports) first, then proxies (configured, or discovered on the
  server with disco).  The target answers with the one it connected to:
  a direct one means the incoming SOCKS5 connection with the right
  DST.ADDR *is* the stream; a proxy means we connect to it too and ask it
  to ``activate`` the session.
* target -- tries the offered streamhosts in order, ``candidateTimeout``
  each (connect + SOCKS5), answers ``streamhost-used`` for the first that
  works, or ``item-not-found`` naming every candidate and why it failed.

The established stream (:class:`S5BStream`) is the TCP transport itself
behind a thin facade: writes, producers and pause/resume go straight to
it, so the data path costs nothing over plain TCP.

Proxies and early bytes
    Since XEP-0065 1.8 a proxy may drop bytes a party sends before the
    initiator's ``activate``, and the target is never told when that
    happened.  So a target that used a proxy reports the stream only when
    the first byte arrives from the initiator (which writes only after
    activation) or ``proxyGrace`` seconds after answering, whichever is
    first; bytes the local side writes meanwhile wait in the link layer,
    where they belong.

Everything a peer can make us hold is bounded: handshakes by time
(``handshakeTimeout``) and size (the SOCKS5 machines), accepted-but-unused
direct connections per session (``MAX_DIRECT_CONNECTIONS``), streamhosts
tried per offer (``maxCandidates``), and data received before a protocol is
attached (the transport is paused beyond ``HOLD_LIMIT``).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer, error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco, iwokkel
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.errors import BytestreamBroken, MethodFailed, describeStanzaError, stanzaError
from bytestreamd.interfaces import IBytestream, IStreamMethod, StreamContext
from bytestreamd.methods import socks5
from bytestreamd.stanzas import Handler, RequestTimeout, errorFor, makeIQ, parseJID, resultFor
from bytestreamd.wire.s5b import (
    MODE_TCP,
    Activate,
    AddressAnswer,
    AddressRequest,
    MalformedS5B,
    Query,
    StreamHost,
    StreamHostUsed,
    dstAddr,
)

log = Logger()

QUERY_SET = "/iq[@type='set']/query[@xmlns='%s']" % ns.NS_S5B

#: Bytes an unattached or paused stream holds before pausing its socket.
HOLD_LIMIT = 65536
#: Accepted SOCKS5 connections kept per pending session until the target
#: says which one it used (a target may try several of our addresses).
MAX_DIRECT_CONNECTIONS = 4
#: disco#items entries of our server examined when looking for proxies.
MAX_PROXY_ITEMS = 32


class CandidateFailed(Exception):
    """One streamhost could not be used; ``reason`` says why, for people."""

    def __init__(self, reason: str):
        Exception.__init__(self, reason)
        self.reason = reason


# -- the established stream -------------------------------------------------


@implementer(IBytestream)
class S5BStream:
    """
    An established SOCKS5 bytestream: the TCP transport behind a facade.

    ``loseConnection`` is a half-close (our EOF; we keep reading).  The
    peer's EOF reaches a protocol providing ``IHalfCloseableProtocol`` as
    ``readConnectionLost``, and ``connectionLost(ConnectionDone)`` follows
    once both directions are closed; any other protocol gets
    ``connectionLost(ConnectionDone)`` after the last byte (we close our side
    then).  A connection error is ``BytestreamBroken``.  Received bytes are
    held (not delivered) until :meth:`attachProtocol` and while paused.
    """

    method = "s5b"

    def __init__(self, transport: Any, sid: Optional[str] = None,
                 peerJID: Optional[JID] = None, streamhost: Optional[StreamHost] = None):
        self.transport = transport
        self.sid = sid
        self.peerJID = peerJID
        self.streamhost = streamhost
        self.protocol: Any = None
        self.bytesSent = 0
        self.bytesReceived = 0
        self._held: List[bytes] = []
        self._heldSize = 0
        self._paused = False  # by our consumer
        self._socketPaused = False
        self._readClosed = False
        self._eofPending = False
        self._writeClosed = False
        self._aborted = False
        self._lostReason: Optional[failure.Failure] = None
        self._finished = False
        #: Called (no arguments) on the first byte, and on loss, before a
        #: protocol is attached: how an owner waits for or watches a stream.
        self.onFirstData: Optional[Callable[[], None]] = None
        self.onLost: Optional[Callable[[failure.Failure], None]] = None

    @property
    def connected(self) -> bool:
        return self._lostReason is None and not self._finished

    # -- IBytestream / ITransport / IConsumer --------------------------------

    def attachProtocol(self, protocol: Any) -> None:
        if self.protocol is not None:
            raise RuntimeError("a protocol is already attached")
        self.onFirstData = self.onLost = None
        self.protocol = protocol
        protocol.makeConnection(self)
        self._flush()

    def write(self, data: bytes) -> None:
        if self._writeClosed or self._lostReason is not None:
            return
        self.bytesSent += len(data)
        self.transport.write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        if self._writeClosed or self._lostReason is not None:
            return
        data = list(data)
        self.bytesSent += sum(len(d) for d in data)
        self.transport.writeSequence(data)

    def loseConnection(self) -> None:
        if self._writeClosed:
            return
        self._writeClosed = True
        if self._readClosed or not hasattr(self.transport, "loseWriteConnection"):
            self.transport.loseConnection()
        else:
            self.transport.loseWriteConnection()

    def abortConnection(self) -> None:
        self._aborted = True
        self._writeClosed = True
        self._held = []
        self._heldSize = 0
        self.transport.abortConnection()

    def getPeer(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    # -- IPushProducer --------------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True
        self._pauseSocket()

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    # -- from the TCP protocol -------------------------------------------------

    def _dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        if self.protocol is not None and not self._paused and not self._held:
            self.protocol.dataReceived(data)
            return
        if self._aborted:
            return
        self._held.append(data)
        self._heldSize += len(data)
        if self._heldSize >= HOLD_LIMIT or self.protocol is not None:
            self._pauseSocket()
        if self.protocol is None and self.onFirstData is not None:
            callback, self.onFirstData = self.onFirstData, None
            callback()

    def _readLost(self) -> None:
        if self._readClosed:
            return  # a resumed half-closed socket reports EOF again
        self._readClosed = True
        self._eofPending = True
        self._flush()

    def _connectionLost(self, reason: failure.Failure) -> None:
        # A Twisted TCP transport reports ConnectionDone only when we closed
        # it (the peer's EOF comes as readConnectionLost: we are half-closeable).
        if (self._aborted or reason.check(error.ConnectionDone)
                or (self._readClosed and self._writeClosed)):
            reason = failure.Failure(error.ConnectionDone())
        else:
            where = " via %s" % self.streamhost.describe() if self.streamhost else ""
            reason = failure.Failure(BytestreamBroken(
                "SOCKS5 connection%s lost: %s" % (where, reason.getErrorMessage())))
        self._lostReason = reason
        if self.protocol is None and self.onLost is not None:
            callback, self.onLost = self.onLost, None
            callback(reason)
        self._flush()

    # -- delivery --------------------------------------------------------------

    def _pauseSocket(self) -> None:
        if not self._socketPaused and self._lostReason is None:
            self._socketPaused = True
            self.transport.pauseProducing()

    def _flush(self) -> None:
        """Deliver what is held, then EOF, then the loss, as far as allowed."""
        protocol = self.protocol
        if protocol is None or self._finished:
            return
        while self._held and not self._paused:
            data = self._held.pop(0)
            self._heldSize -= len(data)
            protocol.dataReceived(data)
            if self._finished:
                return
        if self._held or self._paused:
            return
        if self._eofPending:
            self._eofPending = False
            self._deliverEOF()
        if self._lostReason is not None and not self._finished:
            self._finished = True
            protocol.connectionLost(self._lostReason)
            return
        if self._socketPaused and not self._readClosed and not self._paused:
            self._socketPaused = False
            self.transport.resumeProducing()

    def _deliverEOF(self) -> None:
        if self._lostReason is not None:
            return  # connectionLost says it all
        halfCloseable = IHalfCloseableProtocol(self.protocol, None)
        if halfCloseable is not None:
            halfCloseable.readConnectionLost()
            if self._writeClosed:
                self.transport.loseConnection()
        else:
            self._writeClosed = True
            self.transport.loseConnection()


# -- the TCP protocol: a SOCKS5 machine, then the stream ------------------------


@implementer(IHalfCloseableProtocol)
class SOCKS5Protocol(Protocol):
    """
    Runs a :mod:`~bytestreamd.methods.socks5` machine on a TCP connection
    and, once it is established, hands every byte to an :class:`S5BStream`.
    ``owner`` gets ``handshakeStarted(p)``, ``connectRequested(p, request)``
    (server: returns the machine's ``accept()``/``refuse()`` outputs),
    ``handshakeDone(p, stream)`` and ``handshakeFailed(p, reason)`` (at most
    one of the last two).
    """

    def __init__(self, machine: Any, owner: Any):
        self.machine = machine
        self.owner = owner
        self.stream: Optional[S5BStream] = None
        self._ended = False

    def connectionMade(self) -> None:
        self.owner.handshakeStarted(self)
        if isinstance(self.machine, socks5.ClientHandshake):
            self._handle(self.machine.start())

    def dataReceived(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream._dataReceived(data)
        elif self.machine is not None:
            self._handle(self.machine.feed(data))

    def _handle(self, outputs: List[socks5.Output]) -> None:
        for out in outputs:
            if isinstance(out, socks5.Send):
                self.transport.write(out.data)
            elif isinstance(out, socks5.ConnectRequest):
                self._handle(self.owner.connectRequested(self, out))
            elif isinstance(out, socks5.Established):
                self.machine = None
                self.stream = S5BStream(self.transport)
                if out.data:
                    self.stream._dataReceived(out.data)
                self._end()
                self.owner.handshakeDone(self, self.stream)
            elif isinstance(out, socks5.Failed):
                self.machine = None
                self.transport.loseConnection()
                self.fail(out.reason)

    def fail(self, reason: str) -> None:
        if not self._end():
            self.owner.handshakeFailed(self, reason)

    def _end(self) -> bool:
        ended, self._ended = self._ended, True
        return ended

    def readConnectionLost(self) -> None:
        if self.stream is not None:
            self.stream._readLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: failure.Failure) -> None:  # type: ignore[override]
        if self.stream is not None:
            self.stream._connectionLost(reason)
        else:
            self.machine = None
            self.fail("connection closed during the SOCKS5 handshake (%s)"
                      % reason.getErrorMessage())


# -- direct streamhost (server) ----------------------------------------------------


class S5BServerFactory(Factory):
    """
    Our direct streamhost.  ``lookup(dstAddr)`` returns a callable taking
    the accepted :class:`S5BStream`, or ``None`` to refuse: only a
    connection for a session we are offering is answered with success.
    Junk, wrong hashes and clients slower than ``handshakeTimeout`` are
    dropped; at most ``maxHandshakes`` handshakes run at once.
    """

    def __init__(self, clock: Any, lookup: Callable[[str], Optional[Callable[[S5BStream], None]]],
                 handshakeTimeout: float = 10.0, maxHandshakes: int = 64,
                 maxEarlyData: int = HOLD_LIMIT):
        self.clock = clock
        self.lookup = lookup
        self.handshakeTimeout = handshakeTimeout
        self.maxHandshakes = maxHandshakes
        self.maxEarlyData = maxEarlyData
        self._timers: Dict[SOCKS5Protocol, Any] = {}
        self._acceptors: Dict[SOCKS5Protocol, Callable[[S5BStream], None]] = {}

    def buildProtocol(self, addr: Any) -> Optional[SOCKS5Protocol]:
        if len(self._timers) >= self.maxHandshakes:
            log.warn("s5b: refusing SOCKS5 connection from {addr}: {n} handshakes "
                     "already in progress", addr=addr, n=len(self._timers))
            return None
        return SOCKS5Protocol(socks5.ServerHandshake(self.maxEarlyData), self)

    @property
    def handshaking(self) -> int:
        return len(self._timers)

    def handshakeStarted(self, proto: SOCKS5Protocol) -> None:
        self._timers[proto] = self.clock.callLater(self.handshakeTimeout, self._timedOut, proto)

    def connectRequested(self, proto: SOCKS5Protocol, request: socks5.ConnectRequest
                         ) -> List[socks5.Output]:
        acceptor = self.lookup(request.address)
        if acceptor is None:
            return proto.machine.refuse(
                socks5.HOST_UNREACHABLE,
                "no bytestream is waiting for DST.ADDR %s" % request.address)
        self._acceptors[proto] = acceptor
        return proto.machine.accept()

    def handshakeDone(self, proto: SOCKS5Protocol, stream: S5BStream) -> None:
        self._stopTimer(proto)
        acceptor = self._acceptors.pop(proto)
        acceptor(stream)

    def handshakeFailed(self, proto: SOCKS5Protocol, reason: str) -> None:
        self._stopTimer(proto)
        self._acceptors.pop(proto, None)
        log.info("s5b: dropped SOCKS5 client {peer}: {reason}",
                 peer=_peerText(proto), reason=reason)

    def _stopTimer(self, proto: SOCKS5Protocol) -> None:
        call = self._timers.pop(proto, None)
        if call is not None and call.active():
            call.cancel()

    def _timedOut(self, proto: SOCKS5Protocol) -> None:
        self._timers.pop(proto, None)
        proto.machine = None
        proto.transport.abortConnection()
        proto.fail("SOCKS5 handshake not done within %gs" % self.handshakeTimeout)


def _peerText(proto: Protocol) -> str:
    try:
        peer = proto.transport.getPeer()
        return "%s:%s" % (peer.host, peer.port)
    except Exception:
        return "?"


# -- connecting to a streamhost (client) ------------------------------------------


class _StreamhostConnector(ClientFactory):
    """One attempt to reach one streamhost; see :func:`connectStreamhost`."""

    def __init__(self, clock: Any, address: str, timeout: float):
        self.clock = clock
        self.address = address
        self.timeout = timeout
        self.deferred: defer.Deferred = defer.Deferred(self._cancel)
        self.connector: Any = None
        self.proto: Optional[SOCKS5Protocol] = None
        self.done = False
        self.timer = clock.callLater(timeout, self._timedOut)

    def buildProtocol(self, addr: Any) -> SOCKS5Protocol:
        self.proto = SOCKS5Protocol(socks5.ClientHandshake(self.address), self)
        return self.proto

    def clientConnectionFailed(self, connector: Any, reason: failure.Failure) -> None:
        if reason.check(error.ConnectionRefusedError):
            words = "connection refused"
        elif reason.check(error.TimeoutError):
            words = "timed out connecting after %gs" % self.timeout
        elif reason.check(error.DNSLookupError):
            words = "cannot resolve the host name"
        else:
            words = reason.getErrorMessage()
        self._finish(failure.Failure(CandidateFailed(words)))

    def handshakeStarted(self, proto: SOCKS5Protocol) -> None:
        pass

    def handshakeDone(self, proto: SOCKS5Protocol, stream: S5BStream) -> None:
        if self.done:
            stream.abortConnection()
            return
        self._finish(stream)

    def handshakeFailed(self, proto: SOCKS5Protocol, reason: str) -> None:
        self._finish(failure.Failure(CandidateFailed(reason)))

    def _timedOut(self) -> None:
        stage = "connecting" if self.proto is None else "the SOCKS5 handshake"
        self._abort()
        self._finish(failure.Failure(CandidateFailed(
            "timed out after %gs (during %s)" % (self.timeout, stage))))

    def _cancel(self, d: defer.Deferred) -> None:
        self._abort()
        self.done = True
        if self.timer.active():
            self.timer.cancel()

    def _abort(self) -> None:
        if self.proto is None:
            if self.connector is not None:
                try:
                    self.connector.stopConnecting()
                except error.NotConnectingError:
                    pass
        else:
            self.proto.machine = None
            self.proto.transport.abortConnection()

    def _finish(self, result: Any) -> None:
        if self.done:
            return
        self.done = True
        if self.timer.active():
            self.timer.cancel()
        if isinstance(result, failure.Failure):
            self.deferred.errback(result)
        else:
            self.deferred.callback(result)


def connectStreamhost(reactor: Any, host: str, port: int, address: str,
                      timeout: float) -> "defer.Deferred[S5BStream]":
    """
    Connect to a streamhost and CONNECT to ``address`` (the DST.ADDR hash).
    Fires with the unattached :class:`S5BStream`; fails with
    :class:`CandidateFailed` (refused, timed out -- ``timeout`` bounds the
    connect and the handshake together --, SOCKS5 error).  Cancelling
    aborts the attempt.
    """
    attempt = _StreamhostConnector(reactor, address, timeout)
    attempt.connector = reactor.connectTCP(host, port, attempt, timeout=timeout)
    return attempt.deferred


# -- the method ---------------------------------------------------------------------


class _DirectPending:
    """An initiation waiting for the target to reach our direct streamhost."""

    def __init__(self) -> None:
        self.streams: List[S5BStream] = []

    def acceptor(self) -> Optional[Callable[[S5BStream], None]]:
        if len(self.streams) >= MAX_DIRECT_CONNECTIONS:
            return None
        return self.add

    def add(self, stream: S5BStream) -> None:
        self.streams.append(stream)
        stream.onLost = lambda reason: self._lost(stream)

    def _lost(self, stream: S5BStream) -> None:
        if stream in self.streams:
            self.streams.remove(stream)

    def take(self) -> Optional[S5BStream]:
        """The latest connection still up; the others are closed."""
        live = [s for s in self.streams if s.connected]
        chosen = live[-1] if live else None
        self.close(keep=chosen)
        return chosen

    def close(self, keep: Optional[S5BStream] = None) -> None:
        streams, self.streams = self.streams, []
        for stream in streams:
            if stream is not keep:
                stream.onLost = None
                stream.abortConnection()


@implementer(IStreamMethod, iwokkel.IDisco)
class S5BMethod(Handler):
    """
    The XEP-0065 handler and stream method.

    ``reactor`` provides IReactorTCP and IReactorTime.  ``listen``:
    ``(interface, port)`` pairs for the direct streamhost
    (:meth:`startListening`; ports bound elsewhere can be given to
    :meth:`addListeningPort`).  ``advertise``: ``(host, port or None)``
    offered as direct candidates instead of the listening addresses (None:
    the first listening port).  ``proxies``: ``None`` discovers proxies on
    our server (disco#items, identity proxy/bytestreams) once per session,
    ``[]`` uses none, else a list of proxy JIDs.  ``candidateTimeout``
    bounds each streamhost attempt (connect + SOCKS5), ``handshakeTimeout``
    an incoming SOCKS5 handshake, ``requestTimeout`` each disco/address/
    activate request; ``maxCandidates`` is how many streamhosts of an offer
    we try; ``proxyGrace`` see the module docstring.
    ``interfaceAddresses`` returns this host's addresses (for wildcard
    listening addresses; injectable for tests).
    """

    name = "s5b"
    namespace = ns.NS_S5B

    def __init__(self, reactor: Any, listen: Sequence[Tuple[str, int]] = (),
                 advertise: Sequence[Tuple[str, Optional[int]]] = (),
                 proxies: Optional[Sequence[JID]] = None,
                 candidateTimeout: float = 5.0, handshakeTimeout: float = 10.0,
                 requestTimeout: float = 10.0, proxyGrace: float = 2.0,
                 maxCandidates: int = 8,
                 interfaceAddresses: Optional[Callable[[], List[str]]] = None):
        Handler.__init__(self)
        self.reactor = reactor
        self.listen = list(listen)
        self.advertise = list(advertise)
        self.proxies = None if proxies is None else list(proxies)
        self.candidateTimeout = candidateTimeout
        self.requestTimeout = requestTimeout
        self.proxyGrace = proxyGrace
        self.maxCandidates = maxCandidates
        self.interfaceAddresses = interfaceAddresses or hostAddresses
        self.serverFactory = S5BServerFactory(reactor, self._lookupDirect,
                                              handshakeTimeout=handshakeTimeout)
        self._ports: List[Any] = []
        self._listenTried = False
        self._direct: Dict[str, _DirectPending] = {}
        self._expected: Dict[Tuple[str, str], "_Expectation"] = {}
        self._proxyCache: Optional[List[StreamHost]] = None
        self._discovery: Optional[defer.Deferred] = None
        self._discoveryWaiters: List[defer.Deferred] = []

    # -- listening ---------------------------------------------------------------

    def startListening(self) -> List[Any]:
        """Listen on every ``listen`` address; raises CannotListenError."""
        self._listenTried = True
        for interface, port in self.listen:
            self.addListeningPort(
                self.reactor.listenTCP(port, self.serverFactory, interface=interface))
        return list(self._ports)

    def addListeningPort(self, port: Any) -> None:
        """A port listening with :attr:`serverFactory`, bound by someone else."""
        self._ports.append(port)
        address = port.getHost()
        log.info("s5b: direct streamhost listening on {host}:{port}",
                 host=address.host, port=address.port)

    def stopListening(self) -> defer.Deferred:
        ports, self._ports = self._ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])

    def directCandidates(self, jid: JID) -> List[StreamHost]:
        """Our direct streamhosts, as offered to a target."""
        bound = [p.getHost() for p in self._ports]
        pairs: List[Tuple[str, int]] = []
        if self.advertise:
            for host, port in self.advertise:
                if port is None:
                    if not bound:
                        continue
                    port = bound[0].port
                pairs.append((host, port))
        else:
            for address in bound:
                if address.host in ("0.0.0.0", "::", ""):
                    # "::" is dual-stack on the systems we run on.
                    for host in self.interfaceAddresses():
                        if ":" in host and address.host != "::":
                            continue
                        pairs.append((host, address.port))
                else:
                    pairs.append((address.host, address.port))
        seen = set()
        hosts = []
        for pair in pairs:
            if pair not in seen:
                seen.add(pair)
                hosts.append(StreamHost(jid, pair[0], pair[1]))
        return hosts

    def _lookupDirect(self, address: str) -> Optional[Callable[[S5BStream], None]]:
        pending = self._direct.get(address)
        return pending.acceptor() if pending is not None else None

    # -- XMPPHandler ---------------------------------------------------------------

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver(QUERY_SET, self._onQuery)
        if self.listen and not self._listenTried:
            try:
                self.startListening()
            except Exception:
                log.failure("s5b: cannot listen for direct SOCKS5 connections; "
                            "offering proxies only")

    def connectionLost(self, reason: Any) -> None:
        Handler.connectionLost(self, reason)
        self._proxyCache = None
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

    # -- initiator ---------------------------------------------------------------------

    def initiate(self, ctx: StreamContext) -> "defer.Deferred[S5BStream]":
        return defer.Deferred.fromCoroutine(self._initiate(ctx))

    async def _initiate(self, ctx: StreamContext) -> S5BStream:
        address = dstAddr(ctx.sid, ctx.initiator, ctx.target)
        direct = self.directCandidates(ctx.initiator)
        pending: Optional[_DirectPending] = None
        stream: Optional[S5BStream] = None
        if direct:
            if address in self._direct:
                raise MethodFailed("session %s with %s is already being offered"
                                   % (ctx.sid, ctx.target.full()))
            pending = self._direct[address] = _DirectPending()
        try:
            proxies = await self._proxyStreamhosts()
            hosts = (direct + proxies)[:self.maxCandidates]
            if not hosts:
                raise MethodFailed(
                    "no streamhost to offer: no direct address (listening: %s) and no proxy"
                    % (", ".join("%s:%d" % (a.host, a.port) for a in
                                 (p.getHost() for p in self._ports)) or "nothing"))
            iq = makeIQ("set", ctx.target)
            iq.addChild(Query(ctx.sid, hosts, MODE_TCP).toElement())
            answerTimeout = self.candidateTimeout * len(hosts) + self.requestTimeout
            answer = await self._ask(iq, answerTimeout, "%s (streamhost offer)"
                                     % ctx.target.full())
            try:
                used = StreamHostUsed.fromElement(_s5bQuery(answer)).jid
            except MalformedS5B as e:
                raise MethodFailed("%s answered the streamhost offer with junk: %s"
                                   % (ctx.target.full(), e))
            if pending is not None and used == ctx.initiator:
                stream = pending.take()
                if stream is None:
                    raise MethodFailed(
                        "%s says it connected to our streamhost, but no SOCKS5 "
                        "connection for this session is up" % ctx.target.full())
                stream.streamhost = next(h for h in hosts if h.jid == ctx.initiator)
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
                del self._direct[address]
                pending.close(keep=stream)
        stream.sid = ctx.sid
        stream.peerJID = ctx.target
        return stream

    async def _joinProxy(self, ctx: StreamContext, proxy: StreamHost, address: str
                         ) -> S5BStream:
        try:
            stream = await connectStreamhost(self.reactor, proxy.host, proxy.port,
                                             address, self.candidateTimeout)
        except CandidateFailed as e:
            raise MethodFailed("cannot join proxy %s: %s" % (proxy.describe(), e.reason))
        stream.streamhost = proxy
        try:
            iq = makeIQ("set", proxy.jid)
            iq.addChild(Activate(ctx.sid, ctx.target).toElement())
            await self._ask(iq, self.requestTimeout, "proxy %s (activate)" % proxy.jid.full())
        except BaseException:
            stream.abortConnection()
            raise
        return stream

    async def _ask(self, iq: domish.Element, timeout: float, who: str) -> domish.Element:
        """A request whose every failure but a cancel is a MethodFailed."""
        try:
            return await self.request(iq, timeout)
        except StanzaError as e:
            raise MethodFailed("%s refused: %s" % (who, describeStanzaError(e)),
                               condition=e.condition)
        except RequestTimeout:
            raise MethodFailed("no answer from %s within %gs" % (who, timeout))
        except defer.CancelledError:
            raise
        except Exception as e:
            raise MethodFailed("no answer from %s: %s" % (who, str(e) or e.__class__.__name__))

    # -- proxies -----------------------------------------------------------------------

    def _proxyStreamhosts(self) -> "defer.Deferred[List[StreamHost]]":
        """Proxy streamhosts; discovered once per session, shared, never fails."""
        if self.proxies == []:
            return defer.succeed([])
        if self._proxyCache is not None:
            return defer.succeed(list(self._proxyCache))

        def cancel(waiter: defer.Deferred) -> None:
            if waiter in self._discoveryWaiters:
                self._discoveryWaiters.remove(waiter)

        waiter: defer.Deferred = defer.Deferred(cancel)
        self._discoveryWaiters.append(waiter)
        if self._discovery is None:
            self._discovery = defer.Deferred.fromCoroutine(self._discover())
            self._discovery.addBoth(self._discovered)
        return waiter

    def _discovered(self, result: Any) -> None:
        self._discovery = None
        if isinstance(result, failure.Failure):
            log.failure("s5b: proxy discovery failed", result)
            hosts: List[StreamHost] = []
        else:
            hosts = result
            if self.parent is not None and self.xmlstream is not None:
                self._proxyCache = list(hosts)
        waiters, self._discoveryWaiters = self._discoveryWaiters, []
        for waiter in waiters:
            waiter.callback(list(hosts))

    async def _discover(self) -> List[StreamHost]:
        if self.proxies is None:
            candidates = await self._findProxies()
        else:
            candidates = self.proxies
        answers = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._proxyAddress(jid)) for jid in candidates],
            consumeErrors=True)
        hosts: List[StreamHost] = []
        for ok, value in answers:
            if ok:
                hosts.extend(value)
        log.info("s5b: proxy streamhosts: {hosts}",
                 hosts=", ".join(h.describe() for h in hosts) or "none")
        return hosts

    async def _findProxies(self) -> List[JID]:
        domain = JID(self.ownJID.host)
        iq = makeIQ("get", domain)
        iq.addElement((ns.NS_DISCO_ITEMS, "query"))
        try:
            result = await self._ask(iq, self.requestTimeout, "%s (disco#items)" % domain.full())
            items = disco.DiscoItems.fromElement(_child(result, ns.NS_DISCO_ITEMS))
        except Exception as e:
            log.info("s5b: cannot list the items of {domain}: {e}", domain=domain.full(), e=e)
            return []
        jids = [item.entity for item in items
                if getattr(item, "entity", None) is not None and not item.nodeIdentifier]
        answers = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._isProxy(jid)) for jid in jids[:MAX_PROXY_ITEMS]],
            consumeErrors=True)
        return [jid for jid, (ok, isProxy) in zip(jids, answers) if ok and isProxy]

    async def _isProxy(self, jid: JID) -> bool:
        iq = makeIQ("get", jid)
        iq.addElement((ns.NS_DISCO_INFO, "query"))
        try:
            result = await self._ask(iq, self.requestTimeout, "%s (disco#info)" % jid.full())
            info = disco.DiscoInfo.fromElement(_child(result, ns.NS_DISCO_INFO))
        except Exception:
            return False
        return ("proxy", "bytestreams") in info.identities

    async def _proxyAddress(self, jid: JID) -> List[StreamHost]:
        iq = makeIQ("get", jid)
        iq.addChild(AddressRequest().toElement())
        try:
            result = await self._ask(iq, self.requestTimeout, "proxy %s" % jid.full())
            hosts = AddressAnswer.fromElement(_s5bQuery(result)).streamhosts
        except (MethodFailed, MalformedS5B) as e:
            log.info("s5b: not using proxy {jid}: {e}", jid=jid.full(), e=e)
            return []
        return hosts

    # -- target ----------------------------------------------------------------------------

    def expect(self, ctx: StreamContext) -> "defer.Deferred[S5BStream]":
        key = (ctx.initiator.full(), ctx.sid)
        if key in self._expected:
            return defer.fail(MethodFailed("already waiting for %s to offer %s"
                                           % (ctx.initiator.full(), ctx.sid)))
        expectation = _Expectation(self, ctx, key)
        self._expected[key] = expectation
        return expectation.deferred

    def _onQuery(self, iq: domish.Element) -> None:
        iq.handled = True
        sender = parseJID(iq.getAttribute("from"))
        query = _s5bQuery(iq)
        sid = query.getAttribute("sid")
        if not sid:
            self._answer(iq, stanzaError("bad-request", "bytestreams query without sid",
                                         type="modify"))
            return
        expectation = self._expected.get((sender.full() if sender else "", sid))
        if expectation is None or expectation.started:
            log.info("s5b: refused a streamhost offer for {sid} from {sender}: not announced",
                     sid=sid, sender=iq.getAttribute("from"))
            self._answer(iq, stanzaError("not-acceptable", type="modify"))
            return
        del self._expected[expectation.key]
        try:
            offer = Query.fromElement(query)
        except MalformedS5B as e:
            self._answer(iq, stanzaError("bad-request", str(e), type="modify"))
            expectation.stop(MethodFailed("%s sent a malformed streamhost offer: %s"
                                          % (sender.full(), e)))
            return
        if offer.mode != MODE_TCP:
            self._answer(iq, stanzaError("not-acceptable", "only tcp mode is supported",
                                         type="modify"))
            expectation.stop(MethodFailed("%s offered mode %s; only tcp is supported"
                                          % (sender.full(), offer.mode)))
            return
        expectation.start(iq, offer)

    def _answer(self, iq: domish.Element, answer: Any) -> None:
        """Send a result element or a StanzaError answering ``iq``; never raise."""
        if isinstance(answer, StanzaError):
            answer = errorFor(iq, answer)
        try:
            self.send(answer)
        except Exception as e:
            log.info("s5b: cannot answer {id}: {e}", id=iq.getAttribute("id"), e=e)

    async def _tryStreamhosts(self, ctx: StreamContext, iq: domish.Element, offer: Query
                              ) -> S5BStream:
        address = dstAddr(ctx.sid, ctx.initiator, ctx.target)
        failures: List[str] = []
        candidates = offer.streamhosts[:self.maxCandidates]
        stream: Optional[S5BStream] = None
        try:
            for host in candidates:
                try:
                    stream = await connectStreamhost(self.reactor, host.host, host.port,
                                                     address, self.candidateTimeout)
                except CandidateFailed as e:
                    failures.append("%s: %s" % (host.describe(), e.reason))
                    continue
                stream.streamhost = host
                break
            if stream is None:
                skipped = len(offer.streamhosts) - len(candidates)
                if skipped:
                    failures.append("%d more not tried" % skipped)
                reason = "no streamhost of %s worked: %s" % (
                    ctx.initiator.full(), "; ".join(failures))
                self._answer(iq, stanzaError("item-not-found", reason, type="cancel"))
                raise MethodFailed(reason, condition="item-not-found")
            answer = resultFor(iq)
            answer.addChild(StreamHostUsed(stream.streamhost.jid, ctx.sid).toElement())
            self.send(answer)
            if stream.streamhost.jid != ctx.initiator:
                await self._activationGrace(stream)
        except defer.CancelledError:
            if stream is None:
                self._answer(iq, stanzaError("item-not-found", "cancelled", type="cancel"))
            if stream is not None:
                stream.abortConnection()
            raise
        except MethodFailed:
            raise
        except Exception as e:
            if stream is not None:
                stream.abortConnection()
            raise MethodFailed("cannot answer %s: %s" % (ctx.initiator.full(), e))
        stream.sid = ctx.sid
        stream.peerJID = ctx.initiator
        return stream

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


def _child(element: domish.Element, uri: str) -> domish.Element:
    for child in element.elements():
        if child.uri == uri and child.name == "query":
            return child
    raise MalformedS5B("answer from %s has no %s query"
                       % (element.getAttribute("from", "?"), uri))


def _s5bQuery(element: domish.Element) -> domish.Element:
    return _child(element, ns.NS_S5B)


# -- this host's addresses -------------------------------------------------------------


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def hostAddresses() -> List[str]:
    """
    This host's non-loopback, non-link-local addresses (IPv4 first): what
    a wildcard listening address means to a peer elsewhere.
    """
    found: List[str] = []
    try:
        import fcntl
        for _index, name in socket.if_nameindex():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    raw = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                      struct.pack("256s", name.encode()[:15]))
                except OSError:
                    continue
                found.append(socket.inet_ntoa(raw[20:24]))
    except (ImportError, OSError, AttributeError):
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                raw = line.split()[0]
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None, 0, socket.SOCK_STREAM):
                found.append(info[4][0])
        except OSError:
            pass
    result: List[str] = []
    for address in found:
        if _usable(address) and address not in result:
            result.append(address)
    return result


def fromConfig(reactor: Any, config: Any) -> S5BMethod:
    """The method as ``[s5b]`` configures it (``bytestreamd.daemon`` calls this)."""
    if config.s5b_proxy is None:
        proxies: Optional[List[JID]] = None
    elif config.s5b_proxy == "":
        proxies = []
    else:
        proxies = [JID(config.s5b_proxy)]
    return S5BMethod(reactor, listen=list(config.s5b_listen),
                     advertise=list(config.s5b_advertise), proxies=proxies)
