"""
The ``<fingerprint/>`` element that binds an e2e link's TLS to the XMPP
negotiation.

The element is XEP-0320's, unchanged::

    <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256'
                 setup='active'>02:1A:CC:...:19:B2</fingerprint>

``hash`` is ``sha-256`` (the only one this daemon sends or accepts; another
is refused with :class:`UnsupportedHash` rather than ignored, because a
fingerprint we cannot check is no binding at all), the text is the SHA-256
of the sender's DER certificate in colon-separated hex
(:func:`bytestreamd.e2e.identity.formatFingerprint`; whitespace around it,
which XEP-0320's own examples show, is allowed).

``setup`` (RFC 4145 / RFC 5763 roles, as XEP-0320 maps them).  In an e2e
stream the roles are fixed by XEP-0246: the entity that opens the stream
(the link's initiator) is the STARTTLS initiating entity, hence the TLS
client.  So the initiator signals ``active`` and the responder answers
``passive``.  An offer with ``actpass`` (what a generic XEP-0320 sender puts
in an offer) is accepted and answered ``passive``; anything else (an
initiator that wants to be ``passive``, a responder that says ``active``,
``holdconn``) contradicts XEP-0246 and is refused by :func:`checkSetup`.

Where it goes
    Jingle (XEP-0247): inside the application's description, in
    session-initiate and in session-accept::

        <content creator='initiator' name='xmlstream'>
          <description xmlns='urn:xmpp:jingle:apps:xmlstream:0'>
            <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' .../>
          </description>
          <transport .../>
        </content>

    XEP-0320 puts it in ``<transport/>`` because DTLS runs on the ICE
    transport.  Here TLS belongs to the application (STARTTLS inside the XML
    stream) and the transport is replaceable: a transport-replace from
    SOCKS5 to IBB (XEP-0260 fallback) sends a new ``<transport/>`` while the
    description, and the certificate, stay the same.

    SI links (bytestreamd's link profile): as a child of the profile element,
    ``<link xmlns='urn:x-bytestreamd:si:link:0' service='...'>`` in the
    offer, and of a ``<link xmlns='urn:x-bytestreamd:si:link:0'/>`` next to
    the feature-negotiation answer in the SI result.

:func:`find` reads it from either parent, :func:`attach` adds it.

The mode
    Next to the fingerprint, an empty ``<bytes
    xmlns='urn:x-bytestreamd:e2e:bytes:0'/>`` asks for ``e2e=bytes`` (the
    link's bytes inside TLS); without it the link is ``e2e=xmpp`` (an
    XEP-0246 stream of stanzas), which is also what a XEP-0247 peer that
    knows nothing of bytestreamd means.  The responder's answer repeats the
    mode it accepted.  :class:`E2EParams` reads and writes both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from twisted.words.xish import domish

from bytestreamd.e2e import MODE_BYTES, MODE_XMPP, MODES, NS_BYTES, NS_DTLS
from bytestreamd.e2e.identity import (HASH_NAME, MalformedFingerprint,
                                      parseFingerprint)

SETUP_ACTIVE = "active"
SETUP_PASSIVE = "passive"
SETUP_ACTPASS = "actpass"
#: The values this daemon accepts ('holdconn' is in XEP-0320's schema
#: "only for completeness" and is never used).
SETUPS = (SETUP_ACTIVE, SETUP_PASSIVE, SETUP_ACTPASS)


class Malformed(ValueError):
    """A ``<fingerprint/>`` element XEP-0320 does not allow, or two of them."""

    condition = "bad-request"


class UnsupportedHash(Malformed):
    """A hash other than sha-256: answered, not ignored (see module doc)."""

    condition = "feature-not-implemented"


@dataclass(frozen=True)
class Fingerprint:
    """One ``<fingerprint/>``: the canonical SHA-256 text and the setup role."""

    value: str
    setup: str = SETUP_ACTIVE
    hash: str = HASH_NAME

    def __post_init__(self) -> None:
        if self.hash != HASH_NAME:
            raise UnsupportedHash("fingerprint hash %r is not supported (only %s)"
                                  % (self.hash, HASH_NAME))
        if self.setup not in SETUPS:
            raise Malformed("fingerprint setup %r is not one of %s"
                            % (self.setup, ", ".join(SETUPS)))
        try:
            canonical = parseFingerprint(self.value)
        except MalformedFingerprint as e:
            raise Malformed("fingerprint: %s" % (e,))
        object.__setattr__(self, "value", canonical)

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_DTLS, "fingerprint"))
        element["hash"] = self.hash
        element["setup"] = self.setup
        element.addContent(self.value)
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "Fingerprint":
        if element.uri != NS_DTLS or element.name != "fingerprint":
            raise Malformed("expected {%s}fingerprint, got {%s}%s"
                            % (NS_DTLS, element.uri, element.name))
        hashName = element.getAttribute("hash")
        setup = element.getAttribute("setup")
        if not hashName:
            raise Malformed("fingerprint without 'hash'")
        if not setup:
            raise Malformed("fingerprint without 'setup'")
        if any(True for _ in element.elements()):
            raise Malformed("fingerprint with child elements")
        return cls(value=str(element), setup=setup, hash=hashName.lower())


def find(parent: domish.Element) -> Optional[Fingerprint]:
    """
    The ``<fingerprint/>`` child of ``parent`` (a Jingle description or an SI
    ``<link/>``), or None.  Two of them are Malformed: which one would the
    certificate have to match?
    """
    found = [child for child in parent.elements(NS_DTLS, "fingerprint")]
    if len(found) > 1:
        raise Malformed("%d fingerprint elements in <%s/>; expected one"
                        % (len(found), parent.name))
    return Fingerprint.fromElement(found[0]) if found else None


def attach(parent: domish.Element, fingerprint: Fingerprint) -> domish.Element:
    """Add ``fingerprint`` to ``parent``; returns ``parent``."""
    parent.addChild(fingerprint.toElement())
    return parent


def answerSetup(offered: str) -> str:
    """What the responder answers to the initiator's ``setup``."""
    checkSetup(offered, SETUP_PASSIVE)
    return SETUP_PASSIVE


