"""
``connections=many`` over a SOCKS5 session (issue 7 part 5): each local
connection gets a SOCKS5 stream of its own, in a content of its own
(content-add, XEP-0260 negotiation, content-remove at its end), in the one
Jingle session; a content whose candidates all fail falls back to IBB by
transport-replace, alone.
"""

from __future__ import annotations

from twisted.internet import protocol

from bytestreamd.wire.s5b import StreamHost
from tests.memory.test_jingle import _jingleSets, settled
from tests.memory.test_truth import payload

NS_S5B = "urn:xmpp:jingle:transports:s5b:1"
NS_IBB = "urn:xmpp:jingle:transports:ibb:1"


class HTTPish(protocol.Protocol):
    """Reads a request up to a blank line, answers with its own echo."""

    def connectionMade(self):
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            request = self.buffer.split(b"\r\n\r\n", 1)[0]
            body = b"you asked: " + request.split(b"\r\n")[0] + b"\n" + request * 50
            self.transport.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n"
                                 % len(body) + body)
            self.transport.loseConnection()


def expected(path: bytes) -> bytes:
    request = b"GET %s HTTP/1.0\r\nHost: x" % path
    body = b"you asked: GET %s HTTP/1.0\n" % path + request * 50
    return b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def pair(world, port, s5b=None):
    s5b = dict(s5b or {})
    alice = world.daemon("alice", allow="bob@%s" % world.domain, methods="s5b,ibb",
                         config={"s5b": s5b})
    bob = world.daemon("bob", allow="alice@%s" % world.domain, methods="s5b,ibb",
                       config={"s5b": s5b,
                               "services": {"web": "tcp:host=127.0.0.1:port=%d" % port}})
    return alice, bob


def transportsOf(world, action):
    """The transport namespace of each content of each ``action`` set."""
    out = []
    for _, j in _jingleSets(world, action):
        for content in j.elements("urn:xmpp:jingle:1", "content"):
            for t in content.elements():
                if t.name == "transport":
                    out.append((content["name"], t.uri))
    return out


def exchange(world, alice, path, n, prefix=b"/page/"):
    clients = []
    for i in range(n):
        c = world.localClient(alice, path)
        c.write(b"GET %s%d HTTP/1.0\r\nHost: x\r\n\r\n" % (prefix, i))
        clients.append(c)
    for i, c in enumerate(clients):
        c.waitEOF(timeout=60)
        assert bytes(c.received) == expected(b"%s%d" % (prefix, i)), i
        c.close()  # an HTTP/1.0 client closes after the answer
    return clients


def test_twenty_exchanges_each_on_its_own_socks5_stream(world):
    port = world.listenTCP(protocol.Factory.forProtocol(HTTPish))
    alice, bob = pair(world, port)
    ctl = world.control(alice)
    opened = ctl.expect("OPEN %s service=web connections=many" % bob.jid.full())
    link, path = opened.get("link"), opened.get("socket")
    good = settled(ctl, link)
    assert good.words[2] == "GOOD" and good.options["method"] == "s5b", good
    exchange(world, alice, path, 20)
    world.advance(2)
    assert len(_jingleSets(world, "session-initiate")) == 1
    added = transportsOf(world, "content-add")
    accepted = transportsOf(world, "content-accept")
    assert len(added) == len(accepted) == 20, (added, accepted)
    assert {ns for _, ns in added + accepted} == {NS_S5B}
    # a fresh SOCKS5 sid each (so each its own DST.ADDR)
    sids = set()
    for _, j in _jingleSets(world, "content-add"):
        for content in j.elements("urn:xmpp:jingle:1", "content"):
            sids.add(next(content.elements(NS_S5B, "transport"))["sid"])
    assert len(sids) == 20
    # no IBB at all, no replace, and each content removed when its stream ended
    assert not world.router.routed("iq", child="{http://jabber.org/protocol/ibb}open")
    assert not _jingleSets(world, "transport-replace")
    removed = sorted(c["name"] for _, j in _jingleSets(world, "content-remove")
                     for c in j.elements("urn:xmpp:jingle:1", "content"))
    assert removed == sorted(name for name, _ in added)
    [mine] = alice.jingle._controls.values()
    [theirs] = bob.jingle._controls.values()
    assert not mine.more.contents and not theirs.more.contents
    assert list(mine.session.contents) == [mine.key]
    assert list(theirs.session.contents) == [theirs.key]
    # the link stays GOOD, takes more, and ends as a link does
    rows = {r["link"]: r for r in ctl.expect("LINKS").rows()}
    assert rows[link]["state"] == "GOOD" and rows[link].get("connections") == "many"
    exchange(world, alice, path, 2, prefix=b"/late/")
    ctl.expect("CLOSE %s" % link)
    assert ctl.waitLinkState(link, timeout=60).words[2] == "CLOS"
    world.advance(2)
    assert not alice.jingle._live and not bob.jingle._live


