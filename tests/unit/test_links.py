"""
The link registry against fakes: a fake SI handler whose Deferreds the test
fires, a MemoryReactor for the link sockets, a recording event sink.
"""

import os
import tempfile

from twisted.internet import defer, error
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer
from zope.interface.verify import verifyObject

from bytestreamd.config import Config
from bytestreamd.errors import (MethodFailed, NegotiationFailed, NoSuchLink,
                                NotConnected, OfferRejected, ResourceLimit,
                                SyntaxErrorInArgument)
from bytestreamd.interfaces import (IControlBackend, IIncomingOffer, INegotiator,
                                    IOfferAcceptor)
from bytestreamd.links import LinkManager
from bytestreamd.negotiation import si_profiles
from tests.unit.test_local import FakeStream


class FakeXMPP:
    connected = True
    target = "127.0.0.1:5222"

    def __init__(self):
        class C(list):
            jid = JID("alice@example.org/daemon")
        self.connection = C()
        self.jid = self.connection.jid

        class S:
            lastReason = "not connected yet"
        self.state = S()


@implementer(INegotiator)
class FakeSI:
    """An INegotiator whose Deferreds the test fires; it records each offer
    as SI would put it on the wire (profile namespace and headers)."""

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
        self.offers.append((peer, profile, headers, methods, options, progress, d))
        return d


@implementer(IIncomingOffer)
class FakeOffer:
    negotiation = "si"
    sid = "fake-sid"

    def __init__(self, peer, headers=None, profile="urn:x-bytestreamd:si:link:0"):
        self.peer = JID(peer)
        self.headers = headers or {}
        self.profile = profile
        self.application = si_profiles.fromHeaders(profile, self.headers)
        self.rejected = None
        self.accepted = None

    def accept(self, progress=None, rangeAnswer=None):
        self.accepted = defer.Deferred()
        self.progress = progress
        self.rangeAnswer = rangeAnswer
        return self.accepted

    def reject(self, reason="Offer Declined"):
        self.rejected = reason


class LinkManagerTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.dir = tempfile.mkdtemp()
        self.config = Config(jid=JID("alice@example.org/daemon"), password="x",
                             runtime_dir=self.dir, max_links=2,
                             accept_allow=("bob@example.org",),
                             services={"echo": "tcp:host=127.0.0.1:port=7"})
        self.xmpp = FakeXMPP()
        self.si = FakeSI()
        self.manager = LinkManager(self.reactor, self.config, self.xmpp, [self.si],
                                   None, ["s5b", "ibb"])
        self.events = []
        self.manager.subscribe(self.events.append)

    def eventLines(self):
        return [" ".join((e.kind,) + e.words) + "".join(
            " %s=%s" % kv for kv in e.options) for e in self.events]

    def test_openCreatesSocketAndNegotiates(self):
        info = self.manager.open(JID("bob@example.org/daemon"), "owner", service="echo")
        self.assertEqual(info.state, "NEGO")
        self.assertEqual(info.socket, os.path.join(self.dir, "links", info.id))
        self.assertEqual(self.reactor.unixServers[0][0], info.socket)
        peer, profile, headers, methods, options, progress, d = self.si.offers[0]
        self.assertEqual(headers, {"service": "echo"})
        progress("INIT", "s5b", None)
        progress("BAD", "s5b", "127.0.0.1:1: connection refused")
        progress("INIT", "ibb", None)
        d.callback(FakeStream())
        self.assertEqual(
            [l.split(" peer=")[0] for l in self.eventLines()],
            ["LINK %s INIT method=s5b" % info.id,
             "LINK %s BAD method=s5b" % info.id,
             "LINK %s INIT method=ibb" % info.id,
             "LINK %s GOOD method=ibb" % info.id])
        self.assertIn("reason=127.0.0.1:1: connection refused", self.eventLines()[1])
        self.assertEqual(self.manager.links()[0].state, "GOOD")

    def test_finalFailureIsBadWithFinalAndRemovesTheLink(self):
        info = self.manager.open(JID("bob@example.org/daemon"), "owner")
        self.si.offers[0][-1].errback(NegotiationFailed(
            "no bytestream method in common", condition="no-valid-streams"))
        last = self.events[-1]
        self.assertEqual(last.words, (info.id, "BAD"))
        self.assertIn(("final", "yes"), last.options)
        self.assertIn(("reason", "no bytestream method in common (no-valid-streams)"),
                      last.options)
        self.assertEqual(self.manager.links(), [])

    def test_cleanEndIsClosAndErrorIsErr(self):
        a = self.manager.open(JID("bob@example.org/daemon"), "o")
        b = self.manager.open(JID("bob@example.org/daemon"), "o")
        streams = [FakeStream(), FakeStream()]
        for (offer, stream) in zip(self.si.offers, streams):
            offer[-1].callback(stream)
        # Attach local clients so the streams get protocols.
        for factory in [s[1] for s in self.reactor.unixServers]:
            factory.buildProtocol(None).makeConnection(StringTransport())
        streams[0].protocol.connectionLost(Failure(error.ConnectionDone()))
        streams[1].protocol.connectionLost(Failure(MethodFailed("x")))
        states = {e.words[0]: e.words[1] for e in self.events}
        self.assertEqual(states[a.id], "CLOS")
        self.assertEqual(states[b.id], "ERR")
        self.assertEqual(self.manager.links(), [])

    def test_limitsAndValidation(self):
        self.manager.open(JID("bob@example.org/daemon"), "o")
        self.manager.open(JID("bob@example.org/daemon"), "o")
        self.assertRaises(ResourceLimit, self.manager.open, JID("bob@example.org/d"), "o")
        self.assertRaises(SyntaxErrorInArgument, self.manager.open,
                          JID("bob@example.org"), "o")
        self.xmpp.connected = False
        self.assertRaises(NotConnected, self.manager.open, JID("bob@example.org/d"), "o")

    def test_unknownMethodIsSyntaxError(self):
        self.assertRaises(SyntaxErrorInArgument, self.manager.open,
                          JID("bob@example.org/d"), "o", methods=["jingle"])

    def test_offerFromStrangerRefused(self):
        self.assertRaises(OfferRejected, self.manager.offerReceived,
                          FakeOffer("mallory@evil.example/x"))
        self.assertEqual(self.events, [])

    def test_offerFromAllowedIsAnEventThenAccept(self):
        offer = FakeOffer("bob@example.org/daemon", {"service": "other"})
        self.manager.offerReceived(offer)
        event = self.events[-1]
        self.assertEqual(event.kind, "OFFER")
        linkId = event.words[0]
        self.assertIn(("from", "bob@example.org/daemon"), event.options)
        info = self.manager.accept(linkId, "owner")
        self.assertTrue(info.socket.endswith(linkId))
        offer.progress("INIT", "ibb", None)
        offer.accepted.callback(FakeStream())
        self.assertEqual(self.events[-1].words, (linkId, "GOOD"))

    def test_rejectAndUnknownIds(self):
        offer = FakeOffer("bob@example.org/daemon")
        self.manager.offerReceived(offer)
        linkId = self.events[-1].words[0]
        self.manager.reject(linkId, "not now")
        self.assertEqual(offer.rejected, "not now")
        self.assertRaises(NoSuchLink, self.manager.accept, linkId, "o")
        self.assertRaises(NoSuchLink, self.manager.close, "nope")

    def test_serviceOfferConnectsEndpointFirst(self):
        offer = FakeOffer("bob@example.org/daemon", {"service": "echo"})
        self.manager.offerReceived(offer)
        host, port, factory = self.reactor.tcpClients[0][:3]
        self.assertEqual((host, port), ("127.0.0.1", 7))
        self.assertIsNone(offer.accepted)  # not before the service answers
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        self.assertEqual(offer.rejected, "service echo unavailable")
        self.assertEqual(self.manager.links(), [])

    def test_closeWhileNegotiatingIsClos(self):
        info = self.manager.open(JID("bob@example.org/daemon"), "o")
        self.manager.close(info.id)
        self.assertEqual(self.events[-1].words, (info.id, "CLOS"))
        self.assertEqual(self.manager.links(), [])

    def test_serverEventsBroadcast(self):
        self.manager.serverStateChanged(False, "connection refused")
        self.assertTrue(self.events[-1].broadcast)
        self.assertEqual(self.events[-1].words, ("disconnected",))


