"""
Shared pieces of the bytestream benchmarks (``bench/ibb``, later ``bench/s5b``).

A benchmark compares two numbers on the same machine and the same Prosody:

- the *link rate*: bytes moved through a bytestreamd link, netcat to netcat,
  which is what a user sees;
- the *ceiling*: the same payload pushed through the same server by the
  thinnest client we can write (plain sockets + TLS, no XML library), which
  is what the server and the machine allow at all.

The ratio of the two says how much the daemon costs, independently of how
fast the machine is. Everything here is blocking Python driving real
processes (the integration harness in ``tests/integration/harness``); the
ceiling's sender and receiver are separate processes so the measurement is
not capped by one Python interpreter's GIL.
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import platform
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tests.integration.harness import (ControlClient, DaemonProcess,  # noqa: E402
                                       ProsodyServer, RawXMPPClient)
from tests.integration.harness.flows import acceptNextOffer, openLink  # noqa: E402
from tests.integration.harness.transfer import (ncReceive, ncSend,  # noqa: E402
                                                sha256File, waitGone, writeRandomFile)

KiB = 1 << 10
MiB = 1 << 20
IBB_NS = "http://jabber.org/protocol/ibb"


class BenchError(RuntimeError):
    """A run failed (wrong hash, a link not GOOD, a process that hung): abort loudly."""


def mbps(size: int, seconds: float) -> float:
    """Payload rate in MB/s (10**6 bytes), the unit the tables print."""
    return size / seconds / 1e6 if seconds > 0 else float("inf")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- the machine ------------------------------------------------------------

def _run(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpuModel() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        return "?"


def machineLines() -> List[str]:
    """What a reader needs to compare two result tables: machine and versions."""
    prosody = _run(["dpkg-query", "-W", "-f", "${Version}", "prosody"]) or "?"
    commit = _run(["git", "-C", REPO_ROOT, "describe", "--always", "--dirty"]) or "?"
    return [
        "machine:  nproc=%d, %s, %s %s" % (os.cpu_count() or 0, _cpuModel(),
                                           platform.system(), platform.release()),
        "versions: prosody %s, python %s, twisted %s, wokkel %s, %s" % (
            prosody, platform.python_version(), _version("twisted"), _version("wokkel"),
            ssl.OPENSSL_VERSION),
        "code:     bytestreamd %s" % commit,
    ]


# -- processes we own -------------------------------------------------------

class Reaper:
    """
    Everything a benchmark starts, stopped on exit, error or Ctrl-C.

    Daemons and Prosody run in their own sessions (the harness starts them
    with ``start_new_session``), so a Ctrl-C at the terminal never reaches
    them: they must be stopped explicitly, by the objects we started.
    """

    def __init__(self) -> None:
        self._closers: List[Callable[[], None]] = []

    def add(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def remove(self, closer: Callable[[], None]) -> None:
        if closer in self._closers:
            self._closers.remove(closer)

    def closeAll(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as e:  # keep closing the rest
                print("cleanup: %s" % e, file=sys.stderr)

    def installSignals(self) -> None:
        """
        SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so ``finally``
        blocks run. SIGINT explicitly too: a shell starting us in the
        background without job control hands it down ignored.
        """
        def interrupt(signum, frame):
            raise KeyboardInterrupt("signal %d" % signum)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, interrupt)


# -- one server configuration -----------------------------------------------

class Setup:
    """
    One Prosody (stock or tuned) with two daemons, alice and bob, where bob
    accepts alice's offers. Kept for all runs of a configuration: start-up
    costs seconds, a run should cost only its transfer.
    """

    def __init__(self, workdir: str, tuned: bool, links: Optional[Dict[str, object]] = None,
                 reaper: Optional[Reaper] = None) -> None:
        self.workdir = os.path.join(workdir, "tuned" if tuned else "stock")
        self.tuned = tuned
        self.links = dict(links or {})
        self.reaper = reaper
        self.prosody: Optional[ProsodyServer] = None
        self.alice: Optional[DaemonProcess] = None
        self.bob: Optional[DaemonProcess] = None
        self.aliceCtl: Optional[ControlClient] = None
        self.bobWatch: Optional[ControlClient] = None

    def start(self) -> "Setup":
        if self.reaper:
            self.reaper.add(self.close)
        self.prosody = ProsodyServer(os.path.join(self.workdir, "prosody"), tuned=self.tuned,
                                     logLevel="warn")
        self.prosody.start()
        self.alice = DaemonProcess(self.prosody, "alice", os.path.join(self.workdir, "alice"),
                                   {"links": self.links})
        self.bob = DaemonProcess(self.prosody, "bob", os.path.join(self.workdir, "bob"),
                                 {"links": self.links, "accept": {"allow": "alice@localhost"}})
        self.alice.start()
        self.bob.start()
        self.aliceCtl = self.alice.control()
        self.bobWatch = self.bob.control(watch=True)
        return self

    def close(self) -> None:
        for daemon in (self.alice, self.bob):
            if daemon is not None:
                daemon.close()
        if self.prosody is not None:
            self.prosody.close()
        self.alice = self.bob = self.prosody = None
        if self.reaper:
            self.reaper.remove(self.close)

    def logTails(self) -> str:
        parts = [d.logTail(30) for d in (self.alice, self.bob) if d is not None]
        if self.prosody is not None:
            parts.append("--- prosody ---\n" + self.prosody.logTail(20))
        return "\n".join(parts)


class TreeDaemon(DaemonProcess):
    """
    A DaemonProcess whose twistd runs the package from another tree (a
    scratch worktree of an earlier commit); settings that tree does not know
    (``newKeys``: (section, key) pairs added since) are left out of its config.
    """

    NEW_KEYS = {("s5b", "connect"), ("links", "max_buffered")}

    def __init__(self, tree: str, *args, **kwargs) -> None:
        from tests.integration.harness import daemon as harnessDaemon
        self.tree = tree
        DaemonProcess.__init__(self, *args, **kwargs)
        if tree != REPO_ROOT:
            for section, key in self.NEW_KEYS:
                self.sections.get(section, {}).pop(key, None)
            harnessDaemon.writeConfig(self.configPath, self.sections)

    def start(self, *args, **kwargs):
        from tests.integration.harness import daemon as harnessDaemon
        saved = harnessDaemon.REPO_ROOT, harnessDaemon.twistdEnvironment
        env = dict(os.environ, PYTHONPATH=self.tree)
        harnessDaemon.REPO_ROOT = self.tree
        harnessDaemon.twistdEnvironment = lambda: env
        try:
            return DaemonProcess.start(self, *args, **kwargs)
        finally:
            harnessDaemon.REPO_ROOT, harnessDaemon.twistdEnvironment = saved


# -- link rate ---------------------------------------------------------------

class Payload:
    """A random file of ``size`` bytes and its sha256, written once per size."""

    def __init__(self, workdir: str, size: int) -> None:
        self.size = size
        self.path = os.path.join(workdir, "payload-%d.bin" % size)
        self.digest = writeRandomFile(self.path, size)


def _waitExit(process: subprocess.Popen, deadline: float, what: str) -> int:
    try:
        return process.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        raise BenchError("%s did not finish in time" % what) from None


def linkRun(setup: Setup, payload: Payload, options: str, expectMethod: str,
            timeout: float = 600.0) -> float:
    """
    One link from alice to bob carrying ``payload``; returns the seconds from
    starting the netcat pair (the link already GOOD) to the receiver's EOF.
    Raises BenchError unless the copy's sha256 matches and both sides CLOS.
    """
    assert setup.alice and setup.bob and setup.aliceCtl and setup.bobWatch
    ctl, watch = setup.aliceCtl, setup.bobWatch
    copy = payload.path + ".copy"
    senderLink, senderSocket = openLink(ctl, setup.bob.jid, options)
    _, receiverLink, receiverSocket = acceptNextOffer(watch, setup.alice.bareJID, 60)
    good = ctl.waitLinkState(senderLink, ("GOOD", "BAD", "ERR", "CLOS"), 60)
    if good.words[2] != "GOOD" or good.options.get("method") != expectMethod:
        raise BenchError("link %s did not become GOOD with %s: %s"
                         % (senderLink, expectMethod, ctl.linkEvents(senderLink)))
    rgood = watch.waitLinkState(receiverLink, ("GOOD", "BAD", "ERR", "CLOS"), 60)
    if rgood.words[2] != "GOOD":
        raise BenchError("receiving link %s: %s" % (receiverLink,
                                                    watch.linkEvents(receiverLink)))

    started = time.monotonic()
    receiver = ncReceive(receiverSocket, copy)
    sender = ncSend(senderSocket, payload.path)
    try:
        deadline = started + timeout
        if _waitExit(receiver, deadline, "nc receiver") != 0:
            raise BenchError("nc receiver failed: %r" % receiver.stderr.read())
        seconds = time.monotonic() - started
        if _waitExit(sender, time.monotonic() + 30, "nc sender") != 0:
            raise BenchError("nc sender failed: %r" % sender.stderr.read())
    finally:
        for process in (receiver, sender):
            if process.poll() is None:
                process.kill()
                process.wait(5)
            process.stderr.close()

    end = ctl.waitLinkState(senderLink, ("CLOS", "ERR", "BAD"), 30)
    rend = watch.waitLinkState(receiverLink, ("CLOS", "ERR", "BAD"), 30)
    if end.words[2] != "CLOS" or rend.words[2] != "CLOS":
        raise BenchError("link did not close cleanly: %s / %s" % (end, rend))
    got = os.path.getsize(copy)
    if got != payload.size:
        raise BenchError("HASH MISMATCH: received %d of %d bytes" % (got, payload.size))
    digest = sha256File(copy)
    if digest != payload.digest:
        raise BenchError("HASH MISMATCH: sha256 %s, sent %s" % (digest, payload.digest))
    os.unlink(copy)
    waitGone(senderSocket, 5)
    waitGone(receiverSocket, 5)
    return seconds


# -- IBB ceiling: raw clients -------------------------------------------------

_IQ_TOKEN = re.compile(rb"<iq\b[^>]*>|</iq>")
_ID = re.compile(rb"""\sid=['"]([^'"]*)['"]""")
_TYPE = re.compile(rb"""\stype=['"]([^'"]*)['"]""")
_TAIL = 1024  # longer than any <iq ...> opening tag Prosody forwards

IQToken = Optional[Tuple[bytes, bytes, bool]]


class IQScanner:
    """
    Finds ``<iq ...>`` opening tags and ``</iq>`` end tags in a byte stream
    split anywhere, without an XML parser: base64 payloads never contain
    ``<``. :meth:`feed` returns each token once, in order: ``(id, type,
    selfClosed)`` for an opening tag, ``None`` for an end tag.
    """

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> List[IQToken]:
        buf = self.buffer + data if self.buffer else data
        found: List[IQToken] = []
        consumed = 0
        for m in _IQ_TOKEN.finditer(buf):
            tag = m.group(0)
            consumed = m.end()
            if tag == b"</iq>":
                found.append(None)
                continue
            ident = _ID.search(tag)
            kind = _TYPE.search(tag)
            found.append((ident.group(1) if ident else b"", kind.group(1) if kind else b"",
                          tag.endswith(b"/>")))
        self.buffer = buf[max(consumed, len(buf) - _TAIL):]
        return found


def _childSignals() -> None:
    """A ceiling client leaves Ctrl-C to the parent, which terminates it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _rawLogin(prosody: ProsodyServer, account: str, resource: str) -> RawXMPPClient:
    _childSignals()
    client = RawXMPPClient("127.0.0.1", prosody.c2sPort, prosody.jid(account, resource),
                           prosody.passwords[account], prosody.caPath, answerIQs=False)
    client.login(presence=False)
    client.sock.settimeout(120)
    return client


