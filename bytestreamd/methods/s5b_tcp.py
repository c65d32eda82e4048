"""
The TCP side of XEP-0065: SOCKS5 handshakes on real connections, and our
direct streamhost.

* :class:`SOCKS5Protocol` runs a sans-I/O machine from
  :mod:`bytestreamd.methods.socks5` and then becomes the pipe under an
  :class:`~bytestreamd.methods.s5b_stream.S5BStream`.
* :class:`S5BServerFactory` accepts a SOCKS5 connection only for a
  session we are offering (by DST.ADDR), takes connections at all only
  while such a session waits, drops junk, clients without a greeting
  after a few seconds and slow ones, and when its handshake slots are
  full closes the oldest handshake of the busiest source address rather
  than refusing the newcomer -- so idle connections cannot starve a
  pending session (docs/security-s5b.rst).
* :func:`resolveHost` turns a candidate's host into addresses to check
  against ``[s5b] connect``; :func:`connectStreamhost` reaches one
  streamhost within a time limit.
* :class:`DirectStreamhost` owns the listening ports, knows which
  addresses to offer, and holds the connections that arrive for each
  pending session until the target says which one it used.

Why one long module: the SOCKS5 server factory, its handshake slots and the client connector share the sans-I/O machine's adapter; the next split is the server factory into its own module.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from twisted.internet import defer, error
from twisted.internet.interfaces import IHalfCloseableProtocol, IResolutionReceiver
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python import failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd.methods import socks5
from bytestreamd.methods.s5b_policy import MIN_HANDSHAKES, HandshakeSlots
from bytestreamd.methods.s5b_stream import HOLD_LIMIT, S5BStream
from bytestreamd.wire.s5b import StreamHost
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

#: Takes an accepted connection for a session (see S5BServerFactory).
Acceptor = Callable[[S5BStream], None]

#: Accepted SOCKS5 connections kept per pending session until the target
#: says which one it used (a target may try several of our addresses).
MAX_DIRECT_CONNECTIONS = 4

#: Seconds a client of our direct streamhost has for its greeting: a real
#: SOCKS5 client sends it as soon as it is connected.
GREETING_TIMEOUT = 3.0

#: Addresses of one host name tried for one candidate, at most.
MAX_RESOLVED = 8


class CandidateFailed(Exception):
    """One streamhost could not be used; ``reason`` says why, for people."""

    def __init__(self, reason: str):
        Exception.__init__(self, reason)
        self.reason = reason


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

    #: (server) the client's address, as handshakes are counted.
    source = "?"

    def __init__(self, machine: Any, owner: Any):
        self.machine = machine
        self.owner = owner
        self.stream: Optional[S5BStream] = None
        self._ended = False

    def connectionMade(self) -> None:
        # Interactive traffic (ssh) must not wait for Nagle; a dead peer on a
        # long idle link should be noticed eventually.
        for option in ("setTcpNoDelay", "setTcpKeepAlive"):
            setter = getattr(self.transport, option, None)
            if setter is not None:
                setter(True)
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
                self.stream = S5BStream(self.transport,
                                        clock=self.owner.clock)
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


# -- the SOCKS5 server -----------------------------------------------------------


class S5BServerFactory(Factory):
    """
    Our direct streamhost.  ``lookup(dstAddr)`` returns a callable taking
    the accepted :class:`S5BStream`, or ``None`` or a reason (str) to
    refuse: only a connection for a session we are offering is answered
    with success.

    Idle or slow connections must not starve a session that waits for its
    target (docs/security-s5b.rst):

    * a connection is accepted only while ``waiting()`` (a session of ours
      waits for a direct connection); otherwise it is closed at once;
    * a client must send its greeting within ``greetingTimeout`` and finish
      the handshake within ``handshakeTimeout``; junk and wrong hashes are
      dropped at once;
    * at most ``maxHandshakes`` handshakes are held, and reaching that
      never refuses the newcomer: the oldest handshake of the source address
      holding the most is closed instead
      (:class:`~bytestreamd.methods.s5b_policy.HandshakeSlots`).  Each
      such eviction is counted in :attr:`evicted`, so a session that fails
      meanwhile can say so.
    """

    def __init__(self, clock: Any, lookup: Callable[[str], Union[Acceptor, str, None]],
                 handshakeTimeout: float = 10.0, maxHandshakes: int = MIN_HANDSHAKES,
                 maxEarlyData: int = HOLD_LIMIT, greetingTimeout: float = GREETING_TIMEOUT,
                 waiting: Callable[[], bool] = lambda: True):
        self.clock = clock
        self.lookup = lookup
        self.handshakeTimeout = handshakeTimeout
        self.greetingTimeout = min(greetingTimeout, handshakeTimeout)
        self.maxEarlyData = maxEarlyData
        self.waiting = waiting
        #: Handshakes closed to make room for a newer one (ever).
        self.evicted = 0
        #: Connections closed because no session was waiting (ever).
        self.unwanted = 0
        self._slots: HandshakeSlots[SOCKS5Protocol] = HandshakeSlots(maxHandshakes)
        self._timers: Dict[SOCKS5Protocol, Any] = {}
        self._acceptors: Dict[SOCKS5Protocol, Callable[[S5BStream], None]] = {}

    @property
    def maxHandshakes(self) -> int:
        return self._slots.limit

    @maxHandshakes.setter
    def maxHandshakes(self, limit: int) -> None:
        self._slots.limit = limit

    def buildProtocol(self, addr: Any) -> Optional[SOCKS5Protocol]:
        if not self.waiting():
            # Nothing to accept: do not even hold the socket.  Not logged one
            # by one (a scan would flood the log); counted in ``unwanted``.
            self.unwanted += 1
            return None
        proto = SOCKS5Protocol(socks5.ServerHandshake(self.maxEarlyData), self)
        source = proto.source = _sourceOf(addr)
        victim = self._slots.admit(proto, source)
        if victim is not None:
            self.evicted += 1
            reason = ("closed to make room for a newer one: all %d SOCKS5 handshake "
                      "slots ([s5b] max_handshakes) were in use, and %s held the most (%d)"
                      % (self.maxHandshakes, victim.source,
                         self._slots.held(victim.source)
                         + (victim.source != source)))
            self._close(victim, reason)
        return proto

    @property
    def handshaking(self) -> int:
        return len(self._slots)

    def handshakeStarted(self, proto: SOCKS5Protocol) -> None:
        if proto not in self._slots:
            return  # evicted before its connection was even made
        self._timers[proto] = self.clock.callLater(self.greetingTimeout, self._deadline, proto)

    def connectRequested(self, proto: SOCKS5Protocol, request: socks5.ConnectRequest
                         ) -> List[socks5.Output]:
        acceptor = self.lookup(request.address)
        if acceptor is None or isinstance(acceptor, str):
            return proto.machine.refuse(
                socks5.HOST_UNREACHABLE,
                acceptor or "no bytestream is waiting for DST.ADDR %s" % request.address)
        self._acceptors[proto] = acceptor
        return proto.machine.accept()

    def handshakeDone(self, proto: SOCKS5Protocol, stream: S5BStream) -> None:
        self._release(proto)
        acceptor = self._acceptors.pop(proto)
        acceptor(stream)

    def handshakeFailed(self, proto: SOCKS5Protocol, reason: str) -> None:
        self._release(proto)
        self._acceptors.pop(proto, None)
        log.info("s5b: dropped SOCKS5 client {peer}: {reason}",
                 peer=_peerText(proto), reason=reason)

    def _release(self, proto: SOCKS5Protocol) -> None:
        self._slots.release(proto)
        call = self._timers.pop(proto, None)
        if call is not None and call.active():
            call.cancel()

    def _deadline(self, proto: SOCKS5Protocol) -> None:
        self._timers.pop(proto, None)
        machine = proto.machine
        if machine is not None and machine.state == "greeting":
            self._close(proto, "no SOCKS5 greeting within %gs" % self.greetingTimeout)
        elif self.handshakeTimeout > self.greetingTimeout and machine is not None:
            self._timers[proto] = self.clock.callLater(
                self.handshakeTimeout - self.greetingTimeout, self._timedOut, proto)
        else:
            self._timedOut(proto)

    def _timedOut(self, proto: SOCKS5Protocol) -> None:
        self._timers.pop(proto, None)
        self._close(proto, "SOCKS5 handshake not done within %gs" % self.handshakeTimeout)

    def _close(self, proto: SOCKS5Protocol, reason: str) -> None:
        self._release(proto)
        proto.machine = None
        if proto.transport is not None:
            proto.transport.abortConnection()
        proto.fail(reason)


def _sourceOf(addr: Any) -> str:
    """The source address a handshake is counted under."""
    return str(getattr(addr, "host", None) or "?")


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


def isAddressLiteral(host: str) -> bool:
    """``host`` is an IP address (IPv6 possibly with a %scope), not a name."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects what one host name resolves to; see :func:`resolveHost`."""

    def __init__(self, deferred: defer.Deferred):
        self.deferred = deferred
        self.found: List[str] = []

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        host = getattr(address, "host", None)
        if host and host not in self.found:
            self.found.append(host)

    def resolutionComplete(self) -> None:
        if not self.deferred.called:
            self.deferred.callback(self.found[:MAX_RESOLVED])


