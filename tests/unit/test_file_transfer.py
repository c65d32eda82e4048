"""
XEP-0096 file transfer in the daemon: the ranged answer on the wire, the SI
handler passing it both ways, the link registry's file offers and ranged
ACCEPT, and the control options that drive them.
"""

import tempfile

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface import implementer
from zope.interface.verify import verifyObject

from bytestreamd import ns
from bytestreamd.config import Config
from bytestreamd.control.protocol import ControlFactory
from bytestreamd.xmpp.disco import PeerDiscovery
from bytestreamd.errors import NegotiationFailed, SyntaxErrorInArgument
from bytestreamd.events import Event, LinkInfo
from bytestreamd.application import RangeAnswer
from bytestreamd.interfaces import IControlBackend, IIncomingOffer, INegotiator
from bytestreamd.links import LinkManager
from bytestreamd.negotiation import si_profiles
from bytestreamd.negotiation.si import StreamInitiation
from bytestreamd.wire import si as wire
from bytestreamd.wire.si import SIAccept, SIOffer
from tests.helpers import ConnectionHarness, parseXml
from tests.unit.test_links import FakeOffer, FakeXMPP
from tests.unit.test_local import FakeStream
from tests.unit.test_si_negotiation import FakeAcceptor, FakeMethod

FT = ns.NS_SI_FILE_TRANSFER
BOB = JID("bob@example.org/laptop")
FILE = {"name": "a b.txt", "size": "1000", "hash": "0" * 32, "range": "true"}


# --- wire ----------------------------------------------------------------------


class RangeWireTests(SynchronousTestCase):
    def test_answerElement(self):
        el = wire.fileRangeAnswer(128, 256)
        self.assertEqual((el.uri, el.name), (FT, "file"))
        self.assertEqual(el.attributes, {})  # no name/size/desc in a result
        r = next(el.elements(FT, "range"))
        self.assertEqual((r["offset"], r["length"]), ("128", "256"))
        self.assertFalse(next(wire.fileRangeAnswer(5).elements(FT, "range")).hasAttribute(
            "length"))

    def test_answerHeaders(self):
        self.assertEqual(wire.answerHeaders(FT, wire.fileRangeAnswer(128, 256)),
                         {"offset": "128", "length": "256"})
        # XEP-0096: <range length='256'/> starts at 0
        self.assertEqual(wire.answerHeaders(FT, wire.fileRangeAnswer(None, 256)),
                         {"offset": "0", "length": "256"})
        # no range, an empty range, another profile: the whole file
        self.assertEqual(wire.answerHeaders(FT, wire.fileRangeAnswer()), {})
        self.assertEqual(wire.answerHeaders(FT, domish.Element((FT, "file"))), {})
        self.assertEqual(wire.answerHeaders(FT, None), {})
        self.assertEqual(wire.answerHeaders(ns.NS_LINK_PROFILE,
                                            wire.fileRangeAnswer(1)), {})

    def test_malformedRange(self):
        el = parseXml("<file xmlns='%s'><range offset='-1'/></file>" % FT)
        self.assertRaises(wire.MalformedSI, wire.answerHeaders, FT, el)

    def test_answerRoundTrip(self):
        accept = SIAccept(method=ns.NS_IBB, payload=wire.fileRangeAnswer(7))
        back = SIAccept.fromElement(parseXml(accept.toElement().toXml()))
        self.assertEqual(wire.answerHeaders(FT, back.payload), {"offset": "7"})


# --- SI handler ----------------------------------------------------------------


class SIFileTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.ibb = FakeMethod("ibb", ns.NS_IBB)
        self.disco = PeerDiscovery(timeout=5)
        self.acceptor = FakeAcceptor()
        self.si = StreamInitiation(self.h.clock, [self.ibb], self.disco, self.acceptor,
                                   profiles=(ns.NS_LINK_PROFILE, FT))
        self.h.addHandler(self.disco)
        self.h.addHandler(self.si)

    def lastIQ(self):
        return [x for x in self.h.sent if x.name == "iq"][-1]

    def offerFile(self, answered):
        def asHeaders(rangeAnswer):
            # What the answer asked, as the headers these tests compare.
            answered(dict(rangeAnswer.details()) if rangeAnswer is not None else {})
        d = self.si.offer(BOB, si_profiles.fromHeaders(FT, dict(FILE, desc="hi")),
                          answered=asHeaders)
        iq = self.lastIQ()
        self.h.receive("<iq type='result' id='%s' from='%s'><query xmlns='%s'>%s</query></iq>"
                       % (iq["id"], BOB.full(), ns.NS_DISCO_INFO, "".join(
                           "<feature var='%s'/>" % f for f in (ns.NS_SI, FT, ns.NS_IBB))))
        iq = self.lastIQ()
        return d, iq, SIOffer.fromElement(next(iq.elements(ns.NS_SI, "si")))

    def test_disco(self):
        features = [str(f) for f in self.si.getDiscoInfo(None, None)]
        self.assertIn(FT, features)

    def test_offerCarriesFileAndAnswerRangeIsReported(self):
        asked = []
        d, iq, offer = self.offerFile(asked.append)
        self.assertEqual(offer.profile, FT)
        self.assertEqual(wire.FileProfile.fromElement(offer.payload).headers(),
                         dict(FILE, desc="hi"))
        answer = SIAccept(method=ns.NS_IBB, payload=wire.fileRangeAnswer(100, 50))
        self.h.receive("<iq type='result' id='%s' from='%s'>%s</iq>"
                       % (iq["id"], BOB.full(), answer.toElement().toXml()))
        self.assertEqual(asked, [{"offset": "100", "length": "50"}])
        self.ibb.initiated[0][1].callback(FakeStream())
        self.successResultOf(d)

    def test_plainAnswerAsksNothing(self):
        asked = []
        d, iq, offer = self.offerFile(asked.append)
        self.h.receive("<iq type='result' id='%s' from='%s'>%s</iq>"
                       % (iq["id"], BOB.full(), SIAccept(method=ns.NS_IBB)
                          .toElement().toXml()))
        self.assertEqual(asked, [{}])

    def test_malformedRangeAnswerFails(self):
        d, iq, offer = self.offerFile(lambda asked: None)
        self.h.receive("<iq type='result' id='%s' from='%s'><si xmlns='%s'>"
                       "<file xmlns='%s'><range offset='x'/></file>%s</si></iq>"
                       % (iq["id"], BOB.full(), ns.NS_SI, FT,
                          wire.streamMethodChoice(ns.NS_IBB).toXml()))
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertIn("malformed answer", f.value.reason)
        self.assertEqual(self.ibb.initiated, [])

    def test_acceptWithRangePayload(self):
        payload = wire.FileProfile(name="x.bin", size="10", range=True).toElement()
        self.h.receive(
            "<iq type='set' id='o1' from='%s' to='%s'><si xmlns='%s' id='s1' profile='%s'>"
            "%s%s</si></iq>" % (BOB.full(), self.h.jid.full(), ns.NS_SI, FT, payload.toXml(),
                                wire.streamMethodOffer([ns.NS_IBB]).toXml()))
        offer = self.acceptor.offers[0]
        self.assertEqual(offer.headers, {"name": "x.bin", "size": "10", "range": "true"})
        offer.accept(rangeAnswer=RangeAnswer(4))
        result = self.h.sent[-1]
        self.assertEqual((result["type"], result["id"]), ("result", "o1"))
        accept = SIAccept.fromElement(next(result.elements(ns.NS_SI, "si")))
        self.assertEqual(accept.method, ns.NS_IBB)
        self.assertEqual(wire.answerHeaders(FT, accept.payload), {"offset": "4"})


# --- link registry -------------------------------------------------------------


