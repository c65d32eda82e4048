"""
Two federated Prosody servers (harness/federation.py): s2s works with
verified certificates and a hosts file of the test's own, and what a client
sees when the *other* server crashes or hangs, or the peer's client dies,
is measured here -- the daemon's liveness design (issue 6, case g) rests on
these facts, which the harness module docstring lists.
"""

from __future__ import annotations

import re
import time

import pytest

from .fixtures_federation import (  # noqa: F401 (pytest finds them by name)
    federationDaemonsFixture, federationFixture, sessionFederationFixture)
from .harness import RawXMPPClient, XMPPError, attr, errorCondition
from .harness.federation import PING, Federation, FederationError
from .harness.flows import acceptNextOffer, openLink, transferFile
from .harness.transfer import SocketPump, ThrottledWriter, waitGone

pytestmark = pytest.mark.timeout(60)

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _errorElement(stanza: str) -> str:
    m = re.search(r"<error\b.*?</error>", stanza, re.S)
    assert m, stanza
    return m.group(0)


def _errorBy(stanza: str):
    return attr(_errorElement(stanza), "by")


def _errorType(stanza: str):
    return attr(_errorElement(stanza), "type")


def _presences(client: RawXMPPClient, seconds: float, of: str):
    """Presence stanzas from ``of`` (bare JID) arriving within ``seconds``."""
    client.poll(seconds)
    return [s for s in client.queue
            if s.startswith("<presence") and (attr(s, "from") or "").startswith(of)]


def _pair(federation, **bobOptions):
    """alice@a.test/r and bob@b.test/r, bob having sent alice directed presence."""
    alice = federation.client("alice@a.test/r")
    bob = federation.client("bob@b.test/r", **bobOptions)
    bob.send("<presence to='%s'/>" % alice.jid)
    alice.waitFor(lambda s: s.startswith("<presence") and attr(s, "from") == bob.jid)
    return alice, bob


def _pingAnswered(alice: RawXMPPClient, bob: RawXMPPClient) -> str:
    """alice pings bob's full JID; bob (single-threaded) reads it and auto-answers."""
    qid = alice.iq("get", bob.jid, PING)
    bob.waitFor(lambda s: attr(s, "id") == qid)
    return alice.waitForId(qid)


def _timedRequest(client: RawXMPPClient, to: str, timeout: float):
    started = time.monotonic()
    reply = client.request("get", to, PING, timeout)
    return reply, time.monotonic() - started


# -- the federation itself ------------------------------------------------------


def test_hosts_file_and_s2s_configuration(federation):
    """Names come from the harness's hosts file through lua-unbound; s2s on :5269."""
    with open(federation.hostsPath) as f:
        hosts = f.read().split("\n")
    assert "127.0.0.2 a.test proxy.a.test" in hosts
    assert "127.0.0.3 b.test proxy.b.test" in hosts
    for domain, address in (("a.test", "127.0.0.2"), ("b.test", "127.0.0.3")):
        server = federation[domain]
        assert server.address == address and server.caPath == federation.caPath
        with open(server.configPath) as f:
            config = f.read()
        assert 'unbound = { hoststxt = "%s" }' % federation.hostsPath in config
        assert "s2s_ports = { 5269 }" in config
        assert "s2s_secure_auth = true" in config
    with open("/etc/hosts") as f:
        assert "a.test" not in f.read(), "the machine's /etc/hosts must not be used"
    # both s2s directions were established and authenticated by certificate
    log = open(federation["a.test"].logPath).read()
    assert "Outgoing s2s connection a.test->b.test complete" in log
    assert "Incoming s2s connection b.test->a.test complete" in log


def test_message_and_iq_across_s2s(federation):
    alice, bob = _pair(federation, answerIQs=False)
    with alice, bob:
        assert alice.jid == "alice@a.test/r" and bob.jid == "bob@b.test/r"
        alice.message(bob.jid, "hi bob", stanzaId="fm1")
        msg = bob.waitFor(r"^<message[^>]*id=['\"]fm1['\"]")
        assert attr(msg, "from") == alice.jid and "hi bob" in msg
        bob.message(alice.jid, "hi alice", stanzaId="fm2")
        msg = alice.waitFor(r"^<message[^>]*id=['\"]fm2['\"]")
        assert attr(msg, "from") == bob.jid

        qid = alice.iq("get", bob.jid, "<query xmlns='urn:test:federation'/>")
        got = bob.waitFor(lambda s: attr(s, "id") == qid)
        assert attr(got, "from") == alice.jid and attr(got, "type") == "get"
        bob.send("<iq type='result' to='%s' id='%s'><query xmlns='urn:test:federation'>"
                 "<ok/></query></iq>" % (alice.jid, qid))
        reply = alice.waitForId(qid)
        assert attr(reply, "type") == "result" and "<ok/>" in reply
        assert attr(reply, "from") == bob.jid

        # and the other way, answered by alice's client (answerIQs, the default)
        qid = bob.iq("get", alice.jid, "<query xmlns='urn:test:unknown'/>")
        alice.waitFor(lambda s: attr(s, "id") == qid)
        err = bob.waitForId(qid)
        assert errorCondition(err) == "service-unavailable" and attr(err, "from") == alice.jid


