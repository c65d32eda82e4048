"""
Issue 8, finding 8: the XMPP connection says the true reason every attempt
ended, in one log line and in STATUS, and does not wait forever or fight.

:class:`XMPPClientService` runs for real on a MemoryReactorClock with an
endpoint that hands each attempt a StringTransport; the test plays the
server with raw XML.  STARTTLS cannot run over a StringTransport, so the
tests that get past it drop Twisted's TLS initializer from the stream (the
TLS path itself is covered against Prosody in tests/integration); the "no
STARTTLS" test keeps it, which is exactly the case.
"""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import error as jerror
from twisted.words.protocols.jabber import sasl, xmlstream
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.xmpp import client as xmpp
from bytestreamd.xmpp import session as xmppsession
from bytestreamd.report import daemonStatus
from bytestreamd.xmpp.client import XMPPClientService
from bytestreamd.xmpp.session import (CONFLICT, CONFLICT_DELAY, MAX_CONFLICT_DELAY,
                                     SETUP_TIMEOUT, STOPPED, SessionLog)

JID_ = JID("alice@example.org/daemon")
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' from='example.org' "
          "id='s%d' version='1.0'>")
PLAIN = ("<stream:features><mechanisms xmlns='%s'><mechanism>PLAIN</mechanism>"
         "</mechanisms></stream:features>" % SASL_NS)
STARTTLS = ("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
            "<required/></starttls></stream:features>")
BIND = ("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
        "</stream:features>")


class Attempt:
    """One connection the daemon made, with the server's side played by hand."""

    def __init__(self, proto, keepTLS: bool):
        self.proto = proto
        self.transport = StringTransport()
        self.headers = 0
        self.lost = False
        xs = proto._protocol if hasattr(proto, "_protocol") else proto
        self.xs = xs
        if not keepTLS:
            xs.initializers = [i for i in xs.initializers
                               if not isinstance(i, xmlstream.TLSInitiatingInitializer)]
        proto.makeConnection(self.transport)

    def say(self, data: str) -> None:
        self.proto.dataReceived(data.encode())

    def header(self) -> None:
        self.headers += 1
        self.say(HEADER % self.headers)

    def sent(self) -> str:
        return self.transport.value().decode()

    def lastId(self) -> str:
        return re.findall(r"""id=['"]([^'"]+)['"]""", self.sent())[-1]

    def login(self, bindAnswer=None) -> None:
        """Header, PLAIN, success, restart, bind (answered with ``bindAnswer``)."""
        self.header()
        self.say(PLAIN)
        assert "<auth" in self.sent(), self.sent()
        self.say("<success xmlns='%s'/>" % SASL_NS)
        self.header()
        self.say(BIND)
        iqId = self.lastId()
        if bindAnswer is None:
            bindAnswer = ("<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:"
                          "xmpp-bind'><jid>%s</jid></bind></iq>" % (iqId, JID_.full()))
        else:
            bindAnswer = bindAnswer % iqId
        self.say(bindAnswer)

    def close(self, reason=None) -> None:
        """The TCP connection goes away (after whatever closed it)."""
        if not self.lost:
            self.lost = True
            self.proto.connectionLost(Failure(reason or ConnectionDone()))


class FakeEndpoint:
    def __init__(self, keepTLS=False):
        self.attempts = []
        self.keepTLS = keepTLS
        self.refuse = False

    def connect(self, factory):
        if self.refuse:
            return defer.fail(ConnectionRefusedError("127.0.0.1:5222"))
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5222))
        self.attempts.append(Attempt(proto, self.keepTLS))
        return defer.succeed(proto)


