"""
When a link may say ``CLOS``, and when it must say ``ERR``: the end of a
link as a sans-I/O machine.

The first rule of bytestreamd is that a link which says ``CLOS`` lost
nothing.  A transport cannot promise that by itself: a SOCKS5 connection
whose sender was killed ends with an ordinary TCP FIN, Prosody's proxy65
closes both legs when one side half-closes, an IBB ``<close/>`` says nothing
about what the other side's local client got.  So a link between two
bytestreamd daemons *confirms its end over XMPP* with byte counts
(:mod:`bytestreamd.wire.end`):

1. A side whose local client has finished writing sends ``<eof sent=N/>``
   instead of half-closing the transport (which a proxy may turn into a full
   close).  The other side passes the EOF to its local client once it has
   delivered all N bytes -- so half-close works on every method, IBB and
   proxied SOCKS5 included.
2. A side that has sent its eof and delivered every byte of the peer's sends
   ``<end sent=S received=R status=done/>``.  ``received`` counts bytes
   *handed to the local client*, not bytes that arrived.
3. With both ends known, each side compares: the peer received what we sent,
   we delivered what the peer sent, nobody reported a failure -> ``CLOS
   confirmed=yes``; anything else -> ``ERR`` naming the difference.  Then the
   transport is closed.

A peer that is not bytestreamd (its disco lacks the end feature) cannot
confirm anything: the link keeps the transport's own half-close semantics
and a clean transport end is ``CLOS confirmed=no``.

Bounds: every wait here is either on the peer -- bounded by the liveness
check of :mod:`bytestreamd.xmpp.liveness`, which ends the link when the peer stops
answering, however slowly its local reader reads -- or on a transport that
has already ended or a close that was asked for, bounded by
``settleTimeout`` (StartTimer).  Waiting on our own local client (a slow or
absent reader) is backpressure, never an error.

The machine does no I/O: each input returns the effects the adapter
(:class:`bytestreamd.local.Splice`) performs, in order.

Why one long module: it is one machine; its effects are small value classes beside it, and most of its length is the rules' explanations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from bytestreamd.events import CLOS, ERR

#: ``<end status=...>``: finished normally, closed on request, failed.
DONE = "done"
CLOSED = "closed"
FAILED = "failed"
STATUSES = (DONE, CLOSED, FAILED)


_UNREAD = ("the local client went away without reading everything it was handed "
           "(its connection was reset)")


# --- effects -----------------------------------------------------------------

@dataclass(frozen=True)
class SendEOF:
    """Tell the peer we will write no more; ``sent`` bytes in all."""
    sent: int


@dataclass(frozen=True)
class SendEnd:
    """Our final word: what we wrote, what we delivered, and how we ended."""
    sent: int
    received: int
    status: str = DONE
    text: Optional[str] = None


@dataclass(frozen=True)
class AwaitDrain:
    """Tell ``localDrained()`` once the local client has read all it was handed."""


@dataclass(frozen=True)
class StartGrace:
    """Start the EOF grace timer: ``graceExpired()`` after ``seconds``."""
    seconds: float


@dataclass(frozen=True)
class SendFlush:
    """Ask the peer to half-close the transport (its last bytes are stuck)."""


@dataclass(frozen=True)
class SendTail:
    """Send the peer our stream's bytes from ``offset`` on, in-band."""
    offset: int


@dataclass(frozen=True)
class LocalEOF:
    """The peer will send nothing more: half-close the local client's input."""


@dataclass(frozen=True)
class CloseLocal:
    """Close the local connection once what is buffered for it is written."""


@dataclass(frozen=True)
class AbortLocal:
    """Drop the local connection now (the link failed)."""


@dataclass(frozen=True)
class HalfCloseTransport:
    """Send the transport's own EOF (SOCKS5: TCP half-close; IBB: close)."""


@dataclass(frozen=True)
class CloseTransport:
    """Close the transport cleanly after what is queued."""


@dataclass(frozen=True)
class AbortTransport:
    """Tear the transport down now."""


