"""
Issue 6, "every state bounded": for each state a link can be in -- NEGO,
OFFER, INIT, GOOD without a local client, GOOD with one, closing -- a
``CLOSE`` ends it with a final event (``CLOS``, ``ERR`` or ``BAD
final=yes``) on *both* daemons within a bounded time of fake clock, for
both negotiations (SI, Jingle) and both methods (IBB, SOCKS5).

The bounds are the documented ones (docs/control-protocol.rst): an
established link ends at once when the peer answers (here: within a few
seconds, far below ``peer_timeout``); a peer that does not answer any more
bounds a closing link by ``peer_timeout``; an offer the peer cannot
withdraw (SI has no way to) by ``offer_timeout``, a stalled attempt by
``attempt_timeout``.  An offer that ends un-accepted says so
(``BAD final=yes``), so no link id a watcher saw is left without a last event.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import pytest

from tests.memory.router import DROP
from tests.memory.test_truth import good, payload
from tests.memory.world import World

PEER_TIMEOUT = 60
OFFER_TIMEOUT = 20
ATTEMPT_TIMEOUT = 15
#: An established link whose peer answers ends within this (IBB's EOF
#: grace is 2 s): far below peer_timeout.
AT_ONCE = 5

NS_IBB = "http://jabber.org/protocol/ibb"
NS_S5B = "http://jabber.org/protocol/bytestreams"
NS_JINGLE = "urn:xmpp:jingle:1"

FINAL = ("CLOS", "ERR")


def isFinal(event) -> bool:
    return len(event.words) > 2 and (event.words[2] in FINAL or (
        event.words[2] == "BAD" and event.options.get("final") == "yes"))


def pair(world: World, method: str, negotiation: str):
    links = {"peer_timeout": PEER_TIMEOUT, "offer_timeout": OFFER_TIMEOUT,
             "attempt_timeout": ATTEMPT_TIMEOUT, "negotiation": negotiation}
    alice = world.daemon("alice", allow="bob@%s" % world.domain, methods=method,
                         config={"links": links})
    bob = world.daemon("bob", allow="alice@%s" % world.domain, methods=method,
                       config={"links": links})
    return alice, bob


def state(ctl, linkId: str) -> Optional[str]:
    for row in ctl.expect("LINKS").rows():
        if linkId in row.values():
            return row.get("state")
    return None


def finalWithin(ctl, linkId: str, seconds: float):
    """The link's final event, which must come within ``seconds`` of fake time."""
    started = ctl.world.now()
    event = ctl.waitEvent(lambda e: e.words[:2] == ["LINK", linkId] and isFinal(e),
                          timeout=seconds + 0.001)
    assert ctl.world.now() - started <= seconds, (event, ctl.world.now() - started)
    return event


def oneFinal(ctl, linkId: str) -> None:
    """Exactly one final event, ever."""
    finals = [e for e in ctl.linkEvents(linkId) if isFinal(e)]
    assert len(finals) == 1, ctl.linkEvents(linkId)


def stalls(method: str) -> Callable:
    """A router filter that keeps the transport from coming up: INIT stays INIT."""
    def f(stanza, sender, to):
        if stanza.name != "iq":
            return None
        for child in stanza.elements():
            if method == "ibb" and (child.uri, child.name) == (NS_IBB, "open"):
                return DROP
            if method == "s5b" and (child.uri, child.name) == (NS_S5B, "query"):
                return DROP
            if (child.uri, child.name) == (NS_JINGLE, "jingle") \
                    and child.getAttribute("action") == "transport-info":
                return DROP
        return None
    return f


NEGOTIATIONS = ["si", "jingle"]
METHODS = ["ibb", "s5b"]
both = pytest.mark.parametrize("negotiation,method",
                               [(n, m) for n in NEGOTIATIONS for m in METHODS])