class RuntimeDirTests(SynchronousTestCase):
    def test_privateUnlessShared(self):
        import dataclasses
        import stat
        from bytestreamd.daemon import _makeRuntimeDir
        base = tempfile.mkdtemp()
        config = Config(jid=JID("a@example.org/d"), password="x",
                        runtime_dir=os.path.join(base, "run"))
        _makeRuntimeDir(config)
        for path in (config.runtime_dir, os.path.join(config.runtime_dir, "links")):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700)
        # An existing directory is never chmodded (bytestreamd.runtime): a
        # shared one is a new one.
        config = dataclasses.replace(config, socket_mode=0o660,
                                     runtime_dir=os.path.join(base, "shared"))
        _makeRuntimeDir(config)
        self.assertEqual(stat.S_IMODE(os.stat(config.runtime_dir).st_mode), 0o750)


class PeerOfflineTests(LinkManagerTests.__bases__[0]):
    def test_inBandLinksOfAVanishedPeerEndErr(self):
        base = LinkManagerTests("test_serverEventsBroadcast")
        base.setUp()
        announced = []

        class P:
            def announce(self, peer):
                announced.append(peer)
        base.manager.presence = P()
        info = base.manager.open(JID("bob@example.org/daemon"), "o")
        stream = FakeStream()
        base.si.offers[0][-1].callback(stream)
        self.assertEqual(announced, [JID("bob@example.org/daemon")])
        base.manager.peerOffline(JID("bob@example.org/other"))
        self.assertEqual(base.events[-1].words, (info.id, "GOOD"))
        base.manager.peerOffline(JID("bob@example.org/daemon"))
        self.assertEqual(base.events[-1].words, (info.id, "ERR"))
        self.assertIn("went offline", dict(base.events[-1].options)["reason"])
        self.assertTrue(stream.aborted)
        self.assertEqual(base.manager.links(), [])


class TruthfulEndTests(SynchronousTestCase):
    """Issue 6 at the link layer: bounded states, CLOSE that ends, 451 for fds."""

    def setUp(self):
        base = LinkManagerTests("test_serverEventsBroadcast")
        base.setUp()
        self.base = base
        self.manager, self.reactor, self.events = base.manager, base.reactor, base.events

    def good(self):
        info = self.manager.open(JID("bob@example.org/daemon"), "o")
        stream = FakeStream()
        self.base.si.offers[-1][-1].callback(stream)
        return info, stream

    def test_socketFailureIs451AndLeavesNothing(self):
        # Issue 6 h: out of file descriptors.
        import errno

        def noFds(*a, **kw):
            raise OSError(errno.EMFILE, "Too many open files")
        self.reactor.listenUNIX = noFds
        e = self.assertRaises(ResourceLimit, self.manager.open,
                              JID("bob@example.org/daemon"), "o")
        self.assertIn("Too many open files", str(e))
        self.assertEqual(self.manager.links(), [])
        self.assertEqual(self.base.si.offers, [])

    def test_closeOnGoodLinkWithoutClientEnds(self):
        # Issue 6 a/f: CLOSE on a GOOD link ends it, client or not.
        info, stream = self.good()
        self.manager.close(info.id)
        self.assertTrue(stream.closed)
        stream.protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.events[-1].words, (info.id, "CLOS"))
        self.assertIn(("confirmed", "no"), self.events[-1].options)
        self.assertEqual(self.manager.links(), [])

    def test_closeIsBoundedWhenTheTransportNeverCloses(self):
        info, stream = self.good()
        self.manager.close(info.id)
        self.reactor.advance(self.base.config.peer_timeout + 1)
        self.assertTrue(stream.aborted)
        self.assertEqual(self.events[-1].words, (info.id, "CLOS"))
        self.assertEqual(self.manager.links(), [])

    def test_goodWithoutLocalClientIsBounded(self):
        info, stream = self.good()
        self.reactor.advance(self.base.config.attach_timeout + 1)
        self.assertEqual(self.events[-1].words, (info.id, "ERR"))
        self.assertIn("attach_timeout", dict(self.events[-1].options)["reason"])
        self.assertTrue(stream.aborted)

    def test_localClientStopsTheAttachTimer(self):
        info, stream = self.good()
        factory = self.reactor.unixServers[-1][1]
        factory.buildProtocol(None).makeConnection(StringTransport())
        self.reactor.advance(self.base.config.attach_timeout + 1)
        self.assertEqual(self.events[-1].words, (info.id, "GOOD"))

    def test_peerBrokenWithoutLocalClientIsReported(self):
        # Issue 6 f: a broken stream is reported with no client attached.
        from bytestreamd.errors import BytestreamBroken
        info, stream = self.good()
        stream.protocol.connectionLost(Failure(BytestreamBroken("reset by peer")))
        self.assertEqual(self.events[-1].words, (info.id, "ERR"))

    def test_peerGoneEndsEveryMethod(self):
        info, stream = self.good()
        stream.method = "s5b"
        self.manager.peerGone(JID("bob@example.org/daemon"), "no answer to ping")
        self.assertEqual(self.events[-1].words, (info.id, "ERR"))
        self.assertEqual(dict(self.events[-1].options)["reason"], "no answer to ping")


