"""
The e2e field of bytestreamd's SI link profile (wire.si.LinkProfile,
negotiation.si_profiles) and the [links] e2e / [e2e] configuration.
"""

from __future__ import annotations

import pytest

from bytestreamd import ns
from bytestreamd.application import E2ERequest, LinkAnswer, LinkApplication, RangeAnswer
from bytestreamd.config import loadConfig
from bytestreamd.errors import ConfigError, SyntaxErrorInArgument
from bytestreamd.negotiation import si_profiles
from bytestreamd.wire import si as wire
from tests.helpers import parseXml

FP = ":".join(["0A"] * 32)
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_BYTES = "urn:x-bytestreamd:e2e:bytes:0"


def test_offer_carries_fingerprint_and_mode_and_round_trips():
    app = LinkApplication("ssh", E2ERequest("bytes", FP))
    profile, headers = si_profiles.toHeaders(app)
    element = wire.payloadFromHeaders(profile, headers)
    xml = element.toXml()
    assert "setup='active'" in xml and NS_BYTES in xml and FP in xml
    back = si_profiles.fromHeaders(profile, wire.headersFromPayload(profile,
                                                                    parseXml(xml)))
    assert back == app
    assert back.offerDetails() == (("e2e", "bytes"), ("fingerprint", FP))


def test_offer_without_bytes_is_xmpp_and_plain_offer_has_no_e2e():
    link = parseXml("<link xmlns='%s' service='x'><fingerprint xmlns='%s' hash='sha-256' "
                    "setup='actpass'>%s</fingerprint></link>" % (ns.NS_LINK_PROFILE, NS_DTLS,
                                                                 FP.lower()))
    app = si_profiles.fromHeaders(ns.NS_LINK_PROFILE,
                                  wire.headersFromPayload(ns.NS_LINK_PROFILE, link))
    assert app.e2e == E2ERequest("xmpp", FP)
    plain = parseXml("<link xmlns='%s' service='x'/>" % ns.NS_LINK_PROFILE)
    assert si_profiles.fromHeaders(
        ns.NS_LINK_PROFILE, wire.headersFromPayload(ns.NS_LINK_PROFILE, plain)).e2e is None


@pytest.mark.parametrize("inner", [
    "<bytes xmlns='%s'/>" % NS_BYTES,  # bytes without a fingerprint
    "<fingerprint xmlns='%s' hash='sha-1' setup='active'>%s</fingerprint>" % (NS_DTLS, FP),
    "<fingerprint xmlns='%s' hash='sha-256' setup='passive'>%s</fingerprint>" % (NS_DTLS, FP),
    "<fingerprint xmlns='%s' hash='sha-256' setup='active'>0A:0B</fingerprint>" % NS_DTLS,
])
def test_malformed_offers_are_refused(inner):
    link = parseXml("<link xmlns='%s'>%s</link>" % (ns.NS_LINK_PROFILE, inner))
    with pytest.raises(wire.MalformedSI):
        wire.headersFromPayload(ns.NS_LINK_PROFILE, link)


def test_answer_is_passive_and_read_back():
    payload = si_profiles.answerPayload(LinkAnswer(E2ERequest("bytes", FP)))
    assert "setup='passive'" in payload.toXml()
    asked = wire.answerHeaders(ns.NS_LINK_PROFILE, parseXml(payload.toXml()))
    assert si_profiles.answerFromHeaders(asked) == LinkAnswer(E2ERequest("bytes", FP))
    # an answer that says active contradicts XEP-0246's roles
    active = parseXml(payload.toXml().replace("passive", "active"))
    with pytest.raises(wire.MalformedSI):
        wire.answerHeaders(ns.NS_LINK_PROFILE, active)
    # a plain answer, and a file's range, are what they were
    assert si_profiles.answerPayload(LinkAnswer(None)) is None
    assert si_profiles.answerFromHeaders({}) is None
    assert si_profiles.answerFromHeaders({"offset": "5"}) == RangeAnswer(5)


def test_e2e_request_mode_checked():
    with pytest.raises(SyntaxErrorInArgument):
        E2ERequest("tls", FP)


BASE = {"xmpp.jid": "a@example.org/x", "xmpp.password": "p", "daemon.runtime_dir": "/tmp/r"}


def test_config_e2e_defaults_and_values(tmp_path):
    default = loadConfig(None, BASE)
    assert (default.links_e2e, default.e2e_trust, default.e2e_state_dir) == ("off", "tofu", "")
    c = loadConfig(None, dict(BASE, **{"links.e2e": "required", "e2e.trust": "pinned",
                                       "e2e.state_dir": str(tmp_path / "s"),
                                       "e2e.known_peers": str(tmp_path / "kp")}))
    assert (c.links_e2e, c.e2e_trust) == ("required", "pinned")
    assert c.e2e_state_dir == str(tmp_path / "s") and c.e2e_known_peers == str(tmp_path / "kp")


@pytest.mark.parametrize("key, value, words", [
    ("links.e2e", "always", "links"),
    ("e2e.trust", "anyone", "trust"),
    ("e2e.trust", "ca", "ca_certs"),
    ("e2e.ca_certs", "/nonexistent/ca.pem", "cannot read"),
])
def test_config_e2e_errors(key, value, words):
    with pytest.raises(ConfigError) as e:
        loadConfig(None, dict(BASE, **{key: value}))
    assert words in str(e.value)


def test_file_offer_and_answer_carry_e2e():
    from bytestreamd.application import FileApplication
    app = FileApplication("a.bin", 10, range=True, e2e=E2ERequest("bytes", FP))
    profile, headers = si_profiles.toHeaders(app)
    element = wire.payloadFromHeaders(profile, headers)
    assert "setup='active'" in element.toXml()
    back = si_profiles.fromHeaders(profile, wire.headersFromPayload(
        profile, parseXml(element.toXml())))
    assert back == app
    # the receiver's answer: e2e alone, and e2e with a range
    for answer in (LinkAnswer(E2ERequest("bytes", FP)),
                   RangeAnswer(4, None, E2ERequest("bytes", FP))):
        payload = si_profiles.answerPayload(answer, ns.NS_SI_FILE_TRANSFER)
        assert payload.name == "file" and "setup='passive'" in payload.toXml()
        asked = wire.answerHeaders(ns.NS_SI_FILE_TRANSFER, parseXml(payload.toXml()))
        assert si_profiles.answerFromHeaders(asked) == answer
