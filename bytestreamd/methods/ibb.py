"""
XEP-0047 In-Band Bytestreams as an :class:`IStreamMethod`.

:class:`IBBMethod` is the XMPP handler: it opens sessions (``initiate``),
admits the ones negotiation announced (``expect``), routes ``<open/>``,
``<data/>``, acknowledgements and ``<close/>`` to the sessions, answers
every error condition of the XEP, and advertises
``http://jabber.org/protocol/ibb`` in disco.  Each session is a sans-I/O
machine, :class:`~bytestreamd.methods.ibb_session.IBBSession`, owned by an
:class:`~bytestreamd.methods.ibb_stream.IBBStream`, an ordinary Twisted
transport; this handler is the machine's owner
(:class:`~bytestreamd.methods.ibb_session.IIBBSessionOwner`) and talks to it
only through its public inputs.  Why the sender pipelines (``window``,
default 32) and how backpressure works both ways is explained in
:mod:`bytestreamd.methods.ibb_stream`.  ``IBBStream`` and ``IBBAddress`` are
re-exported here so existing imports keep working.

The interface other negotiations use (SI today; Jingle's XEP-0261 next)
    :meth:`IBBMethod.initiate` and :meth:`IBBMethod.expect`, both taking a
    :class:`~bytestreamd.interfaces.StreamContext` whose ``sid`` is the IBB
    sid and whose ``options`` may say:

    * initiate: ``block-size`` (first size asked; default the handler's
      ``blockSize``), ``stanza`` (``iq``/``message``), and
      ``block-size-fallback`` (default true: on ``resource-constraint`` ask
      again with half the size, down to ``minBlockSize``; XEP-0261 passes
      false, the size was negotiated).
    * expect: ``block-size``: the size the initiator's ``<open/>`` must
      name exactly (XEP-0261 section 2: otherwise ``resource-constraint``,
      type ``modify``); without it any size up to ``maxBlockSize`` is
      taken.  ``stanza``: the kind it must name (otherwise
      ``not-acceptable``); without it either.

    An ``<open/>`` is accepted only for a sid that ``expect`` was called for, from
    that context's initiator: any other is refused with ``not-acceptable``
    ("no IBB session ... was negotiated", the same answer whether or not the
    sid exists, so a stranger learns nothing).  That is how a Jingle session
    authorizes the sids of its IBB transports: it calls ``expect`` for
    each, and cancels the Deferred to withdraw one.

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
from typing import Dict, Optional, Set, Tuple, Type, TypeVar

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error as jerror
from twisted.words.xish import domish
from wokkel import disco, iwokkel
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.errors import MethodFailed, stanzaError
from bytestreamd.interfaces import IStreamMethod, StreamContext
from bytestreamd.methods.ibb_session import (MIN_BLOCK_SIZE, OPENING, IBBSession,
                                             IIBBSessionOwner)
from bytestreamd.methods.ibb_stream import IBBAddress, IBBStream, sameJID
from bytestreamd.xmpp.stanzas import (LATER, Handler, RequestTimeout, failureText,
                                      makeIQ, printable)
from bytestreamd.wire import ibb as wire

_NS = ns.NS_IBB

log = Logger()

#: Random bytes in each stream's id tag: the tag is what makes an id
#: unguessable to everyone but the stream's peer.
TAG_BYTES = 9

_Request = TypeVar("_Request", wire.Open, wire.Close)


def _inUse(sid: str) -> MethodFailed:
    return MethodFailed("ibb: session %s already in use" % sid)


def _ibbChild(stanza: domish.Element) -> Optional[domish.Element]:
    """The stanza's first child element in the IBB namespace, if any."""
    for c in stanza.children:
        if c.__class__ is domish.Element and c.uri == _NS:
            return c
    return None


