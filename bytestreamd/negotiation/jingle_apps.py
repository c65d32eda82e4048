"""
Jingle descriptions <-> the framework-neutral application values
(:mod:`bytestreamd.application`), the Jingle twin of
:mod:`bytestreamd.negotiation.si_profiles`.

Each Jingle application is one :class:`Translator` in :data:`TRANSLATORS`:
its description namespace (advertised in disco), how an application value
becomes a ``<description/>`` and back.  Today: bytestreamd's own link
(:mod:`bytestreamd.wire.jingle_link`).  XEP-0234 file transfer plugs in the
same way (a translator for :class:`~bytestreamd.application.FileApplication`
and :class:`~bytestreamd.wire.jingle_ft.FileDescription`) with
:func:`register`; nothing else in the negotiator knows which applications
exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from bytestreamd import ns
from bytestreamd.application import Application, LinkApplication, RangeAnswer
from bytestreamd.wire.jingle_link import LinkDescription


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


def _linkTo(application: Application) -> Optional[LinkDescription]:
    # An end-to-end secured link (e2e=) is SI's only, for now: the Jingle
    # link description has no e2e field.
    if isinstance(application, LinkApplication) and getattr(application, "e2e", None) is None:
        return LinkDescription(application.service, application.many)
    return None


def _linkFrom(payload: Any) -> Optional[Application]:
    if isinstance(payload, LinkDescription):
        return LinkApplication(payload.service, many=payload.many)
    return None


TRANSLATORS: List[Translator] = [
    Translator(ns.NS_JINGLE_LINK, "link", _linkTo, _linkFrom),
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
    if getattr(application, "e2e", None) is not None:
        # An end-to-end secured link or file (e2e=) is SI's only, for now:
        # no Jingle description here carries the e2e request.
        return None, ""
    for t in TRANSLATORS:
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
