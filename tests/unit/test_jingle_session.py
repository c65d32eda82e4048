"""
The sans-I/O Jingle session machine and the session table: every transition,
out-of-order, tie-breaks (crossing session-initiate and crossing
transport-replace), unknown-session from a stranger, transport-replace
(accepted, rejected, answered with session-accept), content changes,
failed requests, and every timeout.

Two tables, Romeo's and Juliet's, talk through :class:`Wire`, which carries
each Send through XML (so the codecs are exercised too), feeds the answer
back as ``acknowledged``/``requestFailed``, and checks the one rule every
request obeys: it is answered exactly once, by the first effect.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.negotiation.jingle_effects import (
    Ack, Event, Refuse, Send, SessionStateError, StartTimer, StopTimer, Timeouts)
from bytestreamd.negotiation.jingle_session import JingleSession, State, TransportState
from bytestreamd.negotiation.jingle_sessions import JingleSessions, sameApplications
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle import Content, Jingle, Opaque, Reason
from bytestreamd.wire.jingle_ft import Received
from bytestreamd.wire.jingle_ibb import IBBTransport
from bytestreamd.wire.jingle_s5b import S5BTransport
from tests.unit.jingle_examples import reparse

ROMEO = JID("romeo@montague.lit/orchard")
JULIET = JID("juliet@capulet.lit/balcony")
STRANGER = JID("tybalt@capulet.lit/street")
APP = "urn:x-test:app"
KEY = ("initiator", "ex")
TIMEOUTS = Timeouts(pending=100, transport=50, answer=20, lifetime=None)


def description(ns=APP):
    return Opaque(domish.Element((ns, "description")))


def s5b(sid="s5b1"):
    return S5BTransport(sid, candidates=())


def content(name="ex", transport=None, creator="initiator", ns=APP):
    return Content(creator, name, senders="initiator", description=description(ns),
                   transport=transport or s5b())


def answers(effects):
    return [e for e in effects if isinstance(e, (Ack, Refuse))]


def events(effects, kind=None):
    return [e for e in effects if isinstance(e, Event) and kind in (None, e.kind)]


def sends(effects, action=None):
    return [e.jingle for e in effects
            if isinstance(e, Send) and action in (None, e.jingle.action)]


class Side:
    """One party: its table, every effect it produced, its running timers."""

    def __init__(self, jid, sids):
        sids = list(sids)
        self.jid = jid
        self.table = JingleSessions(jid, TIMEOUTS, sidFactory=sids.pop)
        self.log = []
        self.timers = {}

    def take(self, effects):
        for e in effects:
            if isinstance(e, StartTimer):
                self.timers[(e.sid, e.name)] = e.seconds
            elif isinstance(e, StopTimer):
                self.timers.pop((e.sid, e.name))
        self.log.extend(effects)
        return effects

    def session(self, peer, sid):
        return self.table.get(peer.jid, sid)


class Wire:
    def __init__(self, test):
        self.test = test
        self.romeo = Side(ROMEO, ["r1", "r2", "r3"])
        self.juliet = Side(JULIET, ["j1", "j2", "j3"])

    def other(self, side):
        return self.juliet if side is self.romeo else self.romeo

    def receive(self, side, sender, jingle):
        """``side`` receives ``jingle`` from ``sender``; checks the answer rule."""
        jingle = Jingle.fromElement(reparse(jingle.toElement()))
        effects = side.take(side.table.receive(sender, jingle))
        self.test.assertIsInstance(effects[0], (Ack, Refuse))
        self.test.assertEqual(len(answers(effects)), 1, effects)
        return effects

    def deliver(self, side, effects):
        """
        ``side`` produced ``effects``: record them, carry its Sends to the
        other side, and feed the answers back.
        """
        side.take(effects)
        got = []
        for send in sends(effects):
            peer = self.other(side)
            theirs = self.receive(peer, side.jid, send)
            got.extend(theirs)
            session = side.table.get(peer.jid, send.sid)
            if session is None:
                continue
            answer = theirs[0]
            if isinstance(answer, Ack):
                side.take(session.acknowledged(send))
            else:
                side.take(session.requestFailed(send, answer.condition, answer.text))
        return got

    def start(self, contents=None):
        """Romeo initiates r1 and Juliet receives it."""
        session, effects = self.romeo.table.initiate(JULIET, contents or [content()])
        self.deliver(self.romeo, effects)
        return session, self.juliet.session(self.romeo, session.sid)

    def active(self, contents=None):
        ours, theirs = self.start(contents)
        self.deliver(self.juliet, theirs.accept())
        self.test.assertEqual((ours.state, theirs.state), (State.ACTIVE, State.ACTIVE))
        return ours, theirs


class FlowTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Wire(self)
        self.romeo, self.juliet = self.wire.romeo, self.wire.juliet

    def test_initiate(self):
        session, effects = self.romeo.table.initiate(JULIET, [content()])
        self.assertEqual((session.sid, session.role, session.state),
                         ("r3", "initiator", State.PENDING))
        [offer] = sends(effects)
        self.assertEqual((offer.action, offer.initiator, offer.contents),
                         (J.SESSION_INITIATE, ROMEO, (content(),)))
        self.assertIn(StartTimer(JULIET, "r3", "pending", 100), effects)
        self.assertRaises(ValueError, self.romeo.table.initiate, JULIET, [content()], "r3")

    def test_incoming(self):
        ours, theirs = self.wire.start()
        self.assertEqual((theirs.role, theirs.state, theirs.peer), ("responder",
                                                                    State.PENDING, ROMEO))
        [incoming] = events(self.juliet.log, "incoming")
        self.assertEqual(incoming.reason, "session-initiate from %s with initiator/ex"
                         % ROMEO.full())
        self.assertEqual(incoming.jingle.action, J.SESSION_INITIATE)
        self.assertTrue(ours.initiateAcknowledged)
        self.assertEqual(self.juliet.timers, {("r3", "pending"): 100})

    def test_acceptAndTerminate(self):
        ours, theirs = self.wire.active()
        [accepted] = events(self.romeo.log, "accepted")
        self.assertEqual(accepted.reason, "%s accepted the session" % JULIET.full())
        [accept] = sends(self.juliet.log, J.SESSION_ACCEPT)
        self.assertEqual(accept.responder, JULIET)
        # Both wait (bounded) for the transport, no longer for the answer.
        self.assertEqual(self.romeo.timers, {("r3", "transport initiator/ex"): 50})
        self.assertEqual(self.juliet.timers, {("r3", "transport initiator/ex"): 50})
        for side, session in ((self.romeo, ours), (self.juliet, theirs)):
            side.take(session.transportEstablished(KEY))
            self.assertEqual(session.transports[KEY], TransportState.ESTABLISHED)
            self.assertEqual(side.timers, {})
        self.assertEqual(len(events(self.romeo.log, "transport-established")), 1)
        effects = ours.terminate("success", "done")
        self.assertEqual(ours.state, State.ENDED)
        self.assertEqual(events(effects, "ended")[0].reason,
                         "we ended the session: success: done")
        self.wire.deliver(self.romeo, effects)
        self.assertEqual(theirs.state, State.ENDED)
        self.assertEqual(events(self.juliet.log, "ended")[0].reason,
                         "%s ended the session: success: done" % ROMEO.full())
        self.assertEqual((len(self.romeo.table), len(self.juliet.table)), (0, 0))
        self.assertEqual(ours.terminate("success"), [])

    def test_acceptWithoutDescriptionKeepsOurs(self):
        ours, theirs = self.wire.start()
        effects = self.wire.receive(self.romeo, JULIET, Jingle(
            J.SESSION_ACCEPT, ours.sid, contents=(
                Content("initiator", "ex", transport=s5b("other")),)))
        self.assertEqual(effects[0], Ack())
        self.assertEqual(ours.contents[KEY], content(transport=s5b("other")))

    def test_acceptNarrowsTransport(self):
        ibb = content(transport=IBBTransport("i1", 4096))
        ours, theirs = self.wire.start([ibb])
        narrowed = content(transport=IBBTransport("i1", 2048))
        self.wire.deliver(self.juliet, (theirs.accept([narrowed])))
        self.assertEqual(ours.contents[KEY].transport, IBBTransport("i1", 2048))

    def test_transportUpBeforeAccept(self):
        """The initiator may connect S5B before session-accept arrives."""
        ours, theirs = self.wire.start()
        self.romeo.take(ours.transportEstablished(KEY))
        self.wire.deliver(self.juliet, theirs.accept())
        self.assertNotIn(("r3", "transport initiator/ex"), self.romeo.timers)
        self.assertIn(("r3", "transport initiator/ex"), self.juliet.timers)

    def test_decline(self):
        ours, theirs = self.wire.start()
        self.wire.deliver(self.juliet, (theirs.terminate("decline", "no")))
        self.assertEqual(ours.state, State.ENDED)
        self.assertEqual(events(self.romeo.log, "ended")[0].reason,
                         "%s ended the session: decline: no" % JULIET.full())
        self.assertEqual(self.romeo.timers, {})

    def test_terminateWithoutReason(self):
        ours, theirs = self.wire.active()
        self.wire.receive(self.romeo, JULIET, Jingle(J.SESSION_TERMINATE, ours.sid))
        self.assertTrue(events(self.romeo.log, "ended")[0].reason.endswith(
            "no reason given"))

    def test_ping(self):
        ours, theirs = self.wire.active()
        effects = self.wire.receive(self.romeo, JULIET, Jingle(J.SESSION_INFO, ours.sid))
        self.assertEqual(effects, [Ack()])

    def test_knownSessionInfo(self):
        ours, theirs = self.wire.active()
        self.wire.deliver(self.juliet, theirs.sendSessionInfo([Received("initiator", "ex")]))
        [info] = events(self.romeo.log, "session-info")
        self.assertEqual(info.jingle.info, (Received("initiator", "ex"),))
        self.assertIn("{urn:xmpp:jingle:apps:file-transfer:5}received", info.reason)

    def test_transportInfo(self):
        """Allowed in PENDING too: Libervia sends it before session-accept."""
        ours, theirs = self.wire.start()
        effects = self.wire.deliver(self.romeo, ours.sendTransportInfo(
            KEY, S5BTransport("s5b1", candidateError=True)))
        self.assertEqual(effects[0], Ack())
        [info] = events(self.juliet.log, "transport-info")
        self.assertEqual((info.content, info.jingle.contents[0].transport.kind),
                         (KEY, "candidate-error"))

    def test_descriptionInfo(self):
        ours, theirs = self.wire.active()
        effects = self.wire.receive(self.romeo, JULIET, Jingle(
            J.DESCRIPTION_INFO, ours.sid,
            contents=(Content("initiator", "ex", description=IBBTransport("x", 1)),)))
        self.assertEqual(effects[0], Ack())
        self.assertEqual(len(events(effects, "description-info")), 1)


class RefusalTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Wire(self)
        self.romeo, self.juliet = self.wire.romeo, self.wire.juliet

    def refusal(self, side, sender, jingle):
        effects = self.wire.receive(side, sender, jingle)
        self.assertEqual(len(effects), 1, effects)
        return effects[0].condition, effects[0].text

    def test_unknownSessionFromStranger(self):
        """A request for a live session from any other full JID."""
        ours, theirs = self.wire.active()
        for action, extra in [(J.SESSION_TERMINATE, {"reason": Reason("success")}),
                              (J.SESSION_INFO, {}),
                              (J.TRANSPORT_INFO, {"contents": (
                                  Content("initiator", "ex", transport=s5b()),)})]:
            for stranger in (STRANGER, JID("juliet@capulet.lit/other")):
                condition, text = self.refusal(self.romeo, stranger,
                                               Jingle(action, ours.sid, **extra))
                self.assertEqual(condition, "unknown-session")
                self.assertEqual(text, "no session r3 with %s" % stranger.full())
        self.assertEqual(ours.state, State.ACTIVE)
        self.assertEqual(events(self.romeo.log, "ended"), [])

    def test_unknownSessionAfterEnd(self):
        """XEP-0166 6.7: after session-terminate, unknown-session."""
        ours, theirs = self.wire.active()
        self.romeo.take(ours.terminate("success"))  # not delivered: crossing
        condition, _ = self.refusal(self.romeo, JULIET, Jingle(
            J.SESSION_TERMINATE, ours.sid, reason=Reason("success")))
        self.assertEqual(condition, "unknown-session")
        self.assertEqual(ours.receive(Jingle(J.SESSION_INFO, ours.sid))[0].condition,
                         "unknown-session")

    def test_unknownSid(self):
        self.assertEqual(self.refusal(self.romeo, JULIET, Jingle(J.SESSION_INFO, "nope")),
                         ("unknown-session", "no session nope with %s" % JULIET.full()))

    def test_outOfOrder(self):
        ours, theirs = self.wire.start()
        accept = Jingle(J.SESSION_ACCEPT, ours.sid, contents=(content(),))
        self.assertEqual(self.refusal(self.juliet, ROMEO, accept),
                         ("out-of-order", "session-accept sent to the responder"))
        self.assertEqual(self.refusal(self.juliet, ROMEO, Jingle(
            J.SESSION_INITIATE, ours.sid, contents=(content(),)))[0], "out-of-order")
        self.assertEqual(ours.receive(Jingle(J.SESSION_INITIATE, ours.sid))[0].condition,
                         "out-of-order")
        self.wire.deliver(self.juliet, theirs.accept())
        self.assertEqual(self.refusal(self.romeo, JULIET, accept),
                         ("out-of-order", "session-accept while the session is active"))
        for action in (J.TRANSPORT_ACCEPT, J.TRANSPORT_REJECT):
            condition, text = self.refusal(self.romeo, JULIET, Jingle(
                action, ours.sid, contents=(content(transport=IBBTransport("i", 1)),)))
            self.assertEqual(condition, "out-of-order")
            self.assertIn("for which we sent no transport-replace", text)
        for action in (J.CONTENT_ACCEPT, J.CONTENT_REJECT):
            condition, text = self.refusal(self.romeo, JULIET, Jingle(
                action, ours.sid, contents=(content(),)))
            self.assertEqual(condition, "out-of-order")
            self.assertIn("for which we sent no content-add", text)
        self.assertEqual(ours.state, State.ACTIVE)

    def test_unsupportedInfo(self):
        ours, theirs = self.wire.active()
        ringing = Opaque(domish.Element(("urn:xmpp:jingle:apps:rtp:1:info", "ringing")))
        self.assertEqual(self.refusal(self.romeo, JULIET, Jingle(
            J.SESSION_INFO, ours.sid, info=(ringing,))),
            ("unsupported-info", "session-info payload "
             "{urn:xmpp:jingle:apps:rtp:1:info}ringing is not supported"))
        unknownTransport = Content("initiator", "ex",
                                   transport=Opaque(domish.Element(("urn:x:t", "transport"))))
        self.assertEqual(self.refusal(self.romeo, JULIET, Jingle(
            J.TRANSPORT_INFO, ours.sid, contents=(unknownTransport,)))[0], "unsupported-info")
        self.assertEqual(self.refusal(self.romeo, JULIET, Jingle(
            J.DESCRIPTION_INFO, ours.sid, contents=(content(),)))[0], "unsupported-info")
        self.assertEqual(self.refusal(self.romeo, JULIET, Jingle(
            J.SECURITY_INFO, ours.sid))[0], "unsupported-info")
        self.assertEqual(ours.state, State.ACTIVE)

    def test_unknownContent(self):
        ours, theirs = self.wire.active()
        for action in (J.TRANSPORT_INFO, J.TRANSPORT_REPLACE, J.CONTENT_REMOVE,
                       J.CONTENT_MODIFY):
            other = Content("initiator", "other", senders="both", transport=s5b())
            condition, text = self.refusal(self.romeo, JULIET,
                                           Jingle(action, ours.sid, contents=(other,)))
            self.assertEqual(condition, "bad-request")
            self.assertIn("no content initiator/other", text)
        self.assertEqual(self.refusal(self.romeo, JULIET, Jingle(
            J.SESSION_ACCEPT, ours.sid, contents=(content("other"),)))[0], "out-of-order")
        ours2, theirs2 = self.wire.start()
        self.assertEqual(self.refusal(self.romeo, JULIET, Jingle(
            J.SESSION_ACCEPT, ours2.sid, contents=(content("other"),)))[0], "bad-request")
        self.assertEqual(ours2.state, State.PENDING)

    def test_refuseToStanzaError(self):
        exc = Refuse("tie-break", "words").toStanzaError()
        self.assertEqual((exc.condition, exc.appCondition.name, exc.text),
                         ("conflict", "tie-break", "words"))
        exc = Refuse("bad-request", "words").toStanzaError()
        self.assertEqual((exc.condition, exc.appCondition), ("bad-request", None))


class TieBreakTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Wire(self)
        self.romeo, self.juliet = self.wire.romeo, self.wire.juliet

    def cross(self, romeoSid, julietSid, julietNs=APP):
        """Both initiate, and both initiates arrive before either answer."""
        ours, mine = self.romeo.table.initiate(JULIET, [content()], romeoSid)
        theirs, hers = self.juliet.table.initiate(
            ROMEO, [content(creator="initiator", ns=julietNs)], julietSid)
        self.romeo.take(mine)
        self.juliet.take(hers)
        atRomeo = self.wire.receive(self.romeo, JULIET, sends(hers)[0])
        atJuliet = self.wire.receive(self.juliet, ROMEO, sends(mine)[0])
        for side, session, sent, answer in ((self.romeo, ours, mine, atJuliet[0]),
                                            (self.juliet, theirs, hers, atRomeo[0])):
            if isinstance(answer, Ack):
                side.take(session.acknowledged(sends(sent)[0]))
            else:
                side.take(session.requestFailed(sends(sent)[0], answer.condition,
                                                answer.text))
        return ours, theirs, atRomeo, atJuliet

    def test_lowerSidWins(self):
        """XEP-0166 7.2.16: Romeo's 'a1' < Juliet's 'b1': Romeo's session stands."""
        ours, theirs, atRomeo, atJuliet = self.cross("a1", "b1")
        self.assertEqual(atRomeo[0].condition, "tie-break")
        self.assertIn("our session-initiate a1 crossed yours and wins", atRomeo[0].text)
        self.assertEqual(atJuliet[0], Ack())
        self.assertEqual(theirs.state, State.ENDED)
        [ended] = events(self.juliet.log, "ended")
        self.assertEqual(ended.sid, "b1")
        self.assertIn("tie-break: %s initiated session a1 at the same time"
                      % ROMEO.full(), ended.reason)
        self.assertEqual([s.sid for s in self.romeo.table], ["a1"])
        self.assertEqual([(s.sid, s.role) for s in self.juliet.table], [("a1", "responder")])
        self.assertEqual(sends(self.juliet.log, J.SESSION_TERMINATE), [])
        self.assertEqual(self.juliet.timers, {("a1", "pending"): 100})
        exc = Refuse(atRomeo[0].condition, atRomeo[0].text).toStanzaError()
        self.assertEqual(exc.condition, "conflict")

    def test_higherSidLoses(self):
        ours, theirs, atRomeo, atJuliet = self.cross("b1", "a1")
        self.assertEqual(atRomeo[0], Ack())
        self.assertEqual(atJuliet[0].condition, "tie-break")
        self.assertEqual(ours.state, State.ENDED)
        self.assertEqual([(s.sid, s.role) for s in self.romeo.table], [("a1", "responder")])

    def test_octetCollation(self):
        """i;octet: 'B' (0x42) sorts before 'a' (0x61)."""
        ours, theirs, atRomeo, atJuliet = self.cross("a1", "B1")
        self.assertEqual(atJuliet[0].condition, "tie-break")
        self.assertEqual(ours.state, State.ENDED)

    def test_sameSidLowerJidWins(self):
        """Equal sids: juliet@... < romeo@..., so Juliet's action overrules."""
        ours, theirs, atRomeo, atJuliet = self.cross("same", "same")
        self.assertEqual(atRomeo[0], Ack())
        self.assertEqual(atJuliet[0].condition, "tie-break")
        self.assertEqual(ours.state, State.ENDED)
        [live] = list(self.romeo.table)
        self.assertEqual((live.sid, live.role, live.peer), ("same", "responder", JULIET))

    def test_differentApplicationsBothLive(self):
        ours, theirs, atRomeo, atJuliet = self.cross("a1", "b1", julietNs="urn:x-other")
        self.assertEqual((atRomeo[0], atJuliet[0]), (Ack(), Ack()))
        self.assertEqual(len(self.romeo.table), 2)
        self.assertEqual(len(self.juliet.table), 2)

    def test_acknowledgedInitiateIsNoTie(self):
        """Once our initiate is acknowledged, a new initiate is a new session."""
        ours, theirs = self.wire.start()
        later, effects = self.juliet.table.initiate(ROMEO, [content()], "a0")
        self.wire.deliver(self.juliet, effects)
        self.assertEqual(len(self.romeo.table), 2)
        self.assertEqual(ours.state, State.PENDING)

    def test_equivalence(self):
        a = Jingle(J.SESSION_INITIATE, "a", contents=(content(),))
        self.assertTrue(sameApplications(a, Jingle(J.SESSION_INITIATE, "b",
                                                   contents=(content("other"),))))
        self.assertFalse(sameApplications(a, Jingle(J.SESSION_INITIATE, "b",
                                                    contents=(content(ns="urn:y"),))))

    def test_linksToDifferentServicesAreNoTie(self):
        """Two links crossing to different services are two sessions."""
        from bytestreamd.wire.jingle_link import LinkDescription

        def link(sid, service):
            return Jingle(J.SESSION_INITIATE, sid, contents=(Content(
                "initiator", "link", senders="initiator",
                description=LinkDescription(service), transport=s5b()),))
        self.assertTrue(sameApplications(link("a", "ssh"), link("b", "ssh")))
        self.assertFalse(sameApplications(link("a", "ssh"), link("b", "web")))


class TransportReplaceTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Wire(self)
        self.romeo, self.juliet = self.wire.romeo, self.wire.juliet
        self.ours, self.theirs = self.wire.active()
        self.ibb = IBBTransport("i1", 4096)

    def replace(self):
        effects = self.ours.replaceTransport(KEY, self.ibb)
        self.assertEqual(self.ours.transports[KEY], TransportState.REPLACING)
        got = self.wire.deliver(self.romeo, effects)
        self.assertEqual(self.romeo.timers, {("r3", "answer initiator/ex"): 20})
        return got

    def test_accepted(self):
        atJuliet = self.replace()
        [proposed] = events(atJuliet, "transport-replace")
        self.assertEqual(proposed.reason, "%s proposes transport "
                         "{urn:xmpp:jingle:transports:ibb:1}transport for content "
                         "initiator/ex" % ROMEO.full())
        self.assertEqual(self.theirs.transports[KEY], TransportState.REPLACE_OFFERED)
        self.assertEqual(self.juliet.timers, {("r3", "answer initiator/ex"): 20})
        atRomeo = self.wire.deliver(self.juliet, (
            self.theirs.acceptTransport(KEY, self.ibb.withBlockSize(2048))))
        self.assertEqual(len(events(atRomeo, "transport-accepted")), 1)
        for session in (self.ours, self.theirs):
            self.assertEqual(session.contents[KEY].transport, IBBTransport("i1", 2048))
            self.assertEqual(session.transports[KEY], TransportState.NEGOTIATING)
        self.assertEqual(self.romeo.timers, {("r3", "transport initiator/ex"): 50})
        self.assertEqual(self.juliet.timers, {("r3", "transport initiator/ex"): 50})

    def test_rejected(self):
        self.replace()
        atRomeo = self.wire.deliver(self.juliet, (
            self.theirs.rejectTransport(KEY)))
        [rejected] = events(atRomeo, "transport-rejected")
        self.assertEqual(rejected.reason, "%s rejected the transport-replace of content "
                         "initiator/ex" % JULIET.full())
        self.assertEqual(self.ours.contents[KEY].transport, s5b())
        self.assertEqual(self.ours.transports[KEY], TransportState.NEGOTIATING)
        self.assertEqual(self.romeo.timers, {("r3", "transport initiator/ex"): 50})

    def test_answeredWithSessionAccept(self):
        """Gajim answers transport-replace with session-accept: tolerated."""
        self.replace()
        effects = self.wire.receive(self.romeo, JULIET, Jingle(
            J.SESSION_ACCEPT, self.ours.sid, responder=JULIET,
            contents=(content(transport=self.ibb),)))
        self.assertEqual(effects[0], Ack())
        self.assertEqual(self.ours.contents[KEY].transport, self.ibb)

    def test_answeredWithBareSessionAccept(self):
        """The same, with only the transport in the content."""
        self.replace()
        effects = self.wire.receive(self.romeo, JULIET, Jingle(
            J.SESSION_ACCEPT, self.ours.sid,
            contents=(Content("initiator", "ex", transport=self.ibb),)))
        self.assertEqual(effects[0], Ack())
        [accepted] = events(effects, "transport-accepted")
        self.assertIn("with a session-accept, tolerated", accepted.reason)
        self.assertEqual(self.ours.contents[KEY].transport, self.ibb)
        self.assertEqual(self.ours.transports[KEY], TransportState.NEGOTIATING)

    def test_sessionAcceptWithOtherTransportIsOutOfOrder(self):
        self.replace()
        effects = self.wire.receive(self.romeo, JULIET, Jingle(
            J.SESSION_ACCEPT, self.ours.sid, contents=(content(),)))
        self.assertEqual(effects[0].condition, "out-of-order")
        self.assertEqual(self.ours.transports[KEY], TransportState.REPLACING)

    def test_crossingReplace(self):
        """Both replace at once: the initiator's wins (XEP-0166 7.2.16)."""
        mine = self.romeo.take(self.ours.replaceTransport(KEY, self.ibb))
        hers = self.juliet.take(self.theirs.replaceTransport(KEY, IBBTransport("j", 1)))
        # Both arrive before either answer does.
        atRomeo = self.wire.receive(self.romeo, JULIET, sends(hers)[0])
        atJuliet = self.wire.receive(self.juliet, ROMEO, sends(mine)[0])
        self.assertEqual(atRomeo[0], Refuse("tie-break", "your transport-replace of "
                                            "content initiator/ex crossed ours, and the "
                                            "initiator's wins"))
        self.assertEqual(self.ours.transports[KEY], TransportState.REPLACING)
        self.assertEqual(atJuliet[0], Ack())
        self.juliet.take(self.theirs.requestFailed(sends(hers)[0], "tie-break"))
        self.romeo.take(self.ours.acknowledged(sends(mine)[0]))
        [proposed] = events(atJuliet, "transport-replace")
        self.assertIn("the initiator's wins the tie-break", proposed.reason)
        self.assertEqual(self.theirs.transports[KEY], TransportState.REPLACE_OFFERED)
        self.assertEqual(self.theirs.replacements[KEY], self.ibb)
        # Juliet's tie-break error changed nothing more.
        self.assertEqual(self.theirs.state, State.ACTIVE)
        self.assertEqual(self.juliet.timers, {("r3", "answer initiator/ex"): 20})
        self.wire.deliver(self.juliet, (self.theirs.acceptTransport(KEY)))
        self.assertEqual(self.ours.contents[KEY].transport, self.ibb)

    def test_secondReplaceBeforeAnswer(self):
        self.replace()
        effects = self.wire.receive(self.juliet, ROMEO, Jingle(
            J.TRANSPORT_REPLACE, self.ours.sid, contents=(content(transport=self.ibb),)))
        self.assertEqual(effects[0].condition, "out-of-order")

    def test_localMisuse(self):
        self.assertRaises(SessionStateError, self.theirs.acceptTransport, KEY)
        self.assertRaises(SessionStateError, self.theirs.rejectTransport, KEY)
        self.romeo.take(self.ours.replaceTransport(KEY, self.ibb))
        self.assertRaises(SessionStateError, self.ours.replaceTransport, KEY, self.ibb)
        self.assertRaises(SessionStateError, self.ours.replaceTransport, ("initiator", "x"),
                          self.ibb)


class ContentTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Wire(self)
        self.romeo, self.juliet = self.wire.romeo, self.wire.juliet
        self.ours, self.theirs = self.wire.active()
        self.second = content("second", transport=IBBTransport("i2", 4096))
        self.key2 = ("initiator", "second")

    def add(self):
        got = self.wire.deliver(self.romeo, self.ours.addContent(self.second))
        self.assertIn(("r3", "answer initiator/second"), self.romeo.timers)
        return got

    def test_accepted(self):
        [proposed] = events(self.add(), "content-add")
        self.assertEqual(proposed.content, self.key2)
        self.wire.deliver(self.juliet, (self.theirs.acceptContent(self.key2)))
        for session, side in ((self.ours, self.romeo), (self.theirs, self.juliet)):
            self.assertEqual(session.contents[self.key2], self.second)
            self.assertEqual(session.transports[self.key2], TransportState.NEGOTIATING)
            self.assertIn(("r3", "transport initiator/second"), side.timers)
            self.assertNotIn(("r3", "answer initiator/second"), side.timers)
        self.assertEqual(len(events(self.romeo.log, "content-accepted")), 1)

    def test_rejected(self):
        self.add()
        self.wire.deliver(self.juliet, (
            self.theirs.rejectContent(self.key2, "decline", "one is enough")))
        [rejected] = events(self.romeo.log, "content-rejected")
        self.assertEqual(rejected.reason, "%s rejected content initiator/second: "
                         "decline: one is enough" % JULIET.full())
        self.assertNotIn(self.key2, self.ours.contents)
        self.assertEqual(self.ours.state, State.ACTIVE)

    def test_duplicateAdd(self):
        effects = self.wire.receive(self.juliet, ROMEO, Jingle(
            J.CONTENT_ADD, self.ours.sid, contents=(content(),)))
        self.assertEqual(effects[0].condition, "bad-request")
        self.assertRaises(SessionStateError, self.ours.addContent, content())
        self.assertRaises(SessionStateError, self.ours.addContent,
                          content("mine", creator="responder"))

    def test_removeLastEndsSession(self):
        """XEP-0166 7.2.4: the receiver of the last content-remove terminates."""
        self.wire.deliver(self.juliet, (
            self.theirs.removeContent(KEY, "cancel", "enough")))
        self.assertEqual(self.ours.state, State.ENDED)
        [terminate] = sends(self.romeo.log, J.SESSION_TERMINATE)
        self.assertEqual(terminate.reason, Reason("cancel", "no content left in the session"))
        self.assertIn("removed content initiator/ex: cancel: enough",
                      events(self.romeo.log, "content-removed")[0].reason)
        # Juliet, who removed it, learnt the end from Romeo's terminate.
        self.assertEqual(self.theirs.state, State.ENDED)

    def test_removeOneOfTwo(self):
        self.add()
        self.wire.deliver(self.juliet, (self.theirs.acceptContent(self.key2)))
        self.wire.deliver(self.romeo, (self.ours.removeContent(self.key2)))
        self.assertEqual(list(self.theirs.contents), [KEY])
        self.assertEqual(self.theirs.state, State.ACTIVE)
        self.assertNotIn(("r3", "transport initiator/second"), self.juliet.timers)

    def test_lastRejectEndsSession(self):
        """A session whose only content was refused is void."""
        session, effects = self.romeo.table.initiate(JULIET, [content()], "z")
        self.wire.deliver(self.romeo, effects)
        theirs = self.juliet.session(self.romeo, "z")
        self.wire.deliver(self.juliet, theirs.accept())
        self.wire.deliver(self.juliet, (theirs.removeContent(KEY)))
        self.assertEqual(session.state, State.ENDED)

    def test_modify(self):
        self.wire.receive(self.romeo, JULIET, Jingle(
            J.CONTENT_MODIFY, self.ours.sid,
            contents=(Content("initiator", "ex", senders="both"),)))
        self.assertEqual(self.ours.contents[KEY].senders, "both")
        self.assertEqual(self.ours.contents[KEY].transport, s5b())
        self.assertEqual(len(events(self.romeo.log, "content-modified")), 1)

    def test_misuse(self):
        self.assertRaises(SessionStateError, self.theirs.acceptContent, self.key2)
        self.assertRaises(SessionStateError, self.theirs.rejectContent, self.key2)
        self.assertRaises(SessionStateError, self.theirs.removeContent, self.key2)
        self.assertRaises(SessionStateError, self.theirs.transportEstablished, self.key2)


class FailedRequestTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Wire(self)
        self.romeo = self.wire.romeo

    def test_initiateRefused(self):
        session, effects = self.romeo.table.initiate(JULIET, [content()])
        [offer] = sends(effects)
        self.romeo.take(effects)
        effects = self.romeo.take(session.requestFailed(offer, "service-unavailable"))
        self.assertEqual(sends(effects), [])
        self.assertEqual(events(effects, "ended")[0].reason,
                         "%s answered our session-initiate with service-unavailable"
                         % JULIET.full())
        self.assertEqual(self.romeo.timers, {})
        self.assertEqual(len(self.romeo.table), 0)
        self.assertEqual(session.requestFailed(offer, "x"), [])

    def test_unknownSession(self):
        ours, theirs = self.wire.active()
        effects = ours.requestFailed(Jingle(J.SESSION_INFO, ours.sid), "unknown-session")
        self.assertEqual(sends(effects), [])
        self.assertEqual(ours.state, State.ENDED)

    def test_transportRequestFailedTerminates(self):
        ours, theirs = self.wire.active()
        replace = Jingle(J.TRANSPORT_REPLACE, ours.sid, contents=(content(),))
        effects = ours.requestFailed(replace, "bad-request", "no")
        [terminate] = sends(effects, J.SESSION_TERMINATE)
        self.assertEqual(terminate.reason.condition, "failed-transport")
        self.assertIn("answered our transport-replace with bad-request: no",
                      terminate.reason.text)
        ours2, _ = self.wire.active()
        accept = Jingle(J.CONTENT_ADD, ours2.sid, contents=(content(),))
        self.assertEqual(sends(ours2.requestFailed(accept, "remote-server-timeout"),
                               J.SESSION_TERMINATE)[0].reason.condition, "general-error")

    def test_tieBreakOnReplaceIsQuiet(self):
        ours, theirs = self.wire.active()
        replace = Jingle(J.TRANSPORT_REPLACE, ours.sid, contents=(content(),))
        self.assertEqual(theirs.requestFailed(replace, "tie-break"), [])
        self.assertEqual(theirs.state, State.ACTIVE)

    def test_infoFailureIsAnEvent(self):
        ours, theirs = self.wire.active()
        info = Jingle(J.TRANSPORT_INFO, ours.sid, contents=(content(),))
        [event] = ours.requestFailed(info, "feature-not-implemented")
        self.assertEqual((event.kind, ours.state), ("request-failed", State.ACTIVE))
        self.assertEqual(ours.requestFailed(Jingle(J.SESSION_TERMINATE, ours.sid), "x"), [])

    def test_acknowledgedOtherRequests(self):
        ours, theirs = self.wire.active()
        self.assertEqual(ours.acknowledged(Jingle(J.SESSION_INFO, ours.sid)), [])


