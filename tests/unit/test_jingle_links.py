"""
The pieces that put Jingle links into the daemon, without a network:
the link application's codec, the application translators, ``[links]
negotiation``, ``OPEN ... negotiation=``, the negotiator's disco and
``supports``/``canCarry``, the effect performer (answers, requests, timers)
and the open check that XEP-0261 needs.  The whole flows are in
tests/memory/test_jingle.py and tests/integration/test_jingle.py.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd import ns
from bytestreamd.application import FileApplication, LinkApplication
from bytestreamd.negotiation import jingle_apps
from bytestreamd.negotiation.jingle import JingleNegotiator, requestCondition
from bytestreamd.negotiation.jingle_effects import StartTimer, StopTimer
from bytestreamd.wire import ibb as wire_ibb
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle_ibb import IBBTransport, answerFor, openMismatch
from bytestreamd.wire.jingle_link import LinkDescription
from tests.unit.test_config import error, load
from tests.unit.test_control_protocol import FakeBackend, ProtocolTestCase


# --- the link application -------------------------------------------------------


def test_link_description_round_trips():
    for service in (None, "ssh", "a.b-c_d"):
        element = LinkDescription(service).toElement()
        assert element.uri == ns.NS_JINGLE_LINK and element.name == "description"
        decoded = J.defaultRegistry().decode(element)
        assert decoded == LinkDescription(service)


def test_link_description_refuses_a_bad_service():
    element = domish.Element((ns.NS_JINGLE_LINK, "description"))
    element["service"] = "two words"
    with pytest.raises(J.MalformedJingle):
        LinkDescription.fromElement(element)


def test_link_description_in_a_session_initiate():
    j = J.Jingle(J.SESSION_INITIATE, "s1", initiator=JID("a@x/r"), contents=(
        J.Content(J.INITIATOR, "link", description=LinkDescription("ssh"),
                  transport=IBBTransport("i1", 4096)),))
    again = J.Jingle.fromElement(j.toElement())
    assert again.contents[0].description == LinkDescription("ssh")


def test_translators():
    assert jingle_apps.toDescription(LinkApplication("ssh")) == LinkDescription("ssh")
    assert jingle_apps.describe(LinkApplication(None)) == (LinkDescription(None), "link")
    assert jingle_apps.fromDescription(LinkDescription("x")) == LinkApplication("x")
    # XEP-0234 is registered (negotiation/jingle_file_session.py)
    assert jingle_apps.toDescription(FileApplication("f", 1)).file.name == "f"
    assert jingle_apps.fromDescription(object()) is None
    assert ns.NS_JINGLE_LINK in jingle_apps.NAMESPACES


# --- [links] negotiation --------------------------------------------------------


def test_negotiation_config():
    assert load().negotiation == ("jingle", "si")
    assert load({"links.negotiation": "SI"}).negotiation == ("si",)
    assert load({"links.negotiation": "si, jingle"}).negotiation == ("si", "jingle")
    assert "unknown negotiation 'xmpp'" in error({"links.negotiation": "xmpp"})
    assert "twice" in error({"links.negotiation": "si si"})
    assert "empty" in error({"links.negotiation": " , "})


# --- OPEN ... negotiation= ------------------------------------------------------


class _Backend(FakeBackend):
    def open(self, peer, owner, service=None, methods=None, blockSize=None, stanza=None,
             profile=None, headers=None, negotiation=None):
        self.negotiation = negotiation
        return FakeBackend.open(self, peer, owner, service, methods, blockSize, stanza,
                                profile, headers)


class OpenNegotiationTests(ProtocolTestCase):
    def setUp(self):
        self.backend = _Backend()
        self.proto, self.transport = self.connect()

    def test_passed_when_given(self):
        self.command("OPEN bob@example.org/x negotiation=Jingle")
        self.assertEqual(self.backend.negotiation, "jingle")

    def test_not_passed_otherwise(self):
        self.backend.negotiation = "unset"
        self.command("OPEN bob@example.org/x")
        self.assertEqual(self.backend.negotiation, None)

    def test_unknown_is_512(self):
        out = self.command("OPEN bob@example.org/x negotiation=muc")
        self.assertTrue(out.startswith(b"512 negotiation= must be one of"), out)


# --- the negotiator ----------------------------------------------------------------


class _Method:
    def __init__(self, name):
        self.name = name


def _negotiator(names=("s5b", "ibb")):
    return JingleNegotiator(Clock(), [_Method(n) for n in names], None, None)


def test_disco_advertises_jingle_transports_and_the_application():
    features = {str(f) for f in _negotiator().getDiscoInfo(None, None)}
    # the applications: our link, XEP-0247 (e2e links) and XEP-0234
    # (negotiation/jingle_file_session.py)
    assert features == {ns.NS_JINGLE, ns.NS_JINGLE_IBB, ns.NS_JINGLE_S5B,
                        ns.NS_JINGLE_LINK, ns.NS_JINGLE_XMLSTREAM, ns.NS_JINGLE_FT}
    assert {str(f) for f in _negotiator(["ibb"]).getDiscoInfo(None, None)} == {
        ns.NS_JINGLE, ns.NS_JINGLE_IBB, ns.NS_JINGLE_LINK, ns.NS_JINGLE_XMLSTREAM,
        ns.NS_JINGLE_FT}
    assert _negotiator().getDiscoInfo(None, None, "node") == []


def test_supports_and_can_carry():
    n = _negotiator()
    full = {ns.NS_JINGLE, ns.NS_JINGLE_IBB, ns.NS_JINGLE_LINK}
    assert n.supports(full)
    assert not n.supports(None)
    assert not n.supports({ns.NS_SI, ns.NS_IBB})
    assert not n.supports({ns.NS_JINGLE, ns.NS_JINGLE_LINK})       # no transport
    assert not n.supports({ns.NS_JINGLE, ns.NS_JINGLE_IBB})        # no application
    assert n.canCarry(full, ["ibb"]) and not n.canCarry(full, ["s5b"])


def test_request_condition_prefers_the_jingle_condition():
    exc = J.jingleError(J.UNKNOWN_SESSION, "gone")
    assert requestCondition(exc) == ("unknown-session", "gone")
    from bytestreamd.errors import stanzaError
    assert requestCondition(stanzaError("forbidden", "no"))[0] == "forbidden"
    from bytestreamd.xmpp.stanzas import RequestTimeout
    assert requestCondition(RequestTimeout("late"))[0] == "timeout"


def test_timers_start_restart_and_stop():
    n = _negotiator()
    fired = []
    n._timerFired = lambda key: fired.append(key)  # noqa
    peer = JID("b@x/r")
    n.perform([StartTimer(peer, "s1", "pending", 10)])
    n.perform([StartTimer(peer, "s1", "pending", 20)])  # restarts
    n.clock.advance(15)
    assert fired == []
    n.clock.advance(5)
    assert fired == [("b@x/r", "s1", "pending")]
    n.perform([StartTimer(peer, "s1", "answer", 5), StopTimer(peer, "s1", "answer")])
    n.clock.advance(10)
    assert len(fired) == 1 and n.clock.getDelayedCalls() == []


# --- XEP-0261's open check, as the IBB driver hands it to the engine ----------------


def test_check_open_for_the_negotiated_values():
    offer = IBBTransport("i1", 16384)
    answer = answerFor(offer, 4096)
    assert answer.blockSize == 4096
    assert openMismatch(answer, wire_ibb.Open("i1", 4096, "iq")) is None
    assert "block-size 16384, negotiated 4096" in openMismatch(
        answer, wire_ibb.Open("i1", 16384, "iq"))
    assert "stanza=message" in openMismatch(answer, wire_ibb.Open("i1", 4096, "message"))


def test_application_seams_for_file_transfer():
    # Without hooks the offered description is the answer, and no range.
    d = LinkDescription("ssh")
    assert jingle_apps.answerDescription(d, None) is d
    assert jingle_apps.rangeFromAnswer(d) is None
    assert jingle_apps.translatorFor(d).namespace == ns.NS_JINGLE_LINK
    # A registered application answers for its own descriptions only.
    from bytestreamd.application import RangeAnswer
    seen = []

    class Desc:
        namespace = "urn:example:app"

    t = jingle_apps.Translator(
        "urn:example:app", "thing", lambda a: None, lambda p: None,
        answerDescription=lambda offered, asked: seen.append(asked) or "narrowed",
        rangeFromAnswer=lambda p: RangeAnswer(5))
    jingle_apps.register(t)
    try:
        assert jingle_apps.answerDescription(Desc(), RangeAnswer(3)) == "narrowed"
        assert seen == [RangeAnswer(3)]
        assert jingle_apps.rangeFromAnswer(Desc()) == RangeAnswer(5)
        assert "urn:example:app" in jingle_apps.NAMESPACES
    finally:
        jingle_apps.TRANSLATORS.remove(t)
        jingle_apps.NAMESPACES.remove("urn:example:app")


def test_many_in_the_link_description():
    element = LinkDescription("web", True).toElement()
    assert element.getAttribute("connections") == "many"
    assert LinkDescription.fromElement(element) == LinkDescription("web", True)
    assert jingle_apps.fromDescription(LinkDescription("web", True)) == \
        LinkApplication("web", many=True)
    assert LinkApplication("web", many=True).details() == (("connections", "many"),)
    assert LinkApplication("web").details() == ()
    element["connections"] = "several"
    with pytest.raises(J.MalformedJingle):
        LinkDescription.fromElement(element)


class _ManyBackend(_Backend):
    def open(self, peer, owner, service=None, methods=None, blockSize=None, stanza=None,
             profile=None, headers=None, negotiation=None, connections=None):
        self.connections = connections
        return _Backend.open(self, peer, owner, service, methods, blockSize, stanza,
                             profile, headers, negotiation)


class OpenConnectionsTests(ProtocolTestCase):
    def setUp(self):
        self.backend = _ManyBackend()
        self.proto, self.transport = self.connect()

    def test_many_is_passed(self):
        self.command("OPEN bob@example.org/x service=web connections=MANY")
        self.assertEqual(self.backend.connections, "many")

    def test_one_is_the_default(self):
        self.backend.connections = "unset"
        self.command("OPEN bob@example.org/x connections=one")
        self.assertEqual(self.backend.connections, None)

    def test_other_values_are_512(self):
        out = self.command("OPEN bob@example.org/x connections=2")
        self.assertTrue(out.startswith(b"512 connections= must be one or many"), out)


def test_forward_local_endpoints():
    import socket
    from bytestreamd.ctl.client import CtlError
    from bytestreamd.ctl.forward import parseLocal
    assert parseLocal("8080") == (socket.AF_INET, ("127.0.0.1", 8080))
    assert parseLocal("tcp:0.0.0.0:80") == (socket.AF_INET, ("0.0.0.0", 80))
    assert parseLocal("[::1]:22") == (socket.AF_INET6, ("::1", 22))
    assert parseLocal("unix:/tmp/s") == (socket.AF_UNIX, "/tmp/s")
    assert parseLocal("./sock") == (socket.AF_UNIX, "./sock")
    for bad in ("x", "host:", "70000"):
        with pytest.raises(CtlError):
            parseLocal(bad)


def test_the_negotiator_and_its_offers_provide_their_interfaces():
    from zope.interface.verify import verifyObject
    from bytestreamd.interfaces import IIncomingOffer, INegotiator
    from bytestreamd.negotiation.jingle_session import JingleSession
    from bytestreamd.negotiation.jingle_streams import IncomingSession
    n = _negotiator()
    verifyObject(INegotiator, n)
    request = J.Jingle(J.SESSION_INITIATE, "s1", initiator=JID("a@x/r"), contents=(
        J.Content(J.INITIATOR, "link", description=LinkDescription("ssh"),
                  transport=IBBTransport("i1", 4096)),))
    session, _ = JingleSession.incoming(JID("b@x/r"), JID("a@x/r"), request)
    offer = IncomingSession(n, session, request)
    offer.application = LinkApplication("ssh")
    verifyObject(IIncomingOffer, offer)
    assert (offer.negotiation, offer.sid, offer.peer) == ("jingle", "s1", JID("a@x/r"))
