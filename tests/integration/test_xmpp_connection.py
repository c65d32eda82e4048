"""
Issue 8, finding 8, against a real Prosody: a wrong password says
``not-authorized`` (in STATUS and the log), two daemons with the same full
JID say ``conflict`` and the one knocked off waits instead of fighting, and
a SIGTERM logs a deliberate stop, not "closed by the server".
"""

from __future__ import annotations

import subprocess
import time

import pytest

from .harness import DaemonProcess
from .harness.daemon import REPO_ROOT, twistdEnvironment

CONFLICT = "conflict: another client logged in with the same resource"


def launch(daemon: DaemonProcess) -> DaemonProcess:
    """Start twistd and open the control socket, without waiting to be connected."""
    daemon._stderr = open(daemon.stderrPath, "ab")
    daemon.process = subprocess.Popen(
        daemon.command(), cwd=REPO_ROOT, env=twistdEnvironment(),
        stdin=subprocess.DEVNULL, stdout=daemon._stderr, stderr=subprocess.STDOUT,
        start_new_session=True)
    daemon.ctl = daemon._connectControl(time.monotonic() + 20)
    return daemon


def waitStatus(daemon: DaemonProcess, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        reply = daemon.ctl.command("STATUS")
        if reply.ok and predicate(reply):
            return reply
        if time.monotonic() > deadline:
            raise AssertionError("STATUS never matched; last: %r\n%s"
                                 % (reply, daemon.logTail()))
        time.sleep(0.2)


@pytest.mark.timeout(60)
def test_wrong_password_says_not_authorized(prosody, tmp_path):
    daemon = DaemonProcess(prosody, "alice", tmp_path / "alice")
    with open(daemon.passwordPath, "w") as f:
        f.write("certainly-not-the-password\n")
    try:
        launch(daemon)
        reply = waitStatus(daemon, lambda r: "not-authorized" in (r.get("reason") or ""), 20)
        assert reply.get("server") == "disconnected"
        assert "closed by the server" not in reply.get("reason")
        assert reply.get("retry-in"), reply
        log = daemon.logText()
        assert "not-authorized" in log, daemon.logTail()
        assert "certainly-not-the-password" not in log
        failed = [line for line in log.splitlines() if "failed:" in line]
        assert failed and all(not line.rstrip().endswith(":") for line in failed), failed
    finally:
        daemon.close()


@pytest.mark.timeout(90)
def test_same_full_jid_conflict_backs_off(prosody, tmp_path):
    first = DaemonProcess(prosody, "alice", tmp_path / "first")
    second = DaemonProcess(prosody, "alice", tmp_path / "second")
    assert first.jid == second.jid
    try:
        first.start()
        second.start()
        # Prosody replaces the older session: the first daemon is told why.
        reply = waitStatus(first, lambda r: r.get("server") == "disconnected", 20)
        assert reply.get("reason") == CONFLICT, reply
        retry = int(reply.get("retry-in").rstrip("s"))
        assert 200 <= retry <= 300, reply
        assert CONFLICT in first.logText(), first.logTail()
        # ... and does not fight: the second stays connected.
        time.sleep(6)
        assert second.ctl.command("STATUS").get("server") == "connected"
        assert first.ctl.command("STATUS").get("server") == "disconnected"
        assert CONFLICT not in second.logText(), second.logTail()
        # A deliberate stop is logged as one, not as the server closing.
        second.stop()
        log = second.logText()
        assert "stopped: the daemon is shutting down" in log, second.logTail()
        assert "closed by the server" not in log, second.logTail()
        assert "reconnecting" not in log, second.logTail()
    finally:
        second.close()
        first.close()


@pytest.mark.timeout(120)
def test_real_answers_still_count(daemons, tmp_path):
    """
    The answer checks accept what a real server delivers: disco, the SI
    offer, IBB open/data/close and the SOCKS5 offer (and the proxy
    discovery sent to the server's own domain) all still work.
    """
    from .harness.flows import MiB, transferFile
    alice = daemons("alice", accept="bob@localhost")
    bob = daemons("bob", accept="alice@localhost")
    transferFile(alice, bob, tmp_path, 1 * MiB, "methods=ibb", "ibb", timeout=60)
    transferFile(bob, alice, tmp_path, 1 * MiB, "methods=s5b", "s5b", timeout=60)
    for daemon in (alice, bob):
        assert "forged" not in daemon.logText(), daemon.logTail()