class Base(SynchronousTestCase):
    keepTLS = False

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.endpoint = FakeEndpoint(self.keepTLS)
        self.events = []
        self.patch(xmpp, "log", Logger(observer=self.events.append))
        self.changes = []
        self.service = XMPPClientService(
            self.reactor, JID_, "secret", "127.0.0.1", 5222,
            listener=lambda c, r: self.changes.append((c, r)),
            endpoint=self.endpoint, rng=lambda: 0.0)
        self.service.startService()
        self.addCleanup(self.stop)

    def stop(self):
        if self.service.running:
            self.service.stopService()
            if self.endpoint.attempts:
                self.endpoint.attempts[-1].close()

    @property
    def attempt(self) -> Attempt:
        return self.endpoint.attempts[-1]

    def lines(self):
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.events]

    def status(self):
        return dict(daemonStatus(self.service, ["ibb"], []))


class SilentServerTests(Base):
    def test_setupTimeout(self):
        attempt = self.attempt
        self.assertIn("<stream:stream", attempt.sent())
        self.reactor.advance(SETUP_TIMEOUT - 0.1)
        self.assertFalse(attempt.transport.disconnecting)
        self.reactor.advance(0.2)
        self.assertTrue(attempt.transport.disconnecting)
        self.assertTrue(attempt.transport.disconnected)   # aborted, not a polite close
        attempt.close(ConnectionLost())
        reason = self.status()["reason"]
        self.assertIn("did not complete XMPP stream setup within 30s", reason)
        self.assertTrue(reason.startswith("login failed: "))
        self.assertEqual(len(self.lines()), 1, self.lines())
        self.assertIn("within 30s", self.lines()[0])
        self.assertIn("retrying in 2s", self.lines()[0])
        self.assertEqual(self.status()["retry-in"], "2s")
        # and the next attempt is made
        self.reactor.advance(1.6)
        self.assertEqual(len(self.endpoint.attempts), 2)
        self.assertNotIn("retry-in", self.status())

    def test_headerOnlyStillTimesOut(self):
        # A server that answers the header and then goes quiet is no better.
        self.attempt.header()
        self.reactor.advance(SETUP_TIMEOUT + 1)
        self.assertTrue(self.attempt.transport.disconnecting)

    def test_noTimeoutOnceBound(self):
        self.attempt.login()
        self.assertEqual(self.changes, [(True, "")])
        self.reactor.advance(SETUP_TIMEOUT * 10)
        self.assertFalse(self.attempt.transport.disconnecting)
        self.assertEqual(self.status()["server"], "connected")


class WrongPasswordTests(Base):
    def test_notAuthorizedIsKept(self):
        attempt = self.attempt
        attempt.header()
        attempt.say(PLAIN)
        attempt.say("<failure xmlns='%s'><not-authorized/></failure>" % SASL_NS)
        self.assertTrue(attempt.transport.disconnecting)   # we close the stream
        attempt.close()                                      # ... ConnectionDone
        reason = self.status()["reason"]
        self.assertIn("not-authorized", reason)
        self.assertNotIn("closed by the server", reason)
        self.assertEqual(self.changes, [])
        lines = self.lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("not-authorized", lines[0])
        self.assertNotIn("secret", lines[0])
        self.assertEqual(self.events[0]["log_level"].name, "error")

    def test_repeatedFailuresBackOff(self):
        delays = []
        for i in range(12):
            attempt = self.attempt
            attempt.header()
            attempt.say(PLAIN)
            attempt.say("<failure xmlns='%s'><not-authorized/></failure>" % SASL_NS)
            attempt.close()
            delays.append(self.service.retryIn())
            self.reactor.advance(delays[-1])
            self.assertEqual(len(self.endpoint.attempts), i + 2)
        self.assertEqual(delays[:3], [1.5, 2.25, 1.5 ** 3])
        self.assertEqual(delays[-1], 30.0)


class NoStartTLSTests(Base):
    keepTLS = True

    def test_saysSo(self):
        attempt = self.attempt
        attempt.header()
        attempt.say(PLAIN)     # features without <starttls/>
        self.assertNotIn("<auth", attempt.sent())   # never sent the password
        self.assertTrue(attempt.transport.disconnecting)
        attempt.close()
        reason = self.status()["reason"]
        self.assertIn("does not offer STARTTLS", reason)
        self.assertEqual(len(self.lines()), 1, self.lines())
        self.assertIn("does not offer STARTTLS", self.lines()[0])
        self.assertFalse(self.lines()[0].rstrip().endswith(":"))

    def test_startTLSOfferedIsTried(self):
        # Sanity for the fake: with <starttls/> offered the daemon asks for it.
        self.attempt.header()
        self.attempt.say(STARTTLS)
        self.assertIn("<starttls", self.attempt.sent())


