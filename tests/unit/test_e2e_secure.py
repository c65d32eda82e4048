"""
bytestreamd.e2e.secure over a real in-memory IBB pair: both ends secured
(bytes and xmpp), and every refusal -- no STARTTLS, a wrong ``from``, TLS
that fails, a certificate other than the signalled one, a pin mismatch, a
silent peer, CLOSE during the handshake -- failing with E2EFailed whose
reason says why, before a byte of the link was delivered.  One end is also
Twisted's own XmlStream (TLSInitiatingInitializer), not this project's
e2e code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import List

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.e2e import MODE_BYTES, MODE_XMPP
from bytestreamd.e2e.secure import E2EFailed, SecuredStream, secure
from bytestreamd.e2e.service import E2EService
from bytestreamd.e2e.stream import INITIATOR, RESPONDER
from bytestreamd.e2e.trust import PINNED, SIGNALLING, TOFU
from tests.unit.test_transport_tls import ALICE, BOB, IBBPair

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='%s' to='%s' "
          "id='x1' version='1.0'>")
STARTTLS = ("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
            "<required/></starttls></stream:features>")


class Sink(Protocol):
    def __init__(self):
        self.data: List[bytes] = []
        self.lost = None

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        self.lost = reason


class Scripted(Protocol):
    """A peer that answers each thing it receives with the next script line."""

    def __init__(self, script):
        self.script = list(script)
        self.received = b""

    def dataReceived(self, data):
        self.received += data
        if self.script:
            self.transport.write(self.script.pop(0).encode("utf-8"))


class SecureTests(SynchronousTestCase):
    def setUp(self):
        base = tempfile.mkdtemp(prefix="e2e-secure-")
        self.addCleanup(shutil.rmtree, base, True)
        self.alice = E2EService(ALICE, os.path.join(base, "alice"), TOFU)
        self.bob = E2EService(BOB, os.path.join(base, "bob"), TOFU)
        self.mallory = E2EService(BOB, os.path.join(base, "mallory"), SIGNALLING)
        self.pair = IBBPair(self)
        self.clock = self.pair.ha.clock

    def secureA(self, mode=MODE_BYTES, signalled=None, timeout=30.0):
        return secure(self.pair.a, self.alice, INITIATOR, mode,
                      signalled or self.bob.fingerprint, ALICE, BOB,
                      clock=self.clock, timeout=timeout)

    def secureB(self, mode=MODE_BYTES, service=None):
        return secure(self.pair.b, service or self.bob, RESPONDER, mode,
                      self.alice.fingerprint, BOB, ALICE, clock=self.pair.hb.clock)

    def failure(self, d) -> str:
        f = self.failureResultOf(d, E2EFailed)
        return f.value.reason

    def test_both_ends_bytes(self):
        da, db = self.secureA(), self.secureB()
        self.pair.flush()
        a, b = self.successResultOf(da), self.successResultOf(db)
        self.assertIsInstance(a, SecuredStream)
        self.assertEqual((a.e2eFingerprint, b.e2eFingerprint),
                         (self.bob.fingerprint, self.alice.fingerprint))
        self.assertEqual(a.e2eHow, "first use, now pinned")
        sa, sb = Sink(), Sink()
        a.attachProtocol(sa)
        b.attachProtocol(sb)
        a.resumeProducing()
        b.resumeProducing()
        payload = os.urandom(100_000)
        a.write(payload)
        b.write(b"pong")
        self.pair.flush()
        self.assertEqual(b"".join(sb.data), payload)
        self.assertEqual(b"".join(sa.data), b"pong")
        # the second link with the pin in place
        self.assertEqual(self.alice.pins(BOB), [("bob@example.net", self.bob.fingerprint)])

    def test_both_ends_xmpp(self):
        da, db = self.secureA(MODE_XMPP), self.secureB(MODE_XMPP)
        self.pair.flush()
        a, b = self.successResultOf(da), self.successResultOf(db)
        got = []
        b.onStanza = got.append
        a.resumeProducing()  # what the end does once attached
        b.resumeProducing()
        from twisted.words.xish import domish
        message = domish.Element(("jabber:client", "message"))
        message.addElement("body", content="hello")
        a.sendStanza(message)
        self.pair.flush()
        self.assertEqual([str(m.body) for m in got], ["hello"])
        ends = []
        a.onStreamEnd, b.onStreamEnd = ends.append, ends.append
        a.closeStream()
        for _ in range(3):
            self.pair.flush()
            self.pair.ha.clock.advance(0.1)
            self.pair.hb.clock.advance(0.1)
        self.assertEqual(ends, [None, None])

    def scripted(self, *script):
        peer = Scripted(script)
        self.pair.b.attachProtocol(peer)
        d = self.secureA()
        self.pair.flush()
        return d, peer

    def test_peer_offers_no_starttls(self):
        d, peer = self.scripted(HEADER % (BOB, ALICE) + "<stream:features/>")
        self.assertIn("does not offer STARTTLS", self.failure(d))
        self.assertIn(b"policy-violation", peer.received)

    def test_peer_header_from_another_jid(self):
        d, peer = self.scripted(HEADER % ("mallory@evil.example/x", ALICE) + STARTTLS)
        reason = self.failure(d)
        self.assertIn("from='mallory@evil.example/x'", reason)
        self.assertIn("not the negotiated bob@example.net", reason)
        self.assertIn(b"invalid-from", peer.received)

    def test_peer_stanza_before_tls(self):
        d, peer = self.scripted(HEADER % (BOB, ALICE) + "<message><body>x</body></message>")
        self.assertIn("before TLS", self.failure(d))

    def test_tls_handshake_fails(self):
        d, peer = self.scripted(HEADER % (BOB, ALICE) + STARTTLS,
                                "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
                                "this is not a TLS record at all\r\n" * 4)
        reason = self.failure(d)
        self.assertIn("TLS", reason)

    def test_certificate_other_than_signalled(self):
        da, db = self.secureA(), self.secureB(service=self.mallory)
        self.pair.flush()
        reason = self.failure(da)
        self.assertIn(self.mallory.fingerprint, reason)
        self.assertIn(self.bob.fingerprint, reason)
        self.assertIn("something between the two daemons", reason)
        self.failureResultOf(db, E2EFailed)
        self.assertEqual(self.alice.pins(), [])

    def test_pin_mismatch(self):
        self.alice.policy = PINNED
        self.alice.trust(BOB, self.mallory.fingerprint)
        da, db = self.secureA(), self.secureB()
        self.pair.flush()
        reason = self.failure(da)
        self.assertIn("NOT the pinned one", reason)
        self.assertIn("TRUST bob@example.net %s" % self.bob.fingerprint, reason)
        for _ in range(3):
            self.pair.ha.clock.advance(1)
            self.pair.hb.clock.advance(1)
            self.pair.flush()
        self.failureResultOf(db, E2EFailed)  # Bob sees the stream go

    def test_silent_peer_times_out(self):
        self.pair.b.attachProtocol(Sink())
        d = self.secureA(timeout=5)
        self.pair.flush()
        self.assertNoResult(d)
        self.clock.advance(5)
        self.pair.flush()
        self.assertIn("did not finish within 5s", self.failure(d))

    def test_cancel_aborts_the_stream(self):
        peer = Sink()
        self.pair.b.attachProtocol(peer)
        d = self.secureA()
        self.pair.flush()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.pair.flush()
        self.clock.advance(1)
        self.pair.hb.clock.advance(1)
        self.pair.flush()
        self.assertIsNotNone(peer.lost)


class TwistedXmlStreamInitiatorTests(SynchronousTestCase):
    """
    The initiator is Twisted's XmlStream with its TLSInitiatingInitializer
    (twisted.words, not bytestreamd.e2e): our responder speaks the
    standard XEP-0246 sequence it expects.
    """

    def test_twisted_xmlstream_initiator_against_our_responder(self):
        from twisted.words.protocols.jabber.jid import JID
        from tests.unit.test_transport_tls import CheckingXmlStream, Initiating
        from bytestreamd.e2e.tls import E2ETLSOptions

        class WithFrom(Initiating):
            # RFC 6120 4.7.1: the initiating entity SHOULD include 'from';
            # XEP-0246 asks for it (bare JIDs), and bytestreamd requires it.
            def connectionMade(self):
                self.xmlstream.thisEntity = JID("romeo@montague.lit")
                Initiating.connectionMade(self)

        base = tempfile.mkdtemp(prefix="e2e-secure-")
        self.addCleanup(shutil.rmtree, base, True)
        romeo = E2EService("romeo@montague.lit/o", os.path.join(base, "r"), SIGNALLING)
        juliet = E2EService("juliet@capulet.lit/b", os.path.join(base, "j"), SIGNALLING)
        pair = IBBPair(self)
        from bytestreamd.e2e.trust import KnownPeers
        xa = CheckingXmlStream(WithFrom("juliet@capulet.lit", E2ETLSOptions(romeo.load())),
                               "juliet@capulet.lit", juliet.fingerprint,
                               KnownPeers(os.path.join(base, "peers")))
        pair.a.attachProtocol(xa)
        db = secure(pair.b, juliet, RESPONDER, MODE_XMPP, romeo.fingerprint,
                    "juliet@capulet.lit/b", "romeo@montague.lit/o", clock=pair.hb.clock)
        pair.flush()
        b = self.successResultOf(db)
        self.assertEqual(b.e2eFingerprint, romeo.fingerprint)
        self.assertTrue(xa.authenticated)
        self.assertEqual(xa.decision.fingerprint, juliet.fingerprint)
