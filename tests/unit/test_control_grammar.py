from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.control import grammar
from bytestreamd.control.grammar import (
    MAX_LINE,
    Command,
    formatEvent,
    formatOptions,
    formatReply,
    formatValue,
    parseArguments,
    parseCommand,
    parseJID,
    parseReplyLine,
    tokenize,
)
from bytestreamd.errors import SyntaxErrorInArgument
from bytestreamd.events import Event


class TokenizeTests(SynchronousTestCase):
    def test_spaces(self):
        self.assertEqual(tokenize("  OPEN   bob@example.org  x "), ["OPEN", "bob@example.org", "x"])
        self.assertEqual(tokenize(""), [])
        self.assertEqual(tokenize("   "), [])

    def test_quotedIsOneToken(self):
        self.assertEqual(tokenize('REJECT l1 reason="not now, thanks"'),
                         ["REJECT", "l1", "reason=not now, thanks"])
        self.assertEqual(tokenize('"a b" c'), ["a b", "c"])
        self.assertEqual(tokenize('""'), [""])

    def test_escapes(self):
        self.assertEqual(tokenize(r'x="say \"hi\" \\o/"'), ['x=say "hi" \\o/'])
        self.assertEqual(tokenize(r'"a\nb\tc\x01"'), ["a\nb\tc\x01"])

    def test_backslashOutsideQuotesIsLiteral(self):
        self.assertEqual(tokenize(r"a\b"), ["a\\b"])

    def test_unterminated(self):
        exc = self.assertRaises(SyntaxErrorInArgument, tokenize, 'x="abc')
        self.assertEqual(exc.code, 512)
        self.assertIn("unterminated", exc.text)
        self.assertRaises(SyntaxErrorInArgument, tokenize, '"abc\\"')
        self.assertRaises(SyntaxErrorInArgument, tokenize, '"abc\\')

    def test_badEscape(self):
        exc = self.assertRaises(SyntaxErrorInArgument, tokenize, r'"a\qb"')
        self.assertEqual(exc.code, 512)
        self.assertIn("bad escape", exc.text)
        self.assertRaises(SyntaxErrorInArgument, tokenize, r'"\x1"')
        self.assertRaises(SyntaxErrorInArgument, tokenize, r'"\xzz"')


class FormatValueTests(SynchronousTestCase):
    SAMPLES = ["plain", "", "a b", 'q"uote', "back\\slash", "k=v", "line\nbreak",
               "cr\r", "tab\t", "\x00\x7f\x85", "ünïcödé", "with\u2028sep", " ", '"',
               "\\", 'mixed "a b" \\ = \n end']

    def test_plainUnchanged(self):
        for value in ["plain", "bob@example.org/res", "ünïcödé", "s5b,ibb", "-", "4096"]:
            self.assertEqual(formatValue(value), value)

    def test_quotedWhenNeeded(self):
        self.assertEqual(formatValue(""), '""')
        self.assertEqual(formatValue("a b"), '"a b"')
        self.assertEqual(formatValue('a"b'), '"a\\"b"')
        self.assertEqual(formatValue("a\\b"), '"a\\\\b"')
        self.assertEqual(formatValue("a=b"), '"a=b"')
        self.assertEqual(formatValue("a\nb"), '"a\\nb"')
        self.assertEqual(formatValue("\x01"), '"\\x01"')

    def test_roundTrip(self):
        for value in self.SAMPLES:
            formatted = formatValue(value)
            self.assertNotIn("\n", formatted)
            self.assertNotIn("\r", formatted)
            self.assertEqual(tokenize(formatted), [value], formatted)
            self.assertEqual(tokenize("k=" + formatted), ["k=" + value])

    def test_optionsRoundTrip(self):
        pairs = [("k%d" % i, v) for i, v in enumerate(self.SAMPLES)]
        text = formatOptions(pairs)
        self.assertEqual(parseArguments(text), ([], dict(pairs)))
        self.assertEqual(formatOptions([("a", "1"), ("b", "x y")]), 'a=1 b="x y"')
        self.assertEqual(formatOptions([]), "")


class ParseCommandTests(SynchronousTestCase):
    def test_verbArgsOptions(self):
        self.assertEqual(
            parseCommand('open bob@example.org Service=ssh methods=s5b,ibb reason="a b"'),
            Command("OPEN", ["bob@example.org"],
                    {"service": "ssh", "methods": "s5b,ibb", "reason": "a b"}))

    def test_blank(self):
        self.assertIsNone(parseCommand(""))
        self.assertIsNone(parseCommand("    "))

    def test_emptyQuotedVerb(self):
        self.assertRaises(SyntaxErrorInArgument, parseCommand, '"" x')

    def test_valueKeepsLaterEquals(self):
        self.assertEqual(parseCommand("REJECT x reason=a=b").options, {"reason": "a=b"})
        self.assertEqual(parseCommand("REJECT x reason=").options, {"reason": ""})

    def test_quotedEqualsIsPositional(self):
        cmd = parseCommand('OPEN "a=b@example.org"')
        self.assertEqual(cmd.args, ["a=b@example.org"])
        self.assertEqual(cmd.options, {})

    def test_duplicateOption(self):
        self.assertRaises(SyntaxErrorInArgument, parseCommand, "OPEN x a=1 A=2")

    def test_emptyOptionName(self):
        self.assertRaises(SyntaxErrorInArgument, parseCommand, "OPEN x =1")

    def test_syntaxError(self):
        exc = self.assertRaises(SyntaxErrorInArgument, parseCommand, 'REJECT x reason="oops')
        self.assertEqual(exc.code, 512)


