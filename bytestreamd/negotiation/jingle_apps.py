"""
Jingle descriptions <-> the framework-neutral application values
(:mod:`bytestreamd.application`), the Jingle twin of
:mod:`bytestreamd.negotiation.si_profiles`.

Each Jingle application is one :class:`Translator` in :data:`TRANSLATORS`:
its description namespace (advertised in disco), how an application value
becomes a ``<description/>`` and back.  Today: bytestreamd's own link
(:mod:`bytestreamd.wire.jingle_link`) for a plain link, XEP-0247's XML
stream (:mod:`bytestreamd.wire.jingle_xmlstream`) for an end-to-end one
(``e2e=bytes|xmpp``, docs/e2e.rst).  XEP-0234 file transfer plugs in the
same way (a translator for :class:`~bytestreamd.application.FileApplication`
and :class:`~bytestreamd.wire.jingle_ft.FileDescription`) with
:func:`register`; nothing else in the negotiator knows which applications
exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from bytestreamd import ns
from bytestreamd.application import (Application, E2ERequest, LinkAnswer,
                                     LinkApplication, RangeAnswer)
from bytestreamd.e2e import wire as e2ewire
from bytestreamd.wire.jingle_link import LinkDescription
from bytestreamd.wire.jingle_xmlstream import XmlStreamDescription


@dataclass(frozen=True)
class Translator:
    """
    One application.  ``toDescription(app)`` returns the description for an
    application value it handles, else ``None``; ``fromDescription(payload)``
    the application value of a decoded description it handles, else
    ``None`` (raise ``ValueError`` with words for one it cannot accept).
    ``contentName`` names the content in the session.
    """

    namespace: str
    contentName: str
    toDescription: Callable[[Application], Optional[Any]]
    fromDescription: Callable[[Any], Optional[Application]]
    #: The responder's description in session-accept, given the offered one
    #: and what ACCEPT asked for (a file's range); default: the offered one.
    answerDescription: Optional[Callable[[Any, Optional[RangeAnswer]], Any]] = None
    #: What the responder's session-accept description asks of the
    #: initiator (a file's range), for ``INegotiator.offer``'s ``answered``.
    rangeFromAnswer: Optional[Callable[[Any], Optional[RangeAnswer]]] = None
    #: The offer's description once the peer's disco features are known
    #: (``forPeer(description, application, features)``); default: as is.
    forPeer: Optional[Callable[[Any, Application, Any], Any]] = None
    #: Whether the description carries an application's ``e2e`` request.
    #: An application with ``e2e`` set is described only by a translator
    #: that does (XEP-0247's for links); no other may drop it silently --
    #: such an application (a file with e2e=) goes by SI instead.
    carriesE2E: bool = False


def _linkTo(application: Application) -> Optional[LinkDescription]:
    # An end-to-end link (e2e=) is XEP-0247's (below).
    if isinstance(application, LinkApplication) and getattr(application, "e2e", None) is None:
        return LinkDescription(application.service, application.many)
    return None


def _linkFrom(payload: Any) -> Optional[Application]:
    if isinstance(payload, LinkDescription):
        return LinkApplication(payload.service, many=payload.many)
    return None


# --- XEP-0247: an end-to-end link ----------------------------------------------
#
# The offer carries the initiator's fingerprint (setup='active'), the mode
# and the service; session-accept the responder's fingerprint
# (setup='passive') and the mode it accepted, which the initiator hands to
# the link layer as LinkAnswer(e2e) -- as SI's result does -- so that
# links.e2e._secureIfAsked binds the TLS handshake to both.  Files (XEP-0234)
# asked with e2e= are not described here: they go by SI (docs/e2e.rst).


def _xmlstreamTo(application: Application) -> Optional[XmlStreamDescription]:
    e2e = getattr(application, "e2e", None)
    if not isinstance(application, LinkApplication) or e2e is None or application.many:
        return None
    return XmlStreamDescription(
        e2ewire.E2EParams(e2ewire.Fingerprint(e2e.fingerprint, e2ewire.SETUP_ACTIVE),
                          e2e.mode), application.service)


def _xmlstreamFrom(payload: Any) -> Optional[Application]:
    if not isinstance(payload, XmlStreamDescription):
        return None
    if payload.e2e is None:
        raise ValueError("an XML stream without a <fingerprint/> (XEP-0320) to bind "
                         "its TLS to: this daemon makes no end-to-end stream in clear")
    try:
        e2ewire.answerSetup(payload.e2e.fingerprint.setup)
    except e2ewire.Malformed as e:
        raise ValueError(str(e))
    return LinkApplication(payload.service, e2e=E2ERequest(
        payload.e2e.mode, payload.e2e.fingerprint.value))


def _xmlstreamAnswer(offered: Any, answer: Optional[RangeAnswer]) -> Any:
    e2e = getattr(answer, "e2e", None)
    if e2e is None:
        # Accepted without e2e: an empty description, which the initiator
        # reads as "no end-to-end stream" (and fails a required link).
        return XmlStreamDescription()
    return XmlStreamDescription(e2ewire.E2EParams(
        e2ewire.Fingerprint(e2e.fingerprint, e2ewire.SETUP_PASSIVE), e2e.mode))


def _xmlstreamAnswered(description: Any) -> Optional[LinkAnswer]:
    params = getattr(description, "e2e", None)
    if params is None:
        return LinkAnswer(None)
    try:
        e2ewire.checkSetup(e2ewire.SETUP_ACTIVE, params.fingerprint.setup)
    except e2ewire.Malformed as e:
        raise ValueError(str(e))
    return LinkAnswer(E2ERequest(params.mode, params.fingerprint.value))


TRANSLATORS: List[Translator] = [
    Translator(ns.NS_JINGLE_LINK, "link", _linkTo, _linkFrom),
    Translator(ns.NS_JINGLE_XMLSTREAM, "xmlstream", _xmlstreamTo, _xmlstreamFrom,
               answerDescription=_xmlstreamAnswer, rangeFromAnswer=_xmlstreamAnswered,
               carriesE2E=True),
]

#: The description namespaces we advertise (a view kept in step by register).
NAMESPACES: List[str] = [t.namespace for t in TRANSLATORS]


def register(translator: Translator) -> None:
    """Add an application (e.g. XEP-0234 file transfer)."""
    TRANSLATORS.append(translator)
    NAMESPACES.append(translator.namespace)


def toDescription(application: Application) -> Optional[Any]:
    return describe(application)[0]


def describe(application: Application) -> Tuple[Optional[Any], str]:
    """(description, content name) for ``application``; (None, '') if none."""
    e2e = getattr(application, "e2e", None) is not None
    for t in TRANSLATORS:
        if e2e and not t.carriesE2E:
            continue
        description = t.toDescription(application)
        if description is not None:
            return description, t.contentName
    return None, ""


def fromDescription(payload: Any) -> Optional[Application]:
    """The application of a received description; None if no translator
    knows it; ValueError if one knows it and refuses it."""
    for t in TRANSLATORS:
        application = t.fromDescription(payload)
        if application is not None:
            return application
    return None


def translatorFor(payload: Any) -> Optional[Translator]:
    """The translator of a description (by its namespace)."""
    key = getattr(payload, "namespace", None)
    if key is None and hasattr(payload, "element"):
        key = payload.element.uri
    for t in TRANSLATORS:
        if t.namespace == key:
            return t
    return None


def answerDescription(offered: Any, rangeAnswer: Optional[RangeAnswer]) -> Any:
    t = translatorFor(offered)
    if t is None or t.answerDescription is None:
        return offered
    return t.answerDescription(offered, rangeAnswer)


def descriptionForPeer(description: Any, application: Application, features: Any) -> Any:
    """The offered description, refined for a peer with ``features``."""
    t = translatorFor(description)
    if t is None or t.forPeer is None:
        return description
    return t.forPeer(description, application, features)


def rangeFromAnswer(description: Any) -> Optional[RangeAnswer]:
    t = translatorFor(description)
    if t is None or t.rangeFromAnswer is None:
        return None
    return t.rangeFromAnswer(description)
