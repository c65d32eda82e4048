"""
The link lifecycle machine (bytestreamd.links.lifecycle): when a link may say
CLOS and when it must say ERR, driven input by input with no I/O.
"""

from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.links import lifecycle as lc
from bytestreamd.links.lifecycle import LinkLifecycle


def finished(effects):
    return [e for e in effects if isinstance(e, lc.Finished)]


def kinds(effects):
    return [type(e).__name__ for e in effects]


class ConfirmedPairTests(SynchronousTestCase):
    """Two machines wired by hand, as two daemons would be over XMPP."""

    def setUp(self):
        self.a = LinkLifecycle(True, settleTimeout=10)
        self.b = LinkLifecycle(True, settleTimeout=10)

    def relay(self, effects, to):
        """Carry SendEOF/SendEnd effects to the other machine; return its effects."""
        out = []
        for e in effects:
            if isinstance(e, lc.SendEOF):
                out += to.peerEOF(e.sent)
            elif isinstance(e, lc.SendEnd):
                out += to.peerEnded(e)
        return out

    def test_bothDirectionsThenConfirmedClos(self):
        self.assertTrue(self.a.localData(100))
        self.b.remoteData(100)
        self.assertTrue(self.b.localData(7))
        self.a.remoteData(7)
        fromA = self.a.localEnded()
        self.assertEqual(fromA, [lc.SendEOF(100)])
        atB = self.relay(fromA, self.b)
        self.assertEqual(atB, [lc.LocalEOF()])  # b's client gets EOF after 100 bytes
        fromB = self.b.localEnded()
        self.assertIn(lc.SendEOF(7), fromB)
        endB = [e for e in fromB if isinstance(e, lc.SendEnd)]
        self.assertEqual(endB, [lc.SendEnd(7, 100, lc.DONE)])
        atA = self.relay([fromB[0]], self.a)
        self.assertIn(lc.LocalEOF(), atA)
        endA = [e for e in atA if isinstance(e, lc.SendEnd)]
        self.assertEqual(endA, [lc.SendEnd(100, 7, lc.DONE)])
        finalA = finished(self.relay(endB, self.a))
        finalB = finished(self.relay(endA, self.b))
        self.assertEqual(finalA, [lc.Finished("CLOS", None, True)])
        self.assertEqual(finalB, [lc.Finished("CLOS", None, True)])

    def test_withoutHalfCloseThePeersEOFEndsTheLink(self):
        # IBB: a local EOF closes the whole link (INTERFACE.md), confirmed.
        a, b = LinkLifecycle(True, 10, halfClose=False), LinkLifecycle(True, 10, halfClose=False)
        a.localData(5)
        b.remoteData(5)
        atB = self.relay(a.localEnded(), b)
        self.assertEqual(atB, [lc.LocalEOF(), lc.StartGrace(2.0)])
        atB = b.graceExpired()
        self.assertEqual(atB[0], lc.SendEOF(0))
        endB = [e for e in atB if isinstance(e, lc.SendEnd)]
        atA = self.relay(atB, a)
        self.relay([e for e in atA if isinstance(e, lc.SendEnd)], b)
        self.assertEqual(a.finished, lc.Finished("CLOS", None, True))
        self.assertEqual(b.finished, lc.Finished("CLOS", None, True))
        self.assertEqual(len(endB), 1)

    def test_withoutHalfCloseTheLocalClientMayAnswerWithinTheGrace(self):
        a, b = LinkLifecycle(True, 10, halfClose=False), LinkLifecycle(True, 10, halfClose=False)
        a.localData(5)
        b.remoteData(5)
        self.relay(a.localEnded(), b)
        self.assertTrue(b.localData(5))  # the echo of the last bytes
        a.remoteData(5)
        fromB = b.localLost()  # the echo service closes on EOF
        self.assertEqual(fromB[0], lc.SendEOF(5))
        self.relay(self.relay(fromB, a), b)
        self.assertEqual(a.finished, lc.Finished("CLOS", None, True))
        self.assertEqual(b.graceExpired(), [])

    def test_eofWaitsForEveryAnnouncedByte(self):
        self.a.localData(10)
        self.relay(self.a.localEnded(), self.b)  # eof(10) before any byte arrived
        self.assertEqual(self.b.remoteData(4), [])
        self.assertEqual(self.b.remoteData(6), [lc.LocalEOF()])

    def test_killedSenderIsErrNotClos(self):
        # Issue 6 b: a quarter through, the sender dies; its TCP ends with a
        # plain FIN.  Without the sender's end the receiver must not say CLOS.
        self.b.remoteData(12386304)
        effects = self.b.transportEOF()
        self.assertIn(lc.StartTimer(10), effects)
        self.assertEqual(finished(effects), [])
        final = finished(self.b.timerFired())
        self.assertEqual(final[0].state, "ERR")
        self.assertIn("12386304 received without the peer confirming", final[0].reason)

    def test_proxyClosingBothLegsIsNotAClean_End(self):
        # Issue 6 c: a's EOF never reaches the transport (it goes over XMPP),
        # so a proxy has nothing to turn into a full close; if the transport
        # ends anyway, b's unsent answer is reported.
        self.a.localData(10)
        self.b.remoteData(10)
        self.relay(self.a.localEnded(), self.b)
        self.b.localData(100)
        effects = self.b.transportEnded()  # the proxy closed everything
        self.b.localData(1000)  # the answer's rest has nowhere to go
        self.assertEqual(self.b.unsent, 1000)
        self.assertEqual(finished(effects), [])
        final = finished(self.b.timerFired())
        self.assertEqual(final[0].state, "ERR")

    def test_localClientGoneDropsAndBothSidesSayWhy(self):
        # Issue 6 e: the receiving client stops reading, then goes away.
        self.a.localData(500)
        self.b.remoteData(100)
        fromB = self.b.localLost()
        self.assertEqual(fromB[:2], [lc.SendEOF(0), lc.SendEnd(0, 100, lc.CLOSED,
                                                               "the local client went away")])
        atA = self.relay(fromB, self.a)
        self.assertEqual(self.a.finished.state, "ERR")
        self.assertIn("closed by the peer", self.a.finished.reason)
        self.assertIn("delivered 100 of the 500", self.a.finished.reason)
        self.b.remoteData(400)  # dropped: nobody reads
        self.relay(atA, self.b)
        self.assertEqual(self.b.finished.state, "ERR")
        self.assertIn("before the local client went away", self.b.finished.reason)

    def test_localClientLeavingAfterEverythingIsClos(self):
        # An HTTP-like client leaves after its answer: nothing was lost.
        self.a.localData(6)
        self.b.remoteData(6)
        atB = self.relay(self.a.localEnded(), self.b)
        self.assertEqual(atB, [lc.LocalEOF()])
        fromB = self.b.localLost()
        atA = self.relay(fromB, self.a)
        self.relay(atA, self.b)
        self.assertEqual(self.a.finished, lc.Finished("CLOS", None, True))
        self.assertEqual(self.b.finished, lc.Finished("CLOS", None, True))

    def test_localClientLeavingWhileThePeerIsIdleIsClos(self):
        # An HTTP keep-alive client leaves; the server side sent everything.
        self.a.localData(6)
        self.b.remoteData(6)
        fromB = self.b.localLost()
        atA = self.relay(fromB, self.a)
        self.assertEqual(self.a.finished.state, "CLOS")
        self.relay(atA, self.b)
        self.assertEqual(self.b.finished.state, "CLOS")

    def test_transportResetAfterOurEndWaitsForThePeersWord(self):
        self.b.remoteData(10)
        self.b.localLost()
        effects = self.b.transportFailed("connection reset")
        self.assertEqual(finished(effects), [])
        self.b.peerEnded(lc.SendEnd(50, 0, lc.DONE))
        self.assertEqual(self.b.finished.state, "ERR")
        self.assertIn("delivered 10 of the 50", self.b.finished.reason)

    def test_closeRequestedIsClosAndPeerLearnsWhatItLost(self):
        self.a.localData(50)
        self.b.remoteData(20)  # 30 still in flight
        fromB = self.b.requestClose()
        self.assertIn(lc.CloseLocal(), fromB)
        self.assertIn(lc.StartTimer(10), fromB)
        atA = self.relay(fromB, self.a)
        endA = [e for e in atA if isinstance(e, lc.SendEnd)]
        self.assertEqual(len(endA), 1)
        self.assertEqual(self.a.finished.state, "ERR")
        self.assertIn("closed by the peer", self.a.finished.reason)
        self.assertIn("delivered 20 of the 50", self.a.finished.reason)
        final = finished(self.relay(endA, self.b))
        self.assertEqual(final[0].state, "CLOS")
        self.assertIn("closed by local request", final[0].reason)

    def test_closeWithNothingLostIsConfirmedOnBothSides(self):
        fromA = self.a.requestClose()
        atB = self.relay(fromA, self.b)
        self.assertEqual(self.b.finished, lc.Finished("CLOS", "closed by the peer", True))
        final = finished(self.relay(atB, self.a))
        self.assertEqual(final, [lc.Finished("CLOS", "closed by local request", True)])

    def test_closeWithSilentPeerIsBounded(self):
        self.a.requestClose()
        final = finished(self.a.timerFired())
        self.assertEqual(final[0].state, "CLOS")
        self.assertFalse(final[0].confirmed)
        self.assertIn("did not confirm", final[0].reason)

    def test_peerSendingMoreThanAnnouncedIsErr(self):
        self.b.peerEOF(5)
        final = finished(self.b.remoteData(6))
        self.assertEqual(final[0].state, "ERR")

    def test_transportFailureTellsThePeer(self):
        effects = self.a.transportFailed("SOCKS5 connection lost: reset")
        self.assertEqual(effects[0], lc.SendEnd(0, 0, lc.FAILED, "SOCKS5 connection lost: reset"))
        self.assertEqual(finished(effects)[0].state, "ERR")
        self.relay(effects, self.b)
        self.b.localEnded()
        self.assertEqual(self.b.finished.state, "ERR")
        self.assertIn("the peer reports: SOCKS5 connection lost", self.b.finished.reason)

    def test_peerGoneAndRefusedEnd(self):
        self.assertEqual(finished(self.a.peerGone("went offline"))[0].reason, "went offline")
        final = finished(self.b.peerRefusedEnd("item-not-found"))
        self.assertIn("could not take the end", final[0].reason)

    def test_slowLocalReaderIsNeverAnError(self):
        # Issue 6 d: nothing here runs a clock while only our reader is slow.
        self.a.localData(1 << 20)
        effects = self.relay(self.a.localEnded(), self.b)
        self.assertFalse(any(isinstance(e, lc.StartTimer) for e in effects))
        self.assertIsNone(self.b.finished)


