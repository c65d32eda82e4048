"""
Jingle links (XEP-0166 with XEP-0261 IBB and XEP-0260 SOCKS5) between two
real daemons through a real Prosody and its proxy65 component.

Everything stays on loopback, as in test_s5b.py: every candidate a daemon
offers is a 127.0.0.1 address and the proxy65 announces 127.0.0.1.

* links both ways, 32 MiB sha-256 checked, over IBB, over direct SOCKS5
  and over the server's proxy65;
* the fallback with real failures: a direct candidate on a closed loopback
  port (connection refused) and no proxy; a proxy JID that does not exist
  and no direct candidate -- each ends ``BAD method=s5b`` naming every
  candidate and why, then ``INIT method=ibb`` by transport-replace, then
  ``GOOD method=ibb``, bytes intact.
"""

from __future__ import annotations

import os

import pytest

from .harness.flows import MiB, transferFile
from .test_s5b import SLOW, Exchange, _pair, _states

JINGLE = {"links": {"methods": "s5b, ibb", "negotiation": "jingle, si"}}


def _cfg(**s5b):
    cfg = {"links": dict(JINGLE["links"])}
    if s5b:
        cfg["s5b"] = s5b
    return cfg


def _allJingle(events):
    assert events and all(e.options.get("negotiation") == "jingle" for e in events), events


@pytest.mark.timeout(SLOW)
@pytest.mark.parametrize("method,options", [
    ("ibb", "methods=ibb"),
    ("s5b", "methods=s5b"),
])
def test_jingle_both_ways_32MiB_sha256(daemons, tmp_path, method, options):
    cfg = _cfg(proxy="none")
    alice, bob = _pair(daemons, cfg, cfg)
    there = transferFile(alice, bob, tmp_path, 32 * MiB, options, method, timeout=200)
    _allJingle(there.senderEvents)
    _allJingle(there.receiverEvents)
    back = transferFile(bob, alice, tmp_path, 32 * MiB, options, method, timeout=200)
    _allJingle(back.senderEvents)
    print("Jingle %s alice->bob %.1f MiB/s, bob->alice %.1f MiB/s"
          % (method, there.rate, back.rate))


@pytest.mark.timeout(SLOW)
def test_jingle_s5b_proxy_only_32MiB_sha256(daemons, tmp_path):
    """Neither daemon listens: the nominated candidate is the proxy65, which
    the side that offered it activates."""
    cfg = _cfg(listen="none")
    alice, bob = _pair(daemons, cfg, cfg)
    result = transferFile(alice, bob, tmp_path, 32 * MiB, "methods=s5b", "s5b", timeout=200)
    _allJingle(result.senderEvents)
    print("Jingle s5b via proxy65 alice->bob %.1f MiB/s" % result.rate)


