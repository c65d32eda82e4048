"""
The XMPP sides of the truthful lifecycle: the end-confirmation channel
(bytestreamd.links.confirm) and the liveness monitor (bytestreamd.xmpp.liveness),
on a stub stream with a fake clock.
"""

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd import ns
from bytestreamd.links.confirm import EndChannel, peerConfirms
from bytestreamd.links.lifecycle import SendEnd
from bytestreamd.xmpp.liveness import PeerMonitor
from bytestreamd.wire import end as wire
from tests.helpers import ConnectionHarness

BOB = JID("bob@example.org/daemon")


class EndChannelTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.channel = EndChannel(requestTimeout=5)
        self.h.addHandler(self.channel)
        self.got = []
        self.session = self.channel.open(
            BOB, "sid1", lambda n: self.got.append(("eof", n)),
            lambda e: self.got.append(("end", e)),
            lambda why: self.got.append(("refused", why)))

    def test_sendsEOFAndEnd(self):
        self.session.sendEOF(42)
        self.session.sendEnd(SendEnd(42, 7, "done"))
        eof, end = [iq.firstChildElement() for iq in self.h.sent]
        self.assertEqual(wire.EOF.fromElement(eof), wire.EOF("sid1", 42))
        self.assertEqual(wire.End.fromElement(end), wire.End("sid1", 42, 7, "done"))
        self.assertEqual(self.h.sent[0]["to"], BOB.full())

    def test_receivesFromThePeerOnly(self):
        self.h.receive("<iq type='set' id='1' from='bob@example.org/daemon'>"
                       "<eof xmlns='%s' sid='sid1' sent='9'/></iq>" % ns.NS_END)
        self.h.receive("<iq type='set' id='2' from='mallory@evil.example/x'>"
                       "<end xmlns='%s' sid='sid1' sent='9' received='0'/></iq>" % ns.NS_END)
        self.assertEqual(self.got, [("eof", 9)])
        answers = {iq["id"]: iq["type"] for iq in self.h.sent}
        self.assertEqual(answers, {"1": "result", "2": "error"})
        self.assertIn("item-not-found", self.h.sent[1].toXml())

    def test_malformedIsBadRequest(self):
        self.h.receive("<iq type='set' id='3' from='bob@example.org/daemon'>"
                       "<end xmlns='%s' sid='sid1' sent='-1' received='0'/></iq>" % ns.NS_END)
        self.assertIn("bad-request", self.h.sent[0].toXml())
        self.assertEqual(self.got, [])

    def test_errorAnswerAndTimeoutAreRefusals(self):
        self.session.sendEOF(1)
        iqId = self.h.sent[0]["id"]
        self.h.receive("<iq type='error' id='%s' from='bob@example.org/daemon'>"
                       "<error type='cancel'><item-not-found xmlns='%s'/></error></iq>"
                       % (iqId, ns.NS_STANZAS))
        self.assertEqual(self.got[0][0], "refused")
        self.assertIn("item-not-found", self.got[0][1])
        self.session.sendEnd(SendEnd(1, 0, "done"))
        self.h.clock.advance(6)
        self.assertEqual(len(self.got), 2)

    def test_closedSessionIsForgotten(self):
        self.session.close()
        self.h.receive("<iq type='set' id='1' from='bob@example.org/daemon'>"
                       "<eof xmlns='%s' sid='sid1' sent='9'/></iq>" % ns.NS_END)
        self.assertEqual(self.got, [])

    def test_featureDecidesConfirmation(self):
        self.assertTrue(peerConfirms(frozenset({ns.NS_END})))
        self.assertFalse(peerConfirms(frozenset({ns.NS_IBB})))
        self.assertFalse(peerConfirms(None))
        features = [f for f in self.channel.getDiscoInfo(None, None)]
        self.assertEqual([str(f) for f in features], [ns.NS_END])


class PeerMonitorTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.gone = []
        self.features = {}
        self.monitor = PeerMonitor(self.h.clock, 30.0, self.features.get,
                                   lambda peer, why: self.gone.append((peer, why)))
        self.h.addHandler(self.monitor)

    def probes(self):
        return [iq for iq in self.h.sent if iq.getAttribute("type") == "get"]

    def test_answersPings(self):
        self.h.receive("<iq type='get' id='p1' from='bob@example.org/daemon'>"
                       "<ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual(self.h.sent[-1]["type"], "result")

    def test_silentPeerIsProbedThenGone(self):
        self.monitor.watch(BOB)
        self.h.clock.advance(10)
        self.assertEqual(len(self.probes()), 1)
        self.assertEqual(self.probes()[0].firstChildElement().uri, ns.NS_DISCO_INFO)
        self.h.clock.advance(25)
        self.assertEqual(len(self.gone), 1)
        self.assertIn("did not answer", self.gone[0][1])

    def test_pingWhenAdvertised(self):
        self.features[BOB] = frozenset({ns.NS_PING})
        self.monitor.watch(BOB)
        self.h.clock.advance(10)
        self.assertEqual(self.probes()[0].firstChildElement().uri, ns.NS_PING)

    def test_slowButAnsweringPeerIsAlive(self):
        # Issue 6 d: a peer whose reader is slow still answers: never gone.
        self.monitor.watch(BOB)
        answered = set()
        for _ in range(20):
            self.h.clock.advance(10)
            for iq in self.probes():
                if iq["id"] not in answered:
                    answered.add(iq["id"])
                    self.h.receive("<iq type='result' id='%s' from='bob@example.org/daemon'/>"
                                   % iq["id"])
        self.assertEqual(self.gone, [])
        self.assertGreater(len(answered), 5)

    def test_clientErrorIsAliveServerBounceIsGone(self):
        self.monitor.watch(BOB)
        self.h.clock.advance(10)
        iqId = self.probes()[0]["id"]
        self.h.receive("<iq type='error' id='%s' from='bob@example.org/daemon'><error "
                       "type='cancel'><feature-not-implemented xmlns='%s'/></error></iq>"
                       % (iqId, ns.NS_STANZAS))
        self.assertEqual(self.gone, [])
        self.h.stub.output.clear()
        self.h.clock.advance(10)
        iqId = self.probes()[0]["id"]
        self.h.receive("<iq type='error' id='%s' from='bob@example.org/daemon'><error "
                       "type='cancel'><remote-server-not-found xmlns='%s'/></error></iq>"
                       % (iqId, ns.NS_STANZAS))
        self.assertEqual(len(self.gone), 1)
        self.assertIn("remote-server-not-found", self.gone[0][1])

    def test_anyStanzaFromThePeerCounts(self):
        self.monitor.watch(BOB)
        for _ in range(6):
            self.h.clock.advance(9)
            self.h.receive("<message from='bob@example.org/daemon'/>")
        self.assertEqual(self.probes(), [])

    def test_unavailablePresenceIsGone(self):
        self.monitor.watch(BOB)
        self.h.receive("<presence type='unavailable' from='bob@example.org/daemon'/>")
        self.assertIn("went offline", self.gone[0][1])

    def test_unwatchedPeerIsNotProbed(self):
        self.monitor.watch(BOB)
        self.monitor.unwatch(BOB)
        self.h.clock.advance(100)
        self.assertEqual(self.probes(), [])
        self.assertEqual(self.h.clock.getDelayedCalls(), [])


class SessionProbeTests(SynchronousTestCase):
    """A bytestreamd peer that restarted answers pings but not for our link."""

    def setUp(self):
        self.h = ConnectionHarness()
        self.gone = []
        self.monitor = PeerMonitor(self.h.clock, 30.0, lambda peer: None,
                                   lambda peer, why: self.gone.append(why))
        self.h.addHandler(self.monitor)
        self.channel = EndChannel()
        self.h.addHandler(self.channel)

    def test_probeAsksAboutTheSessionAndUnknownIsGone(self):
        self.monitor.watch(BOB, "sid9")
        self.h.clock.advance(10)
        probe = [iq for iq in self.h.sent if iq.getAttribute("type") == "get"][0]
        self.assertEqual(probe.firstChildElement().name, "session")
        self.assertEqual(probe.firstChildElement()["sid"], "sid9")
        self.h.receive("<iq type='error' id='%s' from='bob@example.org/daemon'><error "
                       "type='cancel'><item-not-found xmlns='%s'/></error></iq>"
                       % (probe["id"], ns.NS_STANZAS))
        self.assertIn("no longer knows link session sid9", self.gone[0])

    def test_channelAnswersForItsSessions(self):
        self.channel.open(BOB, "sid1", None, None, None)
        self.h.receive("<iq type='get' id='q1' from='bob@example.org/daemon'>"
                       "<session xmlns='%s' sid='sid1'/></iq>" % ns.NS_END)
        self.h.receive("<iq type='get' id='q2' from='bob@example.org/daemon'>"
                       "<session xmlns='%s' sid='other'/></iq>" % ns.NS_END)
        answers = {iq["id"]: iq["type"] for iq in self.h.sent}
        self.assertEqual(answers, {"q1": "result", "q2": "error"})


class EarlyMessagesTests(SynchronousTestCase):
    """Soak finding B: a proxied target is GOOD late; the initiator's eof must wait."""

    def setUp(self):
        self.h = ConnectionHarness()
        self.channel = EndChannel()
        self.h.addHandler(self.channel)

    def test_expectedSessionQueuesThenReplays(self):
        self.channel.expect(BOB, "sid7")
        self.h.receive("<iq type='set' id='e1' from='bob@example.org/daemon'>"
                       "<eof xmlns='%s' sid='sid7' sent='3'/></iq>" % ns.NS_END)
        self.assertEqual(self.h.sent[-1]["type"], "result")
        got = []
        session = self.channel.open(BOB, "sid7", lambda n: got.append(n), None, None)
        self.assertEqual(got, [])
        self.channel.replay(session)
        self.assertEqual(got, [3])

    def test_unexpectedSessionIsStillRefused(self):
        self.channel.expect(BOB, "sid7")
        self.channel.unexpect(BOB, "sid7")
        self.h.receive("<iq type='set' id='e2' from='bob@example.org/daemon'>"
                       "<eof xmlns='%s' sid='sid7' sent='3'/></iq>" % ns.NS_END)
        self.assertEqual(self.h.sent[-1]["type"], "error")
