"""
The CLOSE race (issue 6, "every state bounded"): a peer's end that arrives
before -- or without -- this side's local client.

The lifecycle asks the splice to wait until the local client has read all
it was handed (AwaitDrain) before it sends its own ``<end status=done/>``.
With no local client yet, the splice used to wait for ``localLost`` -- which
never comes for a client that never connected -- and nothing looked again
when one connected: the link hung until the settle timer (``peer_timeout``,
60 s by default), and the closing peer said "the peer did not confirm the
end".  A link that never had a local client handed nobody anything: it is
drained.
"""

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.links import lifecycle as lc  # noqa: F401  (import order: links first)
from bytestreamd.local.sockets import LinkClosed, LinkSocketFactory
from bytestreamd.local.splice import Splice
from twisted.internet.testing import StringTransport

from tests.unit.fakes import FakeStream


class Channel:
    """The end-confirmation channel, recording what the splice says."""

    def __init__(self):
        self.eofs = []
        self.ends = []

    def sendEOF(self, sent):
        self.eofs.append(sent)

    def sendEnd(self, end):
        self.ends.append(end)

    def sendFlush(self, received):
        pass


class PeerEndsFirstTests(SynchronousTestCase):
    """The peer CLOSEd; its eof and end reach us; our local client is late or absent."""

    def setUp(self):
        self.clock = task.Clock()
        self.ended = []
        self.splice = Splice(1024, self.ended.append, clock=self.clock,
                             settleTimeout=60.0)
        self.channel = Channel()
        self.stream = FakeStream()

    def good(self, halfClose=True):
        lifecycle = lc.LinkLifecycle(True, 60.0, halfClose=halfClose, checksDrain=True)
        self.splice.streamReady(self.stream, lifecycle, self.channel)
        return lifecycle

    def peerCloses(self):
        self.splice.peerEOF(0)
        self.splice.peerEnded(lc.SendEnd(0, 0, lc.CLOSED, "closed by request"))

    def connectLocal(self):
        local = LinkSocketFactory("abc", self.splice).buildProtocol(None)
        transport = StringTransport()
        local.makeConnection(transport)
        return transport

    def assertClosedByPeerNow(self):
        self.assertEqual(len(self.ended), 1, "the link did not end at once")
        reason = self.ended[0]
        self.assertIsInstance(reason.value, LinkClosed)
        self.assertTrue(reason.value.confirmed)
        self.assertEqual(reason.value.reason, "closed by the peer")
        self.assertEqual([(e.sent, e.received, e.status) for e in self.channel.ends],
                         [(0, 0, lc.DONE)])

    def test_noLocalClientEndsAtOnce(self):
        for halfClose in (True, False):  # SOCKS5, IBB
            with self.subTest(halfClose=halfClose):
                self.setUp()
                self.good(halfClose)
                self.peerCloses()
                self.assertClosedByPeerNow()
                self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_localClientAfterThePeersEndIsClosed(self):
        self.good()
        self.peerCloses()
        self.assertClosedByPeerNow()
        transport = self.connectLocal()
        self.assertTrue(transport.disconnecting)

    def test_localClientBeforeThePeersEndDrainsFirst(self):
        # The normal order is unchanged: a connected client is polled.
        self.good()
        transport = self.connectLocal()
        self.peerCloses()
        self.assertClosedByPeerNow()
        self.assertTrue(transport.disconnecting)

    def test_localClientThatLeftIsNotTakenForDrained(self):
        # One that came and went is localLost's to report, not "drained".
        lifecycle = self.good()
        self.connectLocal()
        self.splice._closeLocal(abort=False)  # CloseLocal: we closed it
        lifecycle.awaitingDrain = True
        self.splice._checkDrained()
        self.assertFalse(lifecycle.drained)


class RequestedCloseUnconfirmedTests(SynchronousTestCase):
    """
    CLOSE, and the peer never answers our end (its session a black hole):
    the end IQ times out (peer_timeout) as the settle timer does.  Either
    way the link ends as asked -- CLOS, confirmed=no -- never ERR
    (docs/control-protocol.rst, CLOSE).
    """

    def test_refusedEndAfterCloseIsClosUnconfirmed(self):
        lifecycle = lc.LinkLifecycle(True, 60.0)
        lifecycle.requestClose()
        effects = lifecycle.peerRefusedEnd("no answer to iq x within 60s (end)")
        final = [e for e in effects if isinstance(e, lc.Finished)][0]
        self.assertEqual((final.state, final.confirmed), ("CLOS", False))
        self.assertIn("closed by local request", final.reason)
        self.assertIn("did not confirm", final.reason)
        self.assertIn(lc.AbortTransport(), effects)

    def test_peerGoneWhileClosingIsClosUnconfirmed(self):
        # The liveness probe says the peer no longer knows the session (or
        # went offline) while we wait for its end: closed as asked.
        lifecycle = lc.LinkLifecycle(True, 60.0)
        lifecycle.requestClose()
        effects = lifecycle.peerGone("peer x no longer knows link session s")
        final = [e for e in effects if isinstance(e, lc.Finished)][0]
        self.assertEqual((final.state, final.confirmed), ("CLOS", False))
        self.assertIn("no longer knows", final.reason)
        self.assertIn(lc.AbortTransport(), effects)

    def test_peerGoneWithoutCloseIsStillErr(self):
        lifecycle = lc.LinkLifecycle(True, 60.0)
        final = [e for e in lifecycle.peerGone("went offline")
                 if isinstance(e, lc.Finished)][0]
        self.assertEqual(final.state, "ERR")

    def test_refusedEndWithoutCloseIsStillErr(self):
        lifecycle = lc.LinkLifecycle(True, 60.0)
        effects = lifecycle.peerRefusedEnd("item-not-found")
        final = [e for e in effects if isinstance(e, lc.Finished)][0]
        self.assertEqual(final.state, "ERR")


class HeardEarlyTests(SynchronousTestCase):
    """
    A peer whose eof/end arrived before our link was GOOD speaks the end
    protocol, even when its disco answer never came (the link then opens a
    confirmed session and replays what it heard, instead of ignoring a
    peer's CLOSE until peer_timeout).
    """

    def test_heardEarly(self):
        from twisted.words.protocols.jabber.jid import JID
        from bytestreamd.links.confirm import EndChannel
        from bytestreamd.wire import end as wire

        channel = EndChannel()
        peer = JID("alice@example.test/daemon")
        channel.expect(peer, "s1")
        self.assertFalse(channel.heardEarly(peer, "s1"))
        channel._early[(peer.full(), "s1")].append(wire.EOF("s1", 0))
        self.assertTrue(channel.heardEarly(peer, "s1"))
        self.assertFalse(channel.heardEarly(peer, "s2"))
        channel.unexpect(peer, "s1")
        self.assertFalse(channel.heardEarly(peer, "s1"))
