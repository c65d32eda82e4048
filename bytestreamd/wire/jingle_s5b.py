"""
XEP-0260 (Jingle SOCKS5 Bytestreams Transport Method) wire codec.

``<transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid [mode] [dstaddr]>``
is :class:`S5BTransport`.  Its schema is a *choice*: the element carries
either candidates (session-initiate, session-accept, transport-replace), or
exactly one of ``<candidate-used cid/>``, ``<candidate-error/>``,
``<activated cid/>``, ``<proxy-error/>`` (transport-info), or nothing.

Two rules of the XEP that depend only on values are here as pure
functions: the SOCKS5 DST.ADDR for a candidate (:func:`candidateDstAddr`,
which depends on who offered the candidate) and the nomination of the
candidate both sides use (:func:`nominate`, section 2.5).  Candidate
hosts are kept as given: the XEP's own examples use ``123.456.7.8``, and
connecting is where a bad address shows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import List, Optional, Tuple

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.ns import NS_JINGLE_S5B
from bytestreamd.xmpp.stanzas import parseJID
from bytestreamd.wire.jingle import INITIATOR, RESPONDER, MalformedJingle

MODE_TCP = "tcp"
MODE_UDP = "udp"
MODES = (MODE_TCP, MODE_UDP)

DIRECT = "direct"
ASSISTED = "assisted"
TUNNEL = "tunnel"
PROXY = "proxy"
CANDIDATE_TYPES = (ASSISTED, DIRECT, PROXY, TUNNEL)

#: The type preferences XEP-0260 section 2.2 suggests.
TYPE_PREFERENCE = {DIRECT: 126, ASSISTED: 120, TUNNEL: 110, PROXY: 10}

#: A candidate without a port (the schema makes it optional): RFC 1928's port.
DEFAULT_PORT = 1080
#: xs:positiveInteger is unbounded; nobody needs more than 32 bits (ICE's).
MAX_PRIORITY = 2 ** 32 - 1
MAX_CANDIDATES = 64


def priority(type: str, localPreference: int = 0) -> int:
    """``(2^16)*(type preference) + (local preference)``, XEP-0260 section 2.2."""
    if not 0 <= localPreference <= 65535:
        raise ValueError("local preference must be 0..65535")
    return (1 << 16) * TYPE_PREFERENCE[type] + localPreference


def dstAddr(sid: str, requester: JID, target: JID) -> str:
    """Hex SHA-1 of sid + requester full JID + target full JID (XEP-0065 5.3.2)."""
    data = sid + requester.full() + target.full()
    return hashlib.sha1(data.encode("utf-8")).hexdigest()


def candidateDstAddr(sid: str, initiator: JID, responder: JID, offeredBy: str) -> str:
    """
    The DST.ADDR for a candidate of the transport ``sid``, by the party that
    offered it.  XEP-0260 section 2.2: "in XEP-0260 the Jingle 'initiator'
    is the SOCKS5 Bytestreams 'requester' and the Jingle 'responder' is the
    SOCKS5 Bytestreams 'target', so for proxy candidates sent from the
    initiator/requester to the responder/target the DST.ADDR is calculated
    as SHA1(SID + Initiator JID + Responder JID). Note well that the
    calcuation for proxy candidates sent from the responder/target to the
    initiator/requester is SHA1(SID + Responder JID + Initiator JID)".

    The same holds for direct candidates (the offerer runs the SOCKS5
    server and plays the requester for it), which is what Gajim, Dino,
    Conversations and Libervia do.  ``sid`` is the S5B transport's sid, not
    the Jingle session's: the XEP's examples (``vj3hs98y``) check out only
    that way.
    """
    if offeredBy == INITIATOR:
        return dstAddr(sid, initiator, responder)
    if offeredBy == RESPONDER:
        return dstAddr(sid, responder, initiator)
    raise ValueError("offeredBy must be initiator or responder, not %r" % (offeredBy,))


def _positive(value: Optional[str], what: str, maximum: int) -> int:
    if not value or len(value) > 10 or not value.isascii() or not value.isdigit():
        raise MalformedJingle("S5B %s %r is not a positive integer" % (what, value))
    number = int(value)
    if not 0 < number <= maximum:
        raise MalformedJingle("S5B %s %d is out of range" % (what, number))
    return number


def _cid(element: domish.Element) -> str:
    cid = element.getAttribute("cid")
    if not cid:
        raise MalformedJingle("S5B <%s/> without a 'cid'" % element.name)
    if len(cid) > 256:
        raise MalformedJingle("S5B 'cid' is longer than 256 characters")
    return cid


@dataclass(frozen=True)
class Candidate:
    """
    One SOCKS5 streamhost offered for the transport.  ``port`` and ``type``
    are ``None`` when absent (1080 and ``direct`` then apply:
    :attr:`effectivePort`, :attr:`effectiveType`).
    """

    cid: str
    host: str
    jid: JID
    priority: int
    port: Optional[int] = None
    type: Optional[str] = None

    @property
    def effectivePort(self) -> int:
        return DEFAULT_PORT if self.port is None else self.port

    @property
    def effectiveType(self) -> str:
        return self.type or DIRECT

    def describe(self) -> str:
        """``cid hft54dqy direct 192.168.4.1:5086`` for reasons."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "cid %s %s %s:%d" % (self.cid, self.effectiveType, host,
                                    self.effectivePort)

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_JINGLE_S5B, "candidate"))
        element["cid"] = self.cid
        element["host"] = self.host
        element["jid"] = self.jid.full()
        if self.port is not None:
            element["port"] = str(self.port)
        element["priority"] = str(self.priority)
        if self.type is not None:
            element["type"] = self.type
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Candidate":
        cid = _cid(element)
        host = element.getAttribute("host")
        if not host:
            raise MalformedJingle("S5B candidate %r without a 'host'" % cid)
        jid = parseJID(element.getAttribute("jid"))
        if jid is None:
            raise MalformedJingle("S5B candidate %r without a valid 'jid'" % cid)
        portText = element.getAttribute("port")
        port = None if portText is None else _positive(portText, "port", 65535)
        prio = _positive(element.getAttribute("priority"), "priority", MAX_PRIORITY)
        type = element.getAttribute("type")
        if type is not None and type not in CANDIDATE_TYPES:
            raise MalformedJingle("S5B candidate %r has unknown type %r" % (cid, type))
        return cls(cid, host, jid, prio, port, type)


