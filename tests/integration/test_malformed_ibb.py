"""
A hostile or broken peer (a raw client logged in as mallory) sends IBB
stanzas nobody negotiated, and malformed ones, to bob's daemon while a real
alice->bob link is moving data. Every stanza gets the right XMPP error, and
the real link finishes byte-exact.

Expected conditions:
- ``<open/>`` that no negotiation announced: ``not-acceptable``
  (INTERFACE.md "Interoperability rules"), whoever sends it and whatever its
  block-size. A block-size of 70000 on a *negotiated* sid would be
  ``resource-constraint`` (XEP-0047 2.1); unnegotiated, the negotiation
  check comes first, so it is ``not-acceptable`` too.
- ``<data/>`` or ``<close/>`` for a sid the daemon does not know:
  ``item-not-found`` (XEP-0047 2.2, 2.3).
- Structurally malformed IBB (no sid, non-numeric block-size or seq):
  ``bad-request``. Where the daemon could reasonably check the sid before
  parsing the rest, ``item-not-found`` is accepted too (noted per case).
- An IQ with a payload nobody handles: ``service-unavailable`` (RFC 6120
  8.4); ``feature-not-implemented`` accepted.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from .harness import RawXMPPClient, attr, errorCondition, statusSaysConnected
from .harness.flows import MiB, acceptNextOffer, openLink
from .harness.transfer import SocketPump

IBB = "http://jabber.org/protocol/ibb"

CASES = [
    ("open never negotiated",
     "<open xmlns='%s' sid='never-negotiated' block-size='4096' stanza='iq'/>" % IBB,
     ("not-acceptable",)),
    ("open never negotiated, block-size 70000",
     "<open xmlns='%s' sid='huge-block' block-size='70000'/>" % IBB,
     ("not-acceptable",)),
    ("open never negotiated, message stanza",
     "<open xmlns='%s' sid='by-message' block-size='4096' stanza='message'/>" % IBB,
     ("not-acceptable",)),
    ("data for unknown sid",
     "<data xmlns='%s' sid='unknown-sid' seq='0'>AAAA</data>" % IBB,
     ("item-not-found",)),
    ("close for unknown sid",
     "<close xmlns='%s' sid='unknown-sid'/>" % IBB,
     ("item-not-found",)),
    ("open without sid",
     "<open xmlns='%s' block-size='4096'/>" % IBB,
     ("bad-request",)),
    ("open with non-numeric block-size",
     "<open xmlns='%s' sid='nan-block' block-size='large'/>" % IBB,
     ("bad-request", "not-acceptable")),  # negotiation check may come first
    ("data without sid",
     "<data xmlns='%s' seq='0'>AAAA</data>" % IBB,
     ("bad-request", "item-not-found")),  # "no such session" is defensible
    ("data with non-numeric seq",
     "<data xmlns='%s' sid='unknown-sid' seq='zero'>AAAA</data>" % IBB,
     ("bad-request", "item-not-found")),  # sid lookup may come first
    ("data with a seq past 65535",
     "<data xmlns='%s' sid='unknown-sid' seq='70000'>AAAA</data>" % IBB,
     ("bad-request", "item-not-found")),
    ("unknown payload",
     "<query xmlns='urn:example:nothing-here'/>",
     ("service-unavailable", "feature-not-implemented")),
]


@pytest.mark.timeout(240)
def test_malformed_ibb_while_a_link_flows(daemons):
    alice = daemons("alice")
    bob = daemons("bob", accept="alice@localhost")
    bobWatch = bob.control(watch=True)
    ctl = alice.control()

    # a real link, held open mid-stream while mallory misbehaves: the first
    # half is sent before, the second half after the malformed stanzas
    payload = os.urandom(8 * MiB)
    half = len(payload) // 2
    linkId, path = openLink(ctl, bob.jid, "methods=ibb")
    sender = SocketPump(path)
    _, bobLink, bobPath = acceptNextOffer(bobWatch, alice.bareJID)
    receiver = SocketPump(bobPath)
    good = ctl.waitLinkState(linkId, ("GOOD", "BAD", "ERR", "CLOS"), 30)
    assert good.words[2] == "GOOD", ctl.linkEvents(linkId)
    sender.send(payload[:half])
    assert receiver.waitReceived(half // 2, 60), "the link did not flow"

    failures = []
    with RawXMPPClient.connect(bob.prosody, "mallory", "raw") as mallory:
        for title, stanza, expected in CASES:
            reply = mallory.request("set", bob.jid, stanza, timeout=15)
            condition = errorCondition(reply)
            if attr(reply, "type") != "error" or condition not in expected:
                failures.append("%s: expected %s, got %s" % (title, "/".join(expected), reply))
            elif attr(reply, "from") != bob.jid:
                failures.append("%s: error not from %s: %s" % (title, bob.jid, reply))

        # a known sid used by someone else than the peer is refused too
        sids = [r["sid"] for r in bob.ctl.command("LINKS").rows() if r.get("sid")]
        for sid in sids:
            reply = mallory.request("set", bob.jid, "<data xmlns='%s' sid='%s' seq='0'>AAAA"
                                    "</data>" % (IBB, sid), timeout=15)
            if errorCondition(reply) not in ("not-acceptable", "item-not-found"):
                failures.append("data for the live sid %s from mallory: %s" % (sid, reply))

        # message-carried data for an unknown sid: no reply required, no harm allowed
        mallory.send("<message to='%s' id='m-ibb'><data xmlns='%s' sid='unknown-sid' "
                     "seq='0'>AAAA</data></message>" % (bob.jid, IBB))
        mallory.poll(0.5)

    assert not failures, "\n".join(failures)
    assert not any(e.words[2:3] in (["ERR"], ["BAD"], ["CLOS"])
                   for e in ctl.linkEvents(linkId)), ctl.linkEvents(linkId)

    sender.send(payload[half:])
    sender.shutdownWrite()
    assert receiver.waitEOF(120), "no EOF at bob after alice's EOF (%d of %d bytes)" % (
        len(receiver.received), len(payload))
    assert hashlib.sha256(receiver.received).hexdigest() == \
        hashlib.sha256(payload).hexdigest(), "%d of %d bytes, content differs" % (
        len(receiver.received), len(payload))
    end = ctl.waitLinkState(linkId, ("CLOS", "ERR", "BAD"), 30)
    assert end.words[2] == "CLOS", ctl.linkEvents(linkId)
    bobEnd = bobWatch.waitLinkState(bobLink, ("CLOS", "ERR", "BAD"), 30)
    assert bobEnd.words[2] == "CLOS", bobWatch.linkEvents(bobLink)
    sender.close()
    receiver.close()
    status = bob.ctl.command("STATUS")
    assert status.code == 250 and statusSaysConnected(status), status