@implementer(INegotiator)
class FakeSI:
    name = "si"

    def __init__(self):
        self.offers = []

    def supports(self, features):
        return True

    def setAcceptor(self, acceptor):
        self.acceptor = acceptor

    def offer(self, peer, application, methods=None, options=None, progress=None,
              answered=None):
        d = defer.Deferred()
        profile, headers = si_profiles.toHeaders(application)
        self.offers.append(dict(peer=peer, profile=profile, headers=headers,
                                progress=progress, answered=answered, d=d))
        return d


@implementer(IIncomingOffer)
class RangedOffer(FakeOffer):
    def accept(self, progress=None, rangeAnswer=None):
        self.payload = si_profiles.answerPayload(rangeAnswer)
        return FakeOffer.accept(self, progress, rangeAnswer)


class LinksFileTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.config = Config(jid=JID("alice@example.org/daemon"), password="x",
                             runtime_dir=tempfile.mkdtemp(), max_links=4,
                             accept_allow=("bob@example.org",),
                             services={"x": "tcp:host=127.0.0.1:port=7"})
        self.si = FakeSI()
        self.manager = LinkManager(self.reactor, self.config, FakeXMPP(), [self.si],
                                   None, ["s5b", "ibb"])
        self.events = []
        self.manager.subscribe(self.events.append)

    def openFile(self, **headers):
        return self.manager.open(BOB, "o", profile=FT, headers=dict(FILE, **headers))

    def test_openOffersTheFileProfile(self):
        info = self.openFile()
        offer = self.si.offers[0]
        self.assertEqual(offer["profile"], FT)
        self.assertEqual(offer["headers"], FILE)
        self.assertEqual(info.profile, FT)
        self.assertIn(("name", "a b.txt"), info.extra)

    def test_goodCarriesTheAskedRange(self):
        info = self.openFile()
        offer = self.si.offers[0]
        offer["answered"](RangeAnswer(600, 10))
        offer["d"].callback(FakeStream())
        good = self.events[-1]
        self.assertEqual(good.words, (info.id, "GOOD"))
        self.assertIn(("offset", "600"), good.options)
        self.assertIn(("length", "10"), good.options)
        self.assertIn(("offset", "600"), self.manager.links()[0].extra)

    def test_rangeNotOfferedIsIgnored(self):
        info = self.openFile(range=None)
        offer = self.si.offers[0]
        offer["answered"](RangeAnswer(600))
        offer["d"].callback(FakeStream())
        self.assertEqual(self.events[-1].words, (info.id, "GOOD"))
        self.assertNotIn("offset", dict(self.events[-1].options))

    def test_plainGoodHasNoOffset(self):
        self.openFile()
        self.si.offers[0]["answered"](None)
        self.si.offers[0]["d"].callback(FakeStream())
        self.assertNotIn("offset", dict(self.events[-1].options))

    def test_badOpens(self):
        self.assertRaises(SyntaxErrorInArgument, self.manager.open, BOB, "o",
                          service="x", profile=FT, headers=FILE)
        self.assertRaises(SyntaxErrorInArgument, self.manager.open, BOB, "o",
                          profile=FT, headers={"name": "x"})
        self.assertRaises(SyntaxErrorInArgument, self.manager.open, BOB, "o",
                          profile=FT, headers={"size": "1"})
        self.assertRaises(SyntaxErrorInArgument, self.manager.open, BOB, "o",
                          headers={"name": "x", "size": "1"})
        self.assertRaises(SyntaxErrorInArgument, self.manager.open, BOB, "o",
                          profile="urn:other")
        self.assertEqual(self.si.offers, [])
        self.assertEqual(self.manager.links(), [])

    def test_linkOpenUnchanged(self):
        self.manager.open(BOB, "o", service="x")
        self.assertEqual((self.si.offers[0]["profile"], self.si.offers[0]["headers"],
                          self.si.offers[0]["answered"]),
                         (ns.NS_LINK_PROFILE, {"service": "x"}, None))

    def incoming(self, headers, cls=RangedOffer):
        offer = cls("bob@example.org/daemon", dict(headers), profile=FT)
        self.manager.offerReceived(offer)
        return offer, self.events[-1]

    def test_fileOfferEvent(self):
        offer, event = self.incoming(dict(FILE, date="2026-01-01T00:00:00Z", desc="d"))
        self.assertEqual(event.kind, "OFFER")
        opts = dict(event.options)
        self.assertEqual((opts["profile"], opts["name"], opts["size"], opts["hash"],
                          opts["date"], opts["desc"], opts["range"]),
                         (FT, "a b.txt", "1000", "0" * 32, "2026-01-01T00:00:00Z", "d",
                          "yes"))
        self.assertNotIn("service", opts)
        _, plain = self.incoming({"name": "n", "size": "1"})
        self.assertNotIn("range", dict(plain.options))

    def test_fileOfferNeverGoesToAService(self):
        offer, event = self.incoming(dict(FILE, service="x"))
        self.assertEqual(event.kind, "OFFER")
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertIsNone(offer.accepted)

    def test_rangedAccept(self):
        offer, event = self.incoming(FILE)
        info = self.manager.accept(event.words[0], "o", offset=600)
        self.assertEqual(offer.payload.toXml(), wire.fileRangeAnswer(600).toXml())
        self.assertIn(("offset", "600"), info.extra)
        offer.accepted.callback(FakeStream())
        self.assertIn(("offset", "600"), self.events[-1].options)

    def test_plainAcceptSendsNoPayload(self):
        offer, event = self.incoming(FILE, cls=FakeOffer)
        self.manager.accept(event.words[0], "o")
        self.assertIsNotNone(offer.accepted)

    def test_rangeRefused(self):
        _, plainEvent = self.incoming({"name": "n", "size": "10"})
        _, rangedEvent = self.incoming(FILE)
        linkOffer = FakeOffer("bob@example.org/daemon", {})
        self.manager.offerReceived(linkOffer)
        linkEvent = self.events[-1]
        for linkId, kw in ((plainEvent.words[0], {"offset": 1}),
                           (linkEvent.words[0], {"offset": 1}),
                           (rangedEvent.words[0], {"offset": 1001}),
                           (rangedEvent.words[0], {"offset": 990, "length": 11})):
            self.assertRaises(SyntaxErrorInArgument, self.manager.accept, linkId, "o", **kw)
        # still pending, no socket was made
        self.assertEqual({i.state for i in self.manager.links()}, {"OFFER"})
        self.assertEqual(self.reactor.unixServers, [])
        self.manager.accept(rangedEvent.words[0], "o", offset=1000)  # at the end: fine


