from typing import List, Optional

from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer
from zope.interface.verify import verifyObject

from bytestreamd.control import protocol as cprotocol
from bytestreamd.control.grammar import MAX_LINE, parseArguments, parseReplyLine
from bytestreamd.control.protocol import ControlFactory, ControlProtocol
from bytestreamd.errors import NoSuchLink, NotConnected, PeerError, ResourceLimit
from bytestreamd.events import Event, LinkInfo
from bytestreamd.interfaces import IControlBackend


@implementer(IControlBackend)
class FakeBackend:
    """
    Records calls; ``open`` emits ``650 LINK <id> INIT`` synchronously, as
    the real link registry may.
    """

    def __init__(self):
        self.calls: list = []
        self.sinks: list = []
        self.forgotten: list = []
        self.probes: List[defer.Deferred] = []
        self.cancelled: list = []
        self.counter = 0
        self.raiseOnOpen: Optional[Exception] = None
        self.linkList: List[LinkInfo] = []
        self.statusPairs = [("jid", "me@example.org/bytestreamd"), ("server", "connected")]

    def emit(self, event):
        for sink in list(self.sinks):
            sink(event)

    def open(self, peer, owner, service=None, methods=None, blockSize=None, stanza=None,
             profile=None, headers=None, e2e=None):
        self.calls.append(("open", peer, owner, service, methods, blockSize, stanza))
        if self.raiseOnOpen is not None:
            raise self.raiseOnOpen
        self.counter += 1
        linkId = "l%d" % self.counter
        self.emit(Event("LINK", (linkId, "INIT"), (("method", "s5b"),), linkId=linkId))
        return LinkInfo(linkId, "NEGO", peer.full(), "out",
                        socket="/run/bytestreamd/links/" + linkId)

    def accept(self, linkId, owner, offset=None, length=None):
        self.calls.append(("accept", linkId, owner))
        if linkId == "nope":
            raise NoSuchLink("no such offer nope")
        self.emit(Event("LINK", (linkId, "INIT"), linkId=linkId))
        return LinkInfo(linkId, "INIT", "bob@example.org/x", "in", socket=None)

    def reject(self, linkId, reason=None):
        self.calls.append(("reject", linkId, reason))
        if linkId == "nope":
            raise NoSuchLink("no such offer nope")

    def close(self, linkId):
        self.calls.append(("close", linkId))
        if linkId == "boom":
            raise RuntimeError("kaboom\nsecond line")

    def links(self):
        self.calls.append(("links",))
        return self.linkList

    def status(self):
        self.calls.append(("status",))
        return self.statusPairs

    def fingerprint(self):
        self.calls.append(("fingerprint",))
        return [("fingerprint", "AB:CD")]

    def trust(self, jid, fingerprint):
        self.calls.append(("trust", jid, fingerprint))
        return [("jid", jid), ("added", "yes")]

    def pins(self, jid=None):
        self.calls.append(("pins", jid))
        return []

    def forget(self, jid, fingerprint=None):
        self.calls.append(("forget", jid, fingerprint))
        return [("jid", jid), ("removed", "0")]

    def probe(self, peer):
        self.calls.append(("probe", peer))
        d = defer.Deferred(lambda d: self.cancelled.append(peer))
        self.probes.append(d)
        return d

    def subscribe(self, sink):
        self.sinks.append(sink)

    def unsubscribe(self, sink):
        self.sinks.remove(sink)

    def forgetOwner(self, owner):
        self.forgotten.append(owner)


def linkEvent(linkId, state, *options, **kw):
    return Event("LINK", (linkId, state), tuple(options), linkId=linkId, **kw)


class ProtocolTestCase(SynchronousTestCase):
    def setUp(self):
        self.backend = FakeBackend()
        self.proto, self.transport = self.connect()

    def connect(self):
        proto = ControlFactory(self.backend).buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def send(self, data, proto=None):
        (proto or self.proto).dataReceived(data)

    def output(self, transport=None) -> bytes:
        transport = transport or self.transport
        data = transport.value()
        transport.clear()
        return data

    def command(self, line: str) -> bytes:
        self.send(line.encode("utf-8") + b"\n")
        return self.output()


