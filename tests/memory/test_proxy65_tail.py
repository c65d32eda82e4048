"""
Links through a proxy65 stand-in that strands each direction's last bytes
(tests/memory/proxy65.py, as Prosody 0.12's proxy65 does), between two
real daemons in memory:

* an ``e2e=bytes`` link recovers its stranded tails as *ciphertext*
  (``<flush/>``/``<tail/>`` with transport offsets, fed below TLS): both
  directions arrive whole and the link ends CLOS confirmed; neither the
  relay nor the servers carried a run of the payload;
* a plain link through the same relay still recovers its tails in-band;
* a tail the servers drop ends the e2e link ERR, with a reason, within a
  bounded time; a tail they alter ends it ERR through TLS, and no altered
  byte reaches the local client.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from bytestreamd import ns
from tests.memory.proxy65 import Proxy65
from tests.memory.router import DROP
from tests.memory.test_world import payload

MiB = 1024 * 1024
STRANDED = 3000
TAIL = "{%s}tail" % ns.NS_END
FLUSH = "{%s}flush" % ns.NS_END


@pytest.fixture
def proxied(world):
    proxy = Proxy65(world, strand=STRANDED)
    config = {"s5b": {"proxy": proxy.jid.full(), "listen": "none"},
              "links": {"peer_timeout": "20"}}
    alice = world.daemon("alice", methods="s5b", config=config)
    bob = world.daemon("bob", allow="alice@example.test", methods="s5b", config=config)
    return proxy, alice, bob, world.control(alice), world.control(bob, watch=True)


def openLink(world, proxied, options):
    proxy, alice, bob, ctl, watch = proxied
    opened = ctl.expect("OPEN bob@example.test/daemon methods=s5b %s" % options)
    linkA, socketA = opened.get("link"), opened.get("socket")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    socketB = watch.expect("ACCEPT %s" % linkB).get("socket")
    goodA = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    goodB = watch.waitLinkState(linkB, ("GOOD", "BAD", "ERR"))
    assert goodA.words[2] == "GOOD" and goodB.words[2] == "GOOD", (goodA, goodB)
    assert proxy.activated == 1
    return linkA, linkB, world.localClient(alice, socketA), world.localClient(bob, socketB)


def bothWays(world, proxied, options):
    """1 MiB each way, both EOFs written: returns the clients and payloads."""
    linkA, linkB, clientA, clientB = openLink(world, proxied, options)
    toBob, toAlice = payload(11), payload(12)
    clientA.write(toBob)
    clientB.write(toAlice)
    clientA.writeEOF()
    clientB.writeEOF()
    return linkA, linkB, clientA, clientB, toBob, toAlice


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.mark.parametrize("options", ["e2e=bytes", ""])
def test_stranded_tails_are_recovered(world, proxied, options):
    proxy, alice, bob, ctl, watch = proxied
    linkA, linkB, clientA, clientB, toBob, toAlice = bothWays(world, proxied, options)
    assert _sha(clientB.waitReceived(MiB, timeout=120)) == _sha(toBob)
    assert _sha(clientA.waitReceived(MiB, timeout=120)) == _sha(toAlice)
    endA = ctl.waitLinkState(linkA, ("CLOS", "ERR"), timeout=120)
    endB = watch.waitLinkState(linkB, ("CLOS", "ERR"), timeout=120)
    assert endA.words[2] == "CLOS" and endB.words[2] == "CLOS", (endA, endB)
    assert endA.options["confirmed"] == "yes" and endB.options["confirmed"] == "yes"
    assert (endA.options["sent"], endA.options["received"]) == (str(MiB), str(MiB))
    # Both directions were stranded and came back in-band.
    flushes = world.router.routed("iq", FLUSH)
    tails = [r for r in world.router.routed("iq", TAIL) if r.type == "set"]
    assert len([f for f in flushes if f.type == "set"]) == 2, [f.xml() for f in flushes]
    resent = b"".join(base64.b64decode(str(t.element.firstChildElement())) for t in tails)
    assert len(resent) == 2 * STRANDED
    if options:
        # Ciphertext, in the relay and in the tails the servers carried.
        crossed = b"".join(bytes(leg.record) for leg in proxy.legs)
        for chunk in (toBob[:64], toBob[-64:], toAlice[:64], toAlice[-64:]):
            assert chunk not in crossed and chunk not in resent
    else:
        assert toBob[-64:] in resent and toAlice[-64:] in resent  # plain: the payload


def test_e2e_tail_dropped_by_the_servers_ends_err_in_bounded_time(world, proxied):
    proxy, alice, bob, ctl, watch = proxied
    world.router.addFilter(lambda el, sender, to: DROP if TAIL in [
        "{%s}%s" % (c.uri, c.name) for c in el.elements()] and el.getAttribute("type") == "set"
        else None)
    linkA, linkB, clientA, clientB, toBob, toAlice = bothWays(world, proxied, "e2e=bytes")
    start = world.now()
    endB = watch.waitLinkState(linkB, ("CLOS", "ERR"), timeout=120)
    endA = ctl.waitLinkState(linkA, ("CLOS", "ERR"), timeout=120)
    assert endA.words[2] == "ERR" and endB.words[2] == "ERR", (endA, endB)
    # stall (2 s) + peer_timeout (20 s) + a little: never a silent hang
    assert world.now() - start < 2 + 20 + 10
    assert "did not come" in endB.options.get("reason", "") + endA.options.get("reason", "")
    assert len(clientB.received) < MiB and toBob.startswith(bytes(clientB.received))


def _forge(el, sender, to):
    for child in el.elements():
        if child.name == "tail" and child.uri == ns.NS_END:
            data = bytearray(base64.b64decode(str(child)))
            data[len(data) // 2] ^= 0x01
            child.children = [base64.b64encode(bytes(data)).decode("ascii")]
    return None


def test_e2e_tail_altered_by_the_servers_ends_err_through_tls(world, proxied):
    proxy, alice, bob, ctl, watch = proxied
    world.router.addFilter(_forge)
    linkA, linkB, clientA, clientB, toBob, toAlice = bothWays(world, proxied, "e2e=bytes")
    endB = watch.waitLinkState(linkB, ("CLOS", "ERR"), timeout=120)
    endA = ctl.waitLinkState(linkA, ("CLOS", "ERR"), timeout=120)
    assert endA.words[2] == "ERR" and endB.words[2] == "ERR", (endA, endB)
    reasons = endA.options.get("reason", "") + endB.options.get("reason", "")
    assert "TLS failed: decryption failed or bad record mac" in reasons, (endA, endB)
    # Nothing altered reached a local client: each got a prefix of the truth.
    assert len(clientB.received) < MiB and toBob.startswith(bytes(clientB.received))
    assert toAlice.startswith(bytes(clientA.received))
