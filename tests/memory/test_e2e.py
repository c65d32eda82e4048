"""
End-to-end links (docs/e2e.rst) between two real daemons in memory: the
bytes of an ``e2e=bytes`` link travel inside TLS over IBB and SOCKS5,
GOOD names the peer's fingerprint, and every refusal ends the link BAD
with a reason before a byte of it crossed in clear.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.memory.test_world import payload

MiB = 1024 * 1024


@pytest.fixture
def pair(world):
    alice = world.daemon("alice")
    bob = world.daemon("bob", allow="alice@example.test")
    return alice, bob, world.control(alice), world.control(bob, watch=True)


def openE2E(world, pair, method, options="e2e=bytes", accept=True):
    alice, bob, ctl, watch = pair
    opened = ctl.expect("OPEN bob@example.test/daemon methods=%s %s" % (method, options))
    linkA, socketA = opened.get("link"), opened.get("socket")
    offer = watch.waitEvent(r"^650 OFFER ")
    linkB = offer.words[1]
    accepted = watch.expect("ACCEPT %s" % linkB)
    goodA = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    goodB = watch.waitLinkState(linkB, ("GOOD", "BAD", "ERR"))
    return offer, linkA, linkB, socketA, accepted.get("socket"), goodA, goodB


@pytest.mark.parametrize("method", ["ibb", "s5b"])
def test_e2e_bytes_link_both_ways(world, pair, method):
    alice, bob, ctl, watch = pair
    assert ctl.expect("PROBE bob@example.test/daemon").get("e2e") == "yes"
    fpAlice = ctl.expect("FINGERPRINT").get("fingerprint")
    fpBob = watch.expect("FINGERPRINT").get("fingerprint")
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(world, pair, method)
    assert offer.options["e2e"] == "bytes"
    assert offer.options["fingerprint"] == fpAlice
    assert goodA.words[2] == "GOOD", goodA
    assert goodB.words[2] == "GOOD", goodB
    assert goodA.options["e2e"] == "tls" and goodA.options["fingerprint"] == fpBob
    assert goodB.options["e2e"] == "tls" and goodB.options["fingerprint"] == fpAlice
    assert goodA.options["trust"] == "first use, now pinned"
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    toBob, toAlice = payload(1), payload(2)
    clientA.write(toBob)
    clientB.write(toAlice)
    assert hashlib.sha256(clientB.waitReceived(MiB, timeout=120)).digest() == \
        hashlib.sha256(toBob).digest()
    assert clientA.waitReceived(MiB, timeout=120) == toAlice
    # the servers carried ciphertext: no 64-byte run of the payload crossed
    if method == "ibb":
        import base64
        seen = b"".join(base64.b64decode(str(d)) for s in world.router.routed("iq")
                        for d in s.element.elements("http://jabber.org/protocol/ibb", "data"))
        assert seen and toBob[:64] not in seen and toBob[-64:] not in seen
    # TLS has no half-close: alice's EOF ends the link on both sides, each
    # byte confirmed by the end channel (close_notify alone is not trusted)
    clientA.writeEOF()
    endA = ctl.waitLinkState(linkA, ("CLOS", "ERR"))
    endB = watch.waitLinkState(linkB, ("CLOS", "ERR"))
    assert endA.words[2] == "CLOS" and endB.words[2] == "CLOS", (endA, endB)
    assert endA.options["confirmed"] == "yes" and endB.options["confirmed"] == "yes"
    assert (endA.options["sent"], endA.options["received"]) == (str(MiB), str(MiB))
    clientB.waitEOF()
    status = ctl.expect("STATUS")
    assert status.get("fingerprint") == fpAlice
    # tofu pinned each other
    pins = ctl.expect("TRUST bob@example.test")
    assert pins.get("pin") == "bob@example.test sha-256 %s" % fpBob


# --- refusals: every one is BAD with a reason, and no byte crossed in clear ---

NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_LINK = "urn:x-bytestreamd:si:link:0"
OTHER_FP = ":".join(["AB"] * 32)


def _fingerprints(stanza):
    for si in stanza.elements("http://jabber.org/protocol/si", "si"):
        for link in si.elements(NS_LINK, "link"):
            for fp in link.elements(NS_DTLS, "fingerprint"):
                yield link, fp


def stripAnswer(stanza, sender, to):
    """The SI result loses its <link/> (its e2e field), as from an old peer."""
    if stanza.name == "iq" and stanza.getAttribute("type") == "result":
        for si in list(stanza.elements("http://jabber.org/protocol/si", "si")):
            for link in list(si.elements(NS_LINK, "link")):
                si.children.remove(link)
    return None


def openAndWait(ctl, watch, options, accept=True):
    opened = ctl.expect("OPEN bob@example.test/daemon methods=ibb negotiation=si %s" % options)
    linkA = opened.get("link")
    linkB = None
    if accept:
        offer = watch.waitEvent(r"^650 OFFER ")
        linkB = offer.words[1]
        watch.expect("ACCEPT %s" % linkB)
    endA = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    return linkA, linkB, endA


def test_signalled_fingerprint_rewritten_by_the_server_is_refused(world, pair):
    """A server (or anything on the XMPP path) that swaps the fingerprint in
    the offer: the certificate Alice presents is not the signalled one."""
    alice, bob, ctl, watch = pair

    def rewrite(stanza, sender, to):
        for link, fp in _fingerprints(stanza):
            fp.children = [OTHER_FP]
        return None

    world.router.addFilter(rewrite)
    linkA, linkB, endA = openAndWait(ctl, watch, "e2e=bytes")
    endB = watch.waitLinkState(linkB, ("GOOD", "BAD", "ERR"))
    assert endB.words[2] == "BAD", endB
    reason = endB.options["reason"]
    assert "is not the one alice@example.test signalled" in reason, reason
    assert OTHER_FP in reason and ctl.expect("FINGERPRINT").get("fingerprint") in reason
    assert endA.words[2] == "BAD" and "e2e" in endA.options["reason"], endA
    assert not watch.command("TRUST alice@example.test").lines[:-1]  # nothing pinned


def test_pinned_fingerprint_mismatch_is_refused_naming_both(world, pair):
    alice, bob, ctl, watch = pair
    assert ctl.expect("TRUST bob@example.test %s" % OTHER_FP).get("added") == "yes"
    fpBob = watch.expect("FINGERPRINT").get("fingerprint")
    linkA, linkB, endA = openAndWait(ctl, watch, "e2e=bytes")
    assert endA.words[2] == "BAD", endA
    reason = endA.options["reason"]
    assert "NOT the pinned one" in reason and OTHER_FP in reason and fpBob in reason
    assert "TRUST bob@example.test %s" % fpBob in reason
    # the operator checks out of band, forgets the old pin, and it works
    assert ctl.expect("FORGET bob@example.test").get("removed") == "1"
    linkA, linkB, endA = openAndWait(ctl, watch, "e2e=bytes")
    assert endA.words[2] == "GOOD" and endA.options["fingerprint"] == fpBob


def test_answer_stripped_of_e2e_fails_a_required_link(world, pair):
    """A peer (or a server) that answers without the e2e field: e2e=bytes
    (required for this link) ends BAD; Bob's side sees its stream go."""
    alice, bob, ctl, watch = pair

    world.router.addFilter(stripAnswer)
    linkA, linkB, endA = openAndWait(ctl, watch, "e2e=bytes")
    assert endA.words[2] == "BAD", endA
    assert "accepted without an end-to-end stream" in endA.options["reason"], endA
    assert "nothing was sent in clear" in endA.options["reason"]


