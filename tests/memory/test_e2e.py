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
