"""
IBBMethod and IBBStream: single-sided tests against a ConnectionHarness
(every stanza checked), and end-to-end tests with two harnesses joined by
:class:`Pump`, which plays the server: it serialises what one side sent,
parses it as a stream would, stamps ``from`` and dispatches it to the other.
"""

import hashlib
import os

from twisted.internet import defer
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface.verify import verifyObject

from bytestreamd.errors import BytestreamBroken, MethodFailed
from bytestreamd.interfaces import IBytestream, IStreamMethod, StreamContext
from bytestreamd.methods import ibb_stream
from bytestreamd.methods.ibb import IBBMethod
from bytestreamd.ns import NS_IBB, NS_STANZAS
from bytestreamd.wire import ibb as wire
from tests.helpers import ConnectionHarness, parseXml

ALICE = "alice@example.org/daemon"
BOB = "bob@example.net/daemon"
MALLORY = "mallory@example.com/x"


def ctxFor(sid, weAreInitiator, **options):
    return StreamContext(sid, JID(ALICE), JID(BOB), weAreInitiator, dict(options))


def child(stanza, name):
    found = [c for c in stanza.elements() if c.name == name]
    return found[0] if found else None


def condition(stanza):
    error = child(stanza, "error")
    conds = [c.name for c in error.elements() if c.uri == NS_STANZAS and c.name != "text"]
    return conds[0], error.getAttribute("type")


class Recorder(Protocol):
    """Records everything received and how the connection ended."""

    def __init__(self):
        self.received = bytearray()
        self.reason = None
        self.made = False

    def connectionMade(self):
        self.made = True

    def dataReceived(self, data):
        assert self.reason is None, "data after connectionLost"
        self.received += data

    def connectionLost(self, reason):
        assert self.reason is None, "connectionLost twice"
        self.reason = reason


class Producer:
    """A streaming producer that records what it is told."""

    def __init__(self):
        self.paused = False
        self.calls = []

    def pauseProducing(self):
        self.paused = True
        self.calls.append("pause")

    def resumeProducing(self):
        self.paused = False
        self.calls.append("resume")

    def stopProducing(self):
        self.calls.append("stop")


class _Direction:
    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.index = 0
        self.held = False
        self.filter = None
        self._parsed = []
        self.parser = domish.elementStream()
        self.parser.DocumentStartEvent = lambda root: None
        self.parser.ElementEvent = self._parsed.append
        self.parser.DocumentEndEvent = lambda: None
        self.parser.parse("<stream:stream xmlns='jabber:client' "
                          "xmlns:stream='http://etherx.jabber.org/streams'>")

    def step(self):
        output = self.src.stub.output
        if self.held or self.index >= len(output):
            return False
        end = len(output)
        for obj in output[self.index:end]:
            self.parser.parse(obj if isinstance(obj, str) else obj.toXml())
        self.index = end
        parsed, self._parsed[:] = list(self._parsed), []
        sender = self.src.jid.full()
        for element in parsed:
            if not element.getAttribute("from"):
                element["from"] = sender
            if self.filter is not None:
                element = self.filter(element)
                if element is None:
                    continue
            self.dst.stub.send(element)
        return True