def test_preferred_goes_plain_with_a_peer_that_answers_without(world):
    alice = world.daemon("alice", config={"links": {"e2e": "preferred"}})
    bob = world.daemon("bob", allow="alice@example.test")
    ctl, watch = world.control(alice), world.control(bob, watch=True)

    world.router.addFilter(stripAnswer)
    linkA, linkB, endA = openAndWait(ctl, watch, "")
    assert endA.words[2] == "GOOD" and "e2e" not in endA.options, endA


def test_required_refuses_plain_offers_and_plain_opens(world):
    alice = world.daemon("alice", allow="bob@example.test")
    bob = world.daemon("bob", allow="alice@example.test",
                       config={"links": {"e2e": "required"}})
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    linkA, _, endA = openAndWait(ctl, watch, "", accept=False)
    assert endA.words[2] == "BAD", endA
    assert "requires end-to-end encrypted links" in endA.options["reason"], endA
    assert not [e for e in watch.events if e.words[0] == "OFFER"]
    refused = watch.command("OPEN alice@example.test/daemon e2e=off")
    assert refused.code == 512 and "required" in refused.text
    # and bob's own OPEN is e2e=bytes without being asked
    aliceWatch = world.control(alice, watch=True)
    opened = watch.expect("OPEN alice@example.test/daemon methods=ibb")
    offer = aliceWatch.waitEvent(r"^650 OFFER ")
    assert offer.options["e2e"] == "bytes", offer
    aliceWatch.expect("ACCEPT %s" % offer.words[1])
    good = watch.waitLinkState(opened.get("link"), ("GOOD", "BAD", "ERR"))
    assert good.words[2] == "GOOD" and good.options["e2e"] == "tls", good


