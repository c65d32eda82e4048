"""
The memory tier proves itself: two real daemons meet through the in-memory
router, answer STATUS and PROBE, and carry a link over IBB and over direct
SOCKS5 (iosim-style TCP between them) byte-exact in both directions, ended by
a local EOF; an offer from a stranger is refused.  All in fake time.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet import protocol

from tests.integration.harness.daemon import statusSaysConnected
from tests.memory.world import World

MiB = 1024 * 1024


def payload(seed: int, size: int = MiB) -> bytes:
    """Reproducible bytes that are not all alike (a shifted copy would show)."""
    import random
    return random.Random(seed).randbytes(size)


@pytest.fixture
def pair(world: World):
    """alice and bob (who accepts alice), a control client each; bob WATCHes."""
    alice = world.daemon("alice")
    bob = world.daemon("bob", allow="alice@example.test")
    return alice, bob, world.control(alice), world.control(bob, watch=True)


def test_daemons_connect_and_probe(world, pair):
    alice, bob, ctl, watch = pair
    status = ctl.expect("STATUS")
    assert statusSaysConnected(status)
    assert status.get("jid") == "alice@example.test/daemon"
    assert statusSaysConnected(watch.expect("STATUS"))
    probe = ctl.expect("PROBE bob@example.test/daemon")
    assert probe.get("si") == "yes"
    assert set(probe.get("methods").split(",")) == {"ibb", "s5b"}
    # A full JID with no session: the router answers for it, as a server does.
    missing = ctl.command("PROBE bob@example.test/elsewhere")
    assert missing.code >= 500 and "service-unavailable" in missing.text
    # The daemons' own stanzas went through the router, "from" set by it.
    assert any(r.sender == "alice@example.test/daemon" and r.to == "bob@example.test/daemon"
               for r in world.router.routed("iq"))


def openLink(world: World, pair, method: str, extra: str = ""):
    """OPEN alice -> bob over ``method``, ACCEPT on bob, both GOOD; local clients on both."""
    alice, bob, ctl, watch = pair
    opened = ctl.expect("OPEN bob@example.test/daemon methods=%s%s" % (method, extra))
    linkA, socketA = opened.get("link"), opened.get("socket")
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["from"] == "alice@example.test/daemon"
    linkB = offer.words[1]
    accepted = watch.expect("ACCEPT %s" % linkB)
    socketB = accepted.get("socket")
    goodA = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    goodB = watch.waitLinkState(linkB, ("GOOD", "BAD", "ERR"))
    assert goodA.words[2] == "GOOD" and goodA.options["method"] == method, goodA
    assert goodB.words[2] == "GOOD" and goodB.options["method"] == method, goodB
    clientA = world.localClient(alice, socketA)
    clientB = world.localClient(bob, socketB)
    return linkA, linkB, clientA, clientB


def exchange(world: World, clientA, clientB):
    """1 MiB each way at once; both arrive byte-exact."""
    toBob, toAlice = payload(1), payload(2)
    clientA.write(toBob)
    clientB.write(toAlice)
    assert clientB.waitReceived(MiB, timeout=120) == toBob
    assert clientA.waitReceived(MiB, timeout=120) == toAlice
    return toBob, toAlice


def assertClosed(event, sent: int, received: int):
    assert event.words[2] == "CLOS", event
    assert (int(event.options["sent"]), int(event.options["received"])) == (sent, received), event


def test_ibb_link_both_ways_then_local_eof(world, pair):
    alice, bob, ctl, watch = pair
    linkA, linkB, clientA, clientB = openLink(world, pair, "ibb")
    exchange(world, clientA, clientB)
    assert world.router.routed("iq", child="{http://jabber.org/protocol/ibb}data")
    # IBB cannot half-close: alice's EOF ends the link on both sides.
    clientA.writeEOF()
    assertClosed(ctl.waitLinkState(linkA), MiB, MiB)
    assertClosed(watch.waitLinkState(linkB), MiB, MiB)
    clientB.waitEOF()
    clientA.waitEOF()


def test_s5b_link_both_ways_then_local_eof(world, pair):
    alice, bob, ctl, watch = pair
    # XEP-0065 by SI (Jingle's XEP-0260 is in test_jingle.py).
    linkA, linkB, clientA, clientB = openLink(world, pair, "s5b", " negotiation=si")
    exchange(world, clientA, clientB)
    # Direct: no data went through the router, only the negotiation.
    assert not world.router.routed(child="{http://jabber.org/protocol/ibb}data")
    used = world.router.routed("iq", child="{http://jabber.org/protocol/bytestreams}query")
    assert used and all(r.action == "delivered" for r in used)
    # SOCKS5 half-closes: alice's EOF reaches bob's client, bob answers, then EOF too.
    clientA.writeEOF()
    clientB.waitEOF()
    clientB.write(b"last words")
    clientA.waitReceived(MiB + 10)
    assert bytes(clientA.received[MiB:]) == b"last words"
    clientB.writeEOF()
    assertClosed(ctl.waitLinkState(linkA), MiB, MiB + 10)
    assertClosed(watch.waitLinkState(linkB), MiB + 10, MiB)
    clientA.waitEOF()


def test_stranger_is_refused(world, pair):
    alice, bob, ctl, watch = pair
    mallory = world.daemon("mallory")
    evil = world.control(mallory)
    opened = evil.expect("OPEN bob@example.test/daemon")
    bad = evil.waitLinkState(opened.get("link"), ("GOOD", "BAD", "ERR", "CLOS"))
    assert bad.words[2] == "BAD" and bad.options.get("final") == "yes", bad
    assert "not allowed" in bad.options.get("reason", ""), bad
    world.advance(1)
    assert not [e for e in watch.events if e.words[0] == "OFFER"]
    assert not os.listdir(os.path.join(mallory.config.runtime_dir, "links"))


def test_killed_peer_is_announced_unavailable(world, pair):
    """
    The router sends unavailable presence for a client whose connection
    died; a killed daemon's server connection is closed by its kernel.
    """
    alice, bob, ctl, watch = pair
    linkA, linkB, clientA, clientB = openLink(world, pair, "ibb")
    world.kill(alice)
    assert "alice@example.test/daemon" not in world.router.sessions
    unavailable = [r for r in world.router.routed("presence")
                   if r.type == "unavailable" and r.to == "bob@example.test/daemon"]
    assert unavailable and unavailable[0].sender == "alice@example.test/daemon"
    assert watch.waitLinkState(linkB).words[2] == "ERR"


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def test_link_to_a_configured_service(world):
    port = world.listenTCP(protocol.Factory.forProtocol(Echo))
    alice = world.daemon("alice")
    bob = world.daemon("bob", allow="alice@example.test", config={
        "services": {"echo": "tcp:host=127.0.0.1:port=%d" % port,
                     "down": "tcp:host=127.0.0.1:port=%d" % (port + 1000)}})
    ctl = world.control(alice)
    watch = world.control(bob, watch=True)
    opened = ctl.expect("OPEN bob@example.test/daemon service=echo methods=ibb")
    assert ctl.waitLinkState(opened.get("link"), ("GOOD", "BAD")).words[2] == "GOOD"
    client = world.localClient(alice, opened.get("socket"))
    client.write(b"ping")
    assert client.waitReceived(4) == b"ping"
    assert not [e for e in watch.events if e.words[0] == "OFFER"]  # accepted for the service
    refused = ctl.expect("OPEN bob@example.test/daemon service=down")
    bad = ctl.waitLinkState(refused.get("link"), ("GOOD", "BAD"))
    assert bad.words[2] == "BAD" and "down" in bad.options["reason"], bad
