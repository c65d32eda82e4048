"""
The stanza plumbing every XEP handler shares: a stream manager that never
queues, IQ requests with timeouts, and raw-XML helpers for the data path.

Every IQ request goes through :meth:`Connection.request`, which is where
answers are authenticated: wokkel's ``StreamManager`` takes any ``result`` or
``error`` whose id matches a pending request, whoever sent it, and twisted's
``addUniqueId`` numbers ids ``H_0, H_1, ...``, so any stranger could answer
(and break) our SI offers, disco requests, IBB opens and SOCKS5 queries.
Here ids come from :func:`newStanzaId` (random, not guessable) and an answer
counts only when it comes from the entity the request was sent to
(:func:`answerMatches`, RFC 6120 8.1.2.1); anything else is dropped and
logged, and the request keeps waiting for the real answer.

wokkel's ``StreamManager`` queues stanzas sent while disconnected and replays
them after the next login.  For bytestreams that is wrong -- an IBB data
packet or an SI offer means nothing on a new session, and the links it
belonged to have already been torn down -- so :class:`Connection` raises
:class:`bytestreamd.errors.NotConnected` instead and fails every pending
request when the stream goes away.

Incoming IQ requests are answered at one boundary, :class:`IQBoundary`
(every :class:`Handler` is one), as wokkel's ``IQHandlerMixin`` does: a
handler returns its result (``None``, an element, :data:`LATER` when it
answers later, or a Deferred of one) or raises ``StanzaError``;
:meth:`IQBoundary.replyTo` turns that into the reply, and turns anything
else a handler raises into ``internal-server-error`` (logged once, with its
traceback), so no request is left without an answer.  Only IBB data blocks
bypass it, for speed (:mod:`bytestreamd.methods.ibb`).
"""

from __future__ import annotations

import re
import secrets
from typing import Dict, NamedTuple, Optional, Set, Union

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error as jerror
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import StreamManager, XMPPHandler

from bytestreamd.errors import NotConnected

Stanza = Union[domish.Element, str]

log = Logger()

#: Random bytes in every stanza id we generate: 96 bits cannot be guessed
#: by a peer flooding answers, and the id stays short on the data path.
ID_BYTES = 12


def newStanzaId(prefix: str = "b") -> str:
    """
    A fresh stanza id that nobody else can predict (``secrets``, not a
    counter), so an answer with a matching id came from someone who saw the
    request.
    """
    return prefix + secrets.token_urlsafe(ID_BYTES)


class _Addressee(NamedTuple):
    """Whom a pending request went to, for checking who answers it."""

    to: Optional[str]      # the 'to' attribute as sent ('' or None: own account)
    jid: Optional[JID]     # it parsed, when it parsed
    ownAccount: bool       # no 'to', or our own bare JID


def answerMatches(addressee: _Addressee, sender: Optional[str],
                  own: Optional[JID]) -> bool:
    """
    Whether an answer from ``sender`` (the ``from`` attribute, ``None`` if
    absent) may answer a request sent to ``addressee``, per RFC 6120
    8.1.2.1: a request with no ``to`` or to our own bare JID is answered by
    our account, i.e. with no ``from``, our bare JID or our full JID; any
    other request must be answered by exactly the JID it was sent to (a
    bare JID by that bare JID, a full JID by that full JID), compared as
    JIDs after a cheap string compare.
    """
    if addressee.ownAccount:
        if not sender:
            return True
        if own is None:
            return False
        if sender == own.full() or sender == own.userhost():
            return True
        parsed = parseJID(sender)
        return parsed is not None and (parsed == own or parsed == own.userhostJID())
    if not sender:
        return False
    if sender == addressee.to:
        return True
    parsed = parseJID(sender)
    return parsed is not None and addressee.jid is not None and parsed == addressee.jid


def addresseeOf(to: Optional[str], own: Optional[JID]) -> _Addressee:
    """Classify a request's ``to`` for :func:`answerMatches`."""
    if not to:
        return _Addressee(None, None, True)
    parsed = parseJID(to)
    ownAccount = (parsed is not None and own is not None
                  and parsed == own.userhostJID())
    return _Addressee(to, parsed, ownAccount)