# --- control protocol ----------------------------------------------------------


#: An argument the caller did not pass (the tests compare what was passed).
NOT = object()


def _given(**kw):
    return {key: value for key, value in kw.items() if value is not NOT}


@implementer(IControlBackend)
class Backend:
    def __init__(self):
        self.calls = []

    def reject(self, linkId, reason=None):
        self.calls.append(("reject", linkId, reason))

    def close(self, linkId):
        self.calls.append(("close", linkId))

    def links(self):
        return []

    def status(self):
        return []

    def probe(self, peer):
        return defer.succeed([])

    def subscribe(self, sink):
        pass

    def unsubscribe(self, sink):
        pass

    def forgetOwner(self, owner):
        pass

    def open(self, peer, owner, service=NOT, methods=NOT, blockSize=NOT, stanza=NOT,
             profile=NOT, headers=NOT):
        kw = _given(service=service, methods=methods, blockSize=blockSize, stanza=stanza,
                    profile=profile, headers=headers)
        self.calls.append(("open", peer.full(), kw))
        return LinkInfo("l1", "NEGO", peer.full(), "out", socket="/s")

    def accept(self, linkId, owner, offset=NOT, length=NOT):
        self.calls.append(("accept", linkId, _given(offset=offset, length=length)))
        return LinkInfo(linkId, "INIT", "b@x/y", "in", socket="/s")


