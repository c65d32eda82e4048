"""
S5BMethod on a ConnectionHarness and a MemoryReactorClock: both roles,
candidate fallback, proxies (configured and discovered), refusals, the
direct SOCKS5 server's limits, S5BStream's transport semantics, and two
daemons talking through iosim.
"""

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer
from zope.interface.verify import verifyObject

from bytestreamd import ns
from bytestreamd.errors import BytestreamBroken, MethodFailed
from bytestreamd.interfaces import IBytestream, IStreamMethod, StreamContext
from bytestreamd.methods.s5b import HOLD_LIMIT, S5BMethod, S5BStream, fromConfig
from bytestreamd.wire.s5b import Query, dstAddr
from tests.helpers import ConnectionHarness, parseXml

ALICE = JID("alice@example.org/daemon")
BOB = JID("bob@example.net/daemon")
PROXY = JID("proxy.example.org")
SID = "sid-1"
HASH = dstAddr(SID, ALICE, BOB)
GREETING = b"\x05\x01\x00"


def request(address=HASH):
    return b"\x05\x01\x00\x03" + bytes([len(address)]) + address.encode() + b"\x00\x00"


def success(address=HASH):
    return b"\x05\x00\x00\x03" + bytes([len(address)]) + address.encode() + b"\x00\x00"


class HalfCloseTransport(StringTransport):
    """A StringTransport that records half-closes."""

    writeClosed = False
    paused = 0

    def loseWriteConnection(self):
        self.writeClosed = True

    def pauseProducing(self):
        self.paused += 1
        StringTransport.pauseProducing(self)


class Recorder(Protocol):
    def __init__(self):
        self.data = b""
        self.reason = None
        self.eof = False

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.reason = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseRecorder(Recorder):
    def readConnectionLost(self):
        self.eof = True

    def writeConnectionLost(self):
        pass


class Side:
    """One daemon: harness + reactor + method."""

    def __init__(self, jid, **kwargs):
        self.h = ConnectionHarness(jid.full())
        self.reactor = MemoryReactorClock()
        self.h.connection.clock = self.reactor  # one clock for everything
        kwargs.setdefault("proxies", [])
        kwargs.setdefault("interfaceAddresses", lambda: ["192.0.2.1", "2001:db8::1"])
        self.method = S5BMethod(self.reactor, **kwargs)
        self.h.addHandler(self.method)

    def listen(self, port=7777, interface="0.0.0.0"):
        self.method.addListeningPort(
            self.reactor.listenTCP(port, self.method.serverFactory, interface=interface))

    def sent(self):
        return self.h.sent

    def last(self):
        return self.h.sent[-1]

    def receive(self, xml):
        self.h.receive(xml)

    def answer(self, iq, body="", type="result", frm=None):
        self.receive("<iq type='%s' id='%s' from='%s'>%s</iq>"
                     % (type, iq["id"], frm or iq["to"], body))

    def incoming(self, data=b"", host="198.51.100.7"):
        """
        A SOCKS5 client connecting to our direct streamhost.  A connection
        the factory does not take (``proto`` None) is closed at once, as
        Twisted's port does.
        """
        proto = self.method.serverFactory.buildProtocol(IPv4Address("TCP", host, 4000))
        transport = HalfCloseTransport()
        if proto is None:
            transport.loseConnection()
            return proto, transport
        proto.makeConnection(transport)
        if data:
            proto.dataReceived(data)
        return proto, transport

    def outgoing(self, index=-1):
        """Connect the latest outgoing attempt; returns (proto, transport)."""
        host, port, factory, timeout, bind = self.reactor.tcpClients[index]
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = HalfCloseTransport()
        proto.makeConnection(transport)
        return proto, transport


def ctxOut(sid=SID):
    return StreamContext(sid=sid, initiator=ALICE, target=BOB, weAreInitiator=True)


def ctxIn(sid=SID):
    return StreamContext(sid=sid, initiator=BOB, target=ALICE, weAreInitiator=False)


def itemNotFound(text=""):
    return ("<error type='cancel'><item-not-found xmlns='%s'/>%s</error>"
            % (ns.NS_STANZAS, text))


def used(jid, sid=SID):
    return ("<query xmlns='%s' sid='%s'><streamhost-used jid='%s'/></query>"
            % (ns.NS_S5B, sid, jid))


