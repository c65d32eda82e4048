"""
XEP-0234 (Jingle File Transfer, ``urn:xmpp:jingle:apps:file-transfer:5``)
<-> the framework-neutral :class:`bytestreamd.application.FileApplication`.

This is to Jingle what :mod:`bytestreamd.negotiation.si_profiles` is to
Stream Initiation: the one place where a file offer's value meets its wire
form (:mod:`bytestreamd.wire.jingle_ft`), so that the link layer never sees
a ``<file/>``.  What happens after the data (checksum, ``received``, who
terminates) is :mod:`bytestreamd.negotiation.jingle_file_end`.

Choices made here, and why:

* **Which negotiation** is the link manager's (``[links] negotiation``):
  Jingle when the peer's disco advertises Jingle, one of our transports and
  this application's namespace (``JingleNegotiator.canCarry``), Stream
  Initiation (XEP-0096) otherwise.
* **The offer.**  name, size, date, media-type (guessed from the name),
  desc, ``<hash-used algo='sha-256'/>`` and an empty ``<range/>`` when the
  sender can start at an offset.  ``<desc/>`` is always present (empty when
  the user gave none): Libervia 0.9's receiver fails an offer without one.
  The SHA-256 value itself is *not* put in the offer by default but sent
  after the data in a checksum session-info (XEP-0234 section 7): Libervia
  0.9 reads ``<hash/>`` as base64 of the *hex* digest and fails the whole
  offer on a standard (base64 of the raw digest) value, while it tolerates
  a standard value in the checksum (it then says "hash can't be verified").
  ``hashInOffer=True`` puts the standard values (the MD5 the user gave, the
  SHA-256 when known) in the offer, for peers that want them up front: a
  bytestreamd peer (:mod:`.jingle_file_session` decides by its disco), so
  that ``bytestreamctl receive`` checks the offered MD5 as over SI.
* **Reading an offer.**  A file offer must have a name, a size and a
  ``<hash/>`` or ``<hash-used/>`` (:meth:`File.offerProblems`).  Hash
  values are read in both forms (:func:`bytestreamd.wire.jingle_ft.rawDigest`)
  and kept as hex: ``sha256`` and the MD5 ``hash`` of the neutral value.
  An empty ``<range/>`` (or one with an offset) means the sender supports
  ranged transfers (``range=yes``).
* **Resume.**  The receiver answers a ranged offer with
  ``<range offset length/>`` in its session-accept's description
  (:func:`acceptDescription`); the sender reads it back as a
  :class:`RangeAnswer` (:func:`rangeOfAccept`).  Without a range in the
  answer, the whole file is sent.
* Offers to a bare JID are out of scope: Jingle sessions are between full
  JIDs (XEP-0166 section 7.1), and ``send`` needs one.
"""

from __future__ import annotations

import binascii
import mimetypes
from typing import Optional, Tuple

from bytestreamd.application import FileApplication, RangeAnswer
from bytestreamd.wire.jingle import MalformedJingle
from bytestreamd.wire.jingle_ft import (
    DEFAULT_ALGO, Checksum, File, FileDescription, Hash, HashUsed, Range)

def guessMediaType(name: str) -> Optional[str]:
    """The media type of a file name's extension, if the platform knows one."""
    return mimetypes.guess_type(name, strict=False)[0]


def offerDescription(application: FileApplication,
                     hashInOffer: bool = False) -> FileDescription:
    """The sender's ``<description/>`` for a session-initiate (see the
    module docstring for why the hash is announced, not sent, by default)."""
    hashes: Tuple[Hash, ...] = ()
    used: Tuple[HashUsed, ...] = (HashUsed(DEFAULT_ALGO),)
    if hashInOffer:
        if application.hash:
            hashes += (Hash.fromDigest("md5", bytes.fromhex(application.hash)),)
        if application.sha256:
            hashes += (Hash.fromDigest(DEFAULT_ALGO, bytes.fromhex(application.sha256)),)
            used = ()
    return FileDescription(File(
        name=application.name, size=application.size, date=application.date,
        mediaType=guessMediaType(application.name), desc=application.desc or "",
        hashes=hashes, hashesUsed=used,
        range=Range() if application.range else None))


