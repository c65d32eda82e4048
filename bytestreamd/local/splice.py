"""
The splice: one link's local connection joined to its bytestream, doing
what the link's lifecycle (:mod:`bytestreamd.links.lifecycle`) decides.

It follows ``twisted.protocols.portforward``: two ordinary protocols, each
writing into the other's transport, with each transport registered as a
streaming producer on the other, so a slow local reader pauses the
bytestream (which stops acknowledging the peer: backpressure reaches the
remote sender), and a bytestream that cannot send fast enough pauses the
local socket.  Before the link is GOOD, local bytes are held up to
``holdLimit``; beyond that the local socket is paused, so nothing is dropped.
The socket side (the listening link socket, one client at a time) is
:mod:`bytestreamd.local.sockets`.

Why one long module: the splice and the effects it performs are one adapter; splitting the effect dispatch from the data path would put a call on every chunk.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
import termios
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional

from twisted.internet import error, interfaces, protocol
from twisted.python import failure
from zope.interface import implementer

from bytestreamd.links import lifecycle as lc
from bytestreamd.errors import BytestreamBroken
from bytestreamd.events import CLOS
from bytestreamd.interfaces import ILinkEnd
from bytestreamd.links.lifecycle import LinkLifecycle

if TYPE_CHECKING:
    from bytestreamd.links.budget import ByteBudget
    from bytestreamd.local.sockets import LocalProtocol


@implementer(interfaces.IHalfCloseableProtocol)
class RemoteProtocol(protocol.Protocol):
    """
    The protocol attached to the bytestream; talks to its Splice.

    Half-closeable: a method that can carry a half-close (SOCKS5: TCP)
    reports the peer's EOF as ``readConnectionLost`` and keeps the other
    direction open; IBB, which has no half-close, just ends the stream.
    """

    splice: "Splice"

    def dataReceived(self, data: bytes):
        self.splice.fromRemote(data)

    def readConnectionLost(self):
        self.splice.remoteEOF()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=None):
        self.splice.remoteLost(reason)


@implementer(interfaces.IPushProducer)
class _StreamProducer:
    """
    The bytestream as the local transport's producer.  Pause and resume go
    straight through (backpressure from a slow local reader); ``stopProducing``
    -- which a transport calls when its connection is lost -- does nothing:
    how the link ends is the lifecycle's decision (issue 6 e: the local
    client going away used to tear the transport down behind its back).
    """

    __slots__ = ("stream", "paused")

    def __init__(self, stream):
        self.stream = stream
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True
        self.stream.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self.stream.resumeProducing()

    def stopProducing(self) -> None:
        pass


@implementer(interfaces.IPushProducer)
class _LocalGate:
    """
    The local transport as the stream's producer when several parties may
    pause it: the stream (its own backpressure), the hold before GOOD, and
    the daemon-wide byte budget (:mod:`bytestreamd.links.budget`).  Twisted's
    pause and resume do not count, so the transport reads again only when
    nobody holds it back.  ``stopProducing`` goes straight through, as it
    did when the transport itself was the producer.
    """

    __slots__ = ("transport", "reasons")

    def __init__(self, transport):
        self.transport = transport
        self.reasons: set = set()

    def pause(self, reason: str) -> None:
        if not self.reasons:
            self.transport.pauseProducing()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.reasons:
            self.reasons.discard(reason)
            if not self.reasons:
                self.transport.resumeProducing()

    def pauseProducing(self) -> None:
        self.pause("stream")

    def resumeProducing(self) -> None:
        self.resume("stream")

    def stopProducing(self) -> None:
        self.transport.stopProducing()


@implementer(interfaces.IPushProducer)
class _LifecycleStops:
    """
    The local side as an e2e stream's producer: pause and resume go
    through, ``stopProducing`` does not.  A transport that breaks stops its
    producer at once, but the TLS layer above it reports the end (with
    TLS's reason: a forged tail's ``bad record mac``) only a reactor turn
    later (bytestreamd.transport.tls); closing the local client meanwhile
    would make the link's reason "the local client went away".  The
    lifecycle closes the local side when the link ends.
    """

    __slots__ = ("producer",)

    def __init__(self, producer):
        self.producer = producer

    def pauseProducing(self) -> None:
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        pass


class LinkClosed(error.ConnectionDone):
    """
    A link ended ``CLOS``: how ``Splice`` reports a clean end, as the
    ``ConnectionDone`` Twisted would.  ``confirmed`` says whether the peer
    confirmed the byte counts (:mod:`bytestreamd.links.lifecycle`); ``reason``
    names who closed it when that is worth saying.
    """

    def __init__(self, reason: Optional[str] = None, confirmed: bool = False):
        error.ConnectionDone.__init__(self, reason or "closed")
        self.reason = reason
        self.confirmed = confirmed


@implementer(ILinkEnd)
class Splice:
    """
    Joins one local connection and one bytestream, and performs what the
    link's :class:`~bytestreamd.lifecycle.LinkLifecycle` decides.

    Before the link is GOOD the splice holds what the local client writes
    (``holdLimit``, then backpressure).  At GOOD (:meth:`streamReady`) it
    attaches to the stream at once -- so a peer's close or a broken
    transport is seen even when no local client has connected yet -- but
    keeps the stream paused until a local client is there to take the
    bytes.

    ``onRemoteClosed(reason)`` is called once when the link has ended:
    ``Failure(LinkClosed)`` for ``CLOS``, ``Failure(BytestreamBroken)`` for
    ``ERR``.  ``channel`` (``sendEOF(sent)``, ``sendEnd(end)``) carries the
    end confirmation to a bytestreamd peer; ``clock`` runs the settle timer.
    ``budget`` (a :class:`~bytestreamd.links.budget.ByteBudget`) is charged
    for every byte taken from the local client until the stream is rid of
    it (``stream.bytesSent``: acknowledged, for IBB); while it is exhausted
    the local client is not read.
    """

    def __init__(self, holdLimit: int, onRemoteClosed: Callable[[failure.Failure], None],
                 clock=None, settleTimeout: float = 30.0,
                 onLocalConnected: Optional[Callable[[], None]] = None,
                 budget: Optional[ByteBudget] = None):
        self.holdLimit = holdLimit
        self.budget = budget
        #: Bytes this link has charged to the budget and not released.
        self._charged = 0
        #: ``stream.bytesSent`` when the budget last looked.
        self._budgetSent = 0
        self._budgetPaused = False
        self._gate: Optional[_LocalGate] = None
        self.onLocalConnected = onLocalConnected
        self.onRemoteClosed = onRemoteClosed
        self.clock = clock
        self.settleTimeout = settleTimeout
        self.local: Optional[LocalProtocol] = None
        self.stream = None
        self.lifecycle: Optional[LinkLifecycle] = None
        self.channel = None
        #: Called on every chunk from the transport: the peer is alive.
        self.onActivity: Optional[Callable[[], None]] = None
        self._held: List[bytes] = []
        self._heldBytes = 0
        self._localPaused = False
        self._localEOF = False
        self._localLost = False
        self._joined = False
        self._timer = None
        self._ended = False

    # --- local side -------------------------------------------------------

    def localConnected(self, proto: LocalProtocol) -> None:
        self.local = proto
        self._hadLocal = True
        self._watchLocalEnd(proto.transport)
        if self.budget is not None and self._budgetMember:
            # A member from its first local client on (a link that never
            # gets one takes nothing, and is never paused).
            self._gate = _LocalGate(proto.transport)
            self.budget.add(self, holding=self.stream is None)
        if self.onLocalConnected is not None:
            self.onLocalConnected()
        if self._ended:
            proto.transport.loseConnection()
            return
        if self.stream is not None:
            self._join()

    def fromLocal(self, data: bytes) -> None:
        self._localActive = True
        lifecycle = self.lifecycle
        if lifecycle is not None and self._joined and not self._held:
            if lifecycle.localData(len(data)):
                if self._kept is not None:
                    self._keep(data)
                if self.budget is not None:
                    self._charge(len(data))
                    self.stream.write(data)
                    self._budgetSync()
                else:
                    self.stream.write(data)
            return
        self._held.append(data)
        self._heldBytes += len(data)
        if self.budget is not None:
            self._charge(len(data))
        if self._heldBytes >= self.holdLimit and not self._localPaused:
            self._localPaused = True
            self._pauseLocal("hold")

    def localEOF(self) -> None:
        self._localEOF = True
        if self._joined and not self._held:
            self._perform(self.lifecycle.localEnded())

    def localLost(self, reason) -> None:
        if self.local is None:
            return
        transport, self.local = self.local.transport, None
        self._localEOF = self._localLost = True
        # Clean only if nothing we handed it was still waiting: the reactor
        # may see the client's close before it tries the next write.
        byError = reason is not None and not reason.check(error.ConnectionDone)
        look = self._localLook
        if look is not None:
            # What the socket said just before it was closed (soak finding
            # E): Twisted reports a hang-up it sees while not reading -- a
            # paused reader, or a read side that already had its EOF -- as
            # ConnectionLost, whether or not anything was lost; only a
            # reader's error (ECONNRESET from recv, which also clears
            # SO_ERROR) is evidence by itself.
            self._localReset = look.reset or look.unread > 0 or self._readFailed
        else:
            self._localReset = byError or unreadByLocal(transport) > 0
        self._localReset = self._localReset or self._resetSeen
        if self.stream is not None:
            self.stream.unregisterProducer()
        if self._joined and not self._held:
            # Nobody reads any more: let what arrives flow, to be counted
            # and dropped (the lifecycle reports it), instead of stalling.
            self.stream.resumeProducing()
            self._perform(self.lifecycle.localLost(self._localReset))

    # --- remote side ------------------------------------------------------

    def streamReady(self, stream, lifecycle: Optional[LinkLifecycle] = None,
                    channel=None) -> None:
        """
        The link is GOOD.  ``lifecycle`` decides how it ends (default: a
        peer that cannot confirm); ``channel`` sends eof/end to the peer.
        """
        self.stream = stream
        self.lifecycle = lifecycle or LinkLifecycle(False, self.settleTimeout)
        self.channel = channel
        if getattr(stream, "relayed", False) and self.lifecycle.confirmed \
                and channel is not None:
            if getattr(stream, "e2eFingerprint", None) is None:
                # A relay may strand our last bytes (docs/protocol.rst): keep
                # them, to re-send in-band if the peer asks.
                self._kept = bytearray()
                channel.onTail = self.peerTail
            else:
                # Never the payload of an e2e link: it would cross the
                # servers in clear, and a tail they forged would reach the
                # local client.  Its transport keeps its ciphertext instead,
                # and takes the peer's below TLS (bytestreamd.e2e.tail).
                self._cipherTail = getattr(stream, "cipherTail", None)
                if self._cipherTail is not None:
                    channel.onTail = self.peerCipherTail
        if self.budget is not None:
            self._budgetSent = stream.bytesSent
            stream.onSent = self._budgetSync  # IBB: called on every acknowledgement
            self.budget.moving(self)
        remote = RemoteProtocol()
        remote.splice = self
        if self.local is None:
            # Hold what arrives (in the stream, with backpressure to the
            # peer) until someone is here to read it.
            stream.pauseProducing()
        stream.attachProtocol(remote)
        if self.local is not None or self._localLost:
            self._join()

    def _join(self) -> None:
        if self._joined or self._ended:
            return
        self._joined = True
        lifecycle = self.lifecycle
        held, self._held, self._heldBytes = self._held, [], 0
        if self.local is not None:
            localTransport = self.local.transport
            producer = self._gate or localTransport
            if getattr(self.stream, "e2eFingerprint", None) is not None:
                producer = _LifecycleStops(producer)
            self.stream.registerProducer(producer, True)
            self._producer = _StreamProducer(self.stream)
            localTransport.registerProducer(self._producer, True)
            if self._localPaused:
                self._localPaused = False
                self._resumeLocal("hold")
        accepted = [data for data in held if lifecycle.localData(len(data))]
        if self.budget is not None:
            self._release(sum(map(len, held)) - sum(map(len, accepted)))
        if accepted:
            if self._kept is not None:
                for data in accepted:
                    self._keep(data)
            self.stream.writeSequence(accepted)
            if self.budget is not None:
                self._budgetSync()
        if self._localLost:
            self._perform(lifecycle.localLost(self._localReset))
        elif self._localEOF:
            self._perform(lifecycle.localEnded())
        if self.local is not None and not self._ended:
            self.stream.resumeProducing()
            if self._pendingLocalEOF:
                self._pendingLocalEOF = False
                self._halfCloseLocal()

    _pendingLocalEOF = False
    _localActive = False
    #: A local client has connected (ever): until then nothing is unread.
    _hadLocal = False
    #: A relayed link's last bytes sent (at most ``tailKeep``); None: not kept.
    _kept: Optional[bytearray] = None
    tailKeep = 65536
    #: Part of the peer's stream came in-band; ``_remotePos`` counts what
    #: the transport brought since, to drop its duplicates.
    _tailed = False
    _remotePos = 0
    #: What the local socket said just before Twisted closed it (LocalLook).
    _localLook: Optional["LocalLook"] = None
    #: We saw the local client's reset ourselves (SO_ERROR) and aborted.
    _resetSeen = False
    #: A read of the local socket failed (recv: ECONNRESET...).
    _readFailed = False
    _localReset = False
    _producer = None
    _stallTimer = None
    _graceTimer = None
    #: Seconds without progress on an announced tail before asking the peer
    #: to flush (see LinkLifecycle.tailStalled).
    stallTimeout = 2.0
    #: A relayed e2e link's transport tail (bytestreamd.e2e.tail); None otherwise.
    _cipherTail = None
    #: After a flush: the give-up timer, and how much had arrived when it started.
    _flushTimer = None
    _flushArrived = 0

    def fromRemote(self, data: bytes) -> None:
        if self._tailed:
            # Some of the stream came in-band (peerTail): what the transport
            # brings of the same bytes now is a duplicate.
            start, arrived = self._remotePos, self.lifecycle.delivered + self.lifecycle.discarded
            self._remotePos = start + len(data)
            if start < arrived:
                data = data[arrived - start:]
                if not data:
                    return
        self._fromPeer(data)

    def peerTail(self, offset: int, data: bytes) -> None:
        """
        The peer re-sent bytes of its stream in-band (it kept them: a relay
        stranded them, see docs/protocol.rst).  Only what has not arrived is
        new; a gap (bytes before ``offset`` still missing) cannot be used.
        """
        lifecycle = self.lifecycle
        if lifecycle is None or lifecycle.finished is not None:
            return
        arrived = lifecycle.delivered + lifecycle.discarded
        if offset > arrived or offset + len(data) <= arrived:
            return
        if not self._tailed:
            self._tailed = True
            self._remotePos = arrived
        self._fromPeer(data[arrived - offset:])

    def peerCipherTail(self, offset: int, data: bytes) -> None:
        """
        The peer re-sent bytes of its *transport* stream (an e2e link's
        ciphertext, ``offset`` in transport bytes): into the transport's
        input, below TLS, which authenticates them -- a forged tail ends the
        link ERR through the TLS layer, never as data.
        """
        lifecycle = self.lifecycle
        if lifecycle is None or lifecycle.finished is not None or self._cipherTail is None:
            return
        self._cipherTail.feed(offset, data)

    def _fromPeer(self, data: bytes) -> None:
        lifecycle = self.lifecycle
        local = self.local
        if local is not None and not lifecycle.localGone and not lifecycle.closeRequested \
                and lifecycle.finished is None:
            local.transport.write(data)
        if self.onActivity is not None:
            self.onActivity()
        effects = lifecycle.remoteData(len(data))
        if effects:
            self._perform(effects)
        if lifecycle.peerSent is not None:
            self._watchTail()

    def _watchTail(self) -> None:
        """While announced bytes are missing, notice when they stop coming."""
        lifecycle = self.lifecycle
        if self._stallTimer is not None and self._stallTimer.active():
            self._stallTimer.cancel()
        self._stallTimer = None
        if (self.clock is None or lifecycle.finished is not None or lifecycle.flushAsked
                or lifecycle.delivered + lifecycle.discarded >= lifecycle.peerSent):
            return
        self._stallTimer = self.clock.callLater(self.stallTimeout, self._tailStalled)

    #: How often to look whether the local client has read everything.
    drainPoll = 0.05
    _drainTimer = None

    def _checkDrained(self) -> None:
        self._drainTimer = None
        lifecycle = self.lifecycle
        if lifecycle.finished is not None or lifecycle.drained:
            return
        local = self.local
        if local is None:
            if not self._hadLocal:
                # No local client has come yet: nothing was handed to one,
                # so nothing is unread.  Waiting here would wait for an
                # attach that may never come (a peer's end that arrives
                # before, or without, our local client: issue 6's CLOSE
                # race; nothing polls again once a client connects).
                self._perform(lifecycle.localDrained())
            return  # otherwise localLost tells the lifecycle how it went
        if localWasReset(local.transport):
            # It closed with bytes unread; the kernel dropped them (so the
            # queue looks empty) and left ECONNRESET: a loss, not a drain.
            # (Reading SO_ERROR cleared it: remember it for localLost.)
            self._resetSeen = True
            local.transport.abortConnection()
            return
        if unreadByLocal(local.transport) == 0:
            self._perform(lifecycle.localDrained())
        elif self.clock is not None:
            # Waiting on our own reader: backpressure, never an error.
            self._drainTimer = self.clock.callLater(self.drainPoll, self._checkDrained)
        else:
            self._perform(lifecycle.localDrained())

    def _graceExpired(self) -> None:
        """
        The grace is for a local client that has stopped: one still writing,
        or held back because the peer's reader is slow (backpressure) or the
        daemon-wide budget is exhausted (we are not reading it), gets more
        time (soak finding D).
        """
        self._graceTimer = None
        if (self._localActive or getattr(self.stream, "sendBlocked", False)
                or self._budgetPaused):
            self._localActive = False
            if self.clock is not None and self.lifecycle.finished is None:
                self._graceTimer = self.clock.callLater(self.lifecycle.eofGrace,
                                                        self._graceExpired)
            return
        self._perform(self.lifecycle.graceExpired())

    def _tailStalled(self) -> None:
        self._stallTimer = None
        if self._producer is not None and self._producer.paused:
            self._watchTail()  # our reader is the slow one: that is backpressure
            return
        self._perform(self.lifecycle.tailStalled(self.stallTimeout))

    def remoteEOF(self) -> None:
        """The transport's EOF from the peer (a SOCKS5 half-close)."""
        self._perform(self.lifecycle.transportEOF())

    def remoteLost(self, reason) -> None:
        if self.budget is not None:
            self._leaveBudget()  # nothing queued in the stream will go now
        if reason is None or reason.check(error.ConnectionDone):
            self._perform(self.lifecycle.transportEnded())
        else:
            self._perform(self.lifecycle.transportFailed(_why(reason)))

    # --- the peer, over XMPP, and the link layer ----------------------------

    def peerEOF(self, sent: int) -> None:
        self._perform(self.lifecycle.peerEOF(sent))
        self._watchTail()

    def peerAskedFlush(self, received: Optional[int] = None) -> None:
        if self._cipherTail is not None:
            self._answerCipherFlush(received)
            return
        if self.lifecycle is not None:
            keptFrom = None
            if self._kept is not None:
                keptFrom = self.lifecycle.sent - len(self._kept)
            self._perform(self.lifecycle.peerAskedFlush(received, keptFrom))

    def _answerCipherFlush(self, received: Optional[int]) -> None:
        """
        A relayed e2e link's peer is missing our last bytes; ``received``
        counts *transport* bytes (bytestreamd.e2e.tail).  Send the kept
        ciphertext from there on; there is no fallback (TLS has no
        half-close), so a flush we cannot answer leaves the peer to give up
        (``tailTimeout``) and end the link ERR.
        """
        lifecycle = self.lifecycle
        if lifecycle is None or lifecycle.finished is not None or not lifecycle.eofSent \
                or received is None or self.channel is None:
            return
        data = self._cipherTail.since(received)
        if data:
            self.channel.sendTail(received, data)

    def _askedFlush(self) -> None:
        """
        We asked the peer to re-send its tail: bound the wait.  No progress
        on the announced bytes for ``settleTimeout`` -- while our own reader
        was reading -- ends the link ERR, rather than leaving it to hang
        (the relay holds the bytes, and the peer could not re-send them).
        """
        if self.clock is None:
            return
        if self._flushTimer is not None and self._flushTimer.active():
            self._flushTimer.cancel()
        lifecycle = self.lifecycle
        self._flushArrived = lifecycle.delivered + lifecycle.discarded
        self._flushTimer = self.clock.callLater(self.settleTimeout, self._flushExpired)

    def _flushExpired(self) -> None:
        self._flushTimer = None
        lifecycle = self.lifecycle
        arrived = lifecycle.delivered + lifecycle.discarded
        if lifecycle.finished is not None or lifecycle.peerSent is None \
                or arrived >= lifecycle.peerSent:
            return
        if arrived > self._flushArrived or (self._producer is not None
                                            and self._producer.paused):
            self._askedFlush()  # progress, or our reader is the slow one
            return
        self._perform(lifecycle.fail(
            "received %d of the %d bytes the peer announced; the rest did not come "
            "within %gs of asking the peer to re-send it (a relay holds it%s)"
            % (arrived, lifecycle.peerSent, self.settleTimeout,
               "; an e2e link takes it only as ciphertext"
               if self._cipherTail is not None else "")))

    def peerEnded(self, end) -> None:
        self._perform(self.lifecycle.peerEnded(end))

    def peerRefusedEnd(self, reason: str) -> None:
        if self.lifecycle is not None:
            self._perform(self.lifecycle.peerRefusedEnd(reason))

    def peerGone(self, reason: str) -> None:
        """Liveness says the peer is gone: end the link ERR now."""
        if self.lifecycle is not None:
            self._perform(self.lifecycle.peerGone(reason))

    def fail(self, reason: str) -> None:
        """End a GOOD link ERR for a local reason (no local client came)."""
        if self.lifecycle is not None:
            self._perform(self.lifecycle.fail(reason))

    def requestClose(self) -> None:
        """``CLOSE``: end the link now (the lifecycle bounds how long it takes)."""
        if self.lifecycle is not None:
            self._perform(self.lifecycle.requestClose())

    def abort(self) -> None:
        """The link ended BAD or was torn down before GOOD: close the local side now."""
        if self.budget is not None:
            self._leaveBudget()
        if self.local is not None:
            self.local.transport.abortConnection()
        self.local = None

    @property
    def hasLocal(self) -> bool:
        return self.local is not None

    def _keep(self, data: bytes) -> None:
        kept = self._kept
        kept += data
        if len(kept) > 2 * self.tailKeep:
            del kept[:len(kept) - self.tailKeep]

    def _watchLocalEnd(self, transport) -> None:
        """
        Look at the local socket just before Twisted closes it: once its
        ``connectionLost`` has run, the socket (and its SO_ERROR) is gone,
        and the reason alone cannot tell a reset from a clean close (see
        localLost).  A transport without a socket (tests, TLS) is left alone.
        """
        original = getattr(transport, "connectionLost", None)
        doRead = getattr(transport, "doRead", None)
        if original is None or doRead is None or getattr(transport, "getHandle", None) is None:
            return

        def connectionLost(reason):
            if self._localLook is None:
                self._localLook = lookAtLocal(transport)
            original(reason)

        def watchedRead():
            why = doRead()
            if isinstance(why, error.ConnectionLost):
                self._readFailed = True
            return why

        # Instance attributes: the reactor looks both up on every call.
        transport.connectionLost = connectionLost
        transport.doRead = watchedRead

    # --- the local reader, and the byte budget ------------------------------

    #: Still charging the budget (until the link is over).
    _budgetMember = True

    def _pauseLocal(self, reason: str) -> None:
        if self._gate is not None:
            self._gate.pause(reason)
        else:
            self.local.transport.pauseProducing()

    def _resumeLocal(self, reason: str) -> None:
        if self._gate is not None:
            self._gate.resume(reason)
        else:
            self.local.transport.resumeProducing()

    def _charge(self, n: int) -> None:
        if self._budgetMember:
            self._charged += n
            self.budget.charge(n)

    def _release(self, n: int) -> None:
        n = min(n, self._charged)
        if n > 0:
            self._charged -= n
            self.budget.release(n)

    def _budgetSync(self) -> None:
        """Release what the stream has got rid of since we last looked."""
        stream = self.stream
        if stream is None:
            return
        sent = stream.bytesSent
        if sent > self._budgetSent:
            delta, self._budgetSent = sent - self._budgetSent, sent
            self._release(delta)

    def budgetPause(self) -> None:
        """The budget is exhausted: take nothing more from the local client."""
        self._budgetPaused = True
        if self._gate is not None:
            self._gate.pause("budget")

    def budgetResume(self) -> None:
        self._budgetPaused = False
        if self._gate is not None:
            self._gate.resume("budget")

    def _leaveBudget(self) -> None:
        """Nothing more of ours will be sent: give it all back, read freely."""
        if not self._budgetMember:
            return
        self._budgetMember = False
        self._release(self._charged)
        self.budget.remove(self)
        if self._budgetPaused:
            self.budgetResume()

    # --- effects ------------------------------------------------------------

    def _perform(self, effects) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is lc.SendEOF:
                if self.channel is not None:
                    self.channel.sendEOF(effect.sent)
            elif kind is lc.AwaitDrain:
                self._checkDrained()
            elif kind is lc.StartGrace:
                self._localActive = False
                if self.clock is not None:
                    self._graceTimer = self.clock.callLater(effect.seconds, self._graceExpired)
            elif kind is lc.SendFlush:
                if self.channel is not None:
                    lifecycle = self.lifecycle
                    if self._cipherTail is not None:
                        # In transport bytes: the tail comes as ciphertext.
                        self.channel.sendFlush(self._cipherTail.received)
                    else:
                        self.channel.sendFlush(lifecycle.delivered + lifecycle.discarded)
                    self._askedFlush()
            elif kind is lc.SendTail:
                if self.channel is not None and self._kept is not None:
                    keptFrom = self.lifecycle.sent - len(self._kept)
                    self.channel.sendTail(effect.offset,
                                          bytes(self._kept[effect.offset - keptFrom:]))
            elif kind is lc.SendEnd:
                if self.channel is not None:
                    self.channel.sendEnd(effect)
            elif kind is lc.LocalEOF:
                self._halfCloseLocal()
            elif kind is lc.CloseLocal:
                self._closeLocal(abort=False)
            elif kind is lc.AbortLocal:
                self._closeLocal(abort=True)
            elif kind is lc.HalfCloseTransport:
                self.stream.unregisterProducer()
                loseWrite = getattr(self.stream, "loseWriteConnection", None)
                (loseWrite or self.stream.loseConnection)()
            elif kind is lc.CloseTransport:
                self.stream.unregisterProducer()
                self.stream.loseConnection()
            elif kind is lc.AbortTransport:
                self.stream.abortConnection()
            elif kind is lc.StartTimer:
                self._startTimer(effect.seconds)
            elif kind is lc.Finished:
                self._end(effect)

    def _halfCloseLocal(self) -> None:
        if self.local is None:
            if not self._localLost:
                self._pendingLocalEOF = True
            return
        transport = self.local.transport
        loseWrite = getattr(transport, "loseWriteConnection", None)
        if loseWrite is not None:
            transport.unregisterProducer()
            loseWrite()

    def _closeLocal(self, abort: bool) -> None:
        local, self.local = self.local, None
        if local is None:
            return
        transport = local.transport
        transport.unregisterProducer()
        if abort:
            transport.abortConnection()
        else:
            transport.loseConnection()

    def _startTimer(self, seconds: float) -> None:
        if self.clock is None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(seconds, self._timerFired)

    def _timerFired(self) -> None:
        self._timer = None
        self._perform(self.lifecycle.timerFired())

    def _end(self, finished) -> None:
        if self._ended:
            return
        self._ended = True
        if self.budget is not None:
            self._leaveBudget()
        if self._cipherTail is not None:
            self._cipherTail.stop()
        for name in ("_timer", "_stallTimer", "_graceTimer", "_drainTimer", "_flushTimer"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)
        if finished.state == CLOS:
            reason = failure.Failure(LinkClosed(finished.reason, finished.confirmed))
        else:
            reason = failure.Failure(BytestreamBroken(finished.reason or "failed"))
        self.onRemoteClosed(reason)


