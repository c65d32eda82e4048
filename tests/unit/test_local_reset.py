"""
Soak finding E: a local client that closed after reading everything was
reported as a reset ("went away without reading everything") when the
reactor saw its hang-up while not reading the socket.

Twisted's poll reactors report a hang-up on a descriptor they are not
reading (a paused reader, or a read side that already had its EOF) as
``ConnectionLost``, whatever happened.  The splice now looks at the socket
just before Twisted closes it (SO_ERROR, SIOCOUTQ, whether it was being
read) and only a real reset counts.  Real sockets (a socketpair) play the
kernel's part; the transport around them is a fake.
"""

import socket

from twisted.internet import error
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.links import lifecycle as lc  # noqa: F401  (import order: links first)
from bytestreamd.local.sockets import LinkSocketFactory
from bytestreamd.local.splice import Splice, lookAtLocal

from tests.unit.test_local import FakeStream


class SocketTransport(StringTransport):
    """StringTransport over a real socket, ending the way Twisted's do."""

    def __init__(self, sock):
        StringTransport.__init__(self)
        self.sock = sock

    def getHandle(self):
        return self.sock

    def doRead(self):
        """recv() as Twisted's does it: an error is ConnectionLost."""
        try:
            data = self.sock.recv(65536)
        except OSError:
            return error.ConnectionLost()
        if not data:
            return error.ConnectionDone()
        self.protocol.dataReceived(data)

    def connectionLost(self, reason):
        # Twisted closes the socket, then tells the protocol.
        self.sock.close()
        self.protocol.connectionLost(reason)


class LocalResetTests(SynchronousTestCase):
    def setUp(self):
        self.ours, self.client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(self.client.close)
        self.addCleanup(lambda: self.ours.fileno() != -1 and self.ours.close())
        self.ended = []
        self.splice = Splice(1024, self.ended.append)
        self.local = LinkSocketFactory("abc", self.splice).buildProtocol(None)
        self.transport = SocketTransport(self.ours)
        self.transport.protocol = self.local
        self.local.makeConnection(self.transport)
        self.lifecycle = lc.LinkLifecycle(True, 30.0, checksDrain=True)
        self.splice.streamReady(FakeStream(), self.lifecycle)

    def hangUp(self, reading):
        """
        The client is gone.  Reading, the reactor calls doRead (recv says
        what happened); not reading, it sees only the hang-up, and calls
        it ConnectionLost.
        """
        why = error.ConnectionLost()
        if reading:
            why = self.transport.doRead()
        self.transport.connectionLost(Failure(why))

    def test_hangUpWhileNotReadingAfterReadingEverythingIsClean(self):
        self.ours.send(b"answer")
        self.assertEqual(self.client.recv(100), b"answer")
        self.client.close()
        self.hangUp(reading=False)
        self.assertFalse(self.lifecycle.localReset)

    def test_hangUpWhileNotReadingWithBytesUnreadIsAReset(self):
        self.ours.send(b"answer")
        self.client.close()  # unread: the kernel resets our socket
        self.hangUp(reading=False)
        self.assertTrue(self.lifecycle.localReset)

    def test_errorWhileReadingIsAReset(self):
        # recv() says ECONNRESET (and clears SO_ERROR): the failed read is the evidence.
        self.ours.send(b"answer")
        self.client.close()
        self.hangUp(reading=True)
        self.assertTrue(self.lifecycle.localReset)

    def test_eofWhileReadingIsClean(self):
        self.ours.send(b"answer")
        self.client.recv(100)
        self.client.close()
        self.assertIsInstance(self.transport.doRead(), error.ConnectionDone)
        self.transport.connectionLost(Failure(error.ConnectionDone()))
        self.assertFalse(self.lifecycle.localReset)

    def test_cleanCloseIsClean(self):
        self.client.close()
        self.transport.connectionLost(Failure(error.ConnectionDone()))
        self.assertFalse(self.lifecycle.localReset)

    def test_bytesLeftInOurBufferAreALoss(self):
        self.transport.write(b"never sent")  # StringTransport keeps it: pending
        self.transport.pendingBytes = lambda: len(self.transport.value())
        self.client.close()
        self.hangUp(reading=False)
        self.assertTrue(self.lifecycle.localReset)

    def test_lookAtLocal(self):
        self.ours.send(b"x")
        look = lookAtLocal(self.transport)
        # SIOCOUTQ counts the kernel's memory for the byte, not the byte.
        self.assertEqual((look.reset, look.unread > 0), (False, True))
        self.client.close()
        look = lookAtLocal(self.transport)
        self.assertTrue(look.reset)