@both
def test_nego_close_at_the_opener(world, negotiation, method):
    alice, bob = pair(world, method, negotiation)
    ctl, watch = world.control(alice, watch=True), world.control(bob, watch=True)
    linkA = ctl.expect("OPEN %s methods=%s" % (bob.jid.full(), method)).get("link")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    assert state(ctl, linkA) == "NEGO"
    ctl.expect("CLOSE %s" % linkA)
    mine = finalWithin(ctl, linkA, AT_ONCE)
    assert mine.words[2] == "CLOS" and mine.options["reason"] == "closed by local request"
    # Jingle withdraws the offer (session-terminate); SI cannot: it expires.
    theirs = finalWithin(watch, linkB, AT_ONCE if negotiation == "jingle"
                         else OFFER_TIMEOUT + 1)
    assert theirs.words[2] == "BAD" and "offer ended" in theirs.options["reason"], theirs
    assert not [r for r in watch.expect("LINKS").rows() if linkB in r.values()]
    world.advance(OFFER_TIMEOUT + 10)
    oneFinal(ctl, linkA), oneFinal(watch, linkB)


@both
def test_offer_close_at_the_receiver(world, negotiation, method):
    alice, bob = pair(world, method, negotiation)
    ctl, watch = world.control(alice, watch=True), world.control(bob, watch=True)
    linkA = ctl.expect("OPEN %s methods=%s" % (bob.jid.full(), method)).get("link")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    assert state(watch, linkB) == "OFFER"
    watch.expect("CLOSE %s" % linkB)
    theirs = finalWithin(watch, linkB, AT_ONCE)
    assert theirs.words[2] == "CLOS" and theirs.options["reason"] == "closed by local request"
    mine = finalWithin(ctl, linkA, AT_ONCE)
    assert mine.words[2] == "BAD" and mine.options.get("final") == "yes", mine
    world.advance(OFFER_TIMEOUT + 10)
    oneFinal(ctl, linkA), oneFinal(watch, linkB)


@both
def test_offer_reject_and_expiry_say_so(world, negotiation, method):
    # REJECT: BAD final=yes with its reason on this side too; an offer
    # nobody answers: BAD final=yes after offer_timeout.
    alice, bob = pair(world, method, negotiation)
    ctl, watch = world.control(alice, watch=True), world.control(bob, watch=True)
    first = ctl.expect("OPEN %s methods=%s" % (bob.jid.full(), method)).get("link")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    watch.expect("REJECT %s reason=nope" % linkB)
    rejected = finalWithin(watch, linkB, AT_ONCE)
    assert rejected.words[2] == "BAD" and rejected.options["reason"] == "nope", rejected
    assert finalWithin(ctl, first, AT_ONCE).words[2] == "BAD"
    second = ctl.expect("OPEN %s methods=%s" % (bob.jid.full(), method)).get("link")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    expired = finalWithin(watch, linkB, OFFER_TIMEOUT + 1)
    assert expired.words[2] == "BAD" and "timed out" in expired.options["reason"], expired
    assert finalWithin(ctl, second, OFFER_TIMEOUT + 15).words[2] == "BAD"


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
def test_init_close(world, negotiation, method, closer):
    alice, bob = pair(world, method, negotiation)
    ctl, watch = world.control(alice, watch=True), world.control(bob, watch=True)
    world.router.addFilter(stalls(method))
    linkA = ctl.expect("OPEN %s methods=%s" % (bob.jid.full(), method)).get("link")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    watch.expect("ACCEPT %s" % linkB)
    world.advance(1)
    assert (state(ctl, linkA), state(watch, linkB)) == ("INIT", "INIT"), (
        ctl.linkEvents(linkA), watch.linkEvents(linkB))
    closing, closeId = (ctl, linkA) if closer == "alice" else (watch, linkB)
    closing.expect("CLOSE %s" % closeId)
    closed = finalWithin(closing, closeId, AT_ONCE)
    assert closed.words[2] == "CLOS" and closed.options["reason"] == "closed by local request"
    other, otherId = (watch, linkB) if closer == "alice" else (ctl, linkA)
    # The peer learns by the negotiation's end (Jingle's session-terminate)
    # or, SI having no such thing, when its attempt runs out.
    finalWithin(other, otherId, ATTEMPT_TIMEOUT + 1)
    world.advance(PEER_TIMEOUT)
    oneFinal(ctl, linkA), oneFinal(watch, linkB)


def establish(world, negotiation, method, clients):
    alice, bob = pair(world, method, negotiation)
    ctl, watch, linkA, linkB, a, b = good(world, alice, bob, method, clients=clients)
    goodA = [e for e in ctl.linkEvents(linkA) if e.words[2] == "GOOD"][-1]
    assert goodA.options["negotiation"] == negotiation, goodA
    return alice, bob, ctl, watch, linkA, linkB, a, b


