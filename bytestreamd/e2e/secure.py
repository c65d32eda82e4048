"""
Securing an established bytestream: the adapter that performs the XEP-0246
machine's outputs (:mod:`bytestreamd.e2e.stream`) on a real stream.

:func:`secure` is called by the link layer between "the negotiator has a
bytestream" and ``GOOD``.  It attaches a protocol to the stream, exchanges
the stream headers and STARTTLS in clear, starts TLS on the stream
(:meth:`bytestreamd.transport.base.BytestreamTransport.startTLS`, the
stream's initiator being the TLS client), checks the peer's certificate in
``handshakeCompleted`` -- before any application byte is delivered -- with
:meth:`bytestreamd.e2e.service.E2EService.check` (signalled fingerprint,
then the trust policy), restarts the stream and switches to the agreed mode.
It fires with a :class:`SecuredStream`, or fails with
:class:`~bytestreamd.errors.NegotiationFailed` whose reason says why (the
link ends ``BAD reason=...``: no clear byte of the link was ever sent).
Cancelling it (``CLOSE`` during the handshake) aborts the stream.

:class:`SecuredStream` is the stream as the link's end sees it: every
attribute is the underlying stream's (whose ``write`` and friends the TLS
layer shadows, so what the end writes is encrypted), except that it can be
attached to once more -- the negotiation's protocol stays the TLS layer's
application and hands it the cleartext -- and that it holds what arrived
between the switch and the attach.  In ``bytes`` mode the end gets raw
bytes; in ``xmpp`` mode stanzas (:meth:`SecuredStream.sendStanza`, and
``onStanza``), see :mod:`bytestreamd.local.stanzas`.

The end of an e2e=bytes link is still the link lifecycle's to judge: a TLS
close_notify reaches the end as a plain ``ConnectionDone`` of the
transport, which the lifecycle never takes for the peer's confirmation
(that comes over the end-confirmation channel, with byte counts).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IHandshakeListener
from twisted.python.failure import Failure
from twisted.words.xish import domish
from zope.interface import implementer

from bytestreamd.e2e import MODE_BYTES, MODE_XMPP, trust
from bytestreamd.e2e import stream as e2e
from bytestreamd.e2e import tail
from bytestreamd.e2e.tail import CipherTail
from bytestreamd.errors import NegotiationFailed
from bytestreamd.text import SafeLogger

log = SafeLogger()

#: Seconds the whole e2e negotiation (headers, STARTTLS, handshake,
#: restart) may take before the link is refused.
DEFAULT_TIMEOUT = 30.0


class E2EFailed(NegotiationFailed):
    """The e2e stream could not be established; ``reason`` says why."""


class SecuredStream:
    """The stream after a successful e2e negotiation (module docstring)."""

    #: For a relayed stream: its last ciphertext, kept to be re-sent, and the
    #: way in for the peer's (:mod:`bytestreamd.e2e.tail`); else None.
    cipherTail: Optional[CipherTail] = None

    def __init__(self, stream: Any, negotiation: "_Negotiation", mode: str,
                 fingerprint: str, how: str):
        self._stream = stream
        self._negotiation = negotiation
        self.e2eMode = mode
        #: The peer's certificate fingerprint and why it was accepted.
        self.e2eFingerprint = fingerprint
        self.e2eHow = how
        self.protocol: Any = None
        self._held: List[bytes] = []
        self._lost: Optional[Failure] = None
        self._paused = False
        #: (xmpp mode) called with each stanza from the peer.
        self.onStanza: Optional[Callable[[domish.Element], None]] = None
        #: (xmpp mode) called once when the XML stream ended: None when it
        #: closed cleanly both ways, else the reason.
        self.onStreamEnd: Optional[Callable[[Optional[str]], None]] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __repr__(self) -> str:
        return "<SecuredStream %s over %r>" % (self.e2eMode, self._stream)

    # the end attaches once more ------------------------------------------------

    def attachProtocol(self, proto: Any) -> None:
        if self.protocol is not None:
            raise RuntimeError("a protocol is already attached to %r" % (self,))
        self.protocol = proto
        proto.makeConnection(self)
        self._deliver()

    def pauseProducing(self) -> None:
        self._paused = True
        self._stream.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._deliver()
        if not self._paused:
            self._stream.resumeProducing()

    def _deliver(self) -> None:
        while self._held and self.protocol is not None and not self._paused:
            self.protocol.dataReceived(self._held.pop(0))
        if not self._held and self._lost is not None and self.protocol is not None:
            reason, self._lost = self._lost, None
            self.protocol.connectionLost(reason)

    # from the negotiation -----------------------------------------------------------

    def _dataReceived(self, data: bytes) -> None:
        if self.protocol is not None and not self._paused and not self._held:
            self.protocol.dataReceived(data)
        else:
            self._held.append(data)

    def _connectionLost(self, reason: Failure) -> None:
        self._lost = reason
        self._deliver()

    # xmpp mode ----------------------------------------------------------------------

    def sendStanza(self, element: domish.Element) -> None:
        """Send a stanza from the local application (raises e2e.BadStanza)."""
        self._negotiation.perform(self._negotiation.machine.sendStanza(element))

    def closeStream(self) -> None:
        """End the XML stream from our side (``</stream:stream>``)."""
        self._negotiation.perform(self._negotiation.machine.close())


@implementer(IHandshakeListener)
class _Negotiation(protocol.Protocol):
    """The protocol attached to the stream: performs the machine's outputs."""

    def __init__(self, machine: e2e.E2EStream, service: Any, signalled: Optional[str],
                 done: defer.Deferred, clock: Any, timeout: float):
        self.machine = machine
        self.service = service
        self.signalled = signalled
        self.done = done
        self.stream: Any = None
        self.secured: Optional[SecuredStream] = None
        self.decision: Optional[trust.Accept] = None
        self.failed = False
        self.tlsStarted = False
        self._timer = clock.callLater(timeout, self._timedOut) if clock is not None else None
        self._timeout = timeout

    def makeConnection(self, transport: Any) -> None:
        self.stream = transport
        protocol.Protocol.makeConnection(self, transport)

    def connectionMade(self) -> None:
        self.perform(self.machine.start())

    def dataReceived(self, data: bytes) -> None:
        secured = self.secured
        if secured is not None and self.machine.mode == MODE_BYTES:
            secured._dataReceived(data)  # the data path: no machine
            return
        self.perform(self.machine.dataReceived(data))

    def handshakeCompleted(self) -> None:
        decision = self.service.check(self.stream, self.machine.peer, self.signalled)
        if isinstance(decision, trust.Refuse):
            log.warn("e2e with {peer} refused: {why}", peer=self.machine.peer,
                     why=decision.reason)
            self.perform(self.machine.tlsFailed(decision.reason))
            return
        self.decision = decision
        self.perform(self.machine.tlsEstablished())

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.secured is not None and self.machine.mode == MODE_BYTES:
            self.secured._connectionLost(reason)
            return
        outputs = self.machine.connectionLost()
        if self.secured is None and not reason.check(error.ConnectionDone):
            why = getattr(reason.value, "reason", None) or reason.getErrorMessage()
            outputs = [e2e.Failed("%s: %s" % (o.reason, why)) if isinstance(o, e2e.Failed)
                       else o for o in outputs]
        self.perform(outputs)
        if self.secured is not None:
            self.secured._connectionLost(reason)

    # performing outputs -------------------------------------------------------------

    def perform(self, outputs: List[e2e.Output]) -> None:
        for output in outputs:
            kind = type(output)
            if kind is e2e.Send:
                self.stream.write(output.data)
            elif kind is e2e.Data:
                assert self.secured is not None
                self.secured._dataReceived(output.data)
            elif kind is e2e.Stanza:
                if self.secured is not None and self.secured.onStanza is not None:
                    self.secured.onStanza(output.element)
            elif kind is e2e.StartTLS:
                # XEP-0246: the stream's initiator is the TLS client,
                # whichever side opened the bytestream.
                client = output.role == "client"
                normal = client == bool(self.stream.weAreInitiator)
                self.tlsStarted = True
                self.stream.startTLS(self.service.tlsOptions(), normal)
            elif kind is e2e.Established:
                self._established(output)
            elif kind is e2e.Failed:
                self._failed(output.reason)
            elif kind is e2e.Closed:
                self._closed()

    def _established(self, output: e2e.Established) -> None:
        self._cancelTimer()
        assert self.decision is not None
        secured = SecuredStream(self.stream, self, output.mode,
                                self.decision.fingerprint, self.decision.how)
        if output.mode == MODE_BYTES:
            secured.cipherTail = tail.attach(self.stream)
        self.secured = secured
        if output.data:
            secured._held.append(output.data)
        # Hold what follows (in the stream, with backpressure to the peer)
        # until the end attaches and resumes it.
        self.stream.pauseProducing()
        done, self.done = self.done, None
        if done is not None:
            done.callback(secured)

    def _failed(self, reason: str) -> None:
        self._cancelTimer()
        if self.secured is not None:
            end = self.secured.onStreamEnd
            self.secured.onStreamEnd = None
            self.stream.abortConnection()
            if end is not None:
                end(reason)
            return
        if self.failed:
            return
        self.failed = True
        self.stream.abortConnection()
        done, self.done = self.done, None
        if done is not None:
            done.errback(E2EFailed("e2e: %s" % (reason,)))

    def _closed(self) -> None:
        # xmpp mode: both sides sent </stream:stream> (XEP-0246 section 5)
        if self.secured is not None:
            end = self.secured.onStreamEnd
            self.secured.onStreamEnd = None
            self.stream.loseConnection()
            if end is not None:
                end(None)

    def _timedOut(self) -> None:
        self._timer = None
        if self.done is not None:
            self.perform(self.machine.tlsFailed(
                "the e2e negotiation did not finish within %gs (waiting for %s)"
                % (self._timeout, e2e._WAITING.get(self.machine.state, self.machine.state))))

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def cancel(self) -> None:
        self._cancelTimer()
        self.done = None
        self.failed = True
        self.stream.abortConnection()


def secure(stream: Any, service: Any, role: str, mode: str, signalled: Optional[str],
           local: str, peer: str, clock: Any = None,
           timeout: float = DEFAULT_TIMEOUT) -> "defer.Deferred[SecuredStream]":
    """
    Run the XEP-0246 negotiation on ``stream`` as ``role``
    (``initiator``/``responder``), in ``mode``, expecting the peer's
    certificate to have the ``signalled`` fingerprint.  See the module
    docstring.
    """
    negotiation: List[_Negotiation] = []

    def cancel(d: defer.Deferred) -> None:
        if negotiation:
            negotiation[0].cancel()

    done: defer.Deferred = defer.Deferred(cancel)
    try:
        service.tlsOptions()  # the identity, before anything is sent
    except Exception as e:
        stream.abortConnection()
        return defer.fail(E2EFailed("e2e: cannot load this daemon's identity: %s" % (e,)))
    machine = e2e.E2EStream(role, local, peer, mode)
    proto = _Negotiation(machine, service, signalled, done, clock, timeout)
    negotiation.append(proto)
    stream.attachProtocol(proto)
    return done


__all__ = ["secure", "SecuredStream", "E2EFailed", "MODE_BYTES", "MODE_XMPP"]
