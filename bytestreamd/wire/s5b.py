"""
XEP-0065 (SOCKS5 Bytestreams) wire codecs.

One value class per use of the ``<query xmlns='http://jabber.org/protocol/bytestreams'/>``
element: the initiation :class:`Query` (streamhosts), the target's
:class:`StreamHostUsed` answer, the requester's :class:`Activate` to a proxy,
and the proxy address request/answer (:class:`AddressRequest`,
:class:`AddressAnswer`).  Parsing raises :class:`MalformedS5B`, which the IQ
boundary turns into ``bad-request`` (XEP-0065 section 5.3.1).  These classes
know nothing about sockets or sessions.

Text a peer or we put in an attribute (sid, host, dstaddr, JIDs) must be
XML 1.0 characters both ways: ``fromElement`` and ``toElement`` raise
``MalformedS5B`` otherwise, so a value that was accepted can always be sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import List, Optional

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.ns import NS_S5B
from bytestreamd.xmpp.stanzas import parseJID
from bytestreamd.text import describeCharacter, firstNonXML

#: The port a streamhost without a ``port`` attribute listens on (RFC 1928).
DEFAULT_PORT = 1080

MODE_TCP = "tcp"
MODE_UDP = "udp"


class MalformedS5B(ValueError):
    """A bytestreams element that the XEP's schema does not allow."""


def dstAddr(sid: str, initiator: JID, target: JID) -> str:
    """
    The SOCKS5 DST.ADDR both parties send to a streamhost: the hex SHA-1 of
    sid + requester JID + target JID (XEP-0065 section 5.3.2), computed on
    the JIDs exactly as used for the IQ exchange.  ``JID`` has already
    applied the stringprep profiles the XEP requires.
    """
    data = sid + initiator.full() + target.full()
    return hashlib.sha1(data.encode("utf-8")).hexdigest()


def _text(value: Optional[str], what: str) -> Optional[str]:
    """``value`` if XML can carry it (or it is ``None``); else MalformedS5B."""
    if value is not None:
        index = firstNonXML(value)
        if index is not None:
            raise MalformedS5B("%s contains %s" % (what, describeCharacter(value[index])))
    return value


def _query(sid: Optional[str] = None) -> domish.Element:
    query = domish.Element((NS_S5B, "query"))
    if sid is not None:
        query["sid"] = _text(sid, "sid")
    return query


def _isQuery(element: domish.Element) -> bool:
    return element.uri == NS_S5B and element.name == "query"


def _children(element: domish.Element, name: str) -> List[domish.Element]:
    return [c for c in element.elements(NS_S5B, name)]


def _requireQuery(element: domish.Element) -> None:
    if not _isQuery(element):
        raise MalformedS5B("not a bytestreams query: {%s}%s"
                           % (element.uri, element.name))


def _requiredJID(element: domish.Element, attribute: str = "jid") -> JID:
    jid = parseJID(element.getAttribute(attribute))
    if jid is None:
        raise MalformedS5B("<%s/> without a valid '%s'" % (element.name, attribute))
    return jid