def _fellBack(ex: Exchange):
    ex.waitGood("ibb")
    _allJingle(ex.aliceEvents)
    states = _states(ex.aliceEvents)
    assert states[:4] == [("INIT", "s5b"), ("BAD", "s5b"), ("INIT", "ibb"),
                          ("GOOD", "ibb")], ex.aliceEvents
    bad = [e for e in ex.aliceEvents if e.words[2] == "BAD"][0]
    assert bad.options.get("final") != "yes", bad
    ex.exchangeThenClose(os.urandom(MiB + 123), os.urandom(MiB // 2 + 7))
    ex.waitClosed()
    return bad.options["reason"]


@pytest.mark.timeout(SLOW)
def test_fallback_closed_port_no_proxy(daemons):
    port = _closedPort()
    cfg = _cfg(proxy="none", advertise="127.0.0.1:%d" % port)
    alice, bob = _pair(daemons, cfg, cfg)
    ex = Exchange(alice, bob, "methods=s5b,ibb")
    try:
        reason = _fellBack(ex)
    finally:
        ex.close()
    assert "127.0.0.1:%d" % port in reason and "refused" in reason, reason


@pytest.mark.timeout(SLOW)
def test_fallback_absent_proxy(daemons):
    cfg = _cfg(listen="none", proxy="proxy.nowhere.localhost")
    alice, bob = _pair(daemons, cfg, cfg)
    ex = Exchange(alice, bob, "methods=s5b,ibb")
    try:
        reason = _fellBack(ex)
    finally:
        ex.close()
    assert "offered no candidate" in reason or "none of our candidates" in reason, reason


def _closedPort() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- connections=many and bytestreamctl forward -------------------------------------


class _HTTPish:
    """A threaded local server: reads a request to its blank line, answers
    with a body derived from it, closes."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    @staticmethod
    def body(request: bytes) -> bytes:
        import hashlib
        return b"%s\n" % request.split(b"\r\n")[0] + hashlib.sha256(request).digest() * 4000

    def _one(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        body = self.body(data.split(b"\r\n\r\n")[0])
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        conn.close()
        self.served += 1

    def close(self):
        self.sock.close()


@pytest.mark.timeout(SLOW)
def test_forward_twenty_concurrent_exchanges_one_session(daemons):
    """
    ``bytestreamctl forward PORT bob --service web``: 20 concurrent
    request/response exchanges through one connections=many link to a real
    local server, all correct, one Jingle session (one link on each side).
    """
    _forwardTwenty(daemons, "ibb")


@pytest.mark.timeout(SLOW)
def test_forward_socks5_twenty_concurrent_exchanges_each_on_its_own_stream(daemons):
    """
    The same with ``--methods s5b,ibb``: the link's session goes by SOCKS5,
    and so does each connection, in a content of its own (content-add, its
    own XEP-0260 negotiation), removed when the connection ends; still one
    Jingle session.
    """
    import re
    alice, bob = _forwardTwenty(daemons, "s5b,ibb")
    log = alice.logText()
    ups = re.findall(r"jingle session (\S+): content (\S+) up via (\w+)", log)
    # 20 exchanges (the readiness probe of _forwardTwenty may be one more)
    assert 20 <= len(ups) <= 21, log[-3000:]
    assert {m for _, _, m in ups} == {"s5b"}, ups
    assert len({s for s, _, _ in ups}) == 1 and len({n for _, n, _ in ups}) == len(ups), ups
    theirs = re.findall(r"jingle session (\S+): content (\S+) up via (\w+)", bob.logText())
    assert sorted(theirs) == sorted(ups), (theirs, ups)


def _forwardTwenty(daemons, methods):
    import socket
    import subprocess
    import sys
    import threading
    import time
    from .test_ssh import REPO_ROOT

    server = _HTTPish()
    alice = daemons("alice", accept="bob@localhost", extra=_cfg())
    bob = daemons("bob", accept="alice@localhost", extra=_cfg(),
                  services={"web": "tcp:host=127.0.0.1:port=%d" % server.port})
    port = _closedPort()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    forward = subprocess.Popen(
        [sys.executable, "-m", "bytestreamd.ctl", "--control", alice.controlPath, "forward",
         "127.0.0.1:%d" % port, bob.jid, "--service", "web", "--methods", methods, "-v"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        results = {}

        def exchange(i):
            request = b"GET /item/%d HTTP/1.0\r\nHost: web" % i
            with socket.create_connection(("127.0.0.1", port), 60) as c:
                c.sendall(request + b"\r\n\r\n")
                got = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            body = _HTTPish.body(request)
            results[i] = got == (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n"
                                 % len(body) + body)

        threads = [threading.Thread(target=exchange, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert results == {i: True for i in range(20)}, results
        ctl, watch = alice.control(), bob.control()
        mine, theirs = ctl.expect("LINKS").rows(), watch.expect("LINKS").rows()
        assert len(mine) == 1 and len(theirs) == 1, (mine, theirs)
        assert mine[0]["negotiation"] == "jingle" and mine[0].get("connections") == "many"
        assert forward.poll() is None, forward.stderr.read()
        assert mine[0]["method"] == methods.split(",")[0], mine
    finally:
        forward.terminate()
        try:
            forward.wait(10)
        except subprocess.TimeoutExpired:
            forward.kill()
        server.close()
    return alice, bob
