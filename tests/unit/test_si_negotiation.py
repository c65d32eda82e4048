"""
StreamInitiation on a ConnectionHarness, with fake bytestream methods whose
initiate/expect Deferreds the tests fire by hand.
"""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.xmpp.disco import PeerDiscovery
from bytestreamd.errors import MethodFailed, NegotiationFailed, OfferRejected
from bytestreamd.interfaces import IOfferAcceptor, IStreamMethod
from bytestreamd.application import FileApplication, LinkApplication
from bytestreamd.negotiation import si_profiles
from bytestreamd.negotiation.si import StreamInitiation
from bytestreamd.wire.si import SIAccept, SIOffer
from tests.helpers import ConnectionHarness

BOB = JID("bob@example.org/laptop")
ALL = (ns.NS_SI, ns.NS_LINK_PROFILE, ns.NS_S5B, ns.NS_IBB, ns.NS_SI_MULTIPLE)


class FakeStream:
    def __init__(self, method):
        self.method = method
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


@implementer(IStreamMethod)
class FakeMethod:
    def __init__(self, name, namespace):
        self.name = name
        self.namespace = namespace
        self.initiated = []
        self.expected = []
        self.cancelled = []

    def _attempt(self, ctx, into):
        d = defer.Deferred(lambda d: self.cancelled.append(ctx.sid))
        into.append((ctx, d))
        return d

    def initiate(self, ctx):
        return self._attempt(ctx, self.initiated)

    def expect(self, ctx):
        return self._attempt(ctx, self.expected)


@implementer(IStreamMethod)
class FailingMethod(FakeMethod):
    """Always fails at once, as a method that finds nothing to try."""

    def initiate(self, ctx):
        self.initiated.append((ctx, None))
        return defer.fail(MethodFailed("no candidate reachable"))

    expect = initiate


@implementer(IOfferAcceptor)
class FakeAcceptor:
    def __init__(self):
        self.offers = []
        self.expired = []
        self.rejectWith = None
        self.onOffer = None

    def offerReceived(self, offer):
        if self.rejectWith:
            if isinstance(self.rejectWith, Exception):
                raise self.rejectWith
            raise OfferRejected(self.rejectWith)
        self.offers.append(offer)
        if self.onOffer:
            self.onOffer(offer)

    def offerExpired(self, offer, reason):
        self.expired.append((offer, reason))


