"""
An in-memory XMPP server for the memory tier: enough of RFC 6120/6121 for
Twisted's XMPP client (the daemon's own, unchanged) and for routing stanzas
between the daemons of a test.

It listens on a :class:`tests.memory.memnet.MemoryHost` like any server, so
the daemon connects with its ordinary config (``host``/``port``) and code
path: stream header, ``<starttls/>`` (answered ``<proceed/>``; the in-memory
transport's ``startTLS`` does nothing, so the stream simply goes on in the
clear), SASL PLAIN against :meth:`Router.addAccount`, resource binding (a
second session with the same full JID replaces the first, with a
``conflict`` stream error, as Prosody does by default) and session.

Routing, as a server does:

* ``from`` is always set to the sender's full JID;
* to a full JID: delivered to that session; if there is none, an iq get/set
  is answered ``service-unavailable`` from the addressed JID, a message
  ``service-unavailable`` too, anything else is dropped;
* to a bare JID: iq is answered by the server for the account (disco#info:
  an ``account/registered`` identity; ping); presence goes to every session
  of the account, a message to those with a non-negative priority;
* to a served domain (or no ``to``): disco#info (``server/im``),
  disco#items (``items``, empty unless a test adds some), ping;
* to another domain: ``remote-server-not-found``;
* directed presence is remembered, and when a session ends (cleanly or not)
  each entity it was sent to gets ``unavailable`` from its full JID -- unless
  the session was made silent (:meth:`Router.silence`) or the router crashed.

For tests: :attr:`Router.traffic` records every stanza routed (``Routed``);
:meth:`Router.addFilter` can drop or delay stanzas; :meth:`dropSession`
drops a client's TCP connection without a stream end (as a server whose
client vanished); :meth:`silence` makes a session a black hole in both
directions with nobody told (a crashed remote server, a dead path);
:meth:`crash` kills the server process and :meth:`start` starts it again;
:meth:`crashDomain` takes down one domain's server as its federated peers
see it (issue 6 case g: two domains, one server crashes).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet import protocol
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from tests.memory.c2s import NS_CLIENT, NS_SESSION, C2S
from tests.memory.memnet import MemoryHost


NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_PING = "urn:xmpp:ping"
NS_ROSTER = "jabber:iq:roster"

#: What a filter returns: ``None`` deliver, ``DROP``, or a delay in seconds.
DROP = "drop"


@dataclasses.dataclass
class Routed:
    """One stanza the router saw: when, who to whom, what, and what it did."""

    time: float
    sender: str
    to: str
    element: domish.Element
    action: str  # "delivered", "answered", "dropped", "bounced", "delayed"

    @property
    def name(self) -> str:
        return self.element.name

    @property
    def type(self) -> Optional[str]:
        return self.element.getAttribute("type")

    def children(self) -> List[str]:
        """``{uri}name`` of each child element, e.g. ``{http://jabber.org/protocol/ibb}data``."""
        return ["{%s}%s" % (c.uri, c.name) for c in self.element.elements()]

    def xml(self) -> str:
        return self.element.toXml()


Filter = Callable[[domish.Element, JID, Optional[JID]], Any]


class Router:
    """
    The server: ``domains`` it serves, listening on ``host`` at ``port``.
    Call :meth:`start` (the world does).
    """

    def __init__(self, host: MemoryHost, domains: Sequence[str] = ("example.test",),
                 port: int = 5222, interface: str = "127.0.0.1"):
        self.host = host
        self.domains = set(domains)
        self.portNumber = port
        self.interface = interface
        self.accounts: Dict[str, str] = {}
        self.sessions: Dict[str, "C2S"] = {}
        self.traffic: List[Routed] = []
        self.record = True
        self.items: Dict[str, List[JID]] = {}
        self._filters: List[Filter] = []
        self._port: Any = None
        #: Domains whose server is down (crashDomain): domain -> bounce delay or None.
        self.downDomains: Dict[str, Optional[float]] = {}

    # -- administration ---------------------------------------------------------

    def addAccount(self, jid: str, password: str) -> None:
        bare = JID(jid).userhost()
        if JID(bare).host not in self.domains:
            raise ValueError("%s is not in a domain this router serves (%s)"
                             % (bare, ", ".join(sorted(self.domains))))
        self.accounts[bare] = password

    def start(self) -> None:
        self.host.revive()
        factory = protocol.Factory.forProtocol(lambda: C2S(self))
        self._port = self.host.listenTCP(self.portNumber, factory, interface=self.interface)

    def crash(self) -> None:
        """
        The server process dies: every client's TCP connection is closed by
        the kernel (clients see the connection closed, no stream end), no
        unavailable presence is sent, and connecting is refused until
        :meth:`start`.
        """
        for session in list(self.sessions.values()):
            session.silent = True
        self.sessions.clear()
        self.host.kill()
        self._port = None

    def session(self, jid: str) -> "C2S":
        return self.sessions[JID(jid).full()]

    def dropSession(self, jid: str) -> None:
        """
        The server drops a client's connection without a stream end (as when
        it decides the client is gone); the client sees its connection
        reset, its directed-presence contacts get unavailable.
        """
        self.session(jid).transport.abortConnection()

    def silence(self, jid: str) -> None:
        """
        Make a session a black hole: nothing it sends is routed, nothing
        reaches it, and when it ends nobody is told -- a crashed remote
        server or a dead network path, as seen by everyone else.
        """
        self.session(jid).silent = True

    def crashDomain(self, domain: str, bounceAfter: Optional[float] = None) -> None:
        """
        The server of ``domain`` crashes, as its federated peers see it:
        its clients' connections are closed by its kernel (they see the
        stream end without a footer), nobody in other domains is told
        (no unavailable presence), stanzas to it vanish -- or, with
        ``bounceAfter``, come back ``remote-server-timeout`` after that many
        seconds, as a server whose s2s connection timed out answers -- and
        its users cannot log in until :meth:`restoreDomain`.
        """
        if domain not in self.domains:
            raise ValueError("%s is not served here" % (domain,))
        self.downDomains[domain] = bounceAfter
        for session in [s for s in self.sessions.values() if s.domain == domain]:
            session.silent = True
            self.sessions.pop(session.jid.full(), None)
            session.closed = True
            session.transport._die()

    def restoreDomain(self, domain: str) -> None:
        """The crashed server of ``domain`` is back: its users may log in again."""
        self.downDomains.pop(domain, None)

    def addFilter(self, f: Filter) -> Callable[[], None]:
        """
        ``f(stanza, sender, to)`` sees each stanza (after ``from`` is set)
        and returns ``None`` (deliver), :data:`DROP` or a delay in seconds.
        Returns a function that removes the filter.
        """
        self._filters.append(f)
        return lambda: self._filters.remove(f) if f in self._filters else None

    def routed(self, name: Optional[str] = None, child: Optional[str] = None) -> List[Routed]:
        """Recorded traffic, optionally only ``name`` stanzas with a ``child`` (``{uri}name``)."""
        out = self.traffic
        if name is not None:
            out = [r for r in out if r.name == name]
        if child is not None:
            out = [r for r in out if child in r.children()]
        return out

    # -- routing ----------------------------------------------------------------

    def _record(self, sender: str, to: str, el: domish.Element, action: str) -> None:
        if self.record:
            self.traffic.append(Routed(self.host.seconds(), sender, to, el, action))

    def route(self, session: "C2S", el: domish.Element) -> None:
        """A stanza from a bound session."""
        if el.name not in ("iq", "message", "presence"):
            return
        sender = session.jid
        el["from"] = sender.full()
        toText = el.getAttribute("to")
        to: Optional[JID] = None
        if toText:
            try:
                to = JID(toText)
            except Exception:
                self._record(sender.full(), toText, el, "bounced")
                self._bounce(el, "jid-malformed", "modify", frm=sender.host)
                return
        if session.silent:
            self._record(sender.full(), toText or "", el, "dropped")
            return
        for f in list(self._filters):
            verdict = f(el, sender, to)
            if verdict == DROP:
                self._record(sender.full(), toText or "", el, "dropped")
                return
            if verdict is not None:
                self._record(sender.full(), toText or "", el, "delayed")
                self.host.callLater(float(verdict), self._deliver, sender, to, el)
                return
        self._deliver(sender, to, el)

    def _deliver(self, sender: JID, to: Optional[JID], el: domish.Element) -> None:
        if to is not None and to.host in self.downDomains:
            delay = self.downDomains[to.host]
            if delay is None or el.name == "presence":
                self._record(sender.full(), to.full(), el, "dropped")
            else:
                self._record(sender.full(), to.full(), el, "bounced")
                self.host.callLater(delay, self._bounce, el, "remote-server-timeout", "wait")
            return
        if el.name == "presence":
            self._presence(sender, to, el)
        elif to is None or (to.user is None and to.host in self.domains):
            self._serverStanza(sender, el)
        elif to.host not in self.domains:
            self._record(sender.full(), to.full(), el, "bounced")
            self._bounce(el, "remote-server-not-found", "cancel")
        elif to.resource is None:
            self._bareStanza(sender, to, el)
        else:
            target = self.sessions.get(to.full())
            if target is not None:
                self._record(sender.full(), to.full(), el,
                             "dropped" if target.silent else "delivered")
                target.sendElement(el)
            elif el.name == "iq" and el.getAttribute("type") in ("get", "set"):
                self._record(sender.full(), to.full(), el, "bounced")
                self._bounce(el, "service-unavailable", "cancel")
            elif el.name == "message" and el.getAttribute("type") not in (
                    "error", "groupchat", "headline"):
                self._record(sender.full(), to.full(), el, "bounced")
                self._bounce(el, "service-unavailable", "cancel")
            else:
                self._record(sender.full(), to.full(), el, "dropped")

    def _presence(self, sender: JID, to: Optional[JID], el: domish.Element) -> None:
        session = self.sessions.get(sender.full())
        kind = el.getAttribute("type")
        if to is None:
            self._record(sender.full(), "", el, "answered")
            if session is None:
                return
            if kind is None:
                session.available = True
                priority = next((str(c) for c in el.elements() if c.name == "priority"), "0")
                try:
                    session.priority = int(priority)
                except ValueError:
                    session.priority = 0
            elif kind == "unavailable":
                session.available = False
                session.broadcastUnavailable()
            return
        if session is not None:
            if kind is None:
                session.directed.add(to.full())
            elif kind == "unavailable":
                session.directed.discard(to.full())
        targets = ([self.sessions.get(to.full())] if to.resource else
                   [s for s in self.sessions.values() if s.jid.userhost() == to.userhost()])
        targets = [t for t in targets if t is not None]
        self._record(sender.full(), to.full(), el, "delivered" if targets else "dropped")
        for target in targets:
            target.sendElement(el)

    def _bareStanza(self, sender: JID, to: JID, el: domish.Element) -> None:
        if el.name == "message":
            targets = [s for s in self.sessions.values()
                       if s.jid.userhost() == to.userhost() and s.available and s.priority >= 0]
            self._record(sender.full(), to.full(), el, "delivered" if targets else "dropped")
            for target in targets:
                target.sendElement(el)
            return
        kind = el.getAttribute("type")
        if kind not in ("get", "set"):
            self._record(sender.full(), to.full(), el, "dropped")
            return
        self._record(sender.full(), to.full(), el, "answered")
        if to.userhost() not in self.accounts:
            self._bounce(el, "service-unavailable", "cancel")
            return
        query = el.firstChildElement()
        if kind == "get" and query is not None and query.uri == NS_DISCO_INFO:
            answer = _result(el)
            q = answer.addElement((NS_DISCO_INFO, "query"))
            identity = q.addElement("identity")
            identity["category"], identity["type"] = "account", "registered"
            q.addElement("feature")["var"] = NS_DISCO_INFO
            self._answer(answer)
        elif kind == "get" and query is not None and query.uri == NS_DISCO_ITEMS:
            answer = _result(el)
            answer.addElement((NS_DISCO_ITEMS, "query"))
            self._answer(answer)
        elif kind == "get" and query is not None and query.uri == NS_PING:
            self._answer(_result(el))
        else:
            self._bounce(el, "service-unavailable", "cancel")

    def _serverStanza(self, sender: JID, el: domish.Element) -> None:
        domain = el.getAttribute("to") or sender.host
        kind = el.getAttribute("type")
        if el.name != "iq" or kind not in ("get", "set"):
            self._record(sender.full(), domain, el, "dropped")
            return
        self._record(sender.full(), domain, el, "answered")
        query = el.firstChildElement()
        uri = query.uri if query is not None else None
        if kind == "get" and uri == NS_DISCO_INFO:
            answer = _result(el, frm=domain)
            q = answer.addElement((NS_DISCO_INFO, "query"))
            identity = q.addElement("identity")
            identity["category"], identity["type"] = "server", "im"
            for feature in (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING):
                q.addElement("feature")["var"] = feature
            self._answer(answer)
        elif kind == "get" and uri == NS_DISCO_ITEMS:
            answer = _result(el, frm=domain)
            q = answer.addElement((NS_DISCO_ITEMS, "query"))
            for item in self.items.get(domain, []):
                q.addElement("item")["jid"] = item.full()
            self._answer(answer)
        elif kind == "get" and uri in (NS_PING, NS_ROSTER):
            answer = _result(el, frm=domain)
            if uri == NS_ROSTER:
                answer.addElement((NS_ROSTER, "query"))
            self._answer(answer)
        elif kind == "set" and uri == NS_SESSION:
            self._answer(_result(el, frm=domain))
        else:
            self._bounce(el, "service-unavailable", "cancel", frm=domain)

    def _answer(self, answer: domish.Element) -> None:
        target = self.sessions.get(answer.getAttribute("to", ""))
        if target is not None:
            target.sendElement(answer)

    def _bounce(self, el: domish.Element, condition: str, kind: str,
                frm: Optional[str] = None) -> None:
        """An error answer to ``el``'s sender, from the addressed JID."""
        if el.getAttribute("type") == "error":
            return
        reply = domish.Element((NS_CLIENT, el.name))
        reply["type"] = "error"
        if el.hasAttribute("id"):
            reply["id"] = el["id"]
        reply["to"] = el["from"]
        reply["from"] = frm or el.getAttribute("to") or JID(el["from"]).host
        error = reply.addElement("error")
        error["type"] = kind
        error.addElement((NS_STANZAS, condition))
        self._answer(reply)

    # -- sessions ----------------------------------------------------------------

    def _bind(self, session: "C2S", resource: str) -> JID:
        jid = JID(tuple=(session.user, session.domain, resource or "r" + secrets.token_hex(4)))
        old = self.sessions.get(jid.full())
        if old is not None:
            old.streamError("conflict")
            self.sessions.pop(jid.full(), None)
        self.sessions[jid.full()] = session
        return jid

    def _ended(self, session: "C2S") -> None:
        if session.jid is not None and self.sessions.get(session.jid.full()) is session:
            del self.sessions[session.jid.full()]
            if not session.silent:
                session.broadcastUnavailable()


def _result(el: domish.Element, frm: Optional[str] = None) -> domish.Element:
    answer = domish.Element((NS_CLIENT, "iq"))
    answer["type"] = "result"
    answer["id"] = el.getAttribute("id", "")
    answer["to"] = el["from"]
    answer["from"] = frm or el.getAttribute("to") or JID(el["from"]).host
    return answer