class BasicsTests(SynchronousTestCase):
    def test_interfaces(self):
        side = Side(ALICE)
        verifyObject(IStreamMethod, side.method)
        self.assertEqual(side.method.name, "s5b")
        self.assertEqual(side.method.namespace, ns.NS_S5B)
        features = side.method.getDiscoInfo(BOB, ALICE)
        self.assertEqual([str(f) for f in features], [ns.NS_S5B])
        self.assertEqual(side.method.getDiscoInfo(BOB, ALICE, "node"), [])

    def test_streamProvidesIBytestream(self):
        verifyObject(IBytestream, S5BStream(StringTransport()))

    def test_directCandidatesWildcard(self):
        side = Side(ALICE)
        side.listen(7777, "0.0.0.0")
        self.assertEqual([(h.host, h.port) for h in side.method.directCandidates(ALICE)],
                         [("192.0.2.1", 7777)])
        side.listen(7778, "::")
        self.assertEqual([(h.host, h.port) for h in side.method.directCandidates(ALICE)],
                         [("192.0.2.1", 7777), ("192.0.2.1", 7778), ("2001:db8::1", 7778)])
        self.assertTrue(all(h.jid == ALICE for h in side.method.directCandidates(ALICE)))

    def test_directCandidatesAdvertised(self):
        side = Side(ALICE, advertise=[("gw.example.org", None), ("203.0.113.5", 9000)])
        self.assertEqual([(h.host, h.port) for h in side.method.directCandidates(ALICE)],
                         [("203.0.113.5", 9000)])  # no port to pair None with yet
        side.listen(7777, "0.0.0.0")
        self.assertEqual([(h.host, h.port) for h in side.method.directCandidates(ALICE)],
                         [("gw.example.org", 7777), ("203.0.113.5", 9000)])

    def test_listenOnConnectionInitialized(self):
        reactor = MemoryReactorClock()
        method = S5BMethod(reactor, listen=[("127.0.0.1", 0), ("::1", 0)], proxies=[])
        h = ConnectionHarness(ALICE.full())
        h.addHandler(method)
        self.assertEqual([(s[0], s[3]) for s in reactor.tcpServers],
                         [(0, "127.0.0.1"), (0, "::1")])
        self.assertIs(reactor.tcpServers[0][1], method.serverFactory)
        self.successResultOf(method.stopListening())

    def test_fromConfig(self):
        class Config:
            s5b_listen = (("0.0.0.0", 0),)
            s5b_advertise = (("h.example", None),)
            s5b_proxy = None
            s5b_connect = ("0.0.0.0/0", "::/0")
            s5b_max_handshakes = None
            max_links = 64
        reactor = MemoryReactorClock()
        method = fromConfig(reactor, Config)
        self.assertIsNone(method.proxies)
        self.assertEqual(method.direct.listen, [("0.0.0.0", 0)])
        self.assertEqual(method.direct.advertise, [("h.example", None)])
        Config.s5b_proxy = ""
        self.assertEqual(fromConfig(reactor, Config).proxies, [])
        Config.s5b_proxy = "proxy.example.org"
        self.assertEqual(fromConfig(reactor, Config).proxies, [PROXY])


