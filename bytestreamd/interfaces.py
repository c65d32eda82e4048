"""
The seams between layers.

Negotiation (``bytestreamd.negotiation``) knows bytestream methods only
through :class:`IStreamMethod`; the link layer (``bytestreamd.links``) and the
local-socket splice (``bytestreamd.local.sockets``) know an established stream only
through :class:`IBytestream`, which is an ordinary Twisted transport.  The
control channel knows the rest of the daemon only through
:class:`IControlBackend`.  A new transport (a bytestream method: IBB,
SOCKS5, ...) is one new module providing :class:`IStreamMethod`; a new
negotiation framework (SI today, Jingle next: a peer of SI that reuses the
same methods) is one providing :class:`INegotiator` and
:class:`IIncomingOffer`.  Both are named in :mod:`bytestreamd.registry`
and listed in preference order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional

from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from twisted.words.protocols.jabber.jid import JID
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


@dataclass
class StreamContext:
    """
    Everything a method needs to open or accept one bytestream.

    ``sid`` is the *transport* sid, the one the method puts on its wire (IBB
    ``sid``, SOCKS5 ``sid``); ``session`` is the *negotiation* session's id
    (the SI id; a Jingle ``sid``, which may own several transports, each
    with its own transport sid).  For SI both are the SI id; ``session``
    defaults to ``sid``.  ``initiator`` and ``target`` are full JIDs;
    ``local`` is the one that is us.  ``offeredBy`` is who offered the
    stream (SI: the initiator); XEP-0260 computes a candidate's DST.ADDR
    from who offered it.  ``options`` carries per-link method options from
    the control channel (``block-size``, ``stanza``).
    """

    sid: str
    initiator: JID
    target: JID
    weAreInitiator: bool
    options: Dict[str, Any] = field(default_factory=dict)
    session: Optional[str] = None
    offeredBy: Optional[JID] = None

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = self.sid

    @property
    def peer(self) -> JID:
        return self.target if self.weAreInitiator else self.initiator

    @property
    def local(self) -> JID:
        return self.initiator if self.weAreInitiator else self.target


class IBytestream(ITransport, IPushProducer, IConsumer):
    """
    An established bytestream: a real Twisted transport, whichever method
    carries it (:class:`bytestreamd.transport.base.BytestreamTransport`).

    * Until :meth:`attachProtocol` nothing is delivered: bytes received are
      held (bounded; the peer is slowed down), as while paused.
    * ``write``/``writeSequence`` queue bytes for the peer.  The stream is a
      consumer: a producer registered with ``registerProducer`` (``producer``)
      is paused while more than a bounded amount is queued or in flight, and
      resumed when it drains (backpressure towards the local writer).
    * It is a push producer: ``pauseProducing`` stops delivery to the
      attached protocol *and* slows the peer (IBB holds its acknowledgements,
      SOCKS5 stops reading its socket), so a slow local reader slows the
      remote sender.  Bytes received while paused are held.
    * The end, in order: every held byte, then -- for a method that carries a
      half-close -- the peer's EOF as ``readConnectionLost`` to a protocol
      providing ``IHalfCloseableProtocol``, then
      ``connectionLost(Failure(ConnectionDone()))``.  A failure is
      ``connectionLost(Failure(BytestreamBroken(reason)))`` at once, dropping
      what is held.  The end is delivered even while paused.
    * ``loseConnection`` closes both directions cleanly once everything
      queued has been delivered (and, for IBB, acknowledged).
      ``loseWriteConnection`` (our EOF; we keep reading) exists **only** on a
      stream whose method can half-close (SOCKS5, not IBB, not under TLS):
      ask ``getattr(stream, "loseWriteConnection", None)``.
    * ``abortConnection`` tears down at once (nothing more is delivered).
    * ``startTLS(contextFactory, normal=True)`` encrypts from then on, as
      ``ITLSTransport.startTLS`` does for TCP: the attached protocol's writes
      are encrypted, what arrives is decrypted, producers and pause/resume
      go through TLS.  ``normal``: the bytestream's initiator is the TLS
      client.  ``getPeerCertificate()`` then returns the peer's certificate
      (``None`` before).
    """

    method = Attribute("Short method name: 'ibb', 's5b', ...")
    sessionId = Attribute("The negotiation session id (StreamContext.session).")
    sid = Attribute("The transport sid the method puts on its wire (IBB sid, SOCKS5 sid).")
    peerJID = Attribute("Full JID of the other party.")
    weAreInitiator = Attribute("We initiated the bytestream (the TLS client by default).")
    bytesSent = Attribute("Payload bytes acknowledged by / written to the peer.")
    bytesReceived = Attribute("Payload bytes received from the peer.")
    protocol = Attribute("The attached protocol (``None`` before attachProtocol).")
    producer = Attribute("The producer registered with the stream, or ``None``.")
    connected = Attribute("True until the end of the stream is known.")
    disconnecting = Attribute("True once a close was asked or the end is known.")

    def attachProtocol(protocol: Any) -> None:
        """
        Start delivering to ``protocol`` (calls its ``makeConnection``).
        Data received before this is held, as while paused.  Once only.
        """

    def abortConnection() -> None:
        """Close at once, without delivering what is queued."""

    def startTLS(contextFactory: Any, normal: bool = True) -> None:
        """
        Put TLS between the stream and the attached protocol (see above);
        ``contextFactory`` as for ``TLSMemoryBIOFactory``.
        """

    def getPeerCertificate() -> Any:
        """The peer's TLS certificate (pyOpenSSL ``X509``), ``None`` before TLS."""


