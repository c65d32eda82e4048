"""
Stream Initiation profiles <-> the framework-neutral application values.

SI names what a stream is for with a profile namespace and a profile
element: bytestreamd's link profile (``<link service=.../>``) and XEP-0096
file transfer (``<file name size hash date><desc/><range/></file>``).  The
link layer speaks :mod:`bytestreamd.application`; this module is the one
place the two meet, so the link layer never sees an SI namespace or element.
The wire form itself lives in :mod:`bytestreamd.wire.si`.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple, Union

from twisted.words.xish import domish

from bytestreamd import ns
from bytestreamd.application import (Application, E2ERequest, FileApplication,
                                     LinkAnswer, LinkApplication, RangeAnswer)
from bytestreamd.errors import SyntaxErrorInArgument
from bytestreamd.wire.si import LinkProfile, MalformedSI, fileAnswer, fileRangeAnswer


def profileOf(application: Application) -> str:
    """The SI profile namespace that carries ``application``."""
    if isinstance(application, FileApplication):
        return ns.NS_SI_FILE_TRANSFER
    return ns.NS_LINK_PROFILE


def toHeaders(application: Application) -> Tuple[str, Dict[str, str]]:
    """``(profile, headers)`` for :func:`bytestreamd.wire.si.payloadFromHeaders`."""
    if isinstance(application, FileApplication):
        headers = {"name": application.name, "size": str(application.size)}
        for key in ("date", "hash", "desc"):
            value = getattr(application, key)
            if value is not None:
                headers[key] = value
        if application.range:
            headers["range"] = "true"
        if application.e2e is not None:
            headers["e2e"] = application.e2e.mode
            headers["fingerprint"] = application.e2e.fingerprint
        return ns.NS_SI_FILE_TRANSFER, headers
    headers = {"service": application.service} if application.service else {}
    if application.e2e is not None:
        headers["e2e"] = application.e2e.mode
        headers["fingerprint"] = application.e2e.fingerprint
    return ns.NS_LINK_PROFILE, headers


def fromHeaders(profile: str, headers: Mapping[str, str]) -> Application:
    """The application of a decoded offer (headers from ``headersFromPayload``)."""
    if profile == ns.NS_SI_FILE_TRANSFER:
        size = str(headers.get("size", "0"))
        if not size.isascii() or not size.isdigit():
            raise MalformedSI("file size %r is not a non-negative integer" % (size,))
        return FileApplication(
            name=str(headers.get("name", "")), size=int(size), hash=headers.get("hash"),
            date=headers.get("date"), desc=headers.get("desc"),
            range=headers.get("range") == "true", e2e=_e2e(headers))
    if profile == ns.NS_LINK_PROFILE:
        return LinkApplication(headers.get("service") or None, _e2e(headers))
    raise MalformedSI("no application for profile %s" % (profile,))


def _e2e(headers: Mapping[str, str]) -> Optional[E2ERequest]:
    mode, fingerprint = headers.get("e2e"), headers.get("fingerprint")
    if mode is None or fingerprint is None:
        return None
    try:
        return E2ERequest(mode, fingerprint)
    except SyntaxErrorInArgument as e:
        raise MalformedSI(str(e))


def answerPayload(answer: Union[RangeAnswer, LinkAnswer, None],
                  profile: Optional[str] = None) -> Optional[domish.Element]:
    """
    The profile element of an accepting answer (``profile``: the offer's;
    a link's by default): a file range, the e2e stream the acceptor agrees
    to (its fingerprint, ``setup='passive'``, in ``<link/>`` or ``<file/>``),
    both, or nothing.
    """
    if answer is None:
        return None
    e2e = answer.e2e
    if isinstance(answer, LinkAnswer):
        if e2e is None:
            return None
        if profile == ns.NS_SI_FILE_TRANSFER:
            return fileAnswer(e2e.mode, e2e.fingerprint)
        return LinkProfile(e2e=e2e.mode, fingerprint=e2e.fingerprint,
                           setup="passive").toElement()
    if e2e is not None:
        return fileAnswer(e2e.mode, e2e.fingerprint, True, answer.offset, answer.length)
    return fileRangeAnswer(answer.offset, answer.length)


def answerFromHeaders(asked: Mapping[str, str]) -> Union[RangeAnswer, LinkAnswer, None]:
    """
    What an accepting answer said (``answerHeaders``): a file range asked
    of us, or the e2e stream a link's acceptor agreed to.
    """
    if "offset" in asked:
        found = rangeFromAnswer(asked)
        return RangeAnswer(found.offset, found.length, _e2e(asked)) if found else None
    if "e2e" in asked:
        return LinkAnswer(_e2e(asked))
    return rangeFromAnswer(asked)


def rangeFromAnswer(asked: Mapping[str, str]) -> Optional[RangeAnswer]:
    """What an answer's ``answerHeaders`` asked of us, as a RangeAnswer."""
    if not asked:
        return None
    length = asked.get("length")
    return RangeAnswer(int(asked.get("offset", "0")),
                       None if length is None else int(length))