# --- e2e=xmpp: stanzas on the local sockets -------------------------------------


def test_e2e_xmpp_messages_and_iqs_both_ways(world, pair):
    alice, bob, ctl, watch = pair
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(world, pair, "s5b",
                                                                  "e2e=xmpp")
    assert offer.options["e2e"] == "xmpp"
    assert goodA.words[2] == "GOOD" and goodA.options["e2e-mode"] == "xmpp", goodA
    assert goodB.words[2] == "GOOD" and goodB.options["e2e"] == "tls", goodB
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    clientA.write(b"<message to='bob@example.test'><body>secret &amp; private</body>"
                  b"</message>\n<iq type='get' id='q1'><query xmlns='urn:x-test'/></iq>")
    got = clientB.waitReceived(10, timeout=30)
    world.advance(1)
    got = bytes(clientB.received)
    assert got.startswith(b"<message xmlns='jabber:client' to='bob@example.test'>"
                          b"<body>secret &amp; private</body></message>"), got
    assert b"<iq xmlns='jabber:client' type='get' id='q1'>" in got
    clientB.write(b"<iq xmlns='jabber:client' type='result' id='q1' "
                  b"from='bob@example.test/daemon'/>")
    world.advance(1)
    assert bytes(clientA.received) == (b"<iq xmlns='jabber:client' type='result' id='q1' "
                                       b"from='bob@example.test/daemon'/>")
    # nothing of it crossed in clear (S5B direct: look at the raw TCP bytes)
    clientA.writeEOF()
    endA = ctl.waitLinkState(linkA, ("CLOS", "ERR"))
    endB = watch.waitLinkState(linkB, ("CLOS", "ERR"))
    assert endA.words[2] == "CLOS" and endB.words[2] == "CLOS", (endA, endB)
    assert endA.options["confirmed"] == "yes"
    clientB.waitEOF()


