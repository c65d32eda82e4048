"""
The in-memory XMPP router does what a server does for the daemons: login,
routing with ``from`` set, errors for absent resources, unavailable presence
for ended sessions -- and the failures a test needs: dropped, silenced and
conflicting sessions, a crashed and restarted server, dropped and delayed
stanzas.
"""

from __future__ import annotations

import pytest
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.xmpp.stanzas import RequestTimeout, makeIQ

from tests.integration.harness.daemon import statusSaysConnected
from tests.memory.router import DROP
from tests.memory.world import World

ALICE = "alice@example.test/daemon"
BOB = "bob@example.test/daemon"


def directedPresence(daemon, to: str) -> None:
    """What an in-band link does: tell the peer we are here."""
    presence = domish.Element((None, "presence"))
    presence["to"] = to
    daemon.xmpp.connection.send(presence)


def ping(world: World, daemon, to: str, timeout: float):
    """An XEP-0199 ping from ``daemon``; its result iq or failure."""
    iq = makeIQ("get", JID(to))
    iq.addElement(("urn:xmpp:ping", "ping"))
    outcome = []
    daemon.xmpp.connection.request(iq, timeout).addBoth(outcome.append)
    world.runUntil(lambda: outcome, timeout + 1)
    return outcome[0]


def unavailableTo(world: World, to: str):
    return [r for r in world.router.routed("presence")
            if r.type == "unavailable" and r.to == to]


def test_login_binds_the_configured_resource(world):
    alice = world.daemon("alice")
    assert alice.xmpp.connection.jid.full() == ALICE
    session = world.router.session(ALICE)
    assert session.available and session.priority == -1
    # The client asked for TLS and got a stream that pretends to have it.
    assert session.transport.peer.tlsContext is not None


def test_wrong_password_never_connects(world):
    alice = world.daemon("alice", start=False)
    world.router.accounts["alice@example.test"] = "something else"
    alice.startService()
    world.advance(5)
    assert not alice.xmpp.connected and ALICE not in world.router.sessions


def test_dropped_session_reconnects_and_is_announced(world):
    alice = world.daemon("alice")
    bob = world.daemon("bob")
    watch = world.control(alice, watch=True)
    directedPresence(alice, BOB)
    world.pump()
    world.router.dropSession(ALICE)
    world.pump()
    assert watch.waitEvent(r"^650 SERVER disconnected")
    gone = unavailableTo(world, BOB)
    assert [r.sender for r in gone] == [ALICE]
    watch.waitEvent(r"^650 SERVER connected", timeout=60)
    assert statusSaysConnected(world.control(alice).expect("STATUS"))
    assert bob.xmpp.connected


def test_silenced_session_ends_unannounced(world):
    alice = world.daemon("alice")
    world.daemon("bob")
    directedPresence(alice, BOB)
    world.pump()
    world.router.silence(ALICE)
    ctl = world.control(alice)
    # Nothing alice sends arrives; she learns only by her own timeout.
    started = world.now()
    reply = ctl.command("PROBE %s" % BOB, timeout=60)
    assert reply.code >= 500 and world.now() - started >= 10
    world.kill(alice)
    assert unavailableTo(world, BOB) == []


def test_crash_and_restart(world):
    alice = world.daemon("alice")
    watch = world.control(alice, watch=True)
    world.router.crash()
    watch.waitEvent(r"^650 SERVER disconnected")
    world.advance(60)
    assert not alice.xmpp.connected  # refused while the server is down
    world.router.start()
    watch.waitEvent(r"^650 SERVER connected", timeout=120)
    assert world.router.session(ALICE)


def test_second_session_with_the_same_jid_replaces_the_first(world):
    world.daemon("alice")
    second = world.daemon("alice", start=False)
    second.startService()
    world.runUntil(lambda: second.xmpp.connected, 10)
    assert world.router.session(ALICE).transport.peer.host is second.host