class TimeoutTests(SynchronousTestCase):
    def setUp(self):
        self.wire = Wire(self)
        self.romeo, self.juliet = self.wire.romeo, self.wire.juliet

    def expire(self, side, session, name):
        self.assertIn((session.sid, name), side.timers)
        del side.timers[(session.sid, name)]
        effects = session.timerExpired(name)
        [terminate] = sends(effects, J.SESSION_TERMINATE)
        self.assertEqual(session.state, State.ENDED)
        self.assertEqual(events(effects, "ended")[0].reason,
                         "we ended the session: %s" % terminate.reason.describe())
        self.wire.deliver(side, effects)
        self.assertEqual(side.timers, {})
        return terminate.reason

    def test_initiatorWaitsForAccept(self):
        session, effects = self.romeo.table.initiate(JULIET, [content()])
        self.romeo.take(effects)
        self.assertEqual(self.expire(self.romeo, session, "pending"), Reason(
            "timeout", "no session-accept from %s within 100s" % JULIET.full()))
        self.assertEqual(len(self.romeo.table), 0)

    def test_responderDecisionBounded(self):
        ours, theirs = self.wire.start()
        self.assertEqual(self.expire(self.juliet, theirs, "pending"), Reason(
            "timeout", "the offer was neither accepted nor declined here within 100s"))
        self.assertEqual(ours.state, State.ENDED)
        self.assertIn("timeout: the offer was neither accepted",
                      events(self.romeo.log, "ended")[0].reason)

    def test_transportBounded(self):
        ours, theirs = self.wire.active()
        self.assertEqual(self.expire(self.romeo, ours, "transport initiator/ex"), Reason(
            "timeout", "the transport of content initiator/ex was not established "
            "within 50s"))

    def test_replaceAnswerBounded(self):
        ours, theirs = self.wire.active()
        self.romeo.take(ours.replaceTransport(KEY, IBBTransport("i", 1)))
        self.assertEqual(self.expire(self.romeo, ours, "answer initiator/ex").text,
                         "no transport-accept or transport-reject from %s for content "
                         "initiator/ex within 20s" % JULIET.full())

    def test_replaceDecisionBounded(self):
        ours, theirs = self.wire.active()
        self.wire.deliver(self.romeo, ours.replaceTransport(KEY, IBBTransport("i", 1)))
        self.assertIn("was not answered here within 20s",
                      self.expire(self.juliet, theirs, "answer initiator/ex").text)

    def test_contentAddBounded(self):
        ours, theirs = self.wire.active()
        self.wire.deliver(self.romeo, (ours.addContent(content("b"))))
        self.assertIn("content-add of initiator/b from %s was not answered" % ROMEO.full(),
                      self.expire(self.juliet, theirs, "answer initiator/b").text)

    def dropped(self, side, session, name, key):
        """``name`` expires on ``side``: ``key`` alone is removed."""
        del side.timers[(session.sid, name)]
        effects = session.timerExpired(name)
        [remove] = sends(effects, J.CONTENT_REMOVE)
        self.assertEqual([c.key for c in remove.contents], [key])
        self.assertEqual(remove.reason.condition, "timeout")
        self.assertEqual(session.state, State.ACTIVE)
        self.assertEqual([e.content for e in events(effects, "content-removed")], [key])
        self.assertFalse(sends(effects, J.SESSION_TERMINATE))
        self.wire.deliver(side, effects)
        return remove

    def test_ourContentAddUnansweredRemovesItAlone(self):
        # One content per connection of a connections=many link: a peer
        # that does not answer one content-add does not end the link.
        ours, theirs = self.wire.active()
        self.wire.deliver(self.romeo, ours.addContent(content("b")))
        remove = self.dropped(self.romeo, ours, "answer initiator/b", ("initiator", "b"))
        self.assertIn("no content-accept or content-reject", remove.reason.text)
        self.assertNotIn(("initiator", "b"), ours.ourAdds)
        self.assertNotIn(("initiator", "b"), theirs.theirAdds)
        self.assertEqual(list(ours.contents), [KEY])
        self.assertEqual(theirs.state, State.ACTIVE)

    def test_stuckTransportOfOneContentOfSeveralRemovesItAlone(self):
        ours, theirs = self.wire.active()
        self.wire.deliver(self.romeo, ours.addContent(content("b")))
        self.wire.deliver(self.juliet, theirs.acceptContent(("initiator", "b")))
        self.wire.deliver(self.romeo, ours.transportEstablished(KEY))
        self.dropped(self.romeo, ours, "transport initiator/b", ("initiator", "b"))
        self.assertEqual(list(ours.contents), [KEY])
        self.assertEqual(list(theirs.contents), [KEY])
        self.assertEqual(theirs.state, State.ACTIVE)
        # the last content's transport still ends the session
        self.wire.deliver(self.juliet, theirs.addContent(content("c", creator="responder")))
        self.wire.deliver(self.romeo, ours.acceptContent(("responder", "c")))
        self.dropped(self.juliet, theirs, "transport responder/c", ("responder", "c"))
        self.assertIn((theirs.sid, "transport initiator/ex"), self.juliet.timers)
        self.expire(self.juliet, theirs, "transport initiator/ex")

    def test_lifetimeExpires(self):
        timeouts = Timeouts(pending=10, transport=10, answer=10, lifetime=3600)
        session, effects = JingleSession.initiate(ROMEO, JULIET, "x", [content()], timeouts)
        self.assertIn(StartTimer(JULIET, "x", "lifetime", 3600), effects)
        effects = session.timerExpired("lifetime")
        self.assertEqual(sends(effects)[0].reason,
                         Reason("expired", "the session reached its lifetime of 3600s"))

    def test_staleTimers(self):
        ours, theirs = self.wire.active()
        self.assertEqual(ours.timerExpired("pending"), [])  # stopped at accept
        self.assertEqual(ours.timerExpired("nonsense"), [])
        self.romeo.take(ours.terminate("success"))
        self.assertEqual(ours.timerExpired("transport initiator/ex"), [])