class Base(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.s5b = FakeMethod("s5b", ns.NS_S5B)
        self.ibb = FakeMethod("ibb", ns.NS_IBB)
        self.disco = PeerDiscovery(timeout=5)
        self.acceptor = FakeAcceptor()
        self.si = StreamInitiation(self.h.clock, [self.s5b, self.ibb], self.disco,
                                   self.acceptor)
        self.h.addHandler(self.disco)
        self.h.addHandler(self.si)
        self.events = []

    def progress(self, state, method, reason):
        self.events.append((state, method, reason))

    def lastIQ(self):
        return [x for x in self.h.sent if x.name == "iq"][-1]

    def answerDisco(self, features=ALL):
        iq = self.lastIQ()
        self.assertEqual(next(iq.elements()).uri, ns.NS_DISCO_INFO)
        self.h.receive("<iq type='result' id='%s' from='%s'><query xmlns='%s'>%s</query></iq>"
                       % (iq["id"], BOB.full(), ns.NS_DISCO_INFO,
                          "".join("<feature var='%s'/>" % f for f in features)))

    def sentOffer(self):
        iq = self.lastIQ()
        self.assertEqual((iq["type"], iq["to"]), ("set", BOB.full()))
        return iq, SIOffer.fromElement(next(iq.elements(ns.NS_SI, "si")))

    def answerOffer(self, iq, accept):
        self.h.receive("<iq type='result' id='%s' from='%s'>%s</iq>"
                       % (iq["id"], BOB.full(), accept.toElement().toXml()))

    def answerError(self, iq, condition, app="", text=""):
        if text:
            text = "<text xmlns='%s'>%s</text>" % (ns.NS_STANZAS, text)
        if app:
            app = "<%s xmlns='%s'/>" % (app, ns.NS_SI)
        self.h.receive("<iq type='error' id='%s' from='%s'><error type='cancel'>"
                       "<%s xmlns='%s'/>%s%s</error></iq>"
                       % (iq["id"], BOB.full(), condition, ns.NS_STANZAS, text, app))


class OutgoingTests(Base):
    def offer(self, **kw):
        kw.setdefault("progress", self.progress)
        if "methodNames" in kw:
            kw["methods"] = kw.pop("methodNames")
        return self.si.offer(BOB, si_profiles.fromHeaders(
            ns.NS_LINK_PROFILE, kw.pop("headers", {"service": "ssh"})),
            options={"block-size": 4096}, **kw)

    def test_siMultipleFallback(self):
        d = self.offer()
        self.answerDisco()
        iq, offer = self.sentOffer()
        self.assertTrue(offer.multiple)
        self.assertEqual(offer.methods, [ns.NS_S5B, ns.NS_IBB])
        self.assertEqual(offer.profile, ns.NS_LINK_PROFILE)
        self.assertEqual(offer.payload.getAttribute("service"), "ssh")
        self.answerOffer(iq, SIAccept(methods=[ns.NS_S5B, ns.NS_IBB]))
        self.assertEqual(self.events, [("INIT", "s5b", None)])
        ctx, attempt = self.s5b.initiated[0]
        self.assertEqual((ctx.sid, ctx.initiator, ctx.target, ctx.weAreInitiator),
                         (offer.id, self.h.jid, BOB, True))
        self.assertEqual(ctx.options, {"block-size": 4096})
        attempt.errback(MethodFailed("proxy refused"))
        self.assertEqual(self.events, [("INIT", "s5b", None), ("BAD", "s5b", "proxy refused"),
                                       ("INIT", "ibb", None)])
        ctx2, attempt2 = self.ibb.initiated[0]
        self.assertEqual(ctx2.sid, offer.id)
        stream = FakeStream("ibb")
        attempt2.callback(stream)
        self.assertIs(self.successResultOf(d), stream)

    def test_failingMethodFallsBack(self):
        failing = FailingMethod("s5b", ns.NS_S5B)
        self.si.methods = [failing, self.ibb]
        d = self.offer()
        self.answerDisco()
        iq, offer = self.sentOffer()
        self.answerOffer(iq, SIAccept(methods=[ns.NS_S5B, ns.NS_IBB]))
        self.assertEqual([e[:2] for e in self.events],
                         [("INIT", "s5b"), ("BAD", "s5b"), ("INIT", "ibb")])
        self.assertEqual(self.events[1][2], "no candidate reachable")
        self.ibb.initiated[0][1].callback(FakeStream("ibb"))
        self.successResultOf(d)

    def test_peerOrderIsFollowed(self):
        d = self.offer()
        self.answerDisco()
        iq, _ = self.sentOffer()
        self.answerOffer(iq, SIAccept(methods=[ns.NS_IBB, ns.NS_S5B]))
        self.assertEqual(self.events, [("INIT", "ibb", None)])
        self.assertEqual(self.s5b.initiated, [])
        self.ibb.initiated[0][1].callback(FakeStream("ibb"))
        self.successResultOf(d)

    def test_lastFailureIsNotReported(self):
        d = self.offer()
        self.answerDisco()
        iq, _ = self.sentOffer()
        self.answerOffer(iq, SIAccept(methods=[ns.NS_S5B, ns.NS_IBB]))
        self.s5b.initiated[0][1].errback(MethodFailed("proxy refused"))
        self.ibb.initiated[0][1].errback(MethodFailed("item-not-found", "item-not-found"))
        self.assertEqual([e[0] for e in self.events], ["INIT", "BAD", "INIT"])
        f = self.failureResultOf(d, MethodFailed)
        self.assertEqual(f.value.reason, "s5b: proxy refused; ibb: item-not-found")

    def test_plainPeerGetsPlainOffer(self):
        d = self.offer()
        self.answerDisco([ns.NS_SI, ns.NS_LINK_PROFILE, ns.NS_S5B, ns.NS_IBB])
        iq, offer = self.sentOffer()
        self.assertFalse(offer.multiple)
        self.assertEqual(list(next(iq.elements(ns.NS_SI, "si"))
                              .elements(ns.NS_SI_MULTIPLE, "si-multiple")), [])
        self.answerOffer(iq, SIAccept(method=ns.NS_IBB))
        self.ibb.initiated[0][1].callback(FakeStream("ibb"))
        self.successResultOf(d)
        self.assertEqual(self.events, [("INIT", "ibb", None)])

    def test_keepAliveReoffer(self):
        d = self.offer()
        self.answerDisco([ns.NS_SI, ns.NS_LINK_PROFILE, ns.NS_S5B, ns.NS_IBB])
        iq, first = self.sentOffer()
        self.answerOffer(iq, SIAccept(method=ns.NS_S5B))
        self.s5b.initiated[0][1].errback(MethodFailed("no candidate connected"))
        self.assertEqual(self.events, [("INIT", "s5b", None),
                                       ("BAD", "s5b", "no candidate connected")])
        iq2, second = self.sentOffer()
        self.assertNotEqual(iq2["id"], iq["id"])
        self.assertNotEqual(second.id, first.id)
        self.assertEqual(second.methods, [ns.NS_IBB])
        self.answerOffer(iq2, SIAccept(method=ns.NS_IBB))
        self.assertEqual(self.events[-1], ("INIT", "ibb", None))
        ctx, attempt = self.ibb.initiated[0]
        self.assertEqual(ctx.sid, second.id)
        attempt.callback(FakeStream("ibb"))
        self.successResultOf(d)

    def test_keepAliveReofferRefused(self):
        d = self.offer()
        self.answerDisco([ns.NS_SI, ns.NS_LINK_PROFILE, ns.NS_S5B, ns.NS_IBB])
        iq, _ = self.sentOffer()
        self.answerOffer(iq, SIAccept(method=ns.NS_S5B))
        self.s5b.initiated[0][1].errback(MethodFailed("no candidate connected"))
        iq2, _ = self.sentOffer()
        self.answerError(iq2, "forbidden", text="Offer Declined")
        f = self.failureResultOf(d, MethodFailed)
        self.assertIn("s5b: no candidate connected", f.value.reason)
        self.assertIn("re-offer of ibb refused", f.value.reason)
        self.assertEqual(f.value.condition, "forbidden")

    def test_keepAliveLastMethodNotReported(self):
        d = self.offer(methodNames=["ibb"])
        self.answerDisco([ns.NS_SI, ns.NS_LINK_PROFILE, ns.NS_S5B, ns.NS_IBB])
        iq, offer = self.sentOffer()
        self.assertEqual(offer.methods, [ns.NS_IBB])
        self.answerOffer(iq, SIAccept(method=ns.NS_IBB))
        self.ibb.initiated[0][1].errback(MethodFailed("closed"))
        self.assertEqual(self.events, [("INIT", "ibb", None)])
        self.failureResultOf(d, MethodFailed)
        self.assertEqual(self.lastIQ()["id"], iq["id"])

    def test_peerWithoutSI(self):
        d = self.offer()
        self.answerDisco([ns.NS_IBB])
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertEqual(f.value.condition, "service-unavailable")
        self.assertIn("does not support", f.value.reason)
        self.assertIn(ns.NS_SI, f.value.reason)

    def test_peerWithoutProfile(self):
        d = self.offer()
        self.answerDisco([ns.NS_SI, ns.NS_IBB])
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertIn(ns.NS_LINK_PROFILE, f.value.reason)

    def test_discoFailure(self):
        d = self.offer()
        self.h.clock.advance(5.1)
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertIn("cannot reach peer", f.value.reason)
        self.assertEqual(self.events, [])

    def test_noMethodInCommon(self):
        d = self.offer()
        self.answerDisco([ns.NS_SI, ns.NS_LINK_PROFILE])
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertEqual(f.value.condition, "no-valid-streams")
        self.assertEqual(f.value.reason, "no bytestream method in common: "
                         "we offer s5b, ibb, peer supports none of them")

    def test_restrictedMethodNotInCommon(self):
        d = self.offer(methodNames=["s5b"])
        self.answerDisco([ns.NS_SI, ns.NS_LINK_PROFILE, ns.NS_IBB])
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertEqual(f.value.reason, "no bytestream method in common: "
                         "we offer s5b, peer supports ibb")

    def test_unknownMethodName(self):
        f = self.failureResultOf(self.offer(methodNames=["jingle"]), NegotiationFailed)
        self.assertIn("jingle", f.value.reason)

    def test_peerErrors(self):
        for condition, app, expected in [("forbidden", "", "forbidden"),
                                         ("bad-request", "no-valid-streams", "no-valid-streams"),
                                         ("bad-request", "bad-profile", "bad-profile")]:
            self.disco.forget(BOB)
            d = self.offer()
            self.answerDisco()
            iq, _ = self.sentOffer()
            self.answerError(iq, condition, app, "Nope")
            f = self.failureResultOf(d, NegotiationFailed)
            self.assertEqual(f.value.condition, expected)
            self.assertIn("refused the offer: %s" % condition, f.value.reason)
            self.assertIn("Nope", f.value.reason)
        self.assertEqual(self.events, [])

    def test_answerTimeout(self):
        d = self.offer()
        self.answerDisco()
        self.h.clock.advance(69)
        self.assertNoResult(d)
        self.h.clock.advance(2)
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertIn("did not answer the offer within 70s", f.value.reason)

    def test_malformedAnswer(self):
        d = self.offer()
        self.answerDisco()
        iq, _ = self.sentOffer()
        self.h.receive("<iq type='result' id='%s' from='%s'/>" % (iq["id"], BOB.full()))
        self.failureResultOf(d, NegotiationFailed)

    def test_answerWithMethodNotOffered(self):
        d = self.offer(methodNames=["ibb"])
        self.answerDisco()
        iq, _ = self.sentOffer()
        self.answerOffer(iq, SIAccept(method=ns.NS_S5B))
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertIn("did not offer", f.value.reason)

    def test_attemptTimeout(self):
        d = self.offer()
        self.answerDisco()
        iq, offer = self.sentOffer()
        self.answerOffer(iq, SIAccept(methods=[ns.NS_S5B, ns.NS_IBB]))
        self.h.clock.advance(29)
        self.assertEqual(len(self.events), 1)
        self.h.clock.advance(1.5)
        self.assertEqual(self.s5b.cancelled, [offer.id])
        self.assertEqual(self.events[1], ("BAD", "s5b", "timed out after 30s"))
        self.h.clock.advance(31)
        f = self.failureResultOf(d, MethodFailed)
        self.assertEqual(f.value.reason, "s5b: timed out after 30s; ibb: timed out after 30s")

    def test_cancelDuringAttempt(self):
        d = self.offer()
        self.answerDisco()
        iq, offer = self.sentOffer()
        self.answerOffer(iq, SIAccept(methods=[ns.NS_S5B, ns.NS_IBB]))
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.s5b.cancelled, [offer.id])
        self.assertEqual(self.ibb.initiated, [])
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_cancelDuringOffer(self):
        d = self.offer()
        self.answerDisco()
        iq, _ = self.sentOffer()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertNotIn(iq["id"], self.h.connection._iqDeferreds)
        self.answerOffer(iq, SIAccept(method=ns.NS_S5B))
        self.assertEqual(self.s5b.initiated, [])

    def test_cancelDuringDisco(self):
        d = self.offer()
        iq = self.lastIQ()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertNotIn(iq["id"], self.h.connection._iqDeferreds)

    def test_profileNotEnabled(self):
        d = self.si.offer(BOB, FileApplication("a", 1))
        self.assertEqual(self.failureResultOf(d, NegotiationFailed).value.condition,
                         "bad-profile")

    def test_discoFeatures(self):
        features = {str(f) for f in self.si.getDiscoInfo(None, None)}
        self.assertEqual(features, {ns.NS_SI, ns.NS_FEATURE_NEG, ns.NS_SI_MULTIPLE,
                                    ns.NS_LINK_PROFILE})
        self.assertEqual(self.si.getDiscoInfo(None, None, "node"), [])


