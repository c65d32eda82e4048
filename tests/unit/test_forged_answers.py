"""
Issue 8, finding 1: forged IQ answers.

A stranger who guesses (or brute-forces) the id of one of our pending
requests must not be able to answer it.  Every request kind is tried: the
SI offer, disco#info, IBB open, IBB data acknowledgements (iq and message
mode), IBB close, and the SOCKS5 streamhost offer.  In each case a forged
``result`` and a forged ``error`` are dropped (the request keeps waiting,
nothing is cached, one log line names the forger) and the real answer
still works afterwards.  The RFC 6120 8.1.2.1 sender rules are tested as a
table on :func:`bytestreamd.stanzas.answerMatches`.
"""

import re

from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID

from bytestreamd import ns
from bytestreamd.xmpp import stanzas
from bytestreamd.application import LinkApplication
from bytestreamd.xmpp.disco import PeerDiscovery
from bytestreamd.errors import MethodFailed, NegotiationFailed
from bytestreamd.methods import ibb as ibbModule
from bytestreamd.methods import ibb_stream
from bytestreamd.methods.ibb import IBBMethod
from bytestreamd.negotiation.si import StreamInitiation
from bytestreamd.xmpp.stanzas import addresseeOf, answerMatches, makeIQ, newStanzaId
from bytestreamd.wire.si import SIAccept
from tests.helpers import ConnectionHarness
from tests.unit.test_ibb_method import Recorder, child, ctxFor
from tests.unit.test_s5b_method import GREETING, Side, ctxOut, request, used
from tests.unit.test_si_negotiation import ALL, FakeAcceptor, FakeMethod

ME = "alice@example.org/daemon"
BOB = "bob@example.net/daemon"
MALLORY = "mallory@example.com/x"
CAROL = "carol@example.com/daemon"


def result(iqId, frm, body=""):
    attr = " from='%s'" % frm if frm is not None else ""
    return "<iq type='result' id='%s'%s>%s</iq>" % (iqId, attr, body)


def error(iqId, frm, condition="forbidden", text="forged-by-mallory"):
    attr = " from='%s'" % frm if frm is not None else ""
    return ("<iq type='error' id='%s'%s><error type='cancel'><%s xmlns='%s'/>"
            "<text xmlns='%s'>%s</text></error></iq>"
            % (iqId, attr, condition, ns.NS_STANZAS, ns.NS_STANZAS, text))


class LogCapture:
    """Replace a module's ``log`` with one that records its events."""

    def __init__(self, case, module):
        self.events = []
        case.patch(module, "log", Logger(observer=self.events.append))

    def forgers(self):
        return [e.get("forger") for e in self.events]


# --- the rule itself ----------------------------------------------------------


class AnswerRuleTests(SynchronousTestCase):
    """RFC 6120 8.1.2.1, as a table."""

    own = JID(ME)

    def check(self, to, sender):
        return answerMatches(addresseeOf(to, self.own), sender, self.own)

    def test_ownAccountOrNoTo(self):
        for to in (None, "", "alice@example.org", "Alice@Example.org"):
            for sender in (None, "", "alice@example.org", ME, "ALICE@example.org/daemon"):
                self.assertTrue(self.check(to, sender), (to, sender))
            for sender in (MALLORY, "example.org", "alice@example.org/other",
                           "alice@example.com", "not a jid@@"):
                self.assertFalse(self.check(to, sender), (to, sender))

    def test_fullJIDPeer(self):
        self.assertTrue(self.check(BOB, BOB))
        self.assertTrue(self.check(BOB, "BOB@EXAMPLE.NET/daemon"))  # compared as JIDs
        for sender in (None, "", "bob@example.net", "bob@example.net/other", MALLORY,
                       "example.net", ME, "alice@example.org", "@@"):
            self.assertFalse(self.check(BOB, sender), sender)

    def test_bareJIDPeer(self):
        self.assertTrue(self.check("bob@example.net", "bob@example.net"))
        for sender in (None, BOB, MALLORY, "example.net", ME):
            self.assertFalse(self.check("bob@example.net", sender), sender)

    def test_serverOrService(self):
        self.assertTrue(self.check("proxy.example.org", "proxy.example.org"))
        for sender in (None, "example.org", "proxy.example.org/x", ME, MALLORY):
            self.assertFalse(self.check("proxy.example.org", sender), sender)

    def test_ownFullJID(self):
        # A request to our own full JID is answered by it, like any full JID.
        self.assertTrue(self.check(ME, ME))
        self.assertFalse(self.check(ME, MALLORY))


# --- ids ----------------------------------------------------------------------


