"""
A relayed e2e link's stranded tail, kept and re-sent below TLS
(bytestreamd.e2e.tail, issue 9): two real S5BStreams with real TLS on
them, joined by a "relay" that can strand the last bytes of one direction.

* the kept ciphertext from the receiver's transport offset is exactly what
  was stranded; fed below TLS it becomes the missing plaintext, and the
  relay's late copies are dropped;
* a tampered tail breaks the TLS record MAC: the receiver's TLS fails, no
  altered byte is delivered;
* through two splices with an end channel between them: a stranded e2e
  tail is recovered and the link ends CLOS confirmed both sides; a forged
  tail ends it ERR; a tail that never comes ends it ERR within bounded
  time, with a reason.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.e2e import tail
from bytestreamd.e2e.tls import E2ETLSOptions
from bytestreamd.events import CLOS
from bytestreamd.links.lifecycle import LinkLifecycle
from bytestreamd.local.sockets import LinkSocketFactory
from bytestreamd.local.splice import LinkClosed, Splice
from bytestreamd.errors import BytestreamBroken
from bytestreamd.methods.s5b_stream import S5BStream
from bytestreamd.wire.s5b import StreamHost
from tests.unit.test_transport_tls import Bulk, ctx, identity

PROXY = StreamHost(JID("proxy.example.org"), "192.0.2.9", 7777)


class Relay:
    """
    Two relayed S5BStreams over StringTransports and a shared clock.
    ``strand(n)`` makes the relay keep the last ``n`` bytes of what the
    next pump moves from a to b (as Prosody's proxy65 may).
    """

    def __init__(self, clock: Clock):
        self.clock = clock
        self.ta, self.tb = StringTransport(), StringTransport()
        self.a, self.b = S5BStream(self.ta, clock), S5BStream(self.tb, clock)
        self.a.bind(ctx(True), PROXY, True)
        self.b.bind(ctx(False), PROXY, True)
        self.stranded = b""
        self._strand = 0
        self._lost = set()

    def strand(self, n: int) -> None:
        self._strand = n

    def release(self) -> None:
        """The relay lets go of what it held, after all."""
        held, self.stranded = self.stranded, b""
        self.b._dataReceived(held)

    def startTLS(self) -> None:
        self.a.startTLS(E2ETLSOptions(identity("romeo", "romeo@montague.lit")))
        self.b.startTLS(E2ETLSOptions(identity("juliet", "juliet@capulet.lit")))

    def pump(self) -> None:
        for _ in range(1000):
            self.clock.advance(0)
            moved = False
            for src, dst, transport in ((self.a, self.b, self.ta), (self.b, self.a, self.tb)):
                data = transport.value()
                if data:
                    transport.clear()
                    moved = True
                    if src is self.a and self._strand:
                        cut, self._strand = len(data) - self._strand, 0
                        data, self.stranded = data[:cut], data[cut:]
                    dst._dataReceived(data)
                if transport.disconnecting and src not in self._lost:
                    # What Twisted's TCP reports after a close we asked for.
                    self._lost.add(src)
                    moved = True
                    src._connectionLost(Failure(ConnectionDone()))
            if not moved and not self.clock.getDelayedCalls():
                return
            if not moved:
                self.clock.advance(min(c.getTime() for c in self.clock.getDelayedCalls())
                                   - self.clock.seconds())
        raise AssertionError("never quiet")


class CipherTailTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.relay = Relay(self.clock)
        self.pa, self.pb = Bulk(), Bulk()
        self.relay.a.attachProtocol(self.pa)
        self.relay.b.attachProtocol(self.pb)
        self.tailA = tail.attach(self.relay.a)
        self.tailB = tail.attach(self.relay.b)
        self.relay.startTLS()
        self.relay.pump()
        self.assertTrue(self.pa.handshook and self.pb.handshook)

    def strandedWrite(self, payload: bytes, stranded: int) -> None:
        self.relay.strand(stranded)
        self.relay.a.write(payload)
        self.relay.pump()
        self.assertEqual(len(self.relay.stranded), stranded)
        self.assertLess(len(self.pb.received), len(payload))
        self.assertTrue(payload.startswith(bytes(self.pb.received)))

    def test_onlyRelayedS5BStreamsKeepATail(self):
        direct = S5BStream(StringTransport())
        direct.bind(ctx(True), PROXY, False)
        self.assertIsNone(tail.attach(direct))
        self.assertIsInstance(self.tailA, tail.CipherTail)

    def test_strandedCiphertextIsResentAndAccepted(self):
        payload = os.urandom(100_000)
        self.strandedWrite(payload, 5000)
        received = self.tailB.received  # the flush's count: transport bytes
        self.assertEqual(received, self.relay.a.bytesSent - 5000)
        resent = self.tailA.since(received)
        self.assertEqual(resent, self.relay.stranded)  # ciphertext, not the payload
        self.assertNotIn(resent[100:200], payload)
        self.assertEqual(self.tailB.feed(received, resent), 5000)
        self.assertEqual(bytes(self.pb.received), payload)
        # The relay lets go after all: its copies are dropped, TLS is happy.
        self.relay.release()
        self.relay.a.write(b"more")
        self.relay.pump()
        self.assertEqual(bytes(self.pb.received), payload + b"more")
        self.assertIsNone(self.pb.reason)

    def test_overlappingTailOnlyNewBytesCount(self):
        payload = os.urandom(50_000)
        self.strandedWrite(payload, 3000)
        received = self.tailB.received
        self.assertEqual(self.tailB.feed(received - 100, self.tailA.since(received - 100)), 3000)
        self.assertEqual(bytes(self.pb.received), payload)
        # A gap (bytes before the offset missing) cannot be used.
        self.assertEqual(self.tailB.feed(self.tailB.received + 1, b"x"), 0)

    def test_nothingMissingAndNoLongerKept(self):
        self.assertEqual(self.tailA.since(self.relay.a.bytesSent), b"")
        self.relay.a.write(os.urandom(3 * tail.KEEP))
        self.relay.pump()
        self.assertIsNone(self.tailA.since(0))

    def test_tamperedTailBreaksTLS(self):
        payload = os.urandom(100_000)
        self.strandedWrite(payload, 5000)
        before = bytes(self.pb.received)
        received = self.tailB.received
        forged = bytearray(self.tailA.since(received))
        forged[-100] ^= 0x01
        self.tailB.feed(received, bytes(forged))
        self.relay.pump()
        self.assertTrue(payload.startswith(bytes(self.pb.received)))
        self.assertLess(len(self.pb.received), len(payload))
        self.assertIsNotNone(self.pb.reason)
        self.assertIsNone(self.pb.reason.check(ConnectionDone))
        self.assertGreaterEqual(len(self.pb.received), len(before))


class Channel:
    """One side of the end channel, delivering straight to the other splice."""

    def __init__(self, log: List[Any]):
        self.log = log
        self.peer: Optional[Splice] = None
        self.onTail = None
        self.tamper = False
        self.dropTails = False

    def sendEOF(self, sent):
        self.log.append(("eof", sent))
        self.peer.peerEOF(sent)

    def sendFlush(self, received=None):
        self.log.append(("flush", received))
        self.peer.peerAskedFlush(received)

    def sendTail(self, offset, data):
        self.log.append(("tail", offset, len(data)))
        if self.dropTails:
            return
        if self.tamper:
            data = bytes(data[:-1]) + bytes([data[-1] ^ 0x80])
        self.peerChannel.onTail(offset, data)

    def sendEnd(self, end):
        self.log.append(("end", end.status))
        self.peer.peerEnded(end)


class SpliceTests(SynchronousTestCase):
    """Two splices on an e2e link through a relay that strands a tail."""

    def setUp(self):
        self.clock = Clock()
        relay = self.relay = Relay(self.clock)
        self.log: List[Any] = []
        self.ends: dict = {}
        self.splices, self.locals, self.channels = {}, {}, {}
        for name, stream in (("a", relay.a), ("b", relay.b)):
            splice = Splice(1 << 20, lambda reason, name=name: self.ends.setdefault(name, reason),
                            clock=self.clock, settleTimeout=30.0)
            local = StringTransport()
            proto = LinkSocketFactory(name, splice).buildProtocol(None)
            proto.makeConnection(local)
            # What secure() hands the end: the stream, TLS-terminated, with
            # its transport tail (here the stream itself, TLS started below).
            stream.e2eFingerprint = "AB" * 32
            stream.cipherTail = tail.attach(stream)
            self.splices[name], self.locals[name] = splice, (proto, local)
            self.channels[name] = Channel(self.log)
        for me, other in (("a", "b"), ("b", "a")):
            self.channels[me].peer = self.splices[other]
            self.channels[me].peerChannel = self.channels[other]
        for name, stream in (("a", relay.a), ("b", relay.b)):
            self.splices[name].streamReady(
                stream, LinkLifecycle(True, 30.0, halfClose=False), self.channels[name])
        relay.startTLS()
        relay.pump()

    def transfer(self, payload: bytes, stranded: int, seconds: float = 120.0) -> None:
        relay = self.relay
        protoA, _ = self.locals["a"]
        relay.strand(stranded)
        protoA.dataReceived(payload)
        relay.pump()
        self.assertEqual(len(relay.stranded), stranded)
        protoA.readConnectionLost()  # the local client's EOF: <eof/> over XMPP
        for _ in range(int(seconds * 10)):
            relay.pump()
            if len(self.ends) == 2:
                return
            self.clock.advance(0.1)

    def test_strandedTailRecoveredAsCiphertext(self):
        payload = os.urandom(200_000)
        self.transfer(payload, 6000)
        flushes = [entry for entry in self.log if entry[0] == "flush"]
        tails = [entry for entry in self.log if entry[0] == "tail"]
        self.assertEqual(len(flushes), 1)
        # Transport offsets: beyond the payload count (TLS records cost bytes).
        self.assertGreater(flushes[0][1], len(payload) - 6000)
        self.assertEqual(sum(t[2] for t in tails), 6000)
        self.assertEqual(self.locals["b"][1].value(), payload)
        # No plaintext was kept to be re-sent: only the transport's ciphertext.
        self.assertIsNone(self.splices["a"]._kept)
        for name in "ab":
            self.ends[name].trap(LinkClosed)
            self.assertTrue(self.ends[name].value.confirmed, self.ends[name])
            self.assertEqual(self.splices[name].lifecycle.finished.state, CLOS)

    def test_forgedTailEndsERR(self):
        self.channels["a"].tamper = True
        payload = os.urandom(100_000)
        self.transfer(payload, 5000)
        self.assertIn("b", self.ends)
        self.ends["b"].trap(BytestreamBroken)
        self.assertIn("TLS failed: decryption failed or bad record mac",
                      self.ends["b"].value.reason)
        self.assertNotEqual(self.splices["b"].lifecycle.finished.state, CLOS)
        self.assertNotEqual(self.locals["b"][1].value(), payload)
        self.assertTrue(payload.startswith(self.locals["b"][1].value()))

    def test_tailThatNeverComesEndsERRInBoundedTime(self):
        self.channels["a"].dropTails = True
        payload = os.urandom(100_000)
        start = self.clock.seconds()
        self.transfer(payload, 5000, seconds=60.0)
        self.assertIn("b", self.ends)
        self.ends["b"].trap(BytestreamBroken)
        reason = self.ends["b"].value.reason
        self.assertIn("did not come", reason)
        self.assertIn("ciphertext", reason)
        self.assertLessEqual(self.clock.seconds() - start,
                             self.splices["b"].stallTimeout + 30.0 + 1)
