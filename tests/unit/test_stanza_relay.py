"""
The e2e=xmpp end (bytestreamd.local.stanzas.StanzaRelay) with a fake
secured stream and StringTransport local clients: the framing both ways,
held stanzas, each refusal of the local program's input, and the end.
"""

from __future__ import annotations

import bytestreamd.links  # noqa: F401  (import order)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish

from bytestreamd.e2e.stream import E2EStream, INITIATOR
from bytestreamd.local.splice import LinkClosed
from bytestreamd.local.stanzas import StanzaRelay
from bytestreamd.errors import BytestreamBroken


class FakeSecured:
    """What StanzaRelay uses of a SecuredStream in xmpp mode."""

    def __init__(self):
        self.sent, self.closed, self.aborted, self.paused = [], 0, False, False
        self.onStanza = self.onStreamEnd = None
        # a real machine, only for its sendStanza checks
        self.machine = E2EStream(INITIATOR, "alice@example.org/d", "bob@example.org/d")
        self.machine._state = "xmpp"

    def sendStanza(self, element):
        self.machine.sendStanza(element)  # raises BadStanza
        self.sent.append(element.toXml())

    def closeStream(self):
        self.closed += 1

    def abortConnection(self):
        self.aborted = True

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False


class Local:
    def __init__(self):
        self.transport = StringTransport()


def stanza(xml: str) -> domish.Element:
    from tests.helpers import parseXml
    return parseXml(xml)


def setup():
    ended = []
    relay = StanzaRelay(ended.append, clock=Clock())
    stream = FakeSecured()
    local = Local()
    return relay, stream, local, ended


def test_both_ways_and_clean_end():
    relay, stream, local, ended = setup()
    relay.fromLocal(b"<message to='bob@example.org'><body>early</body></message>")
    relay.streamReady(stream)
    assert len(stream.sent) == 1 and "early" in stream.sent[0]
    # from the peer before the local program is there: held, then written
    stream.onStanza(stanza("<message xmlns='jabber:client' from='bob@example.org/d'>"
                           "<body>hi</body></message>"))
    relay.localConnected(local)
    assert local.transport.value() == (b"<message xmlns='jabber:client' "
                                       b"from='bob@example.org/d'><body>hi</body></message>")
    relay.fromLocal(b"  <iq type='get' id='1'/>\n")
    assert "<iq" in stream.sent[-1]
    relay.localEOF()
    assert stream.closed == 1
    stream.onStreamEnd(None)
    assert ended and ended[0].check(LinkClosed) and ended[0].value.confirmed
    assert local.transport.disconnecting


def test_local_program_input_refused():
    for bad, words in ((b"<message><body>x</message>", "malformed XML"),
                       (b"<foo/>", "not a stanza"),
                       (b"<message from='eve@example.org/x'/>", "not this daemon's JID"),
                       (b"<?xml version='1.0'?><message/>", "malformed XML"),
                       (b"<message>" + b"x" * (1024 * 1024 + 1), "over")):
        relay, stream, local, ended = setup()
        relay.streamReady(stream)
        relay.localConnected(local)
        relay.fromLocal(bad)
        assert stream.sent == [], bad
        assert ended and ended[0].check(BytestreamBroken), bad
        assert words in ended[0].value.reason, (bad, ended[0].value.reason)
        assert stream.closed == 1


def test_stream_failure_is_err_and_peer_gone_aborts():
    relay, stream, local, ended = setup()
    relay.streamReady(stream)
    relay.localConnected(local)
    stream.onStreamEnd("the peer sent a <message/> from='eve@example.org', not from "
                       "the negotiated bob@example.org")
    assert ended[0].check(BytestreamBroken) and "eve@example.org" in ended[0].value.reason
    assert local.transport.disconnected or local.transport.disconnecting
    relay2, stream2, _, ended2 = setup()
    relay2.streamReady(stream2)
    relay2.peerGone("peer went offline")
    assert stream2.aborted and ended2[0].check(BytestreamBroken)


def test_close_without_answer_times_out():
    ended = []
    clock = Clock()
    relay = StanzaRelay(ended.append, clock=clock, closeTimeout=5)
    stream = FakeSecured()
    relay.streamReady(stream)
    relay.requestClose()
    assert stream.closed == 1 and not ended
    clock.advance(5)
    assert stream.aborted and "did not answer" in ended[0].value.reason


def test_backpressure_when_nobody_reads():
    relay, stream, local, ended = setup()
    relay.streamReady(stream)
    for i in range(64):
        stream.onStanza(stanza("<message xmlns='jabber:client'><body>%d</body></message>" % i))
    assert stream.paused
    relay.localConnected(local)
    assert not stream.paused and local.transport.value().count(b"<message") == 64
