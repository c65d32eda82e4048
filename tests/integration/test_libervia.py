"""
Interoperability with a real client: Libervia 0.9 (Debian's libervia-backend
and libervia-cli), run headless, against our daemons, files both ways with
sizes and SHA-256 checked.

Everything of this module runs in one network namespace with only ``lo``
(``harness/libervia.py`` says why and how): one Prosody, one Libervia
backend (``alice``, ~6-15 s to start, so once per module), and our daemons:
``bob`` with the default ``[links] negotiation = jingle, si`` and ``carol``
with ``negotiation = si`` (so that Libervia, seeing no Jingle in carol's
disco, uses XEP-0096).

What Libervia prints is part of the contract we document
(docs/interop.rst): receiving from us over Jingle it says "hash can't be
verified", because we send the standard XEP-0300 value (base64 of the raw
digest) and Libervia 0.9 can only read its own base64-of-hex form.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Optional, Tuple

import pytest

from .harness.daemon import REPO_ROOT, twistdEnvironment
from .harness.libervia import (CLI, BACKEND, LiberviaBackend, NamespacedProsody,
                               NetNamespace, namespacedDaemon)
from .harness.prosody import freePort
from .harness.rawxmpp import RawXMPPClient
from .harness.transfer import sha256File, writeRandomFile

TIMEOUT = 90
KiB = 1024


def _tools() -> None:
    """The tier needs its tools: an error to fix (scripts/bootstrap), not a skip."""
    missing = [p for p in (CLI, BACKEND, "/usr/bin/dbus-daemon") if not os.path.exists(p)]
    if shutil.which("ip") is None:
        missing.append("ip (iproute2)")
    if missing:
        pytest.fail("the Libervia tier needs %s; run scripts/bootstrap" % ", ".join(missing))


class Tier:
    """The module's namespace, Prosody, Libervia and daemons."""

    def __init__(self, tmp) -> None:
        self.tmp = str(tmp)
        self.ns = NetNamespace().create()
        self.prosody = None
        self.daemons = {}
        self.libervia = None
        self.second: Optional[LiberviaBackend] = None  # frank, started on demand
        self.counter = 0
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.prosody = NamespacedProsody(
            self.ns, os.path.join(self.tmp, "prosody"),
            accounts=("alice", "bob", "carol", "dave", "erin", "frank", "gina"))
        self.prosody.start()
        # dave's SOCKS5 cannot work: its only candidate is a closed port (in
        # the namespace nothing listens there), no proxy, and it connects to
        # no candidate of the peer's -- every S5B attempt fails for real.
        closed = {"advertise": "127.0.0.1:%d" % freePort(), "proxy": "none",
                  "connect": "none"}
        # erin is dave with a smaller IBB block-size than Libervia's 4096.
        for name, negotiation, s5b, links in (
                ("bob", "jingle, si", {}, {}), ("carol", "si", {}, {}),
                ("dave", "jingle", closed, {}),
                ("erin", "jingle", closed, {"ibb_block_size": "2048"})):
            config = {"accept": {"allow": "alice@localhost"},
                      "links": dict(links, negotiation=negotiation)}
            if s5b:
                config["s5b"] = s5b
            d = namespacedDaemon(self.ns, self.prosody, name, self.tmp, config)
            self.daemons[name] = d.start()
        self.libervia = LiberviaBackend(self.prosody, "alice", self.tmp)
        self.libervia.start()

    def close(self) -> None:
        failures = []
        backends = [b.close for b in (self.second, self.libervia) if b is not None]
        servers = [self.prosody.close] if self.prosody is not None else []
        for closer in backends + [d.close for d in self.daemons.values()] + servers + [
                self.ns.close]:
            try:
                closer()
            except Exception as e:  # keep closing the rest
                failures.append(e)
        if failures:
            raise failures[0]

    def logs(self) -> str:
        return "\n".join([self.libervia.logTail(80)]
                         + [d.logTail(60) for d in self.daemons.values()])

    def ctl(self, daemon, *args: str, timeout: float = TIMEOUT) -> Tuple[int, str, str]:
        """``bytestreamctl`` against ``daemon`` (outside the namespace: the
        control socket is a UNIX socket), to completion."""
        argv = [sys.executable, "-m", "bytestreamd.ctl", "--control", daemon.controlPath]
        done = subprocess.run(argv + list(args), cwd=REPO_ROOT, env=twistdEnvironment(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    def ctlBackground(self, daemon, *args: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "bytestreamd.ctl", "--control", daemon.controlPath]
        return subprocess.Popen(argv + list(args), cwd=REPO_ROOT, env=twistdEnvironment(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def newFile(self, size: int) -> Tuple[str, str]:
        self.counter += 1
        path = os.path.join(self.tmp, "files", "data-%d.bin" % self.counter)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path, writeRandomFile(path, size)

    def newDir(self, what: str) -> str:
        self.counter += 1
        path = os.path.join(self.tmp, "%s-%d" % (what, self.counter))
        os.makedirs(path)
        return path


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    _tools()
    t = Tier(tmp_path_factory.mktemp("libervia"))
    yield t
    t.close()


@pytest.fixture
def lv(tier, request):
    yield tier
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("\n===== Libervia tier logs =====\n" + tier.logs())


def _waitFor(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting until " + what)
        time.sleep(0.1)


def test_namespace_has_only_loopback(lv):
    assert lv.ns.interfaces() == ["lo"]


@pytest.mark.timeout(240)
def test_libervia_to_libervia(lv):
    """The harness works (Libervia to Libervia, Jingle), so any failure below
    belongs to the daemon."""
    if lv.second is None:
        lv.second = LiberviaBackend(lv.prosody, "frank", lv.tmp)
        lv.second.start()
    src, digest = lv.newFile(256 * KiB + 3)
    inDir = lv.newDir("fin")
    receiver = lv.second.receiveFiles(inDir, lv.libervia.bareJID)
    sent = lv.libervia.sendFile(src, lv.second.jid).wait(TIMEOUT)
    got = receiver.wait(TIMEOUT)
    assert sent.ok and got.ok, (sent, got)
    final = os.path.join(inDir, os.path.basename(src))
    assert sha256File(final) == digest
    # between two Libervias the hash is in their own form, and checked (the
    # CLI prints the line without formatting it: docs/interop.rst)
    assert "File received successfully" in got.out and "hash checked:" in got.out, got


def _daemonToLibervia(lv, daemon, size: int, *extra: str):
    src, digest = lv.newFile(size)
    inDir = lv.newDir("lin")
    receiver = lv.libervia.receiveFiles(inDir, daemon.bareJID)
    code, out, err = lv.ctl(daemon, "send", src, lv.libervia.jid, "--json",
                            "--desc", "noise for Libervia", *extra)
    got = receiver.wait(TIMEOUT)
    assert code == 0, (out, err, got)
    assert got.ok, got
    name = os.path.basename(src)
    assert os.listdir(inDir) == [name]
    assert os.path.getsize(os.path.join(inDir, name)) == size
    assert sha256File(os.path.join(inDir, name)) == digest
    return json.loads(out), got


@pytest.mark.timeout(240)
def test_file_to_libervia_over_jingle_ibb(lv):
    sent, got = _daemonToLibervia(lv, lv.daemons["bob"], 700 * KiB + 3, "--methods", "ibb")
    assert (sent["negotiation"], sent["method"], sent["sent"]) == ("jingle", "ibb",
                                                                  700 * KiB + 3)
    # our checksum is the standard form; Libervia 0.9 cannot read it (documented)
    assert "File received successfully" in got.out
    assert "hash can't be verified" in got.out


@pytest.mark.timeout(240)
def test_file_to_libervia_over_si(lv):
    sent, got = _daemonToLibervia(lv, lv.daemons["carol"], 1024 * KiB)
    assert sent["negotiation"] == "si"
    assert "File received successfully" in got.out


@pytest.mark.timeout(240)
def test_file_from_libervia_over_si(lv):
    carol = lv.daemons["carol"]
    src, digest = lv.newFile(900 * KiB + 17)
    inDir = lv.newDir("din")
    receiver = lv.ctlBackground(carol, "receive", "--dir", inDir, "--from",
                                lv.libervia.bareJID, "--max-wait", "60", "--json")
    sender = lv.libervia.sendFile(src, carol.jid)
    sent = sender.wait(TIMEOUT)
    out, err = receiver.communicate(timeout=TIMEOUT)
    assert receiver.returncode == 0, (out, err, sent)
    report = json.loads(out)
    final = os.path.join(inDir, os.path.basename(src))
    assert (report["file"], report["size"], report["from"]) == (
        final, 900 * KiB + 17, lv.libervia.jid)
    assert sha256File(final) == digest
    assert sent.ok, sent


@pytest.mark.timeout(240)
def test_file_to_libervia_over_jingle_s5b(lv):
    sent, got = _daemonToLibervia(lv, lv.daemons["bob"], 2048 * KiB + 1, "--methods", "s5b")
    assert (sent["negotiation"], sent["method"]) == ("jingle", "s5b")
    assert "File received successfully" in got.out


def _linkLog(daemon, linkId: str) -> str:
    return "\n".join(line for line in daemon.logText().splitlines() if linkId in line)


def _liberviaToDaemon(lv, daemon, size: int):
    src, digest = lv.newFile(size)
    inDir = lv.newDir("din")
    receiver = lv.ctlBackground(daemon, "receive", "--dir", inDir, "--from",
                                lv.libervia.bareJID, "--max-wait", "60", "--json")
    sender = lv.libervia.sendFile(src, daemon.jid)
    sent = sender.wait(TIMEOUT)
    out, err = receiver.communicate(timeout=TIMEOUT)
    assert receiver.returncode == 0, (out, err, sent)
    # the daemon read Libervia's checksum (base64 of the hex digest) and checked it
    _waitFor(lambda: "received %d bytes, sha-256 checked" % size in daemon.logText(),
             "the daemon checked Libervia's checksum")
    report = json.loads(out)
    final = os.path.join(inDir, os.path.basename(src))
    assert (report["file"], report["size"], report["from"]) == (final, size, lv.libervia.jid)
    assert sha256File(final) == digest
    assert sent.ok, sent
    return report


@pytest.mark.timeout(240)
def test_file_from_libervia_over_jingle_s5b(lv):
    bob = lv.daemons["bob"]
    report = _liberviaToDaemon(lv, bob, 1500 * KiB + 9)
    assert report["negotiation"] == "jingle"
    # Libervia's checksum came after the data; the daemon checked it and its
    # CLOS said so (verified=yes sha256=...), which receive checked again
    assert (report["hash-checked"], report["checked-with"]) == (True, ["sha256"]), report
    assert "GOOD via s5b" in _linkLog(bob, report["link"])


def _fellBack(log: str) -> None:
    """SOCKS5 failed for real (each candidate named), then IBB carried it."""
    assert "BAD via s5b (s5b: no candidate worked" in log, log
    assert "is not allowed by [s5b] connect" in log, log
    assert log.index("BAD via s5b") < log.index("INIT via ibb") < log.index("GOOD via ibb"), log


@pytest.mark.timeout(300)
def test_file_to_libervia_s5b_fails_then_ibb(lv):
    dave = lv.daemons["dave"]
    sent, got = _daemonToLibervia(lv, dave, 300 * KiB + 5)
    assert (sent["negotiation"], sent["method"]) == ("jingle", "ibb"), sent
    assert "File received successfully" in got.out
    _fellBack(_linkLog(dave, sent["link"]))


@pytest.mark.timeout(300)
def test_file_from_libervia_s5b_fails_then_ibb(lv):
    dave = lv.daemons["dave"]
    report = _liberviaToDaemon(lv, dave, 300 * KiB + 7)
    assert report["negotiation"] == "jingle"
    assert report["checked-with"] == ["sha256"], report
    _fellBack(_linkLog(dave, report["link"]))


@pytest.mark.timeout(300)
def test_block_size_towards_libervia(lv):
    """
    erin offers IBB (after SOCKS5 failed) with block-size 2048, smaller than
    Libervia's own 4096: Libervia as the responder echoes our transport and
    takes our ``<open/>``, so the file crosses.  (The other way round --
    Libervia initiating IBB and ignoring a smaller block-size in our answer
    -- cannot happen with our IBB engine, which accepts any block-size up to
    65535 and so never answers a smaller one; were it to, the ``<open/>``
    would be refused resource-constraint, as XEP-0261 says: docs/interop.rst.)
    """
    erin = lv.daemons["erin"]
    sent, got = _daemonToLibervia(lv, erin, 40 * KiB + 1, "--block-size", "2048")
    assert (sent["negotiation"], sent["method"]) == ("jingle", "ibb"), sent
    _fellBack(_linkLog(erin, sent["link"]))
    assert "File received successfully" in got.out


@pytest.mark.timeout(240)
def test_libervia_acks_then_fails_an_offer_with_a_standard_hash(lv):
    """
    Two of Libervia 0.9's ways at once, on the wire (a raw client, gina,
    logged in from inside the namespace): it acknowledges a session-initiate
    before checking it, then ends the session ``failed-application`` -- here
    because the offer's ``<hash/>`` is the standard base64 of the raw digest,
    which it decodes as UTF-8 hex text.  This is why we announce the hash
    (``<hash-used/>``) and send it in the checksum after the data.
    """
    # data whose digest starts with a byte that cannot start UTF-8
    data = next(d for d in (b"%d" % i * 700 for i in range(1000))
                if 0x80 <= hashlib.sha256(d).digest()[0] < 0xC0)
    gina = lv.ns.call(lambda: RawXMPPClient.connect(lv.prosody, "gina", "raw"))
    try:
        receiver = lv.libervia.receiveFiles(lv.newDir("gin"), "gina@localhost")
        offer = (
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='g1' "
            "initiator='%s'><content creator='initiator' name='file' senders='initiator'>"
            "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>"
            "<name>x.bin</name><size>%d</size><desc/><hash xmlns='urn:xmpp:hashes:2' "
            "algo='sha-256'>%s</hash></file></description>"
            "<transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='ibbg' "
            "block-size='4096'/></content></jingle>"
            % (gina.jid, len(data), base64.b64encode(hashlib.sha256(data).digest()).decode()))
        answer = gina.request("set", lv.libervia.jid, offer, timeout=30)
        assert "type='result'" in answer, answer  # acknowledged first
        terminate = gina.waitFor(lambda st: "session-terminate" in st, timeout=30)
        assert "<failed-application/>" in terminate, terminate
        assert "utf-8" in terminate, terminate  # its words: the decode error
        receiver.stop()
    finally:
        gina.close()