def test_a_content_whose_candidates_fail_falls_back_to_ibb(world):
    port = world.listenTCP(protocol.Factory.forProtocol(HTTPish))
    alice, bob = pair(world, port, {"proxy": "none"})
    ctl = world.control(alice)
    opened = ctl.expect("OPEN %s service=web connections=many" % bob.jid.full())
    link, path = opened.get("link"), opened.get("socket")
    good = settled(ctl, link)
    assert good.words[2] == "GOOD" and good.options["method"] == "s5b", good
    # From now on both sides offer only a closed loopback port.
    for d in (alice, bob):
        d.jingle.method("s5b").direct.candidates = \
            lambda own: [StreamHost(own, "127.0.0.1", 9)]
    exchange(world, alice, path, 3)
    world.advance(2)
    replaced = transportsOf(world, "transport-replace")
    assert len(replaced) == 3 and {ns for _, ns in replaced} == {NS_IBB}, replaced
    assert len(transportsOf(world, "transport-accept")) == 3
    assert len(world.router.routed("iq", child="{http://jabber.org/protocol/ibb}open")) == 3
    assert len(_jingleSets(world, "content-remove")) == 3
    assert len(_jingleSets(world, "session-initiate")) == 1
    # the link itself is untouched
    rows = {r["link"]: r for r in ctl.expect("LINKS").rows()}
    assert rows[link]["state"] == "GOOD"
    ctl.expect("CLOSE %s" % link)
    assert ctl.waitLinkState(link, timeout=60).words[2] == "CLOS"


def test_a_content_add_without_a_listener_is_rejected(world):
    port = world.listenTCP(protocol.Factory.forProtocol(HTTPish))
    alice, bob = pair(world, port)
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=s5b,ibb" % bob.jid.full())
    linkA = opened.get("link")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    socketB = watch.expect("ACCEPT %s" % linkB).get("socket")
    assert settled(ctl, linkA).words[2] == "GOOD"
    [mine] = alice.jingle._controls.values()
    results = []
    mine.addStream().addCallbacks(results.append, results.append)
    world.runUntil(lambda: results, 30, "the extra stream's outcome")
    assert hasattr(results[0], "value") and "rejected" in str(results[0].value), results
    assert len(_jingleSets(world, "content-reject")) == 1
    assert not mine.more.contents and list(mine.session.contents) == [mine.key]
    # the link itself is untouched
    data = payload(3, 5000)
    a = world.localClient(alice, opened.get("socket"))
    b = world.localClient(bob, socketB)
    a.write(data)
    assert b.waitReceived(len(data)) == data
    assert ctl.expect("LINKS").rows()[0]["state"] == "GOOD"


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def test_close_ends_every_open_socks5_content(world):
    port = world.listenTCP(protocol.Factory.forProtocol(Echo))
    alice, bob = pair(world, port)
    ctl = world.control(alice)
    opened = ctl.expect("OPEN %s service=web connections=many" % bob.jid.full())
    link, path = opened.get("link"), opened.get("socket")
    assert settled(ctl, link).words[2] == "GOOD"
    clients = [world.localClient(alice, path) for _ in range(4)]
    for i, c in enumerate(clients):
        c.write(payload(110 + i, 3000))
    for i, c in enumerate(clients):
        assert c.waitReceived(3000) == payload(110 + i, 3000)
    [mine] = alice.jingle._controls.values()
    [theirs] = bob.jingle._controls.values()
    assert len(mine.more.contents) == len(theirs.more.contents) == 4
    assert len(mine.session.contents) == len(theirs.session.contents) == 5
    # one connection ends on its own: its content goes, the others stay
    clients[0].close()
    world.advance(2)
    assert len(mine.more.contents) == len(theirs.more.contents) == 3
    assert len(_jingleSets(world, "content-remove")) == 1
    clients[1].write(b"still here")
    assert clients[1].waitReceived(3000 + 10)[-10:] == b"still here"
    # the link's end ends the rest
    ctl.expect("CLOSE %s" % link)
    assert ctl.waitLinkState(link, timeout=60).words[2] == "CLOS"
    for c in clients[1:]:
        c.waitEOF(timeout=30)
    world.advance(2)
    assert not mine.more.contents and not theirs.more.contents
    assert not alice.jingle._live and not bob.jingle._live


def test_each_connection_through_the_proxy_activates_its_own(world):
    # No direct streamhost: each content's stream goes through proxy65,
    # activated for its own sid (the nomination and activation of XEP-0260
    # section 2.5, as for the first content).
    from tests.memory.proxy65 import Proxy65
    proxy = Proxy65(world)
    port = world.listenTCP(protocol.Factory.forProtocol(HTTPish))
    alice, bob = pair(world, port, {"proxy": proxy.jid.full(), "listen": "none"})
    ctl = world.control(alice)
    opened = ctl.expect("OPEN %s service=web connections=many" % bob.jid.full())
    link, path = opened.get("link"), opened.get("socket")
    good = settled(ctl, link)
    assert good.words[2] == "GOOD" and good.options["method"] == "s5b", good
    exchange(world, alice, path, 5)
    world.advance(2)
    assert proxy.activated == 6  # the anchor and each connection
    assert len(transportsOf(world, "content-accept")) == 5
    assert not world.router.routed("iq", child="{http://jabber.org/protocol/ibb}open")
    assert len(_jingleSets(world, "content-remove")) == 5