def _flag(value, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() not in ("0", "false", "no", "off")
    return bool(value)


@implementer(IStreamMethod, iwokkel.IDisco, IIBBSessionOwner)
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
    #: An error answer never reflects a data block back (the payload).
    echoRequest = False

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
        # Every session by sid, opening or open; the streams by id tag.
        self._sessions: Dict[str, IBBStream] = {}
        self._byTag: Dict[str, IBBStream] = {}
        # tag -> senders already logged for forging an answer on that stream
        self._forgers: Dict[str, Set[str]] = {}
        #: Forged answers to data blocks dropped (for tests).
        self.forgedAnswers = 0
        # Opening sessions: the Deferred initiate/expect returned, and the
        # <open/> request in flight (initiator).
        self._waiting: Dict[IBBSession, defer.Deferred] = {}
        self._openRequests: Dict[IBBSession, defer.Deferred] = {}

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
        for stream in list(self._sessions.values()):
            stream.session.xmppLost()

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if not nodeIdentifier:
            return [disco.DiscoFeature(ns.NS_IBB)]
        return []

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

    # -- IStreamMethod ------------------------------------------------------

    def streams(self) -> Dict[str, IBBStream]:
        """The open sessions by sid (a copy)."""
        return {sid: stream for sid, stream in self._sessions.items()
                if stream.session.state is not OPENING}

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
        if ctx.sid in self._sessions:
            return defer.fail(_inUse(ctx.sid))
        stream = self._newStream(ctx, blockSize, stanza,
                                 _flag(ctx.options.get("block-size-fallback"), True))
        session = stream.session
        d = self._waiting[session] = defer.Deferred(
            lambda d: self._cancelled(session, d))
        session.start()
        return d

    def expect(self, ctx: StreamContext) -> defer.Deferred:
        if ctx.sid in self._sessions:
            return defer.fail(_inUse(ctx.sid))
        blockSize = stanza = None
        if "block-size" in ctx.options or "stanza" in ctx.options:
            try:
                blockSize, stanza = self._options(ctx)
            except MethodFailed as e:
                return defer.fail(e)
            if "block-size" not in ctx.options:
                blockSize = None
            if "stanza" not in ctx.options:
                stanza = None
        stream = self._newStream(ctx, blockSize, stanza, False)
        session = stream.session
        d = self._waiting[session] = defer.Deferred(
            lambda d: self._cancelled(session, d))
        return d

    def _cancelled(self, session: IBBSession, d: defer.Deferred) -> None:
        """The caller gave up on an opening session: forget it, refuse its open."""
        if self._waiting.get(session) is d:
            del self._waiting[session]
            session.giveUp(MethodFailed("ibb: cancelled"))

    # -- sessions -----------------------------------------------------------

    def _newStream(self, ctx: StreamContext, blockSize: Optional[int],
                   stanza: Optional[str], fallback: bool) -> IBBStream:
        # token_urlsafe has no '.', which _streamFor relies on.
        tag = "%s%s." % (self._idPrefix, secrets.token_urlsafe(TAG_BYTES))
        stream = IBBStream(ctx, self.clock, self, tag, blockSize, stanza,
                           window=self.window, ackTimeout=self.dataAckTimeout,
                           maxHeld=self.maxReceiveBuffer, maxBlockSize=self.maxBlockSize,
                           minBlockSize=self.minBlockSize, fallback=fallback)
        self._sessions[ctx.sid] = stream
        self._byTag[tag] = stream
        return stream

    # -- IIBBSessionOwner: what the sessions ask of us -------------------------

    def answer(self, stanza: domish.Element, condition: Optional[str] = None,
               text: Optional[str] = None) -> None:
        # XEP-0047 gives every data and session error the type cancel.
        self.replyTo(stanza, None if condition is None
                     else stanzaError(condition, text=text, type="cancel"))

    def requestOpen(self, session: IBBSession, request: wire.Open) -> None:
        iq = makeIQ("set", session.peer)
        iq.addChild(request.toElement())
        d = self._openRequests[session] = self.request(iq, self.ackTimeout)

        def answered(result):
            if self._openRequests.get(session) is d:
                del self._openRequests[session]
            if isinstance(result, failure.Failure):
                if result.check(defer.CancelledError):
                    return None
                if result.check(jerror.StanzaError):
                    session.openRefused(result.value.condition, failureText(result))
                elif result.check(RequestTimeout):
                    session.openTimedOut(self.ackTimeout)
                else:
                    session.giveUp(MethodFailed("ibb: open failed: %s" % failureText(result)))
            else:
                session.openAcked()
            return None

        d.addBoth(answered)

    def requestClose(self, session: IBBSession) -> None:
        iq = makeIQ("set", session.peer)
        iq.addChild(wire.Close(session.sid).toElement())
        # Result, error (item-not-found...) or timeout: closed either way.
        self.request(iq, self.ackTimeout).addBoth(lambda _: session.closeAnswered())

    def opened(self, session: IBBSession) -> None:
        d = self._waiting.pop(session, None)
        if d is not None:
            d.callback(self._sessions[session.sid])

    def openFailed(self, session: IBBSession, reason: MethodFailed) -> None:
        request = self._openRequests.pop(session, None)
        if request is not None:
            request.cancel()
        d = self._waiting.pop(session, None)
        if d is not None and not d.called:
            d.errback(reason)

    def finished(self, session: IBBSession) -> None:
        stream = self._sessions.get(session.sid)
        if stream is not None and stream.session is session:
            del self._sessions[session.sid]
        self._byTag.pop(session.tag, None)
        self._forgers.pop(session.tag, None)

    # -- incoming -----------------------------------------------------------

    def _onIQ(self, iq: domish.Element) -> None:
        kind = iq.getAttribute("type")
        if kind == "set":
            payload = _ibbChild(iq)
            if payload is None:
                return
            name = payload.name
            if name == "data":   # the fast path: answered by the session
                iq.handled = True
                self._onData(iq, payload, iq.getAttribute("id", ""))
            elif name == "open":
                self.handleIQ(iq, self._onOpen)
            elif name == "close":
                self.handleIQ(iq, self._onClose)
        elif kind == "result" or kind == "error":
            self._onResponse(iq)

    def _onMessage(self, message: domish.Element) -> None:
        if message.getAttribute("type") == "error":
            self._onMessageError(message)
            return
        payload = _ibbChild(message)
        if payload is not None and payload.name == "data":
            self._onData(message, payload, None)

    @staticmethod
    def _parseRequest(iq: domish.Element, codec: Type[_Request]) -> _Request:
        """
        Decode the ``<open/>`` or ``<close/>`` of ``iq`` with ``codec``; a
        malformed one is refused with ``bad-request``.
        """
        try:
            return codec.fromElement(_ibbChild(iq))
        except wire.MalformedIBB as e:
            raise stanzaError("bad-request", str(e), type="cancel")

    def _onOpen(self, iq: domish.Element) -> object:
        """An ``<open/>`` (through the IQ boundary)."""
        request = self._parseRequest(iq, wire.Open)
        sid = request.sid
        stream = self._sessions.get(sid)
        session = stream.session if stream is not None else None
        if session is not None and session.state is not OPENING:
            raise stanzaError("not-acceptable", "IBB session %s is already open" % sid,
                              type="cancel")
        # An open from anyone but the negotiated initiator is answered like
        # one for an unknown sid, which does not tell them the sid exists.
        if session is None or session.initiator \
                or not sameJID(iq.getAttribute("from"), session.peerStr, session.peer):
            raise stanzaError("not-acceptable", "no IBB session %s was negotiated" % sid,
                              type="cancel")
        refusal = session.openReceived(request)
        if refusal is not None:
            condition, text, kind = refusal
            raise stanzaError(condition, text, type=kind)
        # The result goes out before the stream is handed over: whatever
        # its new owner writes must not reach the peer before the result.
        self.replyTo(iq, None)
        d = self._waiting.pop(session, None)
        if d is not None:
            d.callback(stream)
        return LATER

    def _onData(self, stanza: domish.Element, data: domish.Element,
                ackId: Optional[str]) -> None:
        stream = self._sessions.get(data.getAttribute("sid"))
        if stream is None or stream.session.state is OPENING:
            self.answer(stanza, "item-not-found", "no such IBB session")
            return
        session = stream.session
        if not sameJID(stanza.getAttribute("from"), session.peerStr, session.peer):
            self.answer(stanza, "not-acceptable",
                        "IBB session %s belongs to another entity" % session.sid)
            return
        session.dataReceived(stanza, data, ackId)

    def _onClose(self, iq: domish.Element) -> object:
        """A ``<close/>`` (through the IQ boundary); the session answers it."""
        request = self._parseRequest(iq, wire.Close)
        stream = self._sessions.get(request.sid)
        if stream is None or stream.session.state is OPENING:
            raise stanzaError("item-not-found", "no such IBB session", type="cancel")
        session = stream.session
        if not sameJID(iq.getAttribute("from"), session.peerStr, session.peer):
            raise stanzaError("not-acceptable",
                              "IBB session %s belongs to another entity" % request.sid,
                              type="cancel")
        session.closeReceived(iq)
        return LATER

    def _streamFor(self, stanzaId: Optional[str]) -> Optional[IBBStream]:
        if not stanzaId or not stanzaId.startswith(self._idPrefix):
            return None
        return self._byTag.get(stanzaId[:stanzaId.rfind(".") + 1])

    def _fromPeer(self, stanza: domish.Element, session: IBBSession) -> bool:
        """
        Whether an answer to one of ``session``'s blocks comes from its peer
        (the only entity the blocks went to); if not, drop it and log the
        forger once per session.
        """
        sender = stanza.getAttribute("from")
        if sameJID(sender, session.peerStr, session.peer):
            return True
        self.forgedAnswers += 1
        forgers = self._forgers.setdefault(session.tag, set())
        key = sender or ""
        if key not in forgers and len(forgers) < 8:
            forgers.add(key)
            log.warn("ibb: dropped a forged answer to a data block of session {sid} "
                     "with {peer}: {kind} from {forger}", sid=printable(session.sid),
                     peer=session.peerStr, kind=printable(stanza.getAttribute("type")),
                     forger=printable(sender or "(no from)"))
        return False

    def _onResponse(self, iq: domish.Element) -> None:
        iqId = iq.getAttribute("id")
        stream = self._streamFor(iqId)
        if stream is None:
            return
        iq.handled = True
        session = stream.session
        if not self._fromPeer(iq, session):
            return
        if iq.getAttribute("type") == "error":
            session.refused(iqId, jerror.exceptionFromStanza(iq))
        else:
            session.acked(iqId)

    def _onMessageError(self, message: domish.Element) -> None:
        stream = self._streamFor(message.getAttribute("id"))
        if stream is not None:
            message.handled = True
            if self._fromPeer(message, stream.session):
                stream.session.refused(None, jerror.exceptionFromStanza(message))


__all__ = ["IBBMethod", "IBBStream", "IBBAddress", "IBBSession", "MIN_BLOCK_SIZE"]
