"""
``startTLS`` on bytestreams (bytestreamd.transport.tls), proved the way
issue 6 asks: Twisted's own ``XmlStream`` with ``TLSInitiatingInitializer``
runs over an in-memory IBB pair (two IBBMethod handlers joined by the
Pump of test_ibb_method) and over an iosim SOCKS5 pair (two S5BMethods as
in test_s5b_method's TwoDaemonsTests); each end checks the other's
certificate (identities from bytestreamd.e2e.identity, the mutual
handshake of bytestreamd.e2e.tls, the fingerprint decision of
bytestreamd.e2e.trust), and a stanza crosses each way.  Then bulk bytes
with backpressure through TLS, a clean close, and a man in the middle.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, List, Optional

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface import implementer

from bytestreamd.e2e.identity import Identity, certificateFingerprint
from bytestreamd.e2e.tls import E2ETLSOptions, checkPeer
from bytestreamd.e2e.trust import SIGNALLING, Accept, KnownPeers, Refuse
from bytestreamd.errors import BytestreamBroken
from bytestreamd.interfaces import StreamContext
from bytestreamd.methods.ibb import IBBMethod
from tests.helpers import ConnectionHarness, parseXml
from tests.unit.test_ibb_method import Pump
from tests.unit.test_s5b_method import HalfCloseFakeTransport, Side
from tests.unit.test_s5b_method import flush as flushHalfClose

ALICE = "alice@example.org/daemon"
BOB = "bob@example.net/daemon"
SID = "tls-1"
NS_TLS = xmlstream.NS_XMPP_TLS

_IDS: dict = {}


def identity(name: str, jid: str) -> Identity:
    """Throwaway self-signed identities (EC P-256: quick), one per name."""
    if name not in _IDS:
        _IDS[name] = Identity.generate(jid)
    return _IDS[name]


def ctx(weAreInitiator: bool) -> StreamContext:
    return StreamContext(SID, JID(ALICE), JID(BOB), weAreInitiator)


# -- the two pairs ------------------------------------------------------------------


class IBBPair:
    """Alice (initiator) and Bob over IBB, stanzas pumped in memory."""

    name = "ibb"

    def __init__(self, test: SynchronousTestCase, **options: Any):
        self.ha, self.hb = ConnectionHarness(ALICE), ConnectionHarness(BOB)
        self.ma, self.mb = IBBMethod(self.ha.clock, **options), IBBMethod(self.hb.clock, **options)
        self.ha.addHandler(self.ma)
        self.hb.addHandler(self.mb)
        self.pump = Pump(self.ha, self.hb)
        db = self.mb.expect(ctx(False))
        da = self.ma.initiate(ctx(True))
        self.pump.flush()
        self.a, self.b = test.successResultOf(da), test.successResultOf(db)

    def flush(self) -> None:
        self.pump.flush()


class S5BPair:
    """
    Alice (initiator, our direct streamhost: the SOCKS5 *server*) and Bob
    (target, the SOCKS5 client) over iosim; by default Alice is still the
    TLS client, since she initiated the bytestream.
    """

    name = "s5b"

    def __init__(self, test: SynchronousTestCase):
        alice = self.alice = Side(JID(ALICE), advertise=[("192.0.2.1", None)])
        alice.listen()
        bob = self.bob = Side(JID(BOB))
        dBob = bob.method.expect(ctx(False))
        dAlice = alice.method.initiate(ctx(True))
        self._relay(alice, bob)
        factory = bob.reactor.tcpClients[0][2]
        clientProto = factory.buildProtocol(None)
        serverProto = alice.method.serverFactory.buildProtocol(None)
        self.pump = iosim.connect(serverProto, HalfCloseFakeTransport(serverProto, True),
                                  clientProto, HalfCloseFakeTransport(clientProto, False))
        self.flush()
        self.b = test.successResultOf(dBob)
        self._relay(bob, alice)
        self.a = test.successResultOf(dAlice)

    @staticmethod
    def _relay(src: Side, dst: Side) -> None:
        for raw in src.h.stub.output:
            element = parseXml(raw)
            element["from"] = src.h.jid.full()
            dst.receive(element)
        del src.h.stub.output[:]

    def flush(self) -> None:
        """Pump bytes (half-closes too) and run both daemons' calls due now."""
        for _ in range(1000):
            flushHalfClose(self.pump)
            for reactor in (self.alice.reactor, self.bob.reactor):
                reactor.advance(0)
            if not (self.pump.clientIO.stream or self.pump.serverIO.stream):
                return
        raise AssertionError("never quiet")


