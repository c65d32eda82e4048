"""
``bytestreamctl``: the command-line client of the bytestreamd control socket.

Plain blocking sockets and :mod:`selectors`, no reactor: it must start fast
and behave like netcat when ssh runs it as a ProxyCommand, with stdin and
stdout carrying the stream and stderr the only place for words.  The quoting
rules live in :mod:`bytestreamd.control.grammar`, shared with the daemon, so
both ends agree on every value.

Exit codes: 0 success, 1 the daemon or the link said no (reply code, final
``BAD``/``ERR``), 2 usage errors and an unreachable control socket.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import socket
import stat
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from bytestreamd.control.grammar import formatValue, parseArguments, parseReplyLine

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Seconds to wait for a reply to a command (``--timeout``).
REPLY_TIMEOUT = 30.0
#: Seconds to wait for the link's last event once its socket has ended
#: (or for the socket to end once ``CLOS`` came): the two arrive on
#: different sockets, in either order.
LINGER = 2.0
#: Longest line accepted from the daemon; anything longer is a broken peer.
MAX_LINE = 1 << 20
_CHUNK = 65536

#: Keys whose values are byte counts; ``--json`` makes them numbers.
_NUMERIC = frozenset({"sent", "received", "size", "block-size", "offset", "length"})


class CtlError(Exception):
    """A failure to report as ``bytestreamctl: <message>`` with ``exitCode``."""

    def __init__(self, message: str, exitCode: int = EXIT_FAILED):
        Exception.__init__(self, message)
        self.message = message
        self.exitCode = exitCode


class ControlClosed(CtlError):
    """The daemon closed the control connection."""

    def __init__(self) -> None:
        CtlError.__init__(self, "the daemon closed the control connection")


# --- values ----------------------------------------------------------------


@dataclass
class Reply:
    """One complete reply: its code and the text of each of its lines."""

    code: int
    lines: List[str]

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def text(self) -> str:
        return self.lines[-1]

    def options(self) -> Dict[str, str]:
        """The ``key=value`` pairs of every line, later lines winning."""
        merged: Dict[str, str] = {}
        for line in self.lines:
            merged.update(_parse(line)[1])
        return merged


@dataclass
class Event:
    """One ``650`` line: ``kind``, positional ``words``, ``options``."""

    kind: str
    words: List[str] = field(default_factory=list)
    options: Dict[str, str] = field(default_factory=dict)
    text: str = ""

    @classmethod
    def fromText(cls, text: str) -> "Event":
        words, options = _parse(text)
        kind = words[0].upper() if words else ""
        return cls(kind, words[1:], options, text)

    @property
    def subject(self) -> Optional[str]:
        """The link or offer id of a ``LINK``/``OFFER`` event."""
        if self.kind in ("LINK", "OFFER") and self.words:
            return self.words[0]
        return None

    @property
    def state(self) -> Optional[str]:
        if self.kind == "LINK":
            return self.words[1].upper() if len(self.words) > 1 else None
        if self.kind == "SERVER":
            return self.words[0] if self.words else None
        return None

    @property
    def final(self) -> bool:
        """Whether this ``LINK`` event is the link's last."""
        state = self.state
        return state in ("CLOS", "ERR") or (
            state == "BAD" and self.options.get("final") == "yes")

    def toJSON(self) -> Dict[str, Any]:
        obj: Dict[str, Any] = {"event": self.kind}
        if self.kind == "LINK":
            obj["link"] = self.subject
            obj["state"] = self.state
        elif self.kind == "OFFER":
            obj["offer"] = self.subject
        elif self.kind == "SERVER":
            obj["state"] = self.state
        elif self.words:
            obj["args"] = list(self.words)
        for key, value in self.options.items():
            obj.setdefault(key, _jsonValue(key, value))
        return obj


def _parse(text: str) -> Tuple[List[str], Dict[str, str]]:
    try:
        return parseArguments(text)
    except Exception as exc:
        raise CtlError("cannot parse line from the daemon (%s): %s" % (exc, text[:200]))


def _jsonValue(key: str, value: str) -> Any:
    if key in _NUMERIC and value.isascii() and value.isdigit():
        return int(value)
    return value


# --- the control connection --------------------------------------------------


def defaultControlPath(environ: Mapping[str, str], euid: int) -> str:
    """
    Where the daemon puts its control socket when not told otherwise; the
    daemon's own ``$RUNTIME_DIRECTORY`` is not visible to clients, so it is
    not consulted here.
    """
    explicit = environ.get("BYTESTREAMD_CONTROL")
    if explicit:
        return explicit
    if euid == 0:
        return "/run/bytestreamd/control"
    runtime = environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise CtlError("cannot find the control socket: $XDG_RUNTIME_DIR is not set; "
                       "use --control PATH or set $BYTESTREAMD_CONTROL", EXIT_USAGE)
    return os.path.join(runtime, "bytestreamd", "control")