class IStreamMethod(Interface):
    """
    One way of carrying a bytestream (XEP-0047, XEP-0065, ...).

    Time limits are the caller's: negotiation cancels the Deferreds below when
    an attempt takes longer than the configured timeout, and a method must
    then release everything it holds for that sid and refuse later opens.
    """

    name = Attribute("Short name used in config, events and LINKS: 'ibb'.")
    namespace = Attribute("The SI stream-method value and disco feature.")

    def initiate(ctx: StreamContext) -> "Deferred[IBytestream]":
        """
        As initiator, open the bytestream with ``ctx.target``.  Fires with
        the established stream (GOOD); fails with
        :class:`bytestreamd.errors.MethodFailed` saying why (BAD).
        """

    def expect(ctx: StreamContext) -> "Deferred[IBytestream]":
        """
        As target, allow ``ctx.initiator`` to open ``ctx.sid`` by this
        method and fire when it has.  Until this is called (and after its
        Deferred is cancelled or has fired) an open for that sid is refused
        with ``not-acceptable``.  Fails with MethodFailed if the initiator's
        attempt by this method failed in a way the target can see.
        """


class INegotiator(Interface):
    """
    A negotiation framework (XEP-0095 Stream Initiation; Jingle next): how
    two parties agree on a bytestream for an application and open it by one
    of the :class:`IStreamMethod` methods.  The link layer holds a list of
    negotiators in preference order and picks, per peer, the first whose
    :meth:`supports` is true of the peer's disco features.  It never sees
    the framework's wire: applications are the neutral values of
    :mod:`bytestreamd.application`.

    ``progress(state, method, reason)`` reports ``INIT`` for each method
    tried and ``BAD`` for each that failed while another is still to come
    (never for the last).  Incoming offers go to the :class:`IOfferAcceptor`
    as :class:`IIncomingOffer`.
    """

    name = Attribute("Short name shown as negotiation= in events and LINKS: 'si'.")

    def supports(features: Any) -> bool:
        """Whether a peer with these disco#info ``features`` can negotiate here."""

    def setAcceptor(acceptor: "IOfferAcceptor") -> None:
        """
        Wire the :class:`IOfferAcceptor` that decides about incoming offers
        (once, before the connection starts: the daemon builds the
        negotiators, then the link manager, then wires one to the other).
        """

    def offer(peer: JID, application: Any, methods: Optional[list] = None,
              options: Optional[Dict[str, Any]] = None, progress: Any = None,
              answered: Any = None) -> "Deferred[IBytestream]":
        """
        Offer ``application`` (a :mod:`bytestreamd.application` value) to the
        full JID ``peer`` and open a bytestream by ``methods`` (names; default:
        every enabled method).  Fires with the established IBytestream; fails
        with NegotiationFailed before any INIT, MethodFailed after.
        ``answered(rangeAnswer)`` is called once the peer accepts, with the
        :class:`~bytestreamd.application.RangeAnswer` it asked for (or None).
        Cancelling stops whatever is in flight.
        """