# -- XmlStream with TLSInitiatingInitializer ---------------------------------------------


@implementer(IHandshakeListener)
class CheckingXmlStream(xmlstream.XmlStream):
    """
    An XmlStream that checks its peer's certificate when the TLS handshake
    completes -- before any application data is read -- against the
    fingerprint the peer "signalled" (here: given by the test), and aborts
    on refusal, as the e2e adapter does.
    """

    def __init__(self, authenticator: xmlstream.Authenticator, peer: str,
                 signalled: str, store: KnownPeers):
        xmlstream.XmlStream.__init__(self, authenticator)
        self.peer, self.signalled, self.store = peer, signalled, store
        self.decision: Any = None
        self.stanzas: List[domish.Element] = []
        self.authenticated = False
        self.initFailed: Any = None
        self.ended: Any = None
        self.addObserver("/message", self.stanzas.append)
        self.addObserver(xmlstream.STREAM_AUTHD_EVENT, self._authd)
        self.addObserver(xmlstream.INIT_FAILED_EVENT, self._initFailed)
        self.addObserver(xmlstream.STREAM_END_EVENT, self._ended)

    def handshakeCompleted(self) -> None:
        self.decision = checkPeer(self.transport, SIGNALLING, self.peer, self.signalled,
                                  self.store)
        if isinstance(self.decision, Refuse):
            self.transport.abortConnection()

    def _authd(self, xs: Any) -> None:
        self.authenticated = True

    def _initFailed(self, reason: Any) -> None:
        self.initFailed = reason

    def _ended(self, reason: Any) -> None:
        self.ended = reason


class Initiating(xmlstream.ConnectAuthenticator):
    """The initiating entity: STARTTLS with TLSInitiatingInitializer, nothing else."""

    namespace = "jabber:client"

    def __init__(self, otherHost: str, options: E2ETLSOptions):
        xmlstream.ConnectAuthenticator.__init__(self, otherHost)
        self.options = options

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:
        xmlstream.ConnectAuthenticator.associateWithStream(self, xs)
        xs.initializers = [xmlstream.TLSInitiatingInitializer(
            xs, required=True, configurationForTLS=self.options)]


class Receiving(xmlstream.ListenAuthenticator):
    """
    The receiving entity: offers STARTTLS (required), answers
    ``<proceed/>`` and starts TLS on the bytestream, then offers no more
    features and is done (RFC 6120 5.4.3.3, without SASL).
    """

    namespace = "jabber:client"

    def __init__(self, options: E2ETLSOptions, thisEntity: str):
        xmlstream.ListenAuthenticator.__init__(self)
        self.options = options
        self.thisEntity = JID(thisEntity)
        self.secured = False

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:
        xmlstream.ListenAuthenticator.associateWithStream(self, xs)
        xs.addObserver("/starttls[@xmlns='%s']" % NS_TLS, self.onStartTLS)

    def streamStarted(self, rootElement: domish.Element) -> None:
        xmlstream.ListenAuthenticator.streamStarted(self, rootElement)
        xs = self.xmlstream
        xs.thisEntity = self.thisEntity
        xs.sendHeader()
        features = domish.Element((xmlstream.NS_STREAMS, "features"))
        if not self.secured:
            features.addElement((NS_TLS, "starttls")).addElement("required")
        xs.send(features)
        if self.secured:
            xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)

    def onStartTLS(self, element: domish.Element) -> None:
        xs = self.xmlstream
        xs.send(domish.Element((NS_TLS, "proceed")))
        # Not the bytestream's initiator: the TLS server, by default.
        xs.transport.startTLS(self.options)
        xs.reset()
        self.secured = True