class FileOfferError(MalformedJingle):
    """An offer we cannot take as a file (the session ends ``failed-application``)."""


def _hex(file: File, algo: str) -> Optional[str]:
    h = file.hash(algo)
    return binascii.hexlify(h.digest()).decode("ascii") if h is not None else None


def applicationOf(description: FileDescription) -> FileApplication:
    """
    The neutral value of a received offer; :class:`FileOfferError` when it
    is not a usable file offer (no name, no size, no hash or hash-used, a
    hash that is neither form of the digest).
    """
    f = description.file
    problem = f.offerProblems()
    if problem is not None:
        raise FileOfferError(problem)
    if not f.name:
        raise FileOfferError("file offer without a <name/>")
    try:
        sha256, md5 = _hex(f, "sha-256"), _hex(f, "md5")
    except MalformedJingle as e:
        raise FileOfferError(str(e))
    assert f.size is not None  # offerProblems
    return FileApplication(name=f.name, size=f.size, hash=md5, date=f.date,
                           desc=f.desc or None, range=f.range is not None, sha256=sha256)


def acceptDescription(offer: FileDescription,
                      answer: Optional[RangeAnswer] = None) -> FileDescription:
    """The receiver's session-accept description: the offered file, with
    the range it asks for (resume) when ``answer`` starts past 0 or is
    shorter than the rest."""
    f = offer.file
    wanted: Optional[Range] = None
    if answer is not None and (answer.offset or answer.length is not None):
        wanted = Range(answer.offset or None, answer.length)
    return FileDescription(File(
        name=f.name, size=f.size, date=f.date, mediaType=f.mediaType, desc=f.desc,
        hashes=f.hashes, hashesUsed=f.hashesUsed, range=wanted, extra=f.extra))


def rangeOfAccept(accepted: Optional[FileDescription], size: int) -> RangeAnswer:
    """
    What the receiver's session-accept asks the sender to send (the whole
    file when it names no range); :class:`FileOfferError` for a range
    outside the file.
    """
    if accepted is None or accepted.file.range is None:
        return RangeAnswer(0, None)
    r = accepted.file.range
    offset = r.effectiveOffset
    if offset > size or (r.length is not None and offset + r.length > size):
        raise FileOfferError("the receiver asked for bytes %d..%s of a %d-byte file"
                             % (offset, "end" if r.length is None else offset + r.length,
                                size))
    return RangeAnswer(offset, r.length)


def checksumInfo(digest: bytes, creator: str, name: str,
                 algo: str = DEFAULT_ALGO,
                 sentRange: Optional[RangeAnswer] = None) -> Checksum:
    """
    The sender's checksum session-info, standard form (base64 of the raw
    digest, XEP-0300 section 3).  For a ranged transfer the hash is that of
    the bytes sent, inside ``<range offset length/>`` (XEP-0234 section 7).
    """
    h = (Hash.fromDigest(algo, digest),)
    if sentRange is not None and (sentRange.offset or sentRange.length is not None):
        return Checksum(File(range=Range(sentRange.offset or None, sentRange.length, h)),
                        creator, name)
    return Checksum(File(hashes=h), creator, name)


def checksumDigests(checksum: Checksum) -> Tuple[Tuple[str, bytes], ...]:
    """``(algo, raw digest)`` of each hash of a checksum, either form."""
    return tuple((h.algo, h.digest()) for h in checksum.hashes() if h.value)


__all__ = [
    "FileOfferError", "acceptDescription", "applicationOf", "checksumDigests",
    "checksumInfo", "guessMediaType", "offerDescription",
    "rangeOfAccept",
]
