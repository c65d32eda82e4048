"""
XEP-0047 (In-Band Bytestreams) wire codecs.

Three value classes, one per element: :class:`Open`, :class:`Data` and
:class:`Close`, each with ``fromElement``/``toElement``.  Parsing raises
:class:`MalformedIBB` (a ``ValueError``), which the handler answers with
``bad-request``.  Nothing here knows about sessions, sequence state or time.

Building is checked like parsing: ``toElement`` and :class:`DataWriter`
refuse (``MalformedIBB``) a sid that is not an NMTOKEN or an address XML
cannot carry, so nothing we send can be non-XML that makes the server close
the stream.

Base64 is checked as strictly as the XEP's security section demands: any
character outside the RFC 4648 section 4 alphabet is rejected, padding is
accepted only at the very end and only in the right amount, and a length
that is not a whole number of quanta is rejected.  The one exception is XML
whitespace (space, tab, CR, LF): the XEP's own examples wrap the base64 text
on several indented lines, so a peer that pretty-prints is conforming and
those characters are XML formatting rather than data; they are removed
before the strict decode.

The data path does not build elements at all: :func:`dataIQ`,
:func:`dataMessage` and :class:`DataWriter` produce the serialised stanza
as a ``str`` (which :meth:`bytestreamd.stanzas.Connection.send` accepts),
because a domish tree per 4 KiB block costs more than the base64 itself.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Optional

from twisted.words.xish import domish

from bytestreamd.ns import NS_IBB
from bytestreamd.xmpp.stanzas import escapeAttribute
from bytestreamd.text import isXMLText

#: The largest block-size the XEP allows (xs:unsignedShort).
MAX_BLOCK_SIZE = 65535
#: The block-size the XEP recommends.
DEFAULT_BLOCK_SIZE = 4096
#: ``seq`` is a 16-bit counter that wraps from 65535 to 0.
SEQ_MODULO = 65536

STANZA_IQ = "iq"
STANZA_MESSAGE = "message"
STANZAS = (STANZA_IQ, STANZA_MESSAGE)


class MalformedIBB(ValueError):
    """An IBB element (or its base64 payload) that the XEP does not allow."""

    condition = "bad-request"


# xs:NMTOKEN: one or more XML name characters.  \w covers letters, digits
# and '_' (Unicode aware); the rest are the other NameChar punctuation.
_NMTOKEN = re.compile(r"[\w.:\-\u00b7\u0300-\u036f\u203f\u2040]+\Z")
_XML_WHITESPACE = b" \t\r\n"


def checkSid(value: Optional[str]) -> str:
    """Return ``value`` if it is a valid NMTOKEN session id."""
    if not value or not _NMTOKEN.match(value):
        raise MalformedIBB("missing or invalid 'sid' (must be an NMTOKEN): %r"
                           % (value,))
    return value


def _unsignedShort(value: Optional[str], name: str) -> int:
    # int() would accept '+5', ' 5', '5_0' and non-ASCII digits; the
    # schema type does not.
    if not value or len(value) > 5 or not value.isascii() or not value.isdigit():
        raise MalformedIBB("missing or invalid '%s': %r" % (name, value))
    number = int(value)
    if number > MAX_BLOCK_SIZE:
        raise MalformedIBB("'%s' out of range: %r" % (name, value))
    return number


def parseSeq(value: Optional[str]) -> int:
    """The ``seq`` attribute as an int in 0..65535."""
    return _unsignedShort(value, "seq")


def parseBlockSize(value: Optional[str]) -> int:
    """
    The ``block-size`` attribute: a positive integer.

    Values above 65535 are parsed rather than refused here, so that the
    handler can answer them with ``resource-constraint`` (asking for a
    smaller block) instead of ``bad-request``, which a peer cannot act on.
    """
    if not value or len(value) > 10 or not value.isascii() or not value.isdigit():
        raise MalformedIBB("missing or invalid 'block-size': %r" % (value,))
    number = int(value)
    if number < 1:
        raise MalformedIBB("'block-size' must be positive: %r" % (value,))
    return number


def encodeBase64(payload: bytes) -> str:
    """RFC 4648 section 4 base64 with padding, on one line."""
    return binascii.b2a_base64(payload, newline=False).decode("ascii")


def decodeBase64(text: str) -> bytes:
    """
    Decode base64 strictly (see the module docstring); raise MalformedIBB.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedIBB("non-ASCII character in base64 data")
    raw = raw.translate(None, _XML_WHITESPACE)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error as e:
        raise MalformedIBB("invalid base64 data: %s" % (e,))


def elementText(element: domish.Element) -> str:
    """
    All character data of a simple-content element; MalformedIBB if it has
    child elements (the schema allows none).
    """
    children = element.children
    if len(children) == 1 and children[0].__class__ is str:
        return children[0]
    parts = []
    for child in children:
        if isinstance(child, str):
            parts.append(child)
        else:
            raise MalformedIBB("<%s/> must not contain elements" % element.name)
    return "".join(parts)