class DirectTCPTests(SynchronousTestCase):
    """A direct SOCKS5 connection: the FIN gives the EOF, <eof/> confirms it."""

    def test_finDeliversEOFAndCountsConfirm(self):
        a = LinkLifecycle(True, 10, eofOnTransport=True)
        b = LinkLifecycle(True, 10, eofOnTransport=True)
        a.localData(100)
        self.assertEqual(a.localEnded(), [lc.SendEOF(100), lc.HalfCloseTransport()])
        b.remoteData(100)
        self.assertEqual(b.transportEOF(), [lc.LocalEOF()])  # before the XMPP eof
        self.assertEqual(b.peerEOF(100), [])
        fromB = b.localEnded()
        self.assertIn(lc.HalfCloseTransport(), fromB)
        endB = [e for e in fromB if isinstance(e, lc.SendEnd)]
        fromA = a.peerEOF(0) + a.transportEOF() + a.transportEnded()
        endA = [e for e in fromA if isinstance(e, lc.SendEnd)]
        a.peerEnded(endB[0])
        b.transportEnded()
        b.peerEnded(endA[0])
        self.assertEqual(a.finished, lc.Finished("CLOS", None, True))
        self.assertEqual(b.finished, lc.Finished("CLOS", None, True))

    def test_finFromAKilledSenderIsStillErr(self):
        b = LinkLifecycle(True, 10, eofOnTransport=True)
        b.remoteData(4096)
        self.assertEqual(b.transportEOF(), [lc.LocalEOF()])
        b.localEnded()
        b.transportEnded()
        self.assertEqual(finished(b.timerFired())[0].state, "ERR")

    def test_eofCountShortOfWhatArrivedBeforeTheFinIsErr(self):
        b = LinkLifecycle(True, 10, eofOnTransport=True)
        b.remoteData(10)
        b.transportEOF()
        b.localEnded()
        b.transportEnded()
        final = finished(b.peerEnded(lc.SendEnd(20, 0, lc.DONE)))
        self.assertEqual(final[0].state, "ERR")
        self.assertIn("received 10 of the 20", final[0].reason)