def assertClosedAtOnce(world, ctl, watch, linkA, linkB, closer, confirmed=True):
    closing, closeId = (ctl, linkA) if closer == "alice" else (watch, linkB)
    other, otherId = (watch, linkB) if closer == "alice" else (ctl, linkA)
    closing.expect("CLOSE %s" % closeId)
    closed = finalWithin(closing, closeId, AT_ONCE)
    theirs = finalWithin(other, otherId, AT_ONCE)
    assert closed.words[2] == "CLOS", closed
    assert closed.options["reason"].startswith("closed by local request"), closed
    if confirmed:
        assert closed.options["confirmed"] == "yes", closed
        assert theirs.words[2] == "CLOS" and theirs.options["confirmed"] == "yes", theirs
    world.advance(PEER_TIMEOUT)
    oneFinal(ctl, linkA), oneFinal(watch, linkB)
    return closed, theirs


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
def test_good_without_local_client_close(world, negotiation, method, closer):
    alice, bob, ctl, watch, linkA, linkB, pathA, pathB = establish(
        world, negotiation, method, clients=False)
    assert (state(ctl, linkA), state(watch, linkB)) == ("GOOD", "GOOD")
    assertClosedAtOnce(world, ctl, watch, linkA, linkB, closer)


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
@pytest.mark.parametrize("clientOn", ["alice", "bob"])
def test_good_with_one_local_client_close(world, negotiation, method, closer, clientOn):
    # One side's client is there, the other's is not: either side's CLOSE
    # ends both at once.
    alice, bob, ctl, watch, linkA, linkB, pathA, pathB = establish(
        world, negotiation, method, clients=False)
    client = (world.localClient(alice, pathA) if clientOn == "alice"
              else world.localClient(bob, pathB))
    assertClosedAtOnce(world, ctl, watch, linkA, linkB, closer)
    client.waitEOF(AT_ONCE)


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
def test_good_with_local_clients_close(world, negotiation, method, closer):
    alice, bob, ctl, watch, linkA, linkB, a, b = establish(
        world, negotiation, method, clients=True)
    a.write(b"ping")
    assert b.waitReceived(4) == b"ping"
    assertClosedAtOnce(world, ctl, watch, linkA, linkB, closer)
    a.waitEOF(AT_ONCE), b.waitEOF(AT_ONCE)


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
def test_good_with_data_in_flight_close(world, negotiation, method, closer):
    alice, bob, ctl, watch, linkA, linkB, a, b = establish(
        world, negotiation, method, clients=True)
    a.write(payload(30, 2 * 1024 * 1024))
    b.write(payload(31, 2 * 1024 * 1024))
    world.runUntil(lambda: len(b.received) > 0 and len(a.received) > 0, AT_ONCE)
    closed, theirs = assertClosedAtOnce(world, ctl, watch, linkA, linkB, closer,
                                        confirmed=False)
    # Bytes were in flight: whoever did not close may say what was lost.
    assert theirs.words[2] in FINAL, theirs


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
def test_good_with_data_stuck_at_a_reader_that_does_not_read_close(world, negotiation,
                                                                   method, closer):
    # bob's client reads nothing: alice's bytes wait (backpressure, never an
    # error).  A CLOSE on either side still ends both, within peer_timeout
    # (bob does not drop what its own reader may yet read before then).
    alice, bob, ctl, watch, linkA, linkB, a, b = establish(
        world, negotiation, method, clients=True)
    b.stopReading()
    a.write(payload(30, 2 * 1024 * 1024))
    world.advance(1)
    closing, closeId = (ctl, linkA) if closer == "alice" else (watch, linkB)
    closing.expect("CLOSE %s" % closeId)
    mine = finalWithin(ctl, linkA, PEER_TIMEOUT + 1)
    theirs = finalWithin(watch, linkB, PEER_TIMEOUT + 1)
    closed = mine if closer == "alice" else theirs
    assert closed.words[2] == "CLOS", closed
    assert closed.options["reason"].startswith("closed by local request"), closed
    world.advance(PEER_TIMEOUT)
    oneFinal(ctl, linkA), oneFinal(watch, linkB)


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
def test_closing_half_closed_link_close(world, negotiation, method, closer):
    # Closing: alice's client has ended its side (eof sent), bob's has not;
    # the link waits on bob's client.  CLOSE ends it at once.
    alice, bob, ctl, watch, linkA, linkB, a, b = establish(
        world, negotiation, method, clients=True)
    a.write(b"question")
    a.writeEOF()
    b.waitEOF(AT_ONCE)
    assert bytes(b.received) == b"question"
    world.advance(1)
    if method == "s5b":  # IBB has no half-close: its link ends by itself
        assert (state(ctl, linkA), state(watch, linkB)) == ("GOOD", "GOOD")
        assertClosedAtOnce(world, ctl, watch, linkA, linkB, closer)
    else:
        finalWithin(ctl, linkA, AT_ONCE), finalWithin(watch, linkB, AT_ONCE)