def resolveHost(reactor: Any, host: str, timeout: float) -> "defer.Deferred[List[str]]":
    """
    The IP addresses of a candidate's ``host`` -- itself if it is an IP
    literal, else what the reactor's name resolver finds for TCP (at most
    :data:`MAX_RESOLVED`, in its order) within ``timeout`` -- so that every
    one can be checked before we connect, and we connect to an address we
    checked (not to a name that might resolve differently a moment later).
    Fails with :class:`CandidateFailed`.
    """
    if isAddressLiteral(host):
        return defer.succeed([host])
    d: defer.Deferred = defer.Deferred()
    receiver = _Addresses(d)
    timer = reactor.callLater(timeout, lambda: d.called or d.errback(CandidateFailed(
        "cannot resolve the host name within %gs" % timeout)))
    try:
        reactor.nameResolver.resolveHostName(receiver, host, 0, transportSemantics="TCP")
    except Exception as e:
        if not d.called:
            d.errback(CandidateFailed("cannot resolve the host name (%s)" % e))

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        if isinstance(result, list) and not result:
            raise CandidateFailed("cannot resolve the host name")
        return result

    return d.addBoth(done)


# -- our direct streamhost ------------------------------------------------------


class _DirectPending:
    """An initiation waiting for the target to reach our direct streamhost."""

    def __init__(self) -> None:
        self.streams: List[S5BStream] = []
        #: SOCKS5 connections accepted for this session (ever).
        self.arrived = 0

    def acceptor(self) -> Union[Acceptor, str]:
        """``add``, or why not: the session already holds enough connections."""
        if len(self.streams) >= MAX_DIRECT_CONNECTIONS:
            return ("session already holds %d SOCKS5 connections, the most we keep "
                    "until the target says which one it used" % MAX_DIRECT_CONNECTIONS)
        return self.add

    def add(self, stream: S5BStream) -> None:
        self.arrived += 1
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


