"""
XEP-0261 (Jingle In-Band Bytestreams Transport Method) wire codec.

``<transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size sid
[stanza]/>`` is :class:`IBBTransport`.  The XEP's rules that concern only
values live here too, as pure functions, so that the transport module can
apply them without re-reading the XEP:

* the responder may answer a *smaller* block-size in session-accept (or
  transport-accept); :func:`acceptedBlockSize` checks the answer and gives
  the block-size both sides then use;
* the initiator then MUST send the XEP-0047 ``<open/>`` with the negotiated
  values (:func:`openFor`), and a responder SHOULD answer an ``<open/>``
  that does not match with ``resource-constraint`` (:func:`openMismatch`).

The ``sid`` is an IBB session id (an NMTOKEN as in XEP-0047), distinct from
the Jingle session id.  Several IBB sessions can run in one Jingle session
(XEP-0261 section 2.4): each is authorized by a transport-info carrying one
more of these elements with its own ``sid``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from twisted.words.xish import domish

from bytestreamd.ns import NS_JINGLE_IBB
from bytestreamd.wire import ibb
from bytestreamd.wire.jingle import MalformedJingle

#: XEP-0047 block-size bounds (xs:unsignedShort, and at least one byte).
MIN_BLOCK_SIZE = 1
MAX_BLOCK_SIZE = ibb.MAX_BLOCK_SIZE
DEFAULT_BLOCK_SIZE = ibb.DEFAULT_BLOCK_SIZE
STANZA_IQ = ibb.STANZA_IQ
STANZA_MESSAGE = ibb.STANZA_MESSAGE


def _blockSize(value: Optional[str]) -> int:
    if not value or len(value) > 5 or not value.isascii() or not value.isdigit():
        raise MalformedJingle("IBB transport 'block-size' %r is not a number" % (value,))
    number = int(value)
    if not MIN_BLOCK_SIZE <= number <= MAX_BLOCK_SIZE:
        raise MalformedJingle("IBB transport 'block-size' %d is not in 1..65535"
                              % number)
    return number


@dataclass(frozen=True)
class IBBTransport:
    """
    One IBB session offer or answer.  ``stanza`` is ``None`` when the
    attribute is absent (the default ``iq`` applies: :attr:`stanzaType`).
    """

    namespace = NS_JINGLE_IBB
    elementName = "transport"

    sid: str
    blockSize: int = DEFAULT_BLOCK_SIZE
    stanza: Optional[str] = None

    @property
    def stanzaType(self) -> str:
        return self.stanza or STANZA_IQ

    def toElement(self) -> domish.Element:
        if not MIN_BLOCK_SIZE <= self.blockSize <= MAX_BLOCK_SIZE:
            raise ValueError("block-size must be 1..65535, not %r" % (self.blockSize,))
        if self.stanza is not None and self.stanza not in ibb.STANZAS:
            raise ValueError("stanza must be 'iq' or 'message', not %r" % (self.stanza,))
        element = domish.Element((NS_JINGLE_IBB, "transport"))
        element["block-size"] = str(self.blockSize)
        element["sid"] = self.sid
        if self.stanza is not None:
            element["stanza"] = self.stanza
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "IBBTransport":
        if (element.uri, element.name) != (NS_JINGLE_IBB, "transport"):
            raise MalformedJingle("not a Jingle IBB <transport/>")
        try:
            sid = ibb.checkSid(element.getAttribute("sid"))
        except ibb.MalformedIBB as e:
            raise MalformedJingle("IBB transport: %s" % (e,))
        blockSize = _blockSize(element.getAttribute("block-size"))
        stanza = element.getAttribute("stanza")
        if stanza is not None and stanza not in ibb.STANZAS:
            raise MalformedJingle("IBB transport 'stanza' must be iq or message, "
                                  "not %r" % (stanza,))
        return cls(sid, blockSize, stanza)

    def withBlockSize(self, blockSize: int) -> "IBBTransport":
        return replace(self, blockSize=blockSize)


def acceptedBlockSize(offer: IBBTransport, answer: IBBTransport) -> int:
    """
    The block-size to use after ``answer`` (session-accept or
    transport-accept) to our ``offer``.  XEP-0261 section 2.2 lets the
    responder ask for a *smaller* one only; a larger one, or another sid
    or stanza type, is malformed.
    """
    if answer.sid != offer.sid:
        raise MalformedJingle("IBB answer is for sid %r, we offered %r"
                              % (answer.sid, offer.sid))
    if answer.stanza is not None and answer.stanzaType != offer.stanzaType:
        raise MalformedJingle("IBB answer changes stanza from %s to %s"
                              % (offer.stanzaType, answer.stanzaType))
    if answer.blockSize > offer.blockSize:
        raise MalformedJingle("IBB answer raises block-size from %d to %d; only a "
                              "smaller one may be asked for"
                              % (offer.blockSize, answer.blockSize))
    return answer.blockSize


def answerFor(offer: IBBTransport, maxBlockSize: int) -> IBBTransport:
    """The responder's answer: the offer, with our smaller block-size if any."""
    return offer.withBlockSize(min(offer.blockSize, maxBlockSize))


def openFor(negotiated: IBBTransport) -> ibb.Open:
    """
    The XEP-0047 ``<open/>`` the initiator MUST send once the transport is
    accepted, "with the same 'block-size' and 'sid' values as for the Jingle
    <transport/> element it negotiated" (XEP-0261 section 2.2).
    """
    return ibb.Open(negotiated.sid, negotiated.blockSize, negotiated.stanzaType)


def openMismatch(negotiated: IBBTransport, received: ibb.Open) -> Optional[str]:
    """
    Why an ``<open/>`` does not match what was negotiated, or ``None``.
    XEP-0261: "if the value of the IBB 'block-size' attribute sent by the
    initiator in the <open/> element does not match the value of the
    'block-size' attribute communicated by the responder in the Jingle
    session-accept message then the responder SHOULD return a
    <resource-constraint/> error".
    """
    if received.sid != negotiated.sid:
        return "IBB open for sid %r, negotiated %r" % (received.sid, negotiated.sid)
    if received.blockSize != negotiated.blockSize:
        return ("IBB open with block-size %d, negotiated %d"
                % (received.blockSize, negotiated.blockSize))
    if received.stanza != negotiated.stanzaType:
        return ("IBB open with stanza=%s, negotiated %s"
                % (received.stanza, negotiated.stanzaType))
    return None


#: The codecs :func:`bytestreamd.wire.jingle.defaultRegistry` registers.
CODECS = (IBBTransport,)
