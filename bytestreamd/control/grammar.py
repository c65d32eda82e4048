"""
The control-socket grammar: parse command lines, format replies and events.

Pure functions, no I/O, shared by the daemon (``control.protocol``) and by
``bytestreamctl``, so both ends quote and unquote the same way.

Words are separated by spaces.  A double-quoted string is part of one word
(``reason="no thanks"``); inside it ``\\"``, ``\\\\``, ``\\n``, ``\\r``,
``\\t`` and ``\\xHH`` are escapes and any other backslash is an error, so a
typo is reported instead of silently changing the value.  A word is an
option when it has an ``=`` *outside* quotes: ``"a=b@example.org"`` stays a
positional word even though JID localparts may contain ``=``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

if TYPE_CHECKING:
    from twisted.words.protocols.jabber.jid import JID


from bytestreamd.errors import SyntaxErrorInArgument
from bytestreamd.events import Event

#: Longest accepted command line in bytes, without its LF (or CRLF).
MAX_LINE = 4096

_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HEX = "0123456789abcdefABCDEF"


def _scan(line: str) -> List[Tuple[str, Optional[int]]]:
    """
    Split ``line`` into words; each word with the index of its first
    unquoted ``=`` (``None`` if it has none), which is what makes it an
    option.
    """
    words: List[Tuple[str, Optional[int]]] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        chars: List[str] = []
        eq: Optional[int] = None
        while i < n and line[i] != " ":
            ch = line[i]
            if ch == '"':
                i = _scanQuoted(line, i + 1, chars)
                continue
            if ch == "=" and eq is None:
                eq = len(chars)
            chars.append(ch)
            i += 1
        words.append(("".join(chars), eq))
    return words


def _scanQuoted(line: str, i: int, out: List[str]) -> int:
    """Append the quoted string starting after the quote at ``i - 1``."""
    start = i - 1
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == '"':
            return i + 1
        if ch == "\\":
            if i + 1 >= n:
                break
            esc = line[i + 1]
            if esc in _UNESCAPE:
                out.append(_UNESCAPE[esc])
                i += 2
                continue
            if esc == "x" and len(line[i + 2:i + 4]) == 2 and all(
                    c in _HEX for c in line[i + 2:i + 4]):
                out.append(chr(int(line[i + 2:i + 4], 16)))
                i += 4
                continue
            raise SyntaxErrorInArgument(
                "bad escape %s in quoted string at column %d (use \\\" or \\\\)"
                % (line[i:i + 2], i + 1))
        out.append(ch)
        i += 1
    raise SyntaxErrorInArgument(
        "unterminated quoted string starting at column %d" % (start + 1))


def tokenize(line: str) -> List[str]:
    """
    The words of ``line`` with quotes removed and escapes resolved.

    Raises :class:`SyntaxErrorInArgument` (512) for an unterminated quote
    or a bad escape.
    """
    return [word for word, _ in _scan(line)]


def _collect(words: List[Tuple[str, Optional[int]]]) -> Tuple[List[str], Dict[str, str]]:
    args: List[str] = []
    options: Dict[str, str] = {}
    for word, eq in words:
        if eq is None:
            args.append(word)
            continue
        key, value = word[:eq], word[eq + 1:]
        if not key:
            raise SyntaxErrorInArgument("option without a name: %s" % formatValue(word))
        if key in options:
            raise SyntaxErrorInArgument("option %s given twice" % key)
        options[key] = value
    return args, options


def parseArguments(text: str) -> Tuple[List[str], Dict[str, str]]:
    """
    Split ``text`` into positional words and ``key=value`` options (in
    order of appearance).  Used for command arguments and, by clients, for
    the text of replies and events.  Option names are kept as written.
    """
    return _collect(_scan(text))


@dataclass
class Command:
    """One parsed command line: upper-cased verb, positional args, options."""

    verb: str
    args: List[str] = field(default_factory=list)
    options: Dict[str, str] = field(default_factory=dict)


def parseCommand(line: str) -> Optional[Command]:
    """
    Parse one command line (without its line end).  Option names are
    lower-cased like the verb is upper-cased, so both are case-insensitive.
    ``None`` for a blank line; an explicitly empty verb (``""``) is a
    syntax error.
    """
    words = _scan(line)
    if not words:
        return None
    if not words[0][0]:
        raise SyntaxErrorInArgument("empty command")
    lowered = [(word if eq is None else word[:eq].lower() + word[eq:], eq)
               for word, eq in words[1:]]
    args, options = _collect(lowered)
    return Command(words[0][0].upper(), args, options)


def _needsQuotes(value: str) -> bool:
    if not value:
        return True
    for ch in value:
        if ch in ' "\\=' or ch.isspace() or unicodedata.category(ch) == "Cc":
            return True
    return False


def formatValue(value: str) -> str:
    """
    ``value`` as one word: as-is when safe, else double-quoted with
    escapes, so that :func:`tokenize` gives back exactly ``value``.
    """
    if not _needsQuotes(value):
        return value
    out = ['"']
    for ch in value:
        if ch in _ESCAPE:
            out.append(_ESCAPE[ch])
        elif unicodedata.category(ch) == "Cc":
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def formatOptions(pairs: Iterable[Tuple[str, str]]) -> str:
    """``k=v k2="a b"``: each value through :func:`formatValue`."""
    return " ".join("%s=%s" % (key, formatValue(str(value))) for key, value in pairs)


_LINE_BREAKS = re.compile(r"\r\n|[\r\n]")


def _oneLine(text: str) -> str:
    """Free text (error messages) must never end a reply line early."""
    return _LINE_BREAKS.sub(" ", text)


def formatReply(code: int, lines: List[str]) -> bytes:
    """
    One complete reply: ``NNN-line`` for all lines but the last, then
    ``NNN line``; UTF-8 with LF line ends.  Line breaks inside a line are
    replaced by spaces.
    """
    if not lines:
        raise ValueError("a reply needs at least one line")
    if not 100 <= code <= 999:
        raise ValueError("reply code must have three digits: %r" % (code,))
    out = []
    last = len(lines) - 1
    for index, line in enumerate(lines):
        out.append("%03d%s%s\n" % (code, " " if index == last else "-", _oneLine(line)))
    return "".join(out).encode("utf-8", "replace")


def formatEvent(event: Event) -> bytes:
    """``650 KIND word... key=value...`` with an LF, UTF-8."""
    parts = [event.kind]
    parts.extend(formatValue(str(word)) for word in event.words)
    if event.options:
        parts.append(formatOptions(event.options))
    return ("650 %s\n" % _oneLine(" ".join(parts))).encode("utf-8", "replace")


def parseJID(text: str) -> JID:
    """
    A JID given on the control socket (:func:`bytestreamd.jids.parseJID`:
    stringprep, IP literals such as ``bob@[::1]``, the length limits).
    Raises :class:`SyntaxErrorInArgument` (512) naming the problem.
    """
    from bytestreamd.jids import InvalidJID
    from bytestreamd.jids import parseJID as _parse  # not at CLI start-up
    try:
        return _parse(text)
    except InvalidJID as exc:
        raise SyntaxErrorInArgument("bad JID %s: %s" % (formatValue(text), exc))


_REPLY_LINE = re.compile(r"([0-9]{3})(?:([ +-])(.*))?\Z", re.S)


def parseReplyLine(line: str) -> Tuple[int, str, str]:
    """
    Split one line received from the daemon into ``(code, sep, text)``;
    ``sep`` is ``"-"`` for a continuation line and ``" "`` for the last
    line of a reply (or an event).  A trailing LF or CRLF is ignored.
    Raises ``ValueError`` for a line that is not a reply line.
    """
    if line.endswith("\n"):
        line = line[:-1]
        if line.endswith("\r"):
            line = line[:-1]
    match = _REPLY_LINE.match(line)
    if match is None:
        raise ValueError("malformed reply line: %r" % (line[:80],))
    code, sep, text = match.groups()
    return int(code), sep or " ", text or ""