def test_second_federation_on_the_same_addresses_is_refused(federation, tmp_path):
    """Port 5269 is fixed: a second federation fails clearly, starting nothing."""
    other = Federation(tmp_path / "other")
    try:
        with pytest.raises(FederationError, match=r"127\.0\.0\.2:5269 is not free"):
            other.start()
        assert not any(server.running for server in other.servers.values())
    finally:
        other.close()
    federation.waitLinked(5)  # the running one is undisturbed


def test_s2s_refuses_a_certificate_from_another_ca(tmp_path):
    """
    s2s_secure_auth is real: a server whose certificate another CA signed is
    refused both ways (other addresses, so the session federation may run).
    """
    rogue = Federation(tmp_path / "rogue",
                       servers=[("a.test", "127.0.0.4"), ("evil.test", "127.0.0.5")],
                       accounts={"a.test": ["alice"], "evil.test": ["eve"]},
                       untrusted=["evil.test"])
    try:
        rogue.start(link=False)
        with rogue.client("alice@a.test/r") as alice:
            reply = alice.request("get", "eve@evil.test/x", PING, 15)
        assert attr(reply, "type") == "error", reply
        assert errorCondition(reply) == "remote-server-timeout", reply
        assert "certificate is not trusted" in reply
        assert _errorBy(reply) == "a.test"
        log = open(rogue["a.test"].logPath).read()
        assert "Forbidding insecure connection to/from evil.test" in log
    finally:
        rogue.close()


# -- measured facts for the daemon's liveness design ----------------------------


def test_peer_server_crash(federation):
    """
    b.test is SIGKILLed: alice's IQ to bob's full JID is answered at once
    by a.test with remote-server-not-found (from= bob's full JID, by=a.test);
    no unavailable presence for bob ever reaches alice. After b.test is back
    (bob not logged in again) the answer is service-unavailable from bob's
    full JID, written by b.test, with no by= -- indistinguishable from a
    client's own "I don't do that".
    """
    alice, bob = _pair(federation)
    with alice:
        assert attr(_pingAnswered(alice, bob), "type") == "error"  # bob is alive
        federation.crash("b.test")
        bob.sock.close()
        bob.sock = None

        reply, seconds = _timedRequest(alice, bob.jid, 10)
        assert attr(reply, "type") == "error", reply
        assert errorCondition(reply) == "remote-server-not-found", reply
        assert attr(reply, "from") == bob.jid
        assert _errorBy(reply) == "a.test" and _errorType(reply) == "cancel", reply
        assert "connection refused" in reply
        assert seconds < 2.0, "took %.2fs" % seconds
        print("crash: %s after %.3fs" % (reply, seconds))

        server, _ = _timedRequest(alice, "b.test", 10)
        assert errorCondition(server) == "remote-server-not-found", server

        assert _presences(alice, 3.0, "bob@b.test") == [], alice.queue

        federation.restart("b.test")
        reply, seconds = _timedRequest(alice, bob.jid, 10)
        assert errorCondition(reply) == "service-unavailable", reply
        assert attr(reply, "from") == bob.jid and _errorBy(reply) is None, reply
        assert seconds < 2.0, "took %.2fs" % seconds


def test_peer_client_killed(federation):
    """
    bob's client dies (socket closed without </stream>), b.test is up:
    b.test sends alice an unavailable presence from bob's full JID (because
    bob had sent her directed presence), and an IQ to bob's full JID is
    answered service-unavailable from bob's full JID, no by= -- the same
    error element as bob's own client sends for an IQ it does not handle.
    """
    alice, bob = _pair(federation)
    with alice:
        ownAnswer = _pingAnswered(alice, bob)  # bob's client: service-unavailable
        assert errorCondition(ownAnswer) == "service-unavailable"
        assert attr(ownAnswer, "from") == bob.jid

        bob.sock.close()
        bob.sock = None
        gone = alice.waitFor(lambda s: s.startswith("<presence")
                             and attr(s, "from") == bob.jid, 5)
        assert attr(gone, "type") == "unavailable", gone

        reply, seconds = _timedRequest(alice, bob.jid, 10)
        assert errorCondition(reply) == "service-unavailable", reply
        assert attr(reply, "from") == bob.jid and _errorBy(reply) is None, reply
        assert _errorType(reply) == "cancel"
        assert seconds < 2.0
        assert _errorElement(reply) == _errorElement(ownAnswer), (reply, ownAnswer)


