"""
The daemon-wide byte budget (issue 8, finding 7): the machine alone, then
splices drawing from one budget (StringTransport local sides, fake streams
whose ``bytesSent`` plays the peer's acknowledgements), then the IBB hook.
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.links.budget import ByteBudget
from bytestreamd.local.sockets import LinkSocketFactory
from bytestreamd.local.splice import Splice

from tests.unit.test_local import FakeStream


class Member:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def budgetPause(self):
        self.log.append(("pause", self.name))

    def budgetResume(self):
        self.log.append(("resume", self.name))

    def __repr__(self):
        return self.name


class ByteBudgetTests(SynchronousTestCase):
    def setUp(self):
        self.log = []
        self.budget = ByteBudget(100)
        self.a, self.b = Member("a", self.log), Member("b", self.log)
        self.budget.add(self.a, holding=False)
        self.budget.add(self.b, holding=False)

    def test_exhaustedPausesEveryoneThenResumesInOrder(self):
        self.budget.charge(99)
        self.assertEqual(self.log, [])
        self.budget.charge(1)
        self.assertEqual(self.log, [("pause", "a"), ("pause", "b")])
        self.assertTrue(self.budget.exhausted)
        del self.log[:]
        self.budget.release(20)  # 80: above the resume mark (75)
        self.assertEqual(self.log, [])
        self.budget.release(5)
        self.assertEqual(self.log, [("resume", "a"), ("resume", "b")])

    def test_aReadMayGoPastTheLimitAndIsCounted(self):
        self.budget.charge(150)
        self.assertEqual(self.budget.used, 150)
        self.assertEqual(self.budget.peak, 150)
        self.budget.release(1000)
        self.assertEqual(self.budget.used, 0)

    def test_newMemberWhileExhaustedStartsPaused(self):
        self.budget.charge(100)
        c = Member("c", self.log)
        del self.log[:]
        self.budget.add(c, holding=False)
        self.assertEqual(self.log, [("pause", "c")])
        self.assertTrue(self.budget.isPaused(c))

    def test_removedMemberIsNotResumed(self):
        self.budget.charge(100)
        self.budget.remove(self.a)
        del self.log[:]
        self.budget.release(100)
        self.assertEqual(self.log, [("resume", "b")])

    def test_holdsTakeAtMostHalf(self):
        holder = Member("h", self.log)
        self.budget.add(holder, holding=True)
        self.budget.charge(50)
        self.assertEqual(self.log, [("pause", "h")])  # movers go on
        del self.log[:]
        self.budget.moving(holder)  # GOOD: the whole budget is its ceiling
        self.assertEqual(self.log, [("resume", "h")])

    def test_holdersResumeBelowTheirMark(self):
        holder = Member("h", self.log)
        self.budget.add(holder, holding=True)
        self.budget.charge(60)
        del self.log[:]
        self.budget.release(20)  # 40: above 37.5
        self.assertEqual(self.log, [])
        self.budget.release(5)
        self.assertEqual(self.log, [("resume", "h")])

    def test_holdersStayPausedWhileEverythingIs(self):
        holder = Member("h", self.log)
        self.budget.add(holder, holding=True)
        self.budget.charge(100)
        del self.log[:]
        self.budget.release(30)  # 70: movers resume, holders (ceiling 50) do not
        self.assertEqual(self.log, [("resume", "a"), ("resume", "b")])
        del self.log[:]
        self.budget.release(40)
        self.assertEqual(self.log, [("resume", "h")])

    def test_invalidLimit(self):
        self.assertRaises(ValueError, ByteBudget, 0)


class AckingStream(FakeStream):
    """A fake stream whose peer acknowledges when the test says so."""

    onSent = None

    def ack(self, n):
        self.bytesSent += n
        if self.onSent is not None:
            self.onSent()


class SpliceBudgetTests(SynchronousTestCase):
    def setUp(self):
        self.budget = ByteBudget(100)
        self.links = [self.makeLink() for _ in range(2)]

    def makeLink(self):
        splice = Splice(1000, lambda reason: None, budget=self.budget)
        local = LinkSocketFactory("x", splice).buildProtocol(None)
        transport = StringTransport()
        local.makeConnection(transport)
        stream = AckingStream()
        return splice, local, transport, stream

    def test_chargedUntilAcknowledged(self):
        splice, local, transport, stream = self.links[0]
        splice.streamReady(stream)
        local.dataReceived(b"x" * 40)
        self.assertEqual(self.budget.used, 40)
        stream.ack(30)
        self.assertEqual(self.budget.used, 10)

    def test_exhaustedPausesEveryLocalReaderAndAcksResumeThem(self):
        for splice, local, transport, stream in self.links:
            splice.streamReady(stream)
        (s1, l1, t1, st1), (s2, l2, t2, st2) = self.links
        l1.dataReceived(b"x" * 100)
        self.assertEqual(t1.producerState, "paused")
        self.assertEqual(t2.producerState, "paused")  # never read: held back too
        self.assertEqual(b"".join(st1.written), b"x" * 100)  # taken bytes still go
        st1.ack(100)
        self.assertEqual(t1.producerState, "producing")
        self.assertEqual(t2.producerState, "producing")

    def test_streamBackpressureAndBudgetCombine(self):
        splice, local, transport, stream = self.links[0]
        splice.streamReady(stream)
        stream.producer.pauseProducing()  # the stream's own high water mark
        local.dataReceived(b"x" * 100)  # one read in flight, then the budget
        stream.producer.resumeProducing()  # the stream drained ...
        self.assertEqual(transport.producerState, "paused")  # ... the budget did not
        stream.ack(100)
        self.assertEqual(transport.producerState, "producing")

    def test_holdBeforeGoodIsChargedAndCappedAtHalf(self):
        splice, local, transport, stream = self.links[0]
        local.dataReceived(b"h" * 50)
        self.assertEqual(self.budget.used, 50)
        self.assertEqual(transport.producerState, "paused")
        splice.streamReady(stream)  # GOOD: the held bytes go, the reader resumes
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(b"".join(stream.written), b"h" * 50)
        stream.ack(50)
        self.assertEqual(self.budget.used, 0)

    def test_endOfStreamGivesEverythingBack(self):
        splice, local, transport, stream = self.links[0]
        splice.streamReady(stream)
        local.dataReceived(b"x" * 100)
        self.assertEqual(transport.producerState, "paused")
        stream.protocol.connectionLost(None)  # the stream ended: nothing more goes
        self.assertEqual(self.budget.used, 0)
        self.assertEqual(transport.producerState, "producing")

    def test_abortBeforeGoodGivesTheHoldBack(self):
        splice, local, transport, stream = self.links[0]
        local.dataReceived(b"h" * 30)
        splice.abort()
        self.assertEqual(self.budget.used, 0)

    def test_streamWithoutAcksReleasesOnWrite(self):
        # SOCKS5: bytesSent counts what went to the TCP transport.
        class TCPLike(AckingStream):
            def write(self, data):
                AckingStream.write(self, data)
                self.bytesSent += len(data)
        splice, local, transport, _ = self.links[0]
        splice.streamReady(TCPLike())
        local.dataReceived(b"x" * 500)
        self.assertEqual(self.budget.used, 0)
        self.assertEqual(transport.producerState, "producing")

    def test_memberFromItsFirstLocalClientOn(self):
        splice = Splice(1000, lambda reason: None, budget=self.budget)
        self.assertNotIn(splice, self.budget._members)  # no client: nothing to pause
        splice.abort()
        self.assertNotIn(splice, self.budget._members)
        self.budget.charge(100)  # exhausted: a new client starts paused
        splice, local, transport, stream = self.makeLink()
        self.assertEqual(transport.producerState, "paused")
        self.budget.release(100)
        self.assertEqual(transport.producerState, "producing")

    def test_finishedLinkLeavesTheBudget(self):
        splice, local, transport, stream = self.links[0]
        splice.streamReady(stream)
        self.assertIn(splice, self.budget._members)
        stream.protocol.connectionLost(None)
        self.assertNotIn(splice, self.budget._members)

    def test_withoutBudgetNothingChanges(self):
        splice = Splice(1000, lambda reason: None)
        local = LinkSocketFactory("x", splice).buildProtocol(None)
        transport = StringTransport()
        local.makeConnection(transport)
        stream = AckingStream()
        splice.streamReady(stream)
        self.assertIs(stream.producer, transport)
        self.assertIsNone(stream.onSent)


class IBBHookTests(SynchronousTestCase):
    """IBBStream calls ``onSent`` whenever ``bytesSent`` grows."""

    def test_ackCallsOnSent(self):
        from tests.unit.test_ibb_method import SenderTests
        case = SenderTests("test_noTimerWhenIdle")
        case.setUp()
        calls = []
        case.stream.onSent = lambda: calls.append(case.stream.bytesSent)
        case.stream.write(b"x" * 10)
        self.assertEqual(calls, [])
        case.ack(case.newSent()[0])
        self.assertEqual(calls, [10])


class ConfigTests(SynchronousTestCase):
    """``[links] max_buffered``: a size, 8 MiB by default, at least 64 KiB."""

    def load(self, **links):
        from bytestreamd.config import loadConfig
        values = {"xmpp.jid": "bot@example.org", "xmpp.password": "secret"}
        values.update({"links." + k: v for k, v in links.items()})
        return loadConfig(None, values, environ={"RUNTIME_DIRECTORY": "/run/x"},
                          geteuid=lambda: 1000)

    def test_defaultAndSuffixes(self):
        self.assertEqual(self.load().max_buffered, 8 * 1024 * 1024)
        self.assertEqual(self.load(max_buffered="4m").max_buffered, 4 * 1024 * 1024)

    def test_tooSmallNamesTheKey(self):
        from bytestreamd.errors import ConfigError
        with self.assertRaises(ConfigError) as info:
            self.load(max_buffered="1k")
        self.assertTrue(str(info.exception).startswith("[links] max_buffered: "))

    def test_managerBuildsOneBudgetForEveryLink(self):
        from bytestreamd.links.manager import LinkManager
        config = self.load(max_buffered="1m")
        manager = LinkManager(None, config, None, [object()], None, [])
        self.assertEqual(manager.budget.limit, 1024 * 1024)


class GraceTests(SynchronousTestCase):
    """
    Over IBB a peer's EOF gives our local client ``eofGrace`` seconds to
    finish; a client we are not reading because the budget is exhausted has
    not stopped, it is held back (like soak finding D's backpressure).
    """

    def test_budgetPausedClientKeepsItsGrace(self):
        from twisted.internet.task import Clock
        from bytestreamd.links.lifecycle import LinkLifecycle

        class Channel:
            def __init__(self):
                self.eofs = []

            def sendEOF(self, sent):
                self.eofs.append(sent)

            def sendEnd(self, end):
                pass

        clock, budget, channel = Clock(), ByteBudget(100), Channel()
        splice = Splice(1000, lambda reason: None, clock=clock, budget=budget)
        local = LinkSocketFactory("x", splice).buildProtocol(None)
        local.makeConnection(StringTransport())
        stream = AckingStream()
        splice.streamReady(stream, LinkLifecycle(True, 30.0, halfClose=False), channel)
        budget.charge(100)  # other links took it all
        splice.peerEOF(0)
        clock.advance(splice.lifecycle.eofGrace + 0.1)
        self.assertEqual(channel.eofs, [])
        budget.release(100)
        clock.advance(splice.lifecycle.eofGrace + 0.1)
        clock.advance(splice.lifecycle.eofGrace + 0.1)
        self.assertEqual(channel.eofs, [0])
