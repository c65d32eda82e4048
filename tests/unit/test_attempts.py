"""
The neutral attempt driver (bytestreamd.negotiation.attempts) on its own:
fake methods, a fake clock.  SI's tests cover it through SI as well.
"""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.errors import MethodFailed
from bytestreamd.interfaces import StreamContext
from bytestreamd.negotiation.attempts import Attempts
from tests.unit.test_si_negotiation import FakeMethod, FakeStream

A, B = JID("a@example.org/x"), JID("b@example.org/y")


class ContextTests(SynchronousTestCase):
    def test_sessionDefaultsToTheTransportSid(self):
        ctx = StreamContext("s1", A, B, True)
        self.assertEqual((ctx.sid, ctx.session, ctx.offeredBy), ("s1", "s1", None))
        ctx = StreamContext("t1", A, B, True, session="j1", offeredBy=B)
        self.assertEqual((ctx.sid, ctx.session, ctx.offeredBy, ctx.peer), ("t1", "j1", B, B))


class InOrderTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.events = []
        self.attempts = Attempts(self.clock, 10, lambda *e: self.events.append(e))
        self.ctx = StreamContext("s1", A, B, True)

    def test_fallbackThenWin(self):
        one, two = FakeMethod("one", "urn:1"), FakeMethod("two", "urn:2")
        d = defer.ensureDeferred(self.attempts.inOrder([one, two], self.ctx))
        one.initiated[0][1].errback(MethodFailed("refused"))
        stream = FakeStream("two")
        two.initiated[0][1].callback(stream)
        self.assertIs(self.successResultOf(d), stream)
        self.assertEqual(self.events, [("INIT", "one", None), ("BAD", "one", "refused"),
                                       ("INIT", "two", None)])

    def test_eachAttemptIsBoundedAndTheLastIsNotBad(self):
        one = FakeMethod("one", "urn:1")
        d = defer.ensureDeferred(self.attempts.inOrder([one], self.ctx))
        self.clock.advance(10)
        f = self.failureResultOf(d, MethodFailed)
        self.assertEqual(f.value.reason, "one: timed out after 10s")
        self.assertEqual(one.cancelled, ["s1"])
        self.assertEqual(self.events, [("INIT", "one", None)])

    def test_moreLaterReportsBadAndReturnsNone(self):
        one = FakeMethod("one", "urn:1")
        d = defer.ensureDeferred(self.attempts.inOrder([one], self.ctx, more=True))
        one.initiated[0][1].errback(MethodFailed("x", condition="item-not-found"))
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.events[-1], ("BAD", "one", "x"))
        self.assertEqual(self.attempts.failed().condition, "item-not-found")


class RaceTests(SynchronousTestCase):
    def test_firstToOpenWinsAndTheRestAreCancelled(self):
        clock, events = task.Clock(), []
        one, two = FakeMethod("one", "urn:1"), FakeMethod("two", "urn:2")
        race = Attempts(clock, 5, lambda *e: events.append(e)).race(
            [one, two], StreamContext("s1", A, B, False))
        one.expected[0][1].errback(MethodFailed("no streamhost"))
        stream = FakeStream("two")
        two.expected[0][1].callback(stream)
        self.assertIs(self.successResultOf(race.result), stream)
        self.assertEqual(events, [("INIT", "one", None), ("BAD", "one", "no streamhost"),
                                  ("INIT", "two", None)])

    def test_timeoutIsPerMethod(self):
        clock = task.Clock()
        one, two = FakeMethod("one", "urn:1"), FakeMethod("two", "urn:2")
        race = Attempts(clock, 5, None).race([one, two], StreamContext("s1", A, B, False))
        clock.advance(9)
        self.assertNoResult(race.result)
        clock.advance(1)
        f = self.failureResultOf(race.result, MethodFailed)
        self.assertIn("within 10s (waited for one, two)", f.value.reason)
        self.assertEqual((one.cancelled, two.cancelled), (["s1"], ["s1"]))
