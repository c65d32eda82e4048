"""
XEP-0261: a Jingle session's bytestream over In-Band Bytestreams, through
the IBB engine's public :class:`~bytestreamd.interfaces.IStreamMethod`
(``initiate``/``expect``) -- the same engine SI uses, so the window, strict
base64, seq wrap and every XEP-0047 error come with it.

* The initiator offers ``<transport sid block-size [stanza]/>`` (its
  ``block-size=`` / ``stanza=`` options, else ``[links] ibb_block_size`` /
  ``ibb_stanza``); the responder may answer a *smaller* block-size, which
  is honoured (:func:`~bytestreamd.wire.jingle_ibb.acceptedBlockSize`
  refuses a larger one, another sid or another stanza kind).
* The initiator then sends the XEP-0047 ``<open/>`` with the negotiated
  values (MUST).  The responder expects exactly that sid from exactly the
  initiator (anything else: ``not-acceptable``, the engine's rule), and
  refuses an ``<open/>`` whose block-size or stanza kind differs from the
  negotiated ones ``resource-constraint`` (the engine's ``check-open``
  option).  A peer that ignores our smaller block-size (Libervia 0.9) is
  therefore refused, as XEP-0261 says it SHOULD be.
* Each attempt is bounded by ``attempt_timeout``.
"""

from __future__ import annotations

import secrets
from typing import Any, Optional

from twisted.internet import defer

from bytestreamd.errors import MethodFailed
from bytestreamd.negotiation.attempts import bounded, call
from bytestreamd.wire import ibb as wire
from bytestreamd.wire.jingle import MalformedJingle
from bytestreamd.wire.jingle_ibb import (IBBTransport, acceptedBlockSize, answerFor,
                                         openMismatch)


def newIBBSid() -> str:
    return "bji" + secrets.token_hex(8)


class IBBDriver:
    """One IBB transport of a session (see the module docstring)."""

    name = "ibb"

    def __init__(self, control: Any, method: Any):
        self.control = control
        self.method = method
        self.offered: Optional[IBBTransport] = None
        self._attempt: Optional[defer.Deferred] = None
        self.stopped = False

    # -- initiator -------------------------------------------------------------------

    def prepare(self) -> "defer.Deferred[IBBTransport]":
        options = self.control.options
        try:
            blockSize = int(options.get("block-size", self.method.blockSize))
        except (TypeError, ValueError):
            return defer.fail(MethodFailed("ibb: invalid block-size option"))
        stanza = options.get("stanza", self.method.stanza)
        if not 1 <= blockSize <= wire.MAX_BLOCK_SIZE or stanza not in wire.STANZAS:
            return defer.fail(MethodFailed("ibb: invalid block-size or stanza option"))
        self.offered = IBBTransport(newIBBSid(), blockSize,
                                    None if stanza == wire.STANZA_IQ else stanza)
        return defer.succeed(self.offered)

    def start(self, answer: Any) -> None:
        """The peer accepted (session-accept or transport-accept): open."""
        assert self.offered is not None
        try:
            if not isinstance(answer, IBBTransport):
                raise MalformedJingle("the answer is not an IBB transport")
            blockSize = acceptedBlockSize(self.offered, answer)
        except MalformedJingle as e:
            self.control.transportFailed(self, "ibb: %s" % (e,))
            return
        negotiated = self.offered.withBlockSize(blockSize)
        ctx = self.control.context(negotiated.sid, {
            "block-size": negotiated.blockSize, "stanza": negotiated.stanzaType})
        self._run(self.method.initiate, ctx)

    # -- responder -------------------------------------------------------------------

    def answer(self, offer: Any) -> "defer.Deferred[IBBTransport]":
        """Expect the initiator's <open/> and say what we accept."""
        if not isinstance(offer, IBBTransport):
            return defer.fail(MethodFailed("ibb: the offer is not an IBB transport"))
        answer = answerFor(offer, self.method.maxBlockSize)
        self.offered = answer
        ctx = self.control.context(answer.sid, {
            "check-open": lambda request: openMismatch(answer, request)})
        self._run(self.method.expect, ctx)
        return defer.succeed(answer)

    def startAnswered(self, offer: Any) -> None:
        """The answer is sent; the engine already waits for the <open/>."""

    # -- both ------------------------------------------------------------------------

    def _run(self, fn: Any, ctx: Any) -> None:
        d = bounded(self.control.clock, call(fn, ctx), self.control.negotiator.attemptTimeout)
        self._attempt = d

        def up(stream):
            self._attempt = None
            if self.stopped:
                stream.abortConnection()
                return
            self.control.transportUp(self, stream)

        def failed(f):
            self._attempt = None
            if f.check(defer.CancelledError) or self.stopped:
                return
            reason = f.value.reason if f.check(MethodFailed) else f.getErrorMessage()
            self.control.transportFailed(self, reason, getattr(f.value, "condition", None))

        d.addCallbacks(up, failed)

    def info(self, transport: Any) -> None:
        """transport-info: another IBB session (XEP-0261 section 2.4)."""

    def stop(self) -> None:
        self.stopped = True
        if self._attempt is not None:
            attempt, self._attempt = self._attempt, None
            attempt.cancel()
