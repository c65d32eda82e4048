from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID

from bytestreamd import ns
from bytestreamd.xmpp.disco import MalformedDisco, PeerDiscovery, PeerInfo
from bytestreamd.xmpp.stanzas import RequestTimeout
from tests.helpers import ConnectionHarness

BOB = JID("bob@example.org/laptop")


def infoResult(iqId, frm=BOB, features=(ns.NS_SI, ns.NS_IBB), identities=()):
    xml = "<iq type='result' id='%s' from='%s'><query xmlns='%s'>" % (
        iqId, frm.full(), ns.NS_DISCO_INFO)
    for category, type_ in identities:
        xml += "<identity category='%s' type='%s'/>" % (category, type_)
    for f in features:
        xml += "<feature var='%s'/>" % f
    return xml + "</query></iq>"


class PeerDiscoveryTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.disco = PeerDiscovery(timeout=5, maxEntries=2)
        self.h.addHandler(self.disco)

    def lastQuery(self):
        iq = self.h.sent[-1]
        self.assertEqual(iq["type"], "get")
        return iq

    def test_featuresAndCache(self):
        d = self.disco.features(BOB)
        iq = self.lastQuery()
        self.assertEqual(iq["to"], BOB.full())
        self.assertEqual(next(iq.elements()).uri, ns.NS_DISCO_INFO)
        self.h.receive(infoResult(iq["id"]))
        self.assertEqual(self.successResultOf(d), frozenset([ns.NS_SI, ns.NS_IBB]))
        # Cached: no second request.
        sent = len(self.h.sent)
        self.assertEqual(self.successResultOf(self.disco.features(BOB)),
                         frozenset([ns.NS_SI, ns.NS_IBB]))
        self.assertEqual(len(self.h.sent), sent)

    def test_info(self):
        d = self.disco.info(JID("proxy.example.org"))
        self.h.receive(infoResult(self.lastQuery()["id"], JID("proxy.example.org"),
                                  features=[ns.NS_S5B],
                                  identities=[("proxy", "bytestreams")]))
        identities, features = self.successResultOf(d)
        self.assertEqual(identities, frozenset([("proxy", "bytestreams")]))
        self.assertEqual(features, frozenset([ns.NS_S5B]))

    def test_concurrentShareOneRequest(self):
        d1 = self.disco.features(BOB)
        d2 = self.disco.features(BOB)
        self.assertIsNot(d1, d2)
        gets = [x for x in self.h.sent if x.name == "iq"]
        self.assertEqual(len(gets), 1)
        self.h.receive(infoResult(gets[0]["id"]))
        self.assertEqual(self.successResultOf(d1), self.successResultOf(d2))

    def test_cancelOneWaiterKeepsOthers(self):
        d1 = self.disco.features(BOB)
        d2 = self.disco.features(BOB)
        d1.cancel()
        self.failureResultOf(d1, defer.CancelledError)
        self.h.receive(infoResult(self.lastQuery()["id"]))
        self.assertIn(ns.NS_SI, self.successResultOf(d2))

    def test_cancelLastWaiterCancelsRequest(self):
        d = self.disco.features(BOB)
        iqId = self.lastQuery()["id"]
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertNotIn(iqId, self.h.connection._iqDeferreds)
        # A new ask sends a new request.
        self.disco.features(BOB)
        self.assertNotEqual(self.lastQuery()["id"], iqId)

    def test_errorsReachEveryWaiterAndAreNotCached(self):
        d1 = self.disco.features(BOB)
        d2 = self.disco.features(BOB)
        self.h.receive("<iq type='error' id='%s' from='%s'><error type='cancel'>"
                       "<service-unavailable xmlns='%s'/></error></iq>"
                       % (self.lastQuery()["id"], BOB.full(), ns.NS_STANZAS))
        self.assertEqual(self.failureResultOf(d1, StanzaError).value.condition,
                         "service-unavailable")
        self.failureResultOf(d2, StanzaError)
        sent = len(self.h.sent)
        self.disco.features(BOB)
        self.assertEqual(len(self.h.sent), sent + 1)

    def test_timeout(self):
        d = self.disco.features(BOB)
        self.h.clock.advance(5.1)
        self.failureResultOf(d, RequestTimeout)

    def test_malformed(self):
        d = self.disco.features(BOB)
        self.h.receive("<iq type='result' id='%s' from='%s'/>"
                       % (self.lastQuery()["id"], BOB.full()))
        self.failureResultOf(d, MalformedDisco)

    def test_lruBound(self):
        for i, name in enumerate(["a", "b", "c"]):
            jid = JID("%s@example.org/r" % name)
            d = self.disco.info(jid)
            self.h.receive(infoResult(self.lastQuery()["id"], jid))
            self.successResultOf(d)
        self.assertIsNone(self.disco.cached(JID("a@example.org/r")))
        self.assertIsInstance(self.disco.cached(JID("c@example.org/r")), PeerInfo)

    def test_unavailablePresenceDropsEntry(self):
        d = self.disco.features(BOB)
        self.h.receive(infoResult(self.lastQuery()["id"]))
        self.successResultOf(d)
        self.h.receive("<presence from='bob@example.org/other' type='unavailable'/>")
        self.assertIsNotNone(self.disco.cached(BOB))
        self.h.receive("<presence from='%s' type='unavailable'/>" % BOB.full())
        self.assertIsNone(self.disco.cached(BOB))

    def test_disconnectClearsCacheAndFailsPending(self):
        d = self.disco.features(BOB)
        self.h.receive(infoResult(self.lastQuery()["id"]))
        self.successResultOf(d)
        pending = self.disco.features(JID("carol@example.org/x"))
        self.h.disconnect()
        self.assertIsNone(self.disco.cached(BOB))
        self.failureResultOf(pending)

    def test_items(self):
        d = self.disco.items(JID("example.org"))
        iq = self.lastQuery()
        self.assertEqual(next(iq.elements()).uri, ns.NS_DISCO_ITEMS)
        self.h.receive("<iq type='result' id='%s' from='example.org'><query xmlns='%s'>"
                       "<item jid='proxy.example.org' name='Proxy'/>"
                       "<item jid='pubsub.example.org' node='n'/></query></iq>"
                       % (iq["id"], ns.NS_DISCO_ITEMS))
        items = self.successResultOf(d)
        self.assertEqual([(i.entity, i.node, i.name) for i in items],
                         [(JID("proxy.example.org"), "", "Proxy"),
                          (JID("pubsub.example.org"), "n", None)])