class FormatReplyTests(SynchronousTestCase):
    def test_multiLine(self):
        self.assertEqual(formatReply(250, ["a", "b", "OK"]), b"250-a\n250-b\n250 OK\n")

    def test_singleLine(self):
        self.assertEqual(formatReply(552, ["no such link x"]), b"552 no such link x\n")

    def test_utf8(self):
        self.assertEqual(formatReply(250, ["jid=ü@x"]), "250 jid=ü@x\n".encode("utf-8"))

    def test_lineBreaksReplaced(self):
        data = formatReply(550, ["internal error: a\nb\r\nc\rd"])
        self.assertEqual(data, b"550 internal error: a b c d\n")
        self.assertEqual(data.count(b"\n"), 1)

    def test_emptyRefused(self):
        self.assertRaises(ValueError, formatReply, 250, [])
        self.assertRaises(ValueError, formatReply, 25, ["x"])


class FormatEventTests(SynchronousTestCase):
    def test_link(self):
        event = Event("LINK", ("l1", "BAD"),
                      (("method", "s5b"), ("reason", "proxy timed out"), ("final", "yes")),
                      linkId="l1")
        self.assertEqual(formatEvent(event),
                         b'650 LINK l1 BAD method=s5b reason="proxy timed out" final=yes\n')

    def test_serverNoOptions(self):
        self.assertEqual(formatEvent(Event("SERVER", ("connected",), broadcast=True)),
                         b"650 SERVER connected\n")

    def test_reasonWithNewlineStaysOneLine(self):
        data = formatEvent(Event("SERVER", ("disconnected",), (("reason", "a\nb"),)))
        self.assertEqual(data, b'650 SERVER disconnected reason="a\\nb"\n')


class ParseJIDTests(SynchronousTestCase):
    def test_valid(self):
        self.assertEqual(parseJID("Bob@Example.org/Res"), JID("bob@example.org/Res"))
        self.assertEqual(parseJID("example.org").full(), "example.org")
        self.assertIsInstance(parseJID("a@b"), JID)

    def test_invalid(self):
        for bad in ["", "a b@x", "x@", "@x", "a@x/", "/r", "a@b@c", "a@exa mple.org",
                    "a\x00@x", "a" * 1024 + "@x", "a@x/" + "r" * 1024]:
            exc = self.assertRaises(SyntaxErrorInArgument, parseJID, bad)
            self.assertEqual(exc.code, 512)
            self.assertTrue(exc.text.startswith("bad JID "), exc.text)


class ParseJIDLiteralTests(SynchronousTestCase):
    """Issue 8: an IP literal is a valid domainpart (RFC 7622 3.2)."""

    def test_ipLiterals(self):
        self.assertEqual(parseJID("bob@[::1]/x").full(), "bob@[::1]/x")
        self.assertEqual(parseJID("bob@127.0.0.1/x").full(), "bob@127.0.0.1/x")

    def test_badLiteralsNameTheProblem(self):
        exc = self.assertRaises(SyntaxErrorInArgument, parseJID, "bob@::1/x")
        self.assertEqual(exc.text, "bad JID bob@::1/x: an IPv6 address in a JID is "
                         "written in brackets: user@[2001:db8::1]")
        exc = self.assertRaises(SyntaxErrorInArgument, parseJID, "bob@[::1\x01]")
        self.assertTrue(exc.text.startswith("bad JID "), exc.text)


class ParseReplyLineTests(SynchronousTestCase):
    def test_lines(self):
        self.assertEqual(parseReplyLine("250-link=l1 state=GOOD\n"),
                         (250, "-", "link=l1 state=GOOD"))
        self.assertEqual(parseReplyLine("250 OK\r\n"), (250, " ", "OK"))
        self.assertEqual(parseReplyLine("650 LINK l1 INIT"), (650, " ", "LINK l1 INIT"))
        self.assertEqual(parseReplyLine("250"), (250, " ", ""))

    def test_malformed(self):
        for bad in ["", "25 OK", "abc OK", "2500 OK", "250_x"]:
            self.assertRaises(ValueError, parseReplyLine, bad)

    def test_roundTripWithFormatReply(self):
        lines = formatReply(250, ['a="x y"', "OK"]).decode().splitlines(True)
        self.assertEqual([parseReplyLine(line) for line in lines],
                         [(250, "-", 'a="x y"'), (250, " ", "OK")])
        self.assertEqual(parseArguments(parseReplyLine(lines[0])[2])[1], {"a": "x y"})


def test_maxLine():
    assert MAX_LINE == 4096 == grammar.MAX_LINE
