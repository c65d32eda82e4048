"""
BytestreamTransport (bytestreamd.transport.base) on a minimal method of the
test's own: identity from birth, holding until attached, pause and resume,
the order of the end (held bytes, EOF, connectionLost; an error at once),
the watchers of an unattached stream, and which streams may half-close.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer
from zope.interface.verify import verifyObject

from bytestreamd.errors import BytestreamBroken
from bytestreamd.interfaces import IBytestream, StreamContext
from bytestreamd.methods.ibb_stream import IBBStream
from bytestreamd.methods.s5b_stream import S5BStream
from bytestreamd.transport.base import BytestreamTransport
from bytestreamd.wire.s5b import StreamHost

ALICE = JID("alice@example.org/daemon")
BOB = JID("bob@example.net/daemon")


def ctx(sid: str = "s1", weAreInitiator: bool = True) -> StreamContext:
    return StreamContext(sid, ALICE, BOB, weAreInitiator)


class FakeMethodStream(BytestreamTransport):
    """A method that records what the base class asks of it."""

    method = "fake"

    def __init__(self, *args: Any, **kwargs: Any):
        BytestreamTransport.__init__(self, *args, **kwargs)
        self.calls: List[Any] = []
        self.written = b""
        self.closed = False

    def receive(self, data: bytes, token: Any = None) -> None:
        """A method's receive path: the fast path inline, else hold."""
        self.bytesReceived += len(data)
        if self.protocol is not None and not self._paused and not self._held:
            self.protocol.dataReceived(data)
        else:
            self._hold(data, token)

    def write(self, data: bytes) -> None:
        self.written += data

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.calls.append("loseConnection")
        self.closed = True

    def abortConnection(self) -> None:
        self.calls.append("abortConnection")
        self._ended(Failure(ConnectionAborted()))

    def _closing(self) -> bool:
        return self.closed or BytestreamTransport._closing(self)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer, self.streamingProducer = producer, streaming

    def unregisterProducer(self) -> None:
        self.producer = None

    def stopProducing(self) -> None:
        self.loseConnection()

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None

    def _released(self, token: Any) -> None:
        self.calls.append(("released", token))

    def _pauseReading(self) -> None:
        self.calls.append("pauseReading")

    def _drained(self) -> None:
        self.calls.append("drained")


class Events(Protocol):
    """Records what it is told, in order."""

    def __init__(self) -> None:
        self.events: List[Any] = []

    def connectionMade(self) -> None:
        self.events.append("made")

    def dataReceived(self, data: bytes) -> None:
        self.events.append(data)

    def connectionLost(self, reason: Failure) -> None:
        self.events.append(("lost", reason.type))

    @property
    def data(self) -> bytes:
        return b"".join(e for e in self.events if isinstance(e, bytes))


@implementer(IHalfCloseableProtocol)
class HalfCloseEvents(Events):
    def readConnectionLost(self) -> None:
        self.events.append("eof")

    def writeConnectionLost(self) -> None:
        self.events.append("writeClosed")


class IdentityTests(SynchronousTestCase):
    def test_knownFromBirth(self):
        stream = FakeMethodStream(ctx("sid-7", weAreInitiator=False), clock=object())
        self.assertEqual((stream.sessionId, stream.sid), ("sid-7", "sid-7"))
        self.assertEqual((stream.peerJID, stream.localJID), (ALICE, BOB))
        self.assertIs(stream.weAreInitiator, False)
        verifyObject(IBytestream, stream)

    def test_sessionAndTransportSid(self):
        # A Jingle session may own several transports, each with its own sid.
        stream = FakeMethodStream(StreamContext("ibb-2", ALICE, BOB, True,
                                                session="jingle-1"))
        self.assertEqual((stream.sessionId, stream.sid), ("jingle-1", "ibb-2"))

    def test_identifiedOnce(self):
        stream = FakeMethodStream()
        self.assertIsNone(stream.sid)
        stream._identify(ctx())
        self.assertEqual(stream.peerJID, BOB)
        self.assertRaises(RuntimeError, stream._identify, ctx("other"))
        self.assertEqual(stream.sid, "s1")

    def test_s5bBoundOnceWhereChosen(self):
        stream = S5BStream(StringTransport())
        host = StreamHost(ALICE, "192.0.2.1", 7777)
        stream.bind(ctx("s9", weAreInitiator=False), host, relayed=True)
        self.assertEqual((stream.sid, stream.sessionId, stream.peerJID), ("s9", "s9", ALICE))
        self.assertIs(stream.streamhost, host)
        self.assertTrue(stream.relayed)
        self.assertRaises(RuntimeError, stream.bind, ctx("s9"), host, relayed=False)

    def test_onlyHalfCloseableMethodsHaveLoseWriteConnection(self):
        # The link layer asks getattr(stream, "loseWriteConnection", None).
        self.assertIsNone(getattr(BytestreamTransport, "loseWriteConnection", None))
        self.assertIsNone(getattr(IBBStream, "loseWriteConnection", None))
        self.assertIsNotNone(getattr(S5BStream(StringTransport()), "loseWriteConnection", None))
        self.assertFalse(getattr(S5BStream(StringTransport()), "relayed"))


