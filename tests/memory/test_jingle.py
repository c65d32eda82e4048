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


def settled(ctl, linkId, timeout=60.0):
    """GOOD, ERR, or the final BAD (a BAD before a fallback is progress)."""
    return ctl.waitEvent(lambda e: e.words[:2] == ["LINK", linkId] and len(e.words) > 2
                         and (e.words[2] in ("GOOD", "ERR", "CLOS")
                              or (e.words[2] == "BAD" and "final" in e.options)), timeout)


def jingleLink(world, alice, bob, method, extra=""):
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=%s%s" % (bob.jid.full(), method, extra))
    linkA, socketA = opened.get("link"), opened.get("socket")
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["negotiation"] == "jingle", offer
    linkB = offer.words[1]
    socketB = watch.expect("ACCEPT %s" % linkB).get("socket")
    goodA, goodB = settled(ctl, linkA), settled(watch, linkB)
    assert (goodA.words[2], goodB.words[2]) == ("GOOD", "GOOD"), (
        ctl.linkEvents(linkA), watch.linkEvents(linkB), world.log[-30:])
    return ctl, watch, linkA, linkB, world.localClient(alice, socketA), \
        world.localClient(bob, socketB), goodA, goodB


@pytest.mark.parametrize("method", ["ibb", "s5b"])
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
    from tests.memory.test_truth import burstThroughMaxLinks
    bob, ends = burstThroughMaxLinks(world, "jingle, si")
    for end in ends:
        assert end.options["negotiation"] == "jingle"
    busy = [r for r in world.router.routed("iq")
            if r.sender == bob.jid.full() and "<busy/>" in r.element.toXml()]
    assert busy, "bob never said busy: the burst did not test the limit"


def _closedS5B(world, name, peer):
    # A direct candidate on a closed loopback port and no proxy: SOCKS5 fails.
    return world.daemon(name, allow="%s@%s" % (peer, world.domain), methods="s5b,ibb",
                        config={"links": {"peer_timeout": 6},
                                "s5b": {"advertise": "127.0.0.1:9", "proxy": "none"}})


def test_s5b_fails_then_transport_replace_to_ibb(world):
    alice, bob = _closedS5B(world, "alice", "bob"), _closedS5B(world, "bob", "alice")
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(world, alice, bob, "s5b,ibb")
    assert goodA.options["method"] == goodB.options["method"] == "ibb"
    events = [(e.words[2], e.options.get("method")) for e in ctl.linkEvents(linkA)]
    assert events[:4] == [("INIT", "s5b"), ("BAD", "s5b"), ("INIT", "ibb"), ("GOOD", "ibb")], \
        events
    bad = [e for e in ctl.linkEvents(linkA) if e.words[2] == "BAD"][0]
    # Each candidate, and why: ours (as bob saw it) and bob's (as we saw it).
    assert "cid " in bad.options["reason"] and "127.0.0.1:9" in bad.options["reason"], bad
    assert "negotiation" in bad.options and bad.options["negotiation"] == "jingle"
    theirs = [(e.words[2], e.options.get("method")) for e in watch.linkEvents(linkB)]
    assert ("BAD", "s5b") in theirs and theirs[-1] == ("GOOD", "ibb"), theirs
    replaced = world.router.routed("iq", child="{urn:xmpp:jingle:1}jingle")
    actions = [r.element.firstChildElement()["action"] for r in replaced
               if r.element.getAttribute("type") == "set"]
    assert "transport-replace" in actions and "transport-accept" in actions, actions
    assert actions.count("transport-info") >= 2  # candidate-error both ways
    data = payload(21, 100000)
    a.write(data)
    assert b.waitReceived(len(data)) == data


def _jingleSets(world, action=None):
    out = []
    for r in world.router.routed("iq", child="{urn:xmpp:jingle:1}jingle"):
        if r.element.getAttribute("type") != "set":
            continue
        j = r.element.firstChildElement()
        if action is None or j["action"] == action:
            out.append((r, j))
    return out


def _rawJingle(client, to, xml):
    from twisted.words.xish import domish
    from twisted.words.xish.domish import elementStream
    iq = domish.Element((None, "iq"))
    iq["type"] = "set"
    iq["to"] = to
    parsed = []
    stream = elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = parsed.append
    stream.DocumentEndEvent = lambda: None
    stream.parse("<r>%s</r>" % xml)
    iq.addChild(parsed[0])
    return client.request(iq)


