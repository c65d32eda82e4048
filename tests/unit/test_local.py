"""
The splice between a link's local connection and its bytestream, with
StringTransport on the local side and a recording fake bytestream.
"""

from twisted.internet import error
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.errors import BytestreamBroken
from bytestreamd.local.sockets import LinkSocketFactory, Splice
from tests.unit.fakes import FakeStream




class SpliceTests(SynchronousTestCase):
    def setUp(self):
        self.ended = []
        self.splice = Splice(10, self.ended.append)
        self.factory = LinkSocketFactory("abc", self.splice)
        self.local = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.local.makeConnection(self.transport)
        self.stream = FakeStream()

    def test_heldUntilGoodThenFlushedInOrder(self):
        self.local.dataReceived(b"hello ")
        self.local.dataReceived(b"world")
        self.assertEqual(self.stream.written, [])
        self.splice.streamReady(self.stream)
        self.assertEqual(b"".join(self.stream.written), b"hello world")
        self.local.dataReceived(b"!")
        self.assertEqual(b"".join(self.stream.written), b"hello world!")

    def test_holdIsBoundedByPausingTheLocalSocket(self):
        self.local.dataReceived(b"x" * 9)
        self.assertEqual(self.transport.producerState, "producing")
        self.local.dataReceived(b"x" * 2)
        self.assertEqual(self.transport.producerState, "paused")
        self.splice.streamReady(self.stream)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(len(b"".join(self.stream.written)), 11)

    def test_producersRegisteredBothWays(self):
        self.splice.streamReady(self.stream)
        self.assertIs(self.stream.producer, self.transport)
        # The local transport's producer is the stream behind a forwarder
        # whose stopProducing leaves the link's end to the lifecycle.
        self.transport.producer.pauseProducing()
        self.assertTrue(self.stream.paused)
        self.transport.producer.resumeProducing()
        self.assertFalse(self.stream.paused)
        self.transport.producer.stopProducing()
        self.assertFalse(self.stream.closed)

    def test_remoteDataReachesLocal(self):
        self.splice.streamReady(self.stream)
        self.stream.protocol.dataReceived(b"from peer")
        self.assertEqual(self.transport.value(), b"from peer")

    def test_localEOFBeforeGoodClosesAfterFlush(self):
        self.local.dataReceived(b"data")
        self.local.readConnectionLost()
        self.assertFalse(self.stream.closed)
        self.splice.streamReady(self.stream)
        self.assertEqual(b"".join(self.stream.written), b"data")
        self.assertTrue(self.stream.closed)

    def test_localEOFAfterGoodClosesStream(self):
        self.splice.streamReady(self.stream)
        self.local.readConnectionLost()
        self.assertTrue(self.stream.closed)

    def test_cleanRemoteCloseIsEOFAfterData(self):
        self.splice.streamReady(self.stream)
        self.stream.protocol.dataReceived(b"last bytes")
        self.stream.protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.transport.value(), b"last bytes")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.ended), 1)
        self.assertTrue(self.ended[0].check(error.ConnectionDone))

    def test_brokenRemoteAbortsLocal(self):
        aborted = []
        self.transport.abortConnection = lambda: aborted.append(True)
        self.splice.streamReady(self.stream)
        self.stream.protocol.connectionLost(Failure(BytestreamBroken("peer vanished")))
        self.assertEqual(aborted, [True])
        self.assertEqual(self.ended[0].value.reason, "peer vanished")

    def test_secondLocalClientRefused(self):
        other = self.factory.buildProtocol(None)
        t = StringTransport()
        other.makeConnection(t)
        self.assertIn(b"already has a local client", t.value())
        self.assertTrue(t.disconnecting)

    def test_streamBeforeLocalClientWaits(self):
        # Issue 6 (f): the stream is watched from GOOD on -- a peer's close
        # or a broken stream is seen with no local client -- but it is kept
        # paused (bytes held, backpressure to the peer) until one connects.
        splice = Splice(10, self.ended.append)
        splice.streamReady(self.stream)
        self.assertIsNotNone(self.stream.protocol)
        self.assertTrue(self.stream.paused)
        local = LinkSocketFactory("x", splice).buildProtocol(None)
        local.makeConnection(StringTransport())
        self.assertFalse(self.stream.paused)
        self.assertIs(self.stream.producer, local.transport)

    def test_brokenStreamWithoutLocalClientIsReported(self):
        splice = Splice(10, self.ended.append)
        splice.streamReady(self.stream)
        self.stream.protocol.connectionLost(Failure(BytestreamBroken("peer vanished")))
        self.assertEqual(self.ended[0].value.reason, "peer vanished")


class HalfCloseTests(SynchronousTestCase):
    """A method that half-closes (SOCKS5) keeps the other direction open."""

    def test_remoteEOFHalfClosesLocalAndKeepsReading(self):
        ended = []
        splice = Splice(10, ended.append)
        local = LinkSocketFactory("x", splice).buildProtocol(None)
        transport = StringTransport()
        halfClosed = []
        transport.loseWriteConnection = lambda: halfClosed.append(True)
        local.makeConnection(transport)
        stream = FakeStream()
        splice.streamReady(stream)
        stream.protocol.dataReceived(b"answer")
        stream.protocol.readConnectionLost()
        self.assertEqual(halfClosed, [True])
        self.assertFalse(transport.disconnecting)
        self.assertEqual(ended, [])
        local.dataReceived(b"more from the local side")
        self.assertIn(b"more from the local side", b"".join(stream.written))
        local.readConnectionLost()
        self.assertTrue(stream.closed)
