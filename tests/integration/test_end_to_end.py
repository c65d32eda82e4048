"""
Links between two real daemons through a real Prosody, driven through the
control socket and the link sockets exactly as INTERFACE.md describes.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from .harness.flows import MiB, openLink, transferFile
from .harness.transfer import EchoServer, SocketPump, waitForPath, waitGone


def _pair(daemons, **bob):
    alice = daemons("alice", accept="bob@localhost")
    bobDaemon = daemons("bob", accept="alice@localhost", **bob)
    return alice, bobDaemon


@pytest.mark.timeout(300)
def test_32MiB_each_way_over_ibb(daemons, tmp_path):
    alice, bob = _pair(daemons)
    there = transferFile(alice, bob, tmp_path, 32 * MiB, "methods=ibb", "ibb", timeout=130)
    back = transferFile(bob, alice, tmp_path, 32 * MiB, "methods=ibb", "ibb", timeout=130)
    print("IBB alice->bob %.1f MiB/s, bob->alice %.1f MiB/s" % (there.rate, back.rate))


@pytest.mark.timeout(240)
def test_ibb_sequence_wraps(daemons, tmp_path):
    """17 MiB in 256-byte blocks is 69632 blocks: seq goes past 65535 to 0."""
    alice, bob = _pair(daemons)
    size = 17 * MiB
    assert size // 256 > 65536
    transferFile(alice, bob, tmp_path, size, "methods=ibb block-size=256", "ibb", timeout=200)


@pytest.mark.timeout(120)
def test_default_methods_move_a_file(daemons, tmp_path):
    """No methods= given: whatever the daemon prefers (s5b direct/proxy, ibb) must work."""
    alice, bob = _pair(daemons)
    result = transferFile(alice, bob, tmp_path, 4 * MiB, "", method=None, timeout=60)
    good = [e for e in result.senderEvents if e.words[2:3] == ["GOOD"]]
    assert good and good[0].options.get("method") in ("s5b", "ibb"), result.senderEvents


@pytest.mark.timeout(120)
def test_service_endpoint_reaches_tcp_server(daemons):
    """bob's [services] echo = tcp:... : an accepted link is connected there."""
    with EchoServer(b"HELLO from echo\n") as echo:
        alice, bob = _pair(daemons, services={"echo": echo.endpoint})
        bobWatch = bob.control(watch=True)
        ctl = alice.control()
        linkId, path = openLink(ctl, bob.jid, "service=echo methods=ibb")
        assert waitForPath(path, 5)
        init = ctl.waitLinkState(linkId, ("INIT", "GOOD", "BAD", "ERR"), 30)
        assert init.words[2] == "INIT" and init.options.get("method") == "ibb", init
        good = ctl.waitLinkState(linkId, ("GOOD", "BAD", "ERR", "CLOS"), 30)
        assert good.words[2] == "GOOD", ctl.linkEvents(linkId)

        pump = SocketPump(path)
        greeting = b"HELLO from echo\n"
        assert pump.waitReceived(len(greeting), 30), \
            "the service's greeting never came back (got %r)" % bytes(pump.received)
        payload = os.urandom(3 * MiB + 17)
        for i in range(0, len(payload), 65536):
            pump.send(payload[i:i + 65536])
        pump.shutdownWrite()
        assert pump.waitEOF(90), "no EOF after the service closed (%d bytes back)" % len(
            pump.received)
        assert bytes(pump.received) == greeting + payload
        assert echo.connections == 1
        assert bytes(echo.received[0]) == payload

        end = ctl.waitLinkState(linkId, ("CLOS", "ERR", "BAD"), 30)
        assert end.words[2] == "CLOS", ctl.linkEvents(linkId)
        peerEnd = bobWatch.waitEvent(
            lambda e: e.words[:1] == ["LINK"] and e.words[2:3] in (["CLOS"], ["ERR"])
            and e.options.get("peer", "alice@localhost").startswith("alice@localhost"), 30)
        assert peerEnd.words[2] == "CLOS", bobWatch.events
        assert waitGone(path, 5)
        pump.close()


