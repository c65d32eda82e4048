"""
An in-memory network with a fake clock: reactors for several "hosts" whose
TCP and UNIX connections are byte pipes in this process.

Why not ``twisted.test.iosim``: the truth cases of issue 6 hang on details
iosim leaves out -- half-close (SOCKS5 links end ssh-style), backpressure
(a local client that stops reading must pause the bytestream), and what a
killed process leaves behind (the kernel sends FIN for its sockets, so a
peer sees a clean EOF; RST only when unread data was waiting).  So the
transports here follow ``twisted.internet.abstract.FileDescriptor`` and
``tcp.Connection`` step by step, in memory:

* ``write`` buffers like Twisted (a streaming producer is paused once more
  than ``bufferSize`` bytes wait) and :meth:`Network.pump` moves bytes into
  a bounded "kernel" pipe (``Network.socketBuffer``), then to the reader in
  chunks of at most 64 KiB, and only while the reader has not paused;
* a drained buffer resumes a paused producer, then honours
  ``loseConnection``/``loseWriteConnection`` (a paused streaming producer
  holds the close back, as in Twisted);
* EOF reaches an ``IHalfCloseableProtocol`` as ``readConnectionLost``, any
  other protocol as ``connectionLost(ConnectionDone)``;
* closing with unread input, or aborting a TCP connection, resets it: the
  peer gets ``ConnectionLost`` (TCP drops what was in flight, UNIX delivers
  it first); writing to a closed peer is ``ConnectionLost`` too;
* ``abortConnection`` ends the connection on the next pump with
  ``ConnectionAborted``; ``startTLS`` is accepted and does nothing (the
  in-memory XMPP router has no certificates to check).

Every callback into a protocol happens inside :meth:`Network.pump` (or a
clock call), never inside the transport method a protocol called -- except
where Twisted itself is synchronous (``pauseProducing`` on a full buffer,
``loseConnection`` after a half-close).  An exception escaping a protocol is
logged, disconnects that connection as a reactor would, and is kept in
``Network.errors``: :class:`tests.memory.world.World` fails the test on it.

:class:`MemoryHost` is one process's reactor (``IReactorTime``,
``IReactorTCP``, ``IReactorUNIX``, ``IReactorPluggableNameResolver``) on the
shared network and clock; :meth:`MemoryHost.kill` is ``kill -9``.  The
transports themselves are in :mod:`tests.memory.transport`; hosts, ports,
connectors and the pump stay together here (over 400 lines) because they
share the network's private state.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from twisted.internet import defer, error, interfaces, protocol, task
from twisted.internet._resolver import HostResolution
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import Logger
from twisted.python import failure
from zope.interface import implementer

from tests.memory.transport import READ_CHUNK, TCP, UNIX, MemoryTransport

__all__ = ["Network", "MemoryHost", "MemoryTransport", "NetworkError", "READ_CHUNK"]

log = Logger()


class NetworkError(AssertionError):
    """The network did not go quiet, or a protocol raised."""


@implementer(interfaces.IConnector)
class _Connector:
    """``IConnector`` for connectTCP/connectUNIX; reports to the factory."""

    def __init__(self, network: "Network", host: "MemoryHost", family: str,
                 destination: Any, factory: Any, timeout: float) -> None:
        self.network = network
        self.host = host
        self.family = family
        self.destination = destination
        self.factory = factory
        self.timeout = timeout
        self.state = "disconnected"
        self.transport: Optional[MemoryTransport] = None
        self._timer: Any = None

    def getDestination(self):
        return self.destination

    def connect(self) -> None:
        self.state = "connecting"
        self.factory.doStart()
        self.factory.startedConnecting(self)
        if self.state != "connecting":
            return
        if self.timeout:
            self._timer = self.host.callLater(self.timeout, self._timedOut)
        self.network._connects.append(self)

    def stopConnecting(self) -> None:
        if self.state != "connecting":
            raise error.NotConnectingError("we're not trying to connect")
        self._failed(failure.Failure(error.UserError()))

    def disconnect(self) -> None:
        if self.state == "connecting":
            self.stopConnecting()
        elif self.state == "connected" and self.transport is not None:
            self.transport.loseConnection()

    def _timedOut(self) -> None:
        self._timer = None
        if self.state == "connecting":
            self._failed(failure.Failure(error.TimeoutError()))

    def _stopTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _failed(self, reason: failure.Failure) -> None:
        self._stopTimer()
        if self in self.network._connects:
            self.network._connects.remove(self)
        self.state = "disconnected"
        self.factory.clientConnectionFailed(self, reason)
        if self.state == "disconnected":
            self.factory.doStop()

    def _connected(self, transport: MemoryTransport) -> None:
        self._stopTimer()
        self.state = "connected"
        self.transport = transport

    def _lost(self, reason: failure.Failure) -> None:
        self.state = "disconnected"
        self.transport = None
        self.factory.clientConnectionLost(self, reason)
        if self.state == "disconnected":
            self.factory.doStop()


@implementer(interfaces.IListeningPort)
class _Port:
    """A listening TCP port or UNIX socket on the in-memory network."""

    def __init__(self, host: "MemoryHost", family: str, address: Any, key: Tuple,
                 factory: Any, placeholder: Optional[str] = None) -> None:
        self.host = host
        self.family = family
        self.address = address
        self.key = key
        self.factory = factory
        self.placeholder = placeholder
        self.listening = True

    def startListening(self) -> None:
        pass

    def stopListening(self):
        if self.listening:
            self.listening = False
            self.host.network._listeners.pop(self.key, None)
            if self.host._ports.count(self):
                self.host._ports.remove(self)
            if self.placeholder is not None:
                try:
                    os.unlink(self.placeholder)
                except OSError:
                    pass
            self.factory.doStop()
        return defer.succeed(None)

    loseConnection = stopListening

    def getHost(self):
        return self.address


@implementer(interfaces.IHostnameResolver)
class _Resolver:
    """Resolves IP literals and the names in ``Network.names``, at once."""

    def __init__(self, network: "Network") -> None:
        self.network = network

    def resolveHostName(self, resolutionReceiver, hostName, portNumber=0,
                        addressTypes=None, transportSemantics="TCP"):
        resolution = HostResolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        addresses = [hostName] if _isIP(hostName) else self.network.names.get(hostName, [])
        for address in addresses:
            cls = IPv6Address if ":" in address else IPv4Address
            resolutionReceiver.addressResolved(cls("TCP", address, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolution


def _isIP(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@implementer(interfaces.IReactorTime, interfaces.IReactorTCP, interfaces.IReactorUNIX,
             interfaces.IReactorPluggableNameResolver)
class MemoryHost:
    """
    One process's reactor on the in-memory network: its delayed calls,
    ports and connections are tracked so :meth:`kill` can end them as
    ``kill -9`` would.  ``address`` is its IP (the peer address others see).
    """

    def __init__(self, network: "Network", name: str, address: str = "127.0.0.1") -> None:
        self.network = network
        self.name = name
        self.address = address
        self.alive = True
        self._calls: List[Any] = []
        self._ports: List[_Port] = []
        self._transports: List[MemoryTransport] = []
        self._resolver = _Resolver(network)

    def __repr__(self) -> str:
        return "<MemoryHost %s%s>" % (self.name, "" if self.alive else " (dead)")

    # -- IReactorTime --------------------------------------------------------

    def seconds(self) -> float:
        return self.network.clock.seconds()

    def callLater(self, delay: float, f: Callable, *args: Any, **kw: Any):
        if not self.alive:
            raise NetworkError("%s is dead; nothing of it may run" % (self.name,))
        call = self.network.clock.callLater(delay, self.network._guard, f, args, kw)
        if len(self._calls) > 256:
            self._calls = [c for c in self._calls if c.active()]
        self._calls.append(call)
        return call

    def getDelayedCalls(self):
        return [c for c in self._calls if c.active()]

    # -- IReactorPluggableNameResolver ----------------------------------------

    @property
    def nameResolver(self):
        return self._resolver

    def installNameResolver(self, resolver):
        old, self._resolver = self._resolver, resolver
        return old

    # -- IReactorTCP / IReactorUNIX ----------------------------------------------

    def listenTCP(self, port: int, factory, backlog: int = 50, interface: str = ""):
        interface = interface or "0.0.0.0"
        if port == 0:
            port = self.network._ephemeralPort()
        key = (TCP, interface, port)
        if key in self.network._listeners:
            raise error.CannotListenError(interface, port, OSError(98, "Address already in use"))
        cls = IPv6Address if ":" in interface else IPv4Address
        return self._listen(_Port(self, TCP, cls("TCP", interface, port), key, factory))

    def listenUNIX(self, address: str, factory, backlog: int = 50, mode: int = 0o666,
                   wantPID: int = 0):
        key = (UNIX, os.fsencode(address))
        hook = self.network.listenUNIXError
        problem = hook(address) if hook is not None else None
        if problem is not None:
            raise error.CannotListenError(None, address, problem)
        if key in self.network._listeners or os.path.lexists(address):
            raise error.CannotListenError(None, address, OSError(98, "Address already in use"))
        try:
            # A placeholder where the socket would be, so "is the socket
            # there / gone" can be checked: a real socket inode that nothing
            # listens on (what a killed daemon leaves behind, and what the
            # daemon's runtime checks accept as its own stale socket).
            placeholder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                placeholder.bind(address)
            finally:
                placeholder.close()
            os.chmod(address, mode)
        except OSError as e:
            raise error.CannotListenError(None, address, e)
        return self._listen(_Port(self, UNIX, UNIXAddress(address), key, factory,
                                  placeholder=address))

    def _listen(self, port: _Port) -> _Port:
        if not self.alive:
            raise NetworkError("%s is dead" % (self.name,))
        self.network._listeners[port.key] = port
        self._ports.append(port)
        port.factory.doStart()
        return port

    def connectTCP(self, host: str, port: int, factory, timeout: float = 30,
                   bindAddress=None):
        cls = IPv6Address if ":" in host else IPv4Address
        connector = _Connector(self.network, self, TCP, cls("TCP", host, port),
                               factory, timeout)
        connector.connect()
        return connector

    def connectUNIX(self, address: str, factory, timeout: float = 30, checkPID: int = 0):
        connector = _Connector(self.network, self, UNIX, UNIXAddress(address),
                               factory, timeout)
        connector.connect()
        return connector

    # -- life ----------------------------------------------------------------

    @property
    def transports(self) -> List[MemoryTransport]:
        """This host's connections still open."""
        return [t for t in self._transports if not t.disconnected]

    def kill(self) -> None:
        """
        ``kill -9``: timers stop, listening ports vanish (a UNIX socket's
        file stays, as it does), and the kernel closes every connection --
        FIN after what is already in the pipe, RST where input was unread.
        None of this host's protocols hears anything.
        """
        self.alive = False
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []
        for port in self._ports:
            port.listening = False
            self.network._listeners.pop(port.key, None)
        self._ports = []
        for transport in self._transports:
            transport._die()
        self._transports = []
        self.network._connects = [c for c in self.network._connects if c.host is not self]

    def revive(self) -> None:
        """Let a killed host run again (a restarted process on the same machine)."""
        self.alive = True