def printable(text: Optional[str], limit: int = 200) -> str:
    """``text`` made safe for one log line (no control characters, bounded)."""
    if text is None:
        return "(none)"
    out = "".join(c if c.isprintable() else "\\x%02x" % ord(c) if ord(c) < 256
                  else "\\u%04x" % ord(c) for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


class SASLRedactor:
    """
    Removes SASL payloads from one direction of raw stream traffic before
    ``log_traffic`` logs it.

    The contents of ``<auth/>``, ``<response/>``, ``<challenge/>`` and
    ``<success/>`` (RFC 6120 6.4) are the password itself for PLAIN and
    material to attack it offline for SCRAM, so they are replaced by
    ``[redacted]`` always; the tags, attributes (the mechanism) and every
    other byte are kept.  Raw data arrives in arbitrary chunks, so this is a
    small state machine: a tag cut in two is held until its ``>`` arrives,
    and content is redacted up to the next ``</`` even across chunks.
    """

    REDACTED = b"[redacted]"
    _OPEN = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:auth|response|challenge|success)"
                       rb"(?=[\s/>])[^>]*>")
    #: A cut tag is held at most this long (SASL start tags are short).
    MAX_HELD = 4096

    def __init__(self) -> None:
        self._inside = False
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """The loggable form of the next chunk of raw traffic."""
        data, self._held = self._held + data, b""
        out = []
        pos, size = 0, len(data)
        while pos < size:
            if self._inside:
                end = data.find(b"</", pos)
                if end < 0:
                    if data.endswith(b"<"):
                        self._held = b"<"
                    out.append(self.REDACTED)
                    break
                if end > pos:
                    out.append(self.REDACTED)
                self._inside = False
                pos = end
                continue
            match = self._OPEN.search(data, pos)
            if match is None:
                cut = data.rfind(b"<", pos)
                if cut >= 0 and data.find(b">", cut) < 0 and size - cut <= self.MAX_HELD:
                    out.append(data[pos:cut])
                    self._held = data[cut:]
                else:
                    out.append(data[pos:])
                break
            out.append(data[pos:match.end()])
            pos = match.end()
            self._inside = not match.group(0).endswith(b"/>")
        return b"".join(out)


class RequestTimeout(Exception):
    """An IQ request got no answer in time."""


