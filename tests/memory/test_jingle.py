"""
Jingle links in the memory tier: two real daemons on the in-memory router,
fake time.  Links both ways over XEP-0261 IBB and XEP-0260 SOCKS5, the
fallback from SOCKS5 to IBB by transport-replace, and what a peer that is
not the session's gets (unknown-session).
"""

from __future__ import annotations

import pytest

from tests.memory.test_truth import daemons, payload

MiB = 1024 * 1024


def jingleLink(world, alice, bob, method, extra=""):
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=%s%s" % (bob.jid.full(), method, extra))
    linkA, socketA = opened.get("link"), opened.get("socket")
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["negotiation"] == "jingle", offer
    linkB = offer.words[1]
    socketB = watch.expect("ACCEPT %s" % linkB).get("socket")
    goodA = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    goodB = watch.waitLinkState(linkB, ("GOOD", "BAD", "ERR"))
    assert (goodA.words[2], goodB.words[2]) == ("GOOD", "GOOD"), (
        ctl.linkEvents(linkA), watch.linkEvents(linkB), world.log[-30:])
    return ctl, watch, linkA, linkB, world.localClient(alice, socketA), \
        world.localClient(bob, socketB), goodA, goodB


@pytest.mark.parametrize("method", ["ibb"])
def test_link_both_ways_over_jingle(world, method):
    alice, bob = daemons(world, method)
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(world, alice, bob, method)
    assert goodA.options["method"] == goodB.options["method"] == method
    assert goodA.options["negotiation"] == goodB.options["negotiation"] == "jingle"
    there, back = payload(11, 300000), payload(12, 200000)
    a.write(there)
    b.write(back)
    b.waitReceived(len(there))
    a.waitReceived(len(back))
    assert bytes(b.received) == there and bytes(a.received) == back
    rows = {row["link"]: row for row in ctl.expect("LINKS").rows()}
    assert rows[linkA]["negotiation"] == "jingle"
    ctl.expect("CLOSE %s" % linkA)
    mine, theirs = ctl.waitLinkState(linkA), watch.waitLinkState(linkB)
    assert (mine.words[2], theirs.words[2]) == ("CLOS", "CLOS"), (mine, theirs)
    assert mine.options["confirmed"] == "yes" and theirs.options["confirmed"] == "yes"
    world.advance(2)
    # session-terminate success ended both sessions
    assert not alice.jingle._live and not bob.jingle._live


def test_negotiation_si_still_chosen_on_request(world):
    alice, bob = daemons(world, "ibb")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=ibb negotiation=si" % bob.jid.full())
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["negotiation"] == "si"
    watch.expect("ACCEPT %s" % offer.words[1])
    good = ctl.waitLinkState(opened.get("link"), ("GOOD", "BAD", "ERR"))
    assert good.words[2] == "GOOD" and good.options["negotiation"] == "si"


def test_si_only_peer_gets_si(world):
    alice = world.daemon("alice", allow="bob@%s" % world.domain, methods="ibb")
    bob = world.daemon("bob", allow="alice@%s" % world.domain, methods="ibb",
                       config={"links": {"negotiation": "si"}})
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=ibb" % bob.jid.full())
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["negotiation"] == "si"
    watch.expect("ACCEPT %s" % offer.words[1])
    good = ctl.waitLinkState(opened.get("link"), ("GOOD", "BAD", "ERR"))
    assert good.words[2] == "GOOD" and good.options["negotiation"] == "si"


def test_burst_beyond_max_links_is_busy_then_retried(world):
    # Jingle's twin of test_truth's burst: bob allows 4 links; alice opens
    # 10.  Bob ends the extra session-initiates with reason busy; alice
    # offers again after a growing delay; every link completes.
    from twisted.internet import protocol
    from tests.memory.test_truth import PEER_TIMEOUT

    class Echo(protocol.Protocol):
        def dataReceived(self, data):
            self.transport.write(data)

        def readConnectionLost(self):
            self.transport.loseConnection()

    alice = world.daemon("alice", allow="bob@%s" % world.domain, methods="ibb",
                         config={"links": {"peer_timeout": PEER_TIMEOUT,
                                           "attempt_timeout": 120}})
    port = world.listenTCP(protocol.Factory.forProtocol(Echo))
    bob = world.daemon("bob", allow="alice@%s" % world.domain, methods="ibb",
                       config={"links": {"peer_timeout": PEER_TIMEOUT, "max_links": 4},
                               "services": {"echo": "tcp:host=127.0.0.1:port=%d" % port}})
    ctl = world.control(alice)
    links = []
    for i in range(10):
        opened = ctl.expect("OPEN %s service=echo methods=ibb" % bob.jid.full())
        links.append((opened.get("link"), world.localClient(alice, opened.get("socket"))))
    for i, (linkId, client) in enumerate(links):
        data = payload(100 + i, 20000)
        client.write(data)
        client.writeEOF()
        assert client.waitReceived(len(data), timeout=300) == data
        end = ctl.waitLinkState(linkId, timeout=300)
        assert end.words[2] == "CLOS", ctl.linkEvents(linkId)
        assert end.options["negotiation"] == "jingle"
    assert not any(e.words[2] == "BAD" for l, _ in links for e in ctl.linkEvents(l))
    busy = [r for r in world.router.routed("iq")
            if r.sender == bob.jid.full() and "<busy/>" in r.element.toXml()]
    assert busy, "bob never said busy: the burst did not test the limit"
