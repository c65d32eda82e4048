"""
The XEP-0246 end-to-end XML stream over a bytestream, as a sans-I/O machine.

The sequence (I = the link's initiator, R = its responder)::

    I: <?xml?><stream:stream xmlns='jabber:client' from=I to=R version='1.0'>
    R: <?xml?><stream:stream ... from=R to=I id=... version='1.0'>
       <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>
         <required/></starttls></stream:features>
    I: <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>
    R: <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>
       -- TLS handshake, I is the client, both present certificates;
          the caller checks the peer's with bytestreamd.e2e.trust --
    I: <?xml?><stream:stream ...>            (stream restart, inside TLS)
    R: <?xml?><stream:stream ...><stream:features>FEATURES</stream:features>

then, for ``mode='xmpp'``, FEATURES is empty and both sides exchange
stanzas until one sends ``</stream:stream>`` and the other answers it
(XEP-0246 section 5); for ``mode='bytes'``, FEATURES is
``<bytes xmlns='urn:x-bytestreamd:e2e:bytes:0'><required/></bytes>``, I
answers ``<bytes xmlns='urn:x-bytestreamd:e2e:bytes:0'/>`` and from the
byte after that element on (each way: R sends nothing between its features
and I's request) the TLS channel carries the link's raw bytes, ended by TLS
close_notify and the end of the bytestream -- raw bytes cannot carry a
``</stream:stream>`` that could be told apart from data.  The mode is agreed
in the link negotiation; the feature makes the switch explicit and lets a
peer that cannot do it fail the link rather than misread bytes as XML.
No SASL: the mutual TLS handshake, bound to the signalled fingerprints,
already authenticates both ends (XEP-0246 makes SASL optional).

Addresses.  XEP-0246 says the headers of a Jingle XML stream SHOULD carry
the *bare* JIDs communicated via XMPP; XEP-0247's example and note say full
JIDs.  We send bare JIDs (XEP-0246 is the specification of the stream
itself, and the identity a certificate names, id-on-xmppAddr, is a bare
JID) and accept either form from the peer, comparing bare JIDs.  A header
without ``from``, or with another JID's, is refused (``invalid-from``), as
is a stanza whose ``from`` is not the peer; ``to`` may be absent.

Refusals (each a :class:`Failed` with words for the operator, preceded by
the RFC 6120 stream error when a stream is open to carry it): the peer
offers no STARTTLS, refuses it, sends a stanza (or anything but the next
step) before TLS, sends the wrong ``from``, malformed or restricted XML
(DTD, comment, processing instruction), a header without version 1.0, an
element larger than the limit, a stream error, or the wrong mode.

The machine is fed bytes and returns outputs; it never touches a transport.
Its adapter writes :class:`Send`, calls ``startTLS`` on :class:`StartTLS`
after writing what came before it (Twisted transports send what was
written before ``startTLS`` in clear, first), checks the peer's
certificate, and then calls :meth:`E2EStream.tlsEstablished`.  Element
boundaries are kept exact while negotiating (data is parsed up to each
``>`` and parsing stops at the switch), so the first TLS or raw bytes that
follow ``<proceed/>`` or ``<bytes/>`` in the same read are not swallowed by
the XML parser.

Why one long module: it is one machine (XEP-0246 sections 2, 3 and 5); its XML builders could move out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable, List, Optional, Union

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

from bytestreamd.e2e import (MODE_BYTES, MODE_XMPP, MODES, NS_BYTES, NS_STREAM_ERRORS,
                             NS_STREAMS, NS_TLS)

NS_CLIENT = "jabber:client"
NS_XML = "http://www.w3.org/XML/1998/namespace"

INITIATOR = "initiator"
RESPONDER = "responder"
STANZAS = ("message", "presence", "iq")

#: Largest element (or header) accepted while negotiating.
MAX_NEGOTIATION_BYTES = 16 * 1024
#: Largest stanza accepted in xmpp mode.  Four times Prosody's default
#: c2s_stanza_size_limit (256 KiB): bypassing the servers' limits is one
#: reason to have an e2e stream, but memory for one stanza stays bounded.
MAX_STANZA_BYTES = 1024 * 1024

_CLOSE = b"</stream:stream>"


# --- outputs -------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Bytes to write to the peer (through TLS once it is started)."""

    data: bytes


@dataclass(frozen=True)
class StartTLS:
    """Start TLS on the transport now, as ``role`` ('client' or 'server')."""

    role: str


@dataclass(frozen=True)
class Established:
    """
    The secured stream is up in ``mode``.  ``data``: in bytes mode, the first
    raw bytes from the peer, which came in the same read as the switch.
    """

    mode: str
    data: bytes = b""


