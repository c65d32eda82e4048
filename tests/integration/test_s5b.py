"""
SOCKS5 bytestreams (XEP-0065) between two real daemons through a real
Prosody and its proxy65 component, and the fallback to IBB when S5B fails
for real reasons.

Everything stays on loopback: every candidate a test lets a daemon offer is
a 127.0.0.1 address (the harness configures ``[s5b] listen =
127.0.0.1:0``; the proxy65 component announces ``proxy65_address =
127.0.0.1``), so no test ever connects anywhere else.

The failures are real ones, not fakes: a candidate port nobody listens on
(connection refused), a port whose listener never answers the SOCKS5
greeting (timeout), a proxy JID that does not exist on the server, a peer
configured for IBB only, and a peer with no method in common.
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Dict, List, Optional, Tuple

import pytest

from .harness import ControlClient, DaemonProcess, Line, freePort
from .harness.flows import MiB, acceptNextOffer, linkStates, openLink, transferFile
from .harness.transfer import SocketPump, waitForPath, waitGone

#: Link states after which a link is over (BAD only when it says final=yes).
ENDED = ("CLOS", "ERR")

#: Timeout of every test here: two daemons plus (often) a 5 s candidate
#: timeout, on a 2-CPU machine shared with other test runs.
SLOW = 240


def _pair(daemons, alice: Optional[Dict[str, Dict[str, str]]] = None,
          bob: Optional[Dict[str, Dict[str, str]]] = None
          ) -> Tuple[DaemonProcess, DaemonProcess]:
    """
    alice and bob, each accepting the other, with extra config sections.
    XEP-0065 by Stream Initiation unless a test says otherwise (Jingle's
    XEP-0260 is tests/integration/test_jingle.py).
    """
    def si(extra):
        extra = {k: dict(v) for k, v in (extra or {}).items()}
        extra.setdefault("links", {}).setdefault("negotiation", "si")
        return extra
    a = daemons("alice", accept="bob@localhost", extra=si(alice))
    b = daemons("bob", accept="alice@localhost", extra=si(bob))
    return a, b


def _states(events: List[Line]) -> List[Tuple[str, Optional[str]]]:
    """(state, method) of each LINK event, in order."""
    return [(e.words[2], e.options.get("method")) for e in events if len(e.words) > 2]


def _waitOutcome(ctl: ControlClient, linkId: str, timeout: float = 90.0) -> Line:
    """The link's GOOD, or its end (final BAD, CLOS, ERR), whichever comes first."""
    return ctl.waitEvent(
        lambda e: e.words[:2] == ["LINK", linkId] and len(e.words) > 2 and (
            e.words[2] in ("GOOD",) + ENDED
            or (e.words[2] == "BAD" and e.options.get("final") == "yes")),
        timeout)


def _waitEnd(ctl: ControlClient, linkId: str, timeout: float = 30.0) -> Line:
    """The link's CLOS, ERR or final BAD (a fallback's BAD is skipped)."""
    return ctl.waitEvent(
        lambda e: e.words[:2] == ["LINK", linkId] and len(e.words) > 2 and (
            e.words[2] in ENDED
            or (e.words[2] == "BAD" and e.options.get("final") == "yes")),
        timeout)