class InitiatorDirectTests(SynchronousTestCase):
    def setUp(self):
        self.side = Side(ALICE, advertise=[("192.0.2.1", None)])
        self.side.listen()

    def offer(self):
        d = self.side.method.initiate(ctxOut())
        iq = self.side.last()
        self.assertEqual((iq["type"], iq["to"]), ("set", BOB.full()))
        q = Query.fromElement(iq.query)
        self.assertEqual(q.sid, SID)
        self.assertEqual(q.mode, "tcp")
        self.assertEqual([(h.jid, h.host, h.port) for h in q.streamhosts],
                         [(ALICE, "192.0.2.1", 7777)])
        return d, iq

    def test_direct(self):
        d, iq = self.offer()
        proto, transport = self.side.incoming(GREETING + request() + b"early")
        self.assertEqual(transport.value(), b"\x05\x00" + success())
        self.assertFalse(transport.disconnecting)
        self.assertNoResult(d)
        self.side.answer(iq, used(ALICE.full()))
        stream = self.successResultOf(d)
        self.assertIs(stream.transport, transport)
        self.assertEqual((stream.sid, stream.peerJID, stream.method), (SID, BOB, "s5b"))
        proto.dataReceived(b" data")
        app = Recorder()
        stream.attachProtocol(app)
        self.assertEqual(app.data, b"early data")
        proto.dataReceived(b"!")
        self.assertEqual(app.data, b"early data!")
        transport.clear()
        stream.write(b"out")
        stream.writeSequence([b"1", b"2"])
        self.assertEqual(transport.value(), b"out12")
        self.assertEqual((stream.bytesSent, stream.bytesReceived), (5, 11))
        # The session is no longer pending: a late connection is refused
        # (while another session keeps the streamhost accepting).
        self.side.method.direct.expect("f" * 40)
        _, late = self.side.incoming(GREETING + request())
        self.assertEqual(late.value()[2:4], b"\x05\x04")
        self.assertTrue(late.disconnecting)

    def test_wrongHashRefused(self):
        d, iq = self.offer()
        _, transport = self.side.incoming(GREETING + request("0" * 40))
        self.assertEqual(transport.value(), b"\x05\x00" + b"\x05\x04\x00\x03\x28" + b"0" * 40
                         + b"\x00\x00")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.side.method.serverFactory.handshaking, 0)

    def test_junkClientDropped(self):
        self.offer()
        _, transport = self.side.incoming(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.side.method.serverFactory.handshaking, 0)

    def test_slowClientDropped(self):
        self.offer()
        self.side.method.serverFactory.greetingTimeout = 10  # see test_s5b_limits
        proto, transport = self.side.incoming(b"\x05")
        self.assertEqual(self.side.method.serverFactory.handshaking, 1)
        self.side.reactor.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.side.reactor.advance(0.2)
        self.assertTrue(transport.disconnected)  # aborted
        self.assertEqual(self.side.method.serverFactory.handshaking, 0)
        proto.dataReceived(b"\x01\x00")  # too late: ignored
        self.assertEqual(transport.value(), b"")

    def test_tooManyHandshakes(self):
        # At the cap the newcomer is taken and the oldest handshake closed
        # (it used to be the newcomer that was refused: issue 8, finding 3).
        self.offer()
        factory = self.side.method.serverFactory
        factory.maxHandshakes = 2
        _, first = self.side.incoming()
        _, second = self.side.incoming()
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "198.51.100.7", 1)))
        self.assertTrue(first.disconnected)  # aborted
        self.assertFalse(second.disconnecting)
        self.assertEqual((factory.handshaking, factory.evicted), (2, 1))

    def test_targetUsedDirectButNoConnection(self):
        d, iq = self.offer()
        self.side.answer(iq, used(ALICE.full()))
        reason = self.failureResultOf(d, MethodFailed).value.reason
        self.assertIn("no SOCKS5 connection", reason)

    def test_latestLiveConnectionChosen(self):
        d, iq = self.offer()
        p1, t1 = self.side.incoming(GREETING + request())
        p2, t2 = self.side.incoming(GREETING + request())
        p3, t3 = self.side.incoming(GREETING + request())
        p3.connectionLost(Failure(error.ConnectionLost()))
        self.side.answer(iq, used(ALICE.full()))
        self.assertIs(self.successResultOf(d).transport, t2)
        self.assertTrue(t1.disconnecting)
        self.assertFalse(t2.disconnecting)

    def test_targetError(self):
        d, iq = self.offer()
        proto, transport = self.side.incoming(GREETING + request())
        self.side.answer(iq, itemNotFound(), type="error")
        f = self.failureResultOf(d, MethodFailed)
        self.assertIn(BOB.full(), f.value.reason)
        self.assertIn("item-not-found", f.value.reason)
        self.assertEqual(f.value.condition, "item-not-found")
        self.assertTrue(transport.disconnecting)  # held connection dropped

    def test_targetUsedUnknownStreamhost(self):
        d, iq = self.offer()
        self.side.answer(iq, used("evil.example.com"))
        self.assertIn("did not offer", self.failureResultOf(d, MethodFailed).value.reason)

    def test_targetAnswersJunk(self):
        d, iq = self.offer()
        self.side.answer(iq)
        self.assertIn("junk", self.failureResultOf(d, MethodFailed).value.reason)

    def test_noAnswer(self):
        d, iq = self.offer()
        self.side.reactor.advance(5 + 10 + 1)
        self.assertIn("no answer", self.failureResultOf(d, MethodFailed).value.reason)

    def test_cancel(self):
        d, iq = self.offer()
        _, transport = self.side.incoming(GREETING + request())
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(transport.disconnecting)
        _, late = self.side.incoming(GREETING + request())
        self.assertTrue(late.disconnecting)
        # A late answer is harmless.
        self.side.answer(iq, used(ALICE.full()))

    def test_duplicateSession(self):
        self.offer()
        d = self.side.method.initiate(ctxOut())
        self.assertIn("already", self.failureResultOf(d, MethodFailed).value.reason)

    def test_nothingToOffer(self):
        side = Side(ALICE)  # not listening, no proxies
        d = side.method.initiate(ctxOut())
        self.assertIn("no streamhost to offer", self.failureResultOf(d, MethodFailed).value.reason)
        self.assertEqual(side.sent(), [])


