"""
A minimal blocking XMPP client with no XML library.

Why no XML library: the tests that use it send *malformed* or unexpected
stanzas (an IBB ``<open/>`` nobody negotiated, data for an unknown sid, a
block size past the limit) and the benchmark wants the raw ceiling of the
server, so the client must put exactly the given bytes on the wire and stay
out of the way. Incoming XML is only split into top-level stanzas by a
depth-counting tokenizer; tests match them with regular expressions.

Single-threaded on purpose: OpenSSL connections must not be read and written
from two threads at once, so reading happens inside :meth:`waitFor` /
:meth:`poll`, under the caller's control.
"""

from __future__ import annotations

import base64
import codecs
import itertools
import re
import select
import socket
import ssl
import time
from typing import Callable, List, Optional, Pattern, Union

Matcher = Union[str, Pattern, Callable[[str], bool]]

_counter = itertools.count(1)


class XMPPError(RuntimeError):
    """Login failed, the stream ended, or an expected stanza did not come."""


def xmlEscape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def attr(stanza: str, name: str) -> Optional[str]:
    """An attribute of the stanza's top-level element (unescaped enough for tests)."""
    start = re.match(r"\s*<[^\s/>]+((?:\s+[^\s=]+\s*=\s*(?:'[^']*'|\"[^\"]*\"))*)",
                     stanza)
    if not start:
        return None
    for m in re.finditer(r"([^\s=]+)\s*=\s*(?:'([^']*)'|\"([^\"]*)\")", start.group(1)):
        if m.group(1) == name:
            value = m.group(2) if m.group(2) is not None else m.group(3)
            return (value.replace("&apos;", "'").replace("&quot;", '"')
                    .replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    return None


def elementName(stanza: str) -> str:
    m = re.match(r"\s*<([^\s/>]+)", stanza)
    return m.group(1) if m else ""


def errorCondition(stanza: str) -> Optional[str]:
    """The defined condition of a stanza error (``item-not-found``, ...) or None."""
    m = re.search(r"<error\b.*?>(.*?)</error>", stanza, re.S)
    if not m:
        return None
    c = re.search(r"<([a-z-]+)[^>]*xmlns=['\"]urn:ietf:params:xml:ns:xmpp-stanzas['\"]",
                  m.group(1))
    return c.group(1) if c else None


class StanzaSplitter:
    """
    Split an XMPP stream (text) into its top-level elements.

    Feed text with :meth:`feed`; it returns the complete top-level stanzas
    found so far. ``header`` holds the ``<stream:stream ...>`` opening tag
    once seen; ``closed`` becomes true at ``</stream:stream>``. Call
    :meth:`reset` when the stream restarts (after STARTTLS and SASL).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.buffer = ""
        self.pos = 0
        self.depth = 0
        self.start = 0
        self.header: Optional[str] = None
        self.closed = False

    def feed(self, text: str) -> List[str]:
        self.buffer += text
        out: List[str] = []
        buf = self.buffer
        while True:
            lt = buf.find("<", self.pos)
            if lt < 0:
                self.pos = len(buf)
                break
            if buf.startswith("<?", lt):
                end = buf.find("?>", lt)
                if end < 0:
                    break
                self.pos = end + 2
                continue
            if buf.startswith("<!--", lt):
                end = buf.find("-->", lt)
                if end < 0:
                    break
                self.pos = end + 3
                continue
            if buf.startswith("<![CDATA[", lt):
                end = buf.find("]]>", lt)
                if end < 0:
                    break
                self.pos = end + 3
                continue
            end = self._tagEnd(buf, lt)
            if end < 0:
                self.pos = lt
                break
            tag = buf[lt:end + 1]
            self.pos = end + 1
            if tag.startswith("</"):
                if self.depth <= 1:
                    # </stream:stream>
                    self.closed = True
                    self.depth = 0
                    continue
                self.depth -= 1
                if self.depth == 1:
                    out.append(buf[self.start:self.pos])
            elif self.depth == 0:
                # the stream header opens and never closes
                self.header = tag
                self.depth = 1
            elif tag.endswith("/>"):
                if self.depth == 1:
                    out.append(tag)
            else:
                if self.depth == 1:
                    self.start = lt
                self.depth += 1
        # drop what is consumed, keep the current stanza's text
        keep = self.start if self.depth > 1 else self.pos
        self.buffer = buf[keep:]
        self.pos -= keep
        self.start = 0
        return out

    _TAG = re.compile(r"""<(?:[^>"']|"[^"]*"|'[^']*')*>""")

    @classmethod
    def _tagEnd(cls, buf: str, lt: int) -> int:
        """Index of the '>' closing the tag at ``lt`` (quotes respected), or -1."""
        m = cls._TAG.match(buf, lt)
        return m.end() - 1 if m else -1


def _matcher(match: Matcher) -> Callable[[str], bool]:
    if callable(match):
        return match
    pattern = re.compile(match, re.S) if isinstance(match, str) else match
    return lambda s: pattern.search(s) is not None


class RawXMPPClient:
    """
    One logged-in XMPP client session.

    ``RawXMPPClient(host, port, jid, password, caPath)`` then :meth:`login`;
    or :meth:`connect` with a :class:`ProsodyServer` (``connect(prosody,
    "mallory", "raw")``). Every incoming stanza is kept in ``received`` (all
    of them, in order) and in a queue of unclaimed ones that :meth:`waitFor`
    takes from. With ``answerIQs`` (default), incoming ``get``/``set`` IQs
    are answered ``service-unavailable`` as RFC 6120 asks of a client that
    does not understand them (they still show up in the queue).
    """

    def __init__(self, host: str, port: int, jid: str, password: str,
                 caPath: Optional[str], serverName: Optional[str] = None,
                 answerIQs: bool = True) -> None:
        self.host, self.port = host, port
        bare, _, self.resource = jid.partition("/")
        self.user, _, self.domain = bare.partition("@")
        self.password = password
        self.caPath = caPath
        self.serverName = serverName or self.domain
        self.answerIQs = answerIQs
        self.jid: Optional[str] = None  # the bound full JID
        self.sock: Optional[socket.socket] = None
        self.splitter = StanzaSplitter()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.received: List[str] = []
        self.queue: List[str] = []
        self.bytesSent = 0
        self.bytesReceived = 0

    @classmethod
    def connect(cls, prosody, name: str, resource: str = "raw",
                **kwargs) -> "RawXMPPClient":
        client = cls("127.0.0.1", prosody.c2sPort, prosody.jid(name, resource),
                     prosody.passwords[name], prosody.caPath, **kwargs)
        client.login()
        return client

    # -- wire -------------------------------------------------------------

    def send(self, raw: Union[str, bytes]) -> None:
        """Put exactly ``raw`` on the stream."""
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        assert self.sock is not None, "not connected"
        self.sock.sendall(data)
        self.bytesSent += len(data)

    def _readOnce(self, timeout: Optional[float]) -> bool:
        """Read what is available (waiting up to ``timeout``); False on timeout."""
        assert self.sock is not None, "not connected"
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return False
        try:
            data = self.sock.recv(262144)
        except ssl.SSLWantReadError:
            return True
        if not data:
            raise XMPPError("%s: connection closed by the server" % self.user)
        self.bytesReceived += len(data)
        for stanza in self.splitter.feed(self.decoder.decode(data)):
            self.received.append(stanza)
            self.queue.append(stanza)
            self._autoAnswer(stanza)
        if self.splitter.closed:
            raise XMPPError("%s: stream closed by the server" % self.user)
        return True

    def _autoAnswer(self, stanza: str) -> None:
        if not self.answerIQs or elementName(stanza) != "iq":
            return
        if attr(stanza, "type") not in ("get", "set"):
            return
        to = attr(stanza, "from")
        reply = "<iq type='error' id='%s'%s><error type='cancel'>" \
                "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" \
                "</error></iq>" % (xmlEscape(attr(stanza, "id") or ""),
                                   " to='%s'" % xmlEscape(to) if to else "")
        self.send(reply)

    def poll(self, timeout: float = 0.0) -> int:
        """Read whatever arrives within ``timeout``; returns the number of reads."""
        reads = 0
        deadline = time.monotonic() + timeout
        while self._readOnce(max(0.0, deadline - time.monotonic())):
            reads += 1
        return reads

    def waitFor(self, match: Matcher, timeout: float = 10.0) -> str:
        """
        The first unclaimed stanza matching ``match`` (a regex searched in the
        raw stanza, or a predicate), removed from the queue; reads from the
        socket until it arrives or ``timeout`` passes (then XMPPError).
        """
        pred = _matcher(match)
        deadline = time.monotonic() + timeout
        while True:
            for i, stanza in enumerate(self.queue):
                if pred(stanza):
                    del self.queue[i]
                    return stanza
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XMPPError("%s: no stanza matching %r within %.1fs; unclaimed: %s"
                                % (self.user, match, timeout, self.queue[-5:]))
            self._readOnce(remaining)

    def waitForId(self, stanzaId: str, timeout: float = 10.0) -> str:
        """The reply (result or error) to the stanza with id ``stanzaId``."""
        return self.waitFor(
            lambda s: attr(s, "id") == stanzaId and attr(s, "type") in ("result", "error"),
            timeout)

    def newId(self, prefix: str = "raw") -> str:
        return "%s%d" % (prefix, next(_counter))

    def iq(self, type_: str, to: Optional[str], payload: str,
           stanzaId: Optional[str] = None) -> str:
        """Send an IQ with ``payload`` (raw XML); returns its id."""
        stanzaId = stanzaId or self.newId("iq")
        self.send("<iq type='%s' id='%s'%s>%s</iq>" % (
            type_, stanzaId, " to='%s'" % xmlEscape(to) if to else "", payload))
        return stanzaId

    def request(self, type_: str, to: Optional[str], payload: str,
                timeout: float = 10.0) -> str:
        """Send an IQ and wait for its result or error."""
        return self.waitForId(self.iq(type_, to, payload), timeout)

    def message(self, to: str, body: str, stanzaId: Optional[str] = None) -> str:
        stanzaId = stanzaId or self.newId("msg")
        self.send("<message to='%s' id='%s' type='chat'><body>%s</body></message>"
                  % (xmlEscape(to), stanzaId, xmlEscape(body)))
        return stanzaId

    # -- login ------------------------------------------------------------

    def _openStream(self, timeout: float) -> str:
        self.splitter.reset()
        self.decoder.reset()
        self.queue.clear()
        self.send("<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
                  "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                  % xmlEscape(self.domain))
        return self.waitFor(r"^<stream:features", timeout)

    def login(self, timeout: float = 10.0, presence: bool = True) -> "RawXMPPClient":
        """TCP, STARTTLS (verified against ``caPath``), SASL PLAIN, bind, presence."""
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        features = self._openStream(timeout)
        if "urn:ietf:params:xml:ns:xmpp-tls" not in features:
            raise XMPPError("server offers no STARTTLS: %s" % features)
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.waitFor(r"^<proceed", timeout)
        context = ssl.create_default_context(cafile=self.caPath)
        if self.caPath is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=self.serverName)
        features = self._openStream(timeout)
        if "PLAIN" not in features:
            raise XMPPError("server offers no SASL PLAIN: %s" % features)
        token = base64.b64encode(("\0%s\0%s" % (self.user, self.password))
                                 .encode("utf-8")).decode("ascii")
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  "%s</auth>" % token)
        outcome = self.waitFor(r"^<(success|failure)", timeout)
        if outcome.startswith("<failure"):
            raise XMPPError("SASL PLAIN failed for %s: %s" % (self.user, outcome))
        self._openStream(timeout)
        resource = "<resource>%s</resource>" % xmlEscape(self.resource) \
            if self.resource else ""
        reply = self.request("set", None, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                             "%s</bind>" % resource, timeout)
        m = re.search(r"<jid>([^<]+)</jid>", reply)
        if attr(reply, "type") != "result" or not m:
            raise XMPPError("resource binding failed: %s" % reply)
        self.jid = m.group(1)
        if presence:
            self.send("<presence/>")
        self.sock.settimeout(timeout)
        return self

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            self.send("</stream:stream>")
            deadline = time.monotonic() + 1.0
            while not self.splitter.closed and time.monotonic() < deadline:
                self._readOnce(deadline - time.monotonic())
        except (OSError, XMPPError):
            pass
        try:
            self.sock.close()
        finally:
            self.sock = None

    def __enter__(self) -> "RawXMPPClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