class IdTests(SynchronousTestCase):
    def test_idsAreRandomNotCounted(self):
        ids = {newStanzaId() for _ in range(1000)}
        self.assertEqual(len(ids), 1000)
        for iqId in list(ids)[:20]:
            self.assertGreaterEqual(len(iqId), 16)
            self.assertIsNone(re.match(r"^H_\d+$", iqId))

    def test_requestReplacesAnyPresetId(self):
        h = ConnectionHarness(ME)
        iq = makeIQ("get", JID(BOB))
        iq["id"] = "H_0"
        d = h.connection.request(iq)
        sent = h.sent[-1]["id"]
        self.assertNotEqual(sent, "H_0")
        h.receive(result("H_0", BOB))
        self.assertNoResult(d)
        h.receive(result(sent, BOB))
        self.successResultOf(d)

    def test_makeIQIdsDiffer(self):
        a, b = makeIQ("get", JID(BOB)), makeIQ("get", JID(BOB))
        self.assertNotEqual(a["id"], b["id"])
        self.assertIsNone(re.match(r"^H_\d+$", a["id"]))


# --- the connection -------------------------------------------------------------


class ConnectionTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness(ME)
        self.log = LogCapture(self, stanzas)

    def test_forgedResultAndErrorDroppedThenRealAnswer(self):
        d = self.h.connection.request(makeIQ("get", JID(BOB)))
        iqId = self.h.sent[-1]["id"]
        for forged in (result(iqId, MALLORY), error(iqId, MALLORY), result(iqId, None),
                       error(iqId, "bob@example.net"), result(iqId, "example.net")):
            self.h.receive(forged)
        self.assertNoResult(d)
        self.assertEqual(self.h.connection.forgedAnswers, 5)
        self.h.receive(result(iqId, BOB))
        self.assertEqual(self.successResultOf(d)["from"], BOB)

    def test_loggedOncePerForger(self):
        d = self.h.connection.request(makeIQ("get", JID(BOB)))
        iqId = self.h.sent[-1]["id"]
        for _ in range(5):
            self.h.receive(error(iqId, MALLORY))
        self.h.receive(error(iqId, CAROL))
        self.assertEqual(self.log.forgers(), [MALLORY, CAROL])
        self.assertEqual(self.log.events[0]["log_level"].name, "warn")
        self.assertIn(iqId, self.log.events[0]["id"])
        self.assertEqual(self.log.events[0]["to"], BOB)
        self.assertNoResult(d)

    def test_forgersPerRequestBounded(self):
        self.h.connection.request(makeIQ("get", JID(BOB)))
        iqId = self.h.sent[-1]["id"]
        for i in range(50):
            self.h.receive(error(iqId, "m%d@example.com/x" % i))
        self.assertEqual(len(self.log.events), 8)
        self.assertEqual(self.h.connection.forgedAnswers, 50)

    def test_forgerWithControlCharactersLoggedSafely(self):
        self.h.connection.request(makeIQ("get", JID(BOB)))
        iqId = self.h.sent[-1]["id"]
        # XML cannot carry ESC, but a newline would forge a second log line.
        self.h.receive(error(iqId, "m@example.com/a&#10;b&#x85;c"))
        forger = self.log.events[0]["forger"]
        self.assertNotIn("\n", forger)
        self.assertNotIn("\x85", forger)
        self.assertEqual(forger, "m@example.com/a\\x0ab\\x85c")

    def test_ownAccountAnsweredWithoutFrom(self):
        iq = makeIQ("get", JID("alice@example.org"))
        d = self.h.connection.request(iq)
        self.h.receive(result(self.h.sent[-1]["id"], None))
        self.successResultOf(d)

    def test_ownAccountNotAnsweredByStranger(self):
        iq = makeIQ("get", JID("alice@example.org"))
        del iq["to"]
        d = self.h.connection.request(iq)
        iqId = self.h.sent[-1]["id"]
        self.h.receive(error(iqId, MALLORY))
        self.assertNoResult(d)
        self.h.receive(result(iqId, "alice@example.org"))
        self.successResultOf(d)

    def test_unknownIdIgnoredSilently(self):
        self.h.receive(error("H_0", MALLORY))
        self.assertEqual(self.log.events, [])
        self.assertEqual(self.h.connection.forgedAnswers, 0)

    def test_forgedAnswerDoesNotStopTimeout(self):
        d = self.h.connection.request(makeIQ("get", JID(BOB)), timeout=5)
        self.h.receive(result(self.h.sent[-1]["id"], MALLORY))
        self.h.clock.advance(5)
        self.failureResultOf(d, stanzas.RequestTimeout)
        self.assertEqual(self.h.connection._iqAddressees, {})
        self.assertEqual(self.h.connection._iqForgers, {})

    def test_bookkeepingClearedOnAnswerCancelAndDisconnect(self):
        conn = self.h.connection
        d1 = conn.request(makeIQ("get", JID(BOB)))
        self.h.receive(result(self.h.sent[-1]["id"], BOB))
        self.successResultOf(d1)
        d2 = conn.request(makeIQ("get", JID(BOB)))
        d2.cancel()
        self.failureResultOf(d2)
        self.assertEqual((conn._iqDeferreds, conn._iqAddressees), ({}, {}))
        d3 = conn.request(makeIQ("get", JID(BOB)))
        self.h.receive(result(self.h.sent[-1]["id"], MALLORY))
        self.h.disconnect()
        self.failureResultOf(d3)
        self.assertEqual((conn._iqDeferreds, conn._iqAddressees, conn._iqForgers),
                         ({}, {}, {}))


