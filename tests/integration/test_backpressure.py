"""
Flow control end to end: a local reader that stops reading must stop the
remote sender (IBB acknowledgements are held back), keep every buffer on the
way bounded, and lose nothing once it reads again.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time

import pytest

from .harness.flows import MiB, acceptNextOffer, openLink


def _rssKiB(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def _linkRow(ctl, linkId):
    for row in ctl.command("LINKS").rows():
        if row.get("link") == linkId:
            return row
    raise AssertionError("link %s not in LINKS" % linkId)


@pytest.mark.parametrize("method", ["ibb", "s5b"])
@pytest.mark.timeout(240)
def test_stalled_reader_stops_the_sender(daemons, tmp_path, method):
    alice = daemons("alice", accept="bob@localhost")
    bob = daemons("bob", accept="alice@localhost")
    watch = bob.control(watch=True)
    ctl = alice.control()
    aliceLink, alicePath = openLink(ctl, bob.jid, "methods=%s" % method)
    _, bobLink, bobPath = acceptNextOffer(watch, "alice@localhost")
    good = ctl.waitLinkState(aliceLink, ("GOOD", "BAD", "ERR"), 60)
    assert good.words[2] == "GOOD", ctl.linkEvents(aliceLink)

    size = 48 * MiB
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    reader = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    reader.connect(bobPath)
    rssBefore = _rssKiB(bob.process.pid)
    with open(src, "rb") as inp:
        sender = subprocess.Popen(["nc", "-N", "-U", alicePath], stdin=inp,
                                  stdout=subprocess.DEVNULL)
    try:
        time.sleep(4)
        # The reader has not read a byte: the sender must be stuck, with at
        # most a few windows and socket buffers' worth in the pipeline.
        assert sender.poll() is None, "the sender finished although nobody read"
        received = int(_linkRow(watch, bobLink).get("received", "0"))
        sent = int(_linkRow(ctl, aliceLink).get("sent", "0"))
        assert received < 8 * MiB, "bob took %d bytes for a reader that reads nothing" % received
        assert sent < 8 * MiB, "alice sent %d bytes towards a reader that reads nothing" % sent
        grown = _rssKiB(bob.process.pid) - rssBefore
        assert grown < 32 * 1024, "bob's daemon grew by %d KiB while the reader stalled" % grown

        # Now read everything: nothing may be missing.
        h = hashlib.sha256()
        got = 0
        reader.settimeout(120)
        while True:
            chunk = reader.recv(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        assert got == size, "received %d of %d bytes" % (got, size)
        assert h.hexdigest() == hashlib.sha256(data).hexdigest()
        # Our side is done too (over SOCKS5 the link was only half-closed).
        reader.close()
        assert sender.wait(60) == 0
    finally:
        reader.close()
        if sender.poll() is None:
            sender.kill()
    end = ctl.waitLinkState(aliceLink, ("CLOS", "ERR"), 60)
    assert end.words[2] == "CLOS", ctl.linkEvents(aliceLink)


@pytest.mark.timeout(120)
def test_vanished_sender_ends_the_in_band_link(daemons, tmp_path):
    """
    The sending daemon is killed mid-transfer: nothing in XEP-0047 tells the
    receiver, but the sender's directed presence does -- the receiver's link
    must end ERR with a reason instead of sitting GOOD forever.
    """
    alice = daemons("alice", accept="bob@localhost")
    bob = daemons("bob", accept="alice@localhost")
    watch = bob.control(watch=True)
    ctl = alice.control()
    aliceLink, alicePath = openLink(ctl, bob.jid, "methods=ibb")
    _, bobLink, bobPath = acceptNextOffer(watch, "alice@localhost")
    good = watch.waitLinkState(bobLink, ("GOOD", "BAD", "ERR"), 60)
    assert good.words[2] == "GOOD", watch.linkEvents(bobLink)

    writer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    writer.connect(alicePath)
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    reader.connect(bobPath)
    try:
        writer.sendall(os.urandom(256 * 1024))
        reader.settimeout(30)
        assert reader.recv(65536), "no data arrived before the kill"
        alice.process.kill()
        alice.process.wait(10)
        started = time.monotonic()
        end = watch.waitLinkState(bobLink, ("ERR", "CLOS"), 30)
        assert end.words[2] == "ERR", watch.linkEvents(bobLink)
        assert "offline" in end.options.get("reason", ""), end
        assert time.monotonic() - started < 20
        # The local connection is closed at once, not left hanging.
        try:
            while reader.recv(65536):
                pass
        except OSError:
            pass
    finally:
        writer.close()
        reader.close()