@dataclass(frozen=True)
class StreamHost:
    """One candidate: where to connect (host, port) and who it is (jid)."""

    jid: JID
    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def fromElement(cls, element: domish.Element) -> "StreamHost":
        jid = _requiredJID(element)
        host = _text(element.getAttribute("host"), "<streamhost/> host")
        if not host:
            raise MalformedS5B("<streamhost/> without 'host'")
        portText = element.getAttribute("port")
        if portText is None:
            port = DEFAULT_PORT
        else:
            # Decimal only: int() would also accept ' 12', '+12', '1_2'.
            if not (portText.isascii() and portText.isdigit() and len(portText) <= 5):
                raise MalformedS5B("<streamhost/> port %r is not a port number" % portText)
            port = int(portText)
            if not 0 < port < 65536:
                raise MalformedS5B("<streamhost/> port %d is out of range" % port)
        return cls(jid=jid, host=host, port=port)

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_S5B, "streamhost"))
        element["jid"] = _text(self.jid.full(), "<streamhost/> jid")
        if not self.host:
            raise MalformedS5B("<streamhost/> without 'host'")
        element["host"] = _text(self.host, "<streamhost/> host")
        if not 0 < self.port < 65536:
            raise MalformedS5B("<streamhost/> port %r is out of range" % (self.port,))
        element["port"] = str(self.port)
        return element

    def describe(self) -> str:
        """``jid (host:port)`` for reasons shown to an operator."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s (%s:%d)" % (self.jid.full(), host, self.port)


@dataclass(frozen=True)
class Query:
    """The requester's initiation ``<query sid mode><streamhost/>...</query>``."""

    sid: str
    streamhosts: List[StreamHost] = field(default_factory=list)
    mode: str = MODE_TCP
    dstaddr: Optional[str] = None

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Query":
        _requireQuery(element)
        sid = _text(element.getAttribute("sid"), "sid")
        if not sid:
            raise MalformedS5B("bytestreams query without 'sid'")
        mode = element.getAttribute("mode", MODE_TCP)
        if mode not in (MODE_TCP, MODE_UDP):
            raise MalformedS5B("bytestreams query with unknown mode %r" % mode)
        hosts = [StreamHost.fromElement(e) for e in _children(element, "streamhost")]
        if not hosts:
            raise MalformedS5B("bytestreams query without any <streamhost/>")
        return cls(sid=sid, streamhosts=hosts, mode=mode,
                   dstaddr=_text(element.getAttribute("dstaddr"), "dstaddr"))

    def toElement(self) -> domish.Element:
        if not self.sid:
            raise MalformedS5B("bytestreams query without 'sid'")
        if self.mode not in (MODE_TCP, MODE_UDP):
            raise MalformedS5B("bytestreams query with unknown mode %r" % (self.mode,))
        query = _query(self.sid)
        query["mode"] = self.mode
        if self.dstaddr is not None:
            query["dstaddr"] = _text(self.dstaddr, "dstaddr")
        for host in self.streamhosts:
            query.addChild(host.toElement())
        return query


@dataclass(frozen=True)
class StreamHostUsed:
    """The target's result: ``<query sid><streamhost-used jid/></query>``."""

    jid: JID
    sid: Optional[str] = None

    @classmethod
    def fromElement(cls, element: domish.Element) -> "StreamHostUsed":
        _requireQuery(element)
        used = _children(element, "streamhost-used")
        if len(used) != 1:
            raise MalformedS5B("expected one <streamhost-used/>, got %d" % len(used))
        return cls(jid=_requiredJID(used[0]),
                   sid=_text(element.getAttribute("sid"), "sid"))

    def toElement(self) -> domish.Element:
        query = _query(self.sid)
        query.addElement("streamhost-used")["jid"] = _text(
            self.jid.full(), "<streamhost-used/> jid")
        return query


@dataclass(frozen=True)
class Activate:
    """The requester asks a proxy to join the two legs of ``sid``."""

    sid: str
    target: JID

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Activate":
        _requireQuery(element)
        sid = _text(element.getAttribute("sid"), "sid")
        if not sid:
            raise MalformedS5B("activate query without 'sid'")
        activates = _children(element, "activate")
        if len(activates) != 1:
            raise MalformedS5B("expected one <activate/>, got %d" % len(activates))
        target = parseJID(str(activates[0]).strip())
        if target is None:
            raise MalformedS5B("<activate/> without a valid target JID")
        return cls(sid=sid, target=target)

    def toElement(self) -> domish.Element:
        if not self.sid:
            raise MalformedS5B("activate query without 'sid'")
        query = _query(self.sid)
        query.addElement("activate", content=_text(self.target.full(), "<activate/>"))
        return query


@dataclass(frozen=True)
class AddressRequest:
    """Ask a proxy for its network address: an empty query (no sid, XEP 1.8)."""

    @classmethod
    def fromElement(cls, element: domish.Element) -> "AddressRequest":
        _requireQuery(element)
        return cls()

    def toElement(self) -> domish.Element:
        return _query()


@dataclass(frozen=True)
class AddressAnswer:
    """A proxy's address answer: one or more ``<streamhost/>`` children."""

    streamhosts: List[StreamHost] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: domish.Element) -> "AddressAnswer":
        _requireQuery(element)
        hosts = [StreamHost.fromElement(e) for e in _children(element, "streamhost")]
        if not hosts:
            raise MalformedS5B("proxy address answer without any <streamhost/>")
        return cls(streamhosts=hosts)

    def toElement(self) -> domish.Element:
        query = _query()
        for host in self.streamhosts:
            query.addChild(host.toElement())
        return query
