"""
Wire format of bytestreamd's end-of-link confirmation (``urn:x-bytestreamd:end:0``).

Two elements, each the payload of an ``<iq type='set'/>`` from one party of a
link to the other (full JID to full JID); the answer is an empty result, or
``item-not-found`` when the receiver has no link with that session id from
that sender, or ``bad-request`` when the element is malformed::

    <eof xmlns='urn:x-bytestreamd:end:0' sid='SID' sent='N'/>
    <end xmlns='urn:x-bytestreamd:end:0' sid='SID' sent='N' received='M'
         status='done|closed|failed'>optional text</end>

``sid`` is the session id the link was negotiated with (the SI ``id``).
``sent`` is the total number of payload bytes the sender wrote into the
bytestream, ``received`` the number it handed to its local client.  ``eof``
says "I will write no more" (a half-close that survives any transport);
``end`` is a party's final word.  A third element,
``<flush xmlns='urn:x-bytestreamd:end:0' sid='SID'/>``, asks the peer to
half-close the transport itself: see ``docs/protocol.rst`` (Prosody's
proxy65 can strand the last bytes of a direction until its sender's next
write or EOF).  A flush with ``received='M'`` (the bytes that arrived) asks
instead for the missing bytes *in-band*, answered with
``<tail xmlns='urn:x-bytestreamd:end:0' sid='SID' offset='M'>BASE64</tail>``
elements (at most ``TAIL_CHUNK`` bytes each): the sender's bytes from
offset M on, which it keeps for a relayed link (issue 8).  The rules that use them are in
:mod:`bytestreamd.links.lifecycle`.  Counts are decimal integers without sign,
at most 20 digits (a 64-bit count).

Text checks (issue 8): a ``sid`` XML cannot carry is refused both ways
(``MalformedEnd``); the optional text is informational and a party's final
word must always be sendable, so its characters XML cannot carry become
U+FFFD (:func:`bytestreamd.text.xmlText`), in and out.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Optional

from twisted.words.xish import domish

from bytestreamd.links.lifecycle import STATUSES
from bytestreamd.ns import NS_END
from bytestreamd.text import isXMLText, xmlText

_COUNT = re.compile(r"[0-9]{1,20}\Z")
#: The longest ``<end/>`` text we send or accept (it ends up in events).
MAX_TEXT = 1024
#: The most payload bytes one ``<tail/>`` carries (base64: 4/3 of it, far
#: below the 256 KiB a server takes in one stanza).
TAIL_CHUNK = 16384


class MalformedEnd(ValueError):
    """An eof/end element this format does not allow (answered bad-request)."""

    condition = "bad-request"


def _count(element: domish.Element, name: str) -> int:
    value = element.getAttribute(name)
    if value is None or not _COUNT.match(value):
        raise MalformedEnd("%s needs a non-negative integer %s, not %r"
                           % (element.name, name, value))
    return int(value)


def _sid(element: domish.Element) -> str:
    return _checkSid(element.getAttribute("sid"), element.name)


def _checkSid(sid: Optional[str], name: str) -> str:
    if not sid or len(sid) > 256 or not isXMLText(sid):
        raise MalformedEnd("%s needs a sid of 1 to 256 XML characters" % (name,))
    return sid


def _checkCount(value: int, name: str) -> str:
    text = str(value)
    if not _COUNT.match(text):
        raise MalformedEnd("%s must be a non-negative integer of at most 20 digits, "
                           "not %r" % (name, value))
    return text


@dataclass(frozen=True)
class EOF:
    sid: str
    sent: int

    @classmethod
    def fromElement(cls, element: domish.Element) -> "EOF":
        if (element.uri, element.name) != (NS_END, "eof"):
            raise MalformedEnd("not an eof element")
        return cls(_sid(element), _count(element, "sent"))

    def toElement(self) -> domish.Element:
        e = domish.Element((NS_END, "eof"))
        e["sid"] = _checkSid(self.sid, "eof")
        e["sent"] = _checkCount(self.sent, "sent")
        return e


@dataclass(frozen=True)
class End:
    sid: str
    sent: int
    received: int
    status: str = "done"
    text: Optional[str] = None

    @classmethod
    def fromElement(cls, element: domish.Element) -> "End":
        if (element.uri, element.name) != (NS_END, "end"):
            raise MalformedEnd("not an end element")
        status = element.getAttribute("status", "done")
        if status not in STATUSES:
            raise MalformedEnd("end status must be one of %s, not %r"
                               % (", ".join(STATUSES), status))
        text = xmlText(str(element)).strip() or None
        if text is not None and len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + "..."
        return cls(_sid(element), _count(element, "sent"),
                   _count(element, "received"), status, text)

    def toElement(self) -> domish.Element:
        if self.status not in STATUSES:
            raise MalformedEnd("end status must be one of %s, not %r"
                               % (", ".join(STATUSES), self.status))
        e = domish.Element((NS_END, "end"))
        e["sid"] = _checkSid(self.sid, "end")
        e["sent"] = _checkCount(self.sent, "sent")
        e["received"] = _checkCount(self.received, "received")
        e["status"] = self.status
        if self.text:
            e.addContent(xmlText(self.text[:MAX_TEXT]))
        return e


@dataclass(frozen=True)
class Flush:
    sid: str
    #: Bytes of the sender's stream that arrived: "send me the rest in-band".
    #: ``None`` (an older peer): "half-close the transport".
    received: Optional[int] = None

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Flush":
        if (element.uri, element.name) != (NS_END, "flush"):
            raise MalformedEnd("not a flush element")
        received = None
        if element.getAttribute("received") is not None:
            received = _count(element, "received")
        return cls(_sid(element), received)

    def toElement(self) -> domish.Element:
        e = domish.Element((NS_END, "flush"))
        e["sid"] = _checkSid(self.sid, "flush")
        if self.received is not None:
            e["received"] = _checkCount(self.received, "received")
        return e


@dataclass(frozen=True)
class Tail:
    """
    Bytes of the sender's stream from ``offset`` on, re-sent in-band because
    a relay stranded them (the answer to a flush with ``received``).
    """
    sid: str
    offset: int
    data: bytes

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Tail":
        if (element.uri, element.name) != (NS_END, "tail"):
            raise MalformedEnd("not a tail element")
        text = "".join(c for c in element.children if isinstance(c, str))
        if any(not isinstance(c, str) for c in element.children):
            raise MalformedEnd("tail carries base64 text only")
        try:
            data = base64.b64decode("".join(text.split()).encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as e:
            raise MalformedEnd("tail needs base64 data (%s)" % (e,))
        if len(data) > TAIL_CHUNK:
            raise MalformedEnd("tail carries at most %d bytes, not %d"
                               % (TAIL_CHUNK, len(data)))
        return cls(_sid(element), _count(element, "offset"), data)

    def toElement(self) -> domish.Element:
        if len(self.data) > TAIL_CHUNK:
            raise MalformedEnd("tail carries at most %d bytes" % TAIL_CHUNK)
        e = domish.Element((NS_END, "tail"))
        e["sid"] = _checkSid(self.sid, "tail")
        e["offset"] = _checkCount(self.offset, "offset")
        e.addContent(base64.b64encode(self.data).decode("ascii"))
        return e


def parse(element: domish.Element):
    """The EOF, End, Flush or Tail value of an element in our namespace."""
    if element.name == "flush":
        return Flush.fromElement(element)
    if element.name == "tail":
        return Tail.fromElement(element)
    if element.name == "eof":
        return EOF.fromElement(element)
    if element.name == "end":
        return End.fromElement(element)
    raise MalformedEnd("unknown element %s in %s" % (element.name, NS_END))
