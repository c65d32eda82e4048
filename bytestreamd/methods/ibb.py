"""
XEP-0047 In-Band Bytestreams as an :class:`IStreamMethod`.

:class:`IBBMethod` is the XMPP handler: it opens sessions (``initiate``),
admits the ones negotiation announced (``expect``), routes ``<data/>`` and
``<close/>`` to the sessions, answers every error condition of the XEP, and
advertises ``http://jabber.org/protocol/ibb`` in disco.  Each session is an
:class:`~bytestreamd.methods.ibb_stream.IBBStream`, an ordinary Twisted
transport; why the sender pipelines (``window``, default 32) and how
backpressure works both ways is explained in
:mod:`bytestreamd.methods.ibb_stream`.  ``IBBStream`` and ``IBBAddress`` are
re-exported here so existing imports keep working.

Incoming stanzas are dispatched by hand from two name-only observers (see
``connectionInitialized``): on a busy stream that is cheaper than xpath.

Data blocks are not sent through :meth:`Connection.request` (one Deferred
and one timer per block would cost more than the block), so their answers
are authenticated here, the same way: each stream's ids start with a
random tag (``ibb<daemon>.<random>.<n>``) that only its peer ever sees, and
an acknowledgement or message error counts only if it comes from the
stream's peer (a string compare first, a JID parse only when the strings
differ).  Anything else is dropped, logged once per stream and sender.

Why one long module: the handler dispatches by hand for speed (see above), and every XEP-0047 error condition is answered here.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Dict, Optional, Set, Tuple, Type, TypeVar

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error as jerror
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from wokkel import disco, iwokkel
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.errors import MethodFailed, NotConnected, stanzaError
from bytestreamd.interfaces import IStreamMethod, StreamContext
from bytestreamd.methods.ibb_stream import IBBAddress, IBBStream, _sameJID
from bytestreamd.xmpp.stanzas import (Handler, RequestTimeout, failureText, makeIQ,
                                 printable, resultFor)
from bytestreamd.wire import ibb as wire

_NS = ns.NS_IBB

log = Logger()

#: Random bytes in each stream's id tag: the tag is what makes an id
#: unguessable to everyone but the stream's peer.
TAG_BYTES = 9

_Request = TypeVar("_Request", wire.Open, wire.Close)

#: Smallest block size an initiator falls back to on resource-constraint.
MIN_BLOCK_SIZE = 512


def _inUse(sid: str) -> MethodFailed:
    return MethodFailed("ibb: session %s already in use" % sid)


def _ibbChild(stanza: domish.Element) -> Optional[domish.Element]:
    """The stanza's first child element in the IBB namespace, if any."""
    for c in stanza.children:
        if c.__class__ is domish.Element and c.uri == _NS:
            return c
    return None