class Exchange:
    """
    One link opened by alice and accepted by bob, with a Python socket on
    each link socket (``alicePump``, ``bobPump``) reading concurrently.
    """

    def __init__(self, alice: DaemonProcess, bob: DaemonProcess, options: str = "") -> None:
        self.alice, self.bob = alice, bob
        self.bobCtl = bob.control(watch=True)
        self.aliceCtl = alice.control()
        self.aliceLink, self.aliceSocket = openLink(self.aliceCtl, bob.jid, options)
        assert waitForPath(self.aliceSocket, 5), self.aliceSocket
        self.offer, self.bobLink, self.bobSocket = acceptNextOffer(
            self.bobCtl, alice.bareJID, 60)
        assert waitForPath(self.bobSocket, 5), self.bobSocket
        self.alicePump = SocketPump(self.aliceSocket, timeout=120)
        self.bobPump = SocketPump(self.bobSocket, timeout=120)

    @property
    def aliceEvents(self) -> List[Line]:
        return self.aliceCtl.linkEvents(self.aliceLink)

    @property
    def bobEvents(self) -> List[Line]:
        return self.bobCtl.linkEvents(self.bobLink)

    def waitGood(self, method: str, timeout: float = 90.0) -> Line:
        good = _waitOutcome(self.aliceCtl, self.aliceLink, timeout)
        assert good.words[2] == "GOOD", "alice's link never got GOOD: %s" % self.aliceEvents
        assert good.options.get("method") == method, (method, self.aliceEvents)
        bobGood = _waitOutcome(self.bobCtl, self.bobLink, timeout)
        assert bobGood.words[2] == "GOOD", "bob's link never got GOOD: %s" % self.bobEvents
        assert bobGood.options.get("method") == method, (method, self.bobEvents)
        return good

    def sendBothWays(self, there: bytes, back: bytes, bobFirst: bool = False,
                     timeout: float = 120.0) -> None:
        """
        The first side (alice, or bob if ``bobFirst``) sends ``there`` and
        half-closes; the other reads it to EOF, then answers ``back`` and
        half-closes; the first side must still receive all of it.
        """
        first, second = self.alicePump, self.bobPump
        names = ("alice", "bob")
        if bobFirst:
            first, second = second, first
            names = ("bob", "alice")
        for i in range(0, len(there), 65536):
            first.send(there[i:i + 65536])
        first.shutdownWrite()
        assert second.waitEOF(timeout), \
            "%s saw no EOF after %s's half-close (%d of %d bytes)" % (
                names[1], names[0], len(second.received), len(there))
        assert second.error is None, second.error
        assert len(second.received) == len(there)
        assert hashlib.sha256(second.received).digest() == hashlib.sha256(there).digest()
        assert not first.eof.is_set(), (
            "%s's link socket was closed after %s's own EOF (write side shut down): the "
            "read side must stay open for %s's answer. %s events: %s" % (
                names[0], names[0], names[1], names[0],
                self.bobEvents if bobFirst else self.aliceEvents))
        for i in range(0, len(back), 65536):
            second.send(back[i:i + 65536])
        second.shutdownWrite()
        assert first.waitEOF(timeout), \
            "%s never got EOF for %s's answer (%d of %d bytes)" % (
                names[0], names[1], len(first.received), len(back))
        assert first.error is None, first.error
        assert bytes(first.received) == back

    def exchangeThenClose(self, there: bytes, back: bytes, timeout: float = 120.0) -> None:
        """
        Both directions without relying on half-close (IBB has none: a
        local EOF closes the whole link): bob answers first, alice waits for
        all of it, then sends ``there`` and EOF; bob must get every byte.
        """
        for i in range(0, len(back), 65536):
            self.bobPump.send(back[i:i + 65536])
        assert self.alicePump.waitReceived(len(back), timeout), \
            "alice got %d of %d bytes" % (len(self.alicePump.received), len(back))
        for i in range(0, len(there), 65536):
            self.alicePump.send(there[i:i + 65536])
        self.alicePump.shutdownWrite()
        assert self.bobPump.waitEOF(timeout), "bob got %d of %d bytes and no EOF" % (
            len(self.bobPump.received), len(there))
        assert self.alicePump.waitEOF(timeout), "alice's socket never closed"
        assert bytes(self.bobPump.received) == there
        assert bytes(self.alicePump.received) == back

    def waitClosed(self) -> None:
        end = _waitEnd(self.aliceCtl, self.aliceLink)
        assert end.words[2] == "CLOS", "alice: %s" % self.aliceEvents
        end = _waitEnd(self.bobCtl, self.bobLink)
        assert end.words[2] == "CLOS", "bob: %s" % self.bobEvents
        assert waitGone(self.aliceSocket, 5), self.aliceSocket
        assert waitGone(self.bobSocket, 5), self.bobSocket

    def close(self) -> None:
        self.alicePump.close()
        self.bobPump.close()