def offerXml(sid="s1", methods=(ns.NS_S5B, ns.NS_IBB), profile=ns.NS_LINK_PROFILE,
             multiple=False, payload="<link xmlns='urn:x-bytestreamd:si:link:0' service='ssh'/>",
             frm=BOB, iqId="o1"):
    offer = SIOffer(sid, profile, list(methods), multiple=multiple)
    si = offer.toElement().toXml()
    if payload:
        si = si.replace("><feature", ">%s<feature" % payload, 1)
    return ("<iq type='set' id='%s' from='%s' to='alice@example.org/daemon'>%s</iq>"
            % (iqId, frm.full(), si))


class IncomingTests(Base):
    def lastError(self):
        iq = self.lastIQ()
        self.assertEqual(iq["type"], "error")
        self.assertEqual(iq["to"], BOB.full())
        [error] = [c for c in iq.elements() if c.name == "error"]
        conditions = [(c.uri, c.name) for c in error.elements()]
        texts = [str(c) for c in error.elements() if c.name == "text"]
        return error.getAttribute("type"), conditions, texts

    def test_offerReceived(self):
        self.h.receive(offerXml(methods=(ns.NS_IBB, "jabber:iq:oob", ns.NS_S5B)))
        [offer] = self.acceptor.offers
        self.assertEqual((offer.sid, offer.peer, offer.profile, offer.headers),
                         ("s1", BOB, ns.NS_LINK_PROFILE, {"service": "ssh"}))
        self.assertEqual(offer.methodNames, ["s5b", "ibb"])  # our order
        self.assertFalse(offer.multiple)
        self.assertTrue(offer.pending)
        self.assertEqual([x for x in self.h.sent if x.name == "iq"], [])

    def test_acceptPlain(self):
        self.h.receive(offerXml())
        d = self.acceptor.offers[0].accept(self.progress)
        iq = self.lastIQ()
        self.assertEqual((iq["type"], iq["id"], iq["to"]), ("result", "o1", BOB.full()))
        answer = SIAccept.fromElement(next(iq.elements(ns.NS_SI, "si")))
        self.assertEqual((answer.method, answer.multiple), (ns.NS_S5B, False))
        self.assertEqual(self.ibb.expected, [])
        ctx, attempt = self.s5b.expected[0]
        self.assertEqual((ctx.sid, ctx.initiator, ctx.target, ctx.weAreInitiator),
                         ("s1", BOB, self.h.jid, False))
        self.assertEqual(self.events, [("INIT", "s5b", None)])
        stream = FakeStream("s5b")
        attempt.callback(stream)
        self.assertIs(self.successResultOf(d), stream)
        self.assertFalse(self.acceptor.offers[0].pending)

    def test_acceptMultiple(self):
        self.h.receive(offerXml(multiple=True))
        d = self.acceptor.offers[0].accept(self.progress)
        answer = SIAccept.fromElement(next(self.lastIQ().elements(ns.NS_SI, "si")))
        self.assertEqual(answer.methods, [ns.NS_S5B, ns.NS_IBB])
        self.assertEqual(len(self.s5b.expected), 1)
        self.assertEqual(len(self.ibb.expected), 1)
        stream = FakeStream("ibb")
        self.ibb.expected[0][1].callback(stream)
        self.assertIs(self.successResultOf(d), stream)
        self.assertEqual(self.s5b.cancelled, ["s1"])
        self.assertEqual(self.events, [("INIT", "s5b", None)])
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_acceptMultipleFallbackAndFailure(self):
        self.h.receive(offerXml(multiple=True))
        d = self.acceptor.offers[0].accept(self.progress)
        self.s5b.expected[0][1].errback(MethodFailed("activation failed"))
        self.assertEqual(self.events, [("INIT", "s5b", None),
                                       ("BAD", "s5b", "activation failed"),
                                       ("INIT", "ibb", None)])
        self.ibb.expected[0][1].errback(MethodFailed("closed by peer"))
        self.assertEqual(len(self.events), 3)
        f = self.failureResultOf(d, MethodFailed)
        self.assertEqual(f.value.reason, "s5b: activation failed; ibb: closed by peer")

    def test_acceptOverallTimeout(self):
        self.h.receive(offerXml(multiple=True))
        d = self.acceptor.offers[0].accept(self.progress)
        self.h.clock.advance(59)
        self.assertNoResult(d)
        self.h.clock.advance(1.5)
        f = self.failureResultOf(d, MethodFailed)
        self.assertIn("within 60s", f.value.reason)
        self.assertEqual(self.s5b.cancelled, ["s1"])
        self.assertEqual(self.ibb.cancelled, ["s1"])

    def test_acceptCancel(self):
        self.h.receive(offerXml())
        d = self.acceptor.offers[0].accept(self.progress)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.s5b.cancelled, ["s1"])

    def test_acceptFromInsideOfferReceived(self):
        results = []
        self.acceptor.onOffer = lambda offer: results.append(offer.accept(self.progress))
        self.h.receive(offerXml())
        self.assertEqual(self.lastIQ()["type"], "result")
        self.s5b.expected[0][1].callback(FakeStream("s5b"))
        self.successResultOf(results[0])
        self.h.clock.advance(120)
        self.assertEqual(self.acceptor.expired, [])

    def test_missingIdIsBadRequest(self):
        self.h.receive(offerXml(sid="s1").replace(" id='s1'", ""))
        kind, conditions, texts = self.lastError()
        self.assertEqual(conditions[0], (ns.NS_STANZAS, "bad-request"))
        self.assertIn("no id", texts[0])
        self.assertEqual(self.acceptor.offers, [])

    def test_malformedPayloadIsBadRequest(self):
        self.h.receive(offerXml(payload="<link xmlns='urn:x-bytestreamd:si:link:0' "
                                        "service='a b'/>"))
        kind, conditions, texts = self.lastError()
        self.assertEqual(conditions, [(ns.NS_STANZAS, "bad-request"), (ns.NS_STANZAS, "text")])
        self.assertIn("service name", texts[0])
        self.assertEqual(self.acceptor.offers, [])

    def test_unknownProfile(self):
        self.h.receive(offerXml(profile=ns.NS_SI_FILE_TRANSFER, payload=""))
        kind, conditions, _ = self.lastError()
        self.assertEqual(kind, "cancel")
        self.assertIn((ns.NS_STANZAS, "bad-request"), conditions)
        self.assertIn((ns.NS_SI, "bad-profile"), conditions)

    def test_noValidStreams(self):
        self.h.receive(offerXml(methods=("jabber:iq:oob",)))
        kind, conditions, _ = self.lastError()
        self.assertEqual(kind, "cancel")
        self.assertIn((ns.NS_STANZAS, "bad-request"), conditions)
        self.assertIn((ns.NS_SI, "no-valid-streams"), conditions)

    def test_offerRejected(self):
        self.acceptor.rejectWith = "bob@example.org is not allowed"
        self.h.receive(offerXml())
        kind, conditions, texts = self.lastError()
        self.assertEqual(kind, "cancel")
        self.assertEqual(conditions[0], (ns.NS_STANZAS, "forbidden"))
        self.assertEqual(texts, ["bob@example.org is not allowed"])
        self.assertEqual(self.si.pendingOffers, [])

    def test_offerOverMaxLinksIsWaitNotForbidden(self):
        # Issue 8 item 7: a busy receiver says "wait", which openers retry.
        from bytestreamd.errors import OfferBusy
        self.acceptor.rejectWith = OfferBusy("too many links (max_links = 2)")
        self.h.receive(offerXml())
        kind, conditions, texts = self.lastError()
        self.assertEqual(kind, "wait")
        self.assertEqual(conditions[0], (ns.NS_STANZAS, "resource-constraint"))
        self.assertEqual(self.si.pendingOffers, [])

    def test_reject(self):
        self.h.receive(offerXml())
        offer = self.acceptor.offers[0]
        offer.reject("not now")
        kind, conditions, texts = self.lastError()
        self.assertEqual((conditions[0][1], texts), ("forbidden", ["not now"]))
        sent = len(self.h.sent)
        offer.reject("again")
        self.assertEqual(len(self.h.sent), sent)
        self.failureResultOf(offer.accept(self.progress), NegotiationFailed)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_offerTimeout(self):
        self.h.receive(offerXml())
        offer = self.acceptor.offers[0]
        self.h.clock.advance(59)
        self.assertEqual(self.acceptor.expired, [])
        self.h.clock.advance(1.5)
        kind, conditions, texts = self.lastError()
        self.assertEqual((conditions[0][1], texts),
                         ("forbidden", ["offer timed out after 60s"]))
        self.assertEqual(self.acceptor.expired, [(offer, "offer timed out after 60s")])
        f = self.failureResultOf(offer.accept(self.progress), NegotiationFailed)
        self.assertIn("no longer pending", f.value.reason)

    def test_disconnectExpiresOffers(self):
        self.h.receive(offerXml())
        offer = self.acceptor.offers[0]
        self.h.disconnect()
        self.assertEqual(self.acceptor.expired, [(offer, "XMPP connection lost")])
        self.assertEqual(offer.state, "expired")
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_duplicateSid(self):
        self.h.receive(offerXml(iqId="o1"))
        self.h.receive(offerXml(iqId="o2"))
        self.assertEqual(len(self.acceptor.offers), 1)
        self.assertEqual(self.lastIQ()["id"], "o2")
        self.assertEqual(self.lastError()[1][0][1], "bad-request")