class LifecycleTests(ProtocolTestCase):
    def test_backendIsProvided(self):
        verifyObject(IControlBackend, self.backend)
        self.assertIsInstance(self.proto, ControlProtocol)
        self.assertIs(self.proto.backend, self.backend)

    def test_subscribeAndForget(self):
        self.assertEqual(len(self.backend.sinks), 1)
        self.proto.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.backend.sinks, [])
        self.assertEqual(self.backend.forgotten, [self.proto])

    def test_quit(self):
        self.assertEqual(self.command("quit"), b"250 closing\n")
        self.assertTrue(self.transport.disconnecting)

    def test_nothingAfterQuit(self):
        self.send(b"QUIT\nSTATUS\n")
        self.assertEqual(self.output(), b"250 closing\n")
        self.backend.emit(Event("SERVER", ("connected",), broadcast=True))
        self.assertEqual(self.output(), b"")
        self.assertNotIn(("status",), self.backend.calls)

    def test_lostWithPendingProbe(self):
        self.send(b"PROBE bob@example.org\n")
        d = self.backend.probes[0]
        self.proto.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.backend.cancelled, [JID("bob@example.org")])
        self.assertIsNone(self.successResultOf(d))  # the chain swallowed it
        self.assertEqual(self.output(), b"")


class LineTests(ProtocolTestCase):
    def test_crlf(self):
        self.send(b"STATUS\r\n")
        self.assertEqual(self.output(),
                         b"250-jid=me@example.org/bytestreamd\n250-server=connected\n250 OK\n")

    def test_partialLines(self):
        self.send(b"WAT")
        self.assertEqual(self.output(), b"")
        self.send(b"CH\r")
        self.assertEqual(self.output(), b"")
        self.send(b"\nUNWATCH\n")
        self.assertEqual(self.output(), b"250 OK\n250 OK\n")

    def test_blankLinesIgnored(self):
        self.send(b"\n\r\n   \nWATCH\n")
        self.assertEqual(self.output(), b"250 OK\n")

    def test_longLineThenCommand(self):
        self.send(b"OPEN " + b"x" * (MAX_LINE + 10) + b"\nWATCH\n")
        self.assertEqual(self.output(),
                         b"512 line too long (max 4096 bytes)\n250 OK\n")
        self.assertEqual(self.backend.calls, [])

    def test_longLineInPieces(self):
        for _ in range(10):
            self.send(b"y" * 1000)
        self.assertEqual(self.output(), b"512 line too long (max 4096 bytes)\n")
        self.send(b"z" * 5000)
        self.send(b"more\nWATCH\r\n")
        self.assertEqual(self.output(), b"250 OK\n")

    def test_lineAtTheLimit(self):
        line = b"HELP " + b"x" * (MAX_LINE - 5)
        self.assertEqual(len(line), MAX_LINE)
        self.send(line + b"\r")
        self.send(b"\n")
        out = self.output()
        self.assertTrue(out.startswith(b"510 unknown command xxx"), out[:40])
        self.send(line + b"x\n")
        self.assertEqual(self.output(), b"512 line too long (max 4096 bytes)\n")

    def test_invalidUtf8(self):
        self.send(b"OPEN \xff\xfe@x\nWATCH\n")
        out = self.output().split(b"\n")
        self.assertTrue(out[0].startswith(b"512 "), out)
        self.assertIn(b"UTF-8", out[0])
        self.assertEqual(out[1:], [b"250 OK", b""])

    def test_utf8Jid(self):
        self.assertTrue(self.command("OPEN jürgen@example.org").startswith(b"250 link="))
        self.assertEqual(self.backend.calls[0][1], JID("jürgen@example.org"))

    def test_pauseWhenTooManyPending(self):
        self.send(b"PROBE bob@example.org\n" + b"STATUS\n" * (cprotocol.MAX_PENDING + 5))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.backend.calls.count(("status",)), cprotocol.MAX_PENDING - 1)
        self.backend.probes[0].callback([])
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.backend.calls.count(("status",)), cprotocol.MAX_PENDING + 5)
        self.assertEqual(self.output().count(b"250 OK\n"), cprotocol.MAX_PENDING + 6)