@dataclass(frozen=True)
class Stanza:
    """(xmpp mode) A stanza from the peer, for the local application."""

    element: domish.Element


@dataclass(frozen=True)
class Data:
    """(bytes mode) Raw bytes from the peer."""

    data: bytes


@dataclass(frozen=True)
class Closed:
    """The stream ended cleanly both ways: close the transport."""


@dataclass(frozen=True)
class Failed:
    """The stream failed; ``reason`` is for the operator.  Close the transport."""

    reason: str


Output = Union[Send, StartTLS, Established, Stanza, Data, Closed, Failed]


class BadStanza(ValueError):
    """What the local application asked to send is not a stanza we may send."""


class _Violation(Exception):
    def __init__(self, condition: str, reason: str):
        Exception.__init__(self, reason)
        self.condition = condition
        self.reason = reason


# --- helpers -------------------------------------------------------------


def _bare(jid: str) -> str:
    return JID(jid).userhost()


def _sameBare(value: Optional[str], bare: str) -> bool:
    if not value:
        return False
    try:
        return _bare(value) == bare
    except (InvalidFormat, UnicodeError):
        return False


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _quote(value: Optional[str], limit: int = 80) -> str:
    """A peer-supplied value for a reason: repr'd and cut short."""
    return _cut(repr(value), limit)


def _escape(value: str) -> str:
    return domish.escapeToXml(value, isattrib=1)


def streamHeader(sender: str, receiver: str, streamId: Optional[str] = None) -> bytes:
    """The opening tag XEP-0246 section 2 shows (``id`` for the responder)."""
    attributes = " from='%s' to='%s'" % (_escape(sender), _escape(receiver))
    if streamId is not None:
        attributes += " id='%s'" % _escape(streamId)
    return ("<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='%s'%s "
            "version='1.0'>" % (NS_CLIENT, NS_STREAMS, attributes)).encode("utf-8")


def _inStream(element: domish.Element) -> bytes:
    # The stream: prefix is declared by the header, not again here.
    xml = element.toXml(prefixes={NS_STREAMS: "stream"}, prefixesInScope=["stream"])
    return xml.encode("utf-8")


def streamError(condition: str, text: str) -> bytes:
    """An RFC 6120 stream error and the closing tag."""
    error = domish.Element((NS_STREAMS, "error"))
    error.addElement((NS_STREAM_ERRORS, condition))
    error.addElement((NS_STREAM_ERRORS, "text"), content=text)
    return _inStream(error) + _CLOSE


def _features(*children: domish.Element) -> bytes:
    features = domish.Element((NS_STREAMS, "features"))
    for child in children:
        features.addChild(child)
    return _inStream(features)


def _required(uri: str, name: str) -> domish.Element:
    element = domish.Element((uri, name))
    element.addElement("required")
    return element


def _empty(uri: str, name: str) -> bytes:
    return ("<%s xmlns='%s'/>" % (name, uri)).encode("ascii")


def _describe(element: domish.Element) -> str:
    return "<%s xmlns='%s'>" % (element.name, element.uri)


# --- the machine ---------------------------------------------------------