class UnconfirmedTests(SynchronousTestCase):
    """A peer that is not bytestreamd: the transport's own semantics."""

    def setUp(self):
        self.m = LinkLifecycle(False, settleTimeout=10)

    def test_cleanEndIsClosNotConfirmed(self):
        self.m.localData(3)
        self.assertEqual(self.m.localEnded(), [lc.HalfCloseTransport()])
        self.assertEqual(self.m.transportEOF(), [lc.LocalEOF()])
        self.assertEqual(finished(self.m.transportEnded()),
                         [lc.Finished("CLOS", None, False)])

    def test_closeIsBounded(self):
        effects = self.m.requestClose()
        self.assertEqual(kinds(effects), ["CloseLocal", "CloseTransport", "StartTimer"])
        final = finished(self.m.timerFired())
        self.assertEqual(final[0].state, "CLOS")

    def test_localGoneWhilePeerSendsIsErr(self):
        self.m.remoteData(10)
        self.assertIn(lc.CloseTransport(), self.m.localLost())
        self.m.remoteData(5)
        final = finished(self.m.transportEnded())
        self.assertEqual(final[0].state, "ERR")
        self.assertIn("5 bytes from the peer were dropped", final[0].reason)

    def test_brokenTransportIsErr(self):
        final = finished(self.m.transportFailed("reset"))
        self.assertEqual(final, [lc.Finished("ERR", "reset", False)])