def _jingleError(answer):
    error = [c for c in answer.elements() if c.name == "error"][0]
    return [c.name for c in error.elements()]


def test_stranger_gets_unknown_session(world):
    alice, bob = daemons(world, "ibb")
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(world, alice, bob, "ibb")
    [(_, initiate)] = _jingleSets(world, "session-initiate")
    sid = initiate["sid"]
    mallory = world.xmppClient("mallory")
    answer = _rawJingle(mallory, bob.jid.full(),
                        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' "
                        "sid='%s'><reason><success/></reason></jingle>" % sid)
    assert answer["type"] == "error"
    assert set(_jingleError(answer)) >= {"item-not-found", "unknown-session"}
    # The link is untouched.
    data = payload(22, 5000)
    a.write(data)
    assert b.waitReceived(len(data)) == data
    assert watch.linkEvents(linkB)[-1].words[2] == "GOOD"


def test_out_of_order_and_malformed_from_a_raw_peer(world):
    bob = world.daemon("bob", allow="carol@%s" % world.domain, methods="ibb")
    watch = world.control(bob, watch=True)
    carol = world.xmppClient("carol")
    offer = ("<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1' "
             "initiator='%s'><content creator='initiator' name='link'>"
             "<description xmlns='urn:x-bytestreamd:jingle:link:0'/>"
             "<transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='ibb1' "
             "block-size='4096'/></content></jingle>" % carol.jid.full())
    assert _rawJingle(carol, bob.jid.full(), offer)["type"] == "result"
    event = watch.waitEvent(r"^650 OFFER ")
    assert event.options["negotiation"] == "jingle"
    # session-accept sent to the responder: out-of-order
    answer = _rawJingle(carol, bob.jid.full(), offer.replace("session-initiate",
                                                             "session-accept"))
    assert set(_jingleError(answer)) >= {"unexpected-request", "out-of-order"}
    # a second session-initiate for the same sid: out-of-order
    answer = _rawJingle(carol, bob.jid.full(), offer)
    assert set(_jingleError(answer)) >= {"unexpected-request", "out-of-order"}
    # malformed: bad-request
    answer = _rawJingle(carol, bob.jid.full(),
                        "<jingle xmlns='urn:xmpp:jingle:1' action='nonsense' sid='x'/>")
    assert "bad-request" in _jingleError(answer)
    # an IBB open for a sid nobody authorized: not-acceptable
    watch.expect("ACCEPT %s" % event.words[1])
    opened = _rawIBBOpen(carol, bob.jid.full(), "other", 4096)
    assert "not-acceptable" in _jingleError(opened)
    # a mismatching block-size for the authorized sid: resource-constraint
    opened = _rawIBBOpen(carol, bob.jid.full(), "ibb1", 8192)
    assert "resource-constraint" in _jingleError(opened)
    opened = _rawIBBOpen(carol, bob.jid.full(), "ibb1", 4096)
    assert opened["type"] == "result"
    good = watch.waitLinkState(event.words[1], ("GOOD", "BAD", "ERR"))
    assert good.words[2] == "GOOD" and good.options["method"] == "ibb"


def _rawIBBOpen(client, to, sid, blockSize):
    from twisted.words.xish import domish
    iq = domish.Element((None, "iq"))
    iq["type"] = "set"
    iq["to"] = to
    o = iq.addElement(("http://jabber.org/protocol/ibb", "open"))
    o["sid"], o["block-size"], o["stanza"] = sid, str(blockSize), "iq"
    return client.request(iq)


def test_smaller_block_size_in_session_accept_is_honoured(world):
    alice = world.daemon("alice", allow="bob@%s" % world.domain, methods="ibb")
    bob = world.daemon("bob", allow="alice@%s" % world.domain, methods="ibb")
    bob.jingle.method("ibb").maxBlockSize = 2048
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(
        world, alice, bob, "ibb", " block-size=16384")
    [(_, accept)] = _jingleSets(world, "session-accept")
    content = next(accept.elements("urn:xmpp:jingle:1", "content"))
    transport = next(content.elements("urn:xmpp:jingle:transports:ibb:1", "transport"))
    assert transport["block-size"] == "2048"
    [(_, initiate)] = _jingleSets(world, "session-initiate")
    assert 'block-size="16384"' in initiate.toXml() or "block-size='16384'" in initiate.toXml()
    opens = world.router.routed("iq", child="{http://jabber.org/protocol/ibb}open")
    assert [r.element.firstChildElement()["block-size"] for r in opens] == ["2048"]
    data = payload(23, 50000)
    a.write(data)
    assert b.waitReceived(len(data)) == data


