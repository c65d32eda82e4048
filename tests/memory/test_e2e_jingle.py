"""
End-to-end links negotiated over Jingle with XEP-0247 (docs/e2e.rst,
"Jingle (XEP-0247)"), two real daemons in memory: ``e2e=bytes`` over
Jingle IBB and SOCKS5, ``e2e=xmpp``, the transport order XEP-0247 asks
(IBB last), the signalled fingerprint bound to the TLS handshake in both
directions, and a Jingle peer without ``urn:xmpp:jingle:apps:xmlstream:0``.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.memory.test_world import payload

NS_JINGLE = "urn:xmpp:jingle:1"
NS_XMLSTREAM = "urn:xmpp:jingle:apps:xmlstream:0"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_BYTES = "urn:x-bytestreamd:e2e:bytes:0"
NS_IBB = "http://jabber.org/protocol/ibb"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
OTHER_FP = ":".join(["AB"] * 32)
PEER = "bob@example.test/daemon"


@pytest.fixture
def pair(world):
    alice = world.daemon("alice")
    bob = world.daemon("bob", allow="alice@example.test")
    return alice, bob, world.control(alice), world.control(bob, watch=True)


def final(ctl, linkId, timeout=60.0):
    """GOOD, ERR, CLOS, or the final BAD (a BAD before a fallback is progress)."""
    return ctl.waitEvent(lambda e: e.words[:2] == ["LINK", linkId] and len(e.words) > 2
                         and (e.words[2] in ("GOOD", "ERR", "CLOS")
                              or (e.words[2] == "BAD" and "final" in e.options)), timeout)


def openE2E(ctl, watch, options):
    opened = ctl.expect("OPEN %s %s" % (PEER, options))
    linkA, socketA = opened.get("link"), opened.get("socket")
    offer = watch.waitEvent(r"^650 OFFER ")
    linkB = offer.words[1]
    socketB = watch.expect("ACCEPT %s" % linkB).get("socket")
    return offer, linkA, linkB, socketA, socketB, final(ctl, linkA), final(watch, linkB)


def descriptions(world, action):
    """The XEP-0247 descriptions of every routed Jingle ``action``."""
    found = []
    for routed in world.router.routed("iq"):
        for jingle in routed.element.elements(NS_JINGLE, "jingle"):
            if jingle.getAttribute("action") != action:
                continue
            for content in jingle.elements(NS_JINGLE, "content"):
                found.extend(content.elements(NS_XMLSTREAM, "description"))
    return found


def rewriteFingerprint(action):
    """A server that swaps the fingerprint in a Jingle ``action``."""
    def rewrite(stanza, sender, to):
        for jingle in stanza.elements(NS_JINGLE, "jingle"):
            if jingle.getAttribute("action") != action:
                continue
            for content in jingle.elements(NS_JINGLE, "content"):
                for desc in content.elements(NS_XMLSTREAM, "description"):
                    for fp in desc.elements(NS_DTLS, "fingerprint"):
                        fp.children = [OTHER_FP]
        return None
    return rewrite


def withoutXmlStream(stanza, sender, to):
    """A Jingle peer that knows no XEP-0247: its disco#info lacks it."""
    if stanza.name == "iq" and stanza.getAttribute("type") == "result":
        for query in stanza.elements(NS_DISCO_INFO, "query"):
            for feature in list(query.elements(NS_DISCO_INFO, "feature")):
                if feature.getAttribute("var") == NS_XMLSTREAM:
                    query.children.remove(feature)
    return None


@pytest.mark.parametrize("method", ["ibb", "s5b"])
def test_e2e_bytes_over_jingle(world, pair, method):
    alice, bob, ctl, watch = pair
    fpAlice = ctl.expect("FINGERPRINT").get("fingerprint")
    fpBob = watch.expect("FINGERPRINT").get("fingerprint")
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(
        ctl, watch, "methods=%s e2e=bytes" % method)
    assert offer.options["negotiation"] == "jingle", offer
    assert offer.options["e2e"] == "bytes" and offer.options["fingerprint"] == fpAlice
    for good in (goodA, goodB):
        assert good.words[2] == "GOOD", (good, world.log[-30:])
        assert good.options["negotiation"] == "jingle" and good.options["method"] == method
        assert good.options["e2e"] == "tls" and good.options["e2e-mode"] == "bytes"
    assert goodA.options["fingerprint"] == fpBob and goodB.options["fingerprint"] == fpAlice
    # the wire: XEP-0247 in session-initiate (active) and session-accept (passive)
    (offered,) = descriptions(world, "session-initiate")
    (accepted,) = descriptions(world, "session-accept")
    fpOffer = next(offered.elements(NS_DTLS, "fingerprint"))
    fpAnswer = next(accepted.elements(NS_DTLS, "fingerprint"))
    assert (str(fpOffer).strip(), fpOffer["setup"]) == (fpAlice, "active")
    assert (str(fpAnswer).strip(), fpAnswer["setup"]) == (fpBob, "passive")
    assert list(offered.elements(NS_BYTES, "bytes")) and list(accepted.elements(NS_BYTES,
                                                                               "bytes"))
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    toBob, toAlice = payload(21, 400_000), payload(22, 300_000)
    clientA.write(toBob)
    clientB.write(toAlice)
    assert hashlib.sha256(clientB.waitReceived(len(toBob), timeout=120)).digest() == \
        hashlib.sha256(toBob).digest()
    assert clientA.waitReceived(len(toAlice), timeout=120) == toAlice
    if method == "ibb":
        seen = b"".join(base64.b64decode(str(d)) for s in world.router.routed("iq")
                        for d in s.element.elements(NS_IBB, "data"))
        assert seen and toBob[:64] not in seen and toAlice[-64:] not in seen
    clientA.writeEOF()
    endA, endB = final(ctl, linkA), final(watch, linkB)
    assert endA.words[2] == "CLOS" and endB.words[2] == "CLOS", (endA, endB)
    assert endA.options["confirmed"] == "yes"
    assert (endA.options["sent"], endA.options["received"]) == (str(len(toBob)),
                                                                str(len(toAlice)))


