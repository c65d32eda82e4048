"""
A proxy65 stand-in for the memory tier (XEP-0065 section 6): a SOCKS5
relay on its own host and a JID answered through a router filter, that
can *strand* a link's tail the way Prosody 0.12's proxy65 does
(docs/protocol.rst, "A flush, a tail, and why").

``strand``: once ``strandAfter`` bytes have crossed in one direction, the
relay keeps the last ``strand`` bytes it took from that leg until the same
leg writes again (then they go first) or half-closes (then they go, and
both legs are closed, as proxy65 does).  So a sender that announces its
EOF over XMPP and writes nothing more leaves exactly ``strand`` bytes in
the relay for good.  ``strand=0``: an honest relay.

Pairing: both legs send the same DST.ADDR (sha1 of sid, requester, target);
``<activate/>`` from the requester joins them.  Every byte relayed is
recorded per direction (``crossed``), to check that it was ciphertext.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional

from twisted.internet import protocol
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.wire.s5b import Activate, AddressRequest, StreamHost, dstAddr
from tests.memory.router import DROP

NS_S5B = "http://jabber.org/protocol/bytestreams"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


class _Leg(protocol.Protocol):
    """One SOCKS5 connection to the relay."""

    def __init__(self, proxy: "Proxy65"):
        self.proxy = proxy
        self.buffer = b""
        self.state = "greeting"
        self.address: Optional[str] = None
        self.other: Optional["_Leg"] = None
        self.early: List[bytes] = []
        self.held = b""
        self.crossed = 0
        self.record = bytearray()

    def dataReceived(self, data: bytes) -> None:
        if self.state == "relay":
            self._relay(data)
            return
        if self.state == "waiting":
            self.early.append(data)
            return
        self.buffer += data
        if self.state == "greeting":
            if len(self.buffer) < 2 or len(self.buffer) < 2 + self.buffer[1]:
                return
            self.buffer = self.buffer[2 + self.buffer[1]:]
            self.transport.write(b"\x05\x00")
            self.state = "request"
        if self.state == "request":
            if len(self.buffer) < 5:
                return
            size = self.buffer[4]
            if len(self.buffer) < 5 + size + 2:
                return
            self.address = self.buffer[5:5 + size].decode("ascii")
            rest, self.buffer = self.buffer[5 + size + 2:], b""
            self.transport.write(b"\x05\x00\x00\x03" + bytes([size])
                                 + self.address.encode("ascii") + struct.pack("!H", 0))
            self.state = "waiting"
            self.proxy._legs.setdefault(self.address, []).append(self)
            if rest:
                self.early.append(rest)

    def activate(self, other: "_Leg") -> None:
        self.other, self.state = other, "relay"
        early, self.early = self.early, []
        for data in early:
            self._relay(data)

    def _relay(self, data: bytes) -> None:
        if self.other is None:
            return
        self.record += data
        data = self.held + data
        self.held = b""
        strand = self.proxy.strand
        if strand and self.crossed + len(data) > self.proxy.strandAfter:
            keep = min(strand, len(data))
            data, self.held = data[:len(data) - keep], data[len(data) - keep:]
        self.crossed += len(data)
        if data:
            self.other.transport.write(data)

    def readConnectionLost(self) -> None:  # pragma: no cover - not half-closeable here
        pass

    def connectionLost(self, reason=None) -> None:
        # proxy65: one leg's end (or EOF) ends both; what it held goes first.
        other, self.other = self.other, None
        if other is not None:
            if self.held:
                other.transport.write(self.held)
                self.held = b""
            other.other = None
            other.transport.loseConnection()


class _Factory(protocol.Factory):
    def __init__(self, proxy: "Proxy65"):
        self.proxy = proxy

    def buildProtocol(self, addr):
        leg = _Leg(self.proxy)
        self.proxy.legs.append(leg)
        return leg


class Proxy65:
    """A proxy65 at ``jid`` in ``world`` (module docstring)."""

    def __init__(self, world, jid: str = "proxy.example.test", strand: int = 0,
                 strandAfter: int = 65536):
        self.world = world
        self.jid = JID(jid)
        self.strand = strand
        self.strandAfter = strandAfter
        self.legs: List[_Leg] = []
        self._legs: Dict[str, List[_Leg]] = {}
        self.port = world.listenTCP(_Factory(self), hostName="proxy65")
        self.activated = 0
        world.router.addFilter(self._filter)

    @property
    def stranded(self) -> int:
        """Bytes the relay holds right now (all legs)."""
        return sum(len(leg.held) for leg in self.legs)

    def _filter(self, el: domish.Element, sender: JID, to: Optional[JID]):
        if to is None or to.full() != self.jid.full() or el.name != "iq":
            return None
        kind = el.getAttribute("type")
        query = el.firstChildElement()
        answer = domish.Element((None, "iq"))
        answer["type"], answer["id"] = "result", el.getAttribute("id", "")
        answer["from"], answer["to"] = self.jid.full(), sender.full()
        if kind == "get" and query is not None and query.uri == NS_DISCO_INFO:
            q = answer.addElement((NS_DISCO_INFO, "query"))
            identity = q.addElement("identity")
            identity["category"], identity["type"] = "proxy", "bytestreams"
            q.addElement("feature")["var"] = NS_S5B
        elif kind == "get" and query is not None and query.uri == NS_S5B:
            AddressRequest.fromElement(query)
            q = answer.addElement((NS_S5B, "query"))
            q.addChild(StreamHost(self.jid, "127.0.0.1", self.port).toElement())
        elif kind == "set" and query is not None and query.uri == NS_S5B:
            activate = Activate.fromElement(query)
            address = dstAddr(activate.sid, sender, activate.target)
            legs = [leg for leg in self._legs.pop(address, []) if leg.state == "waiting"]
            if len(legs) != 2:
                answer["type"] = "error"
                error = answer.addElement("error")
                error["type"] = "cancel"
                error.addElement(("urn:ietf:params:xml:ns:xmpp-stanzas", "item-not-found"))
            else:
                self.activated += 1
                legs[0].activate(legs[1])
                legs[1].activate(legs[0])
        else:
            answer["type"] = "error"
            error = answer.addElement("error")
            error["type"] = "cancel"
            error.addElement(("urn:ietf:params:xml:ns:xmpp-stanzas", "service-unavailable"))
        self.world.router._answer(answer)
        return DROP