def _why(reason: failure.Failure) -> str:
    """
    A transport failure in words: its ``reason`` when it has one; for a TLS
    error (pyOpenSSL's ``SSL.Error``, whose text is a list of (library,
    function, reason) tuples) the reasons, e.g. ``TLS failed: decryption
    failed or bad record mac`` -- what a forged e2e tail gives.
    """
    exc = reason.value
    why = getattr(exc, "reason", None)
    if why:
        return why
    args = getattr(exc, "args", ())
    if type(exc).__module__.startswith("OpenSSL") and args and isinstance(args[0], list):
        parts = [str(e[-1]) for e in args[0] if isinstance(e, tuple) and e and e[-1]]
        if parts:
            return "TLS failed: " + "; ".join(parts)
    return reason.getErrorMessage()


def unreadByLocal(transport) -> int:
    """
    Bytes handed to the local connection that its client has not read yet:
    what is still in Twisted's write buffer plus, on Linux, what sits in the
    socket (SIOCOUTQ: for a UNIX stream socket, memory still charged to the
    sender, i.e. not yet consumed by the reader).  0 where neither can be
    known -- then handing bytes to the socket is the best evidence there is.
    """
    pending = getattr(transport, "pendingBytes", None)
    if pending is not None:  # a test transport that knows
        return pending()
    unread = len(getattr(transport, "dataBuffer", b"") or b"") - getattr(transport, "offset", 0)
    unread += getattr(transport, "_tempDataLen", 0) or 0
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is not None:
        try:
            fd = getHandle().fileno()
            queued = struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            unread += queued
        except (OSError, ValueError, AttributeError, TypeError):
            pass
    return max(0, unread)


@dataclass(frozen=True)
class LocalLook:
    """
    The local socket just before it is closed: did the client reset it
    (SO_ERROR), and how much we handed it is still unread (Twisted's buffer
    and, on Linux, SIOCOUTQ).
    """
    reset: bool
    unread: int


def lookAtLocal(transport) -> LocalLook:
    return LocalLook(localWasReset(transport), unreadByLocal(transport))


def localWasReset(transport) -> bool:
    """
    Did the local client close with bytes unread?  Linux then drops them
    (SIOCOUTQ reads 0 again) and sets ECONNRESET on our socket; reading
    SO_ERROR tells (and clears) it.
    """
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return bool(getattr(transport, "wasReset", lambda: False)())
    try:
        err = getHandle().getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except (OSError, AttributeError, ValueError):
        return False
    return err in (errno.ECONNRESET, errno.EPIPE)