class InitiatorProxyTests(SynchronousTestCase):
    def proxyAddress(self, side, jid=PROXY, host="24.24.24.1", port=7625):
        iq = side.last()
        self.assertEqual((iq["type"], iq["to"]), ("get", jid.full()))
        self.assertEqual((iq.query.uri, iq.query.attributes), (ns.NS_S5B, {}))
        side.answer(iq, "<query xmlns='%s'><streamhost jid='%s' host='%s' port='%d'/></query>"
                    % (ns.NS_S5B, jid.full(), host, port))

    def test_proxyPathWithActivation(self):
        side = Side(ALICE, advertise=[("192.0.2.1", None)], proxies=[PROXY])
        side.listen()
        d = side.method.initiate(ctxOut())
        self.proxyAddress(side)
        offer = side.last()
        q = Query.fromElement(offer.query)
        self.assertEqual([(h.jid, h.host, h.port) for h in q.streamhosts],
                         [(ALICE, "192.0.2.1", 7777), (PROXY, "24.24.24.1", 7625)])
        side.answer(offer, used(PROXY.full()))
        self.assertEqual(side.reactor.tcpClients[-1][:2], ("24.24.24.1", 7625))
        proto, transport = side.outgoing()
        self.assertEqual(transport.value(), GREETING)
        proto.dataReceived(b"\x05\x00")
        self.assertEqual(transport.value(), GREETING + request())
        proto.dataReceived(success())
        activate = side.last()
        self.assertEqual((activate["type"], activate["to"]), ("set", PROXY.full()))
        self.assertEqual(activate.query["sid"], SID)
        self.assertEqual(str(activate.query.activate), BOB.full())
        self.assertNoResult(d)
        side.answer(activate)
        stream = self.successResultOf(d)
        self.assertIs(stream.transport, transport)
        self.assertEqual(stream.streamhost.jid, PROXY)

    def test_activationRefused(self):
        side = Side(ALICE, proxies=[PROXY])
        d = side.method.initiate(ctxOut())
        self.proxyAddress(side)
        side.answer(side.last(), used(PROXY.full()))
        proto, transport = side.outgoing()
        proto.dataReceived(b"\x05\x00" + success())
        side.answer(side.last(), "<error type='cancel'><not-allowed xmlns='%s'/></error>"
                    % ns.NS_STANZAS, type="error")
        f = self.failureResultOf(d, MethodFailed)
        self.assertIn("proxy.example.org (activate) refused: not-allowed", f.value.reason)
        self.assertTrue(transport.disconnecting)

    def test_cannotJoinProxy(self):
        side = Side(ALICE, proxies=[PROXY])
        d = side.method.initiate(ctxOut())
        self.proxyAddress(side)
        side.answer(side.last(), used(PROXY.full()))
        proto, transport = side.outgoing()
        proto.dataReceived(b"\x05\x00\x05\x02\x00\x01\0\0\0\0\0\0")
        f = self.failureResultOf(d, MethodFailed)
        self.assertIn("cannot join proxy proxy.example.org (24.24.24.1:7625)", f.value.reason)
        self.assertIn("connection not allowed by ruleset (2)", f.value.reason)

    def test_brokenProxyIsSkipped(self):
        side = Side(ALICE, proxies=[PROXY])
        side.listen()
        d = side.method.initiate(ctxOut())
        side.answer(side.last(), "<error type='cancel'><forbidden xmlns='%s'/></error>"
                    % ns.NS_STANZAS, type="error")
        q = Query.fromElement(side.last().query)
        self.assertEqual([h.jid for h in q.streamhosts], [ALICE])
        self.assertNoResult(d)

    def test_discoveryAndCache(self):
        side = Side(ALICE, proxies=None)
        d = side.method.initiate(ctxOut())
        items = side.last()
        self.assertEqual((items["to"], items.query.uri), ("example.org", ns.NS_DISCO_ITEMS))
        side.answer(items, "<query xmlns='%s'><item jid='conference.example.org'/>"
                    "<item jid='proxy.example.org'/></query>" % ns.NS_DISCO_ITEMS)
        infos = side.sent()[-2:]
        self.assertEqual(sorted(i["to"] for i in infos),
                         ["conference.example.org", "proxy.example.org"])
        for info in infos:
            if info["to"] == "proxy.example.org":
                side.answer(info, "<query xmlns='%s'><identity category='proxy' "
                            "type='bytestreams'/><feature var='%s'/></query>"
                            % (ns.NS_DISCO_INFO, ns.NS_S5B))
            else:
                side.answer(info, "<query xmlns='%s'><identity category='conference' "
                            "type='text'/></query>" % ns.NS_DISCO_INFO)
        self.proxyAddress(side)
        q = Query.fromElement(side.last().query)
        self.assertEqual([h.jid for h in q.streamhosts], [PROXY])
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        # Cached: the next offer goes straight to the target.
        count = len(side.sent())
        d2 = side.method.initiate(ctxOut("sid-2"))
        self.assertEqual(len(side.sent()), count + 1)
        self.assertEqual(side.last()["to"], BOB.full())
        # Until the stream goes away.
        side.h.disconnect()
        self.assertIsNone(side.method.proxyDirectory._cache)
        self.assertIn("no answer from bob@example.net/daemon",
                      self.failureResultOf(d2, MethodFailed).value.reason)

    def test_concurrentInitiatesShareDiscovery(self):
        side = Side(ALICE, proxies=[PROXY])
        d1 = side.method.initiate(ctxOut("a"))
        d2 = side.method.initiate(ctxOut("b"))
        self.assertEqual(len(side.sent()), 1)
        d1.cancel()  # does not disturb the other one
        self.proxyAddress(side)
        self.assertEqual(side.last()["to"], BOB.full())
        self.assertEqual(side.last().query["sid"], "b")
        self.failureResultOf(d1, defer.CancelledError)
        self.assertNoResult(d2)


