"""
The seams between layers.

Negotiation (``bytestreamd.negotiation``) knows bytestream methods only
through :class:`IStreamMethod`; the link layer (``bytestreamd.links``) and the
local-socket splice (``bytestreamd.local``) know an established stream only
through :class:`IBytestream`, which is an ordinary Twisted transport.  The
control channel knows the rest of the daemon only through
:class:`IControlBackend`.  A new transport (SOCKS5, Jingle, ...) is one new
module providing :class:`IStreamMethod`, registered in preference order.
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

    ``sid`` is the Stream Initiation id, which every method reuses as its own
    session id (IBB ``sid``, SOCKS5 ``sid``).  ``initiator`` and ``target`` are
    full JIDs; ``local`` is the one that is us.  ``options`` carries per-link
    method options from the control channel (``block-size``, ``stanza``).
    """

    sid: str
    initiator: JID
    target: JID
    weAreInitiator: bool
    options: Dict[str, Any] = field(default_factory=dict)

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
    sessionId = Attribute("The negotiation's session id (the SI id).")
    sid = Attribute("The method's own session id (IBB sid, SOCKS5 sid).")
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


class IOfferAcceptor(Interface):
    """
    Decides about incoming Stream Initiation offers (the link layer).

    ``offer`` is a :class:`bytestreamd.negotiation.si.IncomingOffer`: it
    stays unanswered until ``offer.accept(progress)`` or
    ``offer.reject(reason)`` is called, or until it expires.
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
        is an SI profile namespace (default: the link profile) and
        ``headers`` its fields (XEP-0096: name, size, hash, date, desc, range).
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