class DirectStreamhost:
    """
    Our own streamhost: the listening ports, the addresses we offer, and
    the sessions waiting for a target to connect.

    ``listen``: ``(interface, port)`` pairs (:meth:`startListening`); a port
    bound elsewhere with :attr:`factory` can be given to
    :meth:`addListeningPort`.  ``advertise``: ``(host, port or None)``
    offered instead of the listening addresses (``None``: the first
    listening port).  ``interfaceAddresses`` says what a wildcard listening
    address means (this host's usable addresses).  ``handshakeTimeout``,
    ``greetingTimeout`` and ``maxHandshakes``: see :class:`S5BServerFactory`,
    which accepts connections only while a session is expected here.
    """

    def __init__(self, reactor: Any, listen: Sequence[Tuple[str, int]] = (),
                 advertise: Sequence[Tuple[str, Optional[int]]] = (),
                 handshakeTimeout: float = 10.0,
                 interfaceAddresses: Optional[Callable[[], List[str]]] = None,
                 maxHandshakes: int = MIN_HANDSHAKES,
                 greetingTimeout: float = GREETING_TIMEOUT):
        self.reactor = reactor
        self.listen = list(listen)
        self.advertise = list(advertise)
        self.interfaceAddresses = interfaceAddresses or hostAddresses
        self.factory = S5BServerFactory(reactor, self._lookup,
                                        handshakeTimeout=handshakeTimeout,
                                        maxHandshakes=maxHandshakes,
                                        greetingTimeout=greetingTimeout,
                                        waiting=lambda: bool(self._pending))
        self.ports: List[Any] = []
        self.listenTried = False
        self._pending: Dict[str, _DirectPending] = {}

    # -- ports ------------------------------------------------------------------------

    def startListening(self) -> List[Any]:
        """Listen on every ``listen`` address; raises CannotListenError."""
        self.listenTried = True
        for interface, port in self.listen:
            self.addListeningPort(
                self.reactor.listenTCP(port, self.factory, interface=interface))
        return list(self.ports)

    def addListeningPort(self, port: Any) -> None:
        self.ports.append(port)
        address = port.getHost()
        log.info("s5b: direct streamhost listening on {host}:{port}",
                 host=address.host, port=address.port)

    def stopListening(self) -> defer.Deferred:
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])

    def describeListening(self) -> str:
        return ", ".join("%s:%d" % (a.host, a.port)
                         for a in (p.getHost() for p in self.ports)) or "nothing"

    def candidates(self, jid: JID) -> List[StreamHost]:
        """The streamhosts to offer, each with our ``jid``."""
        bound = [p.getHost() for p in self.ports]
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
        hosts: List[StreamHost] = []
        for host, port in dict.fromkeys(pairs):
            hosts.append(StreamHost(jid, host, port))
        return hosts

    # -- sessions ---------------------------------------------------------------------

    def expect(self, address: str) -> _DirectPending:
        """Accept connections for DST.ADDR ``address`` until :meth:`forget`."""
        if address in self._pending:
            raise ValueError("already waiting for DST.ADDR %s" % address)
        pending = self._pending[address] = _DirectPending()
        return pending

    def forget(self, address: str, keep: Optional[S5BStream] = None) -> None:
        """Stop accepting for ``address``; close what arrived but ``keep``."""
        pending = self._pending.pop(address, None)
        if pending is not None:
            pending.close(keep)

    def _lookup(self, address: str) -> Union[Acceptor, str, None]:
        pending = self._pending.get(address)
        return pending.acceptor() if pending is not None else None


# -- this host's addresses -------------------------------------------------------


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
