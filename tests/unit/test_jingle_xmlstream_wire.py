"""
XEP-0247 ``<description xmlns='urn:xmpp:jingle:apps:xmlstream:0'/>``: the
codec against the XEP's examples, the e2e children bytestreamd adds
(XEP-0320 fingerprint, the bytes mode, the service), and the Jingle
translator (negotiation/jingle_apps.py) that turns it into a link's e2e
request and back.
"""

from __future__ import annotations

import pytest

from bytestreamd import ns
from bytestreamd.application import (E2ERequest, FileApplication, LinkAnswer,
                                     LinkApplication)
from bytestreamd.e2e import NS_BYTES, NS_DTLS
from bytestreamd.negotiation import jingle_apps
from bytestreamd.negotiation import jingle_file_session  # noqa: F401  (registers XEP-0234)
from bytestreamd.wire.jingle import Jingle, MalformedJingle
from bytestreamd.wire.jingle_link import LinkDescription
from bytestreamd.wire.jingle_xmlstream import XmlStreamDescription
from tests.helpers import parseXml
from tests.unit.jingle_examples import canonical, examples, reparse

EXAMPLES = {e.number: e for e in examples("0247")}
FP_A = ":".join(["0A"] * 32)
FP_B = ":".join(["B1"] * 32)
NS = ns.NS_JINGLE_XMLSTREAM


def description(inner="", attrs=""):
    return parseXml("<description xmlns='%s' %s>%s</description>" % (NS, attrs, inner))


def fingerprint(value=FP_A, setup="active", hashName="sha-256"):
    return ("<fingerprint xmlns='%s' hash='%s' setup='%s'>%s</fingerprint>"
            % (NS_DTLS, hashName, setup, value))


# --- the XEP's examples ------------------------------------------------------------


def test_the_xeps_session_initiate_description_decodes():
    """Example 1: the empty description of XEP-0247's session-initiate (an
    XML stream with no e2e field) -- read as such."""
    example = EXAMPLES[1]
    assert example.caption == "Initiator sends session-initiate"
    stanza = example.stanza()
    found = [d for j in stanza.elements() for c in j.elements() for d in c.elements()
             if d.name == "description"]
    assert len(found) == 1 and found[0].uri == NS
    decoded = XmlStreamDescription.fromElement(found[0])
    assert decoded == XmlStreamDescription(None, None)
    assert canonical(decoded.toElement()) == canonical(found[0])


def test_the_xeps_offer_through_the_jingle_codec():
    """Example 1 with today's Jingle and XEP-0261 namespaces (the XEP's
    examples still say urn:xmpp:jingle:0 and ibb:0): the registry decodes
    its description to our value."""
    xml = (EXAMPLES[1].xml.replace("urn:xmpp:jingle:0", ns.NS_JINGLE)
           .replace("urn:xmpp:jingle:transports:ibb:0", ns.NS_JINGLE_IBB))
    jingle = next(parseXml(xml.strip()).elements(ns.NS_JINGLE, "jingle"))
    request = Jingle.fromElement(jingle)
    (content,) = request.contents
    assert content.name == "xmlstream"
    assert isinstance(content.description, XmlStreamDescription)
    assert content.description.e2e is None


def test_a_plain_xml_stream_offer_is_refused_with_words():
    """bytestreamd makes no XML stream without TLS bound to the signalling:
    the translator refuses the XEP's plain offer (failed-application)."""
    with pytest.raises(ValueError, match="without a <fingerprint/>"):
        jingle_apps.fromDescription(XmlStreamDescription())


# --- bytestreamd's children -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["bytes", "xmpp"])
@pytest.mark.parametrize("service", [None, "backup"])
def test_round_trip_with_fingerprint_mode_and_service(mode, service):
    app = LinkApplication(service, e2e=E2ERequest(mode, FP_A))
    desc, name = jingle_apps.describe(app)
    assert name == "xmlstream" and isinstance(desc, XmlStreamDescription)
    element = reparse(desc.toElement())
    assert (element.uri, element.name) == (NS, "description")
    fp = next(element.elements(NS_DTLS, "fingerprint"))
    assert fp["setup"] == "active" and fp["hash"] == "sha-256" and str(fp) == FP_A
    assert len(list(element.elements(NS_BYTES, "bytes"))) == (mode == "bytes")
    links = list(element.elements(ns.NS_JINGLE_LINK, "link"))
    assert [l.getAttribute("service") for l in links] == ([service] if service else [])
    decoded = XmlStreamDescription.fromElement(element)
    assert decoded == desc
    assert jingle_apps.fromDescription(decoded) == app