def test_filters_drop_and_delay(world):
    alice = world.daemon("alice")
    world.daemon("bob")
    ctl = world.control(alice)
    remove = world.router.addFilter(
        lambda stanza, sender, to: 4.0 if to is not None and to.full() == BOB else None)
    started = world.now()
    assert ctl.expect("PROBE %s" % BOB)
    assert world.now() - started >= 4.0
    remove()
    world.router.addFilter(lambda stanza, sender, to: DROP if stanza.name == "iq" else None)
    reply = ctl.command("PROBE bob@example.test/other", timeout=60)
    assert reply.code >= 500 and "service-unavailable" not in reply.text
    assert world.router.routed("iq")[-1].action == "dropped"


def test_absent_resource_and_foreign_domain_bounce(world):
    alice = world.daemon("alice")
    ctl = world.control(alice)
    assert "service-unavailable" in ctl.command("PROBE carol@example.test/x").text
    assert "remote-server-not-found" in ctl.command("PROBE carol@elsewhere.test/x").text
    assert "service-unavailable" in ctl.command("PROBE carol@example.test").text
    world.daemon("bob")
    account = ctl.expect("PROBE bob@example.test")  # the server answers for the account
    assert account.get("identities") == "account/registered"


def test_federated_domain_crash(tmp_path):
    """Two domains on one router; b.test's server crashes (issue 6 case g's setting)."""
    world = World(domains=("a.test", "b.test"))
    try:
        alice = world.daemon("alice", jid="alice@a.test/daemon")
        bob = world.daemon("bob", jid="bob@b.test/daemon", allow="alice@a.test")
        watchBob = world.control(bob, watch=True)
        ctl = world.control(alice)
        assert ctl.expect("PROBE bob@b.test/daemon").get("si") == "yes"
        directedPresence(bob, "alice@a.test/daemon")
        world.pump()
        world.router.crashDomain("b.test")
        watchBob.waitEvent(r"^650 SERVER disconnected")
        assert unavailableTo(world, "alice@a.test/daemon") == []
        world.advance(60)
        assert not bob.xmpp.connected  # cannot log in while its server is down
        # (PROBE would answer from alice's disco cache: nothing told her.)
        lost = ping(world, alice, "bob@b.test/daemon", timeout=20)
        assert lost.check(RequestTimeout)  # nobody answered, nothing bounced
        world.router.crashDomain("b.test", bounceAfter=3)
        started = world.now()
        bounced = ping(world, alice, "bob@b.test/daemon", timeout=20)
        assert bounced.value.condition == "remote-server-timeout"
        assert world.now() - started == pytest.approx(3)
        world.router.restoreDomain("b.test")
        world.runUntil(lambda: bob.xmpp.connected, 120)
        assert ctl.expect("PROBE bob@b.test/daemon").get("si") == "yes"
    finally:
        world.close()


def test_plain_xmpp_client_talks_to_a_daemon(world):
    """A peer that is not bytestreamd: a scripted XMPP client."""
    world.daemon("bob")
    carol = world.xmppClient("carol")
    assert world.router.session("carol@example.test/raw")
    iq = makeIQ("get", JID(BOB))
    iq.addElement(("http://jabber.org/protocol/disco#info", "query"))
    answer = carol.request(iq)
    assert answer.getAttribute("type") == "result"
    assert answer.getAttribute("from") == BOB
    features = {f.getAttribute("var") for f in answer.query.elements() if f.name == "feature"}
    assert "http://jabber.org/protocol/ibb" in features


def test_restart_on_the_same_runtime_dir(world):
    alice = world.daemon("alice")
    ctl = world.control(alice)
    ctl.expect("STATUS")
    world.kill(alice)
    assert ctl.closed
    again = world.restart(alice)
    assert again.config.runtime_dir == alice.config.runtime_dir
    assert statusSaysConnected(world.control(again).expect("STATUS"))