# --- each request kind -------------------------------------------------------------


class SIOfferTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness(ME)
        self.log = LogCapture(self, stanzas)
        self.s5b = FakeMethod("s5b", ns.NS_S5B)
        self.ibb = FakeMethod("ibb", ns.NS_IBB)
        self.disco = PeerDiscovery(timeout=5)
        self.si = StreamInitiation(self.h.clock, [self.s5b, self.ibb], self.disco,
                                   FakeAcceptor())
        self.h.addHandler(self.disco)
        self.h.addHandler(self.si)

    def test_forgedRefusalOfOffer(self):
        d = self.si.offer(JID(BOB), LinkApplication("ssh"),
                          progress=lambda *a: None)
        disco = self.h.sent[-1]
        self.h.receive(result(disco["id"], BOB, "<query xmlns='%s'>%s</query>" % (
            ns.NS_DISCO_INFO, "".join("<feature var='%s'/>" % f for f in ALL))))
        offer = self.h.sent[-1]
        self.assertEqual(next(offer.elements()).name, "si")
        self.h.receive(error(offer["id"], MALLORY))
        self.h.receive(error(offer["id"], "bob@example.net"))
        self.assertNoResult(d)
        self.assertEqual(self.log.forgers(), [MALLORY, "bob@example.net"])
        self.h.receive(error(offer["id"], BOB, "not-acceptable", "no thanks"))
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertNotIn("forged", f.value.reason)
        self.assertIn("not-acceptable", f.value.reason)

    def test_forgedAcceptOfOffer(self):
        d = self.si.offer(JID(BOB), LinkApplication("ssh"),
                          progress=lambda *a: None)
        disco = self.h.sent[-1]
        self.h.receive(result(disco["id"], BOB, "<query xmlns='%s'>%s</query>" % (
            ns.NS_DISCO_INFO, "".join("<feature var='%s'/>" % f for f in ALL))))
        offer = self.h.sent[-1]
        accept = SIAccept(method=ns.NS_IBB).toElement().toXml()
        self.h.receive(result(offer["id"], MALLORY, accept))
        self.assertEqual(self.ibb.initiated, [])
        self.h.receive(result(offer["id"], BOB, accept))
        self.assertEqual(len(self.ibb.initiated), 1)
        self.assertNoResult(d)


class DiscoTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness(ME)
        self.log = LogCapture(self, stanzas)
        self.disco = PeerDiscovery(timeout=5)
        self.h.addHandler(self.disco)

    def info(self, features):
        return "<query xmlns='%s'>%s</query>" % (
            ns.NS_DISCO_INFO, "".join("<feature var='%s'/>" % f for f in features))

    def test_forgedInfoNotDeliveredNorCached(self):
        d = self.disco.features(JID(BOB))
        iqId = self.h.sent[-1]["id"]
        self.h.receive(result(iqId, MALLORY, self.info(["urn:forged"])))
        self.h.receive(error(iqId, MALLORY, "service-unavailable"))
        self.assertNoResult(d)
        self.assertIsNone(self.disco.cached(JID(BOB)))
        self.h.receive(result(iqId, BOB, self.info([ns.NS_SI])))
        self.assertEqual(self.successResultOf(d), frozenset([ns.NS_SI]))
        self.assertEqual(self.disco.cached(JID(BOB)).features, frozenset([ns.NS_SI]))
        self.assertEqual(self.log.forgers(), [MALLORY])