class Connection(StreamManager):
    """
    The StreamManager of the daemon's one XMPP stream.

    ``jid`` is the full JID bound on the current stream (``None`` before the
    first bind).  ``clock`` is used for request timeouts.
    """

    #: Default timeout (seconds) for requests made without one.
    timeout = 30.0

    def __init__(self, factory, clock, jid: Optional[JID] = None):
        StreamManager.__init__(self, factory, reactor=clock)
        self.clock = clock
        self.jid = jid
        # Parallel to wokkel's _iqDeferreds (id -> Deferred): who each
        # pending request went to, and who has already been caught forging
        # an answer to it (logged once each).
        self._iqAddressees: Dict[str, _Addressee] = {}
        self._iqForgers: Dict[str, Set[str]] = {}
        #: Forged answers dropped on this connection (for tests and STATUS).
        self.forgedAnswers = 0

    @property
    def connected(self) -> bool:
        """True while a stream is up and initialized (bound)."""
        return bool(self._initialized)

    def send(self, obj: Stanza) -> None:
        """
        Send a stanza (an Element or an already-serialised ``str``) now, or
        raise NotConnected -- never queue.
        """
        if not self._initialized or self.xmlstream is None:
            raise NotConnected()
        self.xmlstream.send(obj)

    def request(self, iq: domish.Element, timeout: Optional[float] = None
                ) -> "defer.Deferred[domish.Element]":
        """
        Send an IQ get/set element and return a Deferred for the answer.

        Fires with the ``result`` iq; fails with ``StanzaError`` for an
        ``error`` answer, :class:`RequestTimeout` after ``timeout`` seconds,
        NotConnected if there is no stream, or the disconnect reason if the
        stream goes away first.  Cancelling it forgets the request.

        The iq always gets a fresh unguessable id here (whatever it had), and
        only an answer from the addressee counts (see the module docstring).
        """
        if not self._initialized or self.xmlstream is None:
            return defer.fail(NotConnected())
        iqId = iq["id"] = newStanzaId()
        if timeout is None:
            timeout = self.timeout

        def cancel(d):
            self._forgetRequest(iqId)

        d = defer.Deferred(cancel)
        self._iqDeferreds[iqId] = d
        self._iqAddressees[iqId] = addresseeOf(iq.getAttribute("to"), self.jid)
        if timeout:
            def onTimeout():
                if self._iqDeferreds.get(iqId) is d:
                    self._forgetRequest(iqId)
                    d.errback(RequestTimeout(
                        "no answer to iq %s from %s within %gs"
                        % (iqId, iq.getAttribute("to"), timeout)))

            call = self.clock.callLater(timeout, onTimeout)

            def stopTimer(result):
                if call.active():
                    call.cancel()
                return result

            d.addBoth(stopTimer)
        self.xmlstream.send(iq)
        return d

    def _connected(self, xs) -> None:
        """
        The transport is up: with ``logTraffic``, log every byte both ways
        except SASL payloads (see :class:`SASLRedactor`).  wokkel's own
        traffic logging would log the password.
        """
        logTraffic, self.logTraffic = self.logTraffic, False
        try:
            StreamManager._connected(self, xs)
        finally:
            self.logTraffic = logTraffic
        if logTraffic:
            inbound, outbound = SASLRedactor(), SASLRedactor()
            xs.rawDataInFn = lambda data: log.info(
                "RECV: {data!r}", data=inbound.feed(data))
            xs.rawDataOutFn = lambda data: log.info(
                "SEND: {data!r}", data=outbound.feed(data))

    def _forgetRequest(self, iqId: str) -> Optional[defer.Deferred]:
        self._iqAddressees.pop(iqId, None)
        self._iqForgers.pop(iqId, None)
        return self._iqDeferreds.pop(iqId, None)

    def _onIQResponse(self, iq: domish.Element) -> None:
        """
        A ``result`` or ``error``: deliver it to the request with its id if
        it comes from that request's addressee, else drop it (logged once
        per forger and request) and keep waiting.
        """
        iqId = iq.getAttribute("id")
        addressee = self._iqAddressees.get(iqId) if iqId else None
        if addressee is None:
            return
        sender = iq.getAttribute("from")
        if not answerMatches(addressee, sender, self.jid):
            iq.handled = True
            self.forgedAnswers += 1
            forgers = self._iqForgers.setdefault(iqId, set())
            key = sender or ""
            if key not in forgers and len(forgers) < 8:
                forgers.add(key)
                log.warn("dropped a forged iq {kind} from {forger}: it answers our "
                         "request {id} to {to}, which only {to} may answer",
                         kind=printable(iq.getAttribute("type")),
                         forger=printable(sender or "(no from: our server)"),
                         id=iqId, to=printable(addressee.to or "our account"))
            return
        d = self._forgetRequest(iqId)
        if d is None:  # pragma: no cover (the dicts are kept in step)
            return
        iq.handled = True
        if iq.getAttribute("type") == "error":
            d.errback(jerror.exceptionFromStanza(iq))
        else:
            d.callback(iq)

    def _disconnected(self, reason):
        # Nothing is queued here (see send), so there is nothing to replay.
        self._packetQueue = []
        self._iqAddressees.clear()
        self._iqForgers.clear()
        StreamManager._disconnected(self, reason)


#: What an IQ handler returns when it keeps the request and answers it
#: itself later, through :meth:`IQBoundary.replyTo` (an SI offer waiting
#: for ACCEPT, a SOCKS5 target trying streamhosts).
LATER = object()