def checkSetup(initiator: str, responder: str) -> None:
    """
    Refuse roles that contradict XEP-0246 (the stream's initiator is the TLS
    client): the initiator says ``active`` or ``actpass``, the responder
    ``passive``.
    """
    if initiator not in (SETUP_ACTIVE, SETUP_ACTPASS):
        raise Malformed("the initiator's fingerprint says setup=%r; an e2e stream's "
                        "initiator is the TLS client (active or actpass)" % (initiator,))
    if responder != SETUP_PASSIVE:
        raise Malformed("the responder's fingerprint says setup=%r; an e2e stream's "
                        "responder is the TLS server (passive)" % (responder,))


@dataclass(frozen=True)
class E2EParams:
    """
    What one side of a link negotiation says about e2e: its certificate's
    fingerprint and the mode.  Found in a Jingle description or an SI
    ``<link/>`` (see the module docstring).
    """

    fingerprint: Fingerprint
    mode: str = MODE_XMPP

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise Malformed("e2e mode %r is not xmpp or bytes" % (self.mode,))

    def addTo(self, parent: domish.Element) -> domish.Element:
        attach(parent, self.fingerprint)
        if self.mode == MODE_BYTES:
            parent.addElement((NS_BYTES, "bytes"))
        return parent

    @classmethod
    def fromParent(cls, parent: domish.Element) -> Optional["E2EParams"]:
        """None when ``parent`` asks for no e2e stream (no fingerprint)."""
        fingerprint = find(parent)
        modes = list(parent.elements(NS_BYTES, "bytes"))
        if fingerprint is None:
            if modes:
                raise Malformed("<bytes/> without a <fingerprint/>: an e2e link "
                                "needs the certificate's fingerprint")
            return None
        if len(modes) > 1:
            raise Malformed("%d <bytes/> elements; expected at most one" % len(modes))
        return cls(fingerprint, MODE_BYTES if modes else MODE_XMPP)