class Pump:
    """Two harnesses joined like a server would (in order, stamping from)."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.ab = _Direction(a, b)
        self.ba = _Direction(b, a)

    def flush(self):
        while True:
            moved = self.ab.step() | self.ba.step()
            if not moved:
                self.a.clock.advance(0)
                self.b.clock.advance(0)
                if not (self.ab.step() | self.ba.step()):
                    return


class Base(SynchronousTestCase):
    options = {}

    def makeSide(self, jid, **options):
        harness = ConnectionHarness(jid)
        method = IBBMethod(harness.clock, **dict(self.options, **options))
        harness.addHandler(method)
        return harness, method

    def lastSent(self, harness):
        return harness.sent[-1]


# --- single-sided -----------------------------------------------------------


class MethodTests(Base):
    def setUp(self):
        self.h, self.m = self.makeSide(ALICE)

    def test_interfaces(self):
        self.assertTrue(verifyObject(IStreamMethod, self.m))
        self.assertEqual((self.m.name, self.m.namespace), ("ibb", NS_IBB))

    def test_disco(self):
        features = self.m.getDiscoInfo(JID(BOB), JID(ALICE))
        self.assertEqual([str(f) for f in features], [NS_IBB])
        self.assertEqual(self.m.getDiscoInfo(JID(BOB), JID(ALICE), "node"), [])
        self.assertEqual(self.m.getDiscoItems(JID(BOB), JID(ALICE)), [])

    def test_reexports(self):
        # IBBStream and IBBAddress live in ibb_stream; ibb.py re-exports them
        # so ``from bytestreamd.methods.ibb import IBBStream`` keeps working.
        from bytestreamd.methods import ibb
        self.assertIs(ibb.IBBStream, ibb_stream.IBBStream)
        self.assertIs(ibb.IBBAddress, ibb_stream.IBBAddress)
        self.assertLessEqual({"IBBMethod", "IBBStream", "IBBAddress", "MIN_BLOCK_SIZE"},
                             set(ibb.__all__))

    def test_constructorValidates(self):
        self.assertRaises(ValueError, IBBMethod, self.h.clock, blockSize=70000)
        self.assertRaises(ValueError, IBBMethod, self.h.clock, stanza="presence")
        self.assertRaises(ValueError, IBBMethod, self.h.clock, window=0)


class InitiateTests(Base):
    def setUp(self):
        self.h, self.m = self.makeSide(ALICE)

    def answer(self, iq, error=None, errorType="cancel"):
        if error is None:
            self.h.receive("<iq type='result' id='%s' from='%s'/>" % (iq["id"], BOB))
        else:
            self.h.receive(
                "<iq type='error' id='%s' from='%s'><error type='%s'><%s xmlns='%s'/>"
                "</error></iq>" % (iq["id"], BOB, errorType, error, NS_STANZAS))

    def test_openSentAndResultGivesStream(self):
        d = self.m.initiate(ctxFor("s1", True))
        iq = self.lastSent(self.h)
        self.assertEqual((iq["type"], iq["to"]), ("set", BOB))
        self.assertEqual(wire.Open.fromElement(child(iq, "open")), wire.Open("s1", 4096, "iq"))
        self.assertNoResult(d)
        self.answer(iq)
        stream = self.successResultOf(d)
        self.assertTrue(verifyObject(IBytestream, stream))
        self.assertEqual((stream.method, stream.sid, stream.peerJID), ("ibb", "s1", JID(BOB)))
        self.assertEqual((stream.bytesSent, stream.bytesReceived), (0, 0))
        self.assertEqual(stream.getPeer().jid, JID(BOB))
        self.assertEqual(stream.getHost().jid, JID(ALICE))
        self.assertIn("s1", self.m.streams())

    def test_optionsOverrideDefaults(self):
        self.m.initiate(ctxFor("s1", True, **{"block-size": "1024", "stanza": "message"}))
        self.assertEqual(wire.Open.fromElement(child(self.lastSent(self.h), "open")),
                         wire.Open("s1", 1024, "message"))

    def test_badOptions(self):
        for options in [{"block-size": "x"}, {"block-size": 0}, {"block-size": 70000},
                        {"stanza": "presence"}]:
            self.failureResultOf(self.m.initiate(ctxFor("s1", True, **options)), MethodFailed)

    def test_resourceConstraintHalvesDownToFloor(self):
        d = self.m.initiate(ctxFor("s1", True))
        sizes = []
        for _ in range(4):
            iq = self.lastSent(self.h)
            sizes.append(int(child(iq, "open")["block-size"]))
            self.answer(iq, "resource-constraint", "modify")
        self.assertEqual(sizes, [4096, 2048, 1024, 512])
        f = self.failureResultOf(d, MethodFailed)
        self.assertEqual(f.value.condition, "resource-constraint")
        self.assertIn("resource-constraint", f.value.reason)
        self.assertIn("512", f.value.reason)

    def test_resourceConstraintThenAccepted(self):
        d = self.m.initiate(ctxFor("s1", True))
        self.answer(self.lastSent(self.h), "resource-constraint", "modify")
        self.answer(self.lastSent(self.h))
        self.assertEqual(self.successResultOf(d).blockSize, 2048)

    def test_refusals(self):
        for i, cond in enumerate(["not-acceptable", "service-unavailable",
                                  "feature-not-implemented", "forbidden"]):
            d = self.m.initiate(ctxFor("s%d" % i, True))
            self.answer(self.lastSent(self.h), cond)
            f = self.failureResultOf(d, MethodFailed)
            self.assertEqual(f.value.condition, cond)
            self.assertIn(cond, f.value.reason)
        self.assertEqual(self.m.streams(), {})

    def test_timeout(self):
        d = self.m.initiate(ctxFor("s1", True))
        self.h.clock.advance(59)
        self.assertNoResult(d)
        self.h.clock.advance(2)
        f = self.failureResultOf(d, MethodFailed)
        self.assertEqual(f.value.condition, "timeout")

    def test_cancel(self):
        d = self.m.initiate(ctxFor("s1", True))
        iq = self.lastSent(self.h)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.answer(iq)  # late result: ignored
        self.assertEqual(self.m.streams(), {})
        self.h.clock.advance(120)  # no timer left behind
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_sidInUse(self):
        self.m.expect(ctxFor("s1", False))
        self.failureResultOf(self.m.initiate(ctxFor("s1", True)), MethodFailed)

    def test_disconnectFailsPending(self):
        d = self.m.initiate(ctxFor("s1", True))
        self.h.disconnect()
        self.failureResultOf(d, MethodFailed)

    def test_notConnected(self):
        self.h.disconnect()
        self.failureResultOf(self.m.initiate(ctxFor("s1", True)), MethodFailed)


class ExpectTests(Base):
    def setUp(self):
        self.h, self.m = self.makeSide(BOB)
        self.d = self.m.expect(ctxFor("s1", False))

    def open(self, attrs="sid='s1' block-size='4096'", frm=ALICE, iqId="o1"):
        self.h.receive("<iq type='set' id='%s' from='%s' to='%s'><open xmlns='%s' %s/></iq>"
                       % (iqId, frm, BOB, NS_IBB, attrs))
        return self.lastSent(self.h)

    def assertRefused(self, answer, cond, errorType="cancel"):
        self.assertEqual(answer["type"], "error")
        self.assertEqual(condition(answer), (cond, errorType))
        self.assertNoResult(self.d)

    def test_accepted(self):
        answer = self.open("sid='s1' block-size='2048' stanza='message'")
        self.assertEqual((answer["type"], answer["id"], answer["to"]), ("result", "o1", ALICE))
        stream = self.successResultOf(self.d)
        self.assertEqual((stream.blockSize, stream.stanza, stream.peerJID), (2048, "message", JID(ALICE)))
        self.assertEqual(stream.getHost().jid, JID(BOB))

    def test_fromAnotherJID(self):
        self.assertRefused(self.open(frm=MALLORY), "not-acceptable")
        self.assertRefused(self.open(frm="alice@example.org/other"), "not-acceptable")
        self.open()  # the real initiator still can
        self.successResultOf(self.d)

    def test_unknownSid(self):
        self.assertRefused(self.open("sid='other' block-size='4096'"), "not-acceptable")

    def test_strangerAnsweredLikeUnknownSid(self):
        # An open for an expected sid from the wrong entity gets exactly the
        # answer an open for a sid nobody expects gets.
        def errorOf(answer):
            return condition(answer), str(child(child(answer, "error"), "text"))
        stranger = errorOf(self.open(frm=MALLORY))
        h, m = self.makeSide(BOB)   # expects nothing
        h.receive("<iq type='set' id='o1' from='%s' to='%s'><open xmlns='%s' sid='s1' "
                  "block-size='4096'/></iq>" % (MALLORY, BOB, NS_IBB))
        self.assertEqual(stranger, errorOf(self.lastSent(h)))
        self.assertEqual(stranger, (("not-acceptable", "cancel"),
                                    "no IBB session s1 was negotiated"))

    def test_afterCancel(self):
        self.d.cancel()
        self.failureResultOf(self.d, defer.CancelledError)
        answer = self.open()
        self.assertEqual(condition(answer), ("not-acceptable", "cancel"))

    def test_alreadyOpen(self):
        self.open()
        self.successResultOf(self.d)
        self.assertEqual(condition(self.open(iqId="o2")), ("not-acceptable", "cancel"))

    def test_badAttributes(self):
        for attrs in ["sid='s1'", "sid='s1' block-size='x'", "block-size='4096'",
                      "sid='s1' block-size='4096' stanza='presence'", "sid='s1' block-size='0'"]:
            self.assertRefused(self.open(attrs), "bad-request")

    def test_blockSizeTooLarge(self):
        h, m = self.makeSide(BOB, maxBlockSize=8192)
        h.receive("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                  "block-size='8193'/></iq>" % (ALICE, NS_IBB))  # not expected even
        d = m.expect(ctxFor("s1", False))
        h.receive("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                  "block-size='8193'/></iq>" % (ALICE, NS_IBB))
        self.assertEqual(condition(h.sent[-1]), ("resource-constraint", "modify"))
        self.assertNoResult(d)
        h.receive("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                  "block-size='8192'/></iq>" % (ALICE, NS_IBB))
        self.assertEqual(self.successResultOf(d).blockSize, 8192)

    def test_blockSizeAbove65535(self):
        self.assertRefused(self.open("sid='s1' block-size='65536'"), "resource-constraint", "modify")

    def test_duplicateExpect(self):
        self.failureResultOf(self.m.expect(ctxFor("s1", False)), MethodFailed)

    def test_disconnect(self):
        self.h.disconnect()
        self.failureResultOf(self.d, MethodFailed)


class StreamTests(Base):
    """An open stream on Bob's side, Alice played by hand."""

    def setUp(self):
        self.h, self.m = self.makeSide(BOB, **self.extra())
        d = self.m.expect(ctxFor("s1", False))
        self.h.receive("<iq type='set' id='o1' from='%s'><open xmlns='%s' sid='s1' "
                       "block-size='%d' stanza='%s'/></iq>"
                       % (ALICE, NS_IBB, self.blockSize, self.stanza))
        self.stream = self.successResultOf(d)
        self.proto = Recorder()
        self.stream.attachProtocol(self.proto)
        self.mark = len(self.h.stub.output)

    blockSize = 16
    stanza = "iq"

    def extra(self):
        return {}

    def newSent(self):
        sent = self.h.sent[self.mark:]
        self.mark = len(self.h.stub.output)
        return sent

    def data(self, seq, payload=b"x", frm=ALICE, sid="s1", iqId=None, text=None):
        if text is None:
            text = wire.encodeBase64(payload)
        self.h.receive("<iq type='set' id='%s' from='%s'><data xmlns='%s' sid='%s' "
                       "seq='%s'>%s</data></iq>"
                       % (iqId or "d%s" % seq, frm, NS_IBB, sid, seq, text))

    def assertBroken(self, words, closeSent=True):
        self.assertIsNotNone(self.proto.reason)
        self.proto.reason.trap(BytestreamBroken)
        self.assertIn(words, self.proto.reason.value.reason)
        closes = [s for s in self.h.sent if child(s, "close") is not None]
        self.assertEqual(len(closes), 1 if closeSent else 0)
        self.assertEqual(self.m.streams(), {})

    def test_deliversAndAcks(self):
        self.data(0, b"hello")
        self.data(1, b"world")
        self.assertEqual(bytes(self.proto.received), b"helloworld")
        acks = self.newSent()
        self.assertEqual([(a["type"], a["id"], a["to"]) for a in acks],
                         [("result", "d0", ALICE), ("result", "d1", ALICE)])
        self.assertEqual(self.stream.bytesReceived, 10)
        self.assertTrue(self.proto.made)

    def test_seqWrapsOnReceive(self):
        self.stream.session.seqIn = 65534   # the pair test below walks there for real
        for seq in (65534, 65535, 0, 1):
            self.data(seq, b"%d," % seq)
        self.assertEqual(bytes(self.proto.received), b"65534,65535,0,1,")
        self.assertIsNone(self.proto.reason)

    def test_seq65536Refused(self):
        self.stream.session.seqIn = 65535
        self.data(65536)
        self.assertEqual(condition(self.newSent()[0]), ("bad-request", "cancel"))

    def test_errorDoesNotEchoPayload(self):
        self.data(0, b"secret", frm=MALLORY)
        answer = self.newSent()[0]
        self.assertIsNone(child(answer, "data"))
        self.assertEqual(answer["to"], MALLORY)

    def test_unknownSid(self):
        self.data(0, sid="nope")
        self.assertEqual(condition(self.newSent()[0]), ("item-not-found", "cancel"))
        self.assertIsNone(self.proto.reason)

    def test_otherJID(self):
        self.data(0, frm=MALLORY)
        self.assertEqual(condition(self.newSent()[0]), ("not-acceptable", "cancel"))
        self.assertIsNone(self.proto.reason)
        self.data(0, b"ok")  # the stream is unharmed; seq 0 still expected
        self.assertEqual(bytes(self.proto.received), b"ok")

    def test_outOfOrder(self):
        self.data(0)
        self.data(2, b"lost")
        errors = [s for s in self.newSent() if s.getAttribute("type") == "error"]
        self.assertEqual([condition(e) for e in errors], [("unexpected-request", "cancel")])
        self.assertEqual(bytes(self.proto.received), b"x")
        self.assertBroken("expected 1")
        self.data(3)  # nothing after is processed
        self.assertEqual(condition(self.h.sent[-1]), ("item-not-found", "cancel"))

    def test_repeatedSeq(self):
        self.data(0)
        self.data(0)
        self.assertBroken("got seq 0, expected 1")

    def test_badBase64(self):
        self.data(0, text="QU=B")
        self.assertEqual(condition(self.newSent()[0]), ("bad-request", "cancel"))
        self.assertBroken("base64")
        self.assertEqual(bytes(self.proto.received), b"")

    def test_badSeqAttribute(self):
        self.data("x")
        self.assertEqual(condition(self.newSent()[0]), ("bad-request", "cancel"))
        self.assertBroken("seq")

    def test_blockTooLarge(self):
        self.data(0, b"y" * 17)
        self.assertEqual(condition(self.newSent()[0]), ("bad-request", "cancel"))
        self.assertBroken("block-size is 16")

    def test_fullBlockAccepted(self):
        self.data(0, b"y" * 16)
        self.assertEqual(len(self.proto.received), 16)

    def test_peerClose(self):
        self.data(0, b"abc")
        self.h.receive("<iq type='set' id='c1' from='%s'><close xmlns='%s' sid='s1'/></iq>"
                       % (ALICE, NS_IBB))
        answer = self.h.sent[-1]
        self.assertEqual((answer["type"], answer["id"]), ("result", "c1"))
        self.proto.reason.trap(ConnectionDone)
        self.assertEqual(bytes(self.proto.received), b"abc")
        self.assertEqual(self.m.streams(), {})

    def test_peerCloseDeliversHeldFirst(self):
        self.stream.pauseProducing()
        self.data(0, b"abc")
        self.assertEqual(self.newSent(), [])  # ack held back
        self.h.receive("<iq type='set' id='c1' from='%s'><close xmlns='%s' sid='s1'/></iq>"
                       % (ALICE, NS_IBB))
        self.assertEqual([(s["type"], s["id"]) for s in self.newSent()],
                         [("result", "d0"), ("result", "c1")])
        self.assertIsNone(self.proto.reason)
        self.stream.resumeProducing()
        self.assertEqual(bytes(self.proto.received), b"abc")
        self.proto.reason.trap(ConnectionDone)

    def test_closeUnknownSid(self):
        self.h.receive("<iq type='set' id='c1' from='%s'><close xmlns='%s' sid='zz'/></iq>"
                       % (ALICE, NS_IBB))
        self.assertEqual(condition(self.h.sent[-1]), ("item-not-found", "cancel"))

    def test_closeFromOther(self):
        self.h.receive("<iq type='set' id='c1' from='%s'><close xmlns='%s' sid='s1'/></iq>"
                       % (MALLORY, NS_IBB))
        self.assertEqual(condition(self.h.sent[-1]), ("not-acceptable", "cancel"))
        self.assertIsNone(self.proto.reason)

    def test_xmppDisconnect(self):
        self.h.disconnect()
        self.proto.reason.trap(BytestreamBroken)
        self.assertEqual(self.proto.reason.value.reason, "XMPP connection lost")
        self.assertEqual(self.m.streams(), {})

    def test_pauseHoldsAcks(self):
        self.stream.pauseProducing()
        self.data(0, b"a")
        self.data(1, b"b")
        self.assertEqual(self.newSent(), [])
        self.assertEqual(bytes(self.proto.received), b"")
        self.stream.resumeProducing()
        self.assertEqual(bytes(self.proto.received), b"ab")
        self.assertEqual([s["id"] for s in self.newSent()], ["d0", "d1"])

    def test_pauseDuringDelivery(self):
        self.stream.pauseProducing()
        for i in range(3):
            self.data(i, b"%d" % i)
        self.proto.dataReceived = lambda data: (self.proto.received.extend(data),
                                                self.stream.pauseProducing())
        self.stream.resumeProducing()
        self.assertEqual(bytes(self.proto.received), b"0")
        self.assertEqual([s["id"] for s in self.newSent()], ["d0"])

    def test_overrun(self):
        h, m = self.makeSide(BOB, maxReceiveBuffer=40)
        d = m.expect(ctxFor("s1", False))
        h.receive("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                  "block-size='16'/></iq>" % (ALICE, NS_IBB))
        stream = self.successResultOf(d)
        proto = Recorder()
        stream.attachProtocol(proto)
        stream.pauseProducing()
        for seq in range(3):
            h.receive("<iq type='set' id='d%d' from='%s'><data xmlns='%s' sid='s1' "
                      "seq='%d'>%s</data></iq>"
                      % (seq, ALICE, NS_IBB, seq, wire.encodeBase64(b"z" * 16)))
        proto.reason.trap(BytestreamBroken)
        self.assertIn("overran receive buffer", proto.reason.value.reason)
        self.assertEqual(bytes(proto.received), b"")

    def test_abort(self):
        self.data(0)
        self.stream.abortConnection()
        self.proto.reason.trap(ConnectionAborted)
        closes = [s for s in self.newSent() if child(s, "close") is not None]
        self.assertEqual(len(closes), 1)
        self.assertEqual(self.m.streams(), {})


class BeforeAttachTests(Base):
    def test_heldUntilAttached(self):
        h, m = self.makeSide(BOB)
        d = m.expect(ctxFor("s1", False))
        h.receive("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                  "block-size='16'/></iq>" % (ALICE, NS_IBB))
        stream = self.successResultOf(d)
        mark = len(h.stub.output)
        h.receive("<iq type='set' id='d0' from='%s'><data xmlns='%s' sid='s1' "
                  "seq='0'>%s</data></iq>" % (ALICE, NS_IBB, wire.encodeBase64(b"early")))
        self.assertEqual(len(h.stub.output), mark)  # no ack yet
        proto = Recorder()
        stream.attachProtocol(proto)
        self.assertEqual(bytes(proto.received), b"early")
        self.assertEqual(h.sent[-1]["id"], "d0")

    def test_closedBeforeAttached(self):
        h, m = self.makeSide(BOB)
        d = m.expect(ctxFor("s1", False))
        h.receive("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                  "block-size='16'/></iq>" % (ALICE, NS_IBB))
        stream = self.successResultOf(d)
        h.receive("<iq type='set' id='d0' from='%s'><data xmlns='%s' sid='s1' "
                  "seq='0'>%s</data></iq>" % (ALICE, NS_IBB, wire.encodeBase64(b"bye")))
        h.receive("<iq type='set' id='c' from='%s'><close xmlns='%s' sid='s1'/></iq>"
                  % (ALICE, NS_IBB))
        proto = Recorder()
        stream.attachProtocol(proto)
        self.assertEqual(bytes(proto.received), b"bye")
        proto.reason.trap(ConnectionDone)


class SenderTests(Base):
    """An open stream on Alice's side, Bob played by hand."""

    options = {"blockSize": 100, "window": 4, "ackTimeout": 10.0}

    def setUp(self):
        self.h, self.m = self.makeSide(ALICE)
        d = self.m.initiate(ctxFor("s1", True, **self.ctxOptions()))
        iq = self.h.sent[-1]
        self.h.receive("<iq type='result' id='%s' from='%s'/>" % (iq["id"], BOB))
        self.stream = self.successResultOf(d)
        self.proto = Recorder()
        self.stream.attachProtocol(self.proto)
        self.mark = len(self.h.stub.output)

    def ctxOptions(self):
        return {}

    def newSent(self):
        sent = self.h.sent[self.mark:]
        self.mark = len(self.h.stub.output)
        return sent

    def ack(self, iq, error=None):
        if error:
            self.h.receive("<iq type='error' id='%s' from='%s'><error type='cancel'>"
                           "<%s xmlns='%s'/></error></iq>" % (iq["id"], BOB, error, NS_STANZAS))
        else:
            self.h.receive("<iq type='result' id='%s' from='%s'/>" % (iq["id"], BOB))

    def test_windowLimitsInFlight(self):
        payload = os.urandom(1000)
        self.stream.write(payload)
        sent = self.newSent()
        self.assertEqual(len(sent), 4)
        blocks = [wire.Data.fromElement(child(s, "data")) for s in sent]
        self.assertEqual([b.seq for b in blocks], [0, 1, 2, 3])
        self.assertEqual({(s["type"], s["to"]) for s in sent}, {("set", BOB)})
        self.assertEqual(len({s["id"] for s in sent}), 4)
        self.assertEqual(b"".join(b.payload for b in blocks), payload[:400])
        self.assertEqual(self.stream.bytesSent, 0)
        self.ack(sent[0])
        more = self.newSent()
        self.assertEqual(len(more), 1)
        self.assertEqual(wire.Data.fromElement(child(more[0], "data")).seq, 4)
        self.assertEqual(self.stream.bytesSent, 100)

    def test_seqWrapsOnSend(self):
        self.stream.session.seqOut = 65534
        self.stream.write(b"w" * 300)
        self.assertEqual([wire.Data.fromElement(child(s, "data")).seq for s in self.newSent()],
                         [65534, 65535, 0])

    def test_smallWritesGoAtOnce(self):
        self.stream.write(b"a")
        self.stream.writeSequence([b"b", b"c"])
        self.assertEqual([wire.Data.fromElement(child(s, "data")).payload for s in self.newSent()],
                         [b"a", b"bc"])

    def test_producerPausedAboveHighWater(self):
        producer = Producer()
        self.stream.registerProducer(producer, True)
        self.stream.write(b"x" * 400)   # all in flight, none queued
        self.assertEqual(producer.calls, [])
        self.stream.write(b"x" * 401)   # 401 queued > 4 * 100
        self.assertEqual(producer.calls, ["pause"])
        sent = self.newSent()
        for iq in sent[:3]:
            self.ack(iq)                 # 101 left queued: still above 200? no: 101 <= 200
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_pullProducer(self):
        class Pull(Producer):
            def resumeProducing(inner):
                Producer.resumeProducing(inner)
                if len(inner.calls) < 3:
                    self.stream.write(b"p" * 100)
        producer = Pull()
        self.stream.registerProducer(producer, False)
        self.assertEqual(producer.calls, ["resume"])
        for iq in self.newSent():
            self.ack(iq)
        self.assertGreater(len(producer.calls), 1)

    def test_dataErrorBreaks(self):
        self.stream.write(b"x" * 250)
        sent = self.newSent()
        self.ack(sent[0])
        self.ack(sent[1], "recipient-unavailable")
        self.proto.reason.trap(BytestreamBroken)
        self.assertIn("seq 1", self.proto.reason.value.reason)
        self.assertIn("recipient-unavailable", self.proto.reason.value.reason)
        self.assertEqual(self.proto.reason.value.condition, "recipient-unavailable")
        after = self.newSent()
        self.assertEqual([child(s, "close") is not None for s in after], [True])
        self.assertEqual(self.stream.bytesSent, 100)

    def test_ackTimeout(self):
        self.stream.write(b"x" * 150)
        sent = self.newSent()
        self.h.clock.advance(5)
        self.ack(sent[0])
        self.h.clock.advance(9)
        self.assertIsNone(self.proto.reason)
        self.h.clock.advance(2)
        self.proto.reason.trap(BytestreamBroken)
        self.assertIn("seq 1", self.proto.reason.value.reason)
        self.assertEqual(self.proto.reason.value.condition, "timeout")

    def test_noTimerWhenIdle(self):
        self.stream.write(b"x")
        self.ack(self.newSent()[0])
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_loseConnectionWaitsForAcks(self):
        producer = Producer()
        self.stream.registerProducer(producer, True)
        self.stream.write(b"x" * 500)
        self.stream.loseConnection()
        self.stream.write(b"ignored")
        sent = self.newSent()
        self.assertEqual(len(sent), 4)
        for iq in sent:
            self.ack(iq)
        last = self.newSent()
        self.assertEqual(len(last), 1)
        self.ack(last[0])
        close = self.newSent()
        self.assertEqual(wire.Close.fromElement(child(close[0], "close")), wire.Close("s1"))
        self.assertIsNone(self.proto.reason)
        self.ack(close[0])
        self.proto.reason.trap(ConnectionDone)
        self.assertEqual(self.stream.bytesSent, 500)
        self.assertIn("stop", producer.calls)
        self.assertEqual(self.m.streams(), {})

    def test_closeAnsweredWithErrorOrTimeout(self):
        self.stream.loseConnection()
        close = self.newSent()[0]
        self.ack(close, "item-not-found")
        self.proto.reason.trap(ConnectionDone)

    def test_closeTimeout(self):
        self.stream.loseConnection()
        self.h.clock.advance(11)
        self.proto.reason.trap(ConnectionDone)

    def test_peerCloseWhileSending(self):
        self.stream.write(b"x" * 150)
        sent = self.newSent()
        self.h.receive("<iq type='set' id='c1' from='%s'><close xmlns='%s' sid='s1'/></iq>"
                       % (BOB, NS_IBB))
        self.assertEqual(self.newSent(), [])      # answered once our data is acked
        for iq in sent:
            self.ack(iq)
        answer = self.newSent()
        self.assertEqual([(a["type"], a["id"]) for a in answer], [("result", "c1")])
        self.proto.reason.trap(ConnectionDone)
        self.assertEqual(self.stream.bytesSent, 150)

    def test_crossingCloses(self):
        self.stream.loseConnection()
        ourClose = self.newSent()[0]
        self.h.receive("<iq type='set' id='c1' from='%s'><close xmlns='%s' sid='s1'/></iq>"
                       % (BOB, NS_IBB))
        self.assertEqual(self.newSent()[0]["type"], "result")
        self.proto.reason.trap(ConnectionDone)
        self.ack(ourClose)  # late answer: nothing happens

    def test_disconnectWhileSending(self):
        self.stream.write(b"x" * 1000)
        self.h.disconnect()
        self.proto.reason.trap(BytestreamBroken)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])


class MessageSenderTests(SenderTests):
    def ctxOptions(self):
        return {"stanza": "message"}

    def test_pacedPerReactorTurn(self):
        self.stream.write(b"m" * 1000)
        sent = self.newSent()
        self.assertEqual([s.name for s in sent], ["message"] * 4)
        self.assertEqual(self.stream.bytesSent, 400)
        self.stream.write(b"m")            # waits for the pacer, too
        self.assertEqual(self.newSent(), [])
        # (task.Clock runs calls scheduled during advance(0) at once; a
        # reactor would take one turn per window.)
        self.h.clock.advance(0)
        self.assertEqual(len(self.newSent()), 7)
        self.assertEqual(self.stream.bytesSent, 1001)

    def test_messageErrorBreaks(self):
        self.stream.write(b"m")
        msg = self.newSent()[0]
        self.h.receive("<message type='error' id='%s' from='%s'><error type='cancel'>"
                       "<item-not-found xmlns='%s'/></error></message>"
                       % (msg["id"], BOB, NS_STANZAS))
        self.proto.reason.trap(BytestreamBroken)
        self.assertEqual(self.proto.reason.value.condition, "item-not-found")

    def test_loseConnection(self):
        self.stream.write(b"m" * 500)
        self.stream.loseConnection()
        self.h.clock.advance(0)
        sent = self.newSent()
        self.assertEqual([s.name for s in sent], ["message"] * 5 + ["iq"])
        self.ack(sent[-1])
        self.proto.reason.trap(ConnectionDone)

    # iq-only behaviours
    test_windowLimitsInFlight = test_dataErrorBreaks = test_ackTimeout = None
    test_producerPausedAboveHighWater = test_pullProducer = None
    test_loseConnectionWaitsForAcks = test_peerCloseWhileSending = None
    test_noTimerWhenIdle = None


class MessageReceiverTests(StreamTests):
    stanza = "message"

    def data(self, seq, payload=b"x", frm=ALICE, sid="s1", iqId=None, text=None):
        if text is None:
            text = wire.encodeBase64(payload)
        self.h.receive("<message id='%s' from='%s'><data xmlns='%s' sid='%s' "
                       "seq='%s'>%s</data></message>"
                       % (iqId or "m%s" % seq, frm, NS_IBB, sid, seq, text))

    def test_deliversAndAcks(self):
        self.data(0, b"hello")
        self.assertEqual(bytes(self.proto.received), b"hello")
        self.assertEqual(self.newSent(), [])  # nothing to acknowledge

    def test_errorsAreMessages(self):
        self.data(5)
        answer = self.newSent()[0]
        self.assertEqual((answer.name, answer["type"], answer["id"], answer["to"]),
                         ("message", "error", "m5", ALICE))
        self.assertEqual(condition(answer), ("unexpected-request", "cancel"))
        self.assertBroken("expected 0")

    def test_pauseHoldsAcks(self):
        self.stream.pauseProducing()
        self.data(0, b"a")
        self.assertEqual(bytes(self.proto.received), b"")
        self.stream.resumeProducing()
        self.assertEqual(bytes(self.proto.received), b"a")

    test_pauseDuringDelivery = test_peerCloseDeliversHeldFirst = None


# --- end to end -----------------------------------------------------------


class PairTests(Base):
    # The window-counting tests below are written for 16 in flight.
    options = {"window": 16}

    def setUp(self):
        self.ha, self.ma = self.makeSide(ALICE)
        self.hb, self.mb = self.makeSide(BOB)
        self.pump = Pump(self.ha, self.hb)

    def connect(self, sid="s1", **options):
        db = self.mb.expect(ctxFor(sid, False))
        da = self.ma.initiate(ctxFor(sid, True, **options))
        self.pump.flush()
        a, b = self.successResultOf(da), self.successResultOf(db)
        pa, pb = Recorder(), Recorder()
        a.attachProtocol(pa)
        b.attachProtocol(pb)
        return a, b, pa, pb

    def test_transferBothWays(self):
        a, b, pa, pb = self.connect()
        toBob = os.urandom(3 * 1024 * 1024 + 123)
        toAlice = os.urandom(1024 * 1024 + 7)
        for i in range(0, len(toBob), 65536):
            a.write(toBob[i:i + 65536])
        b.write(toAlice)
        a.loseConnection()
        self.pump.flush()
        self.assertEqual(hashlib.sha256(pb.received).hexdigest(),
                         hashlib.sha256(toBob).hexdigest())
        self.assertEqual(hashlib.sha256(pa.received).hexdigest(),
                         hashlib.sha256(toAlice).hexdigest())
        pa.reason.trap(ConnectionDone)
        pb.reason.trap(ConnectionDone)
        self.assertEqual((a.bytesSent, b.bytesReceived), (len(toBob), len(toBob)))
        self.assertEqual((b.bytesSent, a.bytesReceived), (len(toAlice), len(toAlice)))
        self.assertEqual(self.ma.streams(), {})
        self.assertEqual(self.mb.streams(), {})

    def test_seqWraps(self):
        a, b, pa, pb = self.connect(**{"block-size": 1})
        payload = os.urandom(65536 + 300)
        a.write(payload)
        self.pump.flush()
        self.assertEqual(bytes(pb.received), payload)
        tail = [parseXml(x) for x in self.ha.stub.output[-2:]]
        seqs = [int(child(e, "data")["seq"]) for e in tail if child(e, "data") is not None]
        self.assertEqual(seqs, [298, 299])  # 65836 blocks: the last is 65835 % 65536
        self.assertIsNone(pb.reason)

    def test_backpressure(self):
        a, b, pa, pb = self.connect()
        producer = Producer()
        a.registerProducer(producer, True)
        b.pauseProducing()
        a.write(b"q" * (20 * 4096))     # 16 in flight, 4 queued: below high water
        self.pump.flush()
        self.assertEqual(a.session.inflight, 16)  # no acks came back
        self.assertEqual(producer.calls, [])
        a.write(b"q" * (16 * 4096))     # 20 queued > 16 blocks
        self.pump.flush()
        self.assertEqual(producer.calls, ["pause"])
        self.assertEqual(bytes(pb.received), b"")
        self.assertEqual(b._heldBytes, 16 * 4096)   # never more than the window
        b.resumeProducing()
        self.pump.flush()
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.assertEqual(len(pb.received), 36 * 4096)
        self.assertEqual(a.bytesSent, 36 * 4096)

    def test_closeFromTarget(self):
        a, b, pa, pb = self.connect()
        a.write(b"hello")
        b.write(b"bye")
        b.loseConnection()
        self.pump.flush()
        self.assertEqual((bytes(pa.received), bytes(pb.received)), (b"bye", b"hello"))
        pa.reason.trap(ConnectionDone)
        pb.reason.trap(ConnectionDone)

    def test_crossingClose(self):
        a, b, pa, pb = self.connect()
        a.write(b"1")
        b.write(b"2")
        a.loseConnection()
        b.loseConnection()
        self.pump.flush()
        self.assertEqual((bytes(pa.received), bytes(pb.received)), (b"2", b"1"))
        pa.reason.trap(ConnectionDone)
        pb.reason.trap(ConnectionDone)

    def test_messageMode(self):
        a, b, pa, pb = self.connect(stanza="message")
        payload = os.urandom(300000)
        a.write(payload)
        b.write(b"back")
        a.loseConnection()
        self.pump.flush()
        self.assertEqual(bytes(pb.received), payload)
        self.assertEqual(bytes(pa.received), b"back")
        self.assertTrue(all(e.name == "message" for e in self.ha.sent if child(e, "data") is not None))
        pa.reason.trap(ConnectionDone)
        pb.reason.trap(ConnectionDone)

    def test_lostStanzaDetected(self):
        a, b, pa, pb = self.connect()
        dropped = []

        def drop(element):
            data = child(element, "data")
            if data is not None and data["seq"] == "3" and not dropped:
                dropped.append(element)
                return None
            return element
        self.pump.ab.filter = drop
        a.write(b"z" * (10 * 4096))
        self.pump.flush()
        pb.reason.trap(BytestreamBroken)
        pa.reason.trap(BytestreamBroken)
        self.assertIn("unexpected-request", pa.reason.value.reason)
        self.assertEqual(len(pb.received), 3 * 4096)

    def test_xmppDisconnect(self):
        a, b, pa, pb = self.connect()
        a.write(b"x" * 100000)
        self.ha.disconnect()
        pa.reason.trap(BytestreamBroken)
        self.assertEqual(pa.reason.value.reason, "XMPP connection lost")
        self.pump.flush()
        self.assertIsNone(pb.reason)   # Bob learns by timeout or his own disconnect