class IQBoundary:
    """
    The one place where an IQ handler's outcome becomes the reply, as
    wokkel's ``IQHandlerMixin`` does, for any ``XMPPHandler`` (mixed in
    before it).

    A handler registered with :meth:`observeIQ` (or called through
    :meth:`handleIQ`) takes the request iq and

    * returns ``None`` (an empty ``result``), an element (the ``result``'s
      child), :data:`LATER` (it answers later, through :meth:`replyTo`), or a
      Deferred firing with one of those;
    * or raises (fails with) ``StanzaError`` -- build it with
      :func:`bytestreamd.errors.stanzaError` -- which becomes the ``error``
      reply;
    * anything else it raises is a bug: logged once, with its traceback, and
      answered ``internal-server-error``, so the requester never waits for an
      answer that will not come.

    ``echoRequest``: whether an error reply carries the request's payload
    back (RFC 6120 8.3.1 allows it; XEP-0047 data must not be reflected).
    Every reply is sent with :meth:`replyTo`, which never raises: with no
    stream there is nobody to answer.
    """

    echoRequest = True

    def observeIQ(self, xpath: str, handler, priority: int = 0) -> None:
        """Route requests matching ``xpath`` to ``handler`` through the boundary."""
        self.xmlstream.addObserver(xpath, lambda iq: self.handleIQ(iq, handler),
                                   priority)

    def handleIQ(self, iq: domish.Element, handler) -> None:
        """Call ``handler(iq)`` and answer ``iq`` with its outcome."""
        iq.handled = True
        try:
            outcome = handler(iq)
        except Exception:
            self.replyTo(iq, failure.Failure())
            return
        if isinstance(outcome, defer.Deferred):
            outcome.addBoth(lambda result: self.replyTo(iq, result))
        else:
            self.replyTo(iq, outcome)

    def replyTo(self, iq: domish.Element, outcome) -> None:
        """
        Answer ``iq`` with ``outcome``: ``None`` or an element (result),
        a ``StanzaError`` or a Failure (error), :data:`LATER` (nothing now).
        """
        if outcome is LATER or iq.getAttribute("type") in ("result", "error"):
            return
        if isinstance(outcome, failure.Failure):
            if outcome.check(jerror.StanzaError):
                outcome = outcome.value
            else:
                log.failure("unexpected error answering {kind} {id} from {sender}",
                            outcome, kind=printable(iq.name), id=printable(iq.getAttribute("id")),
                            sender=printable(iq.getAttribute("from")))
                outcome = jerror.StanzaError("internal-server-error")
        if isinstance(outcome, jerror.StanzaError):
            if self.echoRequest:
                response = outcome.toResponse(iq)
            else:
                response = xmlstream.toResponse(iq, "error")
                response.addChild(outcome.getElement())
        else:
            response = xmlstream.toResponse(iq, "result")
            if outcome is not None:
                response.addChild(outcome)
        try:
            self.send(response)
        except NotConnected:
            log.info("cannot answer {kind} {id}: not connected",
                     kind=printable(iq.name), id=printable(iq.getAttribute("id")))


class Handler(IQBoundary, XMPPHandler):
    """
    Base for the daemon's XEP handlers: ``send``/``request`` go to the
    :class:`Connection` and so never queue; IQ requests are answered through
    the :class:`IQBoundary`.
    """

    def send(self, obj: Stanza) -> None:
        self.parent.send(obj)

    def request(self, iq: domish.Element, timeout: Optional[float] = None):
        return self.parent.request(iq, timeout)

    @property
    def ownJID(self) -> Optional[JID]:
        return self.parent.jid


def makeIQ(type: str, to: JID, frm: Optional[JID] = None) -> domish.Element:
    """
    An ``<iq/>`` element in jabber:client, with a fresh unguessable id
    (:meth:`Connection.request` gives it another one when it sends it).
    """
    iq = domish.Element((None, "iq"))
    iq["type"] = type
    iq["to"] = to.full()
    if frm is not None:
        iq["from"] = frm.full()
    iq["id"] = newStanzaId()
    return iq


def resultFor(iq: domish.Element) -> domish.Element:
    """An empty ``result`` answering ``iq`` (to its sender, same id)."""
    return xmlstream.toResponse(iq, "result")


def errorFor(iq: domish.Element, exc: jerror.StanzaError) -> domish.Element:
    """The ``error`` iq answering ``iq`` with ``exc``."""
    return exc.toResponse(iq)


def parseJID(value: Optional[str]) -> Optional[JID]:
    """
    Parse a JID from the wire or the user without wokkel's unbounded intern
    cache; ``None`` for a missing or invalid one.
    """
    if not value:
        return None
    try:
        return JID(value)
    except Exception:
        return None


_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;",
            ord("'"): "&apos;", ord('"'): "&quot;"}


def escapeAttribute(value: str) -> str:
    """Escape a value for an XML attribute in single or double quotes."""
    return value.translate(_ESCAPES)


def failureText(f: failure.Failure) -> str:
    """Words for an operator from any failure we expect on a request."""
    exc = f.value
    if isinstance(exc, jerror.StanzaError):
        from bytestreamd.errors import describeStanzaError
        return describeStanzaError(exc)
    return str(exc) or exc.__class__.__name__
