from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.xmpp.presence import PeerPresence
from tests.helpers import ConnectionHarness


class PeerPresenceTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()
        self.gone = []
        self.presence = PeerPresence(self.gone.append)
        self.h.addHandler(self.presence)

    def test_announceSendsDirectedPresenceOnce(self):
        self.presence.announce(JID("bob@example.org/daemon"))
        self.presence.announce(JID("bob@example.org/daemon"))
        sent = [e for e in self.h.sent if e.name == "presence"]
        self.assertEqual([e["to"] for e in sent], ["bob@example.org/daemon"])
        self.assertFalse(sent[0].hasAttribute("type"))

    def test_unavailableFromFullJIDIsReported(self):
        self.h.receive("<presence type='unavailable' from='bob@example.org/daemon'/>")
        self.h.receive("<presence type='unavailable' from='bob@example.org'/>")
        self.h.receive("<presence from='bob@example.org/other'/>")
        self.assertEqual(self.gone, [JID("bob@example.org/daemon")])

    def test_announcedAgainAfterThePeerCameBack(self):
        peer = JID("bob@example.org/daemon")
        self.presence.announce(peer)
        self.h.receive("<presence type='unavailable' from='bob@example.org/daemon'/>")
        self.presence.announce(peer)
        self.assertEqual(len([e for e in self.h.sent if e.name == "presence"]), 2)