class TwoDaemonsTests(SynchronousTestCase):
    """Our initiator against our target, stanzas carried between two harnesses."""

    def setUp(self):
        self.a = ConnectionHarness("alice@example.org/daemon")
        self.b = ConnectionHarness("bob@example.org/laptop")
        self.methods = {}
        self.acceptor = FakeAcceptor()
        for name, h, acceptor in (("a", self.a, FakeAcceptor()), ("b", self.b, self.acceptor)):
            s5b, ibb = FakeMethod("s5b", ns.NS_S5B), FakeMethod("ibb", ns.NS_IBB)
            disco = PeerDiscovery()
            si = StreamInitiation(h.clock, [s5b, ibb], disco, acceptor)
            h.addHandler(disco)
            h.addHandler(si)
            self.methods[name] = (s5b, ibb, si)
        self.seen = {id(self.a): 0, id(self.b): 0}

    def pump(self):
        moved = True
        while moved:
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                sent = src.sent
                for stanza in sent[self.seen[id(src)]:]:
                    moved = True
                    stanza["from"] = src.jid.full()
                    query = [c for c in stanza.elements() if c.uri == ns.NS_DISCO_INFO]
                    if query and stanza["type"] == "get":
                        features = [str(f) for f in self.methods["b"][2].getDiscoInfo(
                            None, None)] + [ns.NS_S5B, ns.NS_IBB]
                        src.receive("<iq type='result' id='%s' from='%s'><query xmlns='%s'>%s"
                                    "</query></iq>" % (stanza["id"], dst.jid.full(),
                                                       ns.NS_DISCO_INFO, "".join(
                                                           "<feature var='%s'/>" % f
                                                           for f in features)))
                    else:
                        dst.receive(stanza.toXml())
                self.seen[id(src)] = len(sent)

    def test_offerAcceptFallback(self):
        aEvents, bEvents = [], []
        d = self.methods["a"][2].offer(self.b.jid, LinkApplication("ssh"),
                                       progress=lambda *e: aEvents.append(e))
        self.pump()
        [offer] = self.acceptor.offers
        self.assertEqual((offer.peer, offer.headers, offer.multiple),
                         (self.a.jid, {"service": "ssh"}, True))
        accepted = offer.accept(lambda *e: bEvents.append(e))
        self.pump()
        aS5b, aIbb, _ = self.methods["a"]
        bS5b, bIbb, _ = self.methods["b"]
        self.assertEqual(aS5b.initiated[0][0].sid, bS5b.expected[0][0].sid)
        aS5b.initiated[0][1].errback(MethodFailed("no streamhost"))
        bS5b.expected[0][1].errback(MethodFailed("no streamhost"))
        aIbb.initiated[0][1].callback(FakeStream("ibb"))
        bIbb.expected[0][1].callback(FakeStream("ibb"))
        self.successResultOf(d)
        self.successResultOf(accepted)
        self.assertEqual([e[:2] for e in aEvents], [e[:2] for e in bEvents])
        self.assertEqual([e[:2] for e in aEvents],
                         [("INIT", "s5b"), ("BAD", "s5b"), ("INIT", "ibb")])


