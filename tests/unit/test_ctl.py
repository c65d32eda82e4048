"""
Tests for ``bytestreamctl`` against a scripted control server.

The fake daemon is a thread serving a real AF_UNIX socket in a temporary
directory: it records every command line, answers from a script and emits
events; a fake link socket plays the daemon's per-link socket.  The client
runs in a thread too, so every wait is bounded by a join timeout.
"""

from __future__ import annotations

import io
import json
import os
import select
import socket
import threading
import time
from typing import Callable, Dict, List, Optional

import pytest

from bytestreamd.control.grammar import parseCommand
from bytestreamd.ctl import run
from bytestreamd.ctl.client import CtlError, defaultControlPath
from bytestreamd.ctl.output import Console

WAIT = 5.0


class FakeControlConn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, *lines: str) -> None:
        with self.lock:
            self.sock.sendall("".join(line + "\n" for line in lines).encode("utf-8"))


class FakeDaemon:
    """
    ``handlers`` map an upper-cased verb to ``f(conn, line)``; a verb
    without a handler gets ``510``.  ``lines`` records what arrived.
    """

    def __init__(self, directory: str):
        self.path = os.path.join(directory, "control")
        self.lines: List[str] = []
        self.handlers: Dict[str, Callable[[FakeControlConn, str], None]] = {}
        self.conns: List[FakeControlConn] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(5)
        self.listener.settimeout(WAIT)
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def reply(self, verb: str, *lines: str) -> None:
        self.handlers[verb] = lambda conn, line: conn.send(*lines)

    def _serve(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.settimeout(WAIT)
            threading.Thread(target=self._talk, args=(sock,), daemon=True).start()

    def _talk(self, sock: socket.socket) -> None:
        conn = FakeControlConn(sock)
        self.conns.append(conn)
        buf = b""
        while not self.stopped:
            try:
                data = sock.recv(4096)
            except OSError:
                break
            if not data:
                break
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode("utf-8")
                self.lines.append(line)
                verb = line.split(" ", 1)[0].upper()
                handler = self.handlers.get(verb)
                if handler is None:
                    conn.send("510 unknown command " + verb)
                else:
                    handler(conn, line)
        sock.close()

    def stop(self) -> None:
        self.stopped = True
        try:  # wake the accept() up: closing the listener does not
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(self.path)
        except OSError:
            pass
        self.thread.join(WAIT)
        self.listener.close()
        for conn in self.conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(WAIT)


class FakeLink:
    """A link socket serving one client with ``behaviour(sock)`` in a thread."""

    def __init__(self, directory: str, name: str, behaviour: Callable[[socket.socket], None]):
        os.makedirs(os.path.join(directory, "links"), exist_ok=True)
        self.path = os.path.join(directory, "links", name)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(WAIT)
        self.received = b""
        self.error: Optional[BaseException] = None
        self.behaviour = behaviour
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
            sock.settimeout(WAIT)
            with sock:
                self.behaviour(sock)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def readAll(self, sock: socket.socket) -> bytes:
        while True:
            data = sock.recv(4096)
            if not data:
                return self.received
            self.received += data

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "fake link still running"
        if self.error is not None:
            raise self.error
        self.listener.close()


@pytest.fixture
def daemon(tmp_path):
    d = FakeDaemon(str(tmp_path))
    yield d
    d.stop()


class Result:
    def __init__(self, code: int, out: str, err: str, data: bytes):
        self.code, self.out, self.err, self.data = code, out, err, data


def runCtl(daemon: Optional[FakeDaemon], argv: List[str], stdin: bytes = b"",
           environ: Optional[Dict[str, str]] = None, tmp: Optional[str] = None,
           stdinFd: Optional[int] = None, stdoutFd: Optional[int] = None) -> Result:
    """Run the client in a thread against ``daemon``; bounded by WAIT."""
    tmp = tmp or os.path.dirname(daemon.path)
    inPath, outPath = os.path.join(tmp, "stdin"), os.path.join(tmp, "stdout")
    with open(inPath, "wb") as f:
        f.write(stdin)
    inFd = os.open(inPath, os.O_RDONLY) if stdinFd is None else stdinFd
    outFd = os.open(outPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if stdoutFd is None else stdoutFd
    out, err = io.StringIO(), io.StringIO()
    console = Console(inFd, outFd, out, err, environ or {}, 1000)
    if daemon is not None and "--control" not in argv:
        argv = ["--control", daemon.path] + argv
    codes: List[int] = []
    thread = threading.Thread(target=lambda: codes.append(run(argv, console)), daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "bytestreamctl did not finish; stderr: %r" % err.getvalue()
    if stdinFd is None:
        os.close(inFd)
    if stdoutFd is None:
        os.close(outFd)
    data = b""
    if stdoutFd is None:
        with open(outPath, "rb") as f:
            data = f.read()
    return Result(codes[0], out.getvalue(), err.getvalue(), data)


# --- socket discovery ----------------------------------------------------------


def test_defaultControlPath():
    assert defaultControlPath({}, 0) == "/run/bytestreamd/control"
    assert defaultControlPath({"XDG_RUNTIME_DIR": "/run/user/5"}, 5) == \
        "/run/user/5/bytestreamd/control"
    assert defaultControlPath(
        {"XDG_RUNTIME_DIR": "/run/user/5", "BYTESTREAMD_CONTROL": "/tmp/c",
         "RUNTIME_DIRECTORY": "/nope"}, 5) == "/tmp/c"
    with pytest.raises(CtlError) as info:
        defaultControlPath({"RUNTIME_DIRECTORY": "/nope"}, 5)
    assert info.value.exitCode == 2


def test_environmentVariableFindsSocket(daemon):
    daemon.reply("CLOSE", "250 OK")
    result = runCtl(None, ["close", "3"], environ={"BYTESTREAMD_CONTROL": daemon.path},
                    tmp=os.path.dirname(daemon.path))
    assert result.code == 0, result.err
    assert daemon.lines == ["CLOSE 3"]


def test_controlOptionAfterSubcommand(daemon):
    daemon.reply("CLOSE", "250 OK")
    result = runCtl(None, ["close", "3", "--control", daemon.path],
                    environ={"BYTESTREAMD_CONTROL": "/nonexistent/control"},
                    tmp=os.path.dirname(daemon.path))
    assert result.code == 0, result.err


def test_missingSocket(tmp_path):
    result = runCtl(None, ["--control", str(tmp_path / "nothing"), "status"], tmp=str(tmp_path))
    assert result.code == 2
    assert "no control socket at %s" % (tmp_path / "nothing") in result.err
    assert result.out == ""


def test_refusingSocket(tmp_path):
    path = str(tmp_path / "stale")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    result = runCtl(None, ["--control", path, "links"], tmp=str(tmp_path))
    assert result.code == 2
    assert "refuses connections" in result.err


def test_noRuntimeDir(tmp_path):
    result = runCtl(None, ["status"], environ={}, tmp=str(tmp_path))
    assert result.code == 2
    assert "XDG_RUNTIME_DIR" in result.err


# --- simple commands -----------------------------------------------------------


def test_status(daemon):
    daemon.reply("STATUS", "250-jid=alice@example.org/daemon", "250-server=connected",
                 "250-methods=s5b,ibb", "250-links=2", "250 OK")
    result = runCtl(daemon, ["status"])
    assert result.code == 0
    assert result.out.splitlines() == [
        "jid      alice@example.org/daemon", "server   connected",
        "methods  s5b,ibb", "links    2"]
    result = runCtl(daemon, ["status", "--json"])
    assert json.loads(result.out) == {
        "jid": "alice@example.org/daemon", "server": "connected",
        "methods": "s5b,ibb", "links": 2}


def test_errorReply(daemon):
    daemon.reply("STATUS", "550 not connected to the XMPP server")
    result = runCtl(daemon, ["status"])
    assert result.code == 1
    assert result.err == "bytestreamctl: 550 not connected to the XMPP server\n"
    assert result.out == ""


LINKS = [
    '250-link=1 state=GOOD peer="bob@example.org/my laptop" method=s5b direction=out '
    'sent=10 received=2048 socket=/run/b/links/1 service=ssh',
    '250-link=2 state=OFFER peer=carol@example.org/x method=- direction=in sent=0 '
    'received=0 socket=- reason="she said \\"later\\""',
    "250 OK",
]


def test_linksTable(daemon):
    daemon.reply("LINKS", *LINKS)
    result = runCtl(daemon, ["links"])
    assert result.code == 0
    rows = result.out.splitlines()
    assert rows[0].split() == ["LINK", "STATE", "DIR", "PEER", "METHOD", "SERVICE",
                               "SENT", "RECEIVED", "SOCKET"]
    assert "bob@example.org/my laptop" in rows[1]
    assert rows[1].split()[:3] == ["1", "GOOD", "out"]
    assert rows[1].endswith("/run/b/links/1")
    assert rows[2].split()[:4] == ["2", "OFFER", "in", "carol@example.org/x"]
    assert len(rows) == 3


def test_linksJSON(daemon):
    daemon.reply("LINKS", *LINKS)
    result = runCtl(daemon, ["links", "--json"])
    links = json.loads(result.out)
    assert links[0] == {"link": "1", "state": "GOOD", "peer": "bob@example.org/my laptop",
                        "method": "s5b", "direction": "out", "sent": 10, "received": 2048,
                        "socket": "/run/b/links/1", "service": "ssh"}
    assert links[1]["reason"] == 'she said "later"'


def test_noLinks(daemon):
    daemon.reply("LINKS", "250 OK")
    assert runCtl(daemon, ["links"]).out == "no links\n"
    assert json.loads(runCtl(daemon, ["links", "--json"]).out) == []


def test_openQuotesValues(daemon):
    daemon.reply("OPEN", '250 link=7 socket="/run/b d/links/7"')
    result = runCtl(daemon, ["open", "bob@example.org/my laptop", "--service", "my svc",
                             "--methods", "s5b", "--methods", "ibb", "--block-size", "8192",
                             "--stanza", "message"])
    assert result.code == 0, result.err
    assert result.out == "7 /run/b d/links/7\n"
    command = parseCommand(daemon.lines[0])
    assert command.verb == "OPEN"
    assert command.args == ["bob@example.org/my laptop"]
    assert command.options == {"service": "my svc", "methods": "s5b,ibb",
                               "block-size": "8192", "stanza": "message"}


def test_openJSON(daemon):
    daemon.reply("OPEN", "250 link=7 socket=/run/b/links/7")
    result = runCtl(daemon, ["open", "bob@example.org", "--json"])
    assert json.loads(result.out) == {"link": "7", "socket": "/run/b/links/7"}
    assert daemon.lines == ["OPEN bob@example.org"]


def test_openRefused(daemon):
    daemon.reply("OPEN", "512 bad JID \"@x\": empty localpart")
    result = runCtl(daemon, ["open", "@x"])
    assert result.code == 1
    assert result.err == 'bytestreamctl: 512 bad JID "@x": empty localpart\n'


def test_openWaitFailure(daemon):
    daemon.reply("OPEN", "250 link=7 socket=/run/b/links/7",
                 "650 LINK 7 INIT method=ibb",
                 '650 LINK 7 BAD method=ibb reason="peer answered not-acceptable" final=yes')
    result = runCtl(daemon, ["open", "bob@example.org", "--wait"])
    assert result.code == 1
    assert "link 7 BAD: peer answered not-acceptable" in result.err


def test_openWaitGood(daemon):
    daemon.reply("OPEN", "250 link=7 socket=/run/b/links/7", "650 LINK 9 BAD final=yes",
                 "650 LINK 7 INIT method=ibb", "650 LINK 7 GOOD method=ibb")
    result = runCtl(daemon, ["open", "bob@example.org", "--wait"])
    assert result.code == 0, result.err


def test_close(daemon):
    daemon.reply("CLOSE", "250 OK")
    result = runCtl(daemon, ["close", "a b"])
    assert result.code == 0
    assert daemon.lines == ['CLOSE "a b"']
    daemon.reply("CLOSE", "552 no such link 9")
    result = runCtl(daemon, ["close", "9"])
    assert (result.code, result.err) == (1, "bytestreamctl: 552 no such link 9\n")


def test_replyTimeout(daemon):
    daemon.handlers["STATUS"] = lambda conn, line: None
    result = runCtl(daemon, ["--timeout", "0.2", "status"])
    assert result.code == 1
    assert "no reply to STATUS within 0.2 s" in result.err


EVENTS = [
    "650 SERVER connected",
    '650 OFFER 4 from=bob@example.org/x service=ssh name="a \\"b\\""',
    "650 LINK 3 GOOD method=ibb peer=bob@example.org/x",
    "650 LINK 3 CLOS sent=5 received=7",
]


def test_watch(daemon):
    daemon.reply("WATCH", "250 OK", *EVENTS)
    result = runCtl(daemon, ["watch", "--count", "4"])
    assert result.code == 0
    assert result.out.splitlines() == [line[4:] for line in EVENTS]
    assert daemon.lines == ["WATCH"]


def test_watchJSON(daemon):
    daemon.reply("WATCH", "250 OK", *EVENTS)
    result = runCtl(daemon, ["watch", "--json", "--count", "4"])
    assert [json.loads(line) for line in result.out.splitlines()] == [
        {"event": "SERVER", "state": "connected"},
        {"event": "OFFER", "offer": "4", "from": "bob@example.org/x", "service": "ssh",
         "name": 'a "b"'},
        {"event": "LINK", "link": "3", "state": "GOOD", "method": "ibb",
         "peer": "bob@example.org/x"},
        {"event": "LINK", "link": "3", "state": "CLOS", "sent": 5, "received": 7},
    ]


def test_watchDaemonGoes(daemon):
    def watch(conn, line):
        conn.send("250 OK", "650 SERVER disconnected reason=\"stream error\"")
        conn.sock.shutdown(socket.SHUT_RDWR)
    daemon.handlers["WATCH"] = watch
    result = runCtl(daemon, ["watch"])
    assert result.code == 1
    assert result.out == 'SERVER disconnected reason="stream error"\n'
    assert "closed the control connection" in result.err


def test_eventsDoNotSplitReplies(daemon):
    """An event that comes before a reply is kept, not taken as the reply."""
    daemon.reply("OPEN", "650 LINK 1 INIT", "250 link=7 socket=/s")
    result = runCtl(daemon, ["open", "bob@example.org"])
    assert result.out == "7 /s\n"


def test_helpListsEveryCommand(daemon, capsys):
    # send and receive are tested in test_ctl_files.py
    assert run(["--help"], Console(0, 1, io.StringIO(), io.StringIO(), {}, 0)) == 0
    helpText = capsys.readouterr().out
    for name in ("status", "links", "open", "close", "watch", "connect", "listen",
                 "send", "receive"):
        assert "\n    %s " % name in helpText


# --- connect and listen ---------------------------------------------------------


def linkOpener(daemon: FakeDaemon, link: FakeLink, linkId: str, *events: str) -> None:
    daemon.reply("OPEN", "250 link=%s socket=%s" % (linkId, link.path), *events)


def test_connectHalfClose(daemon, tmp_path):
    """stdin EOF half-closes the link; the answer still comes back whole."""
    answer = b"".join(b"%05d\n" % i for i in range(20000))  # larger than socket buffers

    def behaviour(sock):
        data = link.readAll(sock)
        sock.sendall(answer + data.upper())
        daemon.conns[-1].send("650 LINK 1 GOOD method=s5b")  # late and harmless
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1", "650 LINK 1 INIT method=s5b")
    original = behaviour

    def thenClose(sock):
        original(sock)
        sock.close()
        daemon.conns[-1].send("650 LINK 1 CLOS sent=5 received=7")
    link.behaviour = thenClose
    result = runCtl(daemon, ["connect", "bob@example.org/daemon", "--service", "ssh"],
                    stdin=b"hello")
    link.join()
    assert result.code == 0, result.err
    assert link.received == b"hello"
    assert result.data == answer + b"HELLO"
    assert result.err == ""
    assert parseCommand(daemon.lines[0]).options == {"service": "ssh"}


def test_connectClosBeforeSocketEOF(daemon, tmp_path):
    """CLOS may come first: every byte of the socket is still written."""
    def behaviour(sock):
        link.readAll(sock)
        daemon.conns[-1].send("650 LINK 1 CLOS")
        sock.sendall(b"tail")
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1")
    result = runCtl(daemon, ["connect", "bob@example.org"], stdin=b"x")
    link.join()
    assert result.code == 0, result.err
    assert result.data == b"tail"


def test_connectInteractive(daemon, tmp_path):
    """Bytes flow both ways while stdin is still open (ssh's case)."""
    def behaviour(sock):
        line = b""
        while not line.endswith(b"\n"):
            line += sock.recv(100)
        link.received = line
        sock.sendall(b"echo:" + line)
        link.readAll(sock)
        sock.sendall(b"bye\n")
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1", "650 LINK 1 GOOD method=ibb")

    def closed():
        link.thread.join(WAIT)
        daemon.conns[-1].send("650 LINK 1 CLOS")
    inR, inW = os.pipe()
    outR, outW = os.pipe()
    results: List[Result] = []
    runner = threading.Thread(target=lambda: results.append(runCtl(
        daemon, ["connect", "bob@example.org"], stdinFd=inR, stdoutFd=outW)), daemon=True)
    runner.start()
    os.write(inW, b"ping\n")
    got = b""
    while not got.endswith(b"\n"):
        ready, _, _ = select.select([outR], [], [], WAIT)
        assert ready, "no echo while stdin is open"
        got += os.read(outR, 100)
    assert got == b"echo:ping\n"
    threading.Thread(target=closed, daemon=True).start()
    os.close(inW)
    runner.join(WAIT + 1)
    link.join()
    assert results and results[0].code == 0, results and results[0].err
    os.close(outW)
    rest = b""
    while True:
        chunk = os.read(outR, 100)
        if not chunk:
            break
        rest += chunk
    os.close(inR)
    os.close(outR)
    assert rest == b"bye\n"
    assert link.received == b"ping\n"


def test_connectRemoteHalfClose(daemon, tmp_path):
    """The peer's EOF does not stop stdin from flowing the other way."""
    def behaviour(sock):
        sock.sendall(b"greeting")
        sock.shutdown(socket.SHUT_WR)
        link.readAll(sock)
        sock.close()
        daemon.conns[-1].send("650 LINK 1 CLOS")
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1")
    inR, inW = os.pipe()
    outR, outW = os.pipe()
    results: List[Result] = []
    runner = threading.Thread(target=lambda: results.append(runCtl(
        daemon, ["connect", "bob@example.org", "--linger", "0.05"],
        stdinFd=inR, stdoutFd=outW)), daemon=True)
    runner.start()
    ready, _, _ = select.select([outR], [], [], WAIT)
    assert ready and os.read(outR, 100) == b"greeting"
    time.sleep(0.2)  # several lingers: the client must still be piping
    os.write(inW, b"late upload")
    os.close(inW)
    runner.join(WAIT + 1)
    link.join()
    for fd in (inR, outR, outW):
        os.close(fd)
    assert results and results[0].code == 0, results and results[0].err
    assert link.received == b"late upload"


def test_connectFinalBad(daemon, tmp_path):
    """A final BAD ends the client with its reason, even with stdin open."""
    def behaviour(sock):
        daemon.conns[-1].send(
            '650 LINK 1 BAD method=s5b reason="no candidate reachable: 10.0.0.2:7777 refused"',
            "650 LINK 1 INIT method=ibb",
            '650 LINK 1 BAD method=ibb reason="bob answered item-not-found" final=yes')
        sock.recv(10)  # until the client goes
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1", "650 LINK 1 INIT method=s5b")
    inR, inW = os.pipe()  # stdin stays open: only the event can end this
    try:
        result = runCtl(daemon, ["connect", "bob@example.org"], stdinFd=inR)
    finally:
        os.close(inW)
        os.close(inR)
    link.join()
    assert result.code == 1
    assert result.err == "bytestreamctl: link 1 BAD: bob answered item-not-found\n"
    assert result.data == b""


def test_connectVerboseReportsFallback(daemon, tmp_path):
    def behaviour(sock):
        daemon.conns[-1].send('650 LINK 1 BAD method=s5b reason="proxy timed out"',
                             "650 LINK 1 INIT method=ibb", "650 LINK 1 GOOD method=ibb")
        link.readAll(sock)
        sock.close()
        daemon.conns[-1].send("650 LINK 1 CLOS")
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1")
    result = runCtl(daemon, ["-v", "connect", "bob@example.org"], stdin=b"z")
    link.join()
    assert result.code == 0
    assert "link 1: s5b failed: proxy timed out; trying the next method" in result.err


def test_connectErr(daemon, tmp_path):
    def behaviour(sock):
        sock.sendall(b"partial")
        daemon.conns[-1].send('650 LINK 1 ERR reason="ibb: close by peer before end"')
        sock.close()
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1", "650 LINK 1 GOOD")
    inR, inW = os.pipe()
    try:
        result = runCtl(daemon, ["connect", "bob@example.org"], stdinFd=inR)
    finally:
        os.close(inW)
        os.close(inR)
    link.join()
    assert result.code == 1
    assert "link 1 ERR: ibb: close by peer before end" in result.err


def test_connectSocketGoneUsesEventReason(daemon, tmp_path):
    daemon.reply("OPEN", "250 link=1 socket=%s" % (tmp_path / "links" / "1"),
                 '650 LINK 1 BAD reason="no common method" final=yes')
    result = runCtl(daemon, ["connect", "bob@example.org"])
    assert result.code == 1
    assert result.err == "bytestreamctl: link 1 BAD: no common method\n"


def test_connectSocketEOFWithoutEventExitsAfterLinger(daemon, tmp_path):
    def behaviour(sock):
        link.readAll(sock)
        sock.sendall(b"ok")
    link = FakeLink(str(tmp_path), "1", behaviour)
    linkOpener(daemon, link, "1")
    result = runCtl(daemon, ["connect", "bob@example.org", "--linger", "0.1"], stdin=b"q")
    link.join()
    assert (result.code, result.data) == (0, b"ok")


def test_connectOpenRefused(daemon):
    daemon.reply("OPEN", "554 bob@example.org cannot be reached: remote-server-not-found")
    result = runCtl(daemon, ["connect", "bob@example.org"])
    assert result.code == 1
    assert result.err == ("bytestreamctl: 554 bob@example.org cannot be reached: "
                          "remote-server-not-found\n")


def test_listenAcceptsMatchingOffer(daemon, tmp_path):
    def behaviour(sock):
        sock.sendall(b"from bob")
        link.readAll(sock)
        sock.close()
        daemon.conns[-1].send("650 LINK 6 CLOS")
    link = FakeLink(str(tmp_path), "6", behaviour)
    daemon.reply("WATCH", "250 OK",
                 "650 OFFER 5 from=carol@example.org/a service=web",
                 "650 LINK 2 GOOD",
                 "650 OFFER 6 from=bob@example.org/daemon service=ssh")
    daemon.reply("ACCEPT", "250 link=6 socket=%s" % link.path, "650 LINK 6 GOOD method=ibb")
    result = runCtl(daemon, ["listen", "--service", "ssh"], stdin=b"from me")
    link.join()
    assert result.code == 0, result.err
    assert daemon.lines == ["WATCH", "ACCEPT 6"]
    assert result.data == b"from bob"
    assert link.received == b"from me"


def test_listenNoStdin(daemon, tmp_path):
    """-d: stdin at EOF (/dev/null in a script) must not end the link."""
    def behaviour(sock):
        sock.sendall(b"payload")
        sock.settimeout(0.3)
        try:
            link.received = sock.recv(10)  # nothing, and no EOF from the client
        except socket.timeout:
            link.received = b"<still open>"
        sock.close()
        daemon.conns[-1].send("650 LINK 6 CLOS")
    link = FakeLink(str(tmp_path), "6", behaviour)
    daemon.reply("WATCH", "250 OK", "650 OFFER 6 from=bob@example.org/daemon")
    daemon.reply("ACCEPT", "250 link=6 socket=%s" % link.path)
    result = runCtl(daemon, ["listen", "-d", "--linger", "0.05"], stdin=b"ignored")
    link.join()
    assert result.code == 0, result.err
    assert result.data == b"payload"
    assert link.received == b"<still open>"


def test_listenFromFilter(daemon, tmp_path):
    link = FakeLink(str(tmp_path), "5", lambda sock: None)
    daemon.reply("WATCH", "250 OK",
                 "650 OFFER 4 from=mallory@example.org/a service=ssh",
                 "650 OFFER 5 from=bob@example.org/daemon service=ssh")

    def accept(conn, line):
        conn.send("250 link=5 socket=%s" % link.path)
        link.thread.join(WAIT)
        conn.send("650 LINK 5 CLOS")
    daemon.handlers["ACCEPT"] = accept
    result = runCtl(daemon, ["listen", "--from", "bob@example.org"])
    link.join()
    assert result.code == 0, result.err
    assert daemon.lines == ["WATCH", "ACCEPT 5"]


def test_listenGivesUp(daemon):
    daemon.reply("WATCH", "250 OK", "650 OFFER 5 from=carol@example.org/a service=web")
    result = runCtl(daemon, ["listen", "--service", "ssh", "--max-wait", "0.2"])
    assert result.code == 1
    assert "no matching offer within 0.2 s" in result.err
    assert daemon.lines == ["WATCH"]


def test_bytestreamctlStartsWithoutTwisted():
    """A ProxyCommand starts for every ssh connection: keep Twisted out of it."""
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, bytestreamd.ctl; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))"],
        capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# --- e2e: fingerprint, trust, forget, --e2e ----------------------------------------

FP = ":".join(["0A"] * 32)


def test_fingerprintTrustForget(daemon):
    daemon.reply("FINGERPRINT", "250-jid=alice@example.org", "250-hash=sha-256",
                 "250-fingerprint=%s" % FP, "250 OK")
    result = runCtl(daemon, ["fingerprint"])
    assert result.code == 0, result.err
    assert "fingerprint  %s" % FP in result.out
    assert json.loads(runCtl(daemon, ["fingerprint", "--json"]).out)["fingerprint"] == FP
    daemon.reply("TRUST", "250-jid=bob@example.org", "250-fingerprint=%s" % FP,
                 "250-added=yes", "250 OK")
    result = runCtl(daemon, ["trust", "bob@example.org", FP])
    assert result.code == 0 and "added" in result.out
    assert daemon.lines[-1] == "TRUST bob@example.org %s" % FP
    daemon.reply("FORGET", "250-jid=bob@example.org", "250-removed=1", "250 OK")
    assert runCtl(daemon, ["forget", "bob@example.org"]).code == 0
    assert daemon.lines[-1] == "FORGET bob@example.org"


def test_openE2EOptions(daemon):
    daemon.reply("OPEN", "250 link=7 socket=/run/x/7")
    for argv, value in ((["--e2e"], "bytes"), (["--no-e2e"], "off"),
                        (["--e2e-mode", "xmpp"], "xmpp")):
        result = runCtl(daemon, ["open", "bob@example.org/x"] + argv)
        assert result.code == 0, result.err
        assert parseCommand(daemon.lines[-1]).options == {"e2e": value}
    result = runCtl(daemon, ["open", "bob@example.org/x", "--e2e", "--no-e2e"])
    assert result.code != 0
