"""
What each SI profile means to the link layer.

Two profiles reach a link: bytestreamd's own link profile (one optional
header, ``service``) and XEP-0096 file transfer (``name``, ``size``,
``hash``, ``date``, ``desc`` and ``range``; its answer may ask for a range).
These functions check what a user asked for and describe a link's file; the
wire form lives in :mod:`bytestreamd.wire.si`.  Errors are
``SyntaxErrorInArgument`` because every input here comes from a control line.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from twisted.words.xish import domish

from bytestreamd import ns
from bytestreamd.errors import SyntaxErrorInArgument
from bytestreamd.wire.si import FileProfile, MalformedSI, fileRangeAnswer


def offerHeaders(profile: str, service: Optional[str],
                 headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """The headers to offer for ``profile``, checked."""
    if profile == ns.NS_LINK_PROFILE:
        if headers:
            raise SyntaxErrorInArgument(
                "%s are file-transfer options (profile=file)" % ", ".join(sorted(headers)))
        return {"service": service} if service else {}
    if profile != ns.NS_SI_FILE_TRANSFER:
        raise SyntaxErrorInArgument("unknown profile %s" % (profile,))
    if service:
        raise SyntaxErrorInArgument("service= cannot be used with profile=file")
    try:
        return FileProfile.fromHeaders(dict(headers or {})).headers()
    except MalformedSI as e:
        raise SyntaxErrorInArgument(str(e))


def rangeRequest(linkId: str, profile: str, headers: Mapping[str, str],
                 offset: Optional[int], length: Optional[int]
                 ) -> Tuple[Dict[str, str], domish.Element]:
    """
    ACCEPT ... offset= length=: what we ask the sender for, as the answer
    values the link reports and the SI answer payload.  Only a file offer
    that allowed ranges (``<range/>``) may be asked, and only within its size.
    """
    if profile != ns.NS_SI_FILE_TRANSFER or headers.get("range") != "true":
        raise SyntaxErrorInArgument(
            "offset=/length= need a file offer that allows ranged transfers "
            "(range=yes); offer %s has none" % (linkId,))
    size = int(str(headers.get("size", "0")))
    start = offset or 0
    if start > size or (length is not None and start + length > size):
        raise SyntaxErrorInArgument(
            "range offset=%d%s is beyond the file's size %d"
            % (start, "" if length is None else " length=%d" % length, size))
    answer = {"offset": str(start)}
    if length is not None:
        answer["length"] = str(length)
    return answer, fileRangeAnswer(start, length)


def fileDetails(profile: str, headers: Mapping[str, object],
                answer: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    """``name``, ``size``, ``hash``, ``range`` and the range asked, for LINKS."""
    if profile != ns.NS_SI_FILE_TRANSFER:
        return ()
    pairs = [(key, str(headers[key])) for key in ("name", "size", "hash")
             if headers.get(key) is not None]
    if headers.get("range") == "true":
        pairs.append(("range", "yes"))
    return tuple(pairs) + rangeDetails(answer)


def rangeDetails(answer: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    """``offset``/``length`` of a ranged answer (events and LINKS)."""
    return tuple((key, answer[key]) for key in ("offset", "length") if key in answer)
