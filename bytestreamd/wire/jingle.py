"""
XEP-0166 (Jingle) wire codecs.

Value classes for the ``<jingle/>`` element (:class:`Jingle`), its
``<content/>`` children (:class:`Content`) and ``<reason/>``
(:class:`Reason`), plus the Jingle error conditions of
``urn:xmpp:jingle:errors:1`` and the stanza error each one pairs with
(:data:`ERRORS`, :func:`jingleError`, :func:`jingleErrorCondition`).

The description, transport and informational payloads belong to other
XEPs.  They are decoded by a small :class:`Registry` keyed by the payload's
(namespace, element name); a payload nobody registered stays an
:class:`Opaque` element, so that a session can still answer
``unsupported-info`` or ``unsupported-applications`` about it instead of
failing to parse the whole request.  :func:`defaultRegistry` knows the
codecs of this package (XEP-0261, XEP-0260, XEP-0234).

Parsing raises :class:`MalformedJingle` (a ``ValueError`` with a
``bad-request`` condition), whose words go into the error text.  Nothing
here knows about session state: whether an action is *allowed now* is the
session machine's business (``bytestreamd.negotiation.jingle_session``).

Why one long module: it is the one <jingle/> element (actions, contents, reasons, errors, the payload registry), mostly docstrings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.errors import stanzaError
from bytestreamd.ns import NS_JINGLE, NS_JINGLE_ERRORS
from bytestreamd.xmpp.stanzas import parseJID

# --- actions ----------------------------------------------------------------

CONTENT_ACCEPT = "content-accept"
CONTENT_ADD = "content-add"
CONTENT_MODIFY = "content-modify"
CONTENT_REJECT = "content-reject"
CONTENT_REMOVE = "content-remove"
DESCRIPTION_INFO = "description-info"
SECURITY_INFO = "security-info"
SESSION_ACCEPT = "session-accept"
SESSION_INFO = "session-info"
SESSION_INITIATE = "session-initiate"
SESSION_TERMINATE = "session-terminate"
TRANSPORT_ACCEPT = "transport-accept"
TRANSPORT_INFO = "transport-info"
TRANSPORT_REJECT = "transport-reject"
TRANSPORT_REPLACE = "transport-replace"

#: Every action of the XEP-0166 schema; anything else is ``bad-request``.
ACTIONS = frozenset([
    CONTENT_ACCEPT, CONTENT_ADD, CONTENT_MODIFY, CONTENT_REJECT, CONTENT_REMOVE,
    DESCRIPTION_INFO, SECURITY_INFO, SESSION_ACCEPT, SESSION_INFO,
    SESSION_INITIATE, SESSION_TERMINATE, TRANSPORT_ACCEPT, TRANSPORT_INFO,
    TRANSPORT_REJECT, TRANSPORT_REPLACE])

#: Actions whose contents each define a whole content type (description and
#: transport), XEP-0166 section 7.2.10 and the content-add text.  Section
#: 7.2.8 asks the same of session-accept, but only its transport is
#: required here: a peer that omits the description accepts ours, and a
#: session-accept that answers a transport-replace (Gajim) is about the
#: transport only.  The session machine keeps our description then.
_FULL_CONTENTS = frozenset([SESSION_INITIATE, CONTENT_ADD])
#: Actions that are about one or more contents, so need at least one.
_NEEDS_CONTENT = frozenset([
    CONTENT_ACCEPT, CONTENT_ADD, CONTENT_MODIFY, CONTENT_REJECT, CONTENT_REMOVE,
    TRANSPORT_ACCEPT, TRANSPORT_INFO, TRANSPORT_REJECT, TRANSPORT_REPLACE,
    SESSION_INITIATE, SESSION_ACCEPT])
#: Actions whose every content carries a transport.
_NEEDS_TRANSPORT = frozenset([SESSION_ACCEPT, TRANSPORT_ACCEPT, TRANSPORT_INFO,
                              TRANSPORT_REPLACE])

INITIATOR = "initiator"
RESPONDER = "responder"
CREATORS = (INITIATOR, RESPONDER)
SENDERS = ("both", INITIATOR, "none", RESPONDER)
DISPOSITION_SESSION = "session"

# --- reasons -----------------------------------------------------------------

#: The reason conditions of XEP-0166 section 7.4 (and its schema).
REASONS = frozenset([
    "alternative-session", "busy", "cancel", "connectivity-error", "decline",
    "expired", "failed-application", "failed-transport", "general-error",
    "gone", "incompatible-parameters", "media-error", "security-error",
    "success", "timeout", "unsupported-applications", "unsupported-transports"])

#: Bounds on what a peer may send; far above anything legitimate.
MAX_SID_LENGTH = 256
MAX_CONTENTS = 64
MAX_TEXT_LENGTH = 4096


class MalformedJingle(ValueError):
    """
    A Jingle element (or a payload in it) that the XEPs do not allow; the
    message says what is wrong, for the ``bad-request`` text.
    """

    condition = "bad-request"


# --- Jingle error conditions (XEP-0166 section 10) -----------------------------


@dataclass(frozen=True)
class ErrorCondition:
    """A Jingle error condition and the stanza error it travels with."""

    name: str
    stanzaCondition: str
    type: str


OUT_OF_ORDER = "out-of-order"
TIE_BREAK = "tie-break"
UNKNOWN_SESSION = "unknown-session"
UNSUPPORTED_INFO = "unsupported-info"
SECURITY_REQUIRED = "security-required"

#: XEP-0166 section 10 (and section 9 for security-required).  The types
#: are those of the XEP's examples; ``unexpected-request`` has none there,
#: so it gets RFC 6120's ``wait``.
ERRORS: Dict[str, ErrorCondition] = {
    OUT_OF_ORDER: ErrorCondition(OUT_OF_ORDER, "unexpected-request", "wait"),
    TIE_BREAK: ErrorCondition(TIE_BREAK, "conflict", "cancel"),
    UNKNOWN_SESSION: ErrorCondition(UNKNOWN_SESSION, "item-not-found", "cancel"),
    UNSUPPORTED_INFO: ErrorCondition(UNSUPPORTED_INFO, "feature-not-implemented",
                                     "modify"),
    SECURITY_REQUIRED: ErrorCondition(SECURITY_REQUIRED, "not-acceptable", "cancel"),
}


def jingleError(condition: str, text: Optional[str] = None):
    """
    The :class:`StanzaError` for a Jingle error condition: the paired stanza
    condition plus ``<condition xmlns='urn:xmpp:jingle:errors:1'/>``.
    """
    spec = ERRORS[condition]
    return stanzaError(spec.stanzaCondition, text=text, type=spec.type,
                       appCondition=domish.Element((NS_JINGLE_ERRORS, condition)))


def jingleErrorCondition(error: domish.Element) -> Optional[str]:
    """
    The Jingle condition in an ``<error/>`` element (or an ``<iq/>``
    carrying one), ``None`` when it has none we know.
    """
    if error.name != "error":
        found = [c for c in error.elements() if c.name == "error"]
        if not found:
            return None
        error = found[0]
    for child in error.elements():
        if child.uri == NS_JINGLE_ERRORS and child.name in ERRORS:
            return child.name
    return None


# --- payloads -----------------------------------------------------------------


@dataclass(frozen=True)
class Opaque:
    """
    A payload no registered codec knows: kept as the element, so that it
    round-trips and the session can say *what* it does not support.
    """

    element: domish.Element = field(compare=False)

    @property
    def namespace(self) -> str:
        return self.element.uri

    @property
    def key(self) -> Tuple[str, str]:
        return (self.element.uri, self.element.name)

    def toElement(self) -> domish.Element:
        return self.element

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Opaque)
                and self.element.toXml() == other.element.toXml())

    def __hash__(self) -> int:
        return hash(self.element.toXml())


#: What a registered codec class offers: ``fromElement`` and ``toElement``.
Payload = object
Decoder = Callable[[domish.Element], Payload]


class Registry:
    """
    Payload codecs keyed by (namespace, element name).  ``decode`` returns
    the codec's value, or :class:`Opaque` for an unknown key.
    """

    def __init__(self) -> None:
        self._codecs: Dict[Tuple[str, str], Decoder] = {}

    def register(self, namespace: str, name: str, decoder: Decoder) -> None:
        self._codecs[(namespace, name)] = decoder

    def knows(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._codecs

    def decode(self, element: domish.Element) -> Payload:
        decoder = self._codecs.get((element.uri, element.name))
        if decoder is None:
            return Opaque(element)
        return decoder(element)


_default: Optional[Registry] = None


def defaultRegistry() -> Registry:
    """
    The codecs of this package: XEP-0261 and XEP-0260 transports, XEP-0234
    description and informational payloads.  Built on first use so that
    those modules can import this one.
    """
    global _default
    if _default is None:
        from bytestreamd.wire import (jingle_ft, jingle_ibb, jingle_link, jingle_s5b,
                                      jingle_xmlstream)
        registry = Registry()
        for module in (jingle_ibb, jingle_s5b, jingle_ft, jingle_link, jingle_xmlstream):
            for cls in module.CODECS:
                registry.register(cls.namespace, cls.elementName, cls.fromElement)
        _default = registry
    return _default


def payloadElement(payload: Payload) -> domish.Element:
    """The element of a decoded or opaque payload."""
    return payload.toElement()  # type: ignore[attr-defined]


def payloadKey(payload: Payload) -> Tuple[str, str]:
    """(namespace, element name) of a decoded or opaque payload."""
    if isinstance(payload, Opaque):
        return payload.key
    return (payload.namespace, payload.elementName)  # type: ignore[attr-defined]


# --- helpers ----------------------------------------------------------------


def elementText(element: domish.Element, what: str) -> str:
    """Character data of a simple element; MalformedJingle if it has children."""
    parts = []
    for child in element.children:
        if isinstance(child, str):
            parts.append(child)
        else:
            raise MalformedJingle("<%s/> must not contain elements" % what)
    return "".join(parts)


def checkSid(value: Optional[str], what: str = "sid") -> str:
    """
    A session id: present, at most 256 characters, no whitespace or control
    characters.  The schema says NMTOKEN and the text SHOULD; a peer with
    a looser id is still understood, since we never put it in XML by hand.
    """
    if not value:
        raise MalformedJingle("missing '%s'" % what)
    if len(value) > MAX_SID_LENGTH:
        raise MalformedJingle("'%s' is longer than %d characters" % (what, MAX_SID_LENGTH))
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
        raise MalformedJingle("'%s' %r has whitespace or control characters" % (what, value))
    return value


def parseNonNegative(value: Optional[str], what: str, maxDigits: int = 20) -> int:
    """A decimal xs:nonNegativeInteger (no sign, no spaces, ASCII digits)."""
    if (not value or len(value) > maxDigits or not value.isascii()
            or not value.isdigit()):
        raise MalformedJingle("%s %r is not a non-negative integer" % (what, value))
    return int(value)


# --- <reason/> -------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """
    ``<reason><condition/><text/>[other]</reason>``.  ``alternativeSid`` is
    the ``<sid/>`` of ``<alternative-session/>``; ``extra`` is the optional
    element of another namespace (e.g. XEP-0234's ``<file-too-large/>``).
    """

    condition: str
    text: Optional[str] = None
    alternativeSid: Optional[str] = None
    extra: Optional[Opaque] = None

    def describe(self) -> str:
        """``decline: I am busy`` -- for an operator."""
        words = self.condition
        if self.alternativeSid:
            words += " (session %s)" % self.alternativeSid
        if self.extra is not None:
            words += " (%s)" % self.extra.element.name
        if self.text:
            words += ": %s" % self.text
        return words

    def toElement(self) -> domish.Element:
        if self.condition not in REASONS:
            raise ValueError("unknown Jingle reason %r" % (self.condition,))
        reason = domish.Element((NS_JINGLE, "reason"))
        condition = reason.addElement(self.condition)
        if self.alternativeSid is not None:
            condition.addElement("sid", content=self.alternativeSid)
        if self.text is not None:
            reason.addElement("text", content=self.text)
        if self.extra is not None:
            reason.addChild(self.extra.element)
        return reason

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Reason":
        if (element.uri, element.name) != (NS_JINGLE, "reason"):
            raise MalformedJingle("not a Jingle <reason/>")
        condition: Optional[str] = None
        text: Optional[str] = None
        alternativeSid: Optional[str] = None
        extra: Optional[Opaque] = None
        for child in element.elements():
            if child.uri != NS_JINGLE:
                if extra is not None:
                    raise MalformedJingle("<reason/> has more than one "
                                          "application-specific element")
                extra = Opaque(child)
            elif child.name == "text":
                if text is not None:
                    raise MalformedJingle("<reason/> has more than one <text/>")
                text = elementText(child, "text")[:MAX_TEXT_LENGTH]
            elif child.name in REASONS:
                if condition is not None:
                    raise MalformedJingle("<reason/> has more than one condition")
                condition = child.name
                if child.name == "alternative-session":
                    sids = [c for c in child.elements(NS_JINGLE, "sid")]
                    if len(sids) > 1:
                        raise MalformedJingle("<alternative-session/> has more "
                                              "than one <sid/>")
                    if sids:
                        alternativeSid = checkSid(
                            elementText(sids[0], "sid").strip(), "alternative-session sid")
            else:
                raise MalformedJingle("unknown Jingle reason <%s/>" % child.name)
        if condition is None:
            raise MalformedJingle("<reason/> without a condition")
        return cls(condition, text, alternativeSid, extra)


# --- <content/> -----------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """
    One content type.  ``senders`` and ``disposition`` are ``None`` when the
    attribute is absent (the defaults ``both`` and ``session`` then apply;
    see :attr:`effectiveSenders`), so that an element round-trips as sent.
    ``description``/``transport`` are decoded payloads or :class:`Opaque`;
    ``security`` is the XEP-0166 section 9 precondition, kept opaque.
    """

    creator: str
    name: str
    senders: Optional[str] = None
    disposition: Optional[str] = None
    description: Optional[Payload] = None
    transport: Optional[Payload] = None
    security: Optional[Opaque] = None

    @property
    def key(self) -> Tuple[str, str]:
        """(creator, name): unique among both parties to a session."""
        return (self.creator, self.name)

    @property
    def effectiveSenders(self) -> str:
        return self.senders or "both"

    @property
    def effectiveDisposition(self) -> str:
        return self.disposition or DISPOSITION_SESSION

    def toElement(self) -> domish.Element:
        if self.creator not in CREATORS:
            raise ValueError("content creator must be initiator or responder")
        content = domish.Element((NS_JINGLE, "content"))
        content["creator"] = self.creator
        content["name"] = self.name
        if self.senders is not None:
            content["senders"] = self.senders
        if self.disposition is not None:
            content["disposition"] = self.disposition
        for payload in (self.description, self.transport, self.security):
            if payload is not None:
                content.addChild(payloadElement(payload))
        return content

    @classmethod
    def fromElement(cls, element: domish.Element,
                    registry: Optional[Registry] = None) -> "Content":
        if (element.uri, element.name) != (NS_JINGLE, "content"):
            raise MalformedJingle("not a Jingle <content/>")
        registry = registry or defaultRegistry()
        creator = element.getAttribute("creator")
        if creator not in CREATORS:
            raise MalformedJingle("content 'creator' must be initiator or "
                                  "responder, not %r" % (creator,))
        name = element.getAttribute("name")
        if not name:
            raise MalformedJingle("content without a 'name'")
        if len(name) > MAX_SID_LENGTH:
            raise MalformedJingle("content name is longer than %d characters"
                                  % MAX_SID_LENGTH)
        senders = element.getAttribute("senders")
        if senders is not None and senders not in SENDERS:
            raise MalformedJingle("content 'senders' %r is not one of %s"
                                  % (senders, ", ".join(SENDERS)))
        disposition = element.getAttribute("disposition")
        if disposition is not None and not disposition:
            raise MalformedJingle("empty content 'disposition'")
        found: Dict[str, Payload] = {}
        for child in element.elements():
            if child.name not in ("description", "transport", "security"):
                continue  # other extensions: ignored, as XML allows
            if child.uri == NS_JINGLE:
                raise MalformedJingle("<%s/> must be qualified by its own namespace"
                                      % child.name)
            if child.name in found:
                raise MalformedJingle("content %r has more than one <%s/>"
                                      % (name, child.name))
            if child.name == "security":
                found["security"] = Opaque(child)
            else:
                found[child.name] = registry.decode(child)
        return cls(creator, name, senders, disposition, found.get("description"),
                   found.get("transport"), found.get("security"))  # type: ignore[arg-type]


# --- <jingle/> ------------------------------------------------------------------------


@dataclass(frozen=True)
class Jingle:
    """
    The ``<jingle/>`` element of one request.  ``info`` holds the children
    of other namespaces (the payload of session-info, e.g. XEP-0234's
    ``<checksum/>``), decoded or :class:`Opaque`.  ``initiator`` and
    ``responder`` are kept when valid and otherwise ignored, except on the
    two actions where XEP-0166 recommends them (session-initiate,
    session-accept), where an invalid JID is malformed.
    """

    action: str
    sid: str
    initiator: Optional[JID] = None
    responder: Optional[JID] = None
    contents: Tuple[Content, ...] = ()
    reason: Optional[Reason] = None
    info: Tuple[Payload, ...] = ()

    def content(self, creator: str, name: str) -> Optional[Content]:
        for c in self.contents:
            if c.key == (creator, name):
                return c
        return None

    def toElement(self) -> domish.Element:
        if self.action not in ACTIONS:
            raise ValueError("unknown Jingle action %r" % (self.action,))
        jingle = domish.Element((NS_JINGLE, "jingle"))
        jingle["action"] = self.action
        if self.initiator is not None:
            jingle["initiator"] = self.initiator.full()
        if self.responder is not None:
            jingle["responder"] = self.responder.full()
        jingle["sid"] = self.sid
        for content in self.contents:
            jingle.addChild(content.toElement())
        if self.reason is not None:
            jingle.addChild(self.reason.toElement())
        for payload in self.info:
            jingle.addChild(payloadElement(payload))
        return jingle

    @classmethod
    def fromElement(cls, element: domish.Element,
                    registry: Optional[Registry] = None) -> "Jingle":
        if (element.uri, element.name) != (NS_JINGLE, "jingle"):
            raise MalformedJingle("not a <jingle xmlns='%s'/> element" % NS_JINGLE)
        registry = registry or defaultRegistry()
        action = element.getAttribute("action")
        if not action:
            raise MalformedJingle("<jingle/> without an 'action'")
        if action not in ACTIONS:
            raise MalformedJingle("unknown Jingle action %r" % (action,))
        sid = checkSid(element.getAttribute("sid"))
        initiator = _party(element, "initiator", action == SESSION_INITIATE)
        responder = _party(element, "responder", action == SESSION_ACCEPT)
        contents: List[Content] = []
        reason: Optional[Reason] = None
        info: List[Payload] = []
        for child in element.elements():
            if child.uri == NS_JINGLE and child.name == "content":
                if len(contents) >= MAX_CONTENTS:
                    raise MalformedJingle("more than %d contents" % MAX_CONTENTS)
                contents.append(Content.fromElement(child, registry))
            elif child.uri == NS_JINGLE and child.name == "reason":
                if reason is not None:
                    raise MalformedJingle("<jingle/> has more than one <reason/>")
                reason = Reason.fromElement(child)
            elif child.uri == NS_JINGLE:
                raise MalformedJingle("unexpected <%s/> in <jingle/>" % child.name)
            else:
                info.append(registry.decode(child))
        jingle = cls(action, sid, initiator, responder, tuple(contents), reason,
                     tuple(info))
        _checkShape(jingle)
        return jingle


def _party(element: domish.Element, attribute: str, recommended: bool) -> Optional[JID]:
    value = element.getAttribute(attribute)
    if value is None:
        return None
    jid = parseJID(value)
    if jid is None and recommended:
        raise MalformedJingle("'%s' %r is not a JID" % (attribute, value))
    return jid


def _checkShape(jingle: Jingle) -> None:
    """What XEP-0166 requires of the contents of each action."""
    action = jingle.action
    if action in _NEEDS_CONTENT and not jingle.contents:
        raise MalformedJingle("%s without a <content/>" % action)
    for content in jingle.contents:
        if action in _FULL_CONTENTS and (content.description is None
                                         or content.transport is None):
            raise MalformedJingle("%s content %r needs a <description/> and a "
                                  "<transport/>" % (action, content.name))
        if action in _NEEDS_TRANSPORT and content.transport is None:
            raise MalformedJingle("%s content %r has no <transport/>"
                                  % (action, content.name))
    if action == CONTENT_MODIFY:
        for content in jingle.contents:
            if content.senders is None:
                raise MalformedJingle("content-modify content %r has no 'senders'"
                                      % content.name)
    if action == SESSION_INITIATE:
        # Section 7.2.10: one content -> it is 'session'; several -> at
        # least one is; otherwise bad-request.
        if not any(c.effectiveDisposition == DISPOSITION_SESSION
                   for c in jingle.contents):
            raise MalformedJingle("session-initiate has no content with "
                                  "disposition 'session'")

__all__ = [
    "ACTIONS", "REASONS", "ERRORS", "Content", "Jingle", "MalformedJingle",
    "Opaque", "Reason", "Registry", "defaultRegistry", "jingleError",
    "jingleErrorCondition",
]