def test_ibb_is_the_lowest_preference_for_an_xml_stream(world):
    """[links] methods = ibb, s5b: a plain Jingle link starts with IBB, an
    e2e one with SOCKS5 (XEP-0247 section 4.2)."""
    alice = world.daemon("alice", methods="ibb, s5b")
    bob = world.daemon("bob", allow="alice@example.test", methods="ibb, s5b")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    plain = openE2E(ctl, watch, "")
    assert plain[5].words[2] == "GOOD" and plain[5].options["method"] == "ibb", plain[5]
    secured = openE2E(ctl, watch, "e2e=bytes")
    good = secured[5]
    assert good.words[2] == "GOOD" and good.options["negotiation"] == "jingle", good
    assert good.options["method"] == "s5b" and good.options["e2e"] == "tls", good


def test_e2e_xmpp_over_jingle(world, pair):
    alice, bob, ctl, watch = pair
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(
        ctl, watch, "methods=ibb e2e=xmpp")
    assert offer.options["negotiation"] == "jingle" and offer.options["e2e"] == "xmpp"
    assert goodA.words[2] == "GOOD" and goodA.options["e2e-mode"] == "xmpp", goodA
    assert goodB.words[2] == "GOOD" and goodB.options["e2e"] == "tls", goodB
    (offered,) = descriptions(world, "session-initiate")
    assert not list(offered.elements(NS_BYTES, "bytes"))  # xmpp: XEP-0247's own meaning
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    clientA.write(b"<message to='bob@example.test'><body>over jingle</body></message>")
    clientB.waitReceived(10, timeout=30)
    world.advance(1)
    assert bytes(clientB.received) == (b"<message xmlns='jabber:client' "
                                       b"to='bob@example.test'><body>over jingle</body>"
                                       b"</message>")
    clientB.write(b"<iq xmlns='jabber:client' type='result' id='q1'/>")
    world.advance(1)
    assert bytes(clientA.received) == b"<iq xmlns='jabber:client' type='result' id='q1'/>"
    seen = b"".join(base64.b64decode(str(d)) for s in world.router.routed("iq")
                    for d in s.element.elements(NS_IBB, "data"))
    assert b"over jingle" not in seen
    # the initiator's header (in clear, before STARTTLS): bare JIDs, as
    # XEP-0246 says, not XEP-0247's full ones (docs/e2e.rst, Addresses)
    header = seen[:seen.index(b">", seen.index(b"<stream:stream")) + 1]
    assert b"from='alice@example.test'" in header and b"to='bob@example.test'" in header, \
        header
    assert b"/daemon" not in header
    clientA.writeEOF()
    endA, endB = final(ctl, linkA), final(watch, linkB)
    assert endA.words[2] == "CLOS" and endB.words[2] == "CLOS", (endA, endB)


def test_fingerprint_rewritten_in_session_initiate_is_refused(world, pair):
    alice, bob, ctl, watch = pair
    world.router.addFilter(rewriteFingerprint("session-initiate"))
    offer, linkA, linkB, socketA, socketB, endA, endB = openE2E(
        ctl, watch, "methods=ibb e2e=bytes")
    assert offer.options["negotiation"] == "jingle"
    assert endB.words[2] == "BAD", endB
    reason = endB.options["reason"]
    assert "is not the one alice@example.test signalled" in reason, reason
    assert OTHER_FP in reason and ctl.expect("FINGERPRINT").get("fingerprint") in reason
    assert endA.words[2] == "BAD" and "e2e" in endA.options["reason"], endA
    assert not watch.command("TRUST alice@example.test").lines[:-1]  # nothing pinned


