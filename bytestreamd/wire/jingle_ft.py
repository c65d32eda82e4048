"""
XEP-0234 (Jingle File Transfer, namespace version 5) wire codecs.

* :class:`FileDescription` -- ``<description><file/></description>``;
* :class:`File` -- name, size, date, media-type, desc, XEP-0300 hashes
  (``<hash/>`` and ``<hash-used/>``), ``<range offset length/>``;
* :class:`Checksum` and :class:`Received` -- the two session-info payloads;
* :func:`fileError` -- the ``<file-not-available/>``/``<file-too-large/>``
  reasons of ``urn:xmpp:jingle:apps:file-transfer:errors:0``.

Hash values.  XEP-0300 section 3 says the character data is the base64 of
the *raw digest*; that is what :meth:`Hash.fromDigest` sends.  Libervia 0.9
sends the base64 of the *hex* digest instead (the 64 hex characters of a
sha-256, base64-encoded into 88 characters).  :func:`rawDigest` returns the
raw digest for either form: for an algorithm whose digest size it knows, a
decoded value of exactly that size is raw, and one of twice that size made
of hex digits is Libervia's form; anything else is malformed.  The two
cannot be confused, since the sizes differ.

``size`` accepts 0 although the schema says positiveInteger: an empty file
is a file.  ``date`` is checked against the XEP-0082 DateTime (or Date)
profile.  Children of ``<file/>`` that are not ours (thumbnails, XEP-0264)
are kept opaque, so they round-trip.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from twisted.words.xish import domish

from bytestreamd.ns import NS_HASHES, NS_JINGLE_FT, NS_JINGLE_FT_ERRORS
from bytestreamd.wire.jingle import (
    CREATORS, MalformedJingle, Opaque, elementText, parseNonNegative)

#: Digest sizes in bytes of the XEP-0300 (IANA) algorithms we can check.
DIGEST_SIZES = {
    "md5": 16, "sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48,
    "sha-512": 64, "sha3-256": 32, "sha3-512": 64, "blake2b-256": 32,
    "blake2b-512": 64,
}
#: The algorithm we send (XEP-0300 section 5: MUST support sha-256).
DEFAULT_ALGO = "sha-256"

FILE_NOT_AVAILABLE = "file-not-available"
FILE_TOO_LARGE = "file-too-large"

_DATE = re.compile(r"\A\d{4}-\d{2}-\d{2}"
                   r"(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?\Z")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE = b" \t\r\n"
MAX_TEXT = 4096


def _b64decode(text: str) -> bytes:
    try:
        raw = text.encode("ascii").translate(None, _WHITESPACE)
        return binascii.a2b_base64(raw, strict_mode=True)
    except (UnicodeEncodeError, binascii.Error) as e:
        raise MalformedJingle("hash value is not base64: %s" % (e,))


def rawDigest(algo: str, text: str) -> bytes:
    """
    The raw digest in a ``<hash/>``'s text, whether it is the base64 of
    the raw digest (XEP-0300) or the base64 of the hex digest (Libervia
    0.9); see the module docstring.  For an algorithm whose size we do not
    know, the decoded bytes are returned as they are.
    """
    if not text.strip():
        raise MalformedJingle("%s hash has no value" % algo)
    data = _b64decode(text)
    size = DIGEST_SIZES.get(algo)
    if size is None or len(data) == size:
        return data
    if len(data) == 2 * size and all(b in _HEX for b in data):
        return bytes.fromhex(data.decode("ascii"))
    raise MalformedJingle("%s hash decodes to %d bytes, expected %d (raw) or %d (hex)"
                          % (algo, len(data), size, 2 * size))


@dataclass(frozen=True)
class Hash:
    """``<hash xmlns='urn:xmpp:hashes:2' algo>base64</hash>``; ``value`` is
    the text as sent (empty when the offer has not computed it yet)."""

    algo: str
    value: str = ""

    @classmethod
    def fromDigest(cls, algo: str, digest: bytes) -> "Hash":
        return cls(algo, binascii.b2a_base64(digest, newline=False).decode("ascii"))

    def digest(self) -> bytes:
        return rawDigest(self.algo, self.value)

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_HASHES, "hash"))
        element["algo"] = self.algo
        if self.value:
            element.addContent(self.value)
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Hash":
        algo = element.getAttribute("algo")
        if not algo:
            raise MalformedJingle("<hash/> without an 'algo'")
        value = elementText(element, "hash").strip()
        if value:
            _b64decode(value)
        return cls(algo, value)


@dataclass(frozen=True)
class HashUsed:
    """``<hash-used algo/>``: the algorithm, the value to come in a checksum."""

    algo: str

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_HASHES, "hash-used"))
        element["algo"] = self.algo
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "HashUsed":
        algo = element.getAttribute("algo")
        if not algo:
            raise MalformedJingle("<hash-used/> without an 'algo'")
        return cls(algo)


def _hashes(element: domish.Element) -> Tuple[Tuple[Hash, ...], Tuple[HashUsed, ...]]:
    hashes = tuple(Hash.fromElement(e) for e in element.elements(NS_HASHES, "hash"))
    used = tuple(HashUsed.fromElement(e) for e in element.elements(NS_HASHES, "hash-used"))
    return hashes, used


@dataclass(frozen=True)
class Range:
    """``<range offset length/>``, possibly with hashes of that range."""

    offset: Optional[int] = None
    length: Optional[int] = None
    hashes: Tuple[Hash, ...] = ()

    @property
    def effectiveOffset(self) -> int:
        return self.offset or 0

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_JINGLE_FT, "range"))
        if self.offset is not None:
            element["offset"] = str(self.offset)
        if self.length is not None:
            element["length"] = str(self.length)
        for h in self.hashes:
            element.addChild(h.toElement())
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Range":
        offset = element.getAttribute("offset")
        length = element.getAttribute("length")
        return cls(None if offset is None else parseNonNegative(offset, "range offset"),
                   None if length is None else parseNonNegative(length, "range length"),
                   _hashes(element)[0])


_TEXT_FIELDS = (("name", "name"), ("date", "date"), ("mediaType", "media-type"),
                ("desc", "desc"))


@dataclass(frozen=True)
class File:
    """
    ``<file/>``.  Every field is optional on the wire (a request names a
    file by its hash only); what a *file offer* must carry is for the
    application to check (:meth:`offerProblems`).  Of several ``<desc/>``
    (one per xml:lang), the first is kept.
    """

    name: Optional[str] = None
    size: Optional[int] = None
    date: Optional[str] = None
    mediaType: Optional[str] = None
    desc: Optional[str] = None
    hashes: Tuple[Hash, ...] = ()
    hashesUsed: Tuple[HashUsed, ...] = ()
    range: Optional[Range] = None
    extra: Tuple[Opaque, ...] = ()

    def hash(self, algo: str = DEFAULT_ALGO) -> Optional[Hash]:
        """The first hash with ``algo`` and a value, if any."""
        for h in self.hashes:
            if h.algo == algo and h.value:
                return h
        return None

    def offerProblems(self) -> Optional[str]:
        """
        Why this cannot be a file offer, or ``None``: XEP-0234 requires a
        ``<hash/>`` or ``<hash-used/>``; we also need a size to know when
        the data is complete (and Libervia 0.9 refuses offers without one).
        """
        if not self.hashes and not self.hashesUsed:
            return "file offer without a <hash/> or <hash-used/>"
        if self.size is None:
            return "file offer without a <size/>"
        return None

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_JINGLE_FT, "file"))
        for attribute, name in _TEXT_FIELDS:
            value = getattr(self, attribute)
            if value is not None:
                element.addElement(name, content=value)
        if self.size is not None:
            element.addElement("size", content=str(self.size))
        if self.range is not None:
            element.addChild(self.range.toElement())
        for h in self.hashes:
            element.addChild(h.toElement())
        for u in self.hashesUsed:
            element.addChild(u.toElement())
        for e in self.extra:
            element.addChild(e.element)
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "File":
        if (element.uri, element.name) != (NS_JINGLE_FT, "file"):
            raise MalformedJingle("not a file-transfer <file/>")
        values: Dict[str, str] = {}
        size: Optional[int] = None
        range_: Optional[Range] = None
        extra: List[Opaque] = []
        for child in element.elements():
            if child.uri == NS_HASHES:
                continue
            if child.uri != NS_JINGLE_FT:
                extra.append(Opaque(child))
                continue
            if child.name == "size":
                if size is not None:
                    raise MalformedJingle("<file/> has more than one <size/>")
                size = parseNonNegative(elementText(child, "size").strip(), "file size")
            elif child.name == "range":
                if range_ is not None:
                    raise MalformedJingle("<file/> has more than one <range/>")
                range_ = Range.fromElement(child)
            else:
                for attribute, name in _TEXT_FIELDS:
                    if child.name == name:
                        if attribute in values and name != "desc":
                            raise MalformedJingle("<file/> has more than one <%s/>"
                                                  % name)
                        values.setdefault(attribute, elementText(child, name)[:MAX_TEXT])
                        break
                else:
                    extra.append(Opaque(child))
        date = values.get("date")
        if date is not None:
            date = date.strip()
            if not _DATE.match(date):
                raise MalformedJingle("file date %r is not an XEP-0082 date" % (date,))
            values["date"] = date
        hashes, used = _hashes(element)
        return cls(size=size, hashes=hashes, hashesUsed=used, range=range_,
                   extra=tuple(extra), **values)


@dataclass(frozen=True)
class FileDescription:
    """``<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file/>``."""

    namespace = NS_JINGLE_FT
    elementName = "description"

    file: File

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_JINGLE_FT, "description"))
        element.addChild(self.file.toElement())
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "FileDescription":
        if (element.uri, element.name) != (NS_JINGLE_FT, "description"):
            raise MalformedJingle("not a file-transfer <description/>")
        return cls(_oneFile(element))


def _oneFile(element: domish.Element) -> File:
    files = [c for c in element.elements(NS_JINGLE_FT, "file")]
    if len(files) != 1:
        raise MalformedJingle("<%s/> must contain one <file/>, not %d"
                              % (element.name, len(files)))
    return File.fromElement(files[0])


def _creatorName(element: domish.Element) -> Tuple[Optional[str], Optional[str]]:
    creator = element.getAttribute("creator")
    if creator is not None and creator not in CREATORS:
        raise MalformedJingle("<%s/> 'creator' must be initiator or responder"
                              % element.name)
    return creator, element.getAttribute("name")


def _withCreatorName(element: domish.Element, creator: Optional[str],
                     name: Optional[str]) -> domish.Element:
    if creator is not None:
        element["creator"] = creator
    if name is not None:
        element["name"] = name
    return element


@dataclass(frozen=True)
class Checksum:
    """
    The session-info ``<checksum creator name><file><hash/></file>`` the
    File Sender sends after the data (or with a ``<range/>`` holding the
    hash of that range).  ``creator``/``name`` name the content (SHOULD).
    """

    namespace = NS_JINGLE_FT
    elementName = "checksum"

    file: File
    creator: Optional[str] = None
    name: Optional[str] = None

    def hashes(self) -> Tuple[Hash, ...]:
        """The file's hashes, or those of its range."""
        if self.file.hashes:
            return self.file.hashes
        return self.file.range.hashes if self.file.range is not None else ()

    def toElement(self) -> domish.Element:
        element = _withCreatorName(domish.Element((NS_JINGLE_FT, "checksum")),
                                   self.creator, self.name)
        element.addChild(self.file.toElement())
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Checksum":
        if (element.uri, element.name) != (NS_JINGLE_FT, "checksum"):
            raise MalformedJingle("not a file-transfer <checksum/>")
        creator, name = _creatorName(element)
        checksum = cls(_oneFile(element), creator, name)
        if not checksum.hashes() and not checksum.file.hashesUsed:
            raise MalformedJingle("<checksum/> without a <hash/> or <hash-used/>")
        return checksum


@dataclass(frozen=True)
class Received:
    """The session-info ``<received creator name/>``: the file arrived whole."""

    namespace = NS_JINGLE_FT
    elementName = "received"

    creator: Optional[str] = None
    name: Optional[str] = None

    def toElement(self) -> domish.Element:
        return _withCreatorName(domish.Element((NS_JINGLE_FT, "received")),
                                self.creator, self.name)

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Received":
        if (element.uri, element.name) != (NS_JINGLE_FT, "received"):
            raise MalformedJingle("not a file-transfer <received/>")
        creator, name = _creatorName(element)
        return cls(creator, name)


def fileError(condition: str) -> Opaque:
    """``<file-not-available/>`` or ``<file-too-large/>``, for a Reason's extra."""
    if condition not in (FILE_NOT_AVAILABLE, FILE_TOO_LARGE):
        raise ValueError("unknown file-transfer error %r" % (condition,))
    return Opaque(domish.Element((NS_JINGLE_FT_ERRORS, condition)))


#: The codecs :func:`bytestreamd.wire.jingle.defaultRegistry` registers.
CODECS = (FileDescription, Checksum, Received)