def _require(element: domish.Element, name: str) -> None:
    if element.uri != NS_IBB or element.name != name:
        raise MalformedIBB("expected {%s}%s, got {%s}%s"
                           % (NS_IBB, name, element.uri, element.name))


@dataclass(frozen=True)
class Open:
    """``<open/>``: the initiator proposes a session."""

    sid: str
    blockSize: int = DEFAULT_BLOCK_SIZE
    stanza: str = STANZA_IQ

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Open":
        _require(element, "open")
        sid = checkSid(element.getAttribute("sid"))
        blockSize = parseBlockSize(element.getAttribute("block-size"))
        stanza = element.getAttribute("stanza", STANZA_IQ)
        if stanza not in STANZAS:
            raise MalformedIBB("invalid 'stanza': %r" % (stanza,))
        return cls(sid, blockSize, stanza)

    def toElement(self) -> domish.Element:
        checkSid(self.sid)
        if not 1 <= self.blockSize <= MAX_BLOCK_SIZE:
            raise ValueError("block-size must be 1..65535, not %r" % (self.blockSize,))
        if self.stanza not in STANZAS:
            raise ValueError("stanza must be 'iq' or 'message', not %r" % (self.stanza,))
        element = domish.Element((NS_IBB, "open"))
        element["sid"] = self.sid
        element["block-size"] = str(self.blockSize)
        element["stanza"] = self.stanza
        return element


@dataclass(frozen=True)
class Data:
    """``<data/>``: one block of the bytestream (``payload`` decoded)."""

    sid: str
    seq: int
    payload: bytes

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Data":
        _require(element, "data")
        sid = checkSid(element.getAttribute("sid"))
        seq = parseSeq(element.getAttribute("seq"))
        return cls(sid, seq, decodeBase64(elementText(element)))

    def toElement(self) -> domish.Element:
        checkSid(self.sid)
        if not 0 <= self.seq < SEQ_MODULO:
            raise ValueError("seq must be 0..65535, not %r" % (self.seq,))
        element = domish.Element((NS_IBB, "data"))
        element["sid"] = self.sid
        element["seq"] = str(self.seq)
        element.addContent(encodeBase64(self.payload))
        return element


@dataclass(frozen=True)
class Close:
    """``<close/>``: either party ends the session."""

    sid: str

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Close":
        _require(element, "close")
        return cls(checkSid(element.getAttribute("sid")))

    def toElement(self) -> domish.Element:
        checkSid(self.sid)
        element = domish.Element((NS_IBB, "close"))
        element["sid"] = self.sid
        return element


# --- the hot path: serialised stanzas without domish ----------------------


def _addressing(to: str, frm: Optional[str]) -> str:
    words = " to='%s'" % escapeAttribute(to)
    if frm:
        words += " from='%s'" % escapeAttribute(frm)
    return words


def dataIQ(to: str, frm: Optional[str], iqId: str, sid: str, seq: int,
           payload: bytes) -> str:
    """An ``<iq type='set'>`` carrying one data block, serialised."""
    return DataWriter(to, frm, sid).iq(escapeAttribute(iqId), seq, payload)


def dataMessage(to: str, frm: Optional[str], msgId: str, sid: str, seq: int,
                payload: bytes) -> str:
    """A ``<message>`` carrying one data block, serialised (with an id, as
    the XEP asks, so that errors can be matched)."""
    return DataWriter(to, frm, sid).message(escapeAttribute(msgId), seq, payload)


def ackIQ(to: str, iqId: str) -> str:
    """The empty ``result`` acknowledging the data iq ``iqId`` from ``to``."""
    return "<iq type='result' to='%s' id='%s'/>" % (
        escapeAttribute(to), escapeAttribute(iqId))


class DataWriter:
    """
    Serialises data stanzas for one session: the addressing and sid are
    escaped once, so a block costs one base64 encode and one join.
    ``to``/``frm`` are full JIDs as strings; ``frm`` may be ``None`` (the
    server stamps it).  Stanza ids must be attribute-safe (ours are).
    """

    __slots__ = ("_iqHead", "_messageHead", "_middle")

    def __init__(self, to: str, frm: Optional[str], sid: str):
        checkSid(sid)
        if not isXMLText(to) or (frm is not None and not isXMLText(frm)):
            raise MalformedIBB("an address XML cannot carry: %r -> %r" % (frm, to))
        addressing = _addressing(to, frm)
        self._iqHead = "<iq type='set'%s id='" % addressing
        self._messageHead = "<message%s id='" % addressing
        self._middle = "'><data xmlns='%s' sid='%s' seq='" % (
            NS_IBB, escapeAttribute(sid))

    def iq(self, iqId: str, seq: int, payload: bytes) -> str:
        return "".join((self._iqHead, iqId, self._middle, str(seq), "'>",
                        binascii.b2a_base64(payload, newline=False).decode("ascii"),
                        "</data></iq>"))

    def message(self, msgId: str, seq: int, payload: bytes) -> str:
        return "".join((self._messageHead, msgId, self._middle, str(seq), "'>",
                        binascii.b2a_base64(payload, newline=False).decode("ascii"),
                        "</data></message>"))
