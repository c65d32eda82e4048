"""
Interoperability with an independent implementation: slixmpp (a test-only
dependency) as the other party of an XEP-0096 file transfer, against the
same Prosody the other integration tests use.

slixmpp runs as a subprocess (tests/integration/harness/slix.py) with a
resource of its own per test; bytestreamd is driven with ``bytestreamctl
send`` / ``bytestreamctl receive`` as a user would. Every transfer is
checked on the receiving side: size and sha256 of the file written there.

What slixmpp does differently from the XEPs, and how bytestreamd copes, is
written down in docs/interop.rst; the tests below pin each point:

- slixmpp's SI initiator offers exactly the methods it is given; its
  SOCKS5 initiator offers only proxy streamhosts (proxy65 here), never a
  direct candidate, so bytestreamd as target must use the proxy.
- slixmpp's SI receiver picks IBB whenever IBB is offered, even after
  SOCKS5 in the offer's order.
- slixmpp's SOCKS5 target connects to every streamhost at once and keeps
  the unused connections open.

The daemons run with ``[daemon] log_traffic = yes``; when a test fails its
daemon log (with every stanza) and the slixmpp DEBUG log are printed.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import pytest

from .harness import ControlClient, DaemonProcess, Line
from .harness.daemon import REPO_ROOT, twistdEnvironment
from .harness.slix import FT_NS, SlixPeer, slixmppAvailable
from .harness.transfer import sha256File, writeRandomFile

# slixmpp is a test dependency (setup.cfg [test], constraints.txt): missing
# it is an install error, reported by the imports below, not a skip.
assert slixmppAvailable(), "slixmpp is not installed: run scripts/bootstrap"

#: The account slixmpp logs in with (registered on the shared Prosody on demand).
SLIX = "slixpeer"

KiB = 1 << 10
MiB = 1 << 20

#: Bound of one transfer; slixmpp's IBB sender waits for every block's ack.
TRANSFER_TIMEOUT = 90


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def ctlCommand(daemon: DaemonProcess, *args: str) -> List[str]:
    """argv of ``bytestreamctl --control <daemon's socket> args...``."""
    return [sys.executable, "-m", "bytestreamd.ctl", "--control", daemon.controlPath] + list(args)


