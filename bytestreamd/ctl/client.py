"""
The control connection as ``bytestreamctl`` sees it: where the socket is, a
blocking client that keeps the events arriving between replies, the reply
and event values, and the waits several subcommands share (a link's
``GOOD``, the next matching offer).

Plain blocking sockets and :mod:`selectors`, no reactor: the client must
start fast.  The quoting rules live in :mod:`bytestreamd.control.grammar`,
shared with the daemon, so both ends agree on every value.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import (Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Tuple)

from bytestreamd.control.grammar import parseArguments, parseReplyLine
from bytestreamd.ctl.output import jsonValue

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Seconds to wait for a reply to a command (``--timeout``).
REPLY_TIMEOUT = 30.0
#: Longest line accepted from the daemon; anything longer is a broken peer.
MAX_LINE = 1 << 20
#: Bytes read from a socket at a time.
CHUNK = 65536


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


def remaining(deadline: Optional[float]) -> Optional[float]:
    """Seconds left until a ``time.monotonic()`` deadline; ``None`` for none."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def deadlineAfter(seconds: Optional[float]) -> Optional[float]:
    """The deadline ``seconds`` from now; ``None`` (wait for ever) for ``None``."""
    return None if seconds is None else time.monotonic() + seconds


# --- values ----------------------------------------------------------------


def parseLine(text: str) -> Tuple[List[str], Dict[str, str]]:
    """The words and ``key=value`` options of a line from the daemon."""
    try:
        return parseArguments(text)
    except Exception as exc:
        raise CtlError("cannot parse line from the daemon (%s): %s" % (exc, text[:200]))


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
            merged.update(parseLine(line)[1])
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
        words, options = parseLine(text)
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

    @property
    def reason(self) -> str:
        return self.options.get("reason", "no reason given")

    @property
    def detail(self) -> str:
        """The text after ``LINK <id>``: the state and its options."""
        return self.text.split(" ", 2)[-1]

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
            obj.setdefault(key, jsonValue(key, value))
        return obj


def linkFailure(linkId: str, event: Event) -> CtlError:
    """The error for a link's final ``BAD`` or ``ERR``."""
    return CtlError("link %s %s: %s" % (linkId, event.state, event.reason))


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
            data = self.sock.recv(CHUNK)
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
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            if not sel.select(remaining(deadline)):
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

    def nextLinkEvent(self, linkId: str, deadline: Optional[float] = None) -> Optional[Event]:
        """The next ``LINK`` event of ``linkId`` (others are dropped), or ``None``."""
        while True:
            event = self.nextEvent(deadline)
            if event is None or (event.kind == "LINK" and event.subject == linkId):
                return event

    def queuedLinkEvents(self, linkId: str) -> Iterator[Event]:
        """
        Take the events already read off the queue, yielding those of link
        ``linkId`` (the others are dropped), for loops that read the control
        socket themselves.
        """
        while self.events:
            event = self.events.popleft()
            if event.kind == "LINK" and event.subject == linkId:
                yield event


def _connectProblem(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return ("no control socket at %s (is bytestreamd running? "
                "use --control PATH or set $BYTESTREAMD_CONTROL)" % path)
    if isinstance(exc, ConnectionRefusedError):
        return ("control socket %s refuses connections (stale socket: is bytestreamd "
                "running?)" % path)
    if isinstance(exc, PermissionError):
        return ("no permission to connect to %s (the daemon's socket_mode and "
                "socket_group decide who may)" % path)
    if isinstance(exc, socket.timeout):
        return "control socket %s does not answer" % path
    return "cannot connect to control socket %s: %s" % (path, exc.strerror or exc)


# --- waits and queries several subcommands share --------------------------------


def waitGood(control: ControlConnection, linkId: str, deadline: Optional[float] = None,
             say: Optional[Callable[[str], None]] = None) -> Optional[Event]:
    """
    The link's ``GOOD`` event, or ``None`` when ``deadline`` passes first;
    :class:`CtlError` at its final ``BAD`` or ``ERR``.  ``say`` hears about
    the link's other events.
    """
    while True:
        event = control.nextLinkEvent(linkId, deadline)
        if event is None or event.state == "GOOD":
            return event
        if event.final:
            raise linkFailure(linkId, event)
        if say is not None:
            say("link %s %s" % (linkId, event.detail))


def nextOffer(control: ControlConnection, accept: Callable[[Event], bool],
              deadline: Optional[float] = None, pending: Iterable[Event] = ()) -> Optional[Event]:
    """
    The first ``OFFER`` event, ``pending`` ones first, that ``accept``
    takes; ``None`` when ``deadline`` passes first.
    """
    queue = deque(pending)
    while True:
        event = queue.popleft() if queue else control.nextEvent(deadline)
        if event is None:
            return None
        if event.kind == "OFFER" and event.subject and accept(event):
            return event


def peerMatches(sender: str, peer: Optional[str]) -> bool:
    """Whether ``sender`` is ``peer`` (any JID when ``None``; bare JIDs match any resource)."""
    return peer is None or peer in (sender, sender.split("/", 1)[0])


def listLinks(control: ControlConnection) -> List[Dict[str, str]]:
    """The options of each ``LINKS`` row."""
    return [parseLine(line)[1] for line in control.check("LINKS").lines[:-1]]
