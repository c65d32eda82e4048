"""Tests for bytestreamd.e2e.wire against XEP-0320's examples."""

from __future__ import annotations

import pytest
from twisted.words.xish import domish

from bytestreamd.e2e import NS_BYTES, NS_DTLS, NS_XMLSTREAM, wire
from bytestreamd.e2e.wire import E2EParams, Fingerprint, Malformed, UnsupportedHash
from tests.helpers import parseXml

FP = ("02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:"
      "3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2")
FP2 = ("BD:E8:2C:D3:BD:B6:98:50:45:7D:5B:36:89:53:31:15:"
       "52:25:88:82:06:95:88:A3:3D:A5:43:8D:5C:21:21:66")

#: XEP-0320 section 2, with the whitespace its own transport-info shows.
EXAMPLE = """<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>
02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2
</fingerprint>"""

TRANSPORT_INFO = """<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'
    pwd='YH75Fviy6338Vbrhrlp8Yh' ufrag='9uB6'>
  <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='active'>
	        BD:E8:2C:D3:BD:B6:98:50:45:7D:5B:36:89:53:31:15:52:25:88:82:06:95:88:A3:3D:A5:43:8D:5C:21:21:66
	      </fingerprint>
  <candidate component='1' foundation='1' generation='0' id='or2ii2syr1'
      ip='192.0.2.1' network='0' port='3478' priority='2130706431'
      protocol='udp' type='host'/>
</transport>"""


def test_parse_xep_example():
    fp = Fingerprint.fromElement(parseXml(EXAMPLE))
    assert fp == Fingerprint(FP, setup="actpass", hash="sha-256")


def test_find_in_xep_transport_info():
    assert wire.find(parseXml(TRANSPORT_INFO)) == Fingerprint(FP2, "active")


def test_to_element_round_trip_and_shape():
    fp = Fingerprint(FP.lower().replace(":", ""), setup="passive")
    assert fp.value == FP
    element = fp.toElement()
    assert (element.uri, element.name) == (NS_DTLS, "fingerprint")
    assert element["hash"] == "sha-256" and element["setup"] == "passive"
    assert str(element) == FP
    assert Fingerprint.fromElement(parseXml(element.toXml())) == fp


def test_attach_and_find_in_xep0247_description():
    description = domish.Element((NS_XMLSTREAM, "description"))
    assert wire.find(description) is None
    wire.attach(description, Fingerprint(FP))
    again = parseXml(description.toXml())
    assert wire.find(again) == Fingerprint(FP, "active")


def test_two_fingerprints_refused():
    parent = domish.Element((NS_XMLSTREAM, "description"))
    wire.attach(parent, Fingerprint(FP))
    wire.attach(parent, Fingerprint(FP2))
    with pytest.raises(Malformed) as e:
        wire.find(parent)
    assert "2 fingerprint" in str(e.value)


@pytest.mark.parametrize("xml, words", [
    ("<fingerprint xmlns='%s' setup='active'>%s</fingerprint>" % (NS_DTLS, FP), "'hash'"),
    ("<fingerprint xmlns='%s' hash='sha-256'>%s</fingerprint>" % (NS_DTLS, FP), "'setup'"),
    ("<fingerprint xmlns='%s' hash='sha-256' setup='holdconn'>%s</fingerprint>"
     % (NS_DTLS, FP), "holdconn"),
    ("<fingerprint xmlns='%s' hash='sha-256' setup='active'>%s</fingerprint>"
     % (NS_DTLS, FP[:-3]), "64 hex digits"),
    ("<fingerprint xmlns='%s' hash='sha-256' setup='active'/>" % NS_DTLS, "64 hex digits"),
    ("<fingerprint xmlns='%s' hash='sha-256' setup='active'>%s<x/></fingerprint>"
     % (NS_DTLS, FP), "child"),
    ("<fingerprint xmlns='urn:other' hash='sha-256' setup='active'>%s</fingerprint>"
     % FP, "expected"),
])
def test_malformed(xml, words):
    with pytest.raises(Malformed) as e:
        Fingerprint.fromElement(parseXml(xml))
    assert words in str(e.value)
    assert e.value.condition == "bad-request"


def test_other_hash_is_unsupported_not_ignored():
    xml = ("<fingerprint xmlns='%s' hash='sha-1' setup='active'>"
           "AB:CD:EF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00</fingerprint>" % NS_DTLS)
    with pytest.raises(UnsupportedHash) as e:
        Fingerprint.fromElement(parseXml(xml))
    assert "sha-1" in str(e.value) and e.value.condition == "feature-not-implemented"
    # upper-case hash names are the same name (RFC 4572 tokens are case-insensitive)
    upper = ("<fingerprint xmlns='%s' hash='SHA-256' setup='active'>%s</fingerprint>"
             % (NS_DTLS, FP))
    assert Fingerprint.fromElement(parseXml(upper)).hash == "sha-256"


def test_setup_roles():
    assert wire.answerSetup("active") == "passive"
    assert wire.answerSetup("actpass") == "passive"
    wire.checkSetup("active", "passive")
    with pytest.raises(Malformed):
        wire.answerSetup("passive")
    with pytest.raises(Malformed) as e:
        wire.checkSetup("active", "active")
    assert "TLS server" in str(e.value)


LINK = "urn:x-bytestreamd:si:link:0"


@pytest.mark.parametrize("mode", ["xmpp", "bytes"])
def test_e2e_params_in_si_link(mode):
    link = domish.Element((LINK, "link"))
    link["service"] = "ssh"
    E2EParams(Fingerprint(FP), mode).addTo(link)
    again = parseXml(link.toXml())
    assert E2EParams.fromParent(again) == E2EParams(Fingerprint(FP, "active"), mode)
    assert (len(list(again.elements(NS_BYTES, "bytes"))) == 1) == (mode == "bytes")


def test_e2e_params_absent_or_malformed():
    assert E2EParams.fromParent(parseXml("<link xmlns='%s' service='x'/>" % LINK)) is None
    # a plain XEP-0247 description: no fingerprint, so no e2e parameters here
    assert E2EParams.fromParent(parseXml("<description xmlns='%s'/>" % NS_XMLSTREAM)) is None
    with pytest.raises(Malformed) as e:
        E2EParams.fromParent(parseXml("<link xmlns='%s'><bytes xmlns='%s'/></link>"
                                      % (LINK, NS_BYTES)))
    assert "without a <fingerprint/>" in str(e.value)
    double = domish.Element((NS_XMLSTREAM, "description"))
    E2EParams(Fingerprint(FP), "bytes").addTo(double)
    double.addElement((NS_BYTES, "bytes"))
    with pytest.raises(Malformed):
        E2EParams.fromParent(double)
    with pytest.raises(Malformed):
        E2EParams(Fingerprint(FP), "files")