class BusyPeerTests(Base):
    """Issue 8 item 7: ``resource-constraint``/``wait`` is retried with backoff
    inside the attempt timeout; the pending-offer limit is configurable."""

    def busy(self, iq, errorType="wait"):
        self.h.receive("<iq type='error' id='%s' from='%s'><error type='%s'>"
                       "<resource-constraint xmlns='%s'/><text xmlns='%s'>too many "
                       "pending offers</text></error></iq>"
                       % (iq["id"], BOB.full(), errorType, ns.NS_STANZAS, ns.NS_STANZAS))

    def offer(self):
        return self.si.offer(BOB, LinkApplication("ssh"), progress=self.progress)

    def test_waitIsRetriedWithBackoffUntilAccepted(self):
        d = self.offer()
        self.answerDisco()
        first, offer = self.sentOffer()
        self.busy(first)
        self.assertNoResult(d)
        self.h.clock.advance(0.4)
        self.assertIs(self.lastIQ(), first)  # not yet: the first delay is 0.5 s
        self.h.clock.advance(0.1)
        second, again = self.sentOffer()
        self.assertIsNot(second, first)
        self.assertNotEqual(second["id"], first["id"])
        self.assertEqual(again.id, offer.id)
        self.busy(second)
        self.h.clock.advance(0.9)
        self.assertIs(self.lastIQ(), second)  # doubled: 1 s
        self.h.clock.advance(0.1)
        third, _ = self.sentOffer()
        self.answerOffer(third, SIAccept(method=ns.NS_IBB))
        self.assertEqual(self.events, [("INIT", "ibb", None)])
        self.ibb.initiated[0][1].callback(FakeStream("ibb"))
        self.successResultOf(d)

    def test_retriesEndWithinTheAttemptTimeout(self):
        self.si.attemptTimeout = 5
        d = self.offer()
        self.answerDisco()
        iq, times = None, []
        while not d.called and len(times) < 20:
            sent = self.lastIQ()
            if sent is not iq:
                iq = sent
                times.append(self.h.clock.seconds())
                self.busy(iq)
            else:
                self.h.clock.advance(0.25)
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertEqual(f.value.condition, "resource-constraint")
        self.assertIn("too many pending offers", f.value.reason)
        self.assertEqual(times, [0, 0.5, 1.5, 3.5])  # 7.5 s is past the 5 s
        self.assertEqual(self.events, [])

    def test_cancelIsRefusalAtOnce(self):
        d = self.offer()
        self.answerDisco()
        iq, _ = self.sentOffer()
        self.busy(iq, errorType="cancel")
        f = self.failureResultOf(d, NegotiationFailed)
        self.assertEqual(f.value.condition, "resource-constraint")

    def test_cancelWhileWaitingToRetry(self):
        d = self.offer()
        self.answerDisco()
        iq, _ = self.sentOffer()
        self.busy(iq)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.h.clock.advance(60)
        self.assertIs(self.lastIQ(), iq)

    def test_pendingOfferLimitIsConfigurable(self):
        self.si.maxPendingOffers = 2
        for sid in ("s1", "s2", "s3"):
            self.h.receive(offerXml(sid=sid))
        self.assertEqual(len(self.si.pendingOffers), 2)
        iq = self.h.sent[-1]
        self.assertEqual(iq["type"], "error")
        [error] = [c for c in iq.elements() if c.name == "error"]
        self.assertEqual(error["type"], "wait")
        self.assertIn("resource-constraint", [c.name for c in error.elements()])