@dataclass(frozen=True)
class StartTimer:
    """(Re)start the one settle timer: ``timerFired()`` after ``seconds``."""
    seconds: float


@dataclass(frozen=True)
class Finished:
    """The link's final state, with words for the operator."""
    state: str
    reason: Optional[str]
    confirmed: bool


Effect = object


class LinkLifecycle:
    """
    The end of one link.  ``confirmed`` says whether the peer speaks the end
    protocol; ``settleTimeout`` bounds waits that no living peer explains
    (after the transport ended, after a close was asked for, after the peer
    reported a failure).

    Counters (what ``LINKS`` and the events show): ``sent`` bytes taken from
    the local client into the transport, ``delivered`` bytes handed to the
    local client, ``discarded`` bytes that arrived when nobody could take
    them, ``unsent`` local bytes that could not be sent any more.
    """

    def __init__(self, confirmed: bool, settleTimeout: float = 30.0,
                 halfClose: bool = True, eofOnTransport: bool = False,
                 checksDrain: bool = False):
        self.confirmed = confirmed
        self.settleTimeout = settleTimeout
        #: Can one direction end while the other goes on?  SOCKS5 (TCP) can;
        #: IBB cannot, and INTERFACE.md promises that a local EOF closes an
        #: in-band link -- so there the peer's eof ends our sending too,
        #: ``eofGrace`` seconds later unless our local client ends first.
        self.halfClose = halfClose
        self.eofGrace = 2.0
        #: A direct TCP connection: its FIN follows every byte, so with a
        #: bytestreamd peer the EOF travels both ways -- as a TCP half-close,
        #: which gives the local client its EOF without an XMPP round trip,
        #: and as ``<eof/>``, which carries the count that confirms it.
        #: Not through a relay (see ``S5BStream.relayed``).
        self.eofOnTransport = eofOnTransport and halfClose
        self.sent = 0
        self.delivered = 0
        self.discarded = 0
        self.unsent = 0
        self.localEOF = False
        self.localGone = False
        self.closeRequested = False
        self.transportDone = False
        self.eofSent = False
        self.endSent: Optional[SendEnd] = None
        self.peerSent: Optional[int] = None
        self.peerEnd: Optional[SendEnd] = None
        self.peerEOFDelivered = False
        self.finished: Optional[Finished] = None
        self.flushAsked = False
        self.localReset = False
        #: Handing bytes to the local socket is not delivery: a client can
        #: close with them unread (soak finding A).  With ``checksDrain``
        #: our ``done`` waits until the adapter reports the local client
        #: has read everything (Linux SIOCOUTQ), or the client closed cleanly.
        self.checksDrain = checksDrain
        self.drained = False
        self.awaitingDrain = False
        self.endAfterDrain = False
        self._timing = False

    # -- inputs from the local side ------------------------------------------

    def localData(self, n: int) -> bool:
        """
        The local client wrote ``n`` bytes.  True if they may go into the
        transport; False if they cannot be sent any more (counted as lost).
        """
        if self.finished or self.transportDone or self.eofSent or self.closeRequested:
            self.unsent += n
            return False
        self.sent += n
        return True

    def localEnded(self) -> List[Effect]:
        """The local client will write nothing more (its EOF)."""
        if self.localEOF or self.finished:
            return []
        self.localEOF = True
        if not self.confirmed:
            return [] if self.transportDone else [HalfCloseTransport()]
        out = self._sendEOF()
        if self.eofOnTransport and not self.transportDone and out:
            out.append(HalfCloseTransport())
        return out + self._progress()

    def localLost(self, reset: bool = False) -> List[Effect]:
        """
        The local connection is gone (both directions).  ``reset``: it went
        with bytes we had handed it still unread (Linux resets a UNIX
        socket closed with unread data; a write after its close fails) --
        counted as delivered, they were lost (soak finding A).
        """
        if self.finished or self.localGone:
            return []
        self.localGone = True
        self.localReset = reset
        out: List[Effect] = []
        if not reset:
            self.drained = True
            if self.endAfterDrain and self.endSent is None:
                out += self._sendEnd(DONE, None)
        out += self.localEnded()
        if self.confirmed and self.endSent is None and reset:
            out += self._sendEnd(FAILED, _UNREAD) + self._settle()
        if self.confirmed and self.endSent is None and not self._complete:
            # Nobody will read what the peer still sends: tell it now, and
            # let the counts say whether anything was lost (an HTTP client
            # that leaves after its answer lost nothing).
            out += self._sendEnd(CLOSED, "the local client went away") + self._settle()
        if not self.confirmed:
            if not self.transportDone:
                # Nobody will read what the peer still sends: end the link.
                out = [e for e in out if not isinstance(e, HalfCloseTransport)]
                out += [CloseTransport()] + self._settle(restart=True)
            return out
        return out + self._progress()

    def requestClose(self) -> List[Effect]:
        """``CLOSE``: end the link now, in whatever state it is."""
        if self.finished or self.closeRequested:
            return []
        self.closeRequested = True
        out: List[Effect] = [CloseLocal()]
        if not self.confirmed:
            if self.transportDone:
                return out + self._finish(CLOS, "closed by local request")
            return out + [CloseTransport()] + self._settle(restart=True)
        if not self.eofSent and not self.transportDone:
            out += self._sendEOF()
        out += self._sendEnd(CLOSED, "closed by request") + self._settle(restart=True)
        return out + self._progress()

    # -- inputs from the transport ---------------------------------------------

    def remoteData(self, n: int) -> List[Effect]:
        """``n`` bytes arrived from the peer (and are handed on, or dropped)."""
        if self.localGone or self.closeRequested or self.finished:
            self.discarded += n
        else:
            self.delivered += n
        if not self.confirmed or self.finished:
            return []
        if self.peerSent is not None and self._arrived > self.peerSent:
            return self._fail("the peer sent %d bytes, more than the %d its end of "
                              "stream announced" % (self._arrived, self.peerSent))
        return self._progress()

    def transportEOF(self) -> List[Effect]:
        """The transport's own EOF from the peer (SOCKS5 half-close)."""
        if self.finished:
            return []
        if not self.confirmed:
            return [] if self.localGone else [LocalEOF()]
        if self.eofOnTransport:
            # Every byte the peer sent has arrived; its <eof/> will confirm
            # the count (a killed peer's kernel sends this FIN too: then no
            # confirmation comes and the link ends ERR).
            out: List[Effect] = []
            if not self.peerEOFDelivered:
                self.peerEOFDelivered = True
                if not self.localGone and not self.closeRequested:
                    out.append(LocalEOF())
            return out + self._progress()
        # Over a relay a bytestreamd peer never half-closes the transport:
        # whoever did (a proxy, a dying process) ended it.
        return self.transportEnded()

    def transportEnded(self) -> List[Effect]:
        """The transport closed cleanly (both directions)."""
        if self.finished or self.transportDone:
            return []
        self.transportDone = True
        if not self.confirmed:
            return self._finish(CLOS, "closed by local request" if self.closeRequested
                                else None)
        out: List[Effect] = []
        if self.endSent is None:
            # Say what we know; the counts decide CLOS or ERR on both sides.
            if self.peerSent is not None and self._arrived < self.peerSent:
                out += self._sendEnd(FAILED, "the transport ended after %d of the %d "
                                     "bytes announced" % (self._arrived, self.peerSent))
            elif self.eofSent and not (self.unsent or self.discarded):
                if self.checksDrain and not self.drained and not self.localGone:
                    # Our word waits until the local client has read it all.
                    self.endAfterDrain = True
                    if not self.awaitingDrain:
                        self.awaitingDrain = True
                        out.append(AwaitDrain())
                else:
                    out += self._sendEnd(DONE, None)
            else:
                out += self._sendEnd(CLOSED, "the transport ended")
        out += self._settle()
        return out + self._progress()

    def transportFailed(self, reason: str) -> List[Effect]:
        """The transport broke: nothing more will cross it."""
        if self.finished:
            return []
        if self.confirmed and self.endSent is not None:
            # We had said our final word; a transport torn down now (the
            # peer closing with our unread bytes in its buffer) is no news:
            # the peer's end, with its counts, will say what happened.
            return self.transportEnded()
        self.transportDone = True
        out: List[Effect] = []
        if self.confirmed and self.endSent is None:
            out += self._sendEnd(FAILED, reason)
        return out + self._finish(ERR, reason)

    # -- inputs from the peer, over XMPP -------------------------------------------

    def peerEOF(self, sent: int) -> List[Effect]:
        """The peer's ``<eof/>``: it wrote ``sent`` bytes in all."""
        if self.finished:
            return []
        if self.peerSent is not None and self.peerSent != sent:
            return self._fail("the peer announced two different totals (%d, then %d)"
                              % (self.peerSent, sent))
        self.peerSent = sent
        if self._arrived > sent:
            return self._fail("the peer sent %d bytes, more than the %d its end of "
                              "stream announced" % (self._arrived, sent))
        return self._progress()

    def peerEnded(self, end: SendEnd) -> List[Effect]:
        """The peer's ``<end/>``: its final word."""
        if self.finished or self.peerEnd is not None:
            return []
        if self.peerSent is not None and self.peerSent != end.sent:
            self.peerEnd = end
            return self._fail("the peer's end says %d bytes sent, its end of stream "
                              "said %d" % (end.sent, self.peerSent))
        self.peerSent = end.sent
        self.peerEnd = end
        out: List[Effect] = []
        if end.status != DONE:
            # It will send nothing more, and what it sent may not all arrive.
            out += self._settle()
        if end.status == FAILED and self.endSent is None:
            return out + self._progress(force=True)
        return out + self._progress()

    def localDrained(self) -> List[Effect]:
        """The local client has read every byte it was handed."""
        if self.finished or self.drained:
            return []
        self.drained = True
        self.awaitingDrain = False
        out: List[Effect] = []
        if self.endAfterDrain and self.endSent is None:
            out += self._sendEnd(DONE, None)
        return out + self._progress()

    def graceExpired(self) -> List[Effect]:
        """Without half-close: the local client did not end in time; we do."""
        if self.finished or self.eofSent:
            return []
        return self._sendEOF() + self._progress()

    def tailStalled(self, seconds: float) -> List[Effect]:
        """
        The peer announced more bytes than arrived, and none came for
        ``seconds`` although our local client was reading.  A relay may be
        holding the tail (Prosody's proxy65 does, until its sender writes
        again or half-closes): ask the peer to half-close the transport.
        """
        if (self.finished or not self.confirmed or self.peerSent is None
                or self._arrived >= self.peerSent or self.flushAsked):
            return []
        self.flushAsked = True
        return [SendFlush()]

    def peerAskedFlush(self, received: Optional[int] = None,
                       keptFrom: Optional[int] = None) -> List[Effect]:
        """
        The peer is missing our last bytes.  With ``received`` (what
        arrived) and our stream's bytes still kept from offset ``keptFrom``
        on (a relayed link keeps its last ones): send it the rest in-band --
        the transport stays as it is, so a relay that closes both legs on
        one EOF (Prosody's proxy65) cannot cut the other direction.
        Otherwise: half-close the transport, which usually makes the relay
        pass on what it held.
        """
        if self.finished or not self.eofSent:
            return []
        if received is not None:
            if received >= self.sent:
                return []  # nothing is missing (the bytes came meanwhile)
            if keptFrom is not None and keptFrom <= received:
                return [SendTail(received)]
        if not self.halfClose:
            return []
        return [HalfCloseTransport()]

    def peerGone(self, reason: str) -> List[Effect]:
        """Liveness: the peer stopped answering, or its session ended."""
        if self.finished:
            return []
        if self.closeRequested:
            # Closing as asked; the peer will confirm nothing more.
            return [AbortTransport()] + self._finish(
                CLOS, "closed by local request; the peer did not confirm the end: %s"
                % reason, confirmed=False)
        return [AbortTransport()] + self._finish(ERR, reason)

    def peerRefusedEnd(self, reason: str) -> List[Effect]:
        """The peer answered our eof/end with an error: it cannot confirm."""
        if self.finished:
            return []
        if self.closeRequested:
            # CLOSE was asked for, and CLOSE ends the link: unconfirmed,
            # as when the settle timer runs out (the IQ timeout and the
            # settle timer are both peer_timeout; whichever fires first
            # must not turn a requested close into ERR).
            return [AbortTransport()] + self._finish(
                CLOS, "closed by local request; the peer did not confirm the end: %s"
                % reason, confirmed=False)
        return self._fail("the peer could not take the end of the link: %s" % reason)

    def fail(self, reason: str) -> List[Effect]:
        """A local reason to end the link ERR (no local client came in time)."""
        if self.finished:
            return []
        return self._fail(reason)

    def timerFired(self) -> List[Effect]:
        """The settle timer ran out."""
        if self.finished:
            return []
        if not self.confirmed:
            if self.closeRequested:
                return [AbortTransport()] + self._finish(
                    CLOS, "closed by local request (the transport did not close "
                    "within %gs and was aborted)" % self.settleTimeout)
            return [AbortTransport()] + self._finish(
                ERR, "the transport did not close within %gs after the local client "
                "went away" % self.settleTimeout)
        if self.awaitingDrain and not self.localGone and self.peerEnd is None \
                and self.endSent is None:
            # Waiting on our own reader: backpressure, never an error.
            return self._settle(restart=True)
        out: List[Effect] = []
        if self.endSent is None:
            out += self._sendEnd(FAILED, "timed out")
        if self.peerEnd is None:
            what = ("closed by local request; the peer did not confirm the end within %gs"
                    if self.closeRequested else
                    "the link ended after %d bytes sent and %d received without the "
                    "peer confirming the end (waited %gs)")
            if self.closeRequested:
                return out + [AbortTransport()] + self._finish(
                    CLOS, what % self.settleTimeout, confirmed=False)
            return out + [AbortTransport()] + self._finish(
                ERR, what % (self.sent, self.delivered, self.settleTimeout))
        return out + self._conclude()

    # -- the rules ---------------------------------------------------------------

    @property
    def _arrived(self) -> int:
        return self.delivered + self.discarded

    @property
    def _complete(self) -> bool:
        """Both directions finished: our eof sent, every peer byte arrived."""
        return (self.eofSent and self.peerSent is not None
                and self._arrived == self.peerSent)

    def _settle(self, restart: bool = False) -> List[Effect]:
        """
        Start the settle timer -- the bound on a wait no living peer
        explains -- unless it already runs (``restart``: start it afresh).
        """
        if self._timing and not restart:
            return []
        self._timing = True
        return [StartTimer(self.settleTimeout)]

    def _sendEOF(self) -> List[Effect]:
        if self.eofSent or self.transportDone:
            return []
        self.eofSent = True
        return [SendEOF(self.sent)]

    def _sendEnd(self, status: str, text: Optional[str]) -> List[Effect]:
        if self.endSent is not None:
            return []
        if not self.eofSent:
            self.eofSent = True  # an end implies our eof: we write no more
        self.endSent = SendEnd(self.sent, self.delivered, status, text)
        return [self.endSent]

    def _progress(self, force: bool = False) -> List[Effect]:
        out: List[Effect] = []
        if (self.peerSent is not None and self._arrived == self.peerSent
                and not self.peerEOFDelivered):
            self.peerEOFDelivered = True
            if not self.localGone and not self.closeRequested:
                out.append(LocalEOF())
            if not self.halfClose and not self.eofSent and not self.localGone:
                # No half-close on this method: our local client has
                # eofGrace seconds to finish its answer (an echo service
                # closes when it sees the EOF), then our sending ends too.
                out.append(StartGrace(self.eofGrace))
        if self.endSent is None:
            peerStopped = self.peerEnd is not None and (
                self.peerSent is not None and self._arrived == self.peerSent)
            if self._complete or force or peerStopped:
                # When the peer ended first, our local client may still be
                # writing: what it writes from now on has nowhere to go.
                out += self._sendEOF()
                if self._complete and not (self.unsent or self.discarded or self.localReset):
                    if (self.checksDrain and not self.drained and not self.localGone
                            and not self.closeRequested):
                        if not self.awaitingDrain:
                            self.awaitingDrain = True
                            out.append(AwaitDrain())
                        return out
                    out += self._sendEnd(DONE, None)
                else:
                    out += self._sendEnd(FAILED, self._shortfall())
        if self.endSent is not None and self.peerEnd is not None:
            if (self._arrived == self.peerSent or self.transportDone or force
                    or self.closeRequested or self.localGone):
                out += self._conclude()
        return out

    def _conclude(self) -> List[Effect]:
        peer, ours = self.peerEnd, self.endSent
        assert peer is not None and ours is not None
        problems = []
        if peer.status == FAILED:
            problems.append("the peer reports: %s" % (peer.text or "failed"))
        if peer.received != self.sent:
            problems.append("the peer delivered %d of the %d bytes sent"
                            % (peer.received, self.sent))
        if self.delivered != peer.sent:
            if self.localGone:
                problems.append("delivered %d of the %d bytes the peer sent before the "
                                "local client went away" % (self.delivered, peer.sent))
            else:
                problems.append("received %d of the %d bytes the peer sent"
                                % (self.delivered, peer.sent))
        if self.unsent:
            problems.append("%d bytes the local client wrote could not be sent"
                            % (self.unsent,))
        if self.localReset:
            problems.append(_UNREAD)
        if self.closeRequested:
            reason = "closed by local request"
            if problems:
                reason += "; " + "; ".join(problems)
            return [CloseTransport()] + self._finish(CLOS, reason, confirmed=not problems)
        if problems:
            if peer.status == CLOSED:
                problems.insert(0, "closed by the peer")
            # Both ends are known: close, do not reset (what is in flight
            # is already accounted for).
            return [CloseTransport()] + self._finish(ERR, "; ".join(problems))
        return [CloseTransport()] + self._finish(
            CLOS, "closed by the peer" if peer.status == CLOSED else None, confirmed=True)

    def _shortfall(self) -> str:
        """Why our end is not ``done``, in words for the peer's operator."""
        if self.localReset:
            return _UNREAD
        if self.peerSent is not None and self._arrived < self.peerSent:
            return "received %d of the %d bytes announced" % (self._arrived, self.peerSent)
        if self.discarded:
            return "the local client went away; %d bytes were dropped" % self.discarded
        if self.unsent:
            return "%d bytes the local client wrote could not be sent" % self.unsent
        return "the link ended early"

    def _fail(self, reason: str) -> List[Effect]:
        out: List[Effect] = []
        if self.confirmed and self.endSent is None:
            out += self._sendEnd(FAILED, reason)
        return out + [AbortTransport()] + self._finish(ERR, reason)

    def _finish(self, state: str, reason: Optional[str],
                confirmed: Optional[bool] = None) -> List[Effect]:
        if confirmed is None:
            confirmed = False
        if state == CLOS and self.localReset and not self.closeRequested:
            state = ERR
            reason = "; ".join(([reason] if reason else []) + [_UNREAD])
            confirmed = False
        if state == CLOS and not self.confirmed:
            lost = []
            if self.discarded:
                lost.append("%d bytes from the peer were dropped: the local client "
                            "had gone" % self.discarded)
            if self.unsent:
                lost.append("%d bytes the local client wrote could not be sent"
                            % self.unsent)
            if lost and not self.closeRequested:
                state, reason = ERR, "; ".join(([reason] if reason else []) + lost)
        self.finished = Finished(state, reason, confirmed)
        local = CloseLocal() if state == CLOS else AbortLocal()
        return [local, self.finished]
