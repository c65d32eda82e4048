"""
One client connection to the in-memory XMPP router: stream negotiation as
Twisted's client expects it (header, ``<starttls/>`` answered ``<proceed/>``
with no TLS underneath, SASL PLAIN, bind, session), then every stanza goes
to :meth:`tests.memory.router.Router.route`.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any, Optional, Set

from twisted.internet import protocol
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

NS_CLIENT = "jabber:client"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


class C2S(protocol.Protocol):
    """One client connection: stream negotiation, then stanzas to the router."""

    def __init__(self, router: Any):
        self.router = router
        self.stage = "tls"
        self.user: Optional[str] = None
        self.domain: Optional[str] = None
        self.jid: Optional[JID] = None
        self.available = False
        self.priority = 0
        self.directed: Set[str] = set()
        self.silent = False
        self.closed = False
        self._parser: Any = None

    def connectionMade(self) -> None:
        self._reset()

    def _reset(self) -> None:
        parser = domish.elementStream()
        parser.DocumentStartEvent = self._streamStart
        parser.ElementEvent = self._element
        parser.DocumentEndEvent = self._streamEnd
        self._parser = parser

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._parser.parse(data)
        except domish.ParserError:
            self.streamError("not-well-formed")

    def send(self, text: str) -> None:
        if not self.closed:
            self.transport.write(text.encode("utf-8"))

    def sendElement(self, el: domish.Element) -> None:
        if not self.silent:
            self.send(el.toXml())

    def streamError(self, condition: str) -> None:
        self.send("<stream:error><%s xmlns='%s'/></stream:error></stream:stream>"
                  % (condition, NS_STREAM_ERRORS))
        self.closed = True
        self.transport.loseConnection()

    def _streamStart(self, root: domish.Element) -> None:
        domain = root.getAttribute("to")
        self.send("<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='%s' "
                  "id='%s' from='%s' version='1.0' xml:lang='en'>"
                  % (NS_CLIENT, NS_STREAMS, secrets.token_hex(8), domain or ""))
        if domain not in self.router.domains or (self.domain and domain != self.domain):
            self.streamError("host-unknown")
            return
        if domain in self.router.downDomains:
            self.closed = True
            self.transport.abortConnection()  # nobody home
            return
        self.domain = domain
        if self.stage == "tls":
            features = "<starttls xmlns='%s'><required/></starttls>" % NS_TLS
        elif self.stage == "sasl":
            features = ("<mechanisms xmlns='%s'><mechanism>PLAIN</mechanism></mechanisms>"
                        % NS_SASL)
        else:
            features = "<bind xmlns='%s'/><session xmlns='%s'/>" % (NS_BIND, NS_SESSION)
        self.send("<stream:features>%s</stream:features>" % features)

    def _streamEnd(self) -> None:
        self.send("</stream:stream>")
        self.closed = True
        self.transport.loseConnection()

    def _element(self, el: domish.Element) -> None:
        if self.closed:
            return
        if self.stage == "tls":
            if el.uri == NS_TLS and el.name == "starttls":
                self.send("<proceed xmlns='%s'/>" % NS_TLS)
                self.stage = "sasl"
                self._reset()
            else:
                self.streamError("policy-violation")
        elif self.stage == "sasl":
            self._auth(el)
        elif self.stage == "bind":
            self._bindStage(el)
        else:
            self.router.route(self, el)

    def _auth(self, el: domish.Element) -> None:
        if not (el.uri == NS_SASL and el.name == "auth"
                and el.getAttribute("mechanism") == "PLAIN"):
            self.send("<failure xmlns='%s'><invalid-mechanism/></failure>" % NS_SASL)
            return
        try:
            _authzid, user, password = base64.b64decode(str(el)).decode("utf-8").split("\0")
        except Exception:
            self.send("<failure xmlns='%s'><malformed-request/></failure>" % NS_SASL)
            return
        bare = "%s@%s" % (user, self.domain)
        if self.router.accounts.get(bare) != password:
            self.send("<failure xmlns='%s'><not-authorized/></failure>" % NS_SASL)
            return
        self.user = user
        self.send("<success xmlns='%s'/>" % NS_SASL)
        self.stage = "bind"
        self._reset()

    def _bindStage(self, el: domish.Element) -> None:
        child = el.firstChildElement()
        if el.name != "iq" or child is None:
            self.streamError("not-authorized")
            return
        if child.uri == NS_BIND and el.getAttribute("type") == "set":
            resource = next((str(c) for c in child.elements() if c.name == "resource"), "")
            self.jid = self.router._bind(self, resource)
            answer = domish.Element((NS_CLIENT, "iq"))
            answer["type"] = "result"
            answer["id"] = el.getAttribute("id", "")
            answer.addElement((NS_BIND, "bind")).addElement("jid", content=self.jid.full())
            self.sendElement(answer)
            self.stage = "open"
        else:
            self.streamError("not-authorized")

    def broadcastUnavailable(self) -> None:
        directed, self.directed = self.directed, set()
        for target in sorted(directed):
            presence = domish.Element((NS_CLIENT, "presence"))
            presence["type"] = "unavailable"
            presence["from"] = self.jid.full()
            presence["to"] = target
            session = self.router.sessions.get(target)
            self.router._record(self.jid.full(), target, presence,
                                "delivered" if session else "dropped")
            if session is not None:
                session.sendElement(presence)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        self.router._ended(self)