class StalledTailTests(SynchronousTestCase):
    """Prosody's proxy65 can hold a direction's last bytes until EOF."""

    def test_stalledTailAsksThePeerToFlushOnce(self):
        a, b = LinkLifecycle(True, 10), LinkLifecycle(True, 10)
        a.localData(8192)
        b.remoteData(4096)  # 4096 stuck in the relay
        b.peerEOF(8192)
        self.assertEqual(b.tailStalled(2), [lc.SendFlush()])
        self.assertEqual(b.tailStalled(2), [])
        a.localEnded()
        self.assertEqual(a.peerAskedFlush(), [lc.HalfCloseTransport()])

    def test_noFlushWhenNothingIsMissingOrBeforeOurEOF(self):
        b = LinkLifecycle(True, 10)
        b.remoteData(10)
        b.peerEOF(10)
        self.assertEqual(b.tailStalled(2), [])
        a = LinkLifecycle(True, 10)
        self.assertEqual(a.peerAskedFlush(), [])


class SoakFindingsTests(SynchronousTestCase):
    def test_A_resetLocalIsNeverClos(self):
        a, b = LinkLifecycle(True, 10), LinkLifecycle(True, 10)
        a.localData(100)
        b.remoteData(100)  # all handed to bob's client's socket...
        atB = []
        for e in a.localEnded():
            if isinstance(e, lc.SendEOF):
                atB += b.peerEOF(e.sent)
        fromB = b.localLost(reset=True)  # ...which closed with some unread
        endB = [e for e in fromB + atB if isinstance(e, lc.SendEnd)][0]
        self.assertEqual(endB.status, lc.FAILED)
        a.peerEOF(0)
        a.peerEnded(endB)
        self.assertEqual(a.finished.state, "ERR")
        self.assertIn("without reading everything", a.finished.reason)

    def test_A_unconfirmedResetIsErr(self):
        m = LinkLifecycle(False, 10)
        m.remoteData(10)
        m.localLost(reset=True)
        self.assertEqual(finished(m.transportEnded())[0].state, "ERR")