class LocalCommandTests(SynchronousTestCase):
    def test_stateErrors(self):
        wire = Wire(self)
        ours, theirs = wire.start()
        self.assertRaises(SessionStateError, ours.accept)
        self.assertRaises(SessionStateError, theirs.accept, [content("nope")])
        wire.deliver(wire.juliet, theirs.accept())
        self.assertRaises(SessionStateError, theirs.accept)
        wire.romeo.take(ours.terminate("success"))
        for call in (lambda: ours.sendSessionInfo(), lambda: ours.transportEstablished(KEY),
                     lambda: ours.sendTransportInfo(KEY, s5b()),
                     lambda: ours.addContent(content("n"))):
            e = self.assertRaises(SessionStateError, call)
            self.assertIn("it is ended", str(e))


# --- robustness: any sequence of requests from the peer -----------------------------

_requests = st.sampled_from([
    Jingle(J.SESSION_ACCEPT, "x", contents=(content(),)),
    Jingle(J.SESSION_INFO, "x"),
    Jingle(J.SESSION_INFO, "x", info=(Received(),)),
    Jingle(J.TRANSPORT_INFO, "x", contents=(content(),)),
    Jingle(J.TRANSPORT_REPLACE, "x", contents=(content(transport=IBBTransport("i", 9)),)),
    Jingle(J.TRANSPORT_ACCEPT, "x", contents=(content(transport=IBBTransport("i", 9)),)),
    Jingle(J.TRANSPORT_REJECT, "x", contents=(content(),)),
    Jingle(J.CONTENT_ADD, "x", contents=(content("b", creator="responder"),)),
    Jingle(J.CONTENT_ACCEPT, "x", contents=(content("b"),)),
    Jingle(J.CONTENT_REMOVE, "x", contents=(content(),)),
    Jingle(J.CONTENT_MODIFY, "x", contents=(Content("initiator", "ex", senders="none"),)),
    Jingle(J.SESSION_TERMINATE, "x", reason=Reason("gone")),
])
_commands = st.sampled_from(["replace", "establish", "timer", "add", "info"])


class RandomSequenceTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.one_of(_requests, _commands), max_size=12))
    def test_alwaysAnsweredOnce(self, steps):
        """
        Whatever the peer sends, in any order, mixed with our commands: each
        request is answered exactly once, first, and nothing else breaks.
        """
        session, _ = JingleSession.initiate(ROMEO, JULIET, "x", [content()], TIMEOUTS)
        for step in steps:
            if isinstance(step, Jingle):
                effects = session.receive(step)
                self.assertIsInstance(effects[0], (Ack, Refuse))
                self.assertEqual(len(answers(effects)), 1)
                continue
            try:
                {"replace": lambda: session.replaceTransport(KEY, IBBTransport("r", 1)),
                 "establish": lambda: session.transportEstablished(KEY),
                 "timer": lambda: session.timerExpired("answer initiator/ex"),
                 "add": lambda: session.addContent(content("c" + str(len(steps)))),
                 "info": lambda: session.sendSessionInfo()}[step]()
            except SessionStateError:
                pass
        if session.state is State.ENDED:
            self.assertEqual(session._timers, {})