def test_fingerprint_rewritten_in_session_accept_is_refused(world, pair):
    alice, bob, ctl, watch = pair
    world.router.addFilter(rewriteFingerprint("session-accept"))
    fpBob = watch.expect("FINGERPRINT").get("fingerprint")
    offer, linkA, linkB, socketA, socketB, endA, endB = openE2E(
        ctl, watch, "methods=s5b e2e=bytes")
    assert endA.words[2] == "BAD", endA
    reason = endA.options["reason"]
    assert "is not the one bob@example.test signalled" in reason, reason
    assert OTHER_FP in reason and fpBob in reason
    assert endB.words[2] == "BAD", endB
    assert not ctl.command("TRUST bob@example.test").lines[:-1]


def test_required_with_a_jingle_peer_without_xmlstream_goes_by_si(world):
    """[links] e2e = required: a peer whose Jingle lacks XEP-0247 gets the
    link by SI (which carries the fingerprint), never a plain Jingle link."""
    alice = world.daemon("alice", config={"links": {"e2e": "required"}})
    bob = world.daemon("bob", allow="alice@example.test")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    world.router.addFilter(withoutXmlStream)
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(ctl, watch,
                                                                  "methods=ibb")
    assert offer.options["negotiation"] == "si" and offer.options["e2e"] == "bytes", offer
    assert goodA.words[2] == "GOOD" and goodA.options["e2e"] == "tls", goodA
    assert not descriptions(world, "session-initiate")


def test_required_with_a_jingle_only_path_without_xmlstream_is_bad(world):
    """Only Jingle enabled and the peer lacks XEP-0247: BAD with the reason,
    nothing offered, nothing sent in clear."""
    alice = world.daemon("alice", config={"links": {"e2e": "required",
                                                    "negotiation": "jingle"}})
    bob = world.daemon("bob", allow="alice@example.test")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    world.router.addFilter(withoutXmlStream)
    opened = ctl.expect("OPEN %s methods=ibb" % PEER)
    bad = final(ctl, opened.get("link"))
    assert bad.words[2] == "BAD", bad
    assert NS_XMLSTREAM in bad.options["reason"], bad
    assert not [e for e in watch.events if e.words[0] == "OFFER"]
    assert not world.router.routed("iq", "{%s}jingle" % NS_JINGLE)


def test_s5b_fails_then_ibb_with_the_same_fingerprints(world):
    """SOCKS5 cannot connect: transport-replace to IBB (XEP-0260's fallback,
    IBB last as XEP-0247 asks); the description and its fingerprints are
    the session's, so the TLS on IBB is bound to the same signalling."""
    def closedS5B(name, peer):
        return world.daemon(name, allow="%s@%s" % (peer, world.domain),
                            config={"links": {"peer_timeout": 6},
                                    "s5b": {"advertise": "127.0.0.1:9", "proxy": "none"}})
    alice, bob = closedS5B("alice", "bob"), closedS5B("bob", "alice")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    fpAlice = ctl.expect("FINGERPRINT").get("fingerprint")
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(
        ctl, watch, "methods=ibb,s5b e2e=bytes")
    events = [(e.words[2], e.options.get("method")) for e in ctl.linkEvents(linkA)]
    assert events[:4] == [("INIT", "s5b"), ("BAD", "s5b"), ("INIT", "ibb"), ("GOOD", "ibb")], \
        events
    assert goodA.options["e2e"] == "tls" and goodB.options["fingerprint"] == fpAlice, goodB
    actions = [j.getAttribute("action") for r in world.router.routed("iq")
               for j in r.element.elements(NS_JINGLE, "jingle")]
    assert "transport-replace" in actions, actions
    assert len(descriptions(world, "session-initiate")) == 1
    assert not descriptions(world, "transport-replace")
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    data = payload(23, 200_000)
    clientA.write(data)
    assert clientB.waitReceived(len(data), timeout=120) == data


def test_session_accept_claiming_the_tls_client_role_is_refused(world, pair):
    """XEP-0246 makes the stream's initiator the TLS client: a session-accept
    whose fingerprint says setup='active' ends the session
    failed-application, before any stream byte."""
    alice, bob, ctl, watch = pair

    def active(stanza, sender, to):
        for jingle in stanza.elements(NS_JINGLE, "jingle"):
            if jingle.getAttribute("action") == "session-accept":
                for content in jingle.elements(NS_JINGLE, "content"):
                    for desc in content.elements(NS_XMLSTREAM, "description"):
                        for fp in desc.elements(NS_DTLS, "fingerprint"):
                            fp["setup"] = "active"
        return None

    world.router.addFilter(active)
    offer, linkA, linkB, socketA, socketB, endA, endB = openE2E(
        ctl, watch, "methods=ibb e2e=bytes")
    assert endA.words[2] == "BAD" and "responder" in endA.options["reason"], endA
    assert endB.words[2] in ("BAD", "ERR"), endB
    terminated = [j for r in world.router.routed("iq")
                  for j in r.element.elements(NS_JINGLE, "jingle")
                  if j.getAttribute("action") == "session-terminate"]
    assert terminated and any(c.name == "failed-application" for t in terminated
                              for r in t.elements(NS_JINGLE, "reason") for c in r.elements())
    assert not [d for r in world.router.routed("iq") for d in r.element.elements(NS_IBB, "data")]