def _ceilingReceiver(conn, prosody: ProsodyServer, blocks: int, sender: str) -> None:
    """bob/raw: answer every IBB data iq with a result until ``blocks`` came."""
    try:
        client = _rawLogin(prosody, "bob", "raw")
        conn.send(("ready", client.jid))
        sock = client.sock
        scanner = IQScanner()
        to = sender.encode()
        open_: List[bytes] = []  # ids of iqs whose end tag has not come yet
        seen = 0
        received = 0
        while seen < blocks:
            data = sock.recv(262144)
            if not data:
                raise BenchError("bob/raw: connection closed after %d blocks" % seen)
            received += len(data)
            replies = []
            for token in scanner.feed(data):
                if token is not None:
                    if token[1] != b"set" or not token[0].startswith(b"c") or token[2]:
                        raise BenchError("bob/raw: unexpected iq %r" % (token,))
                    open_.append(token[0])
                    continue
                # answer only once the whole stanza (payload included) is here
                ident = open_.pop(0)
                replies.append(b"<iq type='result' to='%s' id='%s'/>" % (to, ident))
            if replies:
                seen += len(replies)
                sock.sendall(b"".join(replies))
        conn.send(("done", seen, received))
        client.close()
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", "%s: %s" % (type(e).__name__, e)))