class WiringTests(SynchronousTestCase):
    def test_setAcceptorOnce(self):
        h = ConnectionHarness()
        si = StreamInitiation(h.clock, [FakeMethod("ibb", ns.NS_IBB)], None, None)
        h.addHandler(si)
        h.receive(offerXml(methods=(ns.NS_IBB,)))  # not wired yet: refused, no crash
        [error] = [c for c in h.sent[-1].elements() if c.name == "error"]
        self.assertIn("service-unavailable", [c.name for c in error.elements()])
        self.assertEqual(si.pendingOffers, [])
        acceptor = FakeAcceptor()
        si.setAcceptor(acceptor)
        self.assertIs(si.acceptor, acceptor)
        self.assertRaises(RuntimeError, si.setAcceptor, FakeAcceptor())

    def test_daemonSizesThePendingOfferLimitByMaxLinks(self):
        from twisted.internet.testing import MemoryReactorClock
        from bytestreamd import registry
        from bytestreamd.config import Config
        config = Config(jid=JID("a@example.org/d"), password="x", max_links=500)
        [si] = registry.buildNegotiators(MemoryReactorClock(), config, [], None, ["si"])
        self.assertEqual((si.name, si.maxPendingOffers, si.acceptor), ("si", 500, None))
        self.assertTrue(si.supports({ns.NS_SI}))
        self.assertFalse(si.supports({"urn:xmpp:jingle:1"}))
        self.assertFalse(si.supports(None))

    def test_interfaces(self):
        from zope.interface.verify import verifyObject
        from bytestreamd.interfaces import IIncomingOffer, INegotiator, IOfferAcceptor
        h = ConnectionHarness()
        acceptor = FakeAcceptor()
        si = StreamInitiation(h.clock, [FakeMethod("ibb", ns.NS_IBB)], PeerDiscovery(),
                              acceptor)
        h.addHandler(si)
        verifyObject(INegotiator, si)
        verifyObject(IOfferAcceptor, acceptor)
        verifyObject(IStreamMethod, FakeMethod("ibb", ns.NS_IBB))
        h.receive(offerXml(methods=(ns.NS_IBB,)))
        [offer] = acceptor.offers
        verifyObject(IIncomingOffer, offer)
        self.assertEqual((offer.negotiation, offer.application),
                         ("si", LinkApplication("ssh")))
