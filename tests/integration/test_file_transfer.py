"""
XEP-0096 file transfer between two real daemons through a real Prosody,
driven with ``bytestreamctl send`` and ``bytestreamctl receive`` run as
subprocesses, as a user would (``--control`` names each daemon's socket).

Covered: a 5 MiB file over IBB and over SOCKS5 (name, size, sha256, no
leftovers, the method actually used), an offer whose md5 is wrong (no final
file, no partial file, exit 1), and a ranged resume after an interrupted
transfer (the receiver keeps ``.NAME.part``, asks for ``offset=``, the
sender starts there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List, Tuple

import pytest

from .harness.daemon import REPO_ROOT, twistdEnvironment
from .harness.flows import MiB, openLink
from .harness.transfer import SocketPump, sha256File, writeRandomFile

FT_NS = "http://jabber.org/protocol/si/profile/file-transfer"
TIMEOUT = 120


def _pair(daemons):
    alice = daemons("alice", accept="bob@localhost")
    bob = daemons("bob", accept="alice@localhost")
    return alice, bob


def ctl(daemon, tmp_path, name: str, *args: str) -> Tuple[subprocess.Popen, str]:
    """``bytestreamctl --control <daemon> args...`` in the background."""
    out = str(tmp_path / ("ctl-%s.out" % name))
    err = str(tmp_path / ("ctl-%s.err" % name))
    argv = [sys.executable, "-m", "bytestreamd.ctl", "--control", daemon.controlPath]
    process = subprocess.Popen(argv + list(args), cwd=REPO_ROOT, env=twistdEnvironment(),
                               stdin=subprocess.DEVNULL, stdout=open(out, "wb"),
                               stderr=open(err, "wb"))
    return process, out


class Done:
    def __init__(self, process: subprocess.Popen, outPath: str, timeout: float = TIMEOUT):
        try:
            self.code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            self.code = None
        with open(outPath, "r", errors="replace") as f:
            self.out = f.read()
        with open(outPath[:-4] + ".err", "r", errors="replace") as f:
            self.err = f.read()

    def json(self) -> dict:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return "<exit %s stdout=%r stderr=%r>" % (self.code, self.out[-2000:], self.err[-2000:])


def _receive(bob, tmp_path, name: str, outDir: str, *extra: str):
    return ctl(bob, tmp_path, name, "receive", "--dir", outDir, "--from", "alice@localhost",
               "--max-wait", "60", *extra)


def _files(directory: str) -> List[str]:
    return sorted(os.listdir(directory))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["ibb", "s5b"])
def test_send_and_receive_5MiB(daemons, tmp_path, method):
    alice, bob = _pair(daemons)
    src = str(tmp_path / ("report %s.bin" % method))  # a space in the name, too
    digest = writeRandomFile(src, 5 * MiB)
    outDir = str(tmp_path / "in")
    os.mkdir(outDir)
    receiver, rOut = _receive(bob, tmp_path, "recv", outDir, "--json")
    sender, sOut = ctl(alice, tmp_path, "send", "send", src, bob.jid, "--methods", method,
                       "--desc", "five MiB of noise", "--json")
    sent, got = Done(sender, sOut), Done(receiver, rOut)
    assert sent.code == 0, (sent, got)
    assert got.code == 0, (sent, got)
    name = os.path.basename(src)
    final = os.path.join(outDir, name)
    assert _files(outDir) == [name], "leftovers: %s" % _files(outDir)
    assert os.path.getsize(final) == 5 * MiB
    assert sha256File(final) == digest
    s, r = sent.json(), got.json()
    assert (s["method"], s["offset"], s["sent"], s["size"]) == (method, 0, 5 * MiB, 5 * MiB), s
    assert (r["file"], r["size"], r["from"], r["hash-checked"], r["offset"]) == (
        final, 5 * MiB, alice.jid, True, 0), r
    assert r["md5"] == s["md5"]
    assert sent.err == "" and got.err == "", "no progress bar without a terminal"


@pytest.mark.timeout(240)
def test_wrong_hash_leaves_no_file(daemons, tmp_path):
    """The offer's md5 does not match the bytes: exit 1, nothing left in --dir."""
    alice, bob = _pair(daemons)
    size = 300 * 1024 + 5
    payload = os.urandom(size)
    outDir = str(tmp_path / "in")
    os.mkdir(outDir)
    receiver, rOut = _receive(bob, tmp_path, "recv", outDir)
    aliceCtl = alice.control()
    linkId, path = openLink(aliceCtl, bob.jid, "profile=file name=bad.bin size=%d hash=%s "
                            "methods=ibb" % (size, "0123456789abcdef" * 2))
    good = aliceCtl.waitLinkState(linkId, ("GOOD", "BAD", "ERR"), 60)
    assert good.words[2] == "GOOD", aliceCtl.linkEvents(linkId)
    pump = SocketPump(path)
    pump.send(payload)
    pump.shutdownWrite()
    end = aliceCtl.waitLinkState(linkId, ("CLOS", "ERR"), 60)
    assert end.words[2] == "CLOS", aliceCtl.linkEvents(linkId)
    got = Done(receiver, rOut)
    pump.close()
    assert got.code == 1, got
    assert "corrupt" in got.err and "md5" in got.err, got
    assert _files(outDir) == [], "a corrupt file was left: %s" % _files(outDir)


