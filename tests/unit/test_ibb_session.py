"""
The IBB session machine alone: recording fakes of its owner (the XMPP side)
and its local side (the transport), a task.Clock, no reactor and no XML
stream.  Every transition of the module docstring's table is driven here;
the handler and transport around it are tested in test_ibb_method.py.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface import implementer
from zope.interface.verify import verifyObject

from bytestreamd.errors import BytestreamBroken, MethodFailed, NotConnected
from bytestreamd.methods import ibb_session as m
from bytestreamd.methods.ibb_session import (IBBSession, IIBBSession, IIBBSessionLocal,
                                             IIBBSessionOwner)
from bytestreamd.wire import ibb as wire
from tests.helpers import parseXml

PEER = JID("bob@example.net/daemon")
TAG = "ibbx.tag."


@implementer(IIBBSessionOwner)
def dataElement(seq, text, child=None):
    """A ``<data/>`` element as the wire gives it (possibly malformed)."""
    element = domish.Element((wire.NS_IBB, "data"))
    element["sid"] = "s1"
    if seq is not None:
        element["seq"] = seq
    element.addContent(text)
    if child is not None:
        element.addElement(child)
    return element


@implementer(IIBBSessionOwner)
class FakeOwner:
    """Records what the session asks of the XMPP side."""

    def __init__(self):
        self.sent = []          # serialised stanzas
        self.answers = []       # (stanza, condition, text)
        self.opens = []         # wire.Open
        self.closes = 0
        self.events = []        # opened / openFailed / finished
        self.connected = True

    def send(self, stanza):
        if not self.connected:
            raise NotConnected()
        self.sent.append(stanza)

    def answer(self, stanza, condition=None, text=None):
        self.answers.append((stanza, condition, text))

    def requestOpen(self, session, request):
        self.opens.append(request)

    def requestClose(self, session):
        self.closes += 1

    def opened(self, session):
        self.events.append("opened")

    def openFailed(self, session, reason):
        self.events.append(("openFailed", reason))

    def finished(self, session):
        self.events.append("finished")

    # helpers
    def data(self):
        """(kind, id, seq, payload) of every data stanza sent."""
        out = []
        for text in self.sent:
            e = parseXml(text)
            d = [c for c in e.elements() if c.name == "data"]
            if d:
                block = wire.Data.fromElement(d[0])
                out.append((e.name, e["id"], block.seq, block.payload))
        return out

    def acks(self):
        return [parseXml(t)["id"] for t in self.sent
                if parseXml(t).getAttribute("type") == "result"]


@implementer(IIBBSessionLocal)
class FakeLocal:
    """The transport side: delivers at once unless ``holding``."""

    def __init__(self):
        self.delivered = bytearray()
        self.held = []          # (payload, ack)
        self.holding = False
        self.progress = 0
        self.reason = None

    def received(self, payload, ack):
        if self.holding:
            self.held.append((payload, ack))
            return sum(len(p) for p, _ in self.held)
        self.delivered += payload
        return None

    def takeHeldAcks(self):
        acks = [a for _, a in self.held if a is not None]
        self.held = [(p, None) for p, _ in self.held]
        return acks

    def sendProgress(self):
        self.progress += 1

    def ended(self, reason):
        assert self.reason is None, "ended twice"
        self.reason = reason


class Base(SynchronousTestCase):
    def makeSession(self, initiator=True, blockSize=4, stanza="iq", **kw):
        self.clock = Clock()
        self.owner = FakeOwner()
        self.local = FakeLocal()
        kw.setdefault("window", 2)
        kw.setdefault("ackTimeout", 10.0)
        kw.setdefault("maxHeld", 12)
        self.s = IBBSession(self.owner, self.local, self.clock, "s1", PEER, TAG,
                            initiator, blockSize, stanza, **kw)
        return self.s

    def openSession(self, **kw):
        s = self.makeSession(**kw)
        s.start()
        s.openAcked()
        self.assertEqual(s.state, m.OPEN)
        return s

    def dataIn(self, seq, payload=b"x", ackId="d", stanza="st"):
        self.s.dataReceived(stanza, dataElement(str(seq), wire.encodeBase64(payload)),
                            None if ackId is None else "%s%s" % (ackId, seq))


class InterfaceTests(Base):
    def test_fakesAndSession(self):
        s = self.makeSession()
        self.assertTrue(verifyObject(IIBBSession, s))
        self.assertTrue(verifyObject(IIBBSessionOwner, self.owner))
        self.assertTrue(verifyObject(IIBBSessionLocal, self.local))


class OpeningTests(Base):
    def test_initiatorOpens(self):
        s = self.makeSession(blockSize=4096)
        s.start()
        self.assertEqual(self.owner.opens, [wire.Open("s1", 4096, "iq")])
        self.assertEqual(s.state, m.OPENING)
        s.openAcked()
        self.assertEqual((s.state, self.owner.events), (m.OPEN, ["opened"]))

    def test_resourceConstraintHalves(self):
        s = self.makeSession(blockSize=4096)
        s.start()
        s.openRefused("resource-constraint", "too big")
        s.openRefused("resource-constraint", "too big")
        self.assertEqual([o.blockSize for o in self.owner.opens], [4096, 2048, 1024])
        s.openAcked()
        self.assertEqual((s.state, s.blockSize), (m.OPEN, 1024))

    def test_floorThenFail(self):
        s = self.makeSession(blockSize=1024, minBlockSize=512)
        s.start()
        s.openRefused("resource-constraint", "no")
        s.openRefused("resource-constraint", "no")
        self.assertEqual(s.state, m.FAILED)
        kind, reason = self.owner.events[-1]
        self.assertEqual(self.owner.events[:-1], ["finished"])
        self.assertEqual((kind, reason.condition), ("openFailed", "resource-constraint"))
        self.assertIn("after resource-constraint at block-size 1024", reason.reason)

    def test_noFallback(self):
        s = self.makeSession(blockSize=2048, fallback=False)
        s.start()
        s.openRefused("resource-constraint", "no")
        self.assertEqual(len(self.owner.opens), 1)
        self.assertEqual(s.state, m.FAILED)

    def test_refusedAndTimeout(self):
        s = self.makeSession()
        s.start()
        s.openRefused("forbidden", "forbidden: go away")
        self.assertEqual(self.owner.events[-1][1].condition, "forbidden")
        s = self.makeSession()
        s.start()
        s.openTimedOut(60)
        reason = self.owner.events[-1][1]
        self.assertEqual(reason.condition, "timeout")
        self.assertIn("within 60s", reason.reason)
        s.openAcked()   # late: nothing
        self.assertEqual(s.state, m.FAILED)

    def test_targetAcceptsUpToMax(self):
        s = self.makeSession(initiator=False, blockSize=None, stanza=None, maxBlockSize=8192)
        self.assertEqual(s.openReceived(wire.Open("s1", 8193, "iq")),
                         ("resource-constraint", "block-size at most 8192, please", "modify"))
        self.assertEqual(s.state, m.OPENING)
        self.assertIsNone(s.openReceived(wire.Open("s1", 8192, "message")))
        self.assertEqual((s.state, s.blockSize, s.stanza), (m.OPEN, 8192, "message"))
        self.assertEqual(self.owner.events, [])   # the owner learns it from the None
        self.assertEqual(s.openReceived(wire.Open("s1", 8192, "iq"))[0], "not-acceptable")

    def test_targetNegotiatedSize(self):
        # XEP-0261: the open must name the negotiated block-size.
        s = self.makeSession(initiator=False, blockSize=2048, stanza="iq")
        for size in (4096, 1024):
            self.assertEqual(s.openReceived(wire.Open("s1", size, "iq"))[0],
                             "resource-constraint")
        self.assertEqual(s.openReceived(wire.Open("s1", 2048, "message"))[0],
                         "not-acceptable")
        self.assertIsNone(s.openReceived(wire.Open("s1", 2048, "iq")))

    def test_giveUpAndXmppLost(self):
        s = self.makeSession(initiator=False, blockSize=None, stanza=None)
        s.xmppLost()
        self.assertEqual(s.state, m.FAILED)
        self.assertIn("XMPP connection lost", self.owner.events[-1][1].reason)
        s = self.makeSession()
        s.start()
        s.giveUp(MethodFailed("cancelled"))
        self.assertEqual(self.owner.events, ["finished", ("openFailed", self.owner.events[1][1])])


class SendingTests(Base):
    def test_windowAndSeq(self):
        s = self.openSession()
        s.seqOut = 65535
        s.write(b"abcdefghij")
        data = self.owner.data()
        self.assertEqual([(k, seq, p) for k, _, seq, p in data],
                         [("iq", 65535, b"abcd"), ("iq", 0, b"efgh")])
        self.assertTrue(all(i.startswith(TAG) for _, i, _, _ in data))
        self.assertEqual((s.queued, s.inflight), (2, 2))
        s.acked(data[0][1])
        self.assertEqual(self.owner.data()[-1][2:], (1, b"ij"))
        self.assertEqual((s.bytesSent, self.local.progress), (4, 1))
        s.acked(data[0][1])     # twice: nothing
        self.assertEqual(s.bytesSent, 4)

    def test_ackTimerIsOnePerSession(self):
        s = self.openSession()
        s.write(b"x" * 8)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(9)
        s.acked(self.owner.data()[0][1])
        self.clock.advance(9)
        self.assertEqual(s.state, m.OPEN)
        self.clock.advance(1)
        self.assertEqual(s.state, m.FAILED)
        self.local.reason.trap(BytestreamBroken)
        self.assertEqual(self.local.reason.value.condition, "timeout")
        self.assertIn("seq 1", self.local.reason.value.reason)
        self.assertEqual(self.owner.closes, 1)
        self.assertEqual(self.owner.events[-1], "finished")

    def test_noAckTimeout(self):
        s = self.openSession(ackTimeout=None)
        s.write(b"x")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusedData(self):
        s = self.openSession()
        s.write(b"x" * 8)
        s.refused(self.owner.data()[1][1], StanzaError("not-acceptable", text="no"))
        self.local.reason.trap(BytestreamBroken)
        self.assertIn("data seq 1", self.local.reason.value.reason)
        self.assertEqual(self.local.reason.value.condition, "not-acceptable")

    def test_notConnectedBreaksWithoutClose(self):
        s = self.openSession()
        self.owner.connected = False
        s.write(b"x")
        self.assertEqual(self.local.reason.value.reason, "XMPP connection lost")
        self.assertEqual(self.owner.closes, 0)

    def test_writeIgnoredUnlessOpen(self):
        s = self.openSession()
        s.close()
        self.assertEqual(s.state, m.CLOSING)
        s.write(b"late")
        self.assertEqual(self.owner.data(), [])

    def test_messagesPaced(self):
        s = self.openSession(stanza="message")
        s.write(b"x" * 20)
        self.assertEqual([k for k, _, _, _ in self.owner.data()], ["message"] * 2)
        self.assertEqual(s.bytesSent, 8)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)   # the pacer
        # (task.Clock runs calls scheduled during advance(0) at once.)
        self.clock.advance(0)
        self.assertEqual((len(self.owner.data()), s.bytesSent), (5, 20))

    def test_messageRefused(self):
        s = self.openSession(stanza="message")
        s.refused(None, StanzaError("item-not-found"))
        self.assertIn("a data message", self.local.reason.value.reason)


class ReceivingTests(Base):
    def setUp(self):
        self.openSession(initiator=True)

    def test_deliverAndAck(self):
        self.dataIn(0, b"ab")
        self.dataIn(1, b"cd")
        self.assertEqual(bytes(self.local.delivered), b"abcd")
        self.assertEqual(self.owner.acks(), ["d0", "d1"])
        self.assertEqual(self.s.bytesReceived, 4)

    def test_seqWraps(self):
        self.s.seqIn = 65535
        self.dataIn(65535)
        self.dataIn(0)
        self.assertEqual(self.s.state, m.OPEN)

    def test_checks(self):
        cases = [(dataElement("x", "QQ=="), "bad-request", "malformed"),
                 (dataElement(None, "QQ=="), "bad-request", "malformed"),
                 (dataElement("1", "QQ=="), "unexpected-request", "expected 0"),
                 # the seq is checked before the text, as the XEP orders them
                 (dataElement("1", "QQ==", "x"), "unexpected-request", "expected 0"),
                 (dataElement("0", "QQ==", "x"), "bad-request", "must not contain elements"),
                 (dataElement("0", "QU=B"), "bad-request", "bad data seq 0"),
                 (dataElement("0", wire.encodeBase64(b"12345")), "bad-request",
                  "block-size is 4")]
        for data, condition, words in cases:
            self.openSession()
            self.s.dataReceived("st", data, "i")
            self.assertEqual(self.owner.answers[0][:2], ("st", condition))
            self.assertEqual(self.s.state, m.FAILED)
            self.assertIn(words, self.local.reason.value.reason)
            self.assertEqual(self.local.reason.value.condition, condition)
            self.assertEqual(self.owner.closes, 1)

    def test_heldAcksReleased(self):
        self.local.holding = True
        self.dataIn(0, b"ab")
        self.assertEqual(self.owner.acks(), [])
        self.s.released("<ack/>")
        self.assertEqual(self.owner.sent, ["<ack/>"])

    def test_overrun(self):
        self.local.holding = True
        for seq in range(4):
            self.dataIn(seq, b"abcd")
        self.assertEqual(self.s.state, m.FAILED)
        self.assertEqual(self.local.reason.value.condition, "resource-constraint")
        self.assertIn("16 bytes held, limit 12", self.local.reason.value.reason)

    def test_messagesHaveNoAcks(self):
        self.dataIn(0, b"ab", ackId=None)
        self.assertEqual(self.owner.sent, [])


class ClosingTests(Base):
    def test_closeWaitsForAcks(self):
        s = self.openSession()
        s.write(b"x" * 6)
        s.close()
        self.assertEqual((s.state, self.owner.closes), (m.DRAINING, 0))
        for _, i, _, _ in self.owner.data():
            s.acked(i)
        self.assertEqual((s.state, self.owner.closes), (m.CLOSING, 1))
        self.dataIn(0, b"late")            # still taken while closing
        self.assertEqual(bytes(self.local.delivered), b"late")
        s.closeAnswered()
        self.assertEqual(s.state, m.CLOSED)
        self.local.reason.trap(ConnectionDone)
        self.assertEqual(self.owner.events[-1], "finished")

    def test_peerCloseWhileSending(self):
        s = self.openSession()
        s.write(b"x" * 6)
        s.closeReceived("c")
        self.assertEqual(s.state, m.PEER_CLOSING)
        self.assertEqual(self.owner.answers, [])
        for _, i, _, _ in self.owner.data():
            s.acked(i)
        self.assertEqual(self.owner.answers, [("c", None, None)])
        self.assertEqual((s.state, self.owner.closes), (m.CLOSED, 0))

    def test_peerCloseSendsHeldAcksFirst(self):
        s = self.openSession()
        self.local.holding = True
        self.dataIn(0, b"ab")
        s.closeReceived("c")
        self.assertEqual(len(self.owner.sent), 1)          # the held ack
        self.assertEqual(self.owner.answers, [("c", None, None)])
        self.assertEqual(self.local.held, [(b"ab", None)])
        self.local.reason.trap(ConnectionDone)

    def test_crossingCloses(self):
        s = self.openSession()
        s.close()
        s.closeReceived("c")
        self.assertEqual((s.state, self.owner.answers), (m.CLOSED, [("c", None, None)]))
        s.closeAnswered()     # late
        self.local.reason.trap(ConnectionDone)

    def test_failWhilePeerClosingAnswersItAndSendsNoClose(self):
        s = self.openSession()
        s.write(b"x" * 6)
        s.closeReceived("c")
        self.clock.advance(10)
        self.assertEqual(s.state, m.FAILED)
        self.assertEqual(self.owner.answers, [("c", None, None)])
        self.assertEqual(self.owner.closes, 0)

    def test_failWhileClosingSendsNoSecondClose(self):
        s = self.openSession()
        s.close()
        self.assertEqual((s.state, self.owner.closes), (m.CLOSING, 1))
        self.s.dataReceived("st", dataElement("5", "QQ=="), "i")
        self.assertEqual((s.state, self.owner.closes), (m.FAILED, 1))

    def test_abortWhilePeerClosing(self):
        s = self.openSession()
        s.write(b"x" * 6)
        s.closeReceived("c")
        s.abort()
        self.assertEqual((s.state, self.owner.closes), (m.FAILED, 0))
        self.assertEqual(self.owner.answers, [("c", None, None)])

    def test_abort(self):
        s = self.openSession()
        s.write(b"x" * 20)
        s.abort()
        self.assertEqual((s.state, self.owner.closes, s.queued), (m.FAILED, 1, 0))
        self.assertIsNone(self.local.reason)    # the transport ends itself
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_xmppLost(self):
        s = self.openSession()
        s.write(b"x" * 8)
        s.xmppLost()
        self.assertEqual(self.local.reason.value.reason, "XMPP connection lost")
        self.assertEqual((self.owner.closes, self.clock.getDelayedCalls()), (0, []))

    def test_finalIgnoresEverything(self):
        s = self.openSession()
        s.close()
        s.closeAnswered()
        sent = list(self.owner.sent)
        s.write(b"x")
        s.released("<ack/>")
        s.xmppLost()
        s.abort()
        s.closeReceived("c")
        self.assertEqual(self.owner.sent, sent)
        self.assertEqual(self.owner.answers[-1][1], "item-not-found")
        self.assertEqual(self.owner.events.count("finished"), 1)


class HandlerOrderTests(SynchronousTestCase):
    """The handler around the machine keeps the wire order."""

    def test_targetAnswersOpenBeforeHandingTheStreamOver(self):
        from bytestreamd.interfaces import StreamContext
        from bytestreamd.methods.ibb import IBBMethod
        from tests.helpers import ConnectionHarness
        h = ConnectionHarness("bob@example.net/daemon")
        method = IBBMethod(h.clock)
        h.addHandler(method)
        d = method.expect(StreamContext("s1", JID("alice@example.org/d"), h.jid, False))
        d.addCallback(lambda stream: stream.write(b"hello at once"))
        h.receive("<iq type='set' id='o1' from='alice@example.org/d'><open xmlns='%s' "
                  "sid='s1' block-size='4096'/></iq>" % wire.NS_IBB)
        self.assertEqual([(e.name, e.getAttribute("type")) for e in h.sent],
                         [("iq", "result"), ("iq", "set")])
        self.assertEqual(h.sent[0]["id"], "o1")