class ILinkEnd(Interface):
    """
    What an established link's stream is handed to: the thing that joins it
    to the link's local side and performs what the link's lifecycle
    (:mod:`bytestreamd.links.lifecycle`) decides.  The link layer builds one
    per link (``LinkManager._newEnd``) before the local socket exists, hands
    it the stream at GOOD (:meth:`streamReady`) and tells it what the peer
    says over XMPP (end confirmation, liveness); it never touches the bytes.

    Providers: :class:`bytestreamd.local.splice.Splice` (plain bytes, also
    for ``e2e=bytes``, whose stream is a TLS-terminated
    :class:`bytestreamd.e2e.secure.SecuredStream`) and
    :class:`bytestreamd.local.stanzas.StanzaRelay` (``e2e=xmpp``: stanzas).

    The local side calls ``localConnected(proto)``, ``fromLocal(data)``,
    ``localEOF()`` and ``localLost(reason)``
    (:class:`bytestreamd.local.sockets.LocalProtocol`).
    """

    lifecycle = Attribute("The LinkLifecycle once streamReady was called, else None.")
    hasLocal = Attribute("Whether a local client is connected.")
    onActivity = Attribute("Called on each chunk from an out-of-band transport "
                           "(liveness), or None.")

    def streamReady(stream: Any, lifecycle: Any = None, channel: Any = None) -> None:
        """The link is GOOD: attach to ``stream``; ``channel`` confirms ends."""

    def peerEOF(sent: int) -> None:
        """The peer's end-confirmation ``eof`` with its byte count."""

    def peerEnded(end: Any) -> None:
        """The peer's end-confirmation ``end``."""

    def peerRefusedEnd(reason: str) -> None:
        """The peer refused our end."""

    def peerAskedFlush() -> None:
        """The peer asks us to flush an announced tail."""

    def peerGone(reason: str) -> None:
        """Liveness: the peer is gone; end ERR."""

    def fail(reason: str) -> None:
        """End a GOOD link ERR for a local reason."""

    def requestClose() -> None:
        """``CLOSE``: end the link now."""

    def abort() -> None:
        """The link ended BAD or before GOOD: drop the local side now."""

    def localConnected(proto: Any) -> None:
        """A local client connected (its protocol)."""

    def fromLocal(data: bytes) -> None:
        """Bytes from the local client."""

    def localEOF() -> None:
        """The local client half-closed."""

    def localLost(reason: Any) -> None:
        """The local client is gone."""


class IIncomingOffer(Interface):
    """
    An offer from a peer, waiting for a decision.  It stays unanswered until
    :meth:`accept` or :meth:`reject`, or until it expires (the negotiator's
    ``offer_timeout``; the acceptor's ``offerExpired`` is told).
    """

    negotiation = Attribute("Name of the negotiator it came by: 'si'.")
    peer = Attribute("Full JID of the offering party.")
    sid = Attribute("The negotiation session id.")
    application = Attribute("What the stream is for: a bytestreamd.application value.")

    def accept(progress: Any = None, rangeAnswer: Any = None) -> "Deferred[IBytestream]":
        """
        Accept, asking for ``rangeAnswer`` (a file's part, when the offer
        allows ranges), and wait for the bytestream.  Fires with the
        IBytestream; fails with MethodFailed when every method failed,
        NegotiationFailed if the offer is no longer pending.
        """

    def reject(reason: str = "Offer Declined") -> None:
        """Refuse (the peer is told ``reason``); nothing if no longer pending."""