class FakesAndSeamsTests(SynchronousTestCase):
    """Every fake here stands for an interface; the seams hold (issue 6 sec. 2)."""

    def test_fakesProvideTheirInterfaces(self):
        verifyObject(INegotiator, FakeSI())
        verifyObject(IIncomingOffer, FakeOffer("bob@example.org/daemon"))
        base = LinkManagerTests("test_serverEventsBroadcast")
        base.setUp()
        verifyObject(IControlBackend, base.manager)
        verifyObject(IOfferAcceptor, base.manager)

    def test_negotiationIsShownOnEventsAndLinks(self):
        base = LinkManagerTests("test_serverEventsBroadcast")
        base.setUp()
        info = base.manager.open(JID("bob@example.org/daemon"), "o")
        self.assertIn(("negotiation", "si"), info.extra)
        base.si.offers[0][-1].callback(FakeStream())
        self.assertIn(("negotiation", "si"), base.events[-1].options)
        self.assertEqual(base.manager.links()[0].extra[:2],
                         (("negotiation", "si"), ("sid", FakeStream().sid)))
        base.manager.offerReceived(FakeOffer("bob@example.org/daemon"))
        self.assertIn(("negotiation", "si"), base.events[-1].options)

    def test_negotiatorPickedPerPeerFromCachedFeatures(self):
        class Named(FakeSI):
            def __init__(self, name, feature):
                FakeSI.__init__(self)
                self.name, self.feature = name, feature

            def supports(self, features):
                return self.feature in features

        class Info:
            def __init__(self, features):
                self.features = features

        class Disco:
            cache = {JID("bob@example.org/j"): Info({"urn:xmpp:jingle:1"}),
                     JID("bob@example.org/s"): Info({"http://jabber.org/protocol/si"}),
                     JID("bob@example.org/n"): Info(set())}

            def cached(self, peer):
                return self.cache.get(peer)

            def features(self, peer):
                return defer.succeed(self.cache[peer].features)

        jingle = Named("jingle", "urn:xmpp:jingle:1")
        si = Named("si", "http://jabber.org/protocol/si")
        base = LinkManagerTests("test_serverEventsBroadcast")
        base.setUp()
        manager = LinkManager(base.reactor, base.config, base.xmpp, [jingle, si],
                              Disco(), ["s5b", "ibb"])
        self.assertIs(manager.negotiatorFor(JID("bob@example.org/j")), jingle)
        self.assertIs(manager.negotiatorFor(JID("bob@example.org/s")), si)
        # Nothing supported or nothing known: the first says why not.
        self.assertIs(manager.negotiatorFor(JID("bob@example.org/n")), jingle)
        self.assertIs(manager.negotiatorFor(JID("bob@example.org/unknown")), jingle)
        info = manager.open(JID("bob@example.org/s"), "o")
        self.assertEqual((len(jingle.offers), len(si.offers)), (0, 1))
        self.assertIn(("negotiation", "si"), info.extra)