@dataclass(frozen=True)
class S5BTransport:
    """
    The transport element.  At most one of ``candidates`` (non-empty),
    ``candidateUsed``, ``candidateError``, ``activated``, ``proxyError`` is
    set, as the schema's choice says; :attr:`kind` names which.
    """

    namespace = NS_JINGLE_S5B
    elementName = "transport"

    sid: str
    mode: Optional[str] = None
    dstaddr: Optional[str] = None
    candidates: Tuple[Candidate, ...] = ()
    candidateUsed: Optional[str] = None
    candidateError: bool = False
    activated: Optional[str] = None
    proxyError: bool = False

    @property
    def effectiveMode(self) -> str:
        return self.mode or MODE_TCP

    @property
    def kind(self) -> str:
        """``candidates``, ``candidate-used``, ``candidate-error``,
        ``activated``, ``proxy-error`` or ``empty``."""
        if self.candidates:
            return "candidates"
        if self.candidateUsed is not None:
            return "candidate-used"
        if self.candidateError:
            return "candidate-error"
        if self.activated is not None:
            return "activated"
        if self.proxyError:
            return "proxy-error"
        return "empty"

    def candidate(self, cid: str) -> Optional[Candidate]:
        for c in self.candidates:
            if c.cid == cid:
                return c
        return None

    def toElement(self) -> domish.Element:
        chosen = [bool(self.candidates), self.candidateUsed is not None,
                  self.candidateError, self.activated is not None, self.proxyError]
        if sum(chosen) > 1:
            raise ValueError("an S5B transport carries one kind of child only")
        element = domish.Element((NS_JINGLE_S5B, "transport"))
        if self.dstaddr is not None:
            element["dstaddr"] = self.dstaddr
        if self.mode is not None:
            element["mode"] = self.mode
        element["sid"] = self.sid
        for c in self.candidates:
            element.addChild(c.toElement())
        if self.candidateUsed is not None:
            element.addElement("candidate-used")["cid"] = self.candidateUsed
        if self.candidateError:
            element.addElement("candidate-error")
        if self.activated is not None:
            element.addElement("activated")["cid"] = self.activated
        if self.proxyError:
            element.addElement("proxy-error")
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "S5BTransport":
        if (element.uri, element.name) != (NS_JINGLE_S5B, "transport"):
            raise MalformedJingle("not a Jingle S5B <transport/>")
        sid = element.getAttribute("sid")
        if not sid:
            raise MalformedJingle("S5B transport without a 'sid'")
        if len(sid) > 256:
            raise MalformedJingle("S5B transport 'sid' is longer than 256 characters")
        mode = element.getAttribute("mode")
        if mode is not None and mode not in MODES:
            raise MalformedJingle("S5B transport 'mode' %r is not tcp or udp" % (mode,))
        dstaddr = element.getAttribute("dstaddr")
        if dstaddr is not None and not (0 < len(dstaddr) <= 255):
            raise MalformedJingle("S5B transport 'dstaddr' must be 1..255 characters")
        candidates: List[Candidate] = []
        used: Optional[str] = None
        activated: Optional[str] = None
        error = proxyError = False
        seen = set()
        for child in element.elements():
            if child.uri != NS_JINGLE_S5B:
                continue
            if child.name == "candidate":
                if len(candidates) >= MAX_CANDIDATES:
                    raise MalformedJingle("more than %d S5B candidates" % MAX_CANDIDATES)
                candidates.append(Candidate.fromElement(child))
                seen.add("candidate")
                continue
            if child.name not in ("candidate-used", "candidate-error",
                                  "activated", "proxy-error"):
                raise MalformedJingle("unknown S5B element <%s/>" % child.name)
            if child.name in seen:
                raise MalformedJingle("S5B transport has more than one <%s/>" % child.name)
            seen.add(child.name)
            if child.name == "candidate-used":
                used = _cid(child)
            elif child.name == "activated":
                activated = _cid(child)
            elif child.name == "candidate-error":
                error = True
            else:
                proxyError = True
        if len(seen) > 1:
            raise MalformedJingle("S5B transport mixes %s; the schema allows one"
                                  % ", ".join(sorted(seen)))
        cids = [c.cid for c in candidates]
        if len(set(cids)) != len(cids):
            raise MalformedJingle("S5B candidates repeat a 'cid'")
        return cls(sid, mode, dstaddr, tuple(candidates), used, error, activated,
                   proxyError)


@dataclass(frozen=True)
class Nomination:
    """The candidate both parties use, and whose choice it was."""

    candidate: Candidate
    chosenBy: str
    #: Who offered it, i.e. who activates it if it is a proxy (section 2.5).
    offeredBy: str


def nominate(initiatorUsed: Optional[Candidate],
             responderUsed: Optional[Candidate]) -> Optional[Nomination]:
    """
    XEP-0260 section 2.5, given the candidate each party reported in its
    candidate-used (``None`` for a candidate-error).  The initiator's pick
    is one of the responder's candidates and vice versa.

    1. both candidate-error: ``None``, fall back to another transport;
    2. one error, one used: the used one;
    3. both used, different priorities: the higher priority;
    4. both used, same priority: the initiator's choice.
    """
    if initiatorUsed is None and responderUsed is None:
        return None
    if responderUsed is None or (
            initiatorUsed is not None
            and initiatorUsed.priority >= responderUsed.priority):
        assert initiatorUsed is not None
        return Nomination(initiatorUsed, INITIATOR, RESPONDER)
    return Nomination(responderUsed, RESPONDER, INITIATOR)


#: The codecs :func:`bytestreamd.wire.jingle.defaultRegistry` registers.
CODECS = (S5BTransport,)