class TargetTests(SynchronousTestCase):
    def setUp(self):
        self.side = Side(ALICE, candidateTimeout=5)

    def offer(self, hosts, sid=SID, frm=BOB, mode=None, iqId="offer1"):
        body = "".join("<streamhost jid='%s' host='%s' port='%d'/>" % h for h in hosts)
        modeAttr = " mode='%s'" % mode if mode else ""
        self.side.receive("<iq type='set' id='%s' from='%s' to='%s'>"
                          "<query xmlns='%s' sid='%s'%s>%s</query></iq>"
                          % (iqId, frm.full(), ALICE.full(), ns.NS_S5B, sid, modeAttr, body))

    def handshake(self, proto, address):
        proto.dataReceived(b"\x05\x00")
        proto.dataReceived(success(address))

    def test_fallbackOrderRefusedTimeoutThenSuccess(self):
        d = self.side.method.expect(ctxIn())
        hash = dstAddr(SID, BOB, ALICE)
        self.offer([(BOB.full(), "10.0.0.1", 1), (BOB.full(), "10.0.0.2", 2),
                    ("proxy.example.net", "10.0.0.3", 3)])
        clients = self.side.reactor.tcpClients
        self.assertEqual([c[:2] for c in clients], [("10.0.0.1", 1)])
        clients[0][2].clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        self.assertEqual([c[:2] for c in clients][1:], [("10.0.0.2", 2)])
        self.side.reactor.advance(5)
        self.assertTrue(self.side.reactor.connectors[1].stoppedConnecting)
        self.assertEqual([c[:2] for c in clients][2:], [("10.0.0.3", 3)])
        proto, transport = self.side.outgoing()
        self.assertEqual(transport.value(), GREETING)
        self.handshake(proto, hash)
        self.assertEqual(transport.value(), GREETING + request(hash))
        answer = self.side.last()
        self.assertEqual((answer["type"], answer["id"], answer["to"]),
                         ("result", "offer1", BOB.full()))
        self.assertEqual(answer.query["sid"], SID)
        self.assertEqual(answer.query.firstChildElement()["jid"], "proxy.example.net")
        # A proxy: GOOD on the initiator's first byte (or after the grace).
        self.assertNoResult(d)
        proto.dataReceived(b"hi")
        stream = self.successResultOf(d)
        self.assertEqual((stream.sid, stream.peerJID), (SID, BOB))
        app = Recorder()
        stream.attachProtocol(app)
        self.assertEqual(app.data, b"hi")

    def test_directStreamhostIsGoodAtOnce(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1)])
        proto, transport = self.side.outgoing()
        self.handshake(proto, dstAddr(SID, BOB, ALICE))
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_proxyGraceExpires(self):
        d = self.side.method.expect(ctxIn())
        self.offer([("proxy.example.net", "10.0.0.3", 3)])
        proto, transport = self.side.outgoing()
        self.handshake(proto, dstAddr(SID, BOB, ALICE))
        self.side.reactor.advance(1.9)
        self.assertNoResult(d)
        self.side.reactor.advance(0.2)
        self.successResultOf(d)

    def test_proxyClosesBeforeActivation(self):
        d = self.side.method.expect(ctxIn())
        self.offer([("proxy.example.net", "10.0.0.3", 3)])
        proto, transport = self.side.outgoing()
        self.handshake(proto, dstAddr(SID, BOB, ALICE))
        proto.connectionLost(Failure(error.ConnectionLost()))
        self.assertIn("before activation", self.failureResultOf(d, MethodFailed).value.reason)

    def test_allFail(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1), (BOB.full(), "10.0.0.2", 2),
                    (BOB.full(), "10.0.0.4", 4)])
        clients = self.side.reactor.tcpClients
        clients[0][2].clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
        self.side.reactor.advance(5)
        proto, transport = self.side.outgoing()
        proto.dataReceived(b"\x05\x00\x05\x04\x00\x01\0\0\0\0\0\0")
        self.assertTrue(transport.disconnecting)
        err = self.side.last()
        self.assertEqual((err["type"], err["id"]), ("error", "offer1"))
        self.assertEqual(err.error.firstChildElement().name, "item-not-found")
        f = self.failureResultOf(d, MethodFailed)
        reason = f.value.reason
        self.assertEqual(f.value.condition, "item-not-found")
        self.assertIn("10.0.0.1:1): connection refused", reason)
        self.assertIn("10.0.0.2:2): timed out after 5s (during connecting)", reason)
        self.assertIn("10.0.0.4:4): SOCKS5 error from streamhost: host unreachable (4)", reason)

    def test_handshakeTimeout(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1)])
        proto, transport = self.side.outgoing()
        self.side.reactor.advance(5)
        self.assertTrue(transport.disconnecting)
        self.assertIn("during the SOCKS5 handshake",
                      self.failureResultOf(d, MethodFailed).value.reason)

    def test_maxCandidates(self):
        self.side.method.maxCandidates = 2
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.%d" % i, i) for i in range(1, 6)])
        for i in range(2):
            self.side.reactor.tcpClients[i][2].clientConnectionFailed(
                None, Failure(error.ConnectionRefusedError()))
        self.assertEqual(len(self.side.reactor.tcpClients), 2)
        self.assertIn("3 more not tried", self.failureResultOf(d, MethodFailed).value.reason)

    def assertRefused(self, condition, iqId="offer1"):
        err = self.side.last()
        self.assertEqual((err["type"], err["id"]), ("error", iqId))
        self.assertEqual(err.error.firstChildElement().name, condition)

    def test_unknownSidRefused(self):
        self.offer([(BOB.full(), "10.0.0.1", 1)], sid="nobody-announced-this")
        self.assertRefused("not-acceptable")
        self.assertEqual(self.side.reactor.tcpClients, [])

    def test_wrongSenderRefused(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1)], frm=JID("mallory@example.net/x"))
        self.assertRefused("not-acceptable")
        self.assertNoResult(d)
        self.assertEqual(self.side.reactor.tcpClients, [])

    def test_secondOfferRefused(self):
        self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1)])
        self.offer([(BOB.full(), "10.0.0.1", 1)], iqId="offer2")
        self.assertRefused("not-acceptable", "offer2")

    def test_missingSid(self):
        self.side.receive("<iq type='set' id='x' from='%s'><query xmlns='%s'/></iq>"
                          % (BOB.full(), ns.NS_S5B))
        self.assertRefused("bad-request", "x")

    def test_malformedOfferFailsExpect(self):
        d = self.side.method.expect(ctxIn())
        self.offer([])
        self.assertRefused("bad-request")
        self.assertIn("malformed", self.failureResultOf(d, MethodFailed).value.reason)

    def test_udpRefused(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1)], mode="udp")
        self.assertRefused("not-acceptable")
        self.assertIn("udp", self.failureResultOf(d, MethodFailed).value.reason)

    def test_afterCancelRefused(self):
        d = self.side.method.expect(ctxIn())
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.offer([(BOB.full(), "10.0.0.1", 1)])
        self.assertRefused("not-acceptable")

    def test_cancelWhileTrying(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1)])
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(self.side.reactor.connectors[0].stoppedConnecting)
        self.assertRefused("item-not-found")

    def test_cancelDuringHandshake(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "10.0.0.1", 1)])
        proto, transport = self.side.outgoing()
        d.cancel()
        self.assertTrue(transport.disconnecting)
        self.failureResultOf(d, defer.CancelledError)

    def test_disconnectFailsExpect(self):
        d = self.side.method.expect(ctxIn())
        self.side.h.disconnect()
        self.assertIn("XMPP connection lost", self.failureResultOf(d, MethodFailed).value.reason)

    def test_duplicateExpect(self):
        self.side.method.expect(ctxIn())
        self.failureResultOf(self.side.method.expect(ctxIn()), MethodFailed)


