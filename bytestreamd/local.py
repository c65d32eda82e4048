"""
The local side of a link: its UNIX socket, and the splice between the local
connection and the bytestream.

The splice follows ``twisted.protocols.portforward``: two ordinary protocols,
each writing into the other's transport, with each transport registered as a
streaming producer on the other.  A slow local reader therefore pauses the
bytestream (which stops acknowledging the peer: backpressure reaches the
remote sender), and a bytestream that cannot send fast enough pauses the local
socket.  Before the link is GOOD, local bytes are held up to ``holdLimit``;
beyond that the local socket is paused, so nothing is dropped.

Contract (INTERFACE.md "Files and sockets"):

* one local client at a time; a second connection is closed at once;
* local EOF closes the link cleanly once every byte written was delivered
  -- on a method that can half-close (SOCKS5) only our sending side, so the
  peer's answer still arrives (ssh-style), on IBB the whole link;
* a clean remote close (or a remote half-close) delivers every byte, then EOF;
* BAD/ERR aborts the local connection at once (what was buffered for it is
  dropped).  A UNIX socket has no way to carry an error -- the client sees an
  EOF -- so the truth is in the ``650 LINK ... ERR reason=...`` event, which
  bytestreamctl checks before it reports success.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

from twisted.internet import error, interfaces, protocol
from twisted.logger import Logger
from twisted.python import failure
from zope.interface import implementer

log = Logger()


@implementer(interfaces.IHalfCloseableProtocol)
class LocalProtocol(protocol.Protocol):
    """The protocol on the accepted local connection; talks to its Splice."""

    splice: "Splice"

    def connectionMade(self):
        self.splice.localConnected(self)

    def dataReceived(self, data: bytes):
        self.splice.fromLocal(data)

    def readConnectionLost(self):
        self.splice.localEOF()

    def writeConnectionLost(self):
        # The local reader went away; the writer side may go on (ssh-style
        # half close).  Stop reading from the bytestream: nobody takes it.
        pass

    def connectionLost(self, reason=None):
        self.splice.localLost(reason)


@implementer(interfaces.IHalfCloseableProtocol)
class RemoteProtocol(protocol.Protocol):
    """
    The protocol attached to the bytestream; talks to its Splice.

    Half-closeable: a method that can carry a half-close (SOCKS5: TCP)
    reports the peer's EOF as ``readConnectionLost`` and keeps the other
    direction open; IBB, which has no half-close, just ends the stream.
    """

    splice: "Splice"

    def dataReceived(self, data: bytes):
        self.splice.fromRemote(data)

    def readConnectionLost(self):
        self.splice.remoteEOF()

    def writeConnectionLost(self):
        pass

    def connectionLost(self, reason=None):
        self.splice.remoteLost(reason)


class Splice:
    """
    Joins one local connection and one bytestream.

    ``onRemoteClosed(reason)`` is called once when the bytestream has ended
    (``ConnectionDone`` for a clean close, anything else for a failure);
    the link layer turns that into CLOS or ERR.
    """

    def __init__(self, holdLimit: int, onRemoteClosed: Callable[[failure.Failure], None]):
        self.holdLimit = holdLimit
        self.onRemoteClosed = onRemoteClosed
        self.local: Optional[LocalProtocol] = None
        self.stream = None
        self._held: List[bytes] = []
        self._heldBytes = 0
        self._localPaused = False
        self._localEOF = False
        self._remoteDone = False
        self._ended = False

    # --- local side -------------------------------------------------------

    def localConnected(self, proto: LocalProtocol) -> None:
        self.local = proto
        if self.stream is not None:
            self._join()

    def fromLocal(self, data: bytes) -> None:
        if self.stream is not None and not self._held:
            self.stream.write(data)
            return
        self._held.append(data)
        self._heldBytes += len(data)
        if self._heldBytes >= self.holdLimit and not self._localPaused:
            self._localPaused = True
            self.local.transport.pauseProducing()

    def localEOF(self) -> None:
        self._localEOF = True
        if self.stream is not None and not self._held:
            self.stream.loseConnection()

    def localLost(self, reason) -> None:
        if self.local is None:
            return
        self.local = None
        self._localEOF = True
        if self.stream is not None and not self._remoteDone:
            # Whether the client closed cleanly or vanished, what it wrote
            # is complete as far as anyone can tell: close after delivering.
            self.stream.unregisterProducer()
            if not self._held:
                self.stream.loseConnection()

    # --- remote side ------------------------------------------------------

    def streamReady(self, stream) -> None:
        """The link is GOOD: start moving bytes once a local client is here."""
        self.stream = stream
        if self.local is not None:
            self._join()

    def _join(self) -> None:
        remote = RemoteProtocol()
        remote.splice = self
        self.stream.attachProtocol(remote)
        if self._remoteDone:
            return
        localTransport = self.local.transport
        self.stream.registerProducer(localTransport, True)
        localTransport.registerProducer(self.stream, True)
        held, self._held, self._heldBytes = self._held, [], 0
        if held:
            self.stream.writeSequence(held)
        if self._localPaused:
            self._localPaused = False
            localTransport.resumeProducing()
        if self._localEOF:
            self.stream.loseConnection()

    def fromRemote(self, data: bytes) -> None:
        if self.local is not None:
            self.local.transport.write(data)

    def remoteEOF(self) -> None:
        """The peer will send nothing more: pass the EOF on, keep reading."""
        if self.local is not None:
            transport = self.local.transport
            loseWrite = getattr(transport, "loseWriteConnection", None)
            if loseWrite is not None:
                transport.unregisterProducer()
                loseWrite()

    def remoteLost(self, reason) -> None:
        self._remoteDone = True
        if self.local is not None:
            transport = self.local.transport
            transport.unregisterProducer()
            if reason is None or reason.check(error.ConnectionDone):
                transport.loseConnection()
            else:
                transport.abortConnection()
        self._end(reason)

    def _end(self, reason) -> None:
        if not self._ended:
            self._ended = True
            self.onRemoteClosed(reason)

    # --- link layer -------------------------------------------------------

    def abort(self) -> None:
        """The link ended BAD/ERR or was torn down: close the local side now."""
        if self.local is not None:
            self.local.transport.abortConnection()
        self.local = None

    @property
    def hasLocal(self) -> bool:
        return self.local is not None


class LinkSocketFactory(protocol.Factory):
    """
    Accepts the single local client of one link; a second concurrent
    connection is closed at once (and logged).
    """

    def __init__(self, linkId: str, splice: Splice):
        self.linkId = linkId
        self.splice = splice
        self.busy = False

    def buildProtocol(self, addr):
        if self.busy:
            log.info("link {id}: refused a second local connection", id=self.linkId)
            return _Refuse()
        self.busy = True
        p = LocalProtocol()
        p.splice = self.splice
        return p


class _Refuse(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"bytestreamd: this link already has a local client\n")
        self.transport.loseConnection()


class ServiceFactory(protocol.ClientFactory):
    """
    The local side of a link accepted for a ``[services]`` endpoint: the
    connection to that endpoint plays the part of the link socket's client.
    """

    def __init__(self, splice: Splice):
        self.splice = splice

    def buildProtocol(self, addr):
        p = LocalProtocol()
        p.splice = self.splice
        return p


def listenLinkSocket(reactor, path: str, factory: protocol.Factory, mode: int,
                     gid: Optional[int]):
    """
    Listen on ``path`` with ``mode`` (and ``gid``); returns the port.  What
    is at ``path`` already is removed only if it is a stale socket of ours
    (:func:`bytestreamd.runtime.removeStaleSocket`); anything else is
    refused with a ``550`` naming the path, and left alone.
    """
    from bytestreamd.errors import ControlError
    from bytestreamd.runtime import RuntimeDirError, removeStaleSocket
    try:
        removeStaleSocket(path, "socket (a link socket)")
    except RuntimeDirError as e:
        raise ControlError("link socket %s" % (e,))
    port = reactor.listenUNIX(path, factory, mode=mode, wantPID=False)
    if gid is not None:
        os.chown(path, -1, gid)
    return port
