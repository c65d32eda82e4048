"""
Text that crosses a boundary: into a stanza, or into the log.

XML 1.0 cannot carry every character.  Its ``Char`` production leaves out
the C0 controls but tab, LF and CR, the surrogates, and U+FFFE/U+FFFF;
domish serialises whatever it is given, so one ``\\x01`` in an error text
makes the server close the daemon's stream -- and every link with it.  The
rules, applied where text enters and where it leaves:

* the control socket refuses any argument with a control character, a
  surrogate, a Unicode noncharacter or a line/paragraph separator
  (:func:`badCharacter`, answered ``512 <argument>: ...``);
* the wire codecs refuse to build *or* parse a value with a character
  outside ``Char`` (:func:`firstNonXML`, raised as the codec's own error),
  so a value a codec accepted can always be serialised;
* free text the daemon writes into a stanza error is repaired instead
  (:func:`xmlText`: U+FFFD for each bad character), because an error must
  always be sendable;
* log lines escape control and formatting characters from peers and users
  (:func:`safeText`, and :class:`SafeLogger` which applies it to every
  field of every event), so nobody can forge a log line or drive the
  operator's terminal.

The control grammar (shared with ``bytestreamctl``, which must start fast)
does not import this module; the daemon side of the control socket does.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Optional

from twisted.logger import Logger

#: Anything outside the XML 1.0 ``Char`` production.
_NON_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: What :func:`safeText` escapes: C0/C1 controls and DEL, surrogates,
#: noncharacters, line and paragraph separators, and the bidirectional
#: formatting characters that can make a log line read backwards.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\u2028\u2029"
    "\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffe\uffff"
    + "".join("\\U%08x\\U%08x" % (plane << 16 | 0xFFFE, plane << 16 | 0xFFFF)
              for plane in range(1, 17))
    + "]")


def isNoncharacter(ch: str) -> bool:
    """U+FDD0..U+FDEF and the last two code points of every plane."""
    code = ord(ch)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def describeCharacter(ch: str) -> str:
    """``control character U+0001``: words for an error message."""
    code = ord(ch)
    if unicodedata.category(ch) == "Cc":
        kind = "control character"
    elif 0xD800 <= code <= 0xDFFF:
        kind = "surrogate"
    elif isNoncharacter(ch):
        kind = "noncharacter"
    elif code in (0x2028, 0x2029):
        kind = "line separator" if code == 0x2028 else "paragraph separator"
    else:
        kind = "character"
    return "%s U+%04X" % (kind, code)


def firstNonXML(text: str) -> Optional[int]:
    """The index of the first character XML 1.0 cannot carry, or ``None``."""
    match = _NON_XML.search(text)
    return None if match is None else match.start()


def isXMLText(text: str) -> bool:
    """Whether every character of ``text`` is an XML 1.0 ``Char``."""
    return _NON_XML.search(text) is None


def xmlText(text: str) -> str:
    """``text`` with each character XML 1.0 cannot carry replaced by U+FFFD."""
    return _NON_XML.sub("\ufffd", text)


def badCharacter(text: str, allowed: str = "") -> Optional[str]:
    """
    Why ``text`` may not go into a stanza, or ``None`` when it may.

    The control-socket rule, stricter than XML: no control character (but
    those in ``allowed``, e.g. ``"\\n\\t"`` for a description), no
    surrogate, no noncharacter, no line or paragraph separator.  C1
    controls are valid XML but mean nothing in a name or a reason, and some
    terminals act on them.
    """
    for ch in text:
        if ch in allowed:
            continue
        code = ord(ch)
        if (code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF
                or code in (0x2028, 0x2029) or isNoncharacter(ch)):
            return describeCharacter(ch)
    return None


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return "\\x%02x" % code
    if code <= 0xFFFF:
        return "\\u%04x" % code
    return "\\U%08x" % code


def safeText(text: Any) -> str:
    """
    ``text`` (or ``str(text)``) for a log line: controls, separators,
    surrogates, noncharacters and bidi overrides become ``\\xHH``,
    ``\\uHHHH`` or ``\\UHHHHHHHH``.  Backslashes are left alone: the point
    is that a peer cannot end the line or reach the terminal, not a
    reversible encoding.
    """
    if not isinstance(text, str):
        text = str(text)
    return _UNSAFE.sub(_escape, text)


class _Escaped:
    """
    A log field that formats like the value it wraps, escaped.  Keeps
    ``{e!r}`` (repr already escapes) and ``{x.attr}`` working.
    """

    __slots__ = ("_value",)

    def __init__(self, value: Any):
        self._value = value

    def __format__(self, spec: str) -> str:
        return safeText(format(self._value, spec))

    def __str__(self) -> str:
        return safeText(str(self._value))

    def __repr__(self) -> str:
        return safeText(repr(self._value))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._value, name)


_PLAIN = (int, float, bool, type(None))


class SafeLogger(Logger):
    """
    A :class:`twisted.logger.Logger` whose events carry escaped fields:
    strings through :func:`safeText`, other objects (exceptions, JIDs,
    addresses) wrapped so that they are escaped when formatted.  Fields
    Twisted owns (``log_*``) are left alone, so failures keep their
    tracebacks.  Use it in every module that logs text from a peer or a
    user: reasons, JIDs, headers, stanza error texts.
    """

    def emit(self, level: Any, format: Optional[str] = None, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if key.startswith("log_") or isinstance(value, _PLAIN):
                continue
            kwargs[key] = safeText(value) if isinstance(value, str) else _Escaped(value)
        Logger.emit(self, level, format, **kwargs)
