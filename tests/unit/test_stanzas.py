from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.errors import NotConnected
from bytestreamd.stanzas import RequestTimeout, makeIQ
from tests.helpers import ConnectionHarness


class ConnectionTests(SynchronousTestCase):
    def setUp(self):
        self.h = ConnectionHarness()

    def test_requestResult(self):
        iq = makeIQ("get", JID("bob@example.org/x"))
        d = self.h.connection.request(iq)
        self.assertEqual(self.h.sent[-1]["id"], iq["id"])
        self.h.receive("<iq type='result' id='%s' from='bob@example.org/x'/>" % iq["id"])
        self.assertEqual(self.successResultOf(d)["type"], "result")

    def test_requestError(self):
        iq = makeIQ("get", JID("bob@example.org/x"))
        d = self.h.connection.request(iq)
        self.h.receive(
            "<iq type='error' id='%s' from='bob@example.org/x'><error type='cancel'>"
            "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            % iq["id"])
        self.assertEqual(self.failureResultOf(d, StanzaError).value.condition, "forbidden")

    def test_requestTimeout(self):
        d = self.h.connection.request(makeIQ("get", JID("b@x")), timeout=5)
        self.h.clock.advance(4.9)
        self.assertNoResult(d)
        self.h.clock.advance(0.2)
        self.failureResultOf(d, RequestTimeout)

    def test_disconnectFailsPendingAndSendRaises(self):
        d = self.h.connection.request(makeIQ("get", JID("b@x")))
        self.h.disconnect()
        self.failureResultOf(d)
        self.assertRaises(NotConnected, self.h.connection.send, "<presence/>")
        self.failureResultOf(self.h.connection.request(makeIQ("get", JID("b@x"))), NotConnected)
        self.assertEqual(self.h.connection._packetQueue, [])
