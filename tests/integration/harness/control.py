"""
A blocking client for the daemon's control socket (INTERFACE.md, "Control
protocol"), written independently of the daemon's own grammar module so the
tests check the contract rather than agree with the implementation.

Single-threaded: lines are read while waiting for a reply or an event;
``650`` event lines that arrive while a reply is awaited are queued, since
events may interleave between replies (never inside one).
"""

from __future__ import annotations

import re
import select
import socket
import time
from typing import Callable, Dict, List, Optional, Pattern, Tuple, Union

Matcher = Union[str, Pattern, Callable[["Line"], bool]]


class ControlError(RuntimeError):
    """The control connection closed, timed out, or a reply was not as expected."""


def quote(value: str) -> str:
    """A value as the protocol writes it: bare if safe, else double-quoted."""
    if value and not re.search(r'[\s"\\]', value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parseArgs(text: str) -> Tuple[List[str], Dict[str, str]]:
    """
    Split ``text`` into positional words and ``key=value`` options.
    Values (and words) may be double-quoted with ``\\"`` and ``\\\\`` escapes.
    """
    words: List[str] = []
    options: Dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        token = []
        key: Optional[str] = None
        while i < n and text[i] not in " \t":
            c = text[i]
            if c == "=" and key is None:
                key = "".join(token)
                token = []
                i += 1
            elif c == '"':
                i += 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    token.append(text[i])
                    i += 1
                i += 1  # closing quote
            else:
                token.append(c)
                i += 1
        if key is None:
            words.append("".join(token))
        else:
            options[key] = "".join(token)
    return words, options


class Line(str):
    """One protocol line (code included) with its arguments parsed."""

    @property
    def code(self) -> int:
        return int(self[:3])

    @property
    def text(self) -> str:
        return self[4:]

    @property
    def words(self) -> List[str]:
        """Positional words after the code (``['LINK', 'L1', 'GOOD']``)."""
        return parseArgs(self.text)[0]

    @property
    def options(self) -> Dict[str, str]:
        return parseArgs(self.text)[1]


class Reply:
    """``code``, ``lines`` (text of every line, final one last), ``ok``."""

    def __init__(self, code: int, lines: List[str]) -> None:
        self.code = code
        self.lines = lines

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def text(self) -> str:
        """The final line's text."""
        return self.lines[-1] if self.lines else ""

    @property
    def options(self) -> Dict[str, str]:
        """``key=value`` options of all lines merged (first occurrence wins)."""
        merged: Dict[str, str] = {}
        for line in self.lines:
            for k, v in parseArgs(line)[1].items():
                merged.setdefault(k, v)
        return merged

    def rows(self) -> List[Dict[str, str]]:
        """The options of each continuation line (e.g. one per link for LINKS)."""
        return [parseArgs(line)[1] for line in self.lines[:-1]]

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self.options.get(key, default)

    def __repr__(self) -> str:
        return "<Reply %d %r>" % (self.code, self.lines)


def _matcher(match: Matcher) -> Callable[[Line], bool]:
    if callable(match):
        return match
    pattern = re.compile(match) if isinstance(match, str) else match
    return lambda line: pattern.search(line) is not None


class ControlClient:
    """
    One connection to ``<runtime_dir>/control``.

    ``command(line) -> Reply``; ``expect(line, code=250) -> Reply`` raises
    if the code differs; ``waitEvent(match, timeout) -> Line`` returns (and
    removes) the first queued or incoming ``650`` line matching ``match``;
    ``events`` keeps every event ever seen, ``pending`` the unclaimed ones.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.events: List[Line] = []
        self.pending: List[Line] = []
        self.interleaved: List[Line] = []  # events that split a reply (a bug)
        self.closed = False

    # -- reading ----------------------------------------------------------

    def _readLine(self, deadline: float) -> Optional[Line]:
        """The next complete line, or None if ``deadline`` passes first."""
        while b"\n" not in self.buffer:
            if self.closed:
                raise ControlError("control connection %s closed" % self.path)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                if not self.buffer:
                    raise ControlError("control connection %s closed" % self.path)
                self.buffer += b"\n"
            self.buffer += data
        raw, _, self.buffer = self.buffer.partition(b"\n")
        return Line(raw.rstrip(b"\r").decode("utf-8"))

    def _isEvent(self, line: Line) -> bool:
        return line.startswith("650 ")

    def _queueEvent(self, line: Line) -> None:
        self.events.append(line)
        self.pending.append(line)

    # -- commands ---------------------------------------------------------

    def send(self, line: str) -> None:
        """Send one raw line (LF appended), without reading a reply."""
        self.sock.sendall(line.encode("utf-8") + b"\n")

    def readReply(self, timeout: Optional[float] = None) -> Reply:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines: List[str] = []
        while True:
            line = self._readLine(deadline)
            if line is None:
                raise ControlError("no complete reply within the timeout; got %r" % lines)
            if self._isEvent(line):
                # no reply uses code 650, so this is an event even if (against
                # the contract) it came inside a multi-line reply
                if lines:
                    self.interleaved.append(line)
                self._queueEvent(line)
                continue
            if len(line) < 4 or not line[:3].isdigit() or line[3] not in " -":
                raise ControlError("malformed control line %r" % line)
            lines.append(line[4:])
            if line[3] == " ":
                return Reply(int(line[:3]), lines)

    def command(self, line: str, timeout: Optional[float] = None) -> Reply:
        """Send ``line`` and return its reply; events meanwhile are queued."""
        self.send(line)
        return self.readReply(timeout)

    def expect(self, line: str, code: int = 250, timeout: Optional[float] = None) -> Reply:
        reply = self.command(line, timeout)
        if reply.code != code:
            raise ControlError("%r: expected %d, got %r" % (line, code, reply))
        return reply

    # -- events -----------------------------------------------------------

    def waitEvent(self, match: Matcher, timeout: float = 10.0) -> Line:
        """
        The first unclaimed event matching ``match`` (a regex searched in the
        whole line, e.g. ``r"^650 LINK L1 GOOD"``, or a predicate on
        :class:`Line`); raises ControlError after ``timeout``.
        """
        pred = _matcher(match)
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.pending):
                if pred(event):
                    del self.pending[i]
                    return event
            line = self._readLine(deadline)
            if line is None:
                raise ControlError("no event matching %r within %.1fs; events seen: %s"
                                   % (match, timeout, self.events[-10:]))
            if self._isEvent(line):
                self._queueEvent(line)
            else:
                raise ControlError("unexpected non-event line %r" % line)

    def pollEvents(self, timeout: float = 0.0) -> List[Line]:
        """Read events for ``timeout`` seconds; return those that arrived."""
        before = len(self.events)
        deadline = time.monotonic() + timeout
        while True:
            line = self._readLine(deadline)
            if line is None:
                break
            if not self._isEvent(line):
                raise ControlError("unexpected non-event line %r" % line)
            self._queueEvent(line)
        return self.events[before:]

    def linkEvents(self, linkId: str) -> List[Line]:
        return [e for e in self.events if e.words[:2] == ["LINK", linkId]]

    def waitLinkState(self, linkId: str, states=("CLOS", "ERR", "BAD"),
                      timeout: float = 30.0) -> Line:
        """The next ``650 LINK <id> <STATE>`` whose state is in ``states``."""
        return self.waitEvent(
            lambda e: e.words[:2] == ["LINK", linkId] and len(e.words) > 2
            and e.words[2] in states, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.closed = True

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