def _fellBackToIbb(ex: Exchange) -> Line:
    """
    Asserts the S5B-then-IBB sequence on alice's link and returns its (one,
    non-final) ``BAD method=s5b``; then moves data both ways over IBB.
    """
    ex.waitGood("ibb")
    states = _states(ex.aliceEvents)
    assert states[0] == ("INIT", "s5b"), states
    bads = [e for e in ex.aliceEvents if e.words[2] == "BAD"]
    assert len(bads) == 1, "expected exactly one BAD (s5b): %s" % ex.aliceEvents
    bad = bads[0]
    assert bad.options.get("method") == "s5b", bad
    assert bad.options.get("final") != "yes", "the s5b BAD must not be final: %s" % bad
    assert bad.options.get("reason"), "BAD without reason=: %s" % bad
    i = ex.aliceEvents.index(bad)
    assert _states(ex.aliceEvents[i + 1:])[:2] == [("INIT", "ibb"), ("GOOD", "ibb")], \
        ex.aliceEvents
    ex.exchangeThenClose(os.urandom(MiB + 123), os.urandom(MiB // 2 + 7))
    ex.waitClosed()
    return bad


def _targetReason(ex: Exchange, offerer: Line) -> str:
    """
    bob's (the target's) ``BAD method=s5b`` reason: why each candidate
    failed is told there and only there.  alice's (``offerer``) names what
    she offered but never what bob found (issue 8: no port-scan oracle).
    """
    bads = [e for e in ex.bobEvents
            if e.words[2] == "BAD" and e.options.get("method") == "s5b"]
    assert len(bads) == 1, "expected bob's BAD method=s5b: %s" % ex.bobEvents
    theirs = offerer.options["reason"]
    for leak in ("connection refused", "timed out after"):
        assert leak not in theirs, "bob's findings reached alice: %r" % theirs
    return bads[0].options["reason"]


# -- working paths ---------------------------------------------------------------------


@pytest.mark.timeout(SLOW)
def test_direct_s5b_32MiB_sha256(daemons, tmp_path):
    """Only direct candidates (no proxy on either side): GOOD method=s5b, bytes intact."""
    noProxy = {"links": {"methods": "s5b, ibb"}, "s5b": {"proxy": "none"}}
    alice, bob = _pair(daemons, noProxy, noProxy)
    result = transferFile(alice, bob, tmp_path, 32 * MiB, "", "s5b", timeout=150)
    assert _states(result.senderEvents)[0] == ("INIT", "s5b"), result.senderEvents
    assert all(m in (None, "s5b") for _, m in _states(result.senderEvents)), \
        result.senderEvents
    print("S5B direct alice->bob %.1f MiB/s" % result.rate)


@pytest.mark.timeout(SLOW)
def test_proxy_only_s5b_32MiB_sha256(daemons, tmp_path):
    """
    Neither daemon listens, so the only streamhost alice can offer is the
    server's proxy65 (found by disco#items): the link is GOOD over s5b
    through the proxy, bytes intact.
    """
    proxyOnly = {"links": {"methods": "s5b, ibb"}, "s5b": {"listen": "none"}}
    alice, bob = _pair(daemons, proxyOnly, proxyOnly)
    result = transferFile(alice, bob, tmp_path, 32 * MiB, "", "s5b", timeout=150)
    assert all(m in (None, "s5b") for _, m in _states(result.senderEvents)), \
        result.senderEvents
    # the daemon logged what it found, and that is the server's proxy65 at 127.0.0.1
    log = alice.logText()
    assert "proxy.localhost" in log and "127.0.0.1:%d" % alice.prosody.proxyPort in log, \
        alice.logTail(40)
    print("S5B via proxy65 alice->bob %.1f MiB/s" % result.rate)


@pytest.mark.timeout(SLOW)
def test_half_close_over_s5b(daemons):
    """
    Local EOF on an S5B link shuts down the write side only: alice sends and
    half-closes, bob reads to EOF, answers, half-closes, and alice still gets
    every byte of the answer; then both sides end CLOS.
    """
    noProxy = {"links": {"methods": "s5b, ibb"}, "s5b": {"proxy": "none"}}
    alice, bob = _pair(daemons, noProxy, noProxy)
    ex = Exchange(alice, bob)
    try:
        ex.waitGood("s5b")
        there = os.urandom(4 * MiB + 5)
        back = hashlib.sha256(there).digest() + os.urandom(3 * MiB + 11)
        ex.sendBothWays(there, back)
        ex.waitClosed()
        assert "BAD" not in linkStates(ex.aliceCtl, ex.aliceLink), ex.aliceEvents
    finally:
        ex.close()


@pytest.mark.timeout(SLOW)
def test_half_close_other_way_over_s5b(daemons):
    """The same with the accepting side (bob) sending first and half-closing."""
    noProxy = {"links": {"methods": "s5b, ibb"}, "s5b": {"proxy": "none"}}
    alice, bob = _pair(daemons, noProxy, noProxy)
    ex = Exchange(alice, bob)
    try:
        ex.waitGood("s5b")
        ex.sendBothWays(os.urandom(2 * MiB + 1), os.urandom(MiB + 3), bobFirst=True)
        ex.waitClosed()
    finally:
        ex.close()


# -- fallback to IBB ---------------------------------------------------------------------


@pytest.mark.timeout(SLOW)
def test_refused_direct_candidate_falls_back_to_ibb(daemons):
    """
    alice advertises 127.0.0.1:<port> where nobody listens, and no proxy:
    bob's connection is refused, alice reports BAD method=s5b naming that
    candidate and "refused", and the link goes on over IBB by itself.
    """
    dead = freePort()
    alice, bob = _pair(daemons,
                       {"links": {"methods": "s5b, ibb"},
                        "s5b": {"advertise": "127.0.0.1:%d" % dead, "proxy": "none"}},
                       {"links": {"methods": "s5b, ibb"}})
    ex = Exchange(alice, bob)
    try:
        bad = _fellBackToIbb(ex)
        assert "127.0.0.1:%d" % dead in bad.options["reason"], bad
        reason = _targetReason(ex, bad)
        assert "127.0.0.1:%d" % dead in reason, reason
        assert "refused" in reason, reason
    finally:
        ex.close()


@pytest.mark.timeout(SLOW)
def test_silent_direct_candidate_times_out_and_falls_back_to_ibb(daemons):
    """
    alice advertises a port whose listener accepts TCP (the kernel backlog
    does) but never answers the SOCKS5 greeting: bob gives up after its
    candidate timeout, alice's BAD names the candidate and "timed out", and
    the link goes on over IBB.
    """
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        alice, bob = _pair(daemons,
                           {"links": {"methods": "s5b, ibb"},
                            "s5b": {"advertise": "127.0.0.1:%d" % port, "proxy": "none"}},
                           {"links": {"methods": "s5b, ibb"}})
        ex = Exchange(alice, bob)
        try:
            bad = _fellBackToIbb(ex)
            assert "127.0.0.1:%d" % port in bad.options["reason"], bad
            reason = _targetReason(ex, bad)
            assert "127.0.0.1:%d" % port in reason, reason
            assert "timed out" in reason, reason
        finally:
            ex.close()
    finally:
        silent.close()


@pytest.mark.timeout(SLOW)
def test_refused_and_silent_candidates_are_both_named(daemons):
    """Two dead candidates: the one BAD reason names each and why it failed."""
    dead = freePort()
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        alice, bob = _pair(daemons,
                           {"links": {"methods": "s5b, ibb"},
                            "s5b": {"advertise": "127.0.0.1:%d, 127.0.0.1:%d" % (dead, port),
                                    "proxy": "none"}},
                           {"links": {"methods": "s5b, ibb"}})
        ex = Exchange(alice, bob)
        try:
            bad = _fellBackToIbb(ex)
            refused, silentAt = "127.0.0.1:%d" % dead, "127.0.0.1:%d" % port
            assert refused in bad.options["reason"] and silentAt in bad.options["reason"], bad
            reason = _targetReason(ex, bad)
            assert refused in reason and silentAt in reason, reason
            assert "refused" in reason and "timed out" in reason, reason
            # each failure next to its candidate, in the order tried
            first = reason.index(refused)
            second = reason.index(silentAt)
            assert first < second, reason
            assert "refused" in reason[first:second], reason
            assert "timed out" in reason[second:], reason
        finally:
            ex.close()
    finally:
        silent.close()


@pytest.mark.timeout(SLOW)
def test_missing_proxy_falls_back_to_ibb(daemons):
    """
    alice has no direct candidate and her configured proxy JID does not
    exist on the server: S5B fails with a reason naming that proxy, and the
    link goes on over IBB.
    """
    missing = "proxy.nowhere.localhost"
    alice, bob = _pair(daemons,
                       {"links": {"methods": "s5b, ibb"},
                        "s5b": {"listen": "none", "proxy": missing}},
                       {"links": {"methods": "s5b, ibb"}})
    ex = Exchange(alice, bob)
    try:
        bad = _fellBackToIbb(ex)
        reason = bad.options["reason"]
        assert "proxy" in reason, reason
        assert missing in reason, \
            "the BAD reason should name the proxy that failed (%s): %r" % (missing, reason)
    finally:
        ex.close()


@pytest.mark.timeout(SLOW)
def test_peer_with_only_ibb_gets_ibb_directly(daemons):
    """bob only does IBB: alice's link starts with INIT method=ibb, no s5b attempt."""
    alice, bob = _pair(daemons, {"links": {"methods": "s5b, ibb"}},
                       {"links": {"methods": "ibb"}})
    ex = Exchange(alice, bob)
    try:
        ex.waitGood("ibb")
        states = _states(ex.aliceEvents)
        assert states[0] == ("INIT", "ibb"), states
        assert all(m in (None, "ibb") for _, m in states), states
        assert "BAD" not in [s for s, _ in states], states
        assert all(m in (None, "ibb") for _, m in _states(ex.bobEvents)), ex.bobEvents
        ex.exchangeThenClose(os.urandom(MiB), os.urandom(MiB // 3))
        ex.waitClosed()
    finally:
        ex.close()


@pytest.mark.timeout(SLOW)
def test_nothing_in_common_is_final_bad_no_valid_streams(daemons):
    """
    alice only does s5b, bob only ibb: the link fails for good -- either
    OPEN answers 554 at once, or the link ends with a final BAD -- and the
    reason says no-valid-streams. No GOOD, and alice's socket goes away.
    """
    alice, bob = _pair(daemons, {"links": {"methods": "s5b"}},
                       {"links": {"methods": "ibb"}})
    bobWatch = bob.control(watch=True)
    ctl = alice.control()
    reply = ctl.command("OPEN %s" % bob.jid)
    if reply.code == 554:
        assert "no-valid-streams" in " ".join(reply.lines), reply
        return
    assert reply.code == 250, reply
    linkId, path = reply.get("link"), reply.get("socket")
    end = _waitOutcome(ctl, linkId, 60)
    events = ctl.linkEvents(linkId)
    assert end.words[2] == "BAD" and end.options.get("final") == "yes", events
    assert "no-valid-streams" in end.options.get("reason", ""), \
        "the final BAD should name the XEP-0095 condition no-valid-streams: %s" % end
    assert "GOOD" not in linkStates(ctl, linkId), events
    assert waitGone(path, 5), "socket %s left after the final BAD" % path
    # bob was never asked: no offer reached its watchers
    offers = [e for e in bobWatch.pollEvents(0.5) + bobWatch.events
              if e.words[:1] == ["OFFER"]]
    assert offers == [], "bob got an offer it cannot take: %s" % offers