@pytest.mark.parametrize("bad, why", [
    (b"<message><body>unclosed</message>", "malformed XML"),
    (b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>", "not a stanza"),
    (b"<message from='mallory@example.test/x'><body>forged</body></message>",
     "is not this daemon's JID"),
    (b"<!-- a comment --><message/>", "malformed XML"),
])
def test_e2e_xmpp_refuses_what_the_local_program_must_not_send(world, pair, bad, why):
    alice, bob, ctl, watch = pair
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(world, pair, "ibb",
                                                                  "e2e=xmpp")
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    clientA.write(bad)
    endA = ctl.waitLinkState(linkA, ("CLOS", "ERR"))
    assert endA.words[2] == "ERR" and why in endA.options["reason"], endA
    endB = watch.waitLinkState(linkB, ("CLOS", "ERR"))
    assert endB.words[2] in ("CLOS", "ERR"), endB
    assert b"unclosed" not in bytes(clientB.received)
    assert b"forged" not in bytes(clientB.received)


def test_required_with_an_unusable_state_directory_stops_the_daemon(world, tmp_path):
    bad = tmp_path / "shared"
    bad.mkdir()
    bad.chmod(0o777)  # others may write: they could swap the key or the pins
    with pytest.raises(SystemExit) as e:
        world.daemon("carol", config={"links": {"e2e": "required"},
                                      "e2e": {"state_dir": str(bad)}})
    assert str(bad) in str(e.value)


def test_tls_close_notify_goes_through_the_end_confirmation(world, pair):
    """
    Bob's daemon ends TLS cleanly (close_notify, then the bytestream's end)
    in the middle of a link: alice's lifecycle does not take that for the
    end; the link ends when the two daemons' byte counts, exchanged over
    XMPP, agree (here: all 100000 bytes reached bob's reader).
    """
    alice, bob, ctl, watch = pair
    offer, linkA, linkB, socketA, socketB, goodA, goodB = openE2E(world, pair, "s5b")
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    clientA.write(payload(3, 100_000))
    clientB.waitReceived(100_000, timeout=30)
    stream = bob.manager._links[linkB].stream
    assert stream.e2eMode == "bytes"
    # Twisted's TLS shuts down once the producer is gone
    stream.unregisterProducer()
    stream.loseConnection()
    endA = ctl.waitLinkState(linkA, ("CLOS", "ERR"), timeout=200)
    assert endA.words[2] == "CLOS" and endA.options["confirmed"] == "yes", endA
    assert (endA.options["sent"], endA.options["received"]) == ("100000", "0")
    endB = watch.waitLinkState(linkB, ("CLOS", "ERR"), timeout=200)
    assert endB.options["received"] == "100000", endB


# --- files (XEP-0096) end-to-end ---------------------------------------------------


@pytest.mark.parametrize("ranged", [False, True])
def test_e2e_file_offer_with_and_without_a_range(world, pair, ranged):
    alice, bob, ctl, watch = pair
    data = payload(7, 300_000)
    opened = ctl.expect("OPEN bob@example.test/daemon profile=file name=f.bin size=%d "
                        "range=%s methods=ibb e2e=bytes" % (len(data),
                                                            "yes" if ranged else "no"))
    linkA, socketA = opened.get("link"), opened.get("socket")
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["e2e"] == "bytes" and offer.options["name"] == "f.bin"
    linkB = offer.words[1]
    accepted = watch.expect("ACCEPT %s%s" % (linkB, " offset=100000" if ranged else ""))
    goodA = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    goodB = watch.waitLinkState(linkB, ("GOOD", "BAD", "ERR"))
    assert goodA.words[2] == "GOOD" and goodA.options["e2e"] == "tls", goodA
    assert goodB.words[2] == "GOOD" and goodB.options["e2e"] == "tls", goodB
    start = 100_000 if ranged else 0
    if ranged:
        assert goodA.options["offset"] == "100000", goodA
    else:
        assert "offset" not in goodA.options, goodA
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, accepted.get("socket"))
    clientA.write(data[start:])
    clientA.writeEOF()
    assert clientB.waitReceived(len(data) - start, timeout=60) == data[start:]
    end = ctl.waitLinkState(linkA, ("CLOS", "ERR"))
    assert end.words[2] == "CLOS" and end.options["confirmed"] == "yes", end


def test_e2e_xmpp_is_not_for_files(world, pair):
    alice, bob, ctl, watch = pair
    reply = ctl.command("OPEN bob@example.test/daemon profile=file name=f size=1 e2e=xmpp")
    assert reply.code == 512 and "e2e=xmpp is for links" in reply.text



# --- connections=many: each connection its own bytestream, not secured ------------


@pytest.mark.parametrize("policy,asked,code", [
    ("off", " e2e=bytes", 512),       # asked for: refused, never sent in clear
    ("required", "", 512),            # required: refused
    ("preferred", "", 250),           # preferred: plain, as with a peer without e2e
])
def test_many_connections_are_never_silently_plain(world, policy, asked, code):
    alice = world.daemon("alice", allow="bob@example.test", config={"links": {"e2e": policy}})
    world.daemon("bob", allow="alice@example.test")
    ctl = world.control(alice)
    reply = ctl.command("OPEN bob@example.test/daemon service=web connections=many" + asked)
    assert reply.code == code, reply
    if code == 512:
        assert "connections=many cannot be end-to-end secured" in reply.text, reply
