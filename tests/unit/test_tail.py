"""
Stranded tails re-sent in-band (issue 8, soak: Prosody 0.12's proxy65 can
hold up to a few KiB of one direction, and closes both legs when a side
half-closes).  A receiver that stalls on announced bytes sends
``<flush received='M'/>``; a sender that kept its last bytes answers with
``<tail offset='M'>`` elements instead of half-closing the transport, and the
receiver drops what the transport brings of the same bytes later.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd import ns
from bytestreamd.links import lifecycle as lc
from bytestreamd.links.confirm import EndChannel
from bytestreamd.links.lifecycle import LinkLifecycle
from bytestreamd.local.sockets import LinkSocketFactory
from bytestreamd.local.splice import Splice
from bytestreamd.wire import end as wire
from tests.helpers import ConnectionHarness, parseXml
from tests.unit.test_local import FakeStream

BOB = JID("bob@example.org/daemon")


class WireTests(SynchronousTestCase):
    def test_tailRoundTrip(self):
        tail = wire.Tail("s1", 4096, b"\x00stranded\xff")
        element = tail.toElement()
        self.assertEqual(element.name, "tail")
        self.assertEqual(wire.parse(element), tail)

    def test_flushWithAndWithoutReceived(self):
        self.assertEqual(wire.parse(wire.Flush("s1", 7).toElement()), wire.Flush("s1", 7))
        element = wire.Flush("s1").toElement()
        self.assertIsNone(element.getAttribute("received"))
        self.assertEqual(wire.parse(element), wire.Flush("s1"))

    def test_malformedTails(self):
        for xml in ("<tail xmlns='%s' sid='s' offset='1'>not base64!</tail>",
                    "<tail xmlns='%s' sid='s' offset='-1'>AA==</tail>",
                    "<tail xmlns='%s' sid='s'>AA==</tail>",
                    "<tail xmlns='%s' sid='s' offset='0'><x/></tail>"):
            self.assertRaises(wire.MalformedEnd, wire.parse, parseXml(xml % ns.NS_END))
        big = wire.Tail("s", 0, b"x" * (wire.TAIL_CHUNK + 1))
        self.assertRaises(wire.MalformedEnd, big.toElement)

    def test_flushReceivedMustBeACount(self):
        self.assertRaises(wire.MalformedEnd, wire.parse, parseXml(
            "<flush xmlns='%s' sid='s' received='x'/>" % ns.NS_END))


class ChannelTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.channel = EndChannel(requestTimeout=5)
        self.h.addHandler(self.channel)
        self.session = self.channel.open(BOB, "sid1", None, None, None)
        self.got = []
        self.session.onFlush = lambda *args: self.got.append(("flush",) + args)
        self.session.onTail = lambda offset, data: self.got.append(("tail", offset, data))

    def test_tailIsSentInChunks(self):
        data = bytes(range(256)) * 100  # 25600 bytes: two chunks
        self.session.sendTail(1000, data)
        tails = [wire.parse(iq.firstChildElement()) for iq in self.h.sent]
        self.assertEqual([(t.offset, len(t.data)) for t in tails],
                         [(1000, wire.TAIL_CHUNK), (1000 + wire.TAIL_CHUNK,
                                                    len(data) - wire.TAIL_CHUNK)])
        self.assertEqual(b"".join(t.data for t in tails), data)

    def test_flushAndTailAreRouted(self):
        self.h.receive("<iq type='set' id='1' from='%s'><flush xmlns='%s' sid='sid1' "
                       "received='5'/></iq>" % (BOB.full(), ns.NS_END))
        self.h.receive("<iq type='set' id='2' from='%s'><flush xmlns='%s' sid='sid1'/>"
                       "</iq>" % (BOB.full(), ns.NS_END))
        self.h.receive("<iq type='set' id='3' from='%s'><tail xmlns='%s' sid='sid1' "
                       "offset='5'>AAE=</tail></iq>" % (BOB.full(), ns.NS_END))
        self.assertEqual(self.got, [("flush", 5), ("flush",), ("tail", 5, b"\x00\x01")])


class LifecycleTests(SynchronousTestCase):
    def setUp(self):
        self.a = LinkLifecycle(True, 10)
        self.a.localData(8192)
        self.a.localEnded()

    def test_keptBytesGoInBand(self):
        self.assertEqual(self.a.peerAskedFlush(4096, 0), [lc.SendTail(4096)])

    def test_notKeptAnyMoreFallsBackToHalfClose(self):
        self.assertEqual(self.a.peerAskedFlush(4096, 5000), [lc.HalfCloseTransport()])

    def test_nothingMissingIsNothingToDo(self):
        self.assertEqual(self.a.peerAskedFlush(8192, 0), [])


class Channel:
    def __init__(self):
        self.sent = []
        self.onTail = None

    def sendEOF(self, sent):
        self.sent.append(("eof", sent))

    def sendEnd(self, end):
        self.sent.append(("end", end.status))

    def sendFlush(self, received=None):
        self.sent.append(("flush", received))

    def sendTail(self, offset, data):
        self.sent.append(("tail", offset, data))


class RelayedStream(FakeStream):
    relayed = True


class SpliceTests(SynchronousTestCase):
    def makeSide(self):
        clock, channel = Clock(), Channel()
        splice = Splice(1 << 20, lambda reason: None, clock=clock)
        local = LinkSocketFactory("x", splice).buildProtocol(None)
        transport = StringTransport()
        local.makeConnection(transport)
        stream = RelayedStream()
        splice.streamReady(stream, LinkLifecycle(True, 30.0), channel)
        return splice, local, transport, stream, channel, clock

    def test_senderKeepsItsLastBytesAndSendsTheMissingOnes(self):
        splice, local, transport, stream, channel, clock = self.makeSide()
        splice.tailKeep = 100
        for i in range(10):
            local.dataReceived(bytes([i]) * 50)
        local.readConnectionLost()
        self.assertEqual(channel.sent, [("eof", 500)])
        splice.peerAskedFlush(420)
        self.assertEqual(channel.sent[-1], ("tail", 420, bytes([8]) * 30 + bytes([9]) * 50))
        self.assertFalse(stream.closed)  # no half-close: the relay keeps both legs

    def test_tooOldFallsBackToHalfClose(self):
        splice, local, transport, stream, channel, clock = self.makeSide()
        splice.tailKeep = 100
        for i in range(10):
            local.dataReceived(bytes([i]) * 50)
        local.readConnectionLost()
        splice.peerAskedFlush(0)
        self.assertTrue(stream.closed)  # FakeStream: loseConnection (no half-close)
        self.assertEqual([s for s in channel.sent if s[0] == "tail"], [])

    def test_receiverAsksWithItsCountAndDropsDuplicates(self):
        splice, local, transport, stream, channel, clock = self.makeSide()
        payload = bytes(range(200))
        stream.protocol.dataReceived(payload[:120])  # 80 stranded in the relay
        splice.peerEOF(200)
        clock.advance(splice.stallTimeout + 0.1)
        self.assertIn(("flush", 120), channel.sent)
        channel.onTail(100, payload[100:])  # overlaps what arrived: only news counts
        stream.protocol.dataReceived(payload[120:])  # the relay lets go after all
        self.assertEqual(transport.value(), payload)
        self.assertEqual(splice.lifecycle.delivered, 200)

    def test_aGapIsNotUsed(self):
        splice, local, transport, stream, channel, clock = self.makeSide()
        stream.protocol.dataReceived(b"x" * 10)
        splice.peerEOF(100)
        splice.peerTail(50, b"y" * 50)
        self.assertEqual(splice.lifecycle.delivered, 10)

    def test_notRelayedKeepsNothing(self):
        clock, channel = Clock(), Channel()
        splice = Splice(1 << 20, lambda reason: None, clock=clock)
        local = LinkSocketFactory("x", splice).buildProtocol(None)
        local.makeConnection(StringTransport())
        splice.streamReady(FakeStream(), LinkLifecycle(True, 30.0), channel)
        local.dataReceived(b"x" * 10)
        self.assertIsNone(splice._kept)
        self.assertIsNone(channel.onTail)