def message(to: str, body: str) -> domish.Element:
    element = domish.Element((None, "message"))
    element["to"] = to
    element.addElement("body", content=body)
    return element


class XmlStreamOverTLSMixin:
    """The issue's proof, run over each pair."""

    def makePair(self) -> Any:
        raise NotImplementedError

    def xmlStreams(self, julietIdentity: Optional[Identity] = None):
        romeo = identity("romeo", "romeo@montague.lit")
        juliet = identity("juliet", "juliet@capulet.lit")
        pair = self.makePair()
        store = KnownPeers(self.mktemp())
        # Alice initiated the bytestream, so her XmlStream initiates and is
        # the TLS client; each knows the fingerprint the other signalled.
        xa = CheckingXmlStream(Initiating("capulet.lit", E2ETLSOptions(romeo)),
                               "juliet@capulet.lit", juliet.fingerprint, store)
        xb = CheckingXmlStream(Receiving(E2ETLSOptions(julietIdentity or juliet),
                                         "capulet.lit"),
                               "romeo@montague.lit", romeo.fingerprint, store)
        pair.a.attachProtocol(xa)
        pair.b.attachProtocol(xb)
        pair.flush()
        return pair, xa, xb, romeo, juliet

    def test_xmlStreamStartTLSBothCertificatesChecked(self):
        pair, xa, xb, romeo, juliet = self.xmlStreams()
        self.assertIsNone(xa.initFailed)
        self.assertTrue(xa.authenticated)
        self.assertTrue(xb.authenticated)
        # Each end checked the other's certificate before any stanza.
        self.assertIsInstance(xa.decision, Accept)
        self.assertIsInstance(xb.decision, Accept)
        self.assertEqual(xa.decision.fingerprint, juliet.fingerprint)
        self.assertEqual(xb.decision.fingerprint, romeo.fingerprint)
        # ... and the streams say so themselves (ISSLTransport).
        for stream, peer in ((pair.a, juliet), (pair.b, romeo)):
            self.assertTrue(ISSLTransport.providedBy(stream))
            presented = stream.getPeerCertificate().to_cryptography()
            self.assertEqual(certificateFingerprint(presented), peer.fingerprint)
        # A stanza crosses each way, encrypted: what the bytestream hands
        # to Bob's TLS layer is ciphertext.
        layer, wire = pair.b.protocol, []
        decrypt = layer.dataReceived
        layer.dataReceived = lambda data: (wire.append(data), decrypt(data))
        xa.send(message("juliet@capulet.lit", "But soft! What light"))
        xb.send(message("romeo@montague.lit", "Wherefore art thou"))
        pair.flush()
        self.assertEqual([str(m.body) for m in xb.stanzas], ["But soft! What light"])
        self.assertEqual([str(m.body) for m in xa.stanzas], ["Wherefore art thou"])
        self.assertTrue(wire)
        self.assertNotIn(b"But soft", b"".join(wire))

    def test_closeAfterTLSIsClean(self):
        pair, xa, xb, romeo, juliet = self.xmlStreams()
        xa.sendFooter()
        pair.flush()
        xb.sendFooter()
        xa.transport.loseConnection()
        pair.flush()
        xa.ended.trap(ConnectionDone)
        xb.ended.trap(ConnectionDone)
        self.assertFalse(pair.a.connected)
        self.assertFalse(pair.b.connected)

    def test_manInTheMiddleIsRefused(self):
        # Bob's end presents another certificate for the same JID than the
        # one "signalled": Alice refuses it before a single stanza is read.
        mallory = identity("mallory", "juliet@capulet.lit")
        pair, xa, xb, romeo, juliet = self.xmlStreams(julietIdentity=mallory)
        self.assertIsInstance(xa.decision, Refuse)
        self.assertIn("not the one", xa.decision.reason)
        self.assertFalse(xa.authenticated)
        self.assertFalse(xb.authenticated)
        self.assertIsNotNone(xa.ended)
        self.assertIsNotNone(xb.ended)
        self.assertEqual(xa.stanzas + xb.stanzas, [])