class ConflictTests(Base):
    def conflict(self):
        self.attempt.say("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-"
                         "streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
                         "Replaced by new connection</text></stream:error>")
        self.assertTrue(self.attempt.transport.disconnecting)
        self.attempt.close()

    def test_conflictSaidAndBacksOff(self):
        self.attempt.login()
        self.conflict()
        self.assertEqual(self.changes, [(True, ""), (False, CONFLICT)])
        self.assertEqual(self.status()["reason"], CONFLICT)
        self.assertEqual(self.status()["retry-in"], "%ds" % CONFLICT_DELAY)
        lines = self.lines()
        self.assertEqual(len(lines), 2, lines)   # connected, then the conflict
        self.assertIn(CONFLICT, lines[1])
        self.assertIn("next attempt in 5 min", lines[1])
        self.assertNotIn("closed by the server", lines[1])
        # No fighting: nothing for five minutes.
        self.reactor.advance(CONFLICT_DELAY - 1)
        self.assertEqual(len(self.endpoint.attempts), 1)
        self.reactor.advance(1)
        self.assertEqual(len(self.endpoint.attempts), 2)

    def test_consecutiveConflictsDoubleUpToAnHour(self):
        delays = []
        for _ in range(6):
            self.attempt.login()
            self.conflict()
            delays.append(self.service.retryIn())
            self.reactor.advance(delays[-1])
        self.assertEqual(delays, [300, 600, 1200, 2400, 3600, 3600])
        self.assertEqual(MAX_CONFLICT_DELAY, 3600)

    def test_otherEndingResetsConflicts(self):
        self.attempt.login()
        self.conflict()
        self.reactor.advance(CONFLICT_DELAY)
        self.attempt.login()
        self.attempt.close()       # server went away: not a conflict
        self.assertEqual(self.status()["reason"], "connection closed by the server")
        self.reactor.advance(self.service.retryIn())
        self.attempt.login()
        self.conflict()
        self.assertEqual(self.service.retryIn(), CONFLICT_DELAY)

    def test_bindConflict(self):
        self.attempt.login(
            "<iq type='error' id='%s'><error type='cancel'><conflict xmlns='urn:ietf:"
            "params:xml:ns:xmpp-stanzas'/></error></iq>")
        self.assertTrue(self.attempt.transport.disconnecting)
        self.attempt.close()
        self.assertEqual(self.status()["reason"], CONFLICT)
        self.assertEqual(self.service.retryIn(), CONFLICT_DELAY)

    def test_otherStreamError(self):
        self.attempt.login()
        self.attempt.say("<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:"
                         "xmpp-streams'/></stream:error>")
        self.attempt.close()
        self.assertEqual(self.status()["reason"],
                         "stream error from the server: system-shutdown")
        self.assertIn("reconnecting in 2s", self.lines()[-1])