def test_peer_server_frozen(federation):
    """
    b.test hangs (SIGSTOP; a dead host or a partition looks the same): the
    s2s connection stays open, alice's IQ gets no answer at all and no
    presence comes. Once b.test resumes, the held IQ is delivered late.
    """
    alice, bob = _pair(federation)
    with alice:
        federation.freeze("b.test")
        try:
            qid = alice.iq("get", bob.jid, PING)
            with pytest.raises(XMPPError, match="no stanza matching"):
                alice.waitForId(qid, 5.0)
            assert _presences(alice, 0.1, "bob@b.test") == [], alice.queue
        finally:
            federation.thaw("b.test")
        late = bob.waitFor(lambda s: attr(s, "id") == qid, 10)
        assert attr(late, "from") == alice.jid
        assert errorCondition(alice.waitForId(qid, 10)) == "service-unavailable"
        bob.close()


# -- bytestreamd on the federation ----------------------------------------------


def test_ibb_link_between_daemons_on_two_servers(federationDaemons, tmp_path):
    """alice@a.test and bob@b.test each on their own server: an IBB link both ways."""
    alice = federationDaemons("alice@a.test", accept="bob@b.test")
    bob = federationDaemons("bob@b.test", accept="alice@a.test")
    assert alice.sections["xmpp"]["host"] == "127.0.0.2"
    assert bob.sections["xmpp"]["host"] == "127.0.0.3"
    there = transferFile(alice, bob, tmp_path, 256 * 1024, "methods=ibb", "ibb", timeout=40)
    back = transferFile(bob, alice, tmp_path, 64 * 1024, "methods=ibb", "ibb", timeout=40)
    assert there.receiverEvents and back.receiverEvents


# -- issue 6 case g on the real tier --------------------------------------------


def _bobSendsToAlice(federationDaemons, peerTimeout: float):
    """
    bob@b.test's daemon sends to alice@a.test's over IBB (a throttled writer
    keeps data flowing); returns once alice has received some of it.
    """
    extra = {"links": {"peer_timeout": "%g" % peerTimeout}}
    alice = federationDaemons("alice@a.test", accept="bob@b.test", extra=extra)
    bob = federationDaemons("bob@b.test", accept="alice@a.test", extra=extra)
    aliceWatch = alice.control(watch=True)
    bobCtl = bob.control(watch=True)
    bobLink, bobPath = openLink(bobCtl, alice.jid, "methods=ibb")
    writer = ThrottledWriter(bobPath)
    _, aliceLink, alicePath = acceptNextOffer(aliceWatch, bob.bareJID)
    reader = SocketPump(alicePath)
    good = bobCtl.waitLinkState(bobLink, ("GOOD", "BAD", "ERR", "CLOS"), 30)
    assert good.words[2] == "GOOD", bobCtl.linkEvents(bobLink)
    assert reader.waitReceived(64 * 1024, 30), "no data reached alice"
    return alice, bob, aliceWatch, aliceLink, alicePath, writer, reader


def test_case_g_receiver_learns_its_peers_server_crashed(federation, federationDaemons):
    """
    b.test crashes (and stays down) while bob sends to alice: alice's link,
    which only receives, ends ERR within peer_timeout, and her local client
    gets EOF. (The probe is answered remote-server-not-found by a.test.)
    """
    peerTimeout = 6.0
    alice, bob, aliceWatch, aliceLink, alicePath, writer, reader = \
        _bobSendsToAlice(federationDaemons, peerTimeout)
    try:
        crashed = time.monotonic()
        federation.crash("b.test")
        end = aliceWatch.waitLinkState(aliceLink, ("ERR", "CLOS", "BAD"), peerTimeout + 10)
        seconds = time.monotonic() - crashed
        assert end.words[2] == "ERR" and end.options.get("reason"), \
            aliceWatch.linkEvents(aliceLink)
        assert seconds <= peerTimeout + 3, "ERR only after %.1fs" % seconds
        print("case g, server down: %s after %.1fs" % (end, seconds))
        assert reader.waitEOF(10), "alice's local client was not closed"
        assert waitGone(alicePath, 10), "alice's link socket left behind"
    finally:
        writer.stop()
        reader.close()


def test_case_g_receiver_learns_its_peer_restarted(federation, federationDaemons):
    """
    b.test crashes and comes straight back; bob's daemon reconnects (same
    full JID, bob@b.test/daemon) before alice's first probe -- it has
    forgotten the link. alice's link must still end ERR within peer_timeout
    (+ one probe interval) of the crash.
    """
    peerTimeout = 15.0
    alice, bob, aliceWatch, aliceLink, alicePath, writer, reader = \
        _bobSendsToAlice(federationDaemons, peerTimeout)
    try:
        crashed = time.monotonic()
        federation.crash("b.test")
        federation.restart("b.test")
        bob.waitConnected(10)
        back = time.monotonic() - crashed
        # The scenario needs bob back before alice's first probe (at
        # peer_timeout/3 of silence); else the probe meets the gap and is
        # answered remote-server-not-found, which is the case above.
        assert back < peerTimeout / 3, "bob took %.1fs to come back" % back
        end = aliceWatch.waitLinkState(aliceLink, ("ERR", "CLOS", "BAD"),
                                       peerTimeout + peerTimeout / 3 - back)
        assert end.words[2] == "ERR", aliceWatch.linkEvents(aliceLink)
        assert reader.waitEOF(10)
    finally:
        writer.stop()
        reader.close()