class StreamTests(SynchronousTestCase):
    def setUp(self):
        self.transport = HalfCloseTransport()
        self.stream = S5BStream(self.transport)

    def test_halfClose(self):
        app = HalfCloseRecorder()
        self.stream.attachProtocol(app)
        self.stream.write(b"last words")
        self.stream.loseWriteConnection()
        self.assertTrue(self.transport.writeClosed)
        self.assertFalse(self.transport.disconnecting)  # still reading
        self.stream.write(b"ignored")
        self.assertEqual(self.transport.value(), b"last words")
        self.stream._dataReceived(b"reply")
        self.assertEqual(app.data, b"reply")
        self.assertIsNone(app.reason)
        self.stream._readLost()
        self.assertTrue(app.eof)
        self.assertTrue(self.transport.disconnecting)  # both directions done
        self.stream._connectionLost(Failure(error.ConnectionDone()))
        app.reason.trap(error.ConnectionDone)

    def test_loseConnectionClosesBothDirections(self):
        # Issue 6 (a): CLOSE on a GOOD SOCKS5 link must end it, not half-close.
        app = HalfCloseRecorder()
        self.stream.attachProtocol(app)
        self.stream.write(b"last words")
        self.stream.loseConnection()
        self.assertTrue(self.transport.disconnecting)
        self.stream._connectionLost(Failure(error.ConnectionLost("closed")))
        app.reason.trap(error.ConnectionDone)

    def test_brokenWhilePausedIsReportedAtOnce(self):
        app = Recorder()
        self.stream.attachProtocol(app)
        self.stream.pauseProducing()
        self.stream._dataReceived(b"held")
        self.stream._connectionLost(Failure(error.ConnectionLost("reset by peer")))
        app.reason.trap(BytestreamBroken)

    def test_peerEOFFirstHalfCloseable(self):
        app = HalfCloseRecorder()
        self.stream.attachProtocol(app)
        self.stream._dataReceived(b"request")
        self.stream._readLost()
        self.stream._readLost()  # reported twice by a resumed socket: once is enough
        self.assertTrue(app.eof)
        self.assertFalse(self.transport.disconnecting)
        self.stream.write(b"answer")  # we may still write
        self.assertEqual(self.transport.value(), b"answer")
        self.stream.loseConnection()
        self.assertTrue(self.transport.disconnecting)
        self.stream._connectionLost(Failure(error.ConnectionDone()))
        app.reason.trap(error.ConnectionDone)

    def test_peerEOFPlainProtocol(self):
        app = Recorder()
        self.stream.attachProtocol(app)
        self.stream._dataReceived(b"all")
        self.stream._readLost()
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(app.reason)
        self.stream._connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(app.data, b"all")
        app.reason.trap(error.ConnectionDone)

    def test_brokenConnection(self):
        app = Recorder()
        self.stream.attachProtocol(app)
        self.stream._connectionLost(Failure(error.ConnectionLost("reset by peer")))
        app.reason.trap(BytestreamBroken)
        self.assertIn("reset by peer", app.reason.value.reason)

    def test_abortIsClean(self):
        app = Recorder()
        self.stream.attachProtocol(app)
        self.stream.abortConnection()
        self.assertTrue(self.transport.disconnected)
        self.stream._connectionLost(Failure(error.ConnectionAborted()))
        app.reason.trap(error.ConnectionDone)

    def test_heldUntilAttachedThenEOFAndLoss(self):
        self.stream._dataReceived(b"a")
        self.stream._dataReceived(b"b")
        self.stream._readLost()
        self.stream._connectionLost(Failure(error.ConnectionDone()))
        app = Recorder()
        self.stream.attachProtocol(app)
        self.assertEqual(app.data, b"ab")
        app.reason.trap(error.ConnectionDone)

    def test_holdLimitPausesSocket(self):
        self.stream._dataReceived(b"x" * (HOLD_LIMIT - 1))
        self.assertEqual(self.transport.producerState, "producing")
        self.stream._dataReceived(b"x")
        self.assertEqual(self.transport.producerState, "paused")
        self.stream.attachProtocol(Recorder())
        self.assertEqual(self.transport.producerState, "producing")

    def test_pauseHoldsAndResumeDelivers(self):
        app = Recorder()
        self.stream.attachProtocol(app)
        self.stream.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.stream._dataReceived(b"late")  # already in flight when paused
        self.stream._readLost()
        self.assertEqual(app.data, b"")
        self.stream.resumeProducing()
        self.assertEqual(app.data, b"late")
        self.assertTrue(self.transport.disconnecting)  # plain protocol: EOF closes

    def test_producerDelegated(self):
        producer = Recorder()
        self.stream.registerProducer(producer, True)
        self.assertIs(self.transport.producer, producer)
        self.stream.unregisterProducer()
        self.assertIsNone(self.transport.producer)
        self.stream.stopProducing()
        self.assertEqual(self.transport.producerState, "stopped")

    def test_attachTwice(self):
        self.stream.attachProtocol(Recorder())
        self.assertRaises(RuntimeError, self.stream.attachProtocol, Recorder())