@both
def test_closing_with_a_silent_peer_is_bounded_by_peer_timeout(world, negotiation, method):
    # CLOSE, and the peer hears nothing more (its session a black hole):
    # this side ends within peer_timeout (CLOS, confirmed=no); the peer,
    # which hears nothing either, ends ERR by its liveness check.  A second
    # CLOSE while closing changes nothing.
    alice, bob, ctl, watch, linkA, linkB, a, b = establish(
        world, negotiation, method, clients=True)
    world.router.silence(bob.jid.full())
    ctl.expect("CLOSE %s" % linkA)
    world.advance(1)
    assert state(ctl, linkA) == "GOOD"  # closing: waiting for the peer's end
    ctl.expect("CLOSE %s" % linkA)
    mine = finalWithin(ctl, linkA, PEER_TIMEOUT + 1)
    assert mine.words[2] == "CLOS" and mine.options["confirmed"] == "no", mine
    theirs = finalWithin(watch, linkB, 3 * PEER_TIMEOUT)
    assert theirs.words[2] == "ERR", theirs
    oneFinal(ctl, linkA), oneFinal(watch, linkB)


NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_TIMEOUT = 10  # PeerDiscovery's default request timeout


def noDiscoFrom(jid: str) -> Callable:
    """Drop ``jid``'s disco#info requests: its answer never comes."""
    def f(stanza, sender, to):
        if stanza.name == "iq" and stanza.getAttribute("type") == "get" \
                and sender.full() == jid and any(
                (c.uri, c.name) == (NS_DISCO_INFO, "query") for c in stanza.elements()):
            return DROP
        return None
    return f


@both
@pytest.mark.parametrize("closer", ["alice", "bob"])
def test_establishing_close(world, negotiation, method, closer):
    # ESTABLISHING: bob's stream is up but it still waits for alice's disco
    # features (does she confirm ends?) -- bounded by the disco timeout.
    alice, bob = pair(world, method, negotiation)
    unfilter = world.router.addFilter(noDiscoFrom(bob.jid.full()))
    ctl, watch = world.control(alice, watch=True), world.control(bob, watch=True)
    linkA = ctl.expect("OPEN %s methods=%s" % (bob.jid.full(), method)).get("link")
    linkB = watch.waitEvent(r"^650 OFFER ").words[1]
    watch.expect("ACCEPT %s" % linkB)
    world.advance(1)
    from bytestreamd.links import machine as m
    assert bob.manager._links[linkB].machine.phase == m.ESTABLISHING, watch.linkEvents(linkB)
    closing, closeId = (ctl, linkA) if closer == "alice" else (watch, linkB)
    closing.expect("CLOSE %s" % closeId)
    unfilter()  # bob's one request is lost: it learns nothing until its timeout
    closed = finalWithin(closing, closeId, DISCO_TIMEOUT + 1)
    assert closed.words[2] == "CLOS", closed
    assert closed.options["reason"].startswith("closed by local request"), closed
    other, otherId = (watch, linkB) if closer == "alice" else (ctl, linkA)
    theirs = finalWithin(other, otherId, DISCO_TIMEOUT + AT_ONCE)
    if closer == "alice":
        # bob heard alice's end before its link was GOOD: she speaks the
        # end protocol, so the close is confirmed (not a peer_timeout wait).
        assert closed.options["confirmed"] == "yes", closed
        assert theirs.words[2] == "CLOS" and theirs.options["confirmed"] == "yes", theirs
    world.advance(PEER_TIMEOUT)
    oneFinal(ctl, linkA), oneFinal(watch, linkB)
