"""
The transports of the in-memory network: one end of a TCP or UNIX
connection, following ``twisted.internet.abstract.FileDescriptor`` and
``tcp.Connection`` step by step (see :mod:`tests.memory.memnet` for the
semantics and for who calls ``_doWrite``/``_doRead``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Optional

from twisted.internet import error, interfaces, protocol
from twisted.python import failure
from zope.interface import implementer

#: What one read delivers at most (Twisted's ``bufferSize``).
READ_CHUNK = 65536
#: What one write step moves into the pipe at most (``SEND_LIMIT``).
SEND_LIMIT = 128 * 1024

TCP = "TCP"
UNIX = "UNIX"


class _Pipe:
    """One direction of a connection: the bytes in the 'kernel', then an end."""

    def __init__(self) -> None:
        self.chunks: Deque[bytes] = deque()
        self.size = 0
        #: ``None`` (open), ``"eof"`` (FIN after the data) or ``"reset"``.
        self.end: Optional[str] = None
        #: The reading socket is closed: bytes sent now are refused (EPIPE).
        self.readerClosed = False

    def put(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def take(self, limit: int) -> bytes:
        out: List[bytes] = []
        taken = 0
        while self.chunks and taken < limit:
            chunk = self.chunks.popleft()
            room = limit - taken
            if len(chunk) > room:
                self.chunks.appendleft(chunk[room:])
                chunk = chunk[:room]
            out.append(chunk)
            taken += len(chunk)
        self.size -= taken
        return b"".join(out)

    def clear(self) -> None:
        self.chunks.clear()
        self.size = 0


@implementer(interfaces.ITCPTransport, interfaces.ITLSTransport,
             interfaces.IConsumer, interfaces.IPushProducer)
class MemoryTransport:
    """
    One end of an in-memory connection; see the module docstring for the
    semantics.  ``family`` is ``"TCP"`` or ``"UNIX"``; ``host`` the
    :class:`MemoryHost` it belongs to.
    """

    bufferSize = 65536

    def __init__(self, network: Any, host: Any, family: str,
                 local: Any, remote: Any) -> None:
        self.network = network
        self.host = host
        self.family = family
        self._local = local
        self._remote = remote
        self.protocol: Optional[protocol.Protocol] = None
        self.peer: Optional["MemoryTransport"] = None
        self.inbound = _Pipe()
        self.connector: Any = None
        self.connected = False
        self.disconnecting = False
        self.disconnected = False
        self._writeDisconnecting = False
        self._writeDisconnected = False
        self._aborting = False
        self._readEOF = False
        self._socketClosed = False
        self._reading = True
        self._writing = False
        self._buffer: List[bytes] = []
        self._bufferLen = 0
        self.producer: Any = None
        self.streamingProducer = False
        self.producerPaused = False
        #: The context given to ``startTLS``, if any (no TLS happens).
        self.tlsContext: Any = None
        self.noDelay = False
        self.keepAlive = False

    def __repr__(self) -> str:
        return "<MemoryTransport %s %s %s->%s>" % (
            self.host.name, self.family, self._local, self._remote)

    # -- ITransport ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes, not %r" % (type(data),))
        if not self.connected or self._writeDisconnected:
            return
        if data:
            self._buffer.append(data)
            self._bufferLen += len(data)
            self._maybePauseProducer()
            self._writing = True

    def writeSequence(self, iovec) -> None:
        for data in iovec:
            self.write(data)

    def loseConnection(self) -> None:
        if self.connected and not self.disconnecting:
            if self._writeDisconnected:
                self._reading = False
                self._writing = False
                self._connectionLost(failure.Failure(error.ConnectionDone()))
            else:
                self._reading = False
                self._writing = True
                self.disconnecting = True

    def loseWriteConnection(self) -> None:
        self._writeDisconnecting = True
        self._writing = True

    def abortConnection(self) -> None:
        if self.disconnected or self._aborting:
            return
        self._aborting = True
        self._reading = False
        self._writing = False
        self.network._soon(self._connectionLost,
                           failure.Failure(error.ConnectionAborted()))

    def getPeer(self):
        return self._remote

    def getHost(self):
        return self._local

    # -- ITCPTransport extras, ITLSTransport ---------------------------------

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = bool(enabled)

    def getTcpNoDelay(self) -> bool:
        return self.noDelay

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepAlive = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self.keepAlive

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        self.tlsContext = contextFactory

    # -- IPushProducer (the transport's reading side) ------------------------

    def pauseProducing(self) -> None:
        self._reading = False

    def resumeProducing(self) -> None:
        if self.connected and not self.disconnecting and not self._readEOF:
            self._reading = True

    def stopProducing(self) -> None:
        self.loseConnection()

    @property
    def reading(self) -> bool:
        """Whether this end reads (False after pauseProducing)."""
        return self._reading

    # -- IConsumer -----------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError(
                "Cannot register producer %s, because producer %s was never "
                "unregistered." % (producer, self.producer))
        if self.disconnected:
            producer.stopProducing()
        else:
            self.producer = producer
            self.streamingProducer = streaming
            if not streaming:
                producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None
        if self.connected and self.disconnecting:
            self._writing = True

    def _maybePauseProducer(self) -> None:
        if self.producer is not None and self.streamingProducer:
            if self._bufferLen > self.bufferSize:
                self.producerPaused = True
                self.producer.pauseProducing()

    # -- the reactor's side ----------------------------------------------------

    def pendingBytes(self) -> int:
        """
        Bytes written and not yet read by the other end: what Linux's
        SIOCOUTQ plus Twisted's write buffer tell the daemon about a real
        UNIX socket (bytestreamd.splice.unreadByLocal).
        """
        return self._bufferLen + (self.peer.inbound.size if self.peer is not None else 0)

    @property
    def bufferedBytes(self) -> int:
        """Bytes written by the protocol and not yet in the pipe."""
        return self._bufferLen

    def _outbound(self) -> _Pipe:
        assert self.peer is not None
        return self.peer.inbound

    def _doWrite(self) -> bool:
        """One write readiness: move bytes to the pipe, then act on empty."""
        if not self._writing or not self.connected or self._aborting:
            return False
        out = self._outbound()
        if self._bufferLen and out.readerClosed:
            self._buffer, self._bufferLen = [], 0
            self._connectionLost(failure.Failure(error.ConnectionLost(
                "Connection reset by peer (written after the peer closed)")))
            return True
        moved = False
        room = self.network.socketBuffer - out.size
        if self._bufferLen and room > 0:
            data = b"".join(self._buffer)
            n = min(len(data), room, SEND_LIMIT)
            out.put(data[:n])
            rest = data[n:]
            self._buffer = [rest] if rest else []
            self._bufferLen = len(rest)
            moved = True
        if self._bufferLen:
            return moved
        self._writing = False
        if self.producer is not None and (
                not self.streamingProducer or self.producerPaused):
            self.producerPaused = False
            self.producer.resumeProducing()
        elif self.disconnecting:
            self._connectionLost(failure.Failure(error.ConnectionDone()))
        elif self._writeDisconnecting and not self._writeDisconnected:
            self._writeDisconnected = True
            if out.end is None:
                out.end = "eof"
            half = interfaces.IHalfCloseableProtocol(self.protocol, None)
            if half is not None:
                half.writeConnectionLost()
        return True

    def _doRead(self) -> bool:
        """One read readiness: deliver a chunk, or the end."""
        if not self._reading or not self.connected or self._aborting or self._readEOF:
            return False
        pipe = self.inbound
        if pipe.size:
            data = pipe.take(READ_CHUNK)
            self.protocol.dataReceived(data)
            return True
        if pipe.end == "eof":
            half = interfaces.IHalfCloseableProtocol(self.protocol, None)
            if half is not None:
                self._readEOF = True
                self._reading = False
                half.readConnectionLost()
            else:
                self._connectionLost(failure.Failure(error.ConnectionDone()))
            return True
        if pipe.end == "reset":
            self._connectionLost(failure.Failure(error.ConnectionLost(
                "Connection reset by peer")))
            return True
        return False

    def _connectionLost(self, reason: failure.Failure) -> None:
        """``tcp.Connection.connectionLost``: close the socket, tell the protocol."""
        if self.disconnected:
            return
        self.disconnected = True
        self.connected = False
        self._reading = self._writing = False
        if self.producer is not None:
            producer, self.producer = self.producer, None
            producer.stopProducing()
        self._closeSocket(orderly=not reason.check(error.ConnectionAborted))
        proto = self.protocol
        try:
            proto.connectionLost(reason)
        finally:
            if self.connector is not None:
                self.connector._lost(reason)

    def _closeSocket(self, orderly: bool) -> None:
        """What the kernel does on close(): FIN, or RST over unread input."""
        if self._socketClosed:
            return
        self._socketClosed = True
        self._buffer, self._bufferLen = [], 0
        unread = self.inbound.size > 0
        self.inbound.clear()
        self.inbound.readerClosed = True
        out = self._outbound()
        if unread or (not orderly and self.family == TCP):
            if self.family == TCP:
                out.clear()
            out.end = "reset"
        elif out.end is None:
            out.end = "eof"

    def _die(self) -> None:
        """The owning process was killed: the kernel closes, nobody is told."""
        if self.disconnected:
            return
        self.disconnected = True
        self.connected = False
        self._reading = self._writing = False
        self._closeSocket(orderly=True)
