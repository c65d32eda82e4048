"""
The local side of a link: its UNIX socket (one client at a time) and the
connection to a ``[services]`` endpoint.  What joins that connection to the
bytestream is :mod:`bytestreamd.local.splice` (re-exported here).

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
from typing import Optional

from twisted.internet import interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from bytestreamd.local.splice import LinkClosed, RemoteProtocol, Splice  # noqa: F401 (re-exported)

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
        # half close).
        pass

    def connectionLost(self, reason=None):
        self.splice.localLost(reason)


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
    refused with :class:`~bytestreamd.runtime.RuntimeDirError` naming the
    path, and left alone.  On failure nothing of ours is left behind, so
    the caller has nothing to clean up (and must not remove the path).
    """
    from bytestreamd.runtime import removeStaleSocket
    removeStaleSocket(path, "socket (a link socket)")
    port = reactor.listenUNIX(path, factory, mode=mode, wantPID=False)
    if gid is not None:
        try:
            os.chown(path, -1, gid)
        except BaseException:
            port.stopListening()  # removes the socket file it made
            raise
    return port
