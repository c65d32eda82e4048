"""One link: plain data, its lifecycle machine, and the objects that carry it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.internet import defer
from twisted.words.protocols.jabber.jid import JID

from bytestreamd import application as app
from bytestreamd.events import NEGOTIATING, OFFER, LinkInfo
from bytestreamd.links.lifecycle import LinkLifecycle
from bytestreamd.links.machine import LinkMachine

if TYPE_CHECKING:  # local/ imports links.lifecycle: no import cycle at run time
    from bytestreamd.local.splice import Splice


class Link:
    """
    ``state`` is what ``LINKS`` shows (the XEP-0041 state the last event
    said, or NEGO/OFFER); ``machine`` is what decides (links.machine).
    """

    def __init__(self, linkId: str, peer: JID, direction: str, owner,
                 application: app.Application, negotiation: str,
                 service: Optional[str] = None):
        self.id = linkId
        self.peer = peer
        self.direction = direction
        self.owner = owner
        #: What the link is for (bytestreamd.application) and the name of
        #: the negotiator that carries it (``negotiation=`` in LINKS/events).
        self.application = application
        self.negotiation = negotiation
        #: The ``[services]`` name shown in LINKS (a link application's).
        self.service = service
        self.profile = application.profile
        self.machine = LinkMachine(direction)
        self.state = NEGOTIATING if direction == "out" else OFFER
        self.method: Optional[str] = None
        self.reason: Optional[str] = None
        self.socketPath: Optional[str] = None
        self.port = None
        self.splice: Optional[Splice] = None
        self.stream = None
        #: The negotiation in flight (cancelled by CLOSE).
        self.pending: Optional[defer.Deferred] = None
        #: The IIncomingOffer of an incoming link.
        self.offer = None
        #: What the accepting side asked of the sender (a file's range);
        #: shown on GOOD.
        self.answer: Optional[app.RangeAnswer] = None
        #: The end-confirmation session with a bytestreamd peer, if any.
        self.session = None
        #: Running while a GOOD link has no local client yet.
        self.attachTimer = None
        self.watched = False
        #: The e2e stream this link asks for or accepted (``bytes``/``xmpp``;
        #: None: plain), whether plain is refused, and what the peer
        #: signalled (an application.E2ERequest; see bytestreamd.links.e2e).
        self.e2eMode: Optional[str] = None
        self.e2eRequired = False
        self.peerE2E = None
        #: A ``connections=many`` link's connections (links.many), else None.
        self.many = None
        #: Its ``650 OFFER`` was emitted (so its end is an event too).
        self.announced = False

    @property
    def done(self) -> bool:
        return self.machine.done

    @property
    def lifecycle(self) -> Optional[LinkLifecycle]:
        return self.splice.lifecycle if self.splice is not None else None

    @property
    def sent(self) -> int:
        lifecycle = self.lifecycle
        if lifecycle is not None:
            return lifecycle.sent
        return getattr(self.stream, "bytesSent", 0) if self.stream else 0

    @property
    def received(self) -> int:
        lifecycle = self.lifecycle
        if lifecycle is not None:
            return lifecycle.delivered
        return getattr(self.stream, "bytesReceived", 0) if self.stream else 0

    def info(self) -> LinkInfo:
        return LinkInfo(
            id=self.id, state=self.state, peer=self.peer.full(),
            direction=self.direction, method=self.method,
            socket=self.socketPath, service=self.service, profile=self.profile,
            sent=self.sent, received=self.received, reason=self.reason,
            extra=(("negotiation", self.negotiation),)
            + ((("sid", self.stream.sid),) if self.stream is not None else ())
            + app.details(self.application, self.answer))

    def rangeDetails(self) -> tuple:
        return self.answer.details() if self.answer is not None else ()