def test_crossing_initiates_for_different_services_both_happen(world):
    """Not a tie: two links to different services are two sessions (soak)."""
    alice, bob = daemons(world, "ibb")
    ctlA, ctlB = world.control(alice, watch=True), world.control(bob, watch=True)
    remove = world.router.addFilter(
        lambda stanza, sender, to: 1.0 if sender.full() == alice.jid.full()
        and stanza.getAttribute("type") == "set"
        and any(c.uri == "urn:xmpp:jingle:1" for c in stanza.elements()) else None)
    linkA = ctlA.expect("OPEN %s methods=ibb service=one" % bob.jid.full()).get("link")
    linkB = ctlB.expect("OPEN %s methods=ibb service=two" % alice.jid.full()).get("link")
    world.advance(3)
    remove()
    for ctl in (ctlA, ctlB):
        offer = ctl.waitEvent(r"^650 OFFER ")
        ctl.expect("ACCEPT %s" % offer.words[1])
    assert settled(ctlA, linkA).words[2] == "GOOD"
    assert settled(ctlB, linkB).words[2] == "GOOD"
    assert not [e for c, l in ((ctlA, linkA), (ctlB, linkB)) for e in c.linkEvents(l)
                if e.words[2] == "BAD"]


def test_simultaneous_initiate_is_a_tie_break(world):
    alice, bob = daemons(world, "ibb")
    ctlA, ctlB = world.control(alice, watch=True), world.control(bob, watch=True)
    # Hold alice's session-initiate a second so that bob's crosses it.
    # (Every Jingle request of alice is held as long: XMPP keeps order.)
    remove = world.router.addFilter(
        lambda stanza, sender, to: 1.0 if sender.full() == alice.jid.full()
        and stanza.getAttribute("type") == "set"
        and any(c.uri == "urn:xmpp:jingle:1" for c in stanza.elements()) else None)
    linkA = ctlA.expect("OPEN %s methods=ibb" % bob.jid.full()).get("link")
    linkB = ctlB.expect("OPEN %s methods=ibb" % alice.jid.full()).get("link")
    world.advance(3)
    remove()
    bads = [e for c, l in ((ctlA, linkA), (ctlB, linkB)) for e in c.linkEvents(l)
            if e.words[2] == "BAD"]
    # One of the two crossing session-initiates lost and its OPEN says so;
    # the winner's is an ordinary offer on the other side, which completes.
    assert len(bads) == 1 and "tie-break" in bads[0].options["reason"], bads
    loserIsAlice = bads[0].words[1] == linkA
    winnerCtl, winnerLink = (ctlB, linkB) if loserIsAlice else (ctlA, linkA)
    other = ctlA if loserIsAlice else ctlB
    offer = other.waitEvent(r"^650 OFFER ")
    assert offer.options["negotiation"] == "jingle"
    other.expect("ACCEPT %s" % offer.words[1])
    assert settled(winnerCtl, winnerLink).words[2] == "GOOD"
    refused = [r for r in world.router.routed("iq")
               if r.element.getAttribute("type") == "error" and "tie-break" in r.element.toXml()]
    withdrawn = _jingleSets(world, "session-terminate")
    # The losing session-initiate was answered tie-break (conflict), or --
    # when it arrived after the winner's was acknowledged -- withdrawn by
    # a session-terminate alternative-session; no offer is left behind.
    assert refused or any("alternative-session" in j.toXml() for _, j in withdrawn)
    world.advance(2)
    # one link each side (the winner's), no offer left pending
    assert len(ctlA.expect("LINKS").rows()) == len(ctlB.expect("LINKS").rows()) == 1
    assert len(alice.jingle._live) == len(bob.jingle._live) == 1


class _Collect:
    """A protocol that keeps what it receives and knows when it ended."""

    def __init__(self):
        self.received = bytearray()
        self.ended = None
        self.transport = None

    def makeConnection(self, transport):
        self.transport = transport

    def dataReceived(self, data):
        self.received.extend(data)

    def connectionLost(self, reason):
        self.ended = reason