class Network:
    """
    The in-memory network and its one clock.  ``socketBuffer`` is what each
    direction of a connection holds between writer and reader (kernel
    buffers); ``names`` maps host names to addresses for name resolution.
    """

    def __init__(self, clock: Optional[task.Clock] = None, socketBuffer: int = 256 * 1024):
        self.clock = clock or task.Clock()
        self.socketBuffer = socketBuffer
        self.names: Dict[str, List[str]] = {"localhost": ["127.0.0.1"]}
        self.hosts: Dict[str, MemoryHost] = {}
        #: Addresses that never answer a connect (it times out), e.g. a
        #: streamhost behind a firewall.
        self.unreachable: set = set()
        #: ``listenUNIXError(path) -> Exception or None``: make listenUNIX
        #: fail (say, EMFILE) for a test.
        self.listenUNIXError: Optional[Callable[[str], Optional[BaseException]]] = None
        #: Exceptions that escaped a protocol or a timed call.
        self.errors: List[failure.Failure] = []
        self._listeners: Dict[Tuple, _Port] = {}
        self._connects: List[_Connector] = []
        self._transports: List[MemoryTransport] = []
        self._soonQueue: Deque[Tuple[Callable, tuple]] = deque()
        self._nextPort = 40000

    def host(self, name: str, address: str = "127.0.0.1") -> MemoryHost:
        """A new host (reactor) called ``name``."""
        if name in self.hosts:
            raise ValueError("host %s exists" % (name,))
        host = self.hosts[name] = MemoryHost(self, name, address)
        return host

    def _ephemeralPort(self) -> int:
        self._nextPort += 1
        return self._nextPort

    def _soon(self, f: Callable, *args: Any) -> None:
        self._soonQueue.append((f, args))

    def _guard(self, f: Callable, args: tuple, kw: dict) -> Any:
        """Run a timed call as a reactor does: an exception is logged, not raised."""
        try:
            return f(*args, **kw)
        except Exception:
            self._error(failure.Failure(), "timed call %r" % (f,))
            return None

    def _error(self, f: failure.Failure, where: str) -> None:
        self.errors.append(f)
        log.failure("in-memory network: exception in {where}", f, where=where)

    # -- connecting ------------------------------------------------------------

    def _lookup(self, connector: _Connector) -> Optional[_Port]:
        dest = connector.destination
        if connector.family == UNIX:
            return self._listeners.get((UNIX, os.fsencode(dest.name)))
        for interface in (dest.host, "0.0.0.0", "::"):
            port = self._listeners.get((TCP, interface, dest.port))
            if port is not None:
                return port
        return None

    def _establish(self, connector: _Connector) -> None:
        self._connects.remove(connector)
        dest = connector.destination
        if connector.family == TCP and dest.host in self.unreachable:
            self._connects.append(connector)  # hangs until its timeout
            return
        port = self._lookup(connector)
        if port is None or not port.host.alive:
            connector._failed(failure.Failure(error.ConnectionRefusedError(
                "nothing listens on %s" % (dest,))))
            return
        client, server = connector.host, port.host
        if connector.family == TCP:
            cls = IPv6Address if ":" in dest.host else IPv4Address
            clientAddr = cls("TCP", client.address, self._ephemeralPort())
            serverAddr = cls("TCP", dest.host, dest.port)
        else:
            clientAddr, serverAddr = UNIXAddress(None), UNIXAddress(dest.name)
        c = MemoryTransport(self, client, connector.family, clientAddr, serverAddr)
        s = MemoryTransport(self, server, connector.family, serverAddr, clientAddr)
        c.peer, s.peer = s, c
        c.connector = connector
        serverProto = port.factory.buildProtocol(clientAddr)
        refused = serverProto is None
        if refused:
            serverProto = protocol.Protocol()
        clientProto = connector.factory.buildProtocol(serverAddr)
        if clientProto is None:
            clientProto = protocol.Protocol()
            self._soon(c.loseConnection)
        for t, proto in ((s, serverProto), (c, clientProto)):
            t.protocol = proto
            t.connected = True
            t.host._transports.append(t)
            self._transports.append(t)
        connector._connected(c)
        s.protocol.makeConnection(s)
        if refused:
            s.loseConnection()
        c.protocol.makeConnection(c)

    # -- running ---------------------------------------------------------------

    def pump(self, until: Optional[Callable[[], Any]] = None,
             maxRounds: int = 1000000) -> int:
        """
        Run the network until nothing moves: connects, reads, writes, and
        clock calls due now -- or, with ``until``, until that is true (it is
        checked between rounds, so a test can act in the middle of a
        transfer).  Returns how many rounds that took.
        """
        rounds = 0
        while True:
            if until is not None and until():
                return rounds
            progress = False
            while self._soonQueue:
                progress = True
                f, args = self._soonQueue.popleft()
                try:
                    f(*args)
                except Exception:
                    self._error(failure.Failure(), "call %r" % (f,))
            for connector in list(self._connects):
                if connector.state != "connecting":
                    continue
                if connector.family == TCP and connector.destination.host in self.unreachable:
                    continue
                progress = True
                try:
                    self._establish(connector)
                except Exception:
                    self._error(failure.Failure(), "connecting %r" % (connector.destination,))
            for t in list(self._transports):
                for step in (t._doWrite, t._doRead):
                    if t.disconnected:
                        break
                    try:
                        progress = step() or progress
                    except Exception:
                        progress = True
                        f = failure.Failure()
                        self._error(f, "%s of %r" % (step.__name__, t))
                        t._connectionLost(f)
            if any(t.disconnected for t in self._transports):
                self._transports = [t for t in self._transports if not t.disconnected]
            calls = self.clock.calls
            if calls and min(c.getTime() for c in calls) <= self.clock.seconds():
                progress = True
                self.clock.advance(0)
            if not progress:
                return rounds
            rounds += 1
            if rounds >= maxRounds:
                raise NetworkError("the network did not go quiet in %d rounds" % maxRounds)

    def nextCallTime(self) -> Optional[float]:
        calls = self.clock.calls
        return min(c.getTime() for c in calls) if calls else None

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of fake time pass, pumping at every timer on the way."""
        end = self.clock.seconds() + seconds
        self.pump()
        while True:
            when = self.nextCallTime()
            if when is None or when > end:
                break
            self.clock.advance(max(0.0, when - self.clock.seconds()))
            self.pump()
        if end > self.clock.seconds():
            self.clock.advance(end - self.clock.seconds())
        self.pump()

    def runUntil(self, done: Callable[[], Any], timeout: float) -> bool:
        """
        Pump and advance the clock, timer by timer, until ``done()`` is
        true (True; checked between pump rounds, so it stops mid-transfer)
        or ``timeout`` seconds of fake time passed (False).
        """
        end = self.clock.seconds() + timeout
        self.pump(done)
        while not done():
            now = self.clock.seconds()
            if now >= end:
                return bool(done())
            when = self.nextCallTime()
            target = end if when is None else min(max(when, now), end)
            self.clock.advance(target - now)
            self.pump(done)
        return True