class CommandTests(ProtocolTestCase):
    def test_open(self):
        self.assertEqual(self.command("open bob@example.org/x"),
                         b"250 link=l1 socket=/run/bytestreamd/links/l1\n"
                         b"650 LINK l1 INIT method=s5b\n")
        self.assertEqual(self.backend.calls,
                         [("open", JID("bob@example.org/x"), self.proto, None, None, None, None)])

    def test_openOptions(self):
        self.command('OPEN bob@example.org service="ssh" methods=S5B,ibb block-size=65535 '
                     'Stanza=message')
        self.assertEqual(self.backend.calls[0][3:],
                         ("ssh", ["s5b", "ibb"], 65535, "message"))

    def test_openBadValues(self):
        for line in ["OPEN", "OPEN a@b c@d", "OPEN a@b block-size=0",
                     "OPEN a@b block-size=65536", "OPEN a@b block-size=x",
                     "OPEN a@b block-size=-1", "OPEN a@b stanza=presence",
                     "OPEN a@b methods=", "OPEN a@b methods=ibb,,s5b",
                     "OPEN a@b methods=ibb,ibb", "OPEN a@b service=",
                     'OPEN "bad jid@x"', "OPEN x@", 'OPEN a@b reason="x']:
            out = self.command(line)
            self.assertTrue(out.startswith(b"512 "), (line, out))
            self.assertEqual(out.count(b"\n"), 1)
        self.assertEqual(self.backend.calls, [])

    def test_openUnknownOption(self):
        self.assertEqual(self.command("OPEN a@b foo=1"), b"513 unknown option foo for OPEN\n")
        self.assertEqual(self.backend.calls, [])

    def test_openBackendError(self):
        self.backend.raiseOnOpen = ResourceLimit("too many links (max_links=2)")
        self.assertEqual(self.command("OPEN a@b"), b"451 too many links (max_links=2)\n")
        self.backend.raiseOnOpen = NotConnected()
        self.assertEqual(self.command("OPEN a@b"), b"550 not connected to the XMPP server\n")

    def test_accept(self):
        self.assertEqual(self.command("ACCEPT o7"),
                         b"250 link=o7 socket=-\n650 LINK o7 INIT\n")
        self.assertEqual(self.backend.calls, [("accept", "o7", self.proto)])
        self.assertEqual(self.command("ACCEPT nope"), b"552 no such offer nope\n")
        self.assertTrue(self.command("ACCEPT").startswith(b"512 "))
        self.assertTrue(self.command('ACCEPT ""').startswith(b"512 "))
        self.assertEqual(self.command("ACCEPT o1 x=1"), b"513 unknown option x for ACCEPT\n")

    def test_reject(self):
        self.assertEqual(self.command('REJECT o1 reason="not now"'), b"250 OK\n")
        self.assertEqual(self.command("REJECT o2"), b"250 OK\n")
        self.assertEqual(self.backend.calls,
                         [("reject", "o1", "not now"), ("reject", "o2", None)])
        self.assertEqual(self.command("REJECT nope"), b"552 no such offer nope\n")
        self.assertTrue(self.command("REJECT a b").startswith(b"512 "))

    def test_openIPLiteral(self):
        self.assertTrue(self.command("OPEN bob@[::1]/x").startswith(b"250 link="))
        self.assertEqual(self.backend.calls[0][1].full(), "bob@[::1]/x")

    def test_textThatCannotReachXML(self):
        """
        Issue 8: a reason, service, name or desc with a control character
        or a noncharacter was accepted and sent; the server then closed the
        daemon's stream.  Refused now, naming the argument.
        """
        cases = [
            ('REJECT o1 reason="a\\x01b"', b"512 reason: control character U+0001 "
                                             b"is not allowed\n"),
            ('REJECT o1 reason="\\x1b[31m"', b"512 reason: control character U+001B "
                                               b"is not allowed\n"),
            ('REJECT o1 reason="\\x00"', b"512 reason: control character U+0000 "
                                           b"is not allowed\n"),
            ('REJECT o1 reason="\\x85"', b"512 reason: control character U+0085 "
                                           b"is not allowed\n"),
            ('REJECT o1 reason="one\\ntwo"', b"512 reason: control character U+000A "
                                               b"is not allowed\n"),
            ("OPEN a@b service=x\ufffe", b"512 service: noncharacter U+FFFE is not "
                                         b"allowed\n"),
            ("OPEN a@b service=\uffff", b"512 service: noncharacter U+FFFF is not "
                                        b"allowed\n"),
            ("OPEN a@b profile=file size=1 name=f\ufffe",
             b"512 name: noncharacter U+FFFE is not allowed\n"),
            ("OPEN a@b profile=file size=1 name=f desc=d\uffff",
             b"512 desc: noncharacter U+FFFF is not allowed\n"),
            ('OPEN a@b profile=file size=1 name=f desc="a\\x01"',
             b"512 desc: control character U+0001 is not allowed\n"),
            ("OPEN a@b service=\u2028", b"512 service: line separator U+2028 is not "
                                        b"allowed\n"),
            ("OPEN a@b profile=file size=1 name=\U0010ffff",
             b"512 name: noncharacter U+10FFFF is not allowed\n"),
            ('CLOSE "l\\x07"', b"512 id: control character U+0007 is not allowed\n"),
        ]
        for line, reply in cases:
            self.assertEqual(self.command(line), reply, line)
        self.assertEqual(self.backend.calls, [])

    def test_serviceNameAsTheCodecWantsIt(self):
        self.assertEqual(self.command('OPEN a@b service="s s"'),
                         b"512 service: a service name is 1 to 255 characters without "
                         b"spaces\n")
        self.assertTrue(self.command("OPEN a@b service=" + "s" * 256).startswith(b"512 "))
        self.assertEqual(self.backend.calls, [])

    def test_descMayHaveLinesAndTabs(self):
        self.assertTrue(self.command(
            'OPEN a@b profile=file size=1 name=f desc="a\\nb\\tc"').startswith(b"250 "))
        self.assertTrue(self.command('REJECT o1 reason="caf\u00e9 \U0001f600"')
                        .startswith(b"250 "))

    def test_close(self):
        self.assertEqual(self.command("CLOSE l1"), b"250 OK\n")
        self.assertEqual(self.backend.calls, [("close", "l1")])

    def test_internalError(self):
        out = self.command("CLOSE boom")
        self.assertEqual(out, b"550 internal error: RuntimeError: kaboom second line\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.command("WATCH"), b"250 OK\n")

    def test_links(self):
        self.backend.linkList = [
            LinkInfo("l1", "GOOD", "bob@example.org/x", "out", method="s5b",
                     socket="/run/b/links/l1", sent=10, received=20),
            LinkInfo("o2", "OFFER", "carol@example.org/y", "in", service="ssh",
                     extra=(("name", "a file.txt"),)),
        ]
        self.assertEqual(
            self.command("LINKS"),
            b"250-link=l1 state=GOOD peer=bob@example.org/x method=s5b direction=out "
            b"sent=10 received=20 socket=/run/b/links/l1\n"
            b"250-link=o2 state=OFFER peer=carol@example.org/y method=- direction=in "
            b'sent=0 received=0 socket=- service=ssh name="a file.txt"\n'
            b"250 OK\n")
        self.backend.linkList = []
        self.assertEqual(self.command("links"), b"250 OK\n")
        self.assertTrue(self.command("LINKS x").startswith(b"512 "))

    def test_status(self):
        self.backend.statusPairs = [("jid", "me@x/r"), ("features", "ibb s5b"), ("links", 3)]
        self.assertEqual(self.command("STATUS"),
                         b'250-jid=me@x/r\n250-features="ibb s5b"\n250-links=3\n250 OK\n')
        self.assertEqual(self.command("STATUS x=1"), b"513 unknown option x for STATUS\n")

    def test_probe(self):
        self.assertEqual(self.command("PROBE bob@example.org/x"), b"")
        self.assertEqual(self.backend.calls, [("probe", JID("bob@example.org/x"))])
        self.backend.probes[0].callback([("methods", "s5b ibb"), ("si-multiple", "yes")])
        self.assertEqual(self.output(),
                         b'250-methods="s5b ibb"\n250-si-multiple=yes\n250 OK\n')

    def test_probeFailures(self):
        self.command("PROBE bob@example.org")
        self.backend.probes[0].errback(PeerError("bob@example.org: service-unavailable"))
        self.assertEqual(self.output(), b"554 bob@example.org: service-unavailable\n")
        self.command("PROBE bob@example.org")
        self.backend.probes[1].errback(ValueError("odd"))
        self.assertEqual(self.output(), b"550 internal error: ValueError: odd\n")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(self.command("PROBE bad@").startswith(b"512 bad JID"))
        self.assertTrue(self.command("PROBE").startswith(b"512 "))

    def test_probeSynchronousError(self):
        def probe(peer):
            raise NotConnected()
        self.backend.probe = probe
        self.assertEqual(self.command("PROBE bob@example.org"),
                         b"550 not connected to the XMPP server\n")

    def test_help(self):
        out = self.output() or self.command("help")
        lines = out.decode().splitlines()
        self.assertEqual(lines[-1], "250 OK")
        body = [parseReplyLine(line) for line in lines[:-1]]
        self.assertTrue(all(code == 250 and sep == "-" for code, sep, _ in body))
        verbs = [text.split()[0] for _, _, text in body]
        self.assertEqual(verbs, ["OPEN", "ACCEPT", "REJECT", "CLOSE", "LINKS", "STATUS",
                                 "PROBE", "WATCH", "UNWATCH", "HELP", "QUIT",
                                 "FINGERPRINT", "TRUST", "FORGET"])
        self.assertIn("block-size=N", lines[0])
        one = self.command("HELP probe")
        self.assertTrue(one.startswith(b"250-PROBE <jid>"), one)
        self.assertTrue(one.endswith(b"\n250 OK\n"))
        self.assertEqual(self.command("HELP nothing"), b"510 unknown command nothing\n")

    def test_unknownCommand(self):
        self.assertEqual(self.command("FROB x y"), b"510 unknown command FROB\n")
        self.assertEqual(self.command("frob"), b"510 unknown command FROB\n")

    def test_watchArguments(self):
        self.assertTrue(self.command("WATCH all").startswith(b"512 "))
        self.assertEqual(self.command("UNWATCH x=1"), b"513 unknown option x for UNWATCH\n")


class OrderingTests(ProtocolTestCase):
    def test_pipelinedBehindProbeKeepOrder(self):
        self.send(b"PROBE bob@example.org\nSTATUS\nOPEN carol@example.org\nWATCH\n")
        self.assertEqual(self.output(), b"")
        self.assertEqual([c[0] for c in self.backend.calls], ["probe", "status", "open"])
        # An event for the link opened behind the probe waits too.
        self.backend.emit(linkEvent("l1", "GOOD", ("method", "s5b")))
        self.assertEqual(self.output(), b"")
        self.backend.probes[0].callback([("jingle", "no")])
        self.assertEqual(
            self.output(),
            b"250-jingle=no\n250 OK\n"
            b"250-jid=me@example.org/bytestreamd\n250-server=connected\n250 OK\n"
            b"250 link=l1 socket=/run/bytestreamd/links/l1\n"
            b"650 LINK l1 INIT method=s5b\n"
            b"250 OK\n"
            b"650 LINK l1 GOOD method=s5b\n")

    def test_twoProbesAnsweredOutOfOrder(self):
        self.send(b"PROBE a@x\nPROBE b@x\n")
        self.backend.probes[1].callback([("peer", "b")])
        self.assertEqual(self.output(), b"")
        self.backend.probes[0].callback([("peer", "a")])
        self.assertEqual(self.output(), b"250-peer=a\n250 OK\n250-peer=b\n250 OK\n")

    def test_eventDuringPendingProbeGoesAtOnce(self):
        self.send(b"WATCH\nPROBE a@x\n")
        self.assertEqual(self.output(), b"250 OK\n")
        self.backend.emit(Event("SERVER", ("disconnected",), (("reason", "timeout"),),
                                broadcast=True))
        self.assertEqual(self.output(), b"650 SERVER disconnected reason=timeout\n")
        self.backend.probes[0].callback([])
        self.assertEqual(self.output(), b"250 OK\n")

    def test_eventsNeverSplitMultiLineReply(self):
        """Each reply is one write; an event emitted by the backend while it
        builds a multi-line reply follows it."""
        self.command("WATCH")
        writes = []
        self.transport.write = writes.append

        def links():
            self.backend.emit(Event("OFFER", ("o1",), (("from", "bob@x/y"),), linkId="o1"))
            return [LinkInfo("l%d" % i, "GOOD", "p@x", "out") for i in range(3)]
        self.backend.links = links
        self.send(b"LINKS\n")
        self.assertEqual(len(writes), 2)
        self.assertTrue(writes[0].startswith(b"250-link=l0 "))
        self.assertTrue(writes[0].endswith(b"\n250 OK\n"))
        self.assertEqual(writes[0].count(b"\n"), 4)
        self.assertEqual(writes[1], b"650 OFFER o1 from=bob@x/y\n")

    def test_quitBehindProbeWaits(self):
        self.send(b"PROBE a@x\nQUIT\n")
        self.assertFalse(self.transport.disconnecting)
        self.backend.probes[0].callback([])
        self.assertEqual(self.output(), b"250 OK\n250 closing\n")
        self.assertTrue(self.transport.disconnecting)


class RoutingTests(ProtocolTestCase):
    def test_ownLinksOnly(self):
        other, otherTransport = self.connect()
        self.command("OPEN bob@example.org")
        self.assertEqual(self.output(otherTransport), b"")
        self.backend.emit(linkEvent("l1", "GOOD", ("method", "ibb")))
        self.backend.emit(linkEvent("zz", "GOOD"))
        self.assertEqual(self.output(), b"650 LINK l1 GOOD method=ibb\n")
        self.assertEqual(self.output(otherTransport), b"")

    def test_acceptedLinks(self):
        self.command("ACCEPT o3")
        self.backend.emit(linkEvent("o3", "GOOD"))
        self.assertEqual(self.output(), b"650 LINK o3 GOOD\n")

    def test_offersOnlyToWatchers(self):
        offer = Event("OFFER", ("o1",), (("from", "bob@example.org/x"), ("service", "ssh")),
                      linkId="o1")
        self.backend.emit(offer)
        self.assertEqual(self.output(), b"")
        self.command("WATCH")
        self.backend.emit(offer)
        self.assertEqual(self.output(), b"650 OFFER o1 from=bob@example.org/x service=ssh\n")
        self.backend.emit(linkEvent("zz", "INIT"))
        self.assertEqual(self.output(), b"650 LINK zz INIT\n")
        self.command("UNWATCH")
        self.backend.emit(offer)
        self.backend.emit(linkEvent("zz", "GOOD"))
        self.assertEqual(self.output(), b"")

    def test_broadcastToEveryone(self):
        other, otherTransport = self.connect()
        self.backend.emit(Event("SERVER", ("connected",), broadcast=True))
        self.assertEqual(self.output(), b"650 SERVER connected\n")
        self.assertEqual(self.output(otherTransport), b"650 SERVER connected\n")

    def test_finalEventForgetsLink(self):
        self.command("OPEN bob@example.org")
        self.backend.emit(linkEvent("l1", "BAD", ("reason", "s5b: no candidate"), ))
        self.backend.emit(linkEvent("l1", "BAD", ("reason", "ibb: timeout"), ("final", "yes")))
        self.backend.emit(linkEvent("l1", "INIT"))
        self.assertEqual(self.output(),
                         b'650 LINK l1 BAD reason="s5b: no candidate"\n'
                         b'650 LINK l1 BAD reason="ibb: timeout" final=yes\n')
        self.command("OPEN bob@example.org")
        self.backend.emit(linkEvent("l2", "CLOS"))
        self.backend.emit(linkEvent("l2", "GOOD"))
        self.assertEqual(self.output(), b"650 LINK l2 CLOS\n")

    def test_failedOpenOwnsNothing(self):
        self.backend.raiseOnOpen = PeerError("refused")
        self.command("OPEN bob@example.org")
        self.backend.emit(linkEvent("l1", "GOOD"))
        self.assertEqual(self.output(), b"")

    def test_replyParsesBack(self):
        out = self.command('OPEN bob@example.org')
        code, sep, text = parseReplyLine(out.split(b"\n")[0].decode())
        self.assertEqual((code, sep), (250, " "))
        self.assertEqual(parseArguments(text)[1],
                         {"link": "l1", "socket": "/run/bytestreamd/links/l1"})


class SlowReaderTests(SynchronousTestCase):
    """A client that stops reading is dropped, not buffered for forever."""

    def setUp(self):
        from bytestreamd.events import Event
        self.proto = ControlFactory(FakeBackend()).buildProtocol(None)
        self.transport = StringTransport()
        self.aborted = []
        self.transport.abortConnection = lambda: self.aborted.append(True)
        self.proto.makeConnection(self.transport)
        self.event = Event("SERVER", ("connected",), (("reason", "x" * 1000),),
                           broadcast=True)

    def test_backlogBoundDropsTheConnection(self):
        from bytestreamd.control.protocol import MAX_BACKLOG
        self.proto.dataReceived(b"WATCH\n")
        self.transport.producer.pauseProducing()       # the client's socket is full
        for _ in range(MAX_BACKLOG // 1000 + 2):
            if self.aborted:
                break
            self.proto.eventReceived(self.event)
        self.assertEqual(self.aborted, [True])

    def test_resumedClientIsKept(self):
        from bytestreamd.control.protocol import MAX_BACKLOG
        for _ in range(3):
            self.transport.producer.pauseProducing()
            for _ in range(MAX_BACKLOG // 2000):
                self.proto.eventReceived(self.event)
            self.transport.producer.resumeProducing()  # it read everything
        self.assertEqual(self.aborted, [])
