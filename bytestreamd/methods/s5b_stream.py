"""
An established XEP-0065 bytestream: the TCP connection to the streamhost
(or from the target), as an :class:`~bytestreamd.interfaces.IBytestream`.

Writes and producers go straight to the TCP transport, so the data path
costs nothing over plain TCP; holding, pause/resume towards the protocol and
the order of the end are :class:`~bytestreamd.transport.base.BytestreamTransport`'s.
What is SOCKS5's own: the socket is paused while bytes are held (that is
the backpressure towards the peer), TCP carries a half-close
(``loseWriteConnection``), and a lost connection that was not closed is
:class:`~bytestreamd.errors.BytestreamBroken`.

A stream is born when its SOCKS5 handshake completes, before it is known
which session it serves (our direct streamhost may accept several
connections for one offer until the target says which it used); the method
calls :meth:`S5BStream.bind` once, where it picks the stream.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from twisted.internet import error
from twisted.python import failure

from bytestreamd.errors import BytestreamBroken
from bytestreamd.interfaces import StreamContext
from bytestreamd.transport.base import BytestreamTransport
from bytestreamd.wire.s5b import StreamHost

#: Bytes an unattached or paused stream holds before pausing its socket.
HOLD_LIMIT = 65536


class S5BStream(BytestreamTransport):
    """
    An established SOCKS5 bytestream: the TCP transport behind a facade.

    ``loseConnection`` closes both directions; ``loseWriteConnection`` is a
    half-close (our EOF; we keep reading).  The peer's EOF reaches a protocol
    providing ``IHalfCloseableProtocol`` as ``readConnectionLost``, and
    ``connectionLost(ConnectionDone)`` follows once both directions are
    closed; any other protocol gets ``connectionLost(ConnectionDone)`` after
    the last byte (we close our side then).  A connection error is
    ``BytestreamBroken``.  Received bytes are held (not delivered) until
    :meth:`attachProtocol` and while paused.
    """

    method = "s5b"

    def __init__(self, transport: Any, clock: Any = None):
        BytestreamTransport.__init__(self, clock=clock)
        self.transport = transport
        #: The streamhost this connection goes through (set by :meth:`bind`).
        self.streamhost: Optional[StreamHost] = None
        #: Through a SOCKS5 proxy rather than a direct connection between
        #: the two parties.  A relay may not pass a half-close through as
        #: one (Prosody's proxy65 closes both legs), so the link layer then
        #: carries EOF over XMPP only (bytestreamd.links.lifecycle).
        self.relayed = False
        self._socketPaused = False
        self._readClosed = False
        self._writeClosed = False
        self._aborted = False
        self._fullClose = False
        #: Bytes that came in-band (:meth:`feedTail`) ahead of the socket:
        #: the socket's copies of them are dropped when they come.
        self._inBand = 0

    #: Given every chunk written to the socket (the ciphertext, under TLS):
    #: a relayed e2e link keeps its last bytes (bytestreamd.e2e.tail).
    onWritten: Optional[Callable[[bytes], None]] = None

    def bind(self, ctx: StreamContext, streamhost: StreamHost, relayed: bool) -> None:
        """This connection serves ``ctx`` through ``streamhost``: say so once."""
        self._identify(ctx)
        self.streamhost = streamhost
        self.relayed = relayed

    def __repr__(self) -> str:
        return "<S5BStream sid=%s peer=%s via %s>" % (
            self.sid, self.peerJID.full() if self.peerJID else "?",
            self.streamhost.describe() if self.streamhost else "?")

    @property
    def producer(self) -> Any:  # type: ignore[override]
        return getattr(self.transport, "producer", None)

    @property
    def streamingProducer(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.transport, "streamingProducer", True))

    def _closing(self) -> bool:
        return self._fullClose or self._aborted or BytestreamTransport._closing(self)

    # -- ITransport / IConsumer ------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._writeClosed or self._endReason is not None:
            return
        self.bytesSent += len(data)
        if self.onWritten is not None:
            self.onWritten(data)
        self.transport.write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        if self._writeClosed or self._endReason is not None:
            return
        data = list(data)
        self.bytesSent += sum(len(d) for d in data)
        if self.onWritten is not None:
            for chunk in data:
                self.onWritten(chunk)
        self.transport.writeSequence(data)

    def loseConnection(self) -> None:
        """
        Close both directions once what is queued is written (issue 6 a:
        this used to be a half-close, so ``CLOSE`` left the link running).
        """
        if self._endReason is not None:
            return
        self._writeClosed = True
        self._fullClose = True
        self.transport.loseConnection()

    def loseWriteConnection(self) -> None:
        """Half-close: our EOF to the peer; we keep reading."""
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
        self._held.clear()
        self._heldBytes = 0
        self.transport.abortConnection()

    def getPeer(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    # -- from the TCP protocol -------------------------------------------------

    def _dataReceived(self, data: bytes) -> None:
        if self._inBand:
            # Part of what the socket brings already came in-band.
            skip = min(self._inBand, len(data))
            self._inBand -= skip
            data = data[skip:]
            if not data:
                return
        self.bytesReceived += len(data)
        if self.protocol is not None and not self._paused and not self._held:
            self.protocol.dataReceived(data)
            return
        if self._aborted:
            return
        # Pause first: holding may call onFirstData, whose owner may attach
        # a protocol and take everything at once (and then resume us).
        if self._heldBytes + len(data) >= HOLD_LIMIT or self.protocol is not None:
            self._pauseSocket()
        self._hold(data)

    def feedTail(self, offset: int, data: bytes) -> int:
        """
        Bytes of the peer's stream from ``offset`` on (counted as
        :attr:`bytesReceived` counts: everything since the SOCKS5 handshake)
        that came another way -- a tail the relay stranded, re-sent in-band
        by the peer (:mod:`bytestreamd.e2e.tail`).  Only what had not arrived
        is new: it goes where the socket's bytes go (under TLS: to the TLS
        layer, which authenticates it), and the socket's copies of it are
        dropped if they come after all.  A gap (bytes before ``offset``
        still missing) cannot be used.  Returns how many bytes were new.
        """
        arrived = self.bytesReceived
        if offset > arrived or offset + len(data) <= arrived or self._finished \
                or self._endReason is not None or self._aborted:
            return 0
        new = data[arrived - offset:]
        # Taken as if from the socket, then owed by it.
        pending, self._inBand = self._inBand, 0
        self._dataReceived(new)
        self._inBand = pending + len(new)
        return len(new)

    def _readLost(self) -> None:
        # A resumed half-closed socket reports EOF again: the base ignores it.
        self._readClosed = True
        self._peerEnded()

    def _connectionLost(self, reason: failure.Failure) -> None:
        # A Twisted TCP transport reports ConnectionDone only when we closed
        # it (the peer's EOF comes as readConnectionLost: we are half-closeable).
        if (self._aborted or reason.check(error.ConnectionDone)
                or (self._readClosed and self._writeClosed) or self._fullClose):
            self._ended(failure.Failure(error.ConnectionDone()))
        else:
            where = " via %s" % self.streamhost.describe() if self.streamhost else ""
            self._ended(failure.Failure(BytestreamBroken(
                "SOCKS5 connection%s lost: %s" % (where, reason.getErrorMessage()))))

    # -- hooks of BytestreamTransport ------------------------------------------

    def _pauseReading(self) -> None:
        self._pauseSocket()

    def _pauseSocket(self) -> None:
        if not self._socketPaused and self._endReason is None and not self._finished:
            self._socketPaused = True
            self.transport.pauseProducing()

    def _drained(self) -> None:
        if self._socketPaused and not self._readClosed:
            self._socketPaused = False
            self.transport.resumeProducing()

    def _peerEOFDelivered(self, halfCloseable: bool) -> None:
        if self._endReason is not None:
            return  # connectionLost follows and says it all
        if not halfCloseable or self._writeClosed:
            # Both directions done (or the protocol cannot half-close): close.
            self._writeClosed = True
            self.transport.loseConnection()


__all__ = ["S5BStream", "HOLD_LIMIT"]