class IBBBase(SynchronousTestCase):
    options = {"blockSize": 100, "window": 4, "ackTimeout": 10.0}

    def setUp(self):
        self.h = ConnectionHarness(ME)
        self.m = IBBMethod(self.h.clock, **self.options)
        self.h.addHandler(self.m)
        self.stanzaLog = LogCapture(self, stanzas)
        self.ibbLog = LogCapture(self, ibbModule)

    def ctx(self, sid="s1", peer=BOB, **options):
        from bytestreamd.interfaces import StreamContext
        return StreamContext(sid, JID(ME), JID(peer), True, dict(options))

    def openStream(self, sid="s1", peer=BOB, **options):
        d = self.m.initiate(self.ctx(sid, peer, **options))
        self.h.receive(result(self.h.sent[-1]["id"], peer))
        stream = self.successResultOf(d)
        proto = Recorder()
        stream.attachProtocol(proto)
        return stream, proto


class IBBOpenTests(IBBBase):
    def test_forgedOpenResultAndError(self):
        d = self.m.initiate(self.ctx())
        iqId = self.h.sent[-1]["id"]
        self.h.receive(result(iqId, MALLORY))
        self.h.receive(error(iqId, CAROL, "not-acceptable"))
        self.assertNoResult(d)
        self.assertEqual(self.m.streams(), {})
        self.assertEqual(self.stanzaLog.forgers(), [MALLORY, CAROL])
        self.h.receive(result(iqId, BOB))
        self.assertEqual(self.successResultOf(d).peerJID, JID(BOB))


class IBBDataTests(IBBBase):
    def test_ackMustComeFromPeer(self):
        stream, proto = self.openStream()
        mark = len(self.h.stub.output)
        stream.write(b"x" * 150)
        blocks = self.h.sent[mark:]
        self.assertEqual(len(blocks), 2)
        self.h.receive(result(blocks[0]["id"], MALLORY))
        self.h.receive(error(blocks[1]["id"], MALLORY))
        self.h.receive(result(blocks[0]["id"], None))
        self.h.receive(result(blocks[0]["id"], "bob@example.net"))
        self.assertIsNone(proto.reason)
        self.assertEqual(stream.bytesSent, 0)
        self.assertEqual(self.m.forgedAnswers, 4)
        self.assertEqual(self.ibbLog.forgers(), [MALLORY, "(no from)", "bob@example.net"])
        for iq in blocks:
            self.h.receive(result(iq["id"], BOB))
        self.assertEqual(stream.bytesSent, 150)
        self.assertIsNone(proto.reason)

    def test_ackMustCarryTheBlocksId(self):
        stream, proto = self.openStream()
        mark = len(self.h.stub.output)
        stream.write(b"x" * 50)
        block = self.h.sent[mark]
        tag = block["id"][:block["id"].rfind(".") + 1]
        # The right sender with ids of the same stream that were never sent.
        for iqId in (tag + "7", tag + "0x", tag, block["id"] + "0"):
            self.h.receive(error(iqId, BOB))
        self.assertIsNone(proto.reason)
        self.assertEqual(stream.bytesSent, 0)
        self.h.receive(result(block["id"], BOB))
        self.assertEqual(stream.bytesSent, 50)

    def test_peerOfAnotherStreamCannotAnswer(self):
        # carol has her own stream with us and so sees one tag; she can
        # neither guess bob's stream's tag nor answer with the id of his block.
        s1, p1 = self.openStream("s1", BOB)
        s2, p2 = self.openStream("s2", CAROL)
        mark = len(self.h.stub.output)
        s1.write(b"b" * 10)
        s2.write(b"c" * 10)
        bobBlock, carolBlock = self.h.sent[mark:]
        bobTag = bobBlock["id"][:bobBlock["id"].rfind(".") + 1]
        carolTag = carolBlock["id"][:carolBlock["id"].rfind(".") + 1]
        self.assertNotEqual(bobTag, carolTag)
        # Not a counter: the tags share no more than the daemon prefix.
        prefix = self.m._idPrefix
        self.assertTrue(bobTag.startswith(prefix) and carolTag.startswith(prefix))
        self.assertGreaterEqual(len(bobTag) - len(prefix), 12)
        self.h.receive(error(bobBlock["id"], CAROL))
        self.assertIsNone(p1.reason)
        self.assertEqual(s1.bytesSent, 0)
        self.h.receive(result(carolBlock["id"], CAROL))
        self.assertEqual(s2.bytesSent, 10)

    def test_tagsAreNotSequential(self):
        tags = set()
        for i in range(20):
            stream, _ = self.openStream("s%d" % i)
            tags.add(stream.session.tag)
        self.assertEqual(len(tags), 20)
        suffixes = [t[len(self.m._idPrefix):-1] for t in tags]
        self.assertFalse(all(s.isdigit() for s in suffixes))

    def test_exactPeerStringNeedsNoJIDParse(self):
        # The data path: a string compare of 'from' first, no stringprep.
        stream, proto = self.openStream()
        mark = len(self.h.stub.output)
        stream.write(b"x" * 10)
        block = self.h.sent[mark]

        def noParse(value):
            raise AssertionError("parsed %r" % (value,))

        self.patch(ibb_stream, "parseJID", noParse)
        self.h.receive(result(block["id"], BOB))
        self.assertEqual(stream.bytesSent, 10)

    def test_equivalentPeerSpellingAccepted(self):
        stream, proto = self.openStream()
        mark = len(self.h.stub.output)
        stream.write(b"x" * 10)
        self.h.receive(result(self.h.sent[mark]["id"], "BOB@example.NET/daemon"))
        self.assertEqual(stream.bytesSent, 10)

    def test_forgedMessageErrorDropped(self):
        stream, proto = self.openStream(stanza="message")
        mark = len(self.h.stub.output)
        stream.write(b"x" * 10)
        msg = self.h.sent[mark]
        self.assertEqual(msg.name, "message")
        forged = ("<message type='error' id='%s' from='%s'><error type='cancel'>"
                  "<recipient-unavailable xmlns='%s'/></error></message>")
        self.h.receive(forged % (msg["id"], MALLORY, ns.NS_STANZAS))
        self.assertIsNone(proto.reason)
        self.assertEqual(self.ibbLog.forgers(), [MALLORY])
        self.h.receive(forged % (msg["id"], BOB, ns.NS_STANZAS))
        self.assertEqual(proto.reason.value.condition, "recipient-unavailable")


