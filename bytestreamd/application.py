"""
What a link carries, said without any negotiation framework's words.

A link is opened *for* something: bytestreamd's own link to a named service,
or a file (XEP-0096 over Stream Initiation today, XEP-0234 over Jingle
next).  The link layer, the control channel and the events speak these
small frozen values; each negotiator (:class:`bytestreamd.interfaces.INegotiator`)
translates them to and from its own wire (``bytestreamd.negotiation.si_profiles``
for SI).  A third application is one new value here and one translation per
negotiator.

``profile`` is the value the contract shows as ``profile=`` in ``LINKS``
and in ``650 OFFER``/``LINK`` events.  Those strings were SI profile
namespaces when the daemon spoke only SI; they stay byte-identical (scripts
match on them) and are, from here on, just the names of the two
applications.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Optional, Tuple, Union

from bytestreamd.errors import SyntaxErrorInArgument

#: ``profile=`` of a link to a service (was the SI link profile namespace).
LINK_PROFILE = "urn:x-bytestreamd:si:link:0"
#: ``profile=`` of a file (was XEP-0096's SI profile namespace).
FILE_PROFILE = "http://jabber.org/protocol/si/profile/file-transfer"

#: ``OPEN ... profile=`` names (and the full strings) -> application names.
PROFILE_NAMES = {
    "link": LINK_PROFILE, LINK_PROFILE: LINK_PROFILE,
    "file": FILE_PROFILE, "file-transfer": FILE_PROFILE, FILE_PROFILE: FILE_PROFILE,
}

Pairs = Tuple[Tuple[str, str], ...]


#: The two kinds of end-to-end link (docs/e2e.rst): the link's bytes inside
#: TLS, or an XEP-0246 stream of stanzas.
E2E_MODES = ("bytes", "xmpp")


@dataclass(frozen=True)
class E2ERequest:
    """
    What one side of a link negotiation says about an end-to-end stream:
    the ``mode`` (``bytes`` or ``xmpp``) and the SHA-256 ``fingerprint`` of
    its own certificate (canonical colon-separated upper-case hex), sent
    over its authenticated XMPP session so that the TLS handshake can be
    bound to it.  In an offer it asks for the stream; in an answer it
    accepts it.
    """

    mode: str
    fingerprint: str

    def __post_init__(self) -> None:
        if self.mode not in E2E_MODES:
            raise SyntaxErrorInArgument("e2e=%s is not one of %s"
                                        % (self.mode, "|".join(E2E_MODES)))


@dataclass(frozen=True)
class LinkApplication:
    """
    A bytestream to the peer's ``[services]`` entry ``service`` (or none);
    ``e2e``: the link is (asked to be) end-to-end secured; ``many``: a
    ``connections=many`` link, whose socket takes any number of local
    connections, each one more stream in the same session (Jingle only; see
    docs/jingle.rst).
    """

    service: Optional[str] = None
    e2e: Optional[E2ERequest] = None
    many: bool = False
    profile: ClassVar[str] = LINK_PROFILE

    def details(self) -> Pairs:
        pairs = (("e2e", self.e2e.mode),) if self.e2e is not None else ()
        return pairs + ((("connections", "many"),) if self.many else ())

    def offerDetails(self) -> Pairs:
        # the service is a field of its own in OFFER
        pairs: Pairs = ()
        if self.e2e is not None:
            pairs = (("e2e", self.e2e.mode), ("fingerprint", self.e2e.fingerprint))
        return pairs + ((("connections", "many"),) if self.many else ())


@dataclass(frozen=True)
class LinkAnswer:
    """What a link's acceptor answered: the e2e stream it accepted, if any."""

    e2e: Optional[E2ERequest] = None

    def details(self) -> Pairs:
        return ()


@dataclass(frozen=True)
class FileApplication:
    """
    One file offered by its sender: ``name``, ``size`` in bytes, optional
    MD5 ``hash`` (hex), XEP-0082 ``date`` and ``desc``; ``range`` says the
    sender can start at an offset (resume, XEP-0096 ``<range/>``).
    ``sha256`` (hex) is the SHA-256 a Jingle (XEP-0234) offer carried in
    advance, when it did (XEP-0300; see ``negotiation/jingle_file.py``).
    """

    name: str
    size: int
    hash: Optional[str] = None
    date: Optional[str] = None
    desc: Optional[str] = None
    range: bool = False
    #: The file is (asked to be) sent end-to-end, as a link's bytes are.
    e2e: Optional[E2ERequest] = None
    sha256: Optional[str] = None
    profile: ClassVar[str] = FILE_PROFILE

    def details(self) -> Pairs:
        """``LINKS`` and events: name, size, hash, and range=yes."""
        pairs = [("name", self.name), ("size", str(self.size))]
        if self.hash is not None:
            pairs.append(("hash", self.hash))
        if self.range:
            pairs.append(("range", "yes"))
        if self.e2e is not None:
            pairs.append(("e2e", self.e2e.mode))
        return tuple(pairs)

    def offerDetails(self) -> Pairs:
        """``650 OFFER``: everything the sender said about the file."""
        pairs = [("name", self.name), ("size", str(self.size))]
        for key in ("date", "hash", "desc", "sha256"):
            value = getattr(self, key)
            if value not in (None, ""):
                pairs.append((key, value))
        if self.range:
            pairs.append(("range", "yes"))
        if self.e2e is not None:
            pairs.extend((("e2e", self.e2e.mode), ("fingerprint", self.e2e.fingerprint)))
        return tuple(pairs)


