"""
The one IQ error boundary (bytestreamd.xmpp.stanzas.IQBoundary): what a
handler returns or raises becomes the reply in one place, and every IQ
handler of the daemon answers through it -- each one's error reply is
checked here on a stub stream, as is a handler that raises something
unexpected (answered internal-server-error, logged once, never left
hanging).
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd import ns
from bytestreamd.errors import NotConnected, stanzaError
from bytestreamd.xmpp.stanzas import LATER, Handler
from tests.helpers import ConnectionHarness

PEER = "bob@example.net/daemon"


def errorOf(stanza):
    """(condition, type, text or None) of an error stanza."""
    error = [c for c in stanza.elements() if c.name == "error"][0]
    conditions = [c.name for c in error.elements()
                  if c.uri == ns.NS_STANZAS and c.name != "text"]
    texts = [str(c) for c in error.elements() if c.name == "text"]
    return conditions[0], error.getAttribute("type"), texts[0] if texts else None


class Probe(Handler):
    """A handler whose outcome each test chooses."""

    outcome = None

    def connectionInitialized(self):
        self.observeIQ("/iq[@type='get']/probe[@xmlns='urn:x-test']", self.onProbe)

    def onProbe(self, iq):
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome(iq)
        return outcome


class BoundaryTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.probe = Probe()
        self.h.addHandler(self.probe)

    def ask(self, iqType="get", iqId="q1"):
        mark = len(self.h.stub.output)
        self.h.receive("<iq type='%s' id='%s' from='%s'><probe xmlns='urn:x-test'>"
                       "<secret/></probe></iq>" % (iqType, iqId, PEER))
        return self.h.sent[mark:]

    def test_noneIsEmptyResult(self):
        [answer] = self.ask()
        self.assertEqual((answer["type"], answer["id"], answer["to"]), ("result", "q1", PEER))
        self.assertEqual(list(answer.elements()), [])

    def test_elementIsResultChild(self):
        self.probe.outcome = domish.Element(("urn:x-test", "answer"))
        [answer] = self.ask()
        self.assertEqual([c.name for c in answer.elements()], ["answer"])

    def test_stanzaErrorEchoedOrNot(self):
        self.probe.outcome = stanzaError("not-acceptable", "no", type="modify")
        [answer] = self.ask()
        self.assertEqual(errorOf(answer), ("not-acceptable", "modify", "no"))
        self.assertEqual([c.name for c in answer.elements()], ["probe", "error"])
        self.probe.echoRequest = False
        [answer] = self.ask()
        self.assertEqual([c.name for c in answer.elements()], ["error"])

    def test_unexpectedExceptionIsInternalServerErrorLoggedOnce(self):
        self.probe.outcome = ZeroDivisionError("oops")
        [answer] = self.ask()
        self.assertEqual(errorOf(answer)[0], "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_deferredOutcomes(self):
        d = defer.Deferred()
        self.probe.outcome = lambda iq: d
        self.assertEqual(self.ask(), [])
        d.callback(None)
        self.assertEqual(self.h.sent[-1]["type"], "result")
        d2 = defer.Deferred()
        self.probe.outcome = lambda iq: d2
        self.ask(iqId="q2")
        d2.errback(stanzaError("item-not-found"))
        self.assertEqual(errorOf(self.h.sent[-1])[0], "item-not-found")
        d3 = defer.Deferred()
        self.probe.outcome = lambda iq: d3
        self.ask(iqId="q3")
        d3.errback(KeyError("k"))
        self.assertEqual(errorOf(self.h.sent[-1])[0], "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_laterAnswersNothingNow(self):
        kept = []
        self.probe.outcome = lambda iq: kept.append(iq) or LATER
        self.assertEqual(self.ask(), [])
        self.probe.replyTo(kept[0], None)
        self.assertEqual(self.h.sent[-1]["type"], "result")

    def test_errorsAndResultsAreNeverAnswered(self):
        for kind in ("error", "result"):
            self.probe.replyTo(domish.Element((None, "iq"), attribs={"type": kind}),
                               stanzaError("bad-request"))
        self.assertEqual(self.h.sent, [])

    def test_notConnectedIsSwallowed(self):
        iq = domish.Element((None, "iq"), attribs={"type": "get", "id": "x", "from": PEER})
        self.h.disconnect()
        self.probe.replyTo(iq, None)      # no exception
        self.assertRaises(NotConnected, self.h.connection.send, iq)


class HandlersTests(SynchronousTestCase):
    """Each IQ handler of the daemon, answering an error through the boundary."""

    def setUp(self):
        self.h = ConnectionHarness()

    def ask(self, xml):
        mark = len(self.h.stub.output)
        self.h.receive(xml)
        return self.h.sent[mark:]

    def test_ibbOpenAndClose(self):
        from bytestreamd.methods.ibb import IBBMethod
        self.h.addHandler(IBBMethod(self.h.clock, maxBlockSize=4096))
        [answer] = self.ask("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1'/></iq>"
                            % (PEER, ns.NS_IBB))
        self.assertEqual(errorOf(answer)[:2], ("bad-request", "cancel"))
        # XEP-0047 errors never reflect the request back
        self.assertEqual([c.name for c in answer.elements()], ["error"])
        [answer] = self.ask("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                            "block-size='4096'/></iq>" % (PEER, ns.NS_IBB))
        self.assertEqual(errorOf(answer)[:2], ("not-acceptable", "cancel"))
        [answer] = self.ask("<iq type='set' id='c' from='%s'><close xmlns='%s' sid='s1'/></iq>"
                            % (PEER, ns.NS_IBB))
        self.assertEqual(errorOf(answer)[:2], ("item-not-found", "cancel"))

    def test_ibbOpenNegotiatedBlockSize(self):
        # What XEP-0261 uses: expect() with the negotiated block-size.
        from bytestreamd.interfaces import StreamContext
        from bytestreamd.methods.ibb import IBBMethod
        method = IBBMethod(self.h.clock)
        self.h.addHandler(method)
        d = method.expect(StreamContext("s1", JID(PEER), self.h.jid, False,
                                        {"block-size": 2048, "stanza": "iq"}))
        [answer] = self.ask("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                            "block-size='4096'/></iq>" % (PEER, ns.NS_IBB))
        self.assertEqual(errorOf(answer)[:2], ("resource-constraint", "modify"))
        [answer] = self.ask("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                            "block-size='2048' stanza='message'/></iq>" % (PEER, ns.NS_IBB))
        self.assertEqual(errorOf(answer)[:2], ("not-acceptable", "cancel"))
        self.assertNoResult(d)
        [answer] = self.ask("<iq type='set' id='o' from='%s'><open xmlns='%s' sid='s1' "
                            "block-size='2048'/></iq>" % (PEER, ns.NS_IBB))
        self.assertEqual(answer["type"], "result")
        self.assertEqual(self.successResultOf(d).blockSize, 2048)

    def test_ibbInitiateWithoutFallback(self):
        from bytestreamd.errors import MethodFailed
        from bytestreamd.interfaces import StreamContext
        from bytestreamd.methods.ibb import IBBMethod
        method = IBBMethod(self.h.clock)
        self.h.addHandler(method)
        d = method.initiate(StreamContext("s1", self.h.jid, JID(PEER), True,
                                          {"block-size": 2048, "block-size-fallback": False}))
        iq = self.h.sent[-1]
        self.h.receive("<iq type='error' id='%s' from='%s'><error type='modify'>"
                       "<resource-constraint xmlns='%s'/></error></iq>"
                       % (iq["id"], PEER, ns.NS_STANZAS))
        self.assertEqual(self.failureResultOf(d, MethodFailed).value.condition,
                         "resource-constraint")
        self.assertEqual(len(self.h.sent), 1)   # no second open

    def test_s5bQuery(self):
        from twisted.internet.testing import MemoryReactorClock
        from bytestreamd.methods.s5b import S5BMethod
        self.h.addHandler(S5BMethod(MemoryReactorClock(), proxies=[], listen=[]))
        [answer] = self.ask("<iq type='set' id='q' from='%s'><query xmlns='%s'/></iq>"
                            % (PEER, ns.NS_S5B))
        self.assertEqual(errorOf(answer), ("bad-request", "modify", None))
        [answer] = self.ask("<iq type='set' id='q' from='%s'><query xmlns='%s' sid='x'/></iq>"
                            % (PEER, ns.NS_S5B))
        self.assertEqual(errorOf(answer), ("not-acceptable", "modify", None))

    def _si(self, acceptor):
        from bytestreamd.negotiation.si import StreamInitiation
        from bytestreamd.xmpp.disco import PeerDiscovery
        from tests.unit.test_si_negotiation import FakeMethod
        si = StreamInitiation(self.h.clock, [FakeMethod("ibb", ns.NS_IBB)],
                              PeerDiscovery(), acceptor)
        self.h.addHandler(si)
        return si

    def _offer(self, profile=ns.NS_LINK_PROFILE):
        return ("<iq type='set' id='si1' from='%s'><si xmlns='%s' id='s1' profile='%s'>"
                "<link xmlns='%s'/>"
                "<feature xmlns='http://jabber.org/protocol/feature-neg'>"
                "<x xmlns='jabber:x:data' type='form'><field var='stream-method' "
                "type='list-single'><option><value>%s</value></option></field></x>"
                "</feature></si></iq>" % (PEER, ns.NS_SI, profile, ns.NS_LINK_PROFILE,
                                          ns.NS_IBB))

    def test_siOffer(self):
        from tests.unit.test_si_negotiation import FakeAcceptor
        self._si(FakeAcceptor())
        [answer] = self.ask(self._offer(profile="urn:x-nothing"))
        self.assertEqual(errorOf(answer)[:2], ("bad-request", "cancel"))
        self.assertIn("bad-profile", [c.name for c in
                                      [e for e in answer.elements() if e.name == "error"][0]
                                      .elements()])

    def test_siAcceptorBugIsInternalServerError(self):
        from tests.unit.test_si_negotiation import FakeAcceptor
        acceptor = FakeAcceptor()
        acceptor.rejectWith = ZeroDivisionError("acceptor bug")
        si = self._si(acceptor)
        [answer] = self.ask(self._offer())
        self.assertEqual(errorOf(answer)[0], "internal-server-error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(si.pendingOffers, [])

    def test_endConfirmation(self):
        from bytestreamd.links.confirm import EndChannel
        self.h.addHandler(EndChannel())
        [answer] = self.ask("<iq type='set' id='e' from='%s'><eof xmlns='%s'/></iq>"
                            % (PEER, ns.NS_END))
        self.assertEqual(errorOf(answer)[:2], ("bad-request", "modify"))
        [answer] = self.ask("<iq type='set' id='e' from='%s'><eof xmlns='%s' sid='s' "
                            "sent='1'/></iq>" % (PEER, ns.NS_END))
        self.assertEqual(errorOf(answer)[:2], ("item-not-found", "cancel"))
        [answer] = self.ask("<iq type='get' id='e' from='%s'><session xmlns='%s' sid='s'/>"
                            "</iq>" % (PEER, ns.NS_END))
        self.assertEqual(errorOf(answer)[:2], ("item-not-found", "cancel"))

    def test_ping(self):
        from bytestreamd.xmpp.liveness import PeerMonitor
        self.h.addHandler(PeerMonitor(Clock(), 30.0, lambda peer: None, lambda *a: None))
        [answer] = self.ask("<iq type='get' id='p' from='%s'><ping xmlns='%s'/></iq>"
                            % (PEER, ns.NS_PING))
        self.assertEqual((answer["type"], answer["id"]), ("result", "p"))

    def test_disco(self):
        from bytestreamd.xmpp.disco import DiscoResponder
        self.h.addHandler(DiscoResponder())
        [answer] = self.ask("<iq type='get' id='d' from='%s'><query xmlns='%s' node='n'/></iq>"
                            % (PEER, ns.NS_DISCO_INFO))
        self.assertEqual(errorOf(answer)[:2], ("item-not-found", "cancel"))
        [answer] = self.ask("<iq type='get' id='d' from='%s'><query xmlns='%s'/></iq>"
                            % (PEER, ns.NS_DISCO_INFO))
        self.assertEqual(answer["type"], "result")