class ReceiveTests(SynchronousTestCase):
    def setUp(self):
        self.stream = FakeMethodStream(ctx())
        self.app = Events()

    def test_heldUntilAttachedThenInOrder(self):
        self.stream.receive(b"a", "ack-a")
        self.stream.receive(b"b", "ack-b")
        self.stream.receive(b"", "ack-empty")  # an empty block is acknowledged too
        self.assertEqual(self.stream._heldBytes, 2)
        self.assertEqual(self.stream.calls, [])
        self.stream.attachProtocol(self.app)
        self.assertEqual(self.app.events, ["made", b"a", b"b"])
        self.assertEqual(self.stream.calls, [("released", "ack-a"), ("released", "ack-b"),
                                             ("released", "ack-empty"), "drained"])
        self.stream.receive(b"c")
        self.assertEqual(self.app.events[-1], b"c")

    def test_attachOnce(self):
        self.stream.attachProtocol(self.app)
        self.assertRaises(RuntimeError, self.stream.attachProtocol, Events())

    def test_pauseHoldsResumeDelivers(self):
        self.stream.attachProtocol(self.app)
        self.stream.pauseProducing()
        self.assertEqual(self.stream.calls, ["drained", "pauseReading"])
        self.stream.receive(b"x", "ack-x")
        self.assertEqual(self.app.data, b"")
        self.stream.resumeProducing()
        self.assertEqual(self.app.data, b"x")
        self.assertEqual(self.stream.calls[-2:], [("released", "ack-x"), "drained"])

    def test_pauseFromInsideDeliveryStopsIt(self):
        class Pausing(Events):
            def dataReceived(inner, data):
                Events.dataReceived(inner, data)
                inner.transport.pauseProducing()

        app = Pausing()
        for block in (b"1", b"2", b"3"):
            self.stream.receive(block)
        self.stream.attachProtocol(app)
        self.assertEqual(app.data, b"1")
        self.stream.resumeProducing()
        self.assertEqual(app.data, b"12")
        self.assertEqual(len(self.stream._held), 1)


class EndTests(SynchronousTestCase):
    def setUp(self):
        self.stream = FakeMethodStream(ctx())

    def test_heldThenEOFThenEnd(self):
        app = HalfCloseEvents()
        self.stream.receive(b"last")
        self.stream._peerEnded()
        self.stream._ended(Failure(ConnectionDone()))
        self.assertTrue(self.stream.disconnecting)
        self.assertFalse(self.stream.connected)
        self.stream.attachProtocol(app)
        self.assertEqual(app.events, ["made", b"last", "eof", ("lost", ConnectionDone)])
        self.assertNotIn("loseConnection", self.stream.calls)  # already ended

    def test_eofToHalfCloseableKeepsWriting(self):
        app = HalfCloseEvents()
        self.stream.attachProtocol(app)
        self.stream._peerEnded()
        self.stream._peerEnded()  # reported twice: told once
        self.assertEqual(app.events, ["made", "eof"])
        self.assertNotIn("loseConnection", self.stream.calls)
        self.assertTrue(self.stream.connected)

    def test_eofToPlainProtocolClosesTheStream(self):
        app = Events()
        self.stream.attachProtocol(app)
        self.stream.receive(b"all")
        self.stream._peerEnded()
        self.assertIn("loseConnection", self.stream.calls)
        self.assertEqual(app.events, ["made", b"all"])  # connectionLost when it ends
        self.stream._ended(Failure(ConnectionDone()))
        self.assertEqual(app.events[-1], ("lost", ConnectionDone))

    def test_errorAtOnceDroppingWhatIsHeld(self):
        app = HalfCloseEvents()
        self.stream.attachProtocol(app)
        self.stream.pauseProducing()
        self.stream.receive(b"held", "ack")
        self.stream._peerEnded()
        self.stream._ended(Failure(BytestreamBroken("peer vanished")))
        self.assertEqual(app.events, ["made", ("lost", BytestreamBroken)])
        self.assertNotIn(("released", "ack"), self.stream.calls)
        self.assertEqual(self.stream._heldBytes, 0)

    def test_cleanEndWaitsForHeldBytesNotForPause(self):
        app = Events()
        self.stream.attachProtocol(app)
        self.stream.pauseProducing()
        self.stream.receive(b"held")
        self.stream._ended(Failure(ConnectionDone()))
        self.assertEqual(app.events, ["made"])
        self.stream.resumeProducing()
        self.assertEqual(app.events, ["made", b"held", ("lost", ConnectionDone)])

    def test_endWhilePausedWithNothingHeld(self):
        # Issue 6 f: the end is news even when nobody reads.
        app = Events()
        self.stream.attachProtocol(app)
        self.stream.pauseProducing()
        self.stream._ended(Failure(ConnectionDone()))
        self.assertEqual(app.events, ["made", ("lost", ConnectionDone)])

    def test_errorReplacesAnUndeliveredCleanEnd(self):
        self.stream.receive(b"x")
        self.stream._ended(Failure(ConnectionDone()))
        self.stream._ended(Failure(BytestreamBroken("broken after all")))
        self.stream._ended(Failure(ConnectionDone()))  # too late to be clean
        app = Events()
        self.stream.attachProtocol(app)
        self.assertEqual(app.events, ["made", ("lost", BytestreamBroken)])

    def test_endedOnce(self):
        app = Events()
        self.stream.attachProtocol(app)
        self.stream._ended(Failure(ConnectionDone()))
        self.stream._ended(Failure(BytestreamBroken("late")))
        self.stream.abortConnection()
        self.assertEqual(app.events, ["made", ("lost", ConnectionDone)])

    def test_abortFromInsideDelivery(self):
        class Aborting(Events):
            def dataReceived(inner, data):
                Events.dataReceived(inner, data)
                inner.transport.abortConnection()

        app = Aborting()
        for block in (b"1", b"2"):
            self.stream.receive(block, block)
        self.stream.attachProtocol(app)
        self.assertEqual(app.events, ["made", b"1", ("lost", ConnectionAborted)])
        self.assertEqual(self.stream.calls, ["abortConnection", ("released", b"1")])