def test_several_ibb_sessions_in_one_jingle_session(world):
    # XEP-0261 section 2.4, at the negotiator: transport-info authorizes
    # each further IBB session; each is opened, used and closed on its own.
    alice, bob = daemons(world, "ibb")
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(world, alice, bob, "ibb")
    [mine] = alice.jingle._controls.values()
    [theirs] = bob.jingle._controls.values()
    arrived = []
    theirs.onExtraStream = arrived.append
    results = []
    for i in range(3):
        mine.addStream().addCallbacks(results.append, results.append)
    world.runUntil(lambda: len(results) == 3 and len(arrived) == 3, 10, "three streams")
    assert all(not hasattr(r, "value") for r in results), results
    sids = {s.sid for s in results}
    assert len(sids) == 3 and sids == {s.sid for s in arrived}
    assert {s.sessionId for s in results + arrived} == {mine.sid}
    assert len(_jingleSets(world, "session-initiate")) == 1
    assert len(_jingleSets(world, "transport-info")) == 3
    # each carries its own bytes both ways and ends on its own
    byId = {s.sid: s for s in arrived}
    pairs = []
    for i, s in enumerate(sorted(results, key=lambda s: s.sid)):
        here, there = _Collect(), _Collect()
        s.attachProtocol(here)
        byId[s.sid].attachProtocol(there)
        s.write(payload(40 + i, 20000 + i))
        byId[s.sid].write(payload(50 + i, 10000 + i))
        pairs.append((s, here, there, i))
    world.advance(1)
    for s, here, there, i in pairs:
        assert bytes(there.received) == payload(40 + i, 20000 + i)
        assert bytes(here.received) == payload(50 + i, 10000 + i)
    first = pairs[0]
    first[0].loseConnection()
    world.advance(1)
    assert first[1].ended is not None and first[2].ended is not None
    assert all(p[1].ended is None and p[2].ended is None for p in pairs[1:])
    # the link itself is untouched
    data = payload(60, 5000)
    a.write(data)
    assert b.waitReceived(len(data)) == data
    ctl.expect("CLOSE %s" % linkA)
    assert ctl.waitLinkState(linkA).words[2] == "CLOS"
    world.advance(2)
    # the session's end closed the other extra streams
    assert all(p[1].ended is not None and p[2].ended is not None for p in pairs)


def test_extra_ibb_session_without_a_listener_is_refused(world):
    alice, bob = daemons(world, "ibb")
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(world, alice, bob, "ibb")
    [mine] = alice.jingle._controls.values()
    results = []
    mine.addStream().addCallbacks(results.append, results.append)
    world.runUntil(lambda: results, 70, "the extra stream's outcome")
    assert hasattr(results[0], "value"), results
    assert "not-acceptable" in str(results[0].value), results[0]


def test_connections_many_twenty_exchanges_one_session(world):
    # Issue 7 part 5: OPEN ... connections=many; 20 concurrent HTTP-like
    # request/response exchanges through one link to a real local server,
    # all correct, one Jingle session.
    from twisted.internet import protocol

    from tests.memory.test_jingle_many import HTTPish

    port = world.listenTCP(protocol.Factory.forProtocol(HTTPish))
    alice = world.daemon("alice", allow="bob@%s" % world.domain, methods="ibb")
    bob = world.daemon("bob", allow="alice@%s" % world.domain, methods="ibb",
                       config={"services": {"web": "tcp:host=127.0.0.1:port=%d" % port}})
    ctl = world.control(alice)
    opened = ctl.expect("OPEN %s service=web connections=many" % bob.jid.full())
    link, path = opened.get("link"), opened.get("socket")
    clients = []
    for i in range(20):  # connections made before GOOD wait for it
        c = world.localClient(alice, path)
        c.write(b"GET /page/%d HTTP/1.0\r\nHost: x\r\n\r\n" % i)
        clients.append(c)
    good = settled(ctl, link)
    assert good.words[2] == "GOOD" and good.options["negotiation"] == "jingle", good
    for i, c in enumerate(clients):
        c.waitEOF(timeout=60)
        request = b"GET /page/%d HTTP/1.0\r\nHost: x" % i
        body = b"you asked: GET /page/%d HTTP/1.0\n" % i + request * 50
        assert bytes(c.received) == (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n"
                                     % len(body) + body), i
    assert len(_jingleSets(world, "session-initiate")) == 1
    assert len(_jingleSets(world, "transport-info")) == 20
    # the link stays up for more, and LINKS says what it is
    rows = {r["link"]: r for r in ctl.expect("LINKS").rows()}
    assert rows[link]["state"] == "GOOD" and rows[link].get("connections") == "many"
    late = world.localClient(alice, path)
    late.write(b"GET /late HTTP/1.0\r\n\r\n")
    late.waitEOF(timeout=30)
    assert b"you asked: GET /late" in bytes(late.received)
    ctl.expect("CLOSE %s" % link)
    assert ctl.waitLinkState(link, timeout=60).words[2] == "CLOS"