def test_the_documented_offer_decodes():
    element = description(fingerprint() + "<bytes xmlns='%s'/>" % NS_BYTES
                          + "<link xmlns='%s' service='backup'/>" % ns.NS_JINGLE_LINK
                          + "<unknown xmlns='urn:example:later'/>")
    assert jingle_apps.fromDescription(XmlStreamDescription.fromElement(element)) == \
        LinkApplication("backup", e2e=E2ERequest("bytes", FP_A))


@pytest.mark.parametrize("inner, why", [
    ("<bytes xmlns='%s'/>" % NS_BYTES, "without a <fingerprint/>"),
    (fingerprint() + fingerprint(FP_B), "2 fingerprint elements"),
    (fingerprint(hashName="sha-1"), "not supported"),
    (fingerprint("zz"), "fingerprint"),
    (fingerprint(setup="holdconn"), "setup"),
    ("<link xmlns='%s' service='a'/><link xmlns='%s' service='b'/>"
     % (ns.NS_JINGLE_LINK, ns.NS_JINGLE_LINK), "2 <link/>"),
    ("<link xmlns='%s' service='a b'/>" % ns.NS_JINGLE_LINK, "xmlstream description"),
])
def test_malformed(inner, why):
    with pytest.raises(MalformedJingle, match=why):
        XmlStreamDescription.fromElement(description(inner))


def test_not_our_element():
    with pytest.raises(MalformedJingle):
        XmlStreamDescription.fromElement(parseXml(
            "<description xmlns='%s'/>" % ns.NS_JINGLE_LINK))


# --- the translator: roles, answer, what goes by XEP-0247 -------------------------------


def test_an_offer_whose_initiator_would_be_the_tls_server_is_refused():
    desc = XmlStreamDescription.fromElement(description(fingerprint(setup="passive")))
    with pytest.raises(ValueError, match="initiator"):
        jingle_apps.fromDescription(desc)


def test_actpass_offer_is_accepted():
    desc = XmlStreamDescription.fromElement(description(fingerprint(setup="actpass")))
    assert jingle_apps.fromDescription(desc).e2e == E2ERequest("xmpp", FP_A)


@pytest.mark.parametrize("mode", ["bytes", "xmpp"])
def test_session_accept_carries_the_responders_fingerprint(mode):
    offered, _ = jingle_apps.describe(LinkApplication("svc", e2e=E2ERequest(mode, FP_A)))
    answer = jingle_apps.answerDescription(offered, LinkAnswer(E2ERequest(mode, FP_B)))
    element = reparse(answer.toElement())
    fp = next(element.elements(NS_DTLS, "fingerprint"))
    assert fp["setup"] == "passive" and str(fp) == FP_B
    assert not list(element.elements(ns.NS_JINGLE_LINK, "link"))  # offer only
    assert jingle_apps.rangeFromAnswer(XmlStreamDescription.fromElement(element)) == \
        LinkAnswer(E2ERequest(mode, FP_B))


def test_an_answer_without_e2e_reads_as_no_e2e_stream():
    offered, _ = jingle_apps.describe(LinkApplication(e2e=E2ERequest("bytes", FP_A)))
    empty = jingle_apps.answerDescription(offered, None)
    assert empty == XmlStreamDescription()
    assert jingle_apps.rangeFromAnswer(empty) == LinkAnswer(None)


def test_an_answer_whose_responder_would_be_the_tls_client_is_refused():
    desc = XmlStreamDescription.fromElement(description(fingerprint(FP_B, "active")))
    with pytest.raises(ValueError, match="responder"):
        jingle_apps.rangeFromAnswer(desc)


def test_which_applications_go_by_xep_0247():
    # a plain link: bytestreamd's own description
    assert isinstance(jingle_apps.toDescription(LinkApplication("s")), LinkDescription)
    # an e2e link: XEP-0247
    assert isinstance(jingle_apps.toDescription(
        LinkApplication("s", e2e=E2ERequest("xmpp", FP_A))), XmlStreamDescription)
    # a file with e2e=: no Jingle description drops its e2e; it goes by SI
    assert jingle_apps.toDescription(
        FileApplication("f", 1, e2e=E2ERequest("bytes", FP_A))) is None
    assert jingle_apps.toDescription(FileApplication("f", 1)) is not None
    assert ns.NS_JINGLE_XMLSTREAM in jingle_apps.NAMESPACES