Application = Union[LinkApplication, FileApplication]


@dataclass(frozen=True)
class RangeAnswer:
    """What a file's receiver asks of the sender: start at ``offset``, and
    at most ``length`` bytes (``None``: to the end)."""

    offset: int = 0
    length: Optional[int] = None
    #: The e2e stream the receiver accepts along with the range, if any.
    e2e: Optional[E2ERequest] = None

    def details(self) -> Pairs:
        """``offset``/``length`` on GOOD and in LINKS."""
        pairs = [("offset", str(self.offset))]
        if self.length is not None:
            pairs.append(("length", str(self.length)))
        return tuple(pairs)


def details(application: Application, answer: Optional[RangeAnswer]) -> Pairs:
    """LINKS ``extra`` of a link for ``application`` (and its answer)."""
    return application.details() + (answer.details() if answer is not None else ())


def fromControl(profile: Optional[str], service: Optional[str],
                headers: Optional[Mapping[str, str]]) -> Application:
    """
    The application an ``OPEN`` asks for, checked (512 on a bad value):
    ``profile`` is a ``profile=`` name or string (default: a link),
    ``headers`` a file's ``name``, ``size``, ``hash``, ``date``, ``desc``
    and ``range`` (``"true"``).
    """
    kind = PROFILE_NAMES.get(profile or LINK_PROFILE)
    if kind is None:
        raise SyntaxErrorInArgument("unknown profile %s" % (profile,))
    if kind == LINK_PROFILE:
        if headers:
            raise SyntaxErrorInArgument(
                "%s are file-transfer options (profile=file)" % ", ".join(sorted(headers)))
        return LinkApplication(service or None)
    if service:
        raise SyntaxErrorInArgument("service= cannot be used with profile=file")
    h = {k: v for k, v in (headers or {}).items() if v is not None}
    unknown = sorted(set(h) - {"name", "size", "hash", "date", "desc", "range", "sha256"})
    if unknown:
        raise SyntaxErrorInArgument("unknown file option %s" % ", ".join(unknown))
    if not h.get("name"):
        raise SyntaxErrorInArgument("file-transfer offer has no file name")
    size = str(h.get("size", ""))
    if not size.isascii() or not size.isdigit():
        raise SyntaxErrorInArgument("file-transfer offer has no valid file size")
    rangeFlag = str(h.get("range", "false")).lower()
    if rangeFlag not in ("true", "false", "1", "0", "yes", "no"):
        raise SyntaxErrorInArgument("file range %r is not a boolean" % (h["range"],))
    sha256 = h.get("sha256")
    if sha256 is not None and not _isHex(sha256, 64):
        raise SyntaxErrorInArgument("sha256 must be 64 hex digits")
    return FileApplication(name=h["name"], size=int(size), hash=h.get("hash"),
                           date=h.get("date"), desc=h.get("desc"),
                           range=rangeFlag in ("true", "1", "yes"),
                           sha256=sha256.lower() if sha256 is not None else None)


def _isHex(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdefABCDEF" for c in value)


def requestRange(linkId: str, application: Application, offset: Optional[int],
                 length: Optional[int]) -> RangeAnswer:
    """
    ``ACCEPT ... offset= length=``: only a file offer that allowed ranges
    may be asked, and only within its size (512 otherwise).
    """
    if not isinstance(application, FileApplication) or not application.range:
        raise SyntaxErrorInArgument(
            "offset=/length= need a file offer that allows ranged transfers "
            "(range=yes); offer %s has none" % (linkId,))
    start = offset or 0
    if start > application.size or (length is not None
                                    and start + length > application.size):
        raise SyntaxErrorInArgument(
            "range offset=%d%s is beyond the file's size %d"
            % (start, "" if length is None else " length=%d" % length, application.size))
    return RangeAnswer(start, length)