class WatchersTests(SynchronousTestCase):
    def test_firstDataAndLossBeforeAttach(self):
        stream = FakeMethodStream(ctx())
        seen: List[Any] = []
        stream.onFirstData = lambda: seen.append("first")
        stream.onLost = lambda reason: seen.append(reason.type)
        stream.receive(b"a")
        stream.receive(b"b")
        stream._ended(Failure(BytestreamBroken("gone")))
        self.assertEqual(seen, ["first", BytestreamBroken])

    def test_attachClearsWatchers(self):
        stream = FakeMethodStream(ctx())
        seen: List[Any] = []
        stream.onFirstData = lambda: seen.append("first")
        stream.onLost = lambda reason: seen.append("lost")
        stream.attachProtocol(Events())
        self.assertIsNone(stream.onFirstData)
        self.assertIsNone(stream.onLost)
        stream.pauseProducing()
        stream.receive(b"a")
        stream._ended(Failure(ConnectionDone()))
        self.assertEqual(seen, [])


class S5BWatcherTests(SynchronousTestCase):
    def test_attachFromFirstDataLeavesTheSocketReading(self):
        # The SOCKS5 activation grace fires on the first byte and the link
        # may attach (and drain) the stream from inside that call: the
        # socket must not stay paused with nothing held.
        transport = StringTransport()
        stream = S5BStream(transport)
        app = Events()
        stream.onFirstData = lambda: stream.attachProtocol(app)
        stream._dataReceived(b"first")
        self.assertEqual(app.data, b"first")
        self.assertEqual(transport.producerState, "producing")
        stream._dataReceived(b"second")
        self.assertEqual(app.data, b"firstsecond")


class StateTests(SynchronousTestCase):
    def test_connectedAndDisconnecting(self):
        stream = FakeMethodStream(ctx())
        stream.attachProtocol(Events())
        self.assertEqual((stream.connected, stream.disconnecting), (True, False))
        stream.loseConnection()
        self.assertEqual((stream.connected, stream.disconnecting), (True, True))
        stream._ended(Failure(ConnectionDone()))
        self.assertEqual((stream.connected, stream.disconnecting), (False, True))

    def test_noTLSYet(self):
        stream = FakeMethodStream(ctx())
        self.assertIsNone(stream.getPeerCertificate())
        self.assertIsNone(stream.getHandle())
        self.assertRaises(RuntimeError, stream.startTLS, object())

    def test_producerIsPublic(self):
        stream = FakeMethodStream(ctx())
        self.assertIsNone(stream.producer)
        producer = object()
        stream.registerProducer(producer, True)
        self.assertIs(stream.producer, producer)
        transport = StringTransport()
        s5b = S5BStream(transport)
        s5b.registerProducer(producer, True)
        self.assertIs(s5b.producer, producer)
        self.assertTrue(s5b.streamingProducer)
