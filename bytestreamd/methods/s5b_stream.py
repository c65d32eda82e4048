"""
An established XEP-0065 bytestream: the TCP connection to the streamhost
(or from the target), as an :class:`~bytestreamd.interfaces.IBytestream`.

Writes, producers and pause/resume go straight to the TCP transport, so
the data path costs nothing over plain TCP; what this adds is the
IBytestream contract: bytes held until a protocol is attached, a
``loseConnection`` that is a half-close, and errors as BytestreamBroken.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python import failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd.errors import BytestreamBroken
from bytestreamd.interfaces import IBytestream
from bytestreamd.wire.s5b import StreamHost

#: Bytes an unattached or paused stream holds before pausing its socket.
HOLD_LIMIT = 65536


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
        self._fullClose = False
        #: Through a SOCKS5 proxy rather than a direct connection between
        #: the two parties.  A relay may not pass a half-close through as
        #: one (Prosody's proxy65 closes both legs), so the link layer then
        #: carries EOF over XMPP only (bytestreamd.lifecycle).
        self.relayed = False
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
        """
        Close both directions once what is queued is written (issue 6 a:
        this used to be a half-close, so ``CLOSE`` left the link running).
        """
        if self._lostReason is not None:
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
                or (self._readClosed and self._writeClosed) or self._fullClose):
            reason = failure.Failure(error.ConnectionDone())
        else:
            where = " via %s" % self.streamhost.describe() if self.streamhost else ""
            reason = failure.Failure(BytestreamBroken(
                "SOCKS5 connection%s lost: %s" % (where, reason.getErrorMessage())))
            # A broken connection is news now, not after a paused reader
            # catches up: what is held can no longer make a whole stream.
            self._held = []
            self._heldSize = 0
            self._paused = False
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
