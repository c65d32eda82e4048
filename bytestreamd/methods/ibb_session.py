"""
One XEP-0047 In-Band Bytestream session as a sans-I/O machine.

:class:`IBBSession` holds everything one session decides: the open (and the
initiator's block-size fallback), the send window and its acknowledgements,
the receive checks (sequence, strict base64, block size), and the close
handshake.  It does no I/O of its own.  It is driven by two adapters through
public methods only:

* its **owner**, the XMPP handler (:class:`~bytestreamd.methods.ibb.IBBMethod`,
  providing :class:`IIBBSessionOwner`), which routes stanzas addressed to the
  session to its inputs (:meth:`~IBBSession.openReceived`,
  :meth:`~IBBSession.openAcked`, :meth:`~IBBSession.dataReceived` (the
  ``<data/>`` element, read with the wire codec),
  :meth:`~IBBSession.acked`, :meth:`~IBBSession.closeReceived`, ...) and sends
  what the session asks it to (``send``, ``answer``, ``requestOpen``,
  ``requestClose``);
* its **local** side, the transport
  (:class:`~bytestreamd.methods.ibb_stream.IBBStream`, providing
  :class:`IIBBSessionLocal`), which turns ``write``/``loseConnection``/
  ``abortConnection`` and the release of held blocks into inputs
  (:meth:`~IBBSession.write`, :meth:`~IBBSession.close`,
  :meth:`~IBBSession.abort`, :meth:`~IBBSession.released`) and is handed what
  arrives (``received``) and how the session ended (``ended``).

Tests drive it with recording fakes of both and a ``task.Clock``
(``tests/unit/test_ibb_session.py``).

States (``IBBSession.state``) and what moves between them::

    OPENING --openAcked / openReceived accepted--> OPEN
    OPENING --open refused, timed out, XMPP lost--> FAILED
    OPEN --close() (loseConnection)--> DRAINING --queue empty, all acked--> CLOSING
    OPEN, DRAINING --peer's <close/>, our data still going--> PEER_CLOSING
    CLOSING --our close answered (result, error or timeout)--> CLOSED
    CLOSING, PEER_CLOSING(drained), OPEN(nothing to send) --peer's <close/>--> CLOSED
    any live state --bad data, refused data, ack timeout, overrun, XMPP lost,
                    abort--> FAILED

* OPENING: an initiator sent ``<open/>`` and waits for its answer; a target
  waits for the peer's ``<open/>``.  A ``resource-constraint`` answer makes
  the initiator retry with half the block size, down to ``minBlockSize``
  (unless ``fallback`` is off).
* OPEN: data both ways.
* DRAINING: ``loseConnection`` was asked; what is queued and in flight still
  goes, then our ``<close/>``.
* CLOSING: our ``<close/>`` is sent; its answer (of any kind, or the
  timeout) ends the session cleanly.  Data may still arrive and is taken.
* PEER_CLOSING: the peer sent ``<close/>`` while we still had data to send;
  XEP-0047 3.3 lets us finish first, so its answer waits until everything we
  sent is acknowledged.  Every held data iq is acknowledged at once, before
  the close result, so the peer sees every answer in order.
* CLOSED, FAILED: final.  No stanza for the session goes out any more
  (``IIBBSessionOwner.finished`` is called once, on entering either), except
  the one ``<close/>`` a failure sends to the peer (XEP: MUST close) and the
  answer to a pending peer ``<close/>``.

The data path (``write`` -> ``send``, ``dataReceived`` -> ``received``,
``acked``) is written for speed: blocks are serialised with
:class:`~bytestreamd.wire.ibb.DataWriter` (no domish), one timer per session
(reset on each ack) rather than one per block, and the state tests are
identity compares of module constants.  Why the window is 32 and how
backpressure works both ways is in :mod:`bytestreamd.methods.ibb_stream`.

Why one long module: one machine, whose send window, receive checks and
close handshake share per-block state on the data path.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from zope.interface import Attribute, Interface, implementer

from bytestreamd.errors import BytestreamBroken, MethodFailed, NotConnected, describeStanzaError
from bytestreamd.wire import ibb as wire
from bytestreamd.xmpp.stanzas import escapeAttribute

OPENING = "OPENING"
OPEN = "OPEN"
DRAINING = "DRAINING"
CLOSING = "CLOSING"
PEER_CLOSING = "PEER_CLOSING"
CLOSED = "CLOSED"
FAILED = "FAILED"

#: States in which the session still sends data blocks.
_SENDING = frozenset((OPEN, DRAINING, PEER_CLOSING))
#: States after which nothing more happens.
FINAL = frozenset((CLOSED, FAILED))

#: Smallest block size an initiator falls back to on resource-constraint.
MIN_BLOCK_SIZE = 512

#: A refusal of an ``<open/>``: (condition, text, type).
Refusal = Tuple[str, str, str]


class IIBBSessionOwner(Interface):
    """
    What a session needs from the XMPP side (the IBB handler).  ``stanza``
    arguments are the opaque stanzas the owner passed in.
    """

    def send(stanza: Any) -> None:
        """Send a serialised stanza now; raise NotConnected if there is no stream."""

    def answer(stanza: Any, condition: Optional[str] = None,
               text: Optional[str] = None) -> None:
        """
        Answer an incoming stanza: an empty result, or an error of type
        ``cancel`` with ``condition`` and ``text``.  Never raises.
        """

    def requestOpen(session: "IBBSession", request: wire.Open) -> None:
        """
        Send ``<open/>`` as an IQ request; its answer comes back as
        ``openAcked()``, ``openRefused(condition, text)`` or
        ``openTimedOut(seconds)``.
        """

    def requestClose(session: "IBBSession") -> None:
        """Send our ``<close/>``; any answer, or none, is ``closeAnswered()``."""

    def opened(session: "IBBSession") -> None:
        """
        An initiator's session is open: the peer accepted our ``<open/>``.
        (A target's opens when ``openReceived`` returns ``None``; its owner
        answers the open first, then hands the stream over, so that nothing
        the stream's new owner writes reaches the peer before that answer.)
        """

    def openFailed(session: "IBBSession", reason: MethodFailed) -> None:
        """The session never opened."""

    def finished(session: "IBBSession") -> None:
        """No more stanzas for this session: forget its routes."""


class IIBBSessionLocal(Interface):
    """What a session needs from the local side (the transport)."""

    def received(payload: bytes, ack: Optional[str]) -> Optional[int]:
        """
        Take one block: ``None`` if it was delivered at once (the session then
        sends ``ack``), else the number of bytes now held (``ack`` is given
        back through ``released(ack)`` once delivered).
        """

    def takeHeldAcks() -> List[str]:
        """Strip and return the acknowledgements of every held block."""

    def sendProgress() -> None:
        """Less is queued than before: a paused writer may resume."""

    def ended(reason: Failure) -> None:
        """The session is over (ConnectionDone or BytestreamBroken)."""


class IIBBSession(Interface):
    """The inputs of :class:`IBBSession` (see the module docstring)."""

    state = Attribute("One of OPENING, OPEN, DRAINING, CLOSING, PEER_CLOSING, CLOSED, FAILED.")
    sid = Attribute("The IBB sid.")
    tag = Attribute("Prefix of every stanza id this session sends.")
    peer = Attribute("The peer's full JID.")
    blockSize = Attribute("Block size (final once OPEN).")
    stanza = Attribute("'iq' or 'message' (final once OPEN).")
    queued = Attribute("Bytes written and not yet sent.")


@implementer(IIBBSession)
class IBBSession:
    """
    One IBB session (see the module docstring).

    ``owner`` provides :class:`IIBBSessionOwner`, ``local``
    :class:`IIBBSessionLocal`; ``clock`` is an ``IReactorTime``.
    ``initiator``: we send the ``<open/>``.  ``blockSize`` and ``stanza``:
    what an initiator asks for; for a target, ``blockSize`` is the size a
    peer's open must name exactly (a negotiated size, XEP-0261) or ``None``
    for any up to ``maxBlockSize``, and ``stanza`` the kind it must name or
    ``None`` for either.  ``tag`` prefixes every stanza id we send (the
    owner routes answers by it).  ``ackTimeout``: how long unacknowledged
    data may wait (``None``: no limit); ``maxHeld``: the most a paused
    reader may have held before the session breaks.
    """

    def __init__(self, owner: Any, local: Any, clock: Any, sid: str, peer: JID, tag: str,
                 initiator: bool, blockSize: Optional[int], stanza: Optional[str],
                 window: int = 32, ackTimeout: Optional[float] = 60.0,
                 maxHeld: int = 2 * 32 * wire.MAX_BLOCK_SIZE,
                 maxBlockSize: int = wire.MAX_BLOCK_SIZE,
                 minBlockSize: int = MIN_BLOCK_SIZE, fallback: bool = True):
        self.owner = owner
        self.local = local
        self.clock = clock
        self.sid = sid
        self.peer = peer
        self.peerStr = peer.full()
        self.tag = tag
        self.initiator = initiator
        self.window = window
        self.ackTimeout = ackTimeout
        self.maxHeld = maxHeld
        self.maxBlockSize = maxBlockSize
        self.minBlockSize = minBlockSize
        self.fallback = fallback
        self.state = OPENING
        #: Block size and stanza kind; for a target only known once OPEN.
        self.blockSize = blockSize
        self.stanza = stanza
        self._required = (blockSize, stanza) if not initiator else (None, None)
        self._constrained: List[int] = []   # sizes refused with resource-constraint
        self.bytesSent = 0
        self.bytesReceived = 0
        #: Next seq we send / expect (16 bits, wrapping).
        self.seqOut = 0
        self.seqIn = 0
        # sending
        self._out = bytearray()
        self._inflight: Dict[str, Tuple[int, int]] = {}
        self._counter = 0
        self._timer: Any = None
        self._pacer: Any = None
        self._isIQ = True
        self._writer: Optional[wire.DataWriter] = None
        self._ackHead = "<iq type='result' to='%s' id='" % escapeAttribute(self.peerStr)
        # closing
        self._peerClose: Any = None   # the peer's <close/> we answer once drained

    def __repr__(self) -> str:
        return "<IBBSession sid=%s peer=%s %s %s/%s>" % (
            self.sid, self.peerStr, self.state, self.stanza, self.blockSize)

    # -- state ----------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._out)

    @property
    def inflight(self) -> int:
        """Data iqs sent and not yet acknowledged."""
        return len(self._inflight)

    @property
    def isOpen(self) -> bool:
        """Accepting writes: OPEN (not closing, not ended)."""
        return self.state is OPEN

    @property
    def done(self) -> bool:
        return self.state in FINAL

    # -- opening --------------------------------------------------------------

    def start(self) -> None:
        """As initiator, send the ``<open/>``."""
        if not self.initiator or self.state is not OPENING:
            raise RuntimeError("%r: start() is for an initiator that has not started" % self)
        self.owner.requestOpen(self, wire.Open(self.sid, self.blockSize, self.stanza))

    def openAcked(self) -> None:
        """The peer accepted our ``<open/>``."""
        if self.state is OPENING and self.initiator:
            self._open()

    def openRefused(self, condition: Optional[str], text: str) -> None:
        """
        The peer answered our ``<open/>`` with an error (``text`` describes
        it).  ``resource-constraint``: try half the block size, down to
        ``minBlockSize``, unless ``fallback`` is off.
        """
        if self.state is not OPENING or not self.initiator:
            return
        size = self.blockSize
        if condition == "resource-constraint" and self.fallback and size > self.minBlockSize:
            self._constrained.append(size)
            self.blockSize = max(self.minBlockSize, size // 2)
            self.owner.requestOpen(self, wire.Open(self.sid, self.blockSize, self.stanza))
            return
        reason = "ibb: %s refused open (block-size %d): %s" % (self.peerStr, size, text)
        if self._constrained:
            reason += " (after resource-constraint at block-size %s)" % (
                ", ".join(str(n) for n in self._constrained),)
        self._openFailed(MethodFailed(reason, condition))

    def openTimedOut(self, seconds: float) -> None:
        """Our ``<open/>`` got no answer within ``seconds``."""
        if self.state is OPENING:
            self._openFailed(MethodFailed("ibb: no answer from %s to open within %gs"
                                          % (self.peerStr, seconds), "timeout"))

    def openReceived(self, request: wire.Open) -> Optional[Refusal]:
        """
        As target, the peer's ``<open/>`` (the owner has checked that it
        comes from the peer and names our sid).  Returns ``None`` when it is
        accepted (the owner answers with a result; the session is OPEN), or
        the refusal ``(condition, text, type)`` to answer with; a refused
        open leaves the session waiting for a better one.
        """
        if self.initiator or self.state is not OPENING:
            return ("not-acceptable", "IBB session %s is already open" % self.sid, "cancel")
        blockSize, stanza = self._required
        if blockSize is not None and request.blockSize != blockSize:
            return ("resource-constraint",
                    "block-size %d was negotiated, please" % blockSize, "modify")
        if request.blockSize > self.maxBlockSize:
            return ("resource-constraint",
                    "block-size at most %d, please" % self.maxBlockSize, "modify")
        if stanza is not None and request.stanza != stanza:
            return ("not-acceptable", "stanza '%s' was negotiated" % stanza, "cancel")
        self.blockSize, self.stanza = request.blockSize, request.stanza
        self._open()
        return None

    def giveUp(self, reason: MethodFailed) -> None:
        """Give up while OPENING (cancelled, the open failed otherwise): ``openFailed``."""
        if self.state is OPENING:
            self._openFailed(reason)

    def _open(self) -> None:
        self.state = OPEN
        self._isIQ = self.stanza == wire.STANZA_IQ
        self._writer = wire.DataWriter(self.peerStr, None, self.sid)
        if self.initiator:
            self.owner.opened(self)

    def _openFailed(self, reason: MethodFailed) -> None:
        self.state = FAILED
        self.owner.finished(self)
        self.owner.openFailed(self, reason)

    # -- sending --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer (ignored unless OPEN)."""
        if self.state is not OPEN:
            return
        self._out += data
        self._pump()

    def _send(self, stanza: Any) -> bool:
        try:
            self.owner.send(stanza)
        except NotConnected:
            self._fail("XMPP connection lost", sendClose=False)
            return False
        return True

    def _pump(self) -> None:
        out = self._out
        if not out or self.state not in _SENDING:
            return
        if not self._isIQ:
            if self._pacer is None:
                self._pumpMessages()
            return
        inflight = self._inflight
        window, blockSize, writer, tag = self.window, self.blockSize, self._writer, self.tag
        send = self.owner.send
        while out and len(inflight) < window:
            block = bytes(out[:blockSize])
            del out[:blockSize]
            seq = self.seqOut
            self.seqOut = (seq + 1) & 0xFFFF
            iqId = tag + str(self._counter)
            self._counter += 1
            inflight[iqId] = (seq, len(block))
            try:
                send(writer.iq(iqId, seq, block))
            except NotConnected:
                self._fail("XMPP connection lost", sendClose=False)
                return
        if inflight and self._timer is None and self.ackTimeout is not None:
            self._timer = self.clock.callLater(self.ackTimeout, self._ackTimedOut)

    def _pumpMessages(self) -> None:
        # No acks: send a window's worth now and the rest on later reactor
        # turns, so the XMPP connection gets a chance to write in between.
        self._pacer = None
        out, blockSize, writer, tag = self._out, self.blockSize, self._writer, self.tag
        for _ in range(self.window):
            if not out or self.state not in _SENDING:
                break
            block = bytes(out[:blockSize])
            del out[:blockSize]
            seq = self.seqOut
            self.seqOut = (seq + 1) & 0xFFFF
            msgId = tag + str(self._counter)
            self._counter += 1
            if not self._send(writer.message(msgId, seq, block)):
                return
            self.bytesSent += len(block)
        if self.state not in _SENDING:
            return
        if out:
            if self._pacer is None:
                self._pacer = self.clock.callLater(0, self._pumpMessages)
        else:
            self._maybeClose()
        self.local.sendProgress()

    def acked(self, stanzaId: str) -> None:
        """The peer acknowledged our data iq ``stanzaId`` (checked to be from it)."""
        entry = self._inflight.pop(stanzaId, None)
        if entry is None:
            return
        self.bytesSent += entry[1]
        timer = self._timer
        if timer is not None:
            if self._inflight:
                timer.reset(self.ackTimeout)
            else:
                timer.cancel()
                self._timer = None
        self._pump()
        if self.state not in _SENDING:
            return
        self.local.sendProgress()
        self._maybeClose()

    def refused(self, stanzaId: Optional[str], error: Any) -> None:
        """
        The peer answered our data iq ``stanzaId`` (``None``: a data message)
        with the StanzaError ``error``: break with its condition.
        """
        if stanzaId is not None:
            entry = self._inflight.pop(stanzaId, None)
            if entry is None:
                return
            what = "data seq %d" % entry[0]
        else:
            what = "a data message"
        self._fail("peer refused %s: %s" % (what, describeStanzaError(error)),
                   condition=error.condition)

    def _ackTimedOut(self) -> None:
        self._timer = None
        seq = next(iter(self._inflight.values()))[0] if self._inflight else -1
        self._fail("no acknowledgement of data seq %d within %gs"
                   % (seq, self.ackTimeout), condition="timeout")

    # -- receiving ------------------------------------------------------------

    def dataReceived(self, stanza: Any, data: Any, ackId: Optional[str]) -> None:
        """
        One ``<data/>`` element for this session from the peer (the owner
        checked the sender), read here with the wire codec's checks in the
        XEP's order (seq, then the base64 text, then its size); ``ackId`` is
        the id of a data iq (``None`` for a message), ``stanza`` what the
        owner answers an error to.
        """
        if self.state is OPENING or self.state in FINAL:
            self.owner.answer(stanza, "item-not-found", "no such IBB session")
            return
        try:
            seq = wire.parseSeq(data.getAttribute("seq"))
        except wire.MalformedIBB as e:
            self._refuseData(stanza, "bad-request", str(e), "peer sent malformed data: %s" % e)
            return
        if seq != self.seqIn:
            self._refuseData(stanza, "unexpected-request", "expected seq %d" % self.seqIn,
                             "data out of sequence: got seq %d, expected %d"
                             % (seq, self.seqIn))
            return
        try:
            payload = wire.decodeBase64(wire.elementText(data))
        except wire.MalformedIBB as e:
            self._refuseData(stanza, "bad-request", str(e),
                             "peer sent bad data seq %d: %s" % (seq, e))
            return
        if len(payload) > self.blockSize:
            self._refuseData(stanza, "bad-request",
                             "block larger than block-size %d" % self.blockSize,
                             "peer sent %d bytes in seq %d, block-size is %d"
                             % (len(payload), seq, self.blockSize))
            return
        self.seqIn = (seq + 1) & 0xFFFF
        self.bytesReceived += len(payload)
        ack = None if ackId is None else self._ackHead + escapeAttribute(ackId) + "'/>"
        held = self.local.received(payload, ack)
        if held is None:
            if ack is not None and self.state not in FINAL:
                self._send(ack)
        elif held > self.maxHeld:
            self._fail("peer overran receive buffer (%d bytes held, limit %d)"
                       % (held, self.maxHeld), condition="resource-constraint")

    def _refuseData(self, stanza: Any, condition: str, text: str, reason: str) -> None:
        """Answer a bad block with ``condition`` and break the session with it."""
        self.owner.answer(stanza, condition, text)
        self._fail(reason, condition=condition)

    def released(self, ack: str) -> None:
        """A held block was delivered: acknowledge it now (backpressure)."""
        if self.state not in FINAL:
            self._send(ack)

    # -- closing --------------------------------------------------------------

    def close(self) -> None:
        """Close cleanly once everything written is sent and acknowledged."""
        if self.state is OPEN:
            self.state = DRAINING
            self._maybeClose()

    def _maybeClose(self) -> None:
        """Send our close, or answer the peer's, once everything is acked."""
        if self._out or self._inflight:
            return
        state = self.state
        if state is PEER_CLOSING:
            self._answerPeerClose()
        elif state is DRAINING:
            self.state = CLOSING
            self.owner.requestClose(self)

    def closeAnswered(self) -> None:
        """Our ``<close/>`` was answered (result, error or timeout)."""
        if self.state is CLOSING:
            self._closed()

    def closeReceived(self, stanza: Any) -> None:
        """The peer's ``<close/>`` (the owner checked the sender)."""
        state = self.state
        if state is OPENING or state in FINAL:
            self.owner.answer(stanza, "item-not-found", "no such IBB session")
            return
        if self._peerClose is not None:   # a repeated close: answer the older one
            older, self._peerClose = self._peerClose, None
            self.owner.answer(older)
        # Every data iq gets its answer, in order, before the close result.
        for ack in self.local.takeHeldAcks():
            if not self._send(ack):
                return
        if state is CLOSING or not (self._out or self._inflight):
            # Crossing closes, or nothing left to send: done now.
            self._peerClose = stanza
            self._answerPeerClose()
        else:
            # XEP-0047 3.3: we may finish sending first, then answer.
            self._peerClose = stanza
            self.state = PEER_CLOSING

    def _answerPeerClose(self) -> None:
        stanza, self._peerClose = self._peerClose, None
        self.owner.answer(stanza)
        self._closed()

    def _closed(self) -> None:
        """The close handshake is over: no more stanzas; end after delivery."""
        self._stop(CLOSED, sendClose=False)
        self.local.ended(Failure(ConnectionDone()))

    # -- failing --------------------------------------------------------------

    def xmppLost(self) -> None:
        """The XMPP stream went away."""
        if self.state is OPENING:
            self._openFailed(MethodFailed(
                "ibb: XMPP connection lost before %s %s %s"
                % (self.peerStr, "answered our open of" if self.initiator else "opened",
                   self.sid)))
            return
        self._fail("XMPP connection lost", sendClose=False)

    def abort(self) -> None:
        """Stop at once (abortConnection); the transport ends itself."""
        if self.state in FINAL:
            return
        if self.state is OPENING:
            self.giveUp(MethodFailed("ibb: %s aborted before it opened" % self.sid))
            return
        self._stop(FAILED, sendClose=True)

    def _fail(self, reason: str, condition: Optional[str] = None,
              sendClose: bool = True) -> None:
        """The session failed: tell the peer (XEP: MUST close) and end ERR."""
        if self.state in FINAL:
            return
        self._stop(FAILED, sendClose=sendClose)
        self.local.ended(Failure(BytestreamBroken(reason, condition)))

    def _stop(self, state: str, sendClose: bool) -> None:
        """
        Enter a final state: stop all XMPP traffic for this session.  With
        ``sendClose`` our ``<close/>`` goes out -- unless one already did
        (CLOSING) or the peer closed (PEER_CLOSING): its close is answered
        instead.
        """
        prior, self.state = self.state, state
        if self._peerClose is not None:
            stanza, self._peerClose = self._peerClose, None
            self.owner.answer(stanza)
        self._out = bytearray()
        self._inflight.clear()
        for name in ("_timer", "_pacer"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        if sendClose and prior is not CLOSING and prior is not PEER_CLOSING:
            self.owner.requestClose(self)
        self.owner.finished(self)


__all__ = ["IBBSession", "IIBBSession", "IIBBSessionOwner", "IIBBSessionLocal",
           "OPENING", "OPEN", "DRAINING", "CLOSING", "PEER_CLOSING", "CLOSED", "FAILED",
           "FINAL", "MIN_BLOCK_SIZE", "Refusal"]
