"""
The transport half that every bytestream shares.

A method (IBB, SOCKS5, later Jingle's transports) subclasses
:class:`BytestreamTransport` and supplies how bytes go out (``write``,
``loseConnection``, producers) and how they come in; the base class owns what
ibb_stream.py and s5b_stream.py used to write twice.

Identity from birth
    ``sessionId`` (the negotiation's session, ``ctx.session``: the SI id, a
    Jingle sid), ``sid`` (the transport sid the method puts on its wire: the
    IBB sid, the SOCKS5 sid hashed into DST.ADDR; under SI the same string),
    ``peerJID``, ``localJID``
    and ``weAreInitiator`` come from one
    :class:`~bytestreamd.interfaces.StreamContext`: given to the constructor
    or, for a stream born before anyone knows which session it serves (a
    SOCKS5 connection accepted by our direct streamhost, several of which may
    arrive for one offer), to the one :meth:`_identify` call the method makes
    where it picks the stream.  Nothing else sets them.

Receiving: held until attached, pause and resume
    A method's receive path delivers straight to ``protocol.dataReceived``
    when a protocol is attached, the stream is not paused and nothing is held;
    each method keeps that test inline in its own fast path, since it is the
    per-block cost.  Otherwise it calls :meth:`_hold` with the bytes and a
    *token*, what the peer is owed once they are delivered (IBB: the block's
    acknowledgement, so a slow reader slows the remote sender; SOCKS5:
    nothing, it pauses its socket in :meth:`_pauseReading` instead).
    :meth:`_deliver` hands held bytes over in order while a protocol is
    attached and the stream is not paused, giving each token to
    :meth:`_released`, and calls :meth:`_drained` when nothing is left.

The end, in order
    * The peer's EOF (a half-close, SOCKS5's FIN) is :meth:`_peerEnded`.
      After the last held byte a protocol providing ``IHalfCloseableProtocol``
      gets ``readConnectionLost``; the method is then told
      (:meth:`_peerEOFDelivered`) so that it can close for good when both
      directions are done, or at once for a protocol that cannot half-close
      (as Twisted's TCP does), ``connectionLost(ConnectionDone)`` following.
    * The end of the stream is :meth:`_ended`.  A clean one
      (``ConnectionDone``) is delivered after every held byte and the EOF.
      An error is delivered at once and drops what is held: a broken stream
      is news now, not after a paused reader catches up, and what is held
      can no longer make a whole stream.  The end is delivered even while the
      stream is paused: it is not data, and a link must learn that its peer
      went away whether or not a local client is reading (issue 6 f).
      Under TLS it is delivered on a later reactor turn (``clock``), as
      Twisted's TCP does, since the TLS layer may be inside one of its own
      calls into the stream.
    * Before a protocol is attached, ``onFirstData`` and ``onLost`` (when
      set) are called on the first held byte and on the end: how a method
      watches a stream it has not handed out yet (SOCKS5 activation, spare
      direct connections).  ``attachProtocol`` clears both.

Sending stays the method's own
    ``loseConnection`` is a full close for every method.  Only a method that
    can carry a half-close defines ``loseWriteConnection``: the link layer
    asks ``getattr(stream, "loseWriteConnection", None)``, so this class must
    never define it.  ``producer`` is the producer the writer registered
    (``None`` without one); ``connected`` is true until the end is known;
    ``disconnecting`` once a close was asked or the end is known.

TLS
    :meth:`startTLS` puts Twisted's TLS protocol between the stream and its
    protocol, as ``twisted.internet._newtls`` does for TCP; see
    :mod:`bytestreamd.transport.tls`.  Until then ``getPeerCertificate`` and
    ``getHandle`` return ``None``.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Deque, Optional, Tuple

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd.interfaces import IBytestream, StreamContext
from bytestreamd.transport import tls


@implementer(IBytestream)
class BytestreamTransport:
    """
    The shared half of a bytestream transport (see the module docstring).

    Subclasses provide ``write``, ``writeSequence``, ``loseConnection``,
    ``abortConnection``, ``registerProducer``, ``unregisterProducer``,
    ``stopProducing``, ``getPeer``, ``getHost`` and :meth:`_closing`, and may
    override the hooks :meth:`_released`, :meth:`_pauseReading`,
    :meth:`_drained`, :meth:`_peerEOFDelivered` and :meth:`_connectionEnding`.
    """

    method = "?"
    #: The bytes travel as XMPP stanzas (IBB): every chunk is already a sign
    #: of life to the liveness monitor, which watches stanzas.
    inBand = False

    #: The producer registered by whoever writes to the stream (IConsumer).
    producer: Any = None
    #: Whether that producer is a push producer.
    streamingProducer: bool = False

    def __init__(self, ctx: Optional[StreamContext] = None, clock: Any = None):
        #: The negotiation session's id (SI id, Jingle sid).
        self.sessionId: Optional[str] = None
        #: The transport sid the method puts on its wire (IBB, SOCKS5 sid).
        self.sid: Optional[str] = None
        self.peerJID: Optional[JID] = None
        self.localJID: Optional[JID] = None
        #: We initiated the bytestream (offered it); the TLS client by default.
        self.weAreInitiator: Optional[bool] = None
        #: IReactorTime for timers of the method and of the TLS layer.
        self.clock = clock
        self.protocol: Any = None
        self.bytesSent = 0
        self.bytesReceived = 0
        #: Called (no arguments) on the first byte held before a protocol is
        #: attached; ``onLost`` with the reason on an end before then.
        self.onFirstData: Optional[Callable[[], None]] = None
        self.onLost: Optional[Callable[[Failure], None]] = None
        self._held: Deque[Tuple[bytes, Any]] = collections.deque()
        self._heldBytes = 0
        self._paused = False          # by the consumer of what we deliver
        self._peerEOF = False         # the peer half-closed
        self._eofPending = False      # ... and the protocol has not been told
        self._endReason: Optional[Failure] = None  # known, not yet delivered
        self._finished = False        # connectionLost delivered
        self._tls: Any = None         # the TLSMemoryBIOProtocol after startTLS
        self._endCall: Any = None     # under TLS: the end, on a later turn
        self._endDue = False
        if ctx is not None:
            self._identify(ctx)

    def _identify(self, ctx: StreamContext) -> None:
        """Say which session this stream serves: once, where it is chosen."""
        if self.sid is not None:
            raise RuntimeError("%r already serves session %s" % (self, self.sid))
        self.sessionId = ctx.session
        self.sid = ctx.sid
        self.peerJID = ctx.peer
        self.localJID = ctx.local
        self.weAreInitiator = ctx.weAreInitiator

    # -- state -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._endReason is None and not self._finished

    @property
    def disconnecting(self) -> bool:
        layer = self._tls
        return self._closing() or (layer is not None and bool(layer.disconnecting))

    def _closing(self) -> bool:
        """
        A close was asked or the end is known, in the stream's own terms
        (not its TLS layer's: the layer must still be able to write its
        close_notify after the application asked to close).
        """
        return self._endReason is not None or self._finished

    # -- IBytestream / IPushProducer ----------------------------------------------

    def attachProtocol(self, protocol: Any) -> None:
        if self.protocol is not None:
            raise RuntimeError("a protocol is already attached to %r" % (self,))
        self.onFirstData = self.onLost = None
        self.protocol = protocol
        protocol.makeConnection(self)
        self._deliver()

    def pauseProducing(self) -> None:
        self._paused = True
        self._pauseReading()

    def resumeProducing(self) -> None:
        self._paused = False
        self._deliver()

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        """
        Encrypt from here on (``ITLSTransport.startTLS``).  ``normal``: the
        bytestream's initiator is the TLS client; ``False`` swaps the roles.
        """
        tls.startTLS(self, contextFactory, normal)

    def getPeerCertificate(self) -> Any:
        """The peer's certificate (pyOpenSSL X509) once TLS is up, else None."""
        layer = self._tls
        if layer is None or layer.getHandle() is None:
            return None
        return layer.getPeerCertificate()

    def getHandle(self) -> Any:
        """The ``OpenSSL.SSL.Connection`` once TLS is started, else None."""
        return self._tls.getHandle() if self._tls is not None else None

    # -- for subclasses: what comes in -------------------------------------------

    def _hold(self, data: bytes, token: Any = None) -> None:
        """Keep ``data`` until it may be delivered; ``token`` is then released."""
        self._held.append((data, token))
        self._heldBytes += len(data)
        if self.protocol is None and self.onFirstData is not None:
            callback, self.onFirstData = self.onFirstData, None
            callback()

    def _peerEnded(self) -> None:
        """The peer half-closed (EOF): tell the protocol after what is held."""
        if self._peerEOF:
            return
        self._peerEOF = self._eofPending = True
        self._deliver()

    def _ended(self, reason: Failure) -> None:
        """
        The stream is over.  ``ConnectionDone``: after what is held (and the
        EOF); anything else: at once, dropping what is held, and replacing a
        clean end that was not delivered yet.
        """
        if self._finished:
            return
        if reason.check(ConnectionDone) is None:
            self._held.clear()
            self._heldBytes = 0
            self._eofPending = False
        elif self._endReason is not None:
            return
        self._endReason = reason
        if self.protocol is None and self.onLost is not None:
            callback, self.onLost = self.onLost, None
            callback(reason)
        self._deliver()

    def _deliver(self) -> None:
        """Deliver what is held, then the EOF, then the end, as far as allowed."""
        held = self._held
        while held and not self._paused and self.protocol is not None \
                and not self._finished:
            data, token = held.popleft()
            self._heldBytes -= len(data)
            if data:
                self.protocol.dataReceived(data)
            if token is not None:
                self._released(token)
        if held or self.protocol is None or self._finished:
            return
        if self._eofPending:
            self._eofPending = False
            halfCloseable = IHalfCloseableProtocol(self.protocol, None)
            if halfCloseable is not None:
                halfCloseable.readConnectionLost()
            if self._finished:
                return
            self._peerEOFDelivered(halfCloseable is not None)
        reason = self._endReason
        if reason is not None and not self._finished:
            if self._tls is not None and not self._endDue and self.clock is not None:
                # Twisted's TLS layer is not reentrant: it may be inside
                # one of its own calls into us (an abort from its
                # handshake callback, a close while it reads), and tears
                # its connection down in connectionLost.  End on a later
                # turn, as Twisted's TCP always does.
                if self._endCall is None:
                    self._endCall = self.clock.callLater(0, self._endNow)
                return
            self._finished = True
            self._connectionEnding()
            if self._tls is not None:
                tls.ending(self._tls, reason)
            self.protocol.connectionLost(reason)
            return
        if not self._paused and not self._finished:
            self._drained()

    def _endNow(self) -> None:
        self._endCall = None
        self._endDue = True
        self._deliver()

    # -- hooks -------------------------------------------------------------------

    def _released(self, token: Any) -> None:
        """A held item carrying ``token`` was delivered."""

    def _pauseReading(self) -> None:
        """The consumer paused us: slow the peer down if the method can."""

    def _drained(self) -> None:
        """Nothing is held and we are not paused: the peer may send again."""

    def _peerEOFDelivered(self, halfCloseable: bool) -> None:
        """
        The protocol was told of the peer's EOF (``halfCloseable``) or could
        not be: by default close the stream then, as Twisted's TCP does for
        a protocol that cannot half-close.
        """
        if not halfCloseable and self._endReason is None:
            type(self).loseConnection(self)  # not TLS's: the peer is gone

    def _connectionEnding(self) -> None:
        """Just before ``connectionLost`` is delivered."""


__all__ = ["BytestreamTransport"]