def _ceilingSender(conn, prosody: ProsodyServer, blocks: int, blockSize: int,
                   inflight: int, target: str) -> None:
    """alice/raw: keep ``inflight`` data iqs outstanding until all are answered."""
    try:
        client = _rawLogin(prosody, "alice", "raw")
        conn.send(("ready", client.jid))
        if conn.recv() != "go":
            return
        sock = client.sock
        scanner = IQScanner()
        body = base64.b64encode(os.urandom(blockSize))
        head = b"<iq type='set' to='%s' id='c%%d'><data xmlns='%s' seq='%%d' sid='bench'>" \
            % (target.encode(), IBB_NS.encode())
        tail = b"</data></iq>"

        def stanza(n: int) -> bytes:
            return (head % (n, n & 0xFFFF)) + body + tail

        started = time.monotonic()
        sent = min(inflight, blocks)
        sock.sendall(b"".join(stanza(n) for n in range(sent)))
        acked = 0
        while acked < blocks:
            data = sock.recv(262144)
            if not data:
                raise BenchError("alice/raw: connection closed after %d acks" % acked)
            results = [t for t in scanner.feed(data)
                       if t is not None and t[0].startswith(b"c")]
            for ident, kind, _ in results:
                if kind != b"result":
                    raise BenchError("alice/raw: iq %s answered %r" % (ident, kind))
            acked += len(results)
            more = min(len(results), blocks - sent)
            if more > 0:
                sock.sendall(b"".join(stanza(n) for n in range(sent, sent + more)))
                sent += more
        seconds = time.monotonic() - started
        conn.send(("done", seconds))
        client.close()
    except BaseException as e:
        conn.send(("error", "%s: %s" % (type(e).__name__, e)))