@implementer(IStreamMethod, iwokkel.IDisco)
class IBBMethod(Handler):
    """
    The IBB handler and stream method.  Keyword options: ``blockSize`` and
    ``stanza`` are defaults that ``ctx.options['block-size'/'stanza']``
    override per stream; ``window`` is the number of unacknowledged data
    iqs; ``maxBlockSize`` is the largest block a peer may open with;
    ``ackTimeout`` bounds every IBB iq (open, close, and data unless
    ``dataAckTimeout`` says otherwise);
    ``maxReceiveBuffer`` bounds what one stream holds for a paused reader.
    """

    name = "ibb"
    namespace = ns.NS_IBB

    def __init__(self, clock, blockSize: int = wire.DEFAULT_BLOCK_SIZE,
                 stanza: str = wire.STANZA_IQ, window: int = 32,
                 maxBlockSize: int = wire.MAX_BLOCK_SIZE, ackTimeout: float = 60.0,
                 maxReceiveBuffer: Optional[int] = None,
                 minBlockSize: int = MIN_BLOCK_SIZE,
                 dataAckTimeout: Optional[float] = -1.0):
        Handler.__init__(self)
        if not 1 <= blockSize <= wire.MAX_BLOCK_SIZE:
            raise ValueError("IBB block size must be 1..65535, not %r" % (blockSize,))
        if stanza not in wire.STANZAS:
            raise ValueError("IBB stanza must be 'iq' or 'message', not %r" % (stanza,))
        if window < 1:
            raise ValueError("IBB window must be at least 1")
        self.clock = clock
        self.blockSize = blockSize
        self.stanza = stanza
        self.window = window
        self.maxBlockSize = min(maxBlockSize, wire.MAX_BLOCK_SIZE)
        self.minBlockSize = minBlockSize
        self.ackTimeout = ackTimeout
        #: How long unacknowledged data may wait before the stream breaks;
        #: ``None``: no limit.  The daemon passes ``None``: a receiver whose
        #: local reader is slow holds its acks back (backpressure), so a
        #: late ack says nothing about a dead peer -- the liveness check
        #: (bytestreamd.xmpp.liveness) asks the peer instead (issue 6 d).
        self.dataAckTimeout = ackTimeout if dataAckTimeout == -1.0 else dataAckTimeout
        if maxReceiveBuffer is None:
            # Room for a peer's full window of maximum blocks, twice over.
            maxReceiveBuffer = 2 * window * self.maxBlockSize
        self.maxReceiveBuffer = maxReceiveBuffer
        self._idPrefix = "ibb%s." % os.urandom(4).hex()
        self._streams: Dict[str, IBBStream] = {}
        self._byTag: Dict[str, IBBStream] = {}
        # tag -> senders already logged for forging an answer on that stream
        self._forgers: Dict[str, Set[str]] = {}
        #: Forged answers to data blocks dropped (for tests).
        self.forgedAnswers = 0
        self._expected: Dict[str, Tuple[StreamContext, defer.Deferred]] = {}

    # -- XMPPHandler --------------------------------------------------------

    def connectionInitialized(self) -> None:
        # Two name-only observers, dispatching by hand: on a busy stream the
        # xpath predicates of seven specific queries cost more than the IBB
        # logic itself.
        xs = self.xmlstream
        xs.addObserver("/iq", self._onIQ)
        xs.addObserver("/message", self._onMessage)

    def connectionLost(self, reason) -> None:
        Handler.connectionLost(self, reason)
        for stream in list(self._streams.values()):
            stream._broken("XMPP connection lost", sendClose=False)
        expected, self._expected = self._expected, {}
        for ctx, d in expected.values():
            d.errback(MethodFailed("ibb: XMPP connection lost before %s opened %s"
                                   % (ctx.initiator.full(), ctx.sid)))

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if not nodeIdentifier:
            return [disco.DiscoFeature(ns.NS_IBB)]
        return []

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

    # -- IStreamMethod ------------------------------------------------------

    def streams(self) -> Dict[str, IBBStream]:
        """The open sessions by sid (a copy)."""
        return dict(self._streams)

    def _options(self, ctx: StreamContext) -> Tuple[int, str]:
        blockSize = ctx.options.get("block-size", self.blockSize)
        stanza = ctx.options.get("stanza", self.stanza)
        try:
            blockSize = int(blockSize)
        except (TypeError, ValueError):
            raise MethodFailed("ibb: invalid block-size option %r" % (blockSize,))
        if not 1 <= blockSize <= wire.MAX_BLOCK_SIZE:
            raise MethodFailed("ibb: block-size must be 1..65535, not %d" % blockSize)
        if stanza not in wire.STANZAS:
            raise MethodFailed("ibb: stanza must be iq or message, not %r" % (stanza,))
        return blockSize, stanza

    def initiate(self, ctx: StreamContext) -> defer.Deferred:
        try:
            blockSize, stanza = self._options(ctx)
        except MethodFailed as e:
            return defer.fail(e)
        if ctx.sid in self._streams or ctx.sid in self._expected:
            return defer.fail(_inUse(ctx.sid))
        pending: Dict[str, Any] = {}

        def cancel(_):
            request = pending.pop("request", None)
            if request is not None:
                request.cancel()

        result = defer.Deferred(cancel)

        def attempt(size: int) -> None:
            iq = makeIQ("set", ctx.target)
            iq.addChild(wire.Open(ctx.sid, size, stanza).toElement())
            request = self.request(iq, self.ackTimeout)
            pending["request"] = request
            request.addCallbacks(opened, failed, callbackArgs=(size,), errbackArgs=(size,))

        def opened(_, size: int) -> None:
            pending.pop("request", None)
            if ctx.sid in self._streams:
                result.errback(_inUse(ctx.sid))
                return
            result.callback(self._newStream(ctx, size, stanza))

        def failed(f: failure.Failure, size: int) -> None:
            pending.pop("request", None)
            if f.check(defer.CancelledError):
                return
            if f.check(jerror.StanzaError):
                condition = f.value.condition
                if condition == "resource-constraint" and size > self.minBlockSize:
                    pending.setdefault("constrained", []).append(size)
                    attempt(max(self.minBlockSize, size // 2))
                    return
                reason = "ibb: %s refused open (block-size %d): %s" % (
                    ctx.target.full(), size, failureText(f))
                if pending.get("constrained"):
                    reason += " (after resource-constraint at block-size %s)" % (
                        ", ".join(str(n) for n in pending["constrained"]),)
            elif f.check(RequestTimeout):
                condition = "timeout"
                reason = "ibb: no answer from %s to open within %gs" % (
                    ctx.target.full(), self.ackTimeout)
            else:
                condition = None
                reason = "ibb: open failed: %s" % failureText(f)
            result.errback(MethodFailed(reason, condition))

        attempt(blockSize)
        return result

    def expect(self, ctx: StreamContext) -> defer.Deferred:
        """
        Admit ``ctx.initiator``'s ``<open/>`` for ``ctx.sid``.  An open for
        a sid nobody expects is refused ``not-acceptable``.  The option
        ``check-open`` (a callable taking the decoded ``wire.Open`` and
        returning ``None`` or why it does not match) lets a negotiation
        that fixed the block-size and stanza kind (XEP-0261) have a
        mismatching open refused ``resource-constraint``.
        """
        if ctx.sid in self._streams or ctx.sid in self._expected:
            return defer.fail(_inUse(ctx.sid))

        def cancel(d):
            if self._expected.get(ctx.sid, (None, None))[1] is d:
                del self._expected[ctx.sid]

        d = defer.Deferred(cancel)
        self._expected[ctx.sid] = (ctx, d)
        return d

    # -- sessions -----------------------------------------------------------

    def _newStream(self, ctx: StreamContext, blockSize: int, stanza: str) -> IBBStream:
        # token_urlsafe has no '.', which _streamFor relies on.
        tag = "%s%s." % (self._idPrefix, secrets.token_urlsafe(TAG_BYTES))
        stream = IBBStream(self, ctx, blockSize, stanza, tag)
        self._streams[ctx.sid] = stream
        self._byTag[tag] = stream
        return stream

    def _forget(self, stream: IBBStream) -> None:
        if self._streams.get(stream.sid) is stream:
            del self._streams[stream.sid]
        self._byTag.pop(stream._tag, None)
        self._forgers.pop(stream._tag, None)

    def _sendClose(self, stream: IBBStream) -> defer.Deferred:
        iq = makeIQ("set", stream.peerJID)
        iq.addChild(wire.Close(stream.sid).toElement())
        return self.request(iq, self.ackTimeout)

    def _refuse(self, stanza: domish.Element, condition: str, text: str,
                type: str = "cancel") -> None:
        """
        Answer a stanza (iq or message) with a stanza error; XEP-0047 gives
        every data and session error the type ``cancel``.
        """
        if stanza.getAttribute("type") == "error":
            return
        # Not errorFor(): that echoes the stanza's children, which for a
        # refused data block is the whole payload reflected back.
        response = toResponse(stanza, "error")
        response.addChild(stanzaError(condition, text=text, type=type).getElement())
        try:
            self.send(response)
        except NotConnected:
            pass

    # -- incoming -----------------------------------------------------------

    def _onIQ(self, iq: domish.Element) -> None:
        kind = iq.getAttribute("type")
        if kind == "set":
            payload = _ibbChild(iq)
            if payload is None:
                return
            name = payload.name
            if name == "data":
                iq.handled = True
                self._onData(iq, payload, True)
            elif name == "open":
                self._onOpen(iq, payload)
            elif name == "close":
                self._onClose(iq, payload)
        elif kind == "result" or kind == "error":
            self._onResponse(iq)

    def _onMessage(self, message: domish.Element) -> None:
        if message.getAttribute("type") == "error":
            self._onMessageError(message)
            return
        payload = _ibbChild(message)
        if payload is not None and payload.name == "data":
            self._onData(message, payload, False)

    def _parseRequest(self, iq: domish.Element, payload: domish.Element,
                      codec: Type[_Request]) -> Optional[_Request]:
        """
        Take an ``<open/>`` or ``<close/>`` iq and decode its payload with
        ``codec``; a malformed one is refused (``bad-request``) and gives
        ``None``.
        """
        iq.handled = True
        try:
            return codec.fromElement(payload)
        except wire.MalformedIBB as e:
            self._refuse(iq, "bad-request", str(e))
            return None

    def _onOpen(self, iq: domish.Element, payload: domish.Element) -> None:
        request = self._parseRequest(iq, payload, wire.Open)
        if request is None:
            return
        sid = request.sid
        if sid in self._streams:
            self._refuse(iq, "not-acceptable", "IBB session %s is already open" % sid)
            return
        ctx, d = self._expected.get(sid, (None, None))
        # An open from anyone but the negotiated initiator is answered like
        # one for an unknown sid, which does not tell them the sid exists.
        if ctx is None or not _sameJID(iq.getAttribute("from"),
                                       ctx.initiator.full(), ctx.initiator):
            self._refuse(iq, "not-acceptable", "no IBB session %s was negotiated" % sid)
            return
        check = ctx.options.get("check-open")
        why = check(request) if check is not None else None
        if why is not None:
            # XEP-0261: an <open/> that does not match what Jingle
            # negotiated is refused resource-constraint; still expected.
            self._refuse(iq, "resource-constraint", why, type="modify")
            return
        if request.blockSize > self.maxBlockSize:
            self._refuse(iq, "resource-constraint",
                         "block-size at most %d, please" % self.maxBlockSize, type="modify")
            return
        del self._expected[sid]
        stream = self._newStream(ctx, request.blockSize, request.stanza)
        self.send(resultFor(iq))
        d.callback(stream)

    def _onData(self, stanza: domish.Element, data: domish.Element, isIQ: bool) -> None:
        stream = self._streams.get(data.getAttribute("sid"))
        if stream is None:
            self._refuse(stanza, "item-not-found", "no such IBB session")
            return
        stream._dataReceived(stanza, data, isIQ)

    def _onClose(self, iq: domish.Element, payload: domish.Element) -> None:
        request = self._parseRequest(iq, payload, wire.Close)
        if request is None:
            return
        stream = self._streams.get(request.sid)
        if stream is None:
            self._refuse(iq, "item-not-found", "no such IBB session")
            return
        if not _sameJID(iq.getAttribute("from"), stream._peerStr, stream.peerJID):
            self._refuse(iq, "not-acceptable",
                         "IBB session %s belongs to another entity" % request.sid)
            return
        stream._peerClose(iq)

    def _streamFor(self, stanzaId: Optional[str]) -> Optional[IBBStream]:
        if not stanzaId or not stanzaId.startswith(self._idPrefix):
            return None
        return self._byTag.get(stanzaId[:stanzaId.rfind(".") + 1])

    def _fromPeer(self, stanza: domish.Element, stream: IBBStream) -> bool:
        """
        Whether an answer to one of ``stream``'s blocks comes from its peer
        (the only entity the blocks went to); if not, drop it and log the
        forger once per stream.
        """
        sender = stanza.getAttribute("from")
        if _sameJID(sender, stream._peerStr, stream.peerJID):
            return True
        self.forgedAnswers += 1
        forgers = self._forgers.setdefault(stream._tag, set())
        key = sender or ""
        if key not in forgers and len(forgers) < 8:
            forgers.add(key)
            log.warn("ibb: dropped a forged answer to a data block of session {sid} "
                     "with {peer}: {kind} from {forger}", sid=printable(stream.sid),
                     peer=stream._peerStr, kind=printable(stanza.getAttribute("type")),
                     forger=printable(sender or "(no from)"))
        return False

    def _onResponse(self, iq: domish.Element) -> None:
        iqId = iq.getAttribute("id")
        stream = self._streamFor(iqId)
        if stream is None:
            return
        iq.handled = True
        if not self._fromPeer(iq, stream):
            return
        stream._ackReceived(iqId, iq if iq.getAttribute("type") == "error" else None)

    def _onMessageError(self, message: domish.Element) -> None:
        stream = self._streamFor(message.getAttribute("id"))
        if stream is not None:
            message.handled = True
            if self._fromPeer(message, stream):
                stream._messageError(message)


__all__ = ["IBBMethod", "IBBStream", "IBBAddress", "MIN_BLOCK_SIZE"]