class E2EStream:
    """
    One end of an e2e stream.  ``local`` and ``peer`` are the JIDs the link
    negotiation authenticated (bare or full; the stream uses bare ones),
    ``mode`` is ``xmpp`` or ``bytes`` as the negotiation agreed.
    """

    def __init__(self, role: str, local: str, peer: str, mode: str = MODE_XMPP,
                 newId: Callable[[], str] = lambda: secrets.token_hex(8),
                 maxStanzaBytes: int = MAX_STANZA_BYTES):
        if role not in (INITIATOR, RESPONDER):
            raise ValueError("role must be %s or %s" % (INITIATOR, RESPONDER))
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % ", ".join(MODES))
        self.role, self.mode = role, mode
        self.local, self.peer = _bare(local), _bare(peer)
        self._newId = newId
        self._maxStanza = maxStanzaBytes
        self._state = "new"
        self._secured = False
        self._headerSent = False
        self._closeSent = False
        self._pending = b""
        self._out: List[Output] = []
        self._parser: Optional[domish.ExpatElementStream] = None
        self._fed = 0
        self._boundary = 0
        self._switchedToBytes = False

    @property
    def state(self) -> str:
        """new, header, features, proceed, starttls, tls, bytes-request,
        xmpp, bytes, closing, closed or failed."""
        return self._state

    @property
    def secured(self) -> bool:
        return self._secured

    # inputs ---------------------------------------------------------------

    def start(self) -> List[Output]:
        """The bytestream is up.  The initiator speaks first."""
        if self._state != "new":
            raise RuntimeError("start() called twice")
        self._newStream()
        self._state = "header"
        if self.role == INITIATOR:
            return [self._sendHeader()]
        return []

    def tlsEstablished(self) -> List[Output]:
        """The handshake completed and the peer's certificate was accepted."""
        if self._state != "tls":
            raise RuntimeError("tlsEstablished() in state %s" % self._state)
        self._secured = True
        self._newStream()
        self._state = "header"
        out: List[Output] = []
        if self.role == INITIATOR:
            out.append(self._sendHeader())
        pending, self._pending = self._pending, b""
        if pending:
            out.extend(self.dataReceived(pending))
        return out

    def tlsFailed(self, reason: str) -> List[Output]:
        """The handshake failed or the peer's certificate was refused."""
        self._state = "failed"
        return [Failed(reason)]

    def dataReceived(self, data: bytes) -> List[Output]:
        """Bytes from the peer (decrypted, once TLS is up)."""
        state = self._state
        if state == "bytes":
            return [Data(data)] if data else []
        if state == "tls":
            self._pending += data
            if len(self._pending) > MAX_NEGOTIATION_BYTES:
                return self._fail("policy-violation",
                                  "the peer sent data before the TLS handshake ended")
            return []
        if state in ("closed", "failed"):
            return []
        if state == "new":
            raise RuntimeError("dataReceived() before start()")
        self._out = []
        try:
            self._feed(data)
        except _Violation as v:
            self._out.extend(self._fail(v.condition, v.reason))
        except domish.ParserError as e:
            # after </stream:stream>, expat calls what follows junk: ignored
            if self._state not in ("closed", "failed"):
                self._out.extend(self._fail("not-well-formed",
                                            "the peer sent malformed XML (%s)" % (e,)))
        out, self._out = self._out, []
        return out

    def sendStanza(self, element: domish.Element) -> List[Output]:
        """
        (xmpp mode) Send a stanza from the local application.  Raises
        :class:`BadStanza` -- without touching the stream -- if it is not a
        message, presence or iq in jabber:client, or claims another sender.
        """
        if self._state not in ("xmpp",):
            raise BadStanza("the e2e stream is not established in xmpp mode (%s)"
                            % self._state)
        if element.name not in STANZAS or element.uri not in (NS_CLIENT, None, ""):
            raise BadStanza("<%s xmlns='%s'> is not a stanza (message, presence or "
                            "iq in jabber:client)" % (element.name, element.uri))
        sender = element.getAttribute("from")
        if sender is not None and not _sameBare(sender, self.local):
            raise BadStanza("from='%s' is not this daemon's JID %s" % (sender, self.local))
        xml = element.toXml(defaultUri=element.uri or NS_CLIENT)
        return [Send(xml.encode("utf-8"))]

    def close(self) -> List[Output]:
        """End the stream from our side (XEP-0246 section 5)."""
        if self._state == "xmpp":
            self._state = "closing"
            self._closeSent = True
            return [Send(_CLOSE)]
        if self._state in ("closing", "closed", "failed"):
            return []
        if self._state == "bytes":
            self._state = "closed"
            return [Closed()]
        # still negotiating: nothing to deliver, say so
        out: List[Output] = []
        if self._headerSent and self._state != "tls":
            out.append(Send(_CLOSE))
        self._state = "failed"
        out.append(Failed("closed locally before the e2e stream was established"))
        return out

    def connectionLost(self) -> List[Output]:
        """The bytestream under the stream ended."""
        state = self._state
        if state in ("closed", "failed"):
            return []
        if state in ("closing", "bytes"):
            self._state = "closed"
            return [Closed()]
        self._state = "failed"
        if state == "xmpp":
            return [Failed("the bytestream ended without </stream:stream>")]
        return [Failed("the bytestream ended during e2e negotiation (waiting for %s)"
                       % _WAITING.get(state, state))]

    # parsing --------------------------------------------------------------

    def _newStream(self) -> None:
        parser = domish.elementStream()
        parser.DocumentStartEvent = self._onHeader
        parser.ElementEvent = self._onElement
        parser.DocumentEndEvent = self._onEnd
        raw = parser.parser

        def restricted(*args: object) -> None:
            raise _Violation("restricted-xml", "the peer sent a DTD, comment or "
                             "processing instruction, which XMPP forbids")

        raw.StartDoctypeDeclHandler = restricted
        raw.CommentHandler = restricted
        raw.ProcessingInstructionHandler = restricted
        raw.EntityDeclHandler = restricted
        self._parser = parser
        self._fed = 0
        self._boundary = 0
        self._headerSent = False
        self._switchedToBytes = False

    def _negotiating(self) -> bool:
        return self._state not in ("xmpp", "closing")

    def _feed(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            if self._state in ("tls", "bytes", "closed", "failed"):
                break
            if self._negotiating():
                end = data.find(b">", position)
                end = len(data) if end < 0 else end + 1
            else:
                end = len(data)
            piece = data[position:end]
            position = end
            self._fed += len(piece)
            assert self._parser is not None
            self._parser.parse(piece)
            limit = MAX_NEGOTIATION_BYTES if self._negotiating() else self._maxStanza
            if self._state not in ("failed", "closed") and self._fed - self._boundary > limit:
                raise _Violation("policy-violation", "the peer sent an element larger "
                                 "than %d bytes" % limit)
        rest = data[position:]
        if self._switchedToBytes:
            self._switchedToBytes = False
            self._out.append(Established(MODE_BYTES, rest))
            return
        if rest and self._state == "tls":
            raise _Violation("policy-violation", "the peer sent data after %s "
                             "instead of starting TLS" % (
                                 "<proceed/>" if self.role == INITIATOR else "<starttls/>"))

    def _mark(self) -> None:
        assert self._parser is not None
        self._boundary = self._parser.parser.CurrentByteIndex

    def _onHeader(self, root: domish.Element) -> None:
        self._mark()
        if self._state in ("closed", "failed"):
            return
        if self._state != "header":
            raise _Violation("invalid-xml", "unexpected stream header")
        if root.uri != NS_STREAMS or root.name != "stream":
            raise _Violation("invalid-namespace", "the peer's stream header is not "
                             "{%s}stream" % NS_STREAMS)
        if root.defaultUri != NS_CLIENT:
            raise _Violation("invalid-namespace", "the peer's stream is in %r, not %s"
                             % (root.defaultUri, NS_CLIENT))
        version = root.getAttribute("version", "")
        if not version.startswith("1."):
            raise _Violation("unsupported-version", "the peer's stream header has no "
                             "version='1.0', so it cannot offer STARTTLS")
        sender = root.getAttribute("from")
        if not _sameBare(sender, self.peer):
            raise _Violation("invalid-from", "the peer's stream header says from=%s, "
                             "not the negotiated %s" % (_quote(sender), self.peer))
        receiver = root.getAttribute("to")
        if receiver is not None and not _sameBare(receiver, self.local):
            raise _Violation("host-unknown", "the peer's stream header is to=%s, not "
                             "this daemon's %s" % (_quote(receiver), self.local))
        if self.role == INITIATOR:
            self._state = "features"
            return
        self._out.append(self._sendHeader())
        if not self._secured:
            self._out.append(Send(_features(_required(NS_TLS, "starttls"))))
            self._state = "starttls"
        elif self.mode == MODE_BYTES:
            self._out.append(Send(_features(_required(NS_BYTES, "bytes"))))
            self._state = "bytes-request"
        else:
            self._out.append(Send(_features()))
            self._state = "xmpp"
            self._out.append(Established(MODE_XMPP))

    def _onElement(self, element: domish.Element) -> None:
        self._mark()
        if self._state in ("closed", "failed"):
            return  # the rest of a read that ended the stream
        if element.uri == NS_STREAMS and element.name == "error":
            conditions = [c.name for c in element.elements()
                          if c.uri == NS_STREAM_ERRORS and c.name != "text"]
            text = [str(c) for c in element.elements(NS_STREAM_ERRORS, "text")]
            self._state = "failed"
            out: List[Output] = [] if self._closeSent else [Send(_CLOSE)]
            out.append(Failed("the peer ended the e2e stream with a stream error: %s%s"
                              % (conditions[0] if conditions else "undefined-condition",
                                 " (%s)" % _cut(" ".join(text[0].split()), 200) if text else "")))
            self._out.extend(out)
            return
        handler = getattr(self, "_element_" + self._state.replace("-", "_"), None)
        if handler is None:
            raise _Violation("invalid-xml", "unexpected %s" % _describe(element))
        handler(element)

    def _onEnd(self) -> None:
        self._mark()
        if self._state in ("closed", "failed"):
            return
        if self._state in ("xmpp", "closing"):
            if not self._closeSent:
                self._closeSent = True
                self._out.append(Send(_CLOSE))
            self._state = "closed"
            self._out.append(Closed())
            return
        waiting = _WAITING.get(self._state, "it")
        self._state = "failed"
        if self._headerSent and not self._closeSent:
            self._closeSent = True
            self._out.append(Send(_CLOSE))
        self._out.append(Failed("the peer closed the stream during e2e negotiation "
                                "(waiting for %s)" % waiting))

    def _notBeforeTLS(self, element: domish.Element, expected: str) -> _Violation:
        if element.name in STANZAS:
            return _Violation("policy-violation", "the peer sent a <%s/> stanza before "
                              "TLS; nothing is carried in clear" % element.name)
        return _Violation("policy-violation", "the peer sent %s where %s was expected"
                          % (_describe(element), expected))

    # initiator
    def _element_features(self, element: domish.Element) -> None:
        if element.uri != NS_STREAMS or element.name != "features":
            raise self._notBeforeTLS(element, "<stream:features/>")
        offered = {(c.uri, c.name): c for c in element.elements()}
        if not self._secured:
            if (NS_TLS, "starttls") not in offered:
                raise _Violation("policy-violation", "the peer does not offer STARTTLS, "
                                 "so the e2e stream cannot be secured")
            self._out.append(Send(_empty(NS_TLS, "starttls")))
            self._state = "proceed"
            return
        bytes_ = offered.get((NS_BYTES, "bytes"))
        if self.mode == MODE_BYTES:
            if bytes_ is None:
                raise _Violation("unsupported-feature", "the peer does not offer raw "
                                 "bytes mode (%s) on this link" % NS_BYTES)
            self._out.append(Send(_empty(NS_BYTES, "bytes")))
            self._state = "bytes"
            self._switchedToBytes = True  # Established comes from _feed
            return
        if bytes_ is not None and any(True for _ in bytes_.elements(NS_BYTES, "required")):
            raise _Violation("unsupported-feature", "the peer requires raw bytes mode "
                             "but this link is an XML stream (e2e=xmpp)")
        self._state = "xmpp"
        self._out.append(Established(MODE_XMPP))

    def _element_proceed(self, element: domish.Element) -> None:
        if element.uri == NS_TLS and element.name == "proceed":
            self._state = "tls"
            self._out.append(StartTLS("client"))
            return
        if element.uri == NS_TLS and element.name == "failure":
            self._state = "failed"
            self._out.append(Failed("the peer refused STARTTLS (<failure/>)"))
            return
        raise self._notBeforeTLS(element, "<proceed/>")

    # responder
    def _element_starttls(self, element: domish.Element) -> None:
        if element.uri == NS_TLS and element.name == "starttls":
            self._out.append(Send(_empty(NS_TLS, "proceed")))
            self._state = "tls"
            self._out.append(StartTLS("server"))
            return
        raise self._notBeforeTLS(element, "<starttls/>")

    def _element_bytes_request(self, element: domish.Element) -> None:
        if element.uri == NS_BYTES and element.name == "bytes":
            self._state = "bytes"
            self._switchedToBytes = True  # Established comes from _feed
            return
        raise _Violation("unsupported-feature", "the peer sent %s instead of asking "
                         "for raw bytes mode" % _describe(element))

    # both
    def _element_xmpp(self, element: domish.Element) -> None:
        if element.name not in STANZAS or element.uri != NS_CLIENT:
            raise _Violation("unsupported-stanza-type", "the peer sent %s, which is "
                             "not a stanza" % _describe(element))
        sender = element.getAttribute("from")
        if sender is not None and not _sameBare(sender, self.peer):
            raise _Violation("invalid-from", "the peer sent a <%s/> from=%s, not from "
                             "the negotiated %s" % (element.name, _quote(sender), self.peer))
        self._out.append(Stanza(element))

    _element_closing = _element_xmpp

    # output helpers --------------------------------------------------------

    def _sendHeader(self) -> Send:
        self._headerSent = True
        streamId = self._newId() if self.role == RESPONDER else None
        return Send(streamHeader(self.local, self.peer, streamId))

    def _fail(self, condition: str, reason: str) -> List[Output]:
        out: List[Output] = []
        if self._state not in ("tls", "bytes", "failed", "closed") and not self._closeSent:
            if not self._headerSent:
                out.append(self._sendHeader())
            out.append(Send(streamError(condition, reason)))
            self._closeSent = True
        self._state = "failed"
        out.append(Failed(reason))
        return out


_WAITING = {
    "header": "the peer's stream header",
    "features": "<stream:features/>",
    "proceed": "<proceed/>",
    "starttls": "<starttls/>",
    "tls": "the TLS handshake",
    "bytes-request": "<bytes/>",
}
