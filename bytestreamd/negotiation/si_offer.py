"""
An SI offer from a peer, waiting for ACCEPT/REJECT: the
:class:`~bytestreamd.interfaces.IIncomingOffer` of Stream Initiation.

The handler (:class:`bytestreamd.negotiation.si.StreamInitiation`) keeps
the pending set and the offer timer; an offer settles itself through the
handler's public ``settle``/``answer`` and, once accepted, races the chosen
methods with the neutral attempt driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from twisted.internet import defer
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface import implementer

from bytestreamd.application import Application, RangeAnswer
from bytestreamd.errors import MethodFailed, NegotiationFailed, NotConnected, stanzaError
from bytestreamd.interfaces import IIncomingOffer, StreamContext
from bytestreamd.negotiation import si_profiles
from bytestreamd.negotiation.attempts import Attempts, Progress
from bytestreamd.xmpp.stanzas import errorFor, parseJID, resultFor
from bytestreamd.wire.si import SIAccept

if TYPE_CHECKING:
    from bytestreamd.negotiation.si import StreamInitiation


@implementer(IIncomingOffer)
class IncomingOffer:
    """
    A valid offer waiting for a decision.

    ``application`` is what the offer is for, as the link layer knows it;
    ``profile`` and ``headers`` are the SI profile namespace and its decoded
    fields (SI's own view, for this module and its tests).

    ``methods`` are the offered methods we have enabled, as IStreamMethod
    objects in *our* preference order (``methodNames`` for their names);
    ``multiple`` says whether the offer carried si-multiple, in which case
    accepting answers with all of them; otherwise with the first.
    ``state`` is ``pending``, ``accepted``, ``rejected`` or ``expired``.
    """

    negotiation = "si"

    def __init__(self, handler: "StreamInitiation", iq: domish.Element, sid: str,
                 peer: JID, profile: str, headers: Dict[str, str],
                 methods: List[Any], multiple: bool, mimeType: Optional[str] = None,
                 application: Optional[Application] = None):
        self._handler = handler
        self.iq = iq
        self.timer = None
        self.sid = sid
        self.peer = peer
        self.profile = profile
        self.headers = headers
        self.methods = methods
        self.multiple = multiple
        self.mimeType = mimeType
        self.application = (application if application is not None
                            else si_profiles.fromHeaders(profile, headers))
        self.state = "pending"

    def __repr__(self) -> str:
        return "<IncomingOffer %s from %s %s>" % (self.sid, self.peer.full(), self.state)

    @property
    def methodNames(self) -> List[str]:
        return [m.name for m in self.methods]

    @property
    def pending(self) -> bool:
        return self.state == "pending"

    def end(self, state: str) -> None:
        self.state = state
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def reject(self, reason: str = "Offer Declined") -> None:
        """Answer ``forbidden`` with ``reason``; nothing if no longer pending."""
        if self._handler.settle(self, "rejected"):
            self._handler.answer(errorFor(self.iq, stanzaError(
                "forbidden", reason, type="cancel")))

    def accept(self, progress: Optional[Progress] = None,
               rangeAnswer: Optional[RangeAnswer] = None,
               options: Optional[Dict[str, Any]] = None) -> "defer.Deferred[Any]":
        """
        Answer the offer and wait for the initiator to open a bytestream by
        any chosen method.  Fires with the IBytestream; fails with
        MethodFailed when every method failed or ``attemptTimeout`` per
        method passed; NegotiationFailed if the offer is no longer pending.
        ``rangeAnswer`` asks a file's sender for part of it (the answer's
        ``<file><range/></file>``).
        """
        payload = si_profiles.answerPayload(rangeAnswer, self.profile)
        handler = self._handler
        if not handler.settle(self, "accepted"):
            return defer.fail(NegotiationFailed(
                "offer %s from %s is no longer pending (%s)"
                % (self.sid, self.peer.full(), self.state)))
        chosen = self.methods if self.multiple else self.methods[:1]
        own = handler.ownJID or parseJID(self.iq.getAttribute("to"))
        ctx = StreamContext(self.sid, self.peer, own, False, dict(options or {}),
                            session=self.sid, offeredBy=self.peer)
        race = Attempts(handler.clock, handler.attemptTimeout, progress).race(chosen, ctx)
        if self.multiple:
            answer = SIAccept(methods=[m.namespace for m in chosen], payload=payload)
        else:
            answer = SIAccept(method=chosen[0].namespace, payload=payload)
        result = resultFor(self.iq)
        result.addChild(answer.toElement())
        try:
            handler.send(result)
        except NotConnected as e:
            race.stop(MethodFailed("cannot answer the offer: %s" % e))
        return race.result