@pytest.mark.timeout(90)
def test_offer_from_stranger_is_refused(daemons, tmp_path):
    """bob accepts only alice: mallory's offer gets forbidden, bob's watchers see nothing."""
    bob = daemons("bob", accept="alice@localhost")
    # SI's answer (Jingle's, service-unavailable, is in tests/memory/test_jingle.py)
    mallory = daemons("mallory", extra={"links": {"negotiation": "si"}})
    bobWatch = bob.control(watch=True)
    ctl = mallory.control()
    linkId, path = openLink(ctl, bob.jid, "methods=ibb")
    bad = ctl.waitLinkState(linkId, ("BAD", "ERR", "GOOD", "CLOS"), 30)
    assert bad.words[2] == "BAD", ctl.linkEvents(linkId)
    reason = bad.options.get("reason", "")
    assert "forbidden" in reason.lower(), "reason should name the XMPP condition: %r" % bad
    assert bad.options.get("final", "yes") == "yes", bad
    # final: no fallback method follows, and the local socket goes away
    later = ctl.pollEvents(1.5)
    assert not any(e.words[:2] == ["LINK", linkId] and e.words[2:3] == ["INIT"]
                   for e in later), later
    assert waitGone(path, 5), "socket of a refused link left behind"

    assert not any(e.words[:1] == ["OFFER"] for e in bobWatch.pollEvents(0.5)), \
        bobWatch.events
    deadline = time.monotonic() + 5
    while "mallory@localhost" not in bob.logText() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "mallory@localhost" in bob.logText(), "bob's log does not mention the refusal"


@pytest.mark.timeout(90)
def test_offer_rejected_by_operator(daemons):
    """REJECT reason=...: the opener's link ends BAD with a reason, finally."""
    alice, bob = _pair(daemons)
    bobWatch = bob.control(watch=True)
    ctl = alice.control()
    linkId, path = openLink(ctl, bob.jid, "methods=ibb")
    offer = bobWatch.waitEvent(lambda e: e.words[:1] == ["OFFER"], 30)
    assert bobWatch.command('REJECT %s reason="not now"' % offer.words[1]).code == 250
    bad = ctl.waitLinkState(linkId, ("BAD", "ERR", "GOOD", "CLOS"), 30)
    assert bad.words[2] == "BAD" and bad.options.get("reason"), ctl.linkEvents(linkId)
    assert waitGone(path, 5)
    assert bobWatch.command("ACCEPT %s" % offer.words[1]).code == 552


@pytest.mark.timeout(60)
def test_control_basics(daemons):
    alice = daemons("alice")
    ctl = alice.control()
    assert os.stat(alice.controlPath).st_mode & 0o777 == 0o600  # socket_mode default
    status = ctl.command("STATUS")
    assert status.code == 250 and any("alice@localhost" in line for line in status.lines)
    assert ctl.command("NOSUCHCOMMAND").code == 510
    assert ctl.command("CLOSE nosuchlink").code == 552
    assert ctl.command("OPEN not@@a@valid/jid@").code == 512
    assert ctl.command("OPEN bob@localhost/daemon bogus=1").code == 513
    assert ctl.command("x" * 5000).code == 512  # over-long line, connection goes on
    assert ctl.command("LINKS").code == 250
    help_ = ctl.command("HELP")
    assert help_.code == 250 and len(help_.lines) > 5
    assert ctl.command("QUIT").code == 250


@pytest.mark.timeout(60)
def test_second_local_client_is_refused(daemons):
    alice, bob = _pair(daemons)
    ctl = alice.control()
    linkId, path = openLink(ctl, bob.jid, "methods=ibb")
    first = socket.socket(socket.AF_UNIX)
    first.connect(path)
    second = socket.socket(socket.AF_UNIX)
    second.settimeout(5)
    notice = b""
    try:
        second.connect(path)
        # closed at once, possibly after a one-line notice for the human
        while True:
            chunk = second.recv(4096)
            if not chunk:
                refused = True
                break
            notice += chunk
            if len(notice) > 1024:
                refused = False
                break
    except socket.timeout:
        refused = False  # left hanging: neither served nor refused
    except OSError:
        refused = True  # ECONNREFUSED / ENOENT / ECONNRESET
    assert refused, "a second connection to a link socket was not refused (%r)" % notice
    assert ctl.command("CLOSE %s" % linkId).code == 250
    end = ctl.waitLinkState(linkId, ("CLOS", "BAD", "ERR"), 30)
    assert end.words[2] == "CLOS", ctl.linkEvents(linkId)  # "the link ends with CLOS"
    first.close()
    second.close()
