"""
Property tests (hypothesis) for the control grammar and the control
protocol: arbitrary unicode and bytes only ever produce a parse result or
the grammar's own error, which the protocol answers with a 5xx reply --
never an exception that escapes, never a ``550 internal error`` -- and
quoted values survive a format/parse round trip (issue 8, "Fuzzing").
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytestreamd.control import protocol as cprotocol
from bytestreamd.control.grammar import (
    Command,
    formatEvent,
    formatOptions,
    formatReply,
    formatValue,
    parseArguments,
    parseCommand,
    tokenize,
)
from bytestreamd.control.protocol import ControlFactory
from bytestreamd.errors import SyntaxErrorInArgument
from bytestreamd.events import Event
from tests.unit.test_control_protocol import FakeBackend

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

VERBS = list(cprotocol._COMMANDS) + ["open", "Reject", "NOPE", ""]
OPTIONS = sorted({o for spec in cprotocol._COMMANDS.values() for o in spec.options}
                 | {"x", "REASON", ""})
# Everything but the line end, which splits a command in two.
ANY_TEXT = st.text(st.characters(blacklist_characters="\n"), max_size=60)
NO_SURROGATES = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")

_REPLY = re.compile(rb"^[0-9]{3}[ -]")


def _word():
    return st.one_of(
        st.text(NO_SURROGATES, max_size=20),
        st.text(NO_SURROGATES, max_size=20).map(formatValue),
        st.sampled_from(["bob@example.org", "bob@[::1]/x", "l1", "o1", "nope",
                         "a@b", '"', '\\', "=", '"\\x01"', '"\\xff"', "\ufffe"]),
    )


def _option():
    return st.tuples(st.sampled_from(OPTIONS), _word()).map(lambda kv: "%s=%s" % kv)


COMMAND_LINES = st.builds(
    lambda verb, words: " ".join([verb] + words),
    st.sampled_from(VERBS),
    st.lists(st.one_of(_word(), _option()), max_size=8))


@FAST
@given(ANY_TEXT)
def test_parseCommandOnlyRaisesItsOwnError(line):
    try:
        command = parseCommand(line)
    except SyntaxErrorInArgument as e:
        assert e.code == 512
        return
    assert command is None or isinstance(command, Command)


@FAST
@given(ANY_TEXT)
def test_formatValueRoundTrip(value):
    assert tokenize(formatValue(value)) == [value]


@FAST
@given(st.from_regex(r"[a-z][a-z-]{0,10}", fullmatch=True), ANY_TEXT)
def test_optionRoundTrip(key, value):
    text = formatOptions([(key, value)])
    assert parseArguments(text) == ([], {key: value})
    command = parseCommand("VERB " + text)
    assert command is not None and command.options == {key: value}


@FAST
@given(st.lists(ANY_TEXT, min_size=1, max_size=3), ANY_TEXT)
def test_repliesAndEventsAreOneLineEach(lines, word):
    reply = formatReply(250, lines)
    assert reply.count(b"\n") == len(lines)
    event = formatEvent(Event("LINK", ("l1", word), (("reason", word),)))
    assert event.count(b"\n") == 1 and event.startswith(b"650 LINK l1 ")


def _run(data: bytes) -> bytes:
    from twisted.internet.testing import StringTransport
    backend = FakeBackend()
    proto = ControlFactory(backend).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(data)
    for d in backend.probes:
        d.callback([("jid", "bob@example.org/x")])
    return transport.value()


def _assertOnlyReplies(out: bytes) -> None:
    assert b"internal error" not in out, out
    for line in out.split(b"\n")[:-1]:
        assert _REPLY.match(line), out
        code = int(line[:3])
        assert code in (250, 650) or 500 <= code < 600, out


@FAST
@given(st.one_of(COMMAND_LINES, st.text(NO_SURROGATES, max_size=80)))
def test_anyCommandLineIsAnsweredNeverCrashes(line):
    data = line.encode("utf-8") + b"\n"
    out = _run(data)
    _assertOnlyReplies(out)
    body = line[:-1] if line.endswith("\r") else line
    if body.strip(" \t"):  # what the protocol calls a blank line
        assert out.endswith(b"\n"), out  # answered (QUIT too: "250 closing")


@FAST
@given(st.binary(max_size=200))
def test_anyBytesAreAnsweredNeverCrash(data):
    _assertOnlyReplies(_run(data + b"\n"))


@FAST
@given(st.sampled_from(["reason", "service", "name", "desc"]),
       st.text(NO_SURROGATES, min_size=1, max_size=20))
def test_textReachingAStanzaIsXMLOrRefused(key, value):
    """Whatever a command accepts can be carried by XML (issue 8)."""
    from bytestreamd.text import badCharacter, isXMLText
    if key == "reason":
        line = "REJECT o1 reason=%s" % formatValue(value)
    elif key == "service":
        line = "OPEN a@b service=%s" % formatValue(value)
    else:
        line = "OPEN a@b profile=file size=1 name=%s" % formatValue(
            value if key == "name" else "f")
        if key == "desc":
            line += " desc=%s" % formatValue(value)
    out = _run(line.encode("utf-8") + b"\n")
    _assertOnlyReplies(out)
    allowed = "\n\t" if key == "desc" else ""
    if out.startswith(b"250"):
        assert isXMLText(value) and badCharacter(value, allowed) is None
    elif badCharacter(value, allowed) is not None:
        assert out.startswith(b"512 %s: " % key.encode()), out
