"""
Service Discovery as peers see it, PROBE and STATUS as users see them.
"""

from __future__ import annotations

import re

import pytest

from .harness.rawxmpp import RawXMPPClient, errorCondition

FEATURES = [
    "http://jabber.org/protocol/si",
    "urn:x-bytestreamd:si:link:0",
    "http://jabber.org/protocol/feature-neg",
    "http://telepathy.freedesktop.org/xmpp/si-multiple",
    "http://jabber.org/protocol/ibb",
    "http://jabber.org/protocol/bytestreams",
    "http://jabber.org/protocol/disco#info",
]


@pytest.mark.timeout(120)
def test_disco_info_lists_what_the_daemon_supports(prosody, daemons):
    bob = daemons("bob")
    raw = RawXMPPClient.connect(prosody, "mallory", resource="disco")
    try:
        reply = raw.request("get", bob.jid,
                            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
                            timeout=10)
        assert "type='result'" in reply or 'type="result"' in reply, reply
        features = set(re.findall(r"var=['\"]([^'\"]+)['\"]", reply))
        for feature in FEATURES:
            assert feature in features, (feature, sorted(features))
        assert re.search(r"<identity[^>]*category=['\"]client['\"]", reply), reply

        # An iq nobody handles is answered, not ignored.
        reply = raw.request("get", bob.jid, "<query xmlns='urn:example:nothing'/>",
                            timeout=10)
        assert errorCondition(reply) == "service-unavailable", reply
    finally:
        raw.close()


@pytest.mark.timeout(120)
def test_probe_and_status(daemons):
    alice = daemons("alice")
    bob = daemons("bob")
    ctl = alice.control()
    reply = ctl.command("PROBE %s" % bob.jid)
    assert reply.code == 250, reply
    values = {}
    for row in reply.rows():
        values.update(row)
    assert values.get("si") == "yes", reply
    assert values.get("si-multiple") == "yes", reply
    assert set(values.get("methods", "").split(",")) == {"s5b", "ibb"}, reply
    assert "link" in values.get("profiles", ""), reply

    reply = ctl.command("PROBE bob@localhost/nobody-here")
    assert reply.code == 554, reply

    reply = ctl.command("PROBE not a jid@@")
    assert reply.code == 512, reply

    status = {}
    for row in ctl.command("STATUS").rows():
        status.update(row)
    assert status.get("jid") == alice.jid, status
    assert status.get("server") == "connected", status