class ControlConnection:
    """
    A blocking client of the control socket.  Events that arrive while a
    reply is awaited are kept in :attr:`events`, in order, so none is lost.
    """

    def __init__(self, sock: socket.socket, timeout: float = REPLY_TIMEOUT):
        self.sock = sock
        self.timeout = timeout
        self.events: Deque[Event] = deque()
        self.eof = False
        self._buffer = bytearray()
        self._replies: Deque[Reply] = deque()
        self._partial: List[str] = []

    @classmethod
    def connect(cls, path: str, timeout: float = REPLY_TIMEOUT) -> "ControlConnection":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise CtlError(_connectProblem(path, exc), EXIT_USAGE)
        sock.settimeout(None)
        return cls(sock, timeout)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def readSome(self) -> bool:
        """One ``recv``, split into lines; ``False`` once the daemon closed."""
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            self._lineReceived(raw.decode("utf-8", "replace").rstrip("\r"))
        if len(self._buffer) > MAX_LINE:
            raise CtlError("the daemon sent a line longer than %d bytes" % MAX_LINE)
        return True

    def _lineReceived(self, line: str) -> None:
        try:
            code, sep, text = parseReplyLine(line)
        except ValueError as exc:
            raise CtlError(str(exc))
        if code == 650 and not self._partial:
            self.events.append(Event.fromText(text))
            return
        self._partial.append(text)
        if sep == " ":
            self._replies.append(Reply(code, self._partial))
            self._partial = []

    def _wait(self, deadline: Optional[float]) -> bool:
        """Read once when data comes before ``deadline``; ``False`` on timeout."""
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            if not sel.select(remaining):
                return False
        if not self.readSome():
            raise ControlClosed()
        return True

    def command(self, line: str) -> Reply:
        """Send one command line and return its reply (any code)."""
        self._replies.clear()
        try:
            self.sock.sendall(line.encode("utf-8") + b"\n")
        except OSError as exc:
            raise CtlError("cannot send to the control socket: %s" % exc.strerror)
        deadline = time.monotonic() + self.timeout
        while not self._replies:
            if not self._wait(deadline):
                raise CtlError("no reply to %s within %g s" % (line.split(" ")[0], self.timeout))
        return self._replies.popleft()

    def check(self, line: str) -> Reply:
        """:meth:`command`, raising for anything but ``2xx``."""
        reply = self.command(line)
        if not reply.ok:
            raise CtlError("%03d %s" % (reply.code, reply.text))
        return reply

    def nextEvent(self, deadline: Optional[float] = None) -> Optional[Event]:
        """The next event, or ``None`` when ``deadline`` passes first."""
        while not self.events:
            if not self._wait(deadline):
                return None
        return self.events.popleft()