class HalfCloseFakeTransport(iosim.FakeTransport):
    """iosim's transport, plus the half-close iosim leaves out."""

    writeClosed = False
    eofSent = False

    def loseWriteConnection(self):
        self.writeClosed = True


def flush(pump):
    """Pump, delivering a half-close as readConnectionLost once drained."""
    while True:
        pump.flush()
        for mine, other in ((pump.clientIO, pump.serverIO), (pump.serverIO, pump.clientIO)):
            if mine.writeClosed and not mine.eofSent and not mine.disconnecting:
                mine.eofSent = True
                other.protocol.readConnectionLost()
                break
        else:
            return


class TwoDaemonsTests(SynchronousTestCase):
    """Alice (initiator, direct streamhost) and Bob (target), wired in memory."""

    def relay(self, a, b, seen):
        """Deliver what ``a`` sent since last time to ``b``, stamped from ``a``."""
        out = a.h.stub.output[seen[a]:]
        seen[a] += len(out)
        for raw in out:
            el = parseXml(raw)
            el["from"] = a.h.jid.full()
            b.receive(el)
        return bool(out)

    def test_endToEnd(self):
        alice = Side(ALICE, advertise=[("192.0.2.1", None)])
        alice.listen()
        bob = Side(BOB)
        seen = {alice: 0, bob: 0}
        dBob = bob.method.expect(StreamContext(SID, ALICE, BOB, weAreInitiator=False))
        dAlice = alice.method.initiate(StreamContext(SID, ALICE, BOB, weAreInitiator=True))
        self.relay(alice, bob, seen)
        host, port, factory, _, _ = bob.reactor.tcpClients[0]
        self.assertEqual((host, port), ("192.0.2.1", 7777))
        clientProto = factory.buildProtocol(None)
        serverProto = alice.method.serverFactory.buildProtocol(None)
        pump = iosim.connect(serverProto, HalfCloseFakeTransport(serverProto, True),
                             clientProto, HalfCloseFakeTransport(clientProto, False))
        flush(pump)
        bobStream = self.successResultOf(dBob)
        self.relay(bob, alice, seen)
        aliceStream = self.successResultOf(dAlice)
        appA, appB = Recorder(), Recorder()
        aliceStream.attachProtocol(appA)
        bobStream.attachProtocol(appB)
        aliceStream.write(b"hello bob")
        bobStream.write(b"hello alice")
        flush(pump)
        self.assertEqual((appA.data, appB.data), (b"hello alice", b"hello bob"))
        # Alice's EOF: Bob (a plain protocol) reads everything, then both close.
        aliceStream.write(b"bye")
        aliceStream.loseConnection()
        flush(pump)
        self.assertEqual(appB.data, b"hello bobbye")
        appA.reason.trap(error.ConnectionDone)
        appB.reason.trap(error.ConnectionDone)

    def test_endToEndHalfClose(self):
        """Each side's EOF is seen by the other; both finish cleanly."""
        alice = Side(ALICE, advertise=[("192.0.2.1", None)])
        alice.listen()
        bob = Side(BOB)
        seen = {alice: 0, bob: 0}
        dBob = bob.method.expect(StreamContext(SID, ALICE, BOB, weAreInitiator=False))
        dAlice = alice.method.initiate(StreamContext(SID, ALICE, BOB, weAreInitiator=True))
        self.relay(alice, bob, seen)
        factory = bob.reactor.tcpClients[0][2]
        clientProto = factory.buildProtocol(None)
        serverProto = alice.method.serverFactory.buildProtocol(None)
        pump = iosim.connect(serverProto, HalfCloseFakeTransport(serverProto, True),
                             clientProto, HalfCloseFakeTransport(clientProto, False))
        flush(pump)
        self.relay(bob, alice, seen)
        appA, appB = HalfCloseRecorder(), HalfCloseRecorder()
        self.successResultOf(dAlice).attachProtocol(appA)
        bobStream = self.successResultOf(dBob)
        bobStream.attachProtocol(appB)
        appA.transport.write(b"question")
        appA.transport.loseWriteConnection()
        flush(pump)
        self.assertEqual((appB.data, appB.eof, appB.reason), (b"question", True, None))
        self.assertIsNone(appA.reason)
        bobStream.write(b"answer")
        bobStream.loseWriteConnection()
        flush(pump)
        # Bob had both directions done, so he closed fully; iosim reports a
        # full close as connectionLost without the FIN a real socket shows.
        self.assertEqual(appA.data, b"answer")
        appA.reason.trap(error.ConnectionDone)
        appB.reason.trap(error.ConnectionDone)