@pytest.mark.timeout(300)
def test_resume_after_a_partial_transfer(daemons, tmp_path):
    """
    First offer: the sender stops halfway and closes cleanly; ``receive
    --resume`` keeps ``.NAME.part`` and exits 1.  Second offer with
    ``bytestreamctl send``: the receiver asks offset=<partial size> and only
    the rest crosses (over SOCKS5), and the whole file checks out.
    """
    alice, bob = _pair(daemons)
    size = 3 * MiB + 11
    src = str(tmp_path / "big.iso")
    digest = writeRandomFile(src, size)
    with open(src, "rb") as f:
        content = f.read()
    half = 1 * MiB + 7
    outDir = str(tmp_path / "in")
    os.mkdir(outDir)
    import hashlib
    md5 = hashlib.md5(content).hexdigest()

    receiver, rOut = _receive(bob, tmp_path, "recv1", outDir, "--resume")
    aliceCtl = alice.control()
    linkId, path = openLink(aliceCtl, bob.jid, "profile=file name=big.iso size=%d hash=%s "
                            "range=yes methods=ibb" % (size, md5))
    good = aliceCtl.waitLinkState(linkId, ("GOOD", "BAD", "ERR"), 60)
    assert good.words[2] == "GOOD", aliceCtl.linkEvents(linkId)
    assert "offset" not in good.options, good  # a fresh start asks for no range
    pump = SocketPump(path)
    pump.send(content[:half])
    pump.shutdownWrite()
    assert aliceCtl.waitLinkState(linkId, ("CLOS", "ERR"), 60).words[2] == "CLOS"
    first = Done(receiver, rOut)
    pump.close()
    assert first.code == 1, first
    assert "incomplete" in first.err and "--resume" in first.err, first
    assert _files(outDir) == [".big.iso.part"]
    assert os.path.getsize(os.path.join(outDir, ".big.iso.part")) == half

    receiver, rOut = _receive(bob, tmp_path, "recv2", outDir, "--resume", "--json")
    sender, sOut = ctl(alice, tmp_path, "send", "send", src, bob.jid, "--methods", "s5b",
                       "--json")
    sent, got = Done(sender, sOut), Done(receiver, rOut)
    assert sent.code == 0 and got.code == 0, (sent, got)
    s, r = sent.json(), got.json()
    assert (s["offset"], s["sent"], s["method"]) == (half, size - half, "s5b"), s
    assert r["offset"] == half and r["hash-checked"], r
    assert _files(outDir) == ["big.iso"]
    assert sha256File(os.path.join(outDir, "big.iso")) == digest


@pytest.mark.timeout(120)
def test_existing_file_is_refused(daemons, tmp_path):
    """Without --overwrite an existing file stays and the sender is told why."""
    alice, bob = _pair(daemons)
    src = str(tmp_path / "notes.txt")
    writeRandomFile(src, 1000)
    outDir = str(tmp_path / "in")
    os.mkdir(outDir)
    with open(os.path.join(outDir, "notes.txt"), "wb") as f:
        f.write(b"keep me")
    receiver, rOut = _receive(bob, tmp_path, "recv", outDir)
    sender, sOut = ctl(alice, tmp_path, "send", "send", src, bob.jid, "--methods", "ibb")
    sent, got = Done(sender, sOut), Done(receiver, rOut)
    assert got.code == 1 and "exists" in got.err, got
    assert sent.code == 1 and "file exists" in sent.err, sent
    with open(os.path.join(outDir, "notes.txt"), "rb") as f:
        assert f.read() == b"keep me"
    assert _files(outDir) == ["notes.txt"]
