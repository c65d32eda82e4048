"""
``startTLS`` for any bytestream, the way ``twisted.internet._newtls`` does it
for TCP.

What happens on ``stream.startTLS(contextFactory, normal)``:

* A :class:`twisted.protocols.tls.TLSMemoryBIOProtocol` (the factory's
  buffering one, with the stream's clock) is made around the attached
  protocol, told not to connect it again (the protocol keeps the stream as
  its transport), and becomes ``stream.protocol``: everything the stream
  receives from now on -- held bytes included -- is ciphertext for it, and it
  hands the cleartext to the application.
* The stream's own ``write``, ``writeSequence``, ``loseConnection``,
  ``abortConnection``, ``registerProducer`` and ``unregisterProducer`` are
  shadowed on the instance by the TLS layer's, so the application's writes
  are encrypted first.  The TLS layer itself writes through
  :class:`_Bypass`, which calls the methods of the stream's class: the
  method's own data path, unchanged.  (Instance attributes rather than an
  ``if tls`` test in ``write`` keep the cleartext data path free of any
  cost; Twisted's ``BufferingTLSTransport`` does the same for speed.)
* A producer registered before is unregistered and registered again
  through the TLS layer, so that backpressure goes through TLS (the layer
  also pauses it while the handshake holds writes back).  Pausing the
  stream (towards the application) pauses delivery of ciphertext, which is
  what stops the cleartext.
* The stream then provides ``ISSLTransport``, as ``_newtls`` marks a TCP
  transport (it is how Twisted says "this transport is secure"; the TCP
  socket options ISSLTransport inherits are not a bytestream's);
  ``getPeerCertificate`` and ``getHandle`` answer from the TLS connection.

Roles: ``normal=True`` makes the bytestream's initiator (the party that
offered it: ``weAreInitiator``) the TLS client, as the connecting party is
for TCP, whichever side connected the SOCKS5 socket; ``normal=False`` swaps
them.  XEP-0246 makes the stream's initiator the client, so an e2e stream
calls ``startTLS(options)``.

Closing under TLS: ``loseConnection`` sends close_notify and closes the
stream once the peer's close_notify arrived (Twisted's TLS answers a
close_notify with its own at once), so TLS offers no half-close and a
stream that had ``loseWriteConnection`` no longer does
(``stream.loseWriteConnection`` becomes ``None``, which is what
``getattr(stream, "loseWriteConnection", None)`` asks).  An end of the
bytestream without close_notify reaches the application as
``ConnectionLost`` (a truncation), an error of the bytestream as itself
(:func:`ending`).  The end reaches the TLS layer on a later reactor turn
(``stream.clock``), never from inside one of the layer's own calls: the
layer is not reentrant (it drops its connection in ``connectionLost`` and
may still be using it), and Twisted's TCP never does that either.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides


class _Bypass:
    """
    The stream as its TLS layer sees it: the stream's class methods, under
    the TLS ones that shadow them on the instance (``_BypassTLS`` of
    ``twisted.internet._newtls``).
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self._class = type(stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def write(self, data: bytes) -> None:
        self._class.write(self._stream, data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self._class.writeSequence(self._stream, data)

    def loseConnection(self) -> None:
        self._class.loseConnection(self._stream)

    def abortConnection(self) -> None:
        self._class.abortConnection(self._stream)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._class.registerProducer(self._stream, producer, streaming)

    def unregisterProducer(self) -> None:
        self._class.unregisterProducer(self._stream)


def ending(layer: Any, reason: Failure) -> None:
    """
    The bytestream under ``layer`` ends with ``reason``.  If it is an error
    and TLS has no error of its own, the application is to get it rather than
    the ``ConnectionLost`` the layer makes of a missing close_notify: it says
    why (``BytestreamBroken`` with the method's reason).  The layer keeps the
    first reason it is given in ``_reason``, a private attribute that has
    been there since Twisted 11.1.
    """
    if reason.check(ConnectionDone) is None and getattr(layer, "_reason", None) is None:
        layer._reason = reason


def startTLS(stream: Any, contextFactory: Any, normal: bool = True) -> None:
    """Put a TLS layer between ``stream`` and its protocol (module docstring)."""
    if stream._tls is not None:
        raise RuntimeError("TLS is already started on %r" % (stream,))
    if stream.protocol is None:
        raise RuntimeError("startTLS on %r before a protocol is attached" % (stream,))
    client = bool(stream.weAreInitiator) == bool(normal)
    cls = type(stream)
    producer, streaming = stream.producer, stream.streamingProducer
    if producer is not None:
        cls.unregisterProducer(stream)

    factory = TLSMemoryBIOFactory(contextFactory, client, None, stream.clock)
    layer = factory.protocol(factory, stream.protocol, False)
    stream._tls = layer
    stream.protocol = layer

    # The layer may replace its own ``write`` (BufferingTLSTransport does
    # when it is lost), hence the look-up at each call.
    stream.write = lambda data: layer.write(data)
    stream.writeSequence = lambda data: layer.writeSequence(data)
    stream.loseConnection = layer.loseConnection
    stream.registerProducer = layer.registerProducer
    stream.unregisterProducer = layer.unregisterProducer

    def abortConnection() -> None:
        if layer.getHandle() is None:  # the layer is gone already
            cls.abortConnection(stream)
        else:
            layer.abortConnection()

    stream.abortConnection = abortConnection
    if getattr(cls, "loseWriteConnection", None) is not None:
        stream.loseWriteConnection = None
    alsoProvides(stream, ISSLTransport)

    layer.makeConnection(_Bypass(stream))
    if producer is not None:
        stream.registerProducer(producer, streaming)


__all__ = ["startTLS", "ending"]