class IBBXmlStreamTests(XmlStreamOverTLSMixin, SynchronousTestCase):
    def makePair(self):
        return IBBPair(self)


class S5BXmlStreamTests(XmlStreamOverTLSMixin, SynchronousTestCase):
    def makePair(self):
        return S5BPair(self)

    def test_streamsKnowTheirSession(self):
        # Bound where the method picked them, not patched afterwards.
        pair = self.makePair()
        a, b = pair.a, pair.b
        self.assertEqual((a.sessionId, a.sid, a.peerJID, a.weAreInitiator),
                         (SID, SID, JID(BOB), True))
        self.assertEqual((b.sessionId, b.sid, b.peerJID, b.weAreInitiator),
                         (SID, SID, JID(ALICE), False))
        self.assertEqual((a.streamhost.jid, b.streamhost.jid), (JID(ALICE), JID(ALICE)))
        self.assertEqual((a.relayed, b.relayed), (False, False))
        self.assertIsNotNone(a.clock)
        self.assertIsNotNone(b.clock)


# -- bytes, backpressure and the end through TLS ----------------------------------------------


@implementer(IHandshakeListener)
class Bulk(Protocol):
    """Collects bytes; knows when the handshake completed."""

    def __init__(self):
        self.received = bytearray()
        self.reason: Any = None
        self.handshook = False

    def handshakeCompleted(self):
        self.handshook = True

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.reason = reason


class Producer:
    def __init__(self):
        self.calls: List[str] = []

    def pauseProducing(self):
        self.calls.append("pause")

    def resumeProducing(self):
        self.calls.append("resume")

    def stopProducing(self):
        self.calls.append("stop")


class BulkMixin:
    def makePair(self) -> Any:
        raise NotImplementedError

    def tlsPair(self, normalA=True, normalB=True, check=True):
        romeo = identity("romeo", "romeo@montague.lit")
        juliet = identity("juliet", "juliet@capulet.lit")
        pair = self.makePair()
        pa, pb = Bulk(), Bulk()
        pair.a.attachProtocol(pa)
        pair.b.attachProtocol(pb)
        pair.a.startTLS(E2ETLSOptions(romeo), normalA)
        pair.b.startTLS(E2ETLSOptions(juliet), normalB)
        pair.flush()
        if check:
            self.assertTrue(pa.handshook and pb.handshook)
        return pair, pa, pb

    def test_rolesFollowTheBytestream(self):
        # normal=True: the initiator (Alice) is the client -- on SOCKS5
        # although she accepted the TCP connection; normal=False swaps both.
        pair, pa, pb = self.tlsPair(False, False)
        pair.a.write(b"swapped")
        pair.flush()
        self.assertEqual(bytes(pb.received), b"swapped")
        # One end swapped, the other not: two servers never shake hands.
        pair, pa, pb = self.tlsPair(True, False, check=False)
        self.assertFalse(pa.handshook or pb.handshook)

    def test_bulkBothWaysThenClose(self):
        pair, pa, pb = self.tlsPair()
        toBob, toAlice = os.urandom(300 * 1024 + 5), os.urandom(100 * 1024 + 3)
        for i in range(0, len(toBob), 16384):
            pair.a.write(toBob[i:i + 16384])
        pair.b.writeSequence([toAlice[:10], toAlice[10:]])
        pair.flush()
        self.assertEqual(hashlib.sha256(pb.received).digest(), hashlib.sha256(toBob).digest())
        self.assertEqual(hashlib.sha256(pa.received).digest(),
                         hashlib.sha256(toAlice).digest())
        self.assertGreater(pair.a.bytesSent, len(toBob))  # records cost something
        pair.a.loseConnection()
        pair.flush()
        pa.reason.trap(ConnectionDone)
        pb.reason.trap(ConnectionDone)

    def test_pausedReaderHoldsCiphertext(self):
        pair, pa, pb = self.tlsPair()
        pair.b.pauseProducing()
        payload = os.urandom(64 * 1024)
        pair.a.write(payload)
        pair.flush()
        self.assertEqual(bytes(pb.received), b"")
        pair.b.resumeProducing()
        pair.flush()
        self.assertEqual(bytes(pb.received), payload)

    def test_noHalfCloseUnderTLS(self):
        pair, pa, pb = self.tlsPair()
        self.assertIsNone(getattr(pair.a, "loseWriteConnection", None))
        self.assertIsNone(getattr(pair.b, "loseWriteConnection", None))

    def test_startTLSTwiceOrUnattached(self):
        pair, pa, pb = self.tlsPair()
        self.assertRaises(RuntimeError, pair.a.startTLS, E2ETLSOptions(identity(
            "romeo", "romeo@montague.lit")))

    def test_abortUnderTLS(self):
        pair, pa, pb = self.tlsPair()
        pair.a.abortConnection()
        pair.flush()
        self.assertIsNotNone(pa.reason)
        self.assertIsNotNone(pb.reason)
        self.assertFalse(pair.a.connected)
        pair.a.abortConnection()  # again, after the TLS layer is gone: harmless


