"""
One XEP-0047 In-Band Bytestream session as a Twisted transport.

:class:`IBBStream` is the transport face of one session: ``write``,
``loseConnection``, producers both ways, holding what arrives until the
protocol may have it.  What the session decides -- the send window and its
acknowledgements, the receive checks, the close handshake -- is the
sans-I/O machine :class:`~bytestreamd.methods.ibb_session.IBBSession`,
which the stream owns (``stream.session``) and talks to through its public
inputs; the stream is the machine's local side
(:class:`~bytestreamd.methods.ibb_session.IIBBSessionLocal`).
:class:`~bytestreamd.methods.ibb.IBBMethod` (the XMPP handler) creates the
streams and routes stanzas to their sessions.

Why the sender pipelines (``window``, default 32)
    The XEP lets a sender go on without waiting for each acknowledgement
    ("The sender of a data chunk need not wait for these acknowledgements").
    Stop-and-wait -- what most clients do -- moves one block per round trip
    through two servers, i.e. 4 KiB per ~50-200 ms whatever the bandwidth.
    With up to ``window`` data iqs unacknowledged the sender fills the pipe,
    while the acknowledgements still bound what is in flight (so still
    bound what the servers must queue, which is what the XEP's
    recommendation to wait is about).  32 was chosen by measurement
    (``bench/ibb`` through a local Prosody, 4 KiB blocks, same run): 16 in
    flight left the server idle between bursts (66% of the raw-client
    ceiling), 32 reached 85-100% at every block size, 64 gained nothing
    more.  32 x 4 KiB = 128 KiB in flight is still small next to what any
    server buffers per session.

Backpressure, both ways
    * Sending: ``write`` queues into a bytearray; a registered producer is
      paused while more than ``window * blockSize`` bytes wait to be sent and
      resumed below half of that.
    * Receiving: when the local consumer pauses the stream (or before a
      protocol is attached) received blocks are held *and so are their
      acknowledgements*; the peer then stalls once its window is full.  On
      resume the held blocks are delivered and the held acks sent.  What is
      held is bounded by ``maxReceiveBuffer``: a peer that ignores the
      protocol's implicit window breaks the stream.

Message mode (``stanza='message'``) has no acknowledgements, hence **no
end-to-end flow control**: the sender only paces itself (``window`` blocks
per reactor turn, local producer paused by the same buffer water marks), and
a receiver that is paused for long enough will see its receive buffer
overrun and break the stream.  Prefer iq mode, as the XEP recommends.

The data path never builds domish elements for outgoing blocks and keeps one
timer per stream (reset on each ack) rather than one per block.

Holding, pause/resume towards the protocol, the order of the end and
``startTLS`` are :class:`~bytestreamd.transport.base.BytestreamTransport`'s;
a held block carries its acknowledgement as the token released on delivery.
IBB has no half-close (a ``<close/>`` ends both directions), so this class
has no ``loseWriteConnection``.

"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IAddress
from twisted.python import failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd.interfaces import StreamContext
from bytestreamd.methods.ibb_session import IBBSession, IIBBSessionLocal
from bytestreamd.transport.base import BytestreamTransport
from bytestreamd.xmpp.stanzas import parseJID


@implementer(IAddress)
class IBBAddress:
    """One end of an IBB session: a full JID and the session id."""

    def __init__(self, jid: JID, sid: str):
        self.jid = jid
        self.sid = sid

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, IBBAddress)
                and (self.jid, self.sid) == (other.jid, other.sid))

    def __hash__(self) -> int:
        return hash((self.jid, self.sid))

    def __repr__(self) -> str:
        return "IBBAddress(%s, %s)" % (self.jid.full(), self.sid)


def sameJID(value: Optional[str], jidString: str, jid: JID) -> bool:
    """Compare a wire address to a full JID: string first, stringprep if not."""
    if value == jidString:
        return True
    return value is not None and parseJID(value) == jid


_sameJID = sameJID   # the old private name


@implementer(IIBBSessionLocal)
class IBBStream(BytestreamTransport):
    """
    One IBB session, as a transport (see the module docstring for flow
    control).  Created by :class:`~bytestreamd.methods.ibb.IBBMethod`
    together with its :class:`IBBSession` (``session``), whose keyword
    arguments ``sessionArgs`` are; not meant to be built alone.
    """

    method = "ibb"
    inBand = True
    #: Budget hook (bytestreamd.links.budget): called after ``bytesSent``
    #: grows -- an acknowledgement (iq), a block sent (message) -- so the
    #: link can give those bytes back to the daemon-wide budget.
    onSent: Optional[Callable[[], None]] = None

    def __init__(self, ctx: StreamContext, clock: Any, owner: Any, tag: str,
                 blockSize: Optional[int], stanza: Optional[str], **sessionArgs: Any):
        #: The session machine; this stream is its local side.
        self.session = IBBSession(owner, self, clock, ctx.sid, ctx.peer, tag,
                                  ctx.weAreInitiator, blockSize, stanza, **sessionArgs)
        BytestreamTransport.__init__(self, ctx, clock)
        self._producerPaused = False

    def __repr__(self) -> str:
        return "<IBBStream sid=%s peer=%s %s/%s>" % (
            self.sid, self.session.peerStr, self.stanza, self.blockSize)

    # -- what the session knows -----------------------------------------------

    @property
    def blockSize(self) -> int:
        return self.session.blockSize

    @property
    def stanza(self) -> str:
        return self.session.stanza

    @property
    def bytesSent(self) -> int:     # type: ignore[override]
        return self.session.bytesSent

    @bytesSent.setter
    def bytesSent(self, value: int) -> None:
        self.session.bytesSent = value

    @property
    def bytesReceived(self) -> int:     # type: ignore[override]
        return self.session.bytesReceived

    @bytesReceived.setter
    def bytesReceived(self, value: int) -> None:
        self.session.bytesReceived = value

    @property
    def _highWater(self) -> int:
        return self.session.window * self.session.blockSize

    # -- ITransport ---------------------------------------------------------

    def _closing(self) -> bool:
        return not self.session.isOpen or BytestreamTransport._closing(self)

    def write(self, data: bytes) -> None:
        session = self.session
        session.write(data)
        if self.producer is not None and not self._producerPaused \
                and session.queued > session.window * session.blockSize:
            self._producerPaused = True
            if self.streamingProducer:
                self.producer.pauseProducing()

    def writeSequence(self, data) -> None:
        type(self).write(self, b"".join(data))

    def loseConnection(self) -> None:
        if self._closing():
            return
        self.session.close()

    def abortConnection(self) -> None:
        if self._finished:
            return
        self._held.clear()
        self._heldBytes = 0
        self.session.abort()
        self._ended(failure.Failure(ConnectionAborted()))

    def getPeer(self) -> IBBAddress:
        return IBBAddress(self.peerJID, self.sid)

    def getHost(self) -> IBBAddress:
        return IBBAddress(self.localJID, self.sid)

    # -- IConsumer ----------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("a producer is already registered on %r" % (self,))
        if self._closing():
            producer.stopProducing()
            return
        self.producer = producer
        self.streamingProducer = bool(streaming)
        self._producerPaused = self.session.queued > self._highWater
        if self._producerPaused and streaming:
            producer.pauseProducing()
        elif not streaming:
            producer.resumeProducing()

    @property
    def sendBlocked(self) -> bool:
        """Is the local writer paused because too much waits to be sent?"""
        return self.producer is not None and self._producerPaused

    def unregisterProducer(self) -> None:
        self.producer = None
        self._producerPaused = False

    # -- IPushProducer (towards the local consumer; pause is the base's) -----

    def stopProducing(self) -> None:
        self.loseConnection()

    # -- IIBBSessionLocal: what the session hands us ---------------------------

    def received(self, payload: bytes, ack: Optional[str]) -> Optional[int]:
        if self._paused or self.protocol is None or self._held:
            self._hold(payload, ack)
            return self._heldBytes
        if payload:
            self.protocol.dataReceived(payload)
        return None

    def takeHeldAcks(self) -> List[str]:
        held = self._held
        acks = [ack for _, ack in held if ack is not None]
        if acks:
            for i in range(len(held)):
                held[i] = (held[i][0], None)
        return acks

    def sendProgress(self) -> None:
        # The session calls this after bytesSent grew (a block sent as a
        # message, an acknowledged iq): give those bytes back to the budget.
        if self.onSent is not None:
            self.onSent()
        producer = self.producer
        if producer is None or self.session.queued > self._highWater // 2:
            return
        if self._producerPaused or not self.streamingProducer:
            self._producerPaused = False
            producer.resumeProducing()

    def ended(self, reason: failure.Failure) -> None:
        self._ended(reason)

    # -- BytestreamTransport hooks -----------------------------------------------

    def _released(self, ack: str) -> None:
        """A held block was delivered: the session acknowledges it now."""
        self.session.released(ack)

    def _connectionEnding(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()


__all__ = ["IBBStream", "IBBAddress", "sameJID"]