class FakesTests(SynchronousTestCase):
    def test_fakesProvideTheirInterfaces(self):
        verifyObject(INegotiator, FakeSI())
        verifyObject(IIncomingOffer, RangedOffer("bob@example.org/d", dict(FILE), profile=FT))
        verifyObject(IControlBackend, Backend())


class ControlFileTests(SynchronousTestCase):
    def setUp(self):
        self.backend = Backend()
        self.proto = ControlFactory(self.backend).buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def command(self, line):
        self.proto.dataReceived(line.encode("utf-8") + b"\n")
        out = self.transport.value()
        self.transport.clear()
        return out

    def test_openFile(self):
        out = self.command('OPEN bob@example.org/x profile=file name="my file.txt" size=1022 '
                           'hash=552DA749930852C69AE5D2141D3766B1 date=1969-07-21T02:56:15Z '
                           'desc="a\\ntest" range=yes methods=ibb')
        self.assertEqual(out, b"250 link=l1 socket=/s\n")
        self.assertEqual(self.backend.calls, [("open", "bob@example.org/x", {
            "service": None, "methods": ["ibb"], "blockSize": None, "stanza": None,
            "profile": FT, "headers": {
                "name": "my file.txt", "size": "1022",
                "hash": "552da749930852c69ae5d2141d3766b1",
                "date": "1969-07-21T02:56:15Z", "desc": "a\ntest", "range": "true"}})])

    def test_profileNames(self):
        for name in ("file", "FILE", "file-transfer", FT):
            self.command("OPEN b@x/y profile=%s name=n size=0 range=no" % name)
            self.assertEqual(self.backend.calls[-1][2]["headers"], {"name": "n", "size": "0"})
        self.command("OPEN b@x/y profile=link service=ssh")
        self.assertNotIn("profile", self.backend.calls[-1][2])
        self.assertEqual(self.backend.calls[-1][2]["service"], "ssh")

    def test_openFileErrors(self):
        for line in ["OPEN b@x/y profile=file name=n",
                     "OPEN b@x/y profile=file size=3",
                     'OPEN b@x/y profile=file name="" size=3',
                     "OPEN b@x/y profile=file name=n size=-3",
                     "OPEN b@x/y profile=file name=n size=3 service=ssh",
                     "OPEN b@x/y profile=file name=n size=3 hash=abc",
                     "OPEN b@x/y profile=file name=n size=3 date=yesterday",
                     "OPEN b@x/y profile=file name=n size=3 range=maybe",
                     'OPEN b@x/y profile=file name="a\\x01" size=3',
                     'OPEN b@x/y profile=file name=n size=3 desc="\\x07"',
                     "OPEN b@x/y name=n size=3",
                     "OPEN b@x/y profile=jingle"]:
            out = self.command(line)
            self.assertTrue(out.startswith(b"512 "), (line, out))
        self.assertEqual(self.backend.calls, [])

    def test_acceptRange(self):
        self.assertEqual(self.command("ACCEPT o1 offset=100 length=5"),
                         b"250 link=o1 socket=/s\n")
        self.assertEqual(self.command("ACCEPT o2"), b"250 link=o2 socket=/s\n")
        self.assertEqual(self.backend.calls, [("accept", "o1", {"offset": 100, "length": 5}),
                                              ("accept", "o2", {})])
        for line in ("ACCEPT o1 offset=-1", "ACCEPT o1 length=x", "ACCEPT o1 offset="):
            self.assertTrue(self.command(line).startswith(b"512 "), line)

    def test_help(self):
        out = self.command("HELP OPEN").decode()
        self.assertIn("profile=link|file", out)
        self.assertIn("offset=N", self.command("HELP ACCEPT").decode())

    def test_eventsCarryRange(self):
        self.command("OPEN b@x/y profile=file name=n size=10 range=yes")
        self.proto.eventReceived(Event("LINK", ("l1", "GOOD"),
                                       (("method", "ibb"), ("offset", "4")), linkId="l1"))
        self.assertEqual(self.transport.value(), b"650 LINK l1 GOOD method=ibb offset=4\n")