def test_connections_many_needs_a_service_there(world):
    alice, bob = daemons(world, "ibb")
    ctl = world.control(alice)
    reply = ctl.command("OPEN %s connections=many" % bob.jid.full())
    assert reply.code == 512 and "service" in reply.text
    link = ctl.expect("OPEN %s service=nothere connections=many" % bob.jid.full()).get("link")
    end = settled(ctl, link)
    assert end.words[2] == "BAD" and "connections=many needs a [services]" in \
        end.options["reason"], end


def test_a_file_goes_by_si_while_jingle_has_no_file_application(world, monkeypatch):
    # Both daemons speak Jingle, but no Jingle translator knows a file
    # (XEP-0234 is registered by negotiation/jingle_file_session.py: taken
    # out for this test): the file offer goes by SI, not BAD.
    from bytestreamd.negotiation import jingle_apps
    from bytestreamd.ns import NS_JINGLE_FT
    monkeypatch.setattr(jingle_apps, "TRANSLATORS",
                        [t for t in jingle_apps.TRANSLATORS if t.namespace != NS_JINGLE_FT])
    monkeypatch.setattr(jingle_apps, "NAMESPACES",
                        [n for n in jingle_apps.NAMESPACES if n != NS_JINGLE_FT])
    alice, bob = daemons(world, "ibb")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=ibb profile=file name=a.txt size=5"
                        % bob.jid.full())
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["negotiation"] == "si" and offer.options["name"] == "a.txt"
    watch.expect("ACCEPT %s" % offer.words[1])
    good = settled(ctl, opened.get("link"))
    assert good.words[2] == "GOOD" and good.options["negotiation"] == "si"
    # and once the features are cached, the same holds
    opened = ctl.expect("OPEN %s methods=ibb profile=file name=b.txt size=5"
                        % bob.jid.full())
    offer = watch.waitEvent(r"^650 OFFER ")
    assert offer.options["negotiation"] == "si"


def test_close_while_negotiating_is_clos(world):
    alice, bob = daemons(world, "ibb")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    link = ctl.expect("OPEN %s methods=ibb" % bob.jid.full()).get("link")
    offer = watch.waitEvent(r"^650 OFFER ")  # never accepted
    ctl.expect("CLOSE %s" % link)
    end = ctl.waitLinkState(link)
    assert end.words[2] == "CLOS", ctl.linkEvents(link)
    world.advance(1)
    # the offer was withdrawn on bob's side (session-terminate cancel)
    assert not alice.jingle._live and not bob.jingle._live
    assert not [r for r in watch.expect("LINKS").rows() if r["link"] == offer.words[1]]


def test_offer_from_a_stranger_is_refused_before_any_ack(world):
    # XEP-0166 section 6.3.2: bob does not communicate with mallory, so
    # mallory's session-initiate gets service-unavailable, no ack, no OFFER.
    bob = world.daemon("bob", allow="alice@%s" % world.domain, methods="ibb")
    mallory = world.daemon("mallory", methods="ibb")
    watch = world.control(bob, watch=True)
    ctl = world.control(mallory)
    link = ctl.expect("OPEN %s methods=ibb" % bob.jid.full()).get("link")
    end = settled(ctl, link)
    assert end.words[2] == "BAD" and end.options["negotiation"] == "jingle", end
    assert "service-unavailable" in end.options["reason"], end
    assert "not allowed" in end.options["reason"], end
    world.advance(1)
    assert not [e for e in watch.pending if e.words[0] == "OFFER"]
    answers = [r for r in world.router.routed("iq") if r.sender == bob.jid.full()
               and r.to == mallory.jid.full() and r.element.getAttribute("type") == "result"
               and not list(r.element.elements())]
    initiate = _jingleSets(world, "session-initiate")
    assert len(initiate) == 1 and not any(
        a.element.getAttribute("id") == initiate[0][0].element.getAttribute("id")
        for a in answers)
    assert not bob.jingle._live