class IOfferAcceptor(Interface):
    """
    Decides about incoming offers (the link layer).

    ``offer`` is an :class:`IIncomingOffer`: it stays unanswered until
    ``offer.accept(progress)`` or ``offer.reject(reason)`` is called, or
    until it expires.
    """

    def offerReceived(offer: Any) -> None:
        """
        A valid offer arrived.  Raise
        :class:`bytestreamd.errors.OfferRejected` to refuse it at once
        (answered ``forbidden`` with the reason); otherwise keep it and
        accept or reject it later (possibly from inside this call).
        """

    def offerExpired(offer: Any, reason: str) -> None:
        """
        A pending offer ended without ACCEPT/REJECT: ``offer_timeout``
        expired (the peer got ``forbidden``) or the XMPP stream went away.
        """


class IEventSink(Interface):
    """Receives :class:`bytestreamd.events.Event` values."""

    def __call__(event: Any) -> None:
        pass


class IControlBackend(Interface):
    """
    What the control channel may ask of the daemon.  Methods raise
    :class:`bytestreamd.errors.ControlError` subclasses, whose ``code`` is the
    reply code; the control protocol turns them into replies, nothing else.
    ``owner`` is an opaque token per control connection: events about links
    it opened or accepted are sent to it.
    """

    def open(peer: JID, owner: object, service: Optional[str] = None,
             methods: Optional[list] = None, blockSize: Optional[int] = None,
             stanza: Optional[str] = None, profile: Optional[str] = None,
             headers: Optional[dict] = None) -> Any:
        """
        Start an outgoing link; returns its LinkInfo at once.  ``profile``
        names the application (:data:`bytestreamd.application.PROFILE_NAMES`;
        default: a link) and ``headers`` a file's fields (name, size, hash,
        date, desc, range).
        """

    def accept(linkId: str, owner: object, offset: Optional[int] = None,
               length: Optional[int] = None) -> Any:
        """
        Accept a pending offer; returns its LinkInfo.  ``offset``/``length``
        ask a ranged file offer for part of the file (XEP-0096 resume).
        """

    def reject(linkId: str, reason: Optional[str] = None) -> None:
        """Refuse a pending offer."""

    def close(linkId: str) -> None:
        """Close a link (or withdraw an offer/attempt)."""

    def links() -> list:
        """LinkInfo of every link and pending offer."""

    def status() -> list:
        """``(key, value)`` pairs describing the daemon."""

    def probe(peer: JID) -> "Deferred[list]":
        """``(key, value)`` pairs of what the peer supports."""

    def subscribe(sink: IEventSink) -> None:
        """Send every event to ``sink`` (the control protocol filters)."""

    def unsubscribe(sink: IEventSink) -> None:
        """Stop sending events to ``sink``; called when a connection ends."""

    def forgetOwner(owner: object) -> None:
        """The control connection ``owner`` went away."""


class IE2EControl(Interface):
    """
    The control backend's e2e commands (``FINGERPRINT``, ``TRUST``,
    ``FORGET``; docs/e2e.rst), apart from :class:`IControlBackend` so that
    a backend without e2e still provides that.
    """

    def fingerprint() -> list:
        """``(key, value)`` pairs: this daemon's e2e certificate fingerprint."""

    def trust(jid: str, fingerprint: str) -> list:
        """Pin ``fingerprint`` for ``jid`` (known-peers)."""

    def pins(jid: Optional[str] = None) -> list:
        """The pinned fingerprints (of ``jid``)."""

    def forget(jid: str, fingerprint: Optional[str] = None) -> list:
        """Unpin ``jid``'s fingerprints (or the one given)."""