def runCtl(daemon: DaemonProcess, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(ctlCommand(daemon, *args), cwd=REPO_ROOT, env=twistdEnvironment(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def startCtl(daemon: DaemonProcess, tmp_path, name: str, *args: str) -> Tuple[subprocess.Popen, str]:
    """``bytestreamctl`` in the background; stdout and stderr go to one file."""
    out = str(tmp_path / ("ctl-%s.out" % name))
    with open(out, "wb") as f:
        process = subprocess.Popen(ctlCommand(daemon, *args), cwd=REPO_ROOT,
                                   env=twistdEnvironment(), stdin=subprocess.DEVNULL,
                                   stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    return process, out


def readText(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as e:
        return "<%s>" % e


def finish(process: subprocess.Popen, timeout: float) -> Optional[int]:
    """Exit status, or None (and the process killed) after ``timeout``."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        return None


def linkEventsOf(watch: ControlClient, method: Optional[str] = None) -> List[Line]:
    """Every ``650 LINK`` event the watcher has seen so far (optionally of one method)."""
    watch.pollEvents(0.2)
    return [e for e in watch.events if e.words[:1] == ["LINK"]
            and (method is None or e.options.get("method") == method)]


@pytest.fixture
def slixAccount(prosody) -> str:
    """The slixmpp account's bare JID (registered once on the shared server)."""
    if SLIX not in prosody.passwords:
        prosody.register(SLIX)
    return prosody.jid(SLIX)


@pytest.fixture
def peers(request, tmp_path):
    """Collects SlixPeer runs; kills leftovers and prints their logs on failure."""
    started: List[SlixPeer] = []
    yield started
    report = getattr(request.node, "rep_call", None)
    for peer in started:
        if report is not None and report.failed:
            print("\n===== slixmpp %s =====\n%s" % (peer.jid, peer.logTail(120)))
        peer.kill()


def resource(tag: str) -> str:
    """A fresh resource: two sessions with one full JID kick each other off."""
    return "slix-%s-%s" % (tag, secrets.token_hex(3))


def daemonFor(daemons, slixBare: str, methods: Optional[str] = None,
              more: Optional[Dict[str, Dict[str, str]]] = None) -> DaemonProcess:
    extra: Dict[str, Dict[str, str]] = {"daemon": {"log_traffic": "yes"}}
    if methods:
        extra["links"] = {"methods": methods}
    for section, items in (more or {}).items():
        extra.setdefault(section, {}).update(items)
    return daemons("bob", accept=slixBare, extra=extra)


# ---------------------------------------------------------------------------
# the harness itself: two slixmpp peers agree (so a failure below is the daemon's)
# ---------------------------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("methods", ["ibb", "s5b"])
def test_slixmpp_peers_agree(prosody, slixAccount, peers, tmp_path, methods):
    src = str(tmp_path / "slix-to-slix.bin")
    digest = writeRandomFile(src, 200 * KiB + 3)
    outDir = tmp_path / "in"
    outDir.mkdir()
    receiver = SlixPeer.start(prosody, SLIX, resource("r"), tmp_path, "receive",
                              "--dir", str(outDir), timeout=TRANSFER_TIMEOUT)
    peers.append(receiver)
    assert receiver.waitReady(30), "slixmpp receiver did not come online"
    sender = SlixPeer.start(prosody, SLIX, resource("s"), tmp_path, "send",
                            "--to", receiver.jid, "--file", src, "--methods", methods,
                            timeout=TRANSFER_TIMEOUT)
    peers.append(sender)
    sent = sender.wait(TRANSFER_TIMEOUT + 30)
    got = receiver.wait(TRANSFER_TIMEOUT + 30)
    assert sent["ok"], sent
    assert got["ok"], got
    assert sent["method"] == got["method"] == methods
    assert got["size"] == 200 * KiB + 3 and got["sha256"] == digest
    if methods == "s5b":
        assert list(sent["streamhosts"]) == [prosody.proxyJID], sent


# ---------------------------------------------------------------------------
# slixmpp -> bytestreamd
# ---------------------------------------------------------------------------

def slixToDaemon(prosody, daemons, slixBare, peers, tmp_path, method: str,
                 size: int) -> Tuple[DaemonProcess, ControlClient, Dict, str]:
    """
    slixmpp offers one file to bob's daemon with only ``method``; ``bytestreamctl
    receive`` takes it. Returns (daemon, watcher, slixmpp result, received path).
    """
    bob = daemonFor(daemons, slixBare)
    watch = bob.control(watch=True)
    name = "from-slixmpp-%s.bin" % method
    src = str(tmp_path / name)
    digest = writeRandomFile(src, size)
    outDir = tmp_path / "received"
    outDir.mkdir()
    receiver, receiverOut = startCtl(
        bob, tmp_path, "receive", "receive", "--dir", str(outDir), "--from", slixBare,
        "--max-wait", str(TRANSFER_TIMEOUT))
    # bytestreamctl must be WATCHing before the offer comes: slixmpp needs
    # about a second to start and log in, and we give it one more.
    time.sleep(1.0)
    assert receiver.poll() is None, "bytestreamctl receive exited early:\n" + readText(
        receiverOut)

    sender = SlixPeer.start(prosody, SLIX, resource("send-" + method), tmp_path, "send",
                            "--to", bob.jid, "--file", src, "--methods", method,
                            timeout=TRANSFER_TIMEOUT)
    peers.append(sender)
    sent = sender.wait(TRANSFER_TIMEOUT + 30)
    rc = finish(receiver, TRANSFER_TIMEOUT + 30)
    output = readText(receiverOut)

    watch.pollEvents(0.5)
    offers = [e for e in watch.events if e.words[:1] == ["OFFER"]]
    assert offers, "bob's daemon announced no OFFER; slixmpp says %r" % (sent,)
    offer = offers[0]
    assert offer.options.get("from") == sender.jid, offer
    assert offer.options.get("profile") == FT_NS, offer
    assert offer.options.get("name") == name, offer
    assert offer.options.get("size") == str(size), offer

    assert sent["ok"], "slixmpp sender failed: %r\nbytestreamctl receive (exit %s):\n%s" % (
        sent, rc, output)
    assert sent["method"] == method, sent
    assert rc == 0, "bytestreamctl receive exited %s:\n%s" % (rc, output)
    path = str(outDir / name)
    assert os.path.exists(path), "no %s in %s (have %s); bytestreamctl said:\n%s" % (
        name, outDir, os.listdir(str(outDir)), output)
    assert os.path.getsize(path) == size, "received %d of %d bytes" % (
        os.path.getsize(path), size)
    assert sha256File(path) == digest, "sha256 of the received file differs"
    leftovers = [f for f in os.listdir(str(outDir)) if f != name]
    assert not leftovers, "partial files left in the target directory: %s" % leftovers
    return bob, watch, sent, path


@pytest.mark.timeout(240)
def test_slixmpp_sends_to_daemon_over_ibb(prosody, daemons, slixAccount, peers, tmp_path):
    """slixmpp offers only IBB: plain XEP-0095, one method, 4096-byte blocks."""
    bob, watch, sent, _ = slixToDaemon(prosody, daemons, slixAccount, peers, tmp_path,
                                       "ibb", 1 * MiB + 123)
    good = [e for e in linkEventsOf(watch) if e.words[2:3] == ["GOOD"]]
    assert good and good[0].options.get("method") == "ibb", watch.events
    assert not [e for e in linkEventsOf(watch) if e.words[2:3] in (["ERR"], ["BAD"])], \
        watch.events


@pytest.mark.timeout(240)
def test_slixmpp_sends_to_daemon_over_s5b_via_proxy(prosody, daemons, slixAccount, peers,
                                                    tmp_path):
    """
    slixmpp offers only SOCKS5 and, as initiator, only the proxy65 streamhost:
    bytestreamd as target must connect to proxy.localhost and name it in
    <streamhost-used/>.
    """
    bob, watch, sent, _ = slixToDaemon(prosody, daemons, slixAccount, peers, tmp_path,
                                       "s5b", 4 * MiB + 7)
    assert list(sent.get("streamhosts", {})) == [prosody.proxyJID], \
        "slixmpp offered other streamhosts than the proxy: %r" % sent
    good = [e for e in linkEventsOf(watch) if e.words[2:3] == ["GOOD"]]
    assert good and good[0].options.get("method") == "s5b", watch.events
    assert not [e for e in linkEventsOf(watch) if e.words[2:3] in (["ERR"], ["BAD"])], \
        watch.events


# ---------------------------------------------------------------------------
# bytestreamd -> slixmpp
# ---------------------------------------------------------------------------

def usedStreamhost(peer: SlixPeer) -> Optional[str]:
    """The jid of the <streamhost-used/> slixmpp (as target) answered with."""
    for line in peer.stanzas("streamhost-used"):
        if "SEND:" in line:
            found = re.search(r"<streamhost-used jid=\"([^\"]+)\"", line)
            if found:
                return found.group(1)
    return None


def daemonToSlix(prosody, daemons, slixBare, peers, tmp_path, daemonMethods: Optional[str],
                 size: int, extra: Optional[Dict[str, Dict[str, str]]] = None
                 ) -> Tuple[DaemonProcess, ControlClient, Dict, SlixPeer]:
    """bob's daemon (``[links] methods``) sends one file to a slixmpp receiver."""
    bob = daemonFor(daemons, slixBare, daemonMethods, extra)
    watch = bob.control(watch=True)
    tag = (daemonMethods or "default").replace(",", "-").replace(" ", "")
    name = "to-slixmpp-%s.bin" % tag
    src = str(tmp_path / name)
    digest = writeRandomFile(src, size)
    inDir = tmp_path / "slix-in"
    inDir.mkdir()
    receiver = SlixPeer.start(prosody, SLIX, resource("recv-" + tag), tmp_path, "receive",
                              "--dir", str(inDir), "--from", bob.bareJID,
                              timeout=TRANSFER_TIMEOUT)
    peers.append(receiver)
    assert receiver.waitReady(30), "slixmpp receiver did not come online:\n" + \
        receiver.logTail(30)

    done = runCtl(bob, "send", src, receiver.jid, timeout=TRANSFER_TIMEOUT + 30)
    # A failed send leaves slixmpp waiting for an offer or for data: give it
    # a few seconds to finish what arrived, not the whole transfer timeout.
    got = receiver.wait(TRANSFER_TIMEOUT + 30 if done.returncode == 0 else 5)
    assert got["ok"], "slixmpp receiver failed: %r\nbytestreamctl send (exit %s):\n%s%s" % (
        got, done.returncode, done.stdout, done.stderr)
    assert done.returncode == 0, "bytestreamctl send exited %s:\n%s%s" % (
        done.returncode, done.stdout, done.stderr)
    assert got["from"] == bob.jid, got
    assert got["profile"] == FT_NS, got
    assert got["name"] == name, got
    assert got["offeredSize"] == size, got
    assert got["size"] == size, "slixmpp received %d of %d bytes" % (got["size"], size)
    assert got["sha256"] == digest, "sha256 of the file slixmpp received differs"
    if got.get("offeredHash"):
        assert got["offeredHash"] == got["md5"], got
    return bob, watch, got, receiver


@pytest.mark.timeout(240)
def test_daemon_sends_to_slixmpp_over_ibb(prosody, daemons, slixAccount, peers, tmp_path):
    bob, watch, got, receiver = daemonToSlix(prosody, daemons, slixAccount, peers, tmp_path,
                                   "ibb", 1 * MiB + 5)
    assert got["offered"] == ["ibb"], got
    assert got["method"] == "ibb", got


@pytest.mark.timeout(240)
def test_daemon_sends_to_slixmpp_over_s5b(prosody, daemons, slixAccount, peers, tmp_path):
    """
    bytestreamd as SOCKS5 initiator offers its direct (loopback) candidate and
    the proxy; slixmpp connects to all of them and uses the first that
    answered in document order.
    """
    bob, watch, got, receiver = daemonToSlix(prosody, daemons, slixAccount, peers, tmp_path,
                                   "s5b", 4 * MiB + 11)
    assert got["offered"] == ["s5b"], got
    assert got["method"] == "s5b", got
    good = [e for e in linkEventsOf(watch) if e.words[2:3] == ["GOOD"]]
    assert good and good[0].options.get("method") == "s5b", watch.events
    assert usedStreamhost(receiver) in (bob.jid, prosody.proxyJID), \
        receiver.stanzas("streamhost-used")


@pytest.mark.timeout(240)
def test_daemon_sends_to_slixmpp_via_proxy(prosody, daemons, slixAccount, peers, tmp_path):
    """
    The daemon's direct candidate is unusable (advertised on a port nobody
    listens on): slixmpp as target gets "connection refused" there, answers
    with the proxy, and bytestreamd as initiator must connect to proxy65
    and activate the stream before sending.
    """
    from .harness import freePort
    dead = "127.0.0.1:%d" % freePort()
    bob, watch, got, receiver = daemonToSlix(prosody, daemons, slixAccount, peers, tmp_path,
                                             "s5b", 2 * MiB + 1,
                                             extra={"s5b": {"advertise": dead}})
    assert got["method"] == "s5b", got
    assert usedStreamhost(receiver) == prosody.proxyJID, receiver.stanzas("streamhost-used")


@pytest.mark.timeout(240)
def test_daemon_sends_to_slixmpp_with_both_methods(prosody, daemons, slixAccount, peers,
                                                   tmp_path):
    """
    Offered s5b first and ibb second, slixmpp 1.17 still picks IBB (its own
    fixed preference, XEP-0095 lets the receiver choose): the file must
    arrive all the same, over IBB.
    """
    bob, watch, got, receiver = daemonToSlix(prosody, daemons, slixAccount, peers, tmp_path,
                                   "s5b, ibb", 512 * KiB)
    assert sorted(got["offered"]) == ["ibb", "s5b"], got
    assert got["method"] == "ibb", "slixmpp no longer prefers IBB: %r" % got


# ---------------------------------------------------------------------------
# slixmpp's rough edges, and what bytestreamd makes of them
# ---------------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_slixmpp_without_proxy_offers_no_streamhost(prosody, daemons, slixAccount, peers,
                                                    tmp_path):
    """
    On a server without proxy65, slixmpp's SOCKS5 initiator still sends its
    <query/>, with no <streamhost/> (XEP-0065 says one or more). bytestreamd
    must refuse it with an error rather than hang, end the link with a
    reason, and leave no file behind.
    """
    bob = daemonFor(daemons, slixAccount)
    watch = bob.control(watch=True)
    src = str(tmp_path / "never.bin")
    writeRandomFile(src, 64 * KiB)
    outDir = tmp_path / "received"
    outDir.mkdir()
    receiver, receiverOut = startCtl(
        bob, tmp_path, "receive", "receive", "--dir", str(outDir), "--from", slixAccount,
        "--max-wait", str(TRANSFER_TIMEOUT))
    time.sleep(1.0)
    sender = SlixPeer.start(prosody, SLIX, resource("noproxy"), tmp_path, "send",
                            "--to", bob.jid, "--file", src, "--methods", "s5b",
                            "--no-proxies", timeout=60)
    peers.append(sender)
    sent = sender.wait(90)
    assert not sent["ok"], sent
    error = sent.get("error", "")
    assert "IqError" in error or "iq" in error.lower(), \
        "slixmpp should get an error answer to its empty streamhost query: %r" % sent
    rc = finish(receiver, 90)
    assert rc not in (0, None), "bytestreamctl receive: exit %s\n%s" % (rc, readText(receiverOut))
    ended = [e for e in linkEventsOf(watch) if e.words[2:3] in (["BAD"], ["ERR"])]
    assert ended and ended[-1].options.get("reason"), watch.events
    assert os.listdir(str(outDir)) == [], os.listdir(str(outDir))


@pytest.mark.timeout(240)
def test_daemon_block_size_above_slixmpp_maximum(prosody, daemons, slixAccount, peers,
                                                 tmp_path):
    """
    slixmpp refuses IBB blocks above 8192 bytes with <resource-constraint/>;
    XEP-0047 lets the initiator retry with a smaller block size, and
    bytestreamd does. But slixmpp 1.17 consumes the SI pre-authorisation of
    the sid on the first <open/>, before checking the block size, so it
    refuses the retry with <not-acceptable/>. Pinned: bytestreamd retries
    smaller, then fails cleanly and finally with the peer's condition; if a
    later slixmpp keeps the authorisation, the file must arrive intact.
    """
    bob = daemonFor(daemons, slixAccount, "ibb")
    watch = bob.control(watch=True)
    src = str(tmp_path / "big-blocks.bin")
    digest = writeRandomFile(src, 256 * KiB)
    inDir = tmp_path / "slix-in"
    inDir.mkdir()
    receiver = SlixPeer.start(prosody, SLIX, resource("bs"), tmp_path, "receive",
                              "--dir", str(inDir), "--from", bob.bareJID, timeout=60)
    peers.append(receiver)
    assert receiver.waitReady(30), receiver.logTail(30)
    done = runCtl(bob, "send", "--block-size", "16384", src, receiver.jid, timeout=120)
    got = receiver.wait(90 if done.returncode == 0 else 5)

    opens = [line for line in receiver.stanzas("<open ") if "RECV:" in line]
    sizes = [int(m.group(1)) for m in
             (re.search(r"block-size=[\"'](\d+)[\"']", line) for line in opens) if m]
    assert sizes and sizes[0] == 16384, opens
    if done.returncode == 0:
        assert got["ok"] and got["sha256"] == digest, got
        return
    assert len(sizes) >= 2 and sizes[1] <= 8192, \
        "bytestreamd did not retry <open/> with a smaller block size: %s" % sizes
    bad = [e for e in linkEventsOf(watch) if e.words[2:3] in (["BAD"], ["ERR"])]
    assert bad and bad[-1].words[2] == "BAD" and bad[-1].options.get("final") == "yes", \
        watch.events
    reason = bad[-1].options.get("reason", "")
    assert "not-acceptable" in reason or "resource-constraint" in reason, reason
    assert not got["ok"] and not os.listdir(str(inDir)), got
