from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.errors import NotConnected
from bytestreamd.xmpp.stanzas import RequestTimeout, makeIQ
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


# --- log_traffic never logs SASL payloads (issue 8, finding 6) ----------------

import base64  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.logger import Logger  # noqa: E402
from twisted.words.protocols.jabber import xmlstream  # noqa: E402
from twisted.words.xish import domish  # noqa: E402

from bytestreamd.xmpp import stanzas
from bytestreamd.xmpp.stanzas import Connection, SASLRedactor  # noqa: E402

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SECRET = base64.b64encode(b"\x00alice\x00hunter2-secret").decode()
EXCHANGE = (
    "<stream:features><mechanisms xmlns='%s'><mechanism>PLAIN</mechanism>"
    "</mechanisms></stream:features>"
    "<auth xmlns='%s' mechanism='PLAIN'>%s</auth>"
    "<challenge xmlns='%s'>%s</challenge><response xmlns='%s'>%s</response>"
    "<sasl:success xmlns:sasl='%s'>%s</sasl:success><success xmlns='%s'/>"
    "<iq type='result' id='x'/>"
    % (SASL, SASL, SECRET, SASL, SECRET, SASL, SECRET, SASL, SECRET, SASL))


def redactAll(chunks):
    r = SASLRedactor()
    return b"".join(r.feed(c) for c in chunks)


class SASLRedactorTests(SynchronousTestCase):
    def test_payloadsRedactedRestKept(self):
        out = redactAll([EXCHANGE.encode()]).decode()
        self.assertNotIn(SECRET, out)
        self.assertNotIn("hunter2", out)
        self.assertEqual(out.count("[redacted]"), 4)
        self.assertIn("<auth xmlns='%s' mechanism='PLAIN'>[redacted]</auth>" % SASL, out)
        self.assertIn("<success xmlns='%s'/><iq type='result' id='x'/>" % SASL, out)
        self.assertEqual(out, EXCHANGE.replace(SECRET, "[redacted]"))

    def test_everySplitPoint(self):
        data = EXCHANGE.encode()
        for cut in range(1, len(data)):
            out = redactAll([data[:cut], data[cut:]])
            self.assertNotIn(SECRET[4:12].encode(), out, cut)
            self.assertEqual(out.replace(b"[redacted]", b""),
                             data.replace(SECRET.encode(), b""), cut)

    def test_byteByByte(self):
        data = EXCHANGE.encode()
        out = redactAll([data[i:i + 1] for i in range(len(data))])
        self.assertNotIn(b"hunter", out)
        self.assertNotIn(SECRET[:3].encode() + b"<", out)
        for i in range(len(SECRET) - 2):
            self.assertNotIn(SECRET[i:i + 3].encode() + b"</", out)

    @settings(max_examples=200, deadline=None)
    @given(secret=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789+/=", min_size=8, max_size=80),
           cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
    def test_arbitraryChunking(self, secret, cuts):
        data = ("<iq/><response xmlns='%s'>%s</response><message/>" % (SASL, secret)).encode()
        points = sorted(set(c % (len(data) + 1) for c in cuts))
        chunks = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
        out = redactAll(chunks)
        self.assertNotIn(secret.encode(), out)
        self.assertEqual(out.replace(b"[redacted]", b""), data.replace(secret.encode(), b""))

    def test_longCutTagNotHeldForever(self):
        r = SASLRedactor()
        big = b"<message body='" + b"x" * 5000
        self.assertEqual(r.feed(big), big)


class TrafficLogTests(SynchronousTestCase):
    """The real XmlStream with logTraffic on: the password never reaches the log."""

    def setUp(self):
        self.events = []
        self.patch(stanzas, "log", Logger(observer=self.events.append))
        factory = xmlstream.XmlStreamFactory(xmlstream.Authenticator())
        self.connection = Connection(factory, None, JID("alice@example.org/daemon"))
        self.connection.logTraffic = True
        self.xs = xmlstream.XmlStream(xmlstream.Authenticator())
        self.xs.makeConnection(StringTransport())
        self.connection._connected(self.xs)

    def logged(self):
        return "".join(repr(e["data"]) for e in self.events)

    def test_authNeverLogged(self):
        auth = domish.Element((SASL, "auth"))
        auth["mechanism"] = "PLAIN"
        auth.addContent(SECRET)
        self.xs.send(auth)
        self.assertIn(SECRET.encode(), self.xs.transport.value())  # sent as is
        self.assertEqual(self.events[-1]["log_format"], "SEND: {data!r}")
        self.assertIn("mechanism='PLAIN'", self.logged())
        self.assertNotIn(SECRET, self.logged())

    def test_challengeAndSuccessNeverLogged(self):
        data = ("<stream:stream xmlns='jabber:client' "
                "xmlns:stream='http://etherx.jabber.org/streams' from='example.org' "
                "id='s1' version='1.0'><challenge xmlns='%s'>%s</challenge>"
                "<success xmlns='%s'>%s</success>" % (SASL, SECRET[:10], SASL, SECRET[10:]))
        half = len(data) // 2
        self.xs.dataReceived(data[:half].encode())
        self.xs.dataReceived(data[half:].encode())
        logged = self.logged()
        self.assertIn("RECV", "".join(e["log_format"] for e in self.events))
        self.assertNotIn(SECRET[:10], logged)
        self.assertNotIn(SECRET[10:], logged)
        self.assertIn("[redacted]", logged)

    def test_offMeansNothingLogged(self):
        connection = Connection(xmlstream.XmlStreamFactory(xmlstream.Authenticator()),
                                None, JID("alice@example.org/daemon"))
        xs = xmlstream.XmlStream(xmlstream.Authenticator())
        xs.transport = StringTransport()
        connection._connected(xs)
        xs.send("<presence/>")
        self.assertEqual(self.events, [])
        self.assertIsNone(xs.rawDataOutFn)