class IBBCloseTests(IBBBase):
    def test_forgedCloseAnswer(self):
        stream, proto = self.openStream()
        mark = len(self.h.stub.output)
        stream.loseConnection()
        close = self.h.sent[mark]
        self.assertIsNotNone(child(close, "close"))
        self.h.receive(result(close["id"], MALLORY))
        self.h.receive(error(close["id"], MALLORY, "item-not-found"))
        self.assertIsNone(proto.reason)
        self.assertEqual(self.stanzaLog.forgers(), [MALLORY])
        self.h.receive(result(close["id"], BOB))
        proto.reason.trap(ConnectionDone)


class SOCKS5Tests(SynchronousTestCase):
    def setUp(self):
        self.side = Side(JID(ME), advertise=[("192.0.2.1", None)])
        self.side.listen()
        self.log = LogCapture(self, stanzas)

    def test_forgedStreamhostAnswers(self):
        d = self.side.method.initiate(ctxOut())
        iq = self.side.last()
        self.assertEqual(iq.query.uri, ns.NS_S5B)
        _, transport = self.side.incoming(GREETING + request())
        self.side.answer(iq, type="error", frm=MALLORY,
                         body="<error type='cancel'><item-not-found xmlns='%s'/></error>"
                         % ns.NS_STANZAS)
        self.side.answer(iq, used("proxy.example.com"), frm=MALLORY)
        self.assertNoResult(d)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.log.forgers(), [MALLORY])
        self.side.answer(iq, used(ME))
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_forgedAnswerToProxyQuery(self):
        side = Side(JID(ME), proxies=[JID("proxy.example.org")])
        log = LogCapture(self, stanzas)
        d = side.method.initiate(ctxOut())
        iq = side.last()
        self.assertEqual(iq["to"], "proxy.example.org")
        forged = ("<query xmlns='%s'><streamhost jid='proxy.example.org' "
                  "host='203.0.113.66' port='1080'/></query>" % ns.NS_S5B)
        side.answer(iq, forged, frm=MALLORY)
        side.answer(iq, forged, frm="example.org")
        self.assertEqual(len(log.events), 2)
        # Still asking the proxy: no offer went to bob.
        self.assertEqual(side.last()["to"], "proxy.example.org")
        self.assertNoResult(d)
        side.answer(iq, type="error", frm="proxy.example.org",
                    body="<error type='cancel'><item-not-found xmlns='%s'/></error>"
                    % ns.NS_STANZAS)
        self.failureResultOf(d, MethodFailed)


class StanzaErrorSanity(SynchronousTestCase):
    """The real peer's error still arrives as the StanzaError it was."""

    def test_realError(self):
        h = ConnectionHarness(ME)
        d = h.connection.request(makeIQ("set", JID(BOB)))
        h.receive(error(h.sent[-1]["id"], BOB, "forbidden"))
        self.assertEqual(self.failureResultOf(d, StanzaError).value.condition, "forbidden")