@pytest.mark.parametrize("broken", ["alice", "bob"])
def test_s5b_one_side_unreachable_uses_the_other_sides_candidate(world, broken):
    # XEP-0260 section 2.5 rule 2: one candidate-error, one candidate-used:
    # the used one is nominated, whoever offered it.
    def make(name, peer):
        s5b = {"proxy": "none"}
        if name == broken:
            s5b["advertise"] = "127.0.0.1:9"
        return world.daemon(name, allow="%s@%s" % (peer, world.domain), methods="s5b,ibb",
                            config={"s5b": s5b})
    alice, bob = make("alice", "bob"), make("bob", "alice")
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(world, alice, bob, "s5b,ibb")
    assert goodA.options["method"] == goodB.options["method"] == "s5b"
    assert [e.words[2] for e in ctl.linkEvents(linkA)] == ["INIT", "GOOD"]
    infos = [j for _, j in _jingleSets(world, "transport-info")]
    kinds = sorted(c.name for j in infos for content in j.elements()
                   for t in content.elements() for c in t.elements())
    assert kinds == ["candidate-error", "candidate-used"], kinds
    data = payload(70, 200000)
    a.write(data)
    b.write(data)
    assert b.waitReceived(len(data)) == data and a.waitReceived(len(data)) == data


def test_peer_terminate_without_closing_the_transport_ends_the_link(world):
    # A peer that ends the session but leaves its IBB session open (it
    # failed the application, or forgot): the link does not stay GOOD.
    alice, bob = daemons(world, "ibb")
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(world, alice, bob, "ibb")
    [theirs] = bob.jingle._controls.values()
    # bob's session ends (as if its application failed) while the stream stays
    bob.jingle.perform(theirs.session.terminate("failed-application", "test"))
    end = ctl.waitLinkState(linkA, timeout=3 * 6 + 10)
    assert end.words[2] in ("CLOS", "ERR"), ctl.linkEvents(linkA)


def test_ibb_with_message_stanzas(world):
    alice, bob = daemons(world, "ibb")
    ctl, watch, linkA, linkB, a, b, goodA, goodB = jingleLink(
        world, alice, bob, "ibb", " stanza=message block-size=2048")
    [(_, initiate)] = _jingleSets(world, "session-initiate")
    transport = next(next(initiate.elements("urn:xmpp:jingle:1", "content")).elements(
        "urn:xmpp:jingle:transports:ibb:1", "transport"))
    assert transport.getAttribute("stanza") == "message"
    data = payload(80, 30000)
    a.write(data)
    assert b.waitReceived(len(data)) == data
    carried = world.router.routed("message", child="{http://jabber.org/protocol/ibb}data")
    assert carried and not world.router.routed(
        "iq", child="{http://jabber.org/protocol/ibb}data")


def test_connections_many_with_a_socks5_anchor(world):
    # The anchor goes by SOCKS5 (the default order), the connections in-band.
    from twisted.internet import protocol

    class Echo(protocol.Protocol):
        def dataReceived(self, data):
            self.transport.write(data)

        def readConnectionLost(self):
            self.transport.loseConnection()

    port = world.listenTCP(protocol.Factory.forProtocol(Echo))
    alice = world.daemon("alice", allow="bob@%s" % world.domain)
    bob = world.daemon("bob", allow="alice@%s" % world.domain,
                       config={"services": {"echo": "tcp:host=127.0.0.1:port=%d" % port}})
    ctl = world.control(alice)
    opened = ctl.expect("OPEN %s service=echo connections=many" % bob.jid.full())
    link, path = opened.get("link"), opened.get("socket")
    good = settled(ctl, link)
    assert good.words[2] == "GOOD" and good.options["method"] == "s5b", good
    clients = [world.localClient(alice, path) for _ in range(5)]
    for i, c in enumerate(clients):
        c.write(payload(90 + i, 5000 + i))
    for i, c in enumerate(clients):
        assert c.waitReceived(5000 + i) == payload(90 + i, 5000 + i)
    assert len(_jingleSets(world, "transport-info")) >= 5