class ProxyDirectoryTests(SynchronousTestCase):
    def test_answerFromAnEndedSessionIsNotCached(self):
        from bytestreamd.methods.s5b_proxies import ProxyDirectory
        asked = []

        def ask(iq, timeout, who):
            d = defer.Deferred()
            asked.append((iq, d))
            return d

        directory = ProxyDirectory(ask, [PROXY], 10)
        d = directory.streamhosts(JID("example.org"))
        directory.forget()  # the session ended while we were asking
        iq, pending = asked[0]
        pending.callback(parseXml(
            "<iq type='result'><query xmlns='%s'><streamhost jid='%s' host='h' port='1'/>"
            "</query></iq>" % (ns.NS_S5B, PROXY.full())))
        self.assertEqual([h.jid for h in self.successResultOf(d)], [PROXY])
        self.assertIsNone(directory._cache)
        directory.streamhosts(JID("example.org"))
        self.assertEqual(len(asked), 2)


class HostAddressesTests(SynchronousTestCase):
    def test_usable(self):
        from bytestreamd.methods.s5b_tcp import _usable, hostAddresses
        for address in ("127.0.0.1", "::1", "fe80::1", "169.254.1.1", "0.0.0.0", "::",
                        "224.0.0.1", "not an address"):
            self.assertFalse(_usable(address), address)
        for address in ("192.0.2.1", "10.1.2.3", "2001:db8::1"):
            self.assertTrue(_usable(address), address)
        self.assertTrue(all(_usable(a) for a in hostAddresses()))