def _expect(conn, what: str, timeout: float):
    if not conn.poll(timeout):
        raise BenchError("%s: no answer within %.0fs" % (what, timeout))
    message = conn.recv()
    if message[0] == "error":
        raise BenchError("%s failed: %s" % (what, message[1]))
    return message


def ibbCeilingRun(prosody: ProsodyServer, size: int, blockSize: int, inflight: int = 16,
                  timeout: float = 600.0, reaper: Optional[Reaper] = None) -> float:
    """
    Raw IBB data iqs of ``blockSize`` from alice/raw to bob/raw through
    ``prosody``, ``inflight`` unanswered at a time, until ``size`` bytes of
    payload are acknowledged. Two processes; returns the sender's seconds
    from its first data iq to the last result.
    """
    blocks = -(-size // blockSize)
    ctx = multiprocessing.get_context("fork")
    rxParent, rxChild = ctx.Pipe()
    txParent, txChild = ctx.Pipe()
    receiver = ctx.Process(target=_ceilingReceiver, daemon=True,
                           args=(rxChild, prosody, blocks, prosody.jid("alice", "raw")))
    sender = ctx.Process(target=_ceilingSender, daemon=True,
                         args=(txChild, prosody, blocks, blockSize, inflight,
                               prosody.jid("bob", "raw")))

    def stop() -> None:
        for process in (sender, receiver):
            if process.pid is None:  # never started
                continue
            if process.is_alive():
                process.terminate()
            process.join(5)

    if reaper:
        reaper.add(stop)
    try:
        receiver.start()
        _expect(rxParent, "ceiling receiver login", 30)
        sender.start()
        _expect(txParent, "ceiling sender login", 30)
        txParent.send("go")
        seconds = _expect(txParent, "ceiling sender", timeout)[1]
        _, seen, _ = _expect(rxParent, "ceiling receiver", 30)
        if seen != blocks:
            raise BenchError("ceiling receiver answered %d of %d blocks" % (seen, blocks))
        return seconds
    finally:
        stop()
        if reaper:
            reaper.remove(stop)


# -- output ------------------------------------------------------------------

def makeWorkdir(prefix: str) -> str:
    """A short directory under /tmp (UNIX socket paths must stay under 107 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def removeWorkdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)