class IBBBulkTests(BulkMixin, SynchronousTestCase):
    def makePair(self):
        return IBBPair(self, window=4)

    def test_producerPausedThroughTLS(self):
        # Bob does not read: his acks are held, Alice's window fills, her
        # queue passes the high-water mark and her writer's producer --
        # registered with the stream, i.e. with the TLS layer -- is paused.
        pair, pa, pb = self.tlsPair()
        producer = Producer()
        pair.a.registerProducer(producer, True)
        self.assertIsNot(pair.a.producer, producer)  # TLS's membrane, as for TCP
        pair.b.pauseProducing()
        payload = os.urandom(200 * 1024)
        pair.a.write(payload)
        pair.flush()
        self.assertEqual(producer.calls, ["pause"])
        self.assertLessEqual(pair.b._heldBytes, 4 * 4096)
        pair.b.resumeProducing()
        pair.flush()
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.assertEqual(bytes(pb.received), payload)
        pair.a.unregisterProducer()
        self.assertIsNone(pair.a.producer)

    def test_producerRegisteredBeforeTLSMovesUnderIt(self):
        romeo = identity("romeo", "romeo@montague.lit")
        pair = self.makePair()
        pa = Bulk()
        pair.a.attachProtocol(pa)
        pair.b.attachProtocol(Bulk())
        producer = Producer()
        pair.a.registerProducer(producer, True)
        pair.a.startTLS(E2ETLSOptions(romeo))
        self.assertIsNotNone(pair.a.producer)
        self.assertIsNot(pair.a.producer, producer)
        self.assertIs(pair.a.producer._producer, producer)


class S5BBulkTests(BulkMixin, SynchronousTestCase):
    def makePair(self):
        return S5BPair(self)

    def test_pauseStopsTheSocketUnderTLS(self):
        pair, pa, pb = self.tlsPair()
        calls = []
        socket = pair.b.transport
        socket.pauseProducing = lambda: calls.append("pause")
        socket.resumeProducing = lambda: calls.append("resume")
        pair.b.pauseProducing()
        self.assertEqual(calls, ["pause"])
        pair.a.write(b"x" * 1000)
        pair.flush()  # iosim delivers anyway: held, as a socket's buffer would
        self.assertEqual(bytes(pb.received), b"")
        pair.b.resumeProducing()
        self.assertEqual(calls, ["pause", "resume"])
        self.assertEqual(bytes(pb.received), b"x" * 1000)

    def test_brokenBytestreamReachesTheApplication(self):
        pair, pa, pb = self.tlsPair()
        pair.b._connectionLost(Failure(ConnectionLost("reset by peer")))
        self.assertIsNone(pb.reason)  # not from inside the TLS layer's calls
        pair.flush()
        pb.reason.trap(BytestreamBroken)
        self.assertIn("reset by peer", pb.reason.value.reason)