def _connectProblem(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return ("no control socket at %s (is bytestreamd running? "
                "use --control PATH or set $BYTESTREAMD_CONTROL)" % path)
    if isinstance(exc, ConnectionRefusedError):
        return "control socket %s refuses connections (stale socket: is bytestreamd running?)" % path
    if isinstance(exc, PermissionError):
        return ("no permission to connect to %s (the daemon's socket_mode and "
                "socket_group decide who may)" % path)
    if isinstance(exc, socket.timeout):
        return "control socket %s does not answer" % path
    return "cannot connect to control socket %s: %s" % (path, exc.strerror or exc)


# --- splicing stdin/stdout with a link socket ------------------------------


@dataclass
class Console:
    """Where a run of the client reads and writes; tests pass pipes and buffers."""

    stdinFd: int
    stdoutFd: int
    out: TextIO
    err: TextIO
    environ: Mapping[str, str]
    euid: int

    @classmethod
    def system(cls) -> "Console":
        return cls(0, 1, sys.stdout, sys.stderr, os.environ, os.geteuid())


class StdoutClosed(Exception):
    pass


def _writeAll(fd: int, data: bytes) -> None:
    """Write everything, even to a non-blocking fd; raises StdoutClosed."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_WRITE)
                sel.select()
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise StdoutClosed()
        view = view[n:]


def _pollSelector() -> selectors.BaseSelector:
    # epoll refuses regular files, and `connect ... < file` is a normal use.
    if hasattr(selectors, "PollSelector"):
        return selectors.PollSelector()
    return selectors.SelectSelector()  # pragma: no cover


class Splice:
    """
    netcat between the console and one link socket, watching the link's
    events on the control connection: they, not the socket, say whether the
    link ended cleanly (``CLOS``) or failed (final ``BAD``, ``ERR``).
    """

    def __init__(self, control: ControlConnection, linkId: str, link: socket.socket,
                 console: Console, linger: float = LINGER, verbose: bool = False,
                 readStdin: bool = True):
        self.control = control
        self.linkId = linkId
        self.link = link
        self.console = console
        self.linger = linger
        self.verbose = verbose
        self.toLink = bytearray()
        self.readStdin = readStdin
        self.stdinOpen = readStdin
        self.linkWritable = True
        self.linkReadable = True
        self.closed = False
        self.state: Optional[str] = None
        self.lastBad: Optional[str] = None
        self.deadline: Optional[float] = None

    def run(self) -> int:
        self.link.setblocking(False)
        sel = _pollSelector()
        try:
            return self._loop(sel)
        except StdoutClosed:
            self._say("stdout was closed; closing link %s" % self.linkId)
            return EXIT_FAILED
        finally:
            sel.close()

    def _loop(self, sel: selectors.BaseSelector) -> int:
        wanted: Dict[Any, int] = {}
        while True:
            result = self._handleEvents()
            if result is not None:
                return result
            if not self.linkReadable:
                result = self._linkEnded()
                if result is not None:
                    return result
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return EXIT_OK
            self._interest(sel, wanted)
            timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            for key, mask in sel.select(timeout):
                self._ready(key.fileobj, mask)

    def _interest(self, sel: selectors.BaseSelector, wanted: Dict[Any, int]) -> None:
        now: Dict[Any, int] = {}
        if not self.control.eof:
            now[self.control.sock] = selectors.EVENT_READ
        if self.stdinOpen and not self.toLink:
            now[self.console.stdinFd] = selectors.EVENT_READ
        linkMask = (selectors.EVENT_READ if self.linkReadable else 0) | (
            selectors.EVENT_WRITE if self.toLink and self.linkWritable else 0)
        if linkMask:
            now[self.link] = linkMask
        for fileobj in list(wanted):
            if fileobj not in now:
                sel.unregister(fileobj)
                del wanted[fileobj]
        for fileobj, mask in now.items():
            if fileobj not in wanted:
                sel.register(fileobj, mask)
            elif wanted[fileobj] != mask:
                sel.modify(fileobj, mask)
            wanted[fileobj] = mask

    def _ready(self, fileobj: Any, mask: int) -> None:
        if fileobj is self.control.sock:
            self.control.readSome()
        elif fileobj is self.link:
            if mask & selectors.EVENT_WRITE and self.toLink:
                self._sendToLink()
            if mask & selectors.EVENT_READ:
                self._readLink()
        else:
            self._readStdin()

    def _readStdin(self) -> None:
        try:
            data = os.read(self.console.stdinFd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.toLink += data
        else:
            self.stdinOpen = False
        self._maybeHalfClose()

    def _sendToLink(self) -> None:
        try:
            sent = self.link.send(self.toLink)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # The daemon dropped the local connection: the link failed and
            # its event says why.
            self.toLink.clear()
            self.linkWritable = self.stdinOpen = False
            return
        del self.toLink[:sent]
        self._maybeHalfClose()

    def _maybeHalfClose(self) -> None:
        if self.readStdin and not self.stdinOpen and not self.toLink and self.linkWritable:
            self.linkWritable = False
            try:
                self.link.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _readLink(self) -> None:
        try:
            data = self.link.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            _writeAll(self.console.stdoutFd, data)
        else:
            self.linkReadable = False

    def _handleEvents(self) -> Optional[int]:
        while self.control.events:
            event = self.control.events.popleft()
            if event.kind != "LINK" or event.subject != self.linkId:
                continue
            self.state = event.state
            reason = event.options.get("reason", "no reason given")
            if event.state == "CLOS":
                self.closed = True
                self.stdinOpen = False
                if self.deadline is None:
                    self.deadline = time.monotonic() + self.linger
            elif event.state == "ERR" or event.final:
                return self._fail(event.state or "BAD", reason)
            elif event.state == "BAD":
                self.lastBad = reason
                if self.verbose:
                    self._say("link %s: %s failed: %s; trying the next method" % (
                        self.linkId, event.options.get("method", "a method"), reason))
            elif self.verbose:
                self._say("link %s %s" % (self.linkId, event.text.split(" ", 2)[-1]))
        if self.control.eof and not self.closed:
            return self._fail("?", "the daemon closed the control connection")
        return None

    def _linkEnded(self) -> Optional[int]:
        """The link socket reached EOF: decide, or wait for the last event."""
        if self.closed:
            return EXIT_OK
        if self.state == "BAD":
            return self._fail("BAD", self.lastBad or "no reason given")
        if self.linkWritable and (self.stdinOpen or self.toLink):
            return None  # a half-close: stdin still flows to the peer
        if self.deadline is None:
            self.deadline = time.monotonic() + self.linger
        return None

    def _fail(self, state: str, reason: str) -> int:
        self._say("link %s %s: %s" % (self.linkId, state, reason))
        return EXIT_FAILED

    def _say(self, message: str) -> None:
        self.console.err.write("bytestreamctl: %s\n" % message)
        self.console.err.flush()


def _connectLink(control: ControlConnection, linkId: str, path: str,
                 linger: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(control.timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        # The link may already have failed and its socket gone: its event
        # has the better explanation.
        deadline = time.monotonic() + linger
        while True:
            try:
                event = control.nextEvent(deadline)
            except ControlClosed:
                event = None
            if event is None:
                break
            if event.kind == "LINK" and event.subject == linkId and event.final:
                raise CtlError("link %s %s: %s" % (
                    linkId, event.state, event.options.get("reason", "no reason given")))
        raise CtlError("cannot connect to link socket %s: %s" % (path, exc.strerror or exc))
    return sock


def _pipe(control: ControlConnection, reply: Reply, console: Console,
          args: argparse.Namespace) -> int:
    options = reply.options()
    linkId, path = options.get("link"), options.get("socket")
    if not linkId or not path or path == "-":
        raise CtlError("the daemon's reply names no link socket: %s" % reply.text)
    link = _connectLink(control, linkId, path, args.linger)
    try:
        console.out.flush()
        return Splice(control, linkId, link, console, linger=args.linger,
                      verbose=args.verbose, readStdin=not args.no_stdin).run()
    finally:
        link.close()


# --- subcommands -------------------------------------------------------------


def _openCommand(jid: str, args: argparse.Namespace) -> str:
    words = ["OPEN", formatValue(jid)]
    pairs: List[Tuple[str, Optional[str]]] = [
        ("service", args.service),
        ("methods", ",".join(_splitMethods(args.methods)) if args.methods else None),
        ("block-size", None if args.block_size is None else str(args.block_size)),
        ("stanza", args.stanza),
    ]
    words.extend("%s=%s" % (key, formatValue(value)) for key, value in pairs if value is not None)
    return " ".join(words)


def _splitMethods(values: Sequence[str]) -> List[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def cmdStatus(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    reply = control.check("STATUS")
    pairs: List[Tuple[str, str]] = []
    info: List[str] = []
    for line in reply.lines[:-1]:
        words, options = _parse(line)
        pairs.extend(options.items())
        if words:
            info.append(line)
    if args.json:
        obj: Dict[str, Any] = {}
        for key, value in pairs:
            obj[key] = int(value) if value.isascii() and value.isdigit() else value
        if info:
            obj["info"] = info
        _printJSON(console, obj)
    else:
        width = max([len(key) for key, _ in pairs] + [0])
        for key, value in pairs:
            console.out.write("%-*s  %s\n" % (width, key, value))
        for line in info:
            console.out.write(line + "\n")
    return EXIT_OK


_LINK_COLUMNS = [("link", "LINK"), ("state", "STATE"), ("direction", "DIR"),
                 ("peer", "PEER"), ("method", "METHOD"), ("service", "SERVICE"),
                 ("sent", "SENT"), ("received", "RECEIVED"), ("socket", "SOCKET")]


def cmdLinks(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    reply = control.check("LINKS")
    rows = [_parse(line)[1] for line in reply.lines[:-1]]
    if args.json:
        _printJSON(console, [{k: _jsonValue(k, v) for k, v in row.items()} for row in rows])
        return EXIT_OK
    if not rows:
        console.out.write("no links\n")
        return EXIT_OK
    table = [[title for _, title in _LINK_COLUMNS]]
    table.extend([row.get(key) or "-" for key, _ in _LINK_COLUMNS] for row in rows)
    widths = [max(len(r[i]) for r in table) for i in range(len(_LINK_COLUMNS))]
    for r in table:
        console.out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    return EXIT_OK


def cmdOpen(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    reply = control.check(_openCommand(args.jid, args))
    options = reply.options()
    linkId, path = options.get("link", ""), options.get("socket", "-")
    if args.json:
        _printJSON(console, {"link": linkId, "socket": path})
    else:
        console.out.write("%s %s\n" % (linkId, path))
    console.out.flush()
    if not args.wait:
        return EXIT_OK
    deadline = None if args.wait_timeout is None else time.monotonic() + args.wait_timeout
    while True:
        event = control.nextEvent(deadline)
        if event is None:
            raise CtlError("link %s not GOOD within %g s" % (linkId, args.wait_timeout))
        if event.kind != "LINK" or event.subject != linkId:
            continue
        if event.state == "GOOD":
            return EXIT_OK
        if event.final:
            raise CtlError("link %s %s: %s" % (
                linkId, event.state, event.options.get("reason", "no reason given")))


def cmdClose(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    control.check("CLOSE " + formatValue(args.id))
    return EXIT_OK


def cmdWatch(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    control.check("WATCH")
    seen = 0
    while args.count is None or seen < args.count:
        event = control.nextEvent()
        assert event is not None
        seen += 1
        if args.json:
            _printJSON(console, event.toJSON(), indent=None)
        else:
            console.out.write(event.text + "\n")
            console.out.flush()
    return EXIT_OK


def cmdConnect(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    return _pipe(control, control.check(_openCommand(args.jid, args)), console, args)


def cmdListen(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    control.check("WATCH")
    deadline = None if args.max_wait is None else time.monotonic() + args.max_wait
    while True:
        event = control.nextEvent(deadline)
        if event is None:
            raise CtlError("no matching offer within %g s" % args.max_wait)
        if event.kind == "OFFER" and event.subject and _offerMatches(event, args):
            break
    if args.verbose:
        console.err.write("bytestreamctl: accepting offer %s\n" % event.text)
    reply = control.check("ACCEPT " + formatValue(event.subject))
    return _pipe(control, reply, console, args)


def _offerMatches(event: Event, args: argparse.Namespace) -> bool:
    if args.service is not None and event.options.get("service") != args.service:
        return False
    if args.peer is not None:
        sender = event.options.get("from", "")
        if sender != args.peer and sender.split("/", 1)[0] != args.peer:
            return False
    return True


# --- file transfer (XEP-0096) -------------------------------------------------

#: The SI profile of XEP-0096 file transfer, as OFFER events name it.
FILE_TRANSFER = "http://jabber.org/protocol/si/profile/file-transfer"
#: How often the progress bar is redrawn, in seconds.
PROGRESS_INTERVAL = 0.2
#: Longest name (in UTF-8 bytes) ``receive`` writes; leaves room for the
#: temporary ``.NAME.part`` within the usual 255-byte limit.
MAX_NAME = 240


def _human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024.0
    return "%d B" % count  # pragma: no cover


class ProgressBar:
    """
    ``name  3.1 MiB / 5.0 MiB  62%  1.2 MiB/s`` redrawn in place on stderr --
    only when stderr is a terminal: a log file or a pipe gets no bar.
    """

    def __init__(self, err: TextIO, label: str, total: int, start: int = 0,
                 clock=time.monotonic, enabled: Optional[bool] = None):
        self.err = err
        self.label = label
        self.total = total
        self.start = start
        self.clock = clock
        if enabled is None:
            isatty = getattr(err, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.began = clock()
        self.lastDraw: Optional[float] = None
        self.done = start
        self.width = 0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        if not self.enabled:
            return
        now = self.clock()
        if not force and self.lastDraw is not None and now - self.lastDraw < PROGRESS_INTERVAL:
            return
        self.lastDraw = now
        elapsed = max(now - self.began, 1e-6)
        rate = (done - self.start) / elapsed
        pct = 100 if not self.total else int(done * 100 / self.total)
        line = "%s  %s / %s  %3d%%  %s/s" % (self.label, _human(done), _human(self.total),
                                          pct, _human(rate))
        self.err.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.err.flush()

    def finish(self) -> None:
        if self.enabled and self.lastDraw is not None:
            self.update(self.done, force=True)
            self.err.write("\n")
            self.err.flush()

    @property
    def seconds(self) -> float:
        return self.clock() - self.began


@dataclass
class LocalFile:
    """What ``send`` offers: the XEP-0096 attributes of one regular file."""

    path: str
    name: str
    size: int
    date: str
    md5: Optional[str]

    @classmethod
    def inspect(cls, path: str, withHash: bool = True) -> "LocalFile":
        try:
            st = os.stat(path)
        except OSError as exc:
            raise CtlError("cannot read %s: %s" % (path, exc.strerror or exc), EXIT_USAGE)
        if not _isRegular(st.st_mode):
            raise CtlError("%s is not a regular file (its size must be known to offer it)"
                           % path, EXIT_USAGE)
        name = os.path.basename(os.path.normpath(path))
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
        digest = None
        if withHash:
            h = hashlib.md5()
            try:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except OSError as exc:
                raise CtlError("cannot read %s: %s" % (path, exc.strerror or exc), EXIT_USAGE)
            digest = h.hexdigest()
        return cls(path, name, st.st_size, date, digest)


def _isRegular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def safeFileName(offered: Optional[str]) -> Optional[str]:
    """
    The name a received file may have in the target directory: the last
    path component only (``/`` and ``\\`` both count), without control
    characters or leading dots (no hidden files, no ``..``), at most
    :data:`MAX_NAME` bytes.  ``None`` when nothing usable is left.
    """
    if not offered:
        return None
    name = offered.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ord(ch) >= 0x20 and not 0x7F <= ord(ch) < 0xA0)
    name = name.strip().lstrip(".").strip()
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_NAME:
        name = encoded[:MAX_NAME].decode("utf-8", "ignore").rstrip()
    return name or None


def _linkFailure(linkId: str, event: Event) -> CtlError:
    return CtlError("link %s %s: %s" % (linkId, event.state,
                                         event.options.get("reason", "no reason given")))


def _waitGood(control: ControlConnection, linkId: str, console: Console,
              verbose: bool) -> Event:
    """The link's GOOD event; CtlError on its final BAD or ERR."""
    while True:
        event = control.nextEvent()
        assert event is not None
        if event.kind != "LINK" or event.subject != linkId:
            continue
        if event.state == "GOOD":
            return event
        if event.final:
            raise _linkFailure(linkId, event)
        if verbose:
            console.err.write("bytestreamctl: link %s %s\n" % (
                linkId, event.text.split(" ", 2)[-1]))
            console.err.flush()


class _FileLink:
    """
    Moves one file through one link socket while watching the link's events:
    the events, not the socket, say whether the transfer ended well.  A
    subclass says what to do with the socket (:class:`_Sender` writes,
    :class:`_Receiver` reads).
    """

    def __init__(self, control: ControlConnection, linkId: str, link: socket.socket,
                 progress: ProgressBar, linger: float = LINGER):
        self.control = control
        self.linkId = linkId
        self.link = link
        self.progress = progress
        self.linger = linger
        self.linkOpen = True
        self.closed: Optional[Event] = None
        self.deadline: Optional[float] = None

    def run(self) -> Event:
        """Returns the CLOS event once the transfer is complete; CtlError else."""
        self.link.setblocking(False)
        sel = _pollSelector()
        try:
            return self._loop(sel)
        finally:
            sel.close()
            self.progress.finish()

    def _loop(self, sel: selectors.BaseSelector) -> Event:
        registered: Dict[Any, int] = {}
        while True:
            while self.control.events:
                event = self.control.events.popleft()
                if event.kind != "LINK" or event.subject != self.linkId:
                    continue
                if event.state == "CLOS":
                    self.closed = event
                elif event.state == "ERR" or event.final:
                    raise _linkFailure(self.linkId, event)
            if self.control.eof and self.closed is None:
                raise ControlClosed()
            if self.closed is not None and self.finished():
                return self.closed
            if not self.linkOpen and self.deadline is None:
                self.deadline = time.monotonic() + self.linger
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise self.incomplete()
            wanted: Dict[Any, int] = {}
            if not self.control.eof:
                wanted[self.control.sock] = selectors.EVENT_READ
            if self.linkOpen:
                wanted[self.link] = self.linkInterest()
            for fileobj in list(registered):
                if fileobj not in wanted:
                    sel.unregister(fileobj)
                    del registered[fileobj]
            for fileobj, mask in wanted.items():
                if fileobj not in registered:
                    sel.register(fileobj, mask)
                elif registered[fileobj] != mask:
                    sel.modify(fileobj, mask)
                registered[fileobj] = mask
            timeout = None
            if self.deadline is None and self.closed is not None:
                # CLOS came: the socket's EOF is due once its bytes are read.
                self.deadline = time.monotonic() + self.linger
            if self.deadline is not None:
                timeout = max(0.0, self.deadline - time.monotonic())
            for key, mask in sel.select(timeout):
                if key.fileobj is self.control.sock:
                    self.control.readSome()
                else:
                    self.linkReady(mask)

    def linkInterest(self) -> int:
        raise NotImplementedError

    def linkReady(self, mask: int) -> None:
        raise NotImplementedError

    def finished(self) -> bool:
        raise NotImplementedError

    def incomplete(self) -> CtlError:
        raise NotImplementedError

    def drain(self) -> bytes:
        """One read from the link socket; marks it ended at EOF."""
        try:
            data = self.link.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            data = b""
        if not data:
            self.linkOpen = False
            # The peer is done.  A SOCKS5 link is half-closed here and ends
            # (CLOS) only once our side is closed too; we have nothing to send.
            try:
                self.link.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        elif self.deadline is not None:
            self.deadline = time.monotonic() + self.linger  # still flowing
        return data


class _Sender(_FileLink):
    """Writes ``count`` bytes of ``fd`` from ``offset``, then half-closes."""

    def __init__(self, control, linkId, link, progress, fd: int, offset: int, count: int,
                 linger: float = LINGER):
        _FileLink.__init__(self, control, linkId, link, progress, linger)
        self.fd = fd
        self.position = offset
        self.end = offset + count
        self.buffer = b""
        self.shut = False
        self.sent = 0

    def linkInterest(self) -> int:
        return selectors.EVENT_READ | (0 if self.shut else selectors.EVENT_WRITE)

    def finished(self) -> bool:
        return self.complete or not self.linkOpen

    def linkReady(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and not self.shut:
            self._write()
        if mask & selectors.EVENT_READ:
            self.drain()  # a file receiver sends nothing; EOF ends the link

    def _write(self) -> None:
        if not self.buffer and self.position < self.end:
            self.buffer = os.pread(self.fd, min(_CHUNK, self.end - self.position),
                                   self.position)
            if not self.buffer:
                raise CtlError("the file became shorter while it was sent "
                               "(%d bytes, %d expected)" % (self.position, self.end))
            self.position += len(self.buffer)
        if self.buffer:
            try:
                n = self.link.send(self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # The daemon dropped the local connection: the link failed
                # (its event says why) or the receiver closed it early.
                self.linkOpen = False
                return
            self.buffer = self.buffer[n:]
            self.sent += n
            self.progress.update(self.position - len(self.buffer))
        if not self.buffer and self.position >= self.end:
            self.shut = True
            try:
                self.link.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @property
    def complete(self) -> bool:
        """Every byte was written and the write side shut."""
        return self.shut and self.position >= self.end and not self.buffer

    def incomplete(self) -> CtlError:
        if not self.complete:
            return CtlError("link %s: the link socket closed after %d of %d bytes, "
                            "without an event saying why" % (
                                self.linkId, self.position - len(self.buffer), self.end))
        return CtlError("link %s: the link socket closed but no CLOS came" % self.linkId)


class _Receiver(_FileLink):
    """Appends what the link brings to ``out`` (hashing it) up to ``expected``."""

    def __init__(self, control, linkId, link, progress, out, md5, have: int,
                 expected: int, linger: float = LINGER):
        _FileLink.__init__(self, control, linkId, link, progress, linger)
        self.out = out
        self.md5 = md5
        self.have = have
        self.expected = expected

    def linkInterest(self) -> int:
        return selectors.EVENT_READ

    def linkReady(self, mask: int) -> None:
        data = self.drain()
        if not data:
            return
        if self.have + len(data) > self.expected:
            raise CtlError("the sender sent more than the %d bytes it offered" % self.expected)
        self.out.write(data)
        self.md5.update(data)
        self.have += len(data)
        self.progress.update(self.have)

    def finished(self) -> bool:
        return not self.linkOpen

    def incomplete(self) -> CtlError:
        return CtlError("link %s: the link socket closed after %d of %d bytes, "
                        "without a CLOS event" % (self.linkId, self.have, self.expected))


def _sendCommand(jid: str, local: LocalFile, args: argparse.Namespace) -> str:
    pairs: List[Tuple[str, Optional[str]]] = [
        ("profile", "file"), ("name", local.name), ("size", str(local.size)),
        ("hash", local.md5), ("date", local.date), ("desc", args.desc), ("range", "yes"),
        ("methods", ",".join(_splitMethods(args.methods)) if args.methods else None),
        ("block-size", None if args.block_size is None else str(args.block_size)),
        ("stanza", args.stanza),
    ]
    return " ".join(["OPEN", formatValue(jid)] + [
        "%s=%s" % (key, formatValue(value)) for key, value in pairs if value is not None])


def cmdSend(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    local = LocalFile.inspect(args.file, withHash=not args.no_hash)
    try:
        fd = os.open(local.path, os.O_RDONLY)
    except OSError as exc:
        raise CtlError("cannot read %s: %s" % (local.path, exc.strerror or exc), EXIT_USAGE)
    try:
        reply = control.check(_sendCommand(args.jid, local, args))
        options = reply.options()
        linkId, path = options.get("link"), options.get("socket")
        if not linkId or not path or path == "-":
            raise CtlError("the daemon's reply names no link socket: %s" % reply.text)
        good = _waitGood(control, linkId, console, args.verbose)
        offset, count = _rangeOf(good, local.size)
        if offset is None:
            control.command("CLOSE " + formatValue(linkId))
            raise CtlError("link %s: the receiver asked for a range outside the file "
                           "(%s)" % (linkId, good.text))
        if args.verbose and (offset or count != local.size):
            console.err.write("bytestreamctl: the receiver asked for %d bytes from "
                              "offset %d\n" % (count, offset))
        link = _connectLink(control, linkId, path, args.linger)
        try:
            progress = ProgressBar(console.err, local.name, local.size, offset)
            sender = _Sender(control, linkId, link, progress, fd, offset, count, args.linger)
            closed = sender.run()
        finally:
            link.close()
        if not sender.complete:
            raise CtlError("link %s ended (%s) after %d of %d bytes were sent" % (
                linkId, closed.text, sender.position - len(sender.buffer), sender.end))
    finally:
        os.close(fd)
    if args.json:
        _printJSON(console, {
            "link": linkId, "file": local.path, "name": local.name, "size": local.size,
            "md5": local.md5, "offset": offset, "length": count,
            "method": good.options.get("method"), "peer": args.jid,
            "sent": sender.sent, "seconds": round(progress.seconds, 3)})
    elif progress.enabled or args.verbose:
        console.err.write("bytestreamctl: sent %s (%d bytes%s) to %s via %s\n" % (
            local.name, sender.sent, " from offset %d" % offset if offset else "", args.jid,
            good.options.get("method", closed.options.get("method", "?"))))
        console.err.flush()
    return EXIT_OK


def _rangeOf(good: Event, size: int) -> Tuple[Optional[int], int]:
    """(offset, count) the GOOD event asks for; offset None if impossible."""
    offset, length = good.options.get("offset", "0"), good.options.get("length")
    if not offset.isdigit() or (length is not None and not length.isdigit()):
        return None, 0
    start = int(offset)
    if start > size:
        return None, 0
    count = size - start if length is None else min(int(length), size - start)
    return start, count


@dataclass
class _Offer:
    """A file offer as ``receive`` sees it."""

    id: str
    sender: str
    name: str
    size: int
    md5: Optional[str]
    ranged: bool


def _nextFileOffer(control: ControlConnection, args: argparse.Namespace,
                   console: Console) -> Tuple[Event, Optional[_Offer]]:
    deadline = None if args.max_wait is None else time.monotonic() + args.max_wait
    # Offers that came before WATCH sent no event to us: LINKS shows them.
    pending = deque(_pendingOffers(control))
    while True:
        event = pending.popleft() if pending else control.nextEvent(deadline)
        if event is None:
            raise CtlError("no file offer within %g s" % args.max_wait)
        if event.kind != "OFFER" or not event.subject:
            continue
        if event.options.get("profile") != FILE_TRANSFER:
            continue
        sender = event.options.get("from", "")
        if args.peer is not None and args.peer not in (sender, sender.split("/", 1)[0]):
            continue
        size = event.options.get("size", "")
        name = safeFileName(event.options.get("name"))
        if name is None or not (size.isascii() and size.isdigit()):
            return event, None
        md5 = event.options.get("hash")
        return event, _Offer(event.subject, sender, name, int(size),
                             md5.lower() if md5 else None,
                             event.options.get("range") == "yes")


def _pendingOffers(control: ControlConnection) -> List[Event]:
    """Incoming offers still waiting, from ``LINKS``, as OFFER events."""
    offers = []
    for line in control.check("LINKS").lines[:-1]:
        row = _parse(line)[1]
        if row.get("state") != "OFFER" or row.get("direction") != "in" or not row.get("link"):
            continue
        options = {"from": row.get("peer", "")}
        options.update((k, v) for k, v in row.items() if k in (
            "profile", "service", "name", "size", "hash", "range"))
        offers.append(Event("OFFER", [row["link"]], options, "OFFER %s (pending)" % row["link"]))
    return offers


def _refuse(control: ControlConnection, offerId: str, reason: str, message: str) -> CtlError:
    control.command("REJECT %s reason=%s" % (formatValue(offerId), formatValue(reason)))
    return CtlError(message)


def cmdReceive(control: ControlConnection, args: argparse.Namespace,
               console: Console) -> int:
    directory = args.dir or "."
    if not os.path.isdir(directory):
        raise CtlError("--dir %s is not a directory" % directory, EXIT_USAGE)
    control.check("WATCH")
    event, offer = _nextFileOffer(control, args, console)
    if offer is None:
        raise _refuse(control, event.subject or "", "unusable file name or size",
                      "refused offer %s: unusable file name or size (%s)" % (
                          event.subject, event.text))
    final = os.path.join(directory, offer.name)
    temp = os.path.join(directory, "." + offer.name + ".part")
    if os.path.lexists(final) and not args.overwrite:
        raise _refuse(control, offer.id, "file exists",
                      "refused %s from %s: %s exists (use --overwrite)" % (
                          offer.name, offer.sender, final))
    have = 0
    if args.resume and offer.ranged and os.path.isfile(temp):
        partial = os.path.getsize(temp)
        if 0 < partial <= offer.size:
            have = partial
    md5 = hashlib.md5()
    try:
        out = open(temp, "r+b" if have else "wb")
    except OSError as exc:
        raise _refuse(control, offer.id, "cannot write the file",
                      "cannot write %s: %s" % (temp, exc.strerror or exc))
    keep = bool(have)  # a partial file from an earlier run stays until replaced
    try:
        if have:
            for chunk in iter(lambda: out.read(1 << 20), b""):
                md5.update(chunk)
            out.seek(have)
            out.truncate()
        if args.verbose:
            console.err.write("bytestreamctl: accepting %s (%d bytes) from %s%s\n" % (
                offer.name, offer.size, offer.sender,
                ", resuming at %d" % have if have else ""))
        command = "ACCEPT " + formatValue(offer.id) + (" offset=%d" % have if have else "")
        reply = control.check(command)
        options = reply.options()
        linkId, path = options.get("link", offer.id), options.get("socket")
        if not path or path == "-":
            raise CtlError("the daemon's reply names no link socket: %s" % reply.text)
        keep = args.resume
        link = _connectLink(control, linkId, path, args.linger)
        try:
            progress = ProgressBar(console.err, offer.name, offer.size, have)
            receiver = _Receiver(control, linkId, link, progress, out, md5, have,
                                 offer.size, args.linger)
            receiver.run()
        finally:
            link.close()
        if receiver.have != offer.size:
            raise CtlError("%s is incomplete: received %d of %d bytes" % (
                offer.name, receiver.have, offer.size))
        digest = md5.hexdigest()
        if offer.md5 is not None and digest != offer.md5:
            keep = False  # wrong bytes: nothing to resume from
            raise CtlError("%s is corrupt: md5 %s, the offer said %s" % (
                offer.name, digest, offer.md5))
        out.flush()
        os.fsync(out.fileno())
        out.close()
        if os.path.lexists(final) and not args.overwrite:
            raise CtlError("%s appeared while receiving; not overwritten (use --overwrite)"
                           % final)
        os.replace(temp, final)
    except BaseException as exc:
        out.close()
        if keep and os.path.exists(temp) and os.path.getsize(temp):
            if isinstance(exc, CtlError):
                exc.message += " (partial file kept as %s for --resume)" % temp
        else:
            _unlink(temp)
        raise
    if args.json:
        _printJSON(console, {
            "file": final, "name": offer.name, "size": offer.size, "from": offer.sender,
            "md5": digest, "hash-checked": offer.md5 is not None, "offset": have,
            "link": linkId})
    else:
        console.out.write(final + "\n")
        console.out.flush()
    return EXIT_OK


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _printJSON(console: Console, obj: Any, indent: Optional[int] = 2) -> None:
    console.out.write(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
    console.out.flush()


# --- command line -------------------------------------------------------------


def _common(defaults: bool) -> argparse.ArgumentParser:
    """
    Options accepted before and after the subcommand.  The subcommand copy
    has no defaults, so it does not overwrite what came before it.
    """
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    p.add_argument("--control", metavar="PATH", default=d(None),
                   help="control socket (default: $BYTESTREAMD_CONTROL, else "
                        "/run/bytestreamd/control as root, else "
                        "$XDG_RUNTIME_DIR/bytestreamd/control)")
    p.add_argument("--timeout", metavar="SECONDS", type=_positive, default=d(REPLY_TIMEOUT),
                   help="how long to wait for each reply (default %g)" % REPLY_TIMEOUT)
    p.add_argument("-v", "--verbose", action="store_true", default=d(False),
                   help="report link progress on stderr")
    return p


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0: %r" % text)
    return value


def _linkOptions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", metavar="NAME", help="service the peer connects the link to")
    p.add_argument("--methods", metavar="M1,M2", action="append",
                   help="bytestream methods in preference order, e.g. s5b,ibb")
    p.add_argument("--block-size", metavar="N", type=int, help="IBB block size")
    p.add_argument("--stanza", choices=("iq", "message"), help="IBB stanza kind")


def buildParser() -> argparse.ArgumentParser:
    common = _common(False)
    parser = argparse.ArgumentParser(
        prog="bytestreamctl", parents=[_common(True)],
        description="Talk to bytestreamd: list, open and use XMPP bytestream links.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Any, helpText: str, withJson: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=helpText, description=helpText)
        p.set_defaults(func=func)
        if withJson:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    add("status", cmdStatus, "show the daemon's JID, server connection and counts", withJson=True)
    add("links", cmdLinks, "list links", withJson=True)
    p = add("open", cmdOpen, "open a link to JID; print its id and socket path", withJson=True)
    p.add_argument("jid", metavar="JID")
    _linkOptions(p)
    p.add_argument("--wait", action="store_true",
                   help="then wait until the link is GOOD (exit 1 if it fails)")
    p.add_argument("--wait-timeout", metavar="SECONDS", type=_positive,
                   help="give up waiting after SECONDS")
    p = add("close", cmdClose, "close link ID")
    p.add_argument("id", metavar="ID")
    p = add("watch", cmdWatch, "print events as they happen", withJson=True)
    p.add_argument("--count", metavar="N", type=int, help="exit after N events")
    for name, func, helpText in (
            ("connect", cmdConnect, "open a link to JID and pipe stdin/stdout through it "
                                    "(netcat-like; usable as ssh ProxyCommand)"),
            ("listen", cmdListen, "accept the next matching offer and pipe it to stdin/stdout")):
        p = add(name, func, helpText)
        if name == "connect":
            p.add_argument("jid", metavar="JID")
            _linkOptions(p)
        else:
            p.add_argument("--service", metavar="NAME", help="only an offer for service NAME")
            p.add_argument("--from", dest="peer", metavar="JID",
                           help="only an offer from JID (bare JIDs match any resource)")
            p.add_argument("--max-wait", metavar="SECONDS", type=_positive,
                           help="give up when no offer came within SECONDS")
        p.add_argument("-d", "--no-stdin", action="store_true",
                       help="do not read stdin (receive only); without it, EOF on "
                            "stdin ends the link once its bytes are delivered")
        p.add_argument("--linger", metavar="SECONDS", type=_positive, default=LINGER,
                       help=argparse.SUPPRESS)
    p = add("send", cmdSend, "offer FILE to JID (XEP-0096 file transfer) and send it",
            withJson=True)
    p.add_argument("file", metavar="FILE")
    p.add_argument("jid", metavar="JID")
    p.add_argument("--desc", metavar="TEXT", help="description shown to the receiver")
    p.add_argument("--no-hash", action="store_true",
                   help="do not compute and offer the file's MD5")
    p.add_argument("--methods", metavar="M1,M2", action="append",
                   help="bytestream methods in preference order, e.g. s5b,ibb")
    p.add_argument("--block-size", metavar="N", type=int, help="IBB block size")
    p.add_argument("--stanza", choices=("iq", "message"), help="IBB stanza kind")
    p.add_argument("--linger", metavar="SECONDS", type=_positive, default=LINGER,
                   help=argparse.SUPPRESS)
    p = add("receive", cmdReceive, "accept the next file offer (XEP-0096) and save the file",
            withJson=True)
    p.add_argument("--dir", metavar="DIR", help="directory to save the file in (default: .)")
    p.add_argument("--from", dest="peer", metavar="JID",
                   help="only an offer from JID (bare JIDs match any resource)")
    p.add_argument("--max-wait", metavar="SECONDS", type=_positive,
                   help="give up when no file offer came within SECONDS")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing file of the same name")
    p.add_argument("--resume", action="store_true",
                   help="continue a partial file left by an earlier --resume, when the "
                        "sender allows ranged transfers; keep the partial file on failure")
    p.add_argument("--linger", metavar="SECONDS", type=_positive, default=LINGER,
                   help=argparse.SUPPRESS)
    return parser


def run(argv: Optional[Sequence[str]], console: Console) -> int:
    """Parse ``argv`` and run one subcommand; returns the exit code."""
    parser = buildParser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    control: Optional[ControlConnection] = None
    try:
        path = args.control or defaultControlPath(console.environ, console.euid)
        control = ControlConnection.connect(path, args.timeout)
        return args.func(control, args, console)
    except CtlError as exc:
        console.out.flush()
        console.err.write("bytestreamctl: %s\n" % exc.message)
        console.err.flush()
        return exc.exitCode
    finally:
        if control is not None:
            control.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point (``bytestreamctl``)."""
    try:
        return run(argv, Console.system())
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `bytestreamctl watch | head`: stop quietly, and keep Python from
        # complaining when it flushes the dead stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