class DiscoResponderTests(SynchronousTestCase):
    """Answers like wokkel's DiscoHandler, without interning requester JIDs."""

    def setUp(self):
        from bytestreamd.xmpp.disco import DiscoResponder
        from bytestreamd.xmpp.client import Identity
        from twisted.words.protocols.jabber import jid as jidModule
        self.jidModule = jidModule
        self.h = ConnectionHarness()
        self.h.addHandler(DiscoResponder())
        self.h.addHandler(Identity())

    def test_infoListsIdentityAndFeaturesWithoutInterning(self):
        cache = getattr(self.jidModule, "__internJIDs")
        before = len(cache)
        self.h.receive("<iq type='get' id='d1' from='peer@example.org/r%s' "
                       "to='alice@example.org/daemon'>"
                       "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
                       % len(cache))
        answer = self.h.sent[-1]
        self.assertEqual((answer["type"], answer["id"]), ("result", "d1"))
        features = {f["var"] for f in answer.query.elements() if f.name == "feature"}
        self.assertIn("http://jabber.org/protocol/disco#info", features)
        identity = [e for e in answer.query.elements() if e.name == "identity"][0]
        self.assertEqual((identity["category"], identity["type"]), ("client", "bot"))
        self.assertEqual(len(cache), before)

    def test_unknownNodeIsItemNotFound(self):
        self.h.receive("<iq type='get' id='d2' from='peer@example.org/r' "
                       "to='alice@example.org/daemon'>"
                       "<query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>")
        answer = self.h.sent[-1]
        self.assertEqual(answer["type"], "error")
        self.assertEqual(answer.error.firstChildElement().name, "item-not-found")

    def test_items(self):
        self.h.receive("<iq type='get' id='d3' from='peer@example.org/r' "
                       "to='alice@example.org/daemon'>"
                       "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        self.assertEqual(self.h.sent[-1]["type"], "result")