class StopTests(Base):
    def test_deliberateStopSaysSo(self):
        self.attempt.login()
        self.service.stopService()
        self.assertIn("</stream:stream>", self.attempt.sent())
        self.attempt.close()
        self.assertEqual(self.changes, [(True, ""), (False, STOPPED)])
        lines = self.lines()
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("closed: stopped: the daemon is shutting down", lines[1])
        self.assertNotIn("reconnecting", lines[1])
        self.assertNotIn("closed by the server", lines[1])
        self.assertEqual(self.events[1]["log_level"].name, "info")
        self.reactor.advance(100)
        self.assertEqual(len(self.endpoint.attempts), 1)

    def test_stopDuringLogin(self):
        self.attempt.header()
        self.service.stopService()
        self.attempt.close()
        self.assertEqual(self.status()["reason"], STOPPED)
        self.assertEqual(len(self.lines()), 1, self.lines())
        self.assertIn("closed: stopped: the daemon is shutting down", self.lines()[0])
        self.assertNotIn("retry-in", self.status())
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class ServerGoesAwayTests(Base):
    def test_closedByServerAfterBind(self):
        self.attempt.login()
        self.attempt.say("</stream:stream>")
        self.attempt.close()
        self.assertEqual(self.changes[-1], (False, "connection closed by the server"))
        self.assertIn("reconnecting in 2s", self.lines()[-1])

    def test_connectionRefused(self):
        self.attempt.login()
        self.endpoint.refuse = True
        self.attempt.close(ConnectionLost("reset by peer"))
        self.reactor.advance(self.service.retryIn())
        self.assertIn("cannot connect: ", self.status()["reason"])
        self.assertIn("retry-in", self.status())


class SessionLogTests(SynchronousTestCase):
    """The sans-I/O record on its own."""

    def setUp(self):
        self.log = SessionLog(rng=lambda: 0.5)

    def test_firstReasonWins(self):
        self.log.connected()
        self.log.initFailed(Failure(sasl.SASLAuthError("not-authorized")))
        self.log.streamError(Failure(jerror.StreamError("conflict")))
        ended = self.log.lost(Failure(ConnectionDone()))
        self.assertIn("not-authorized", ended.reason)
        self.assertEqual((ended.kind, ended.wasBound), ("login", False))
        self.assertEqual(ended.delay, 1.5 + 0.5)

    def test_newAttemptForgetsOldReason(self):
        self.log.connected()
        self.log.setupTimedOut(30)
        self.log.lost(None)
        self.log.connected()
        self.log.sessionBound()
        self.assertEqual(self.log.lastReason, "")
        ended = self.log.lost(Failure(ConnectionDone()))
        self.assertEqual(ended.reason, "connection closed by the server")

    def test_stopOverridesEverything(self):
        self.log.connected()
        self.log.sessionBound()
        self.log.streamError(Failure(jerror.StreamError("system-shutdown")))
        self.log.stop()
        ended = self.log.lost(Failure(ConnectionDone()))
        self.assertEqual((ended.reason, ended.delay), (STOPPED, None))

    def test_describeInitFailures(self):
        from twisted.words.protocols.jabber import client
        d = xmppsession.describeInitFailure
        tls = xmlstream.TLSInitiatingInitializer(None)
        self.assertIn("STARTTLS", d(Failure(xmlstream.FeatureNotAdvertized()), tls))
        self.assertIn("SASL", d(Failure(xmlstream.FeatureNotAdvertized()),
                                sasl.SASLInitiatingInitializer(None)))
        self.assertIn("binding", d(Failure(xmlstream.FeatureNotAdvertized()),
                                   client.BindInitializer(None)))
        self.assertIn("DIGEST-MD5", d(Failure(sasl.SASLNoAcceptableMechanism())))
        self.assertEqual(d(Failure(sasl.SASLAuthError("account-disabled"))),
                         "authentication failed: account-disabled")
        self.assertEqual(d(Failure(jerror.StanzaError("conflict"))), CONFLICT)
        self.assertIn("not-allowed", d(Failure(jerror.StanzaError("not-allowed"))))
        for words in (d(Failure(xmlstream.FeatureNotAdvertized()), object()),
                      d(Failure(ValueError()))):
            self.assertTrue(words.strip())

    def test_malformedXML(self):
        from twisted.words.xish.domish import ParserError
        self.log.connected()
        self.log.streamError(Failure(ParserError("not well-formed")))
        self.assertIn("malformed XML: not well-formed", self.log.lost(None).reason)

    def test_connectFailureDoesNotClobberStop(self):
        self.log.stop()
        self.log.connectFailed("refused")
        self.assertEqual(self.log.lastReason, "not connected yet")
