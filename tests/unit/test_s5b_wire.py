"""
XEP-0065 codecs against the XEP's own examples (compared as parsed XML).
"""

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.ns import NS_S5B
from bytestreamd.wire.s5b import (
    DEFAULT_PORT,
    Activate,
    AddressAnswer,
    AddressRequest,
    MalformedS5B,
    Query,
    StreamHost,
    StreamHostUsed,
    dstAddr,
)
from tests.helpers import parseXml


def _query(iqXml):
    return parseXml(iqXml).query


def _canon(element):
    """A comparable form: (uri, name, sorted attributes, text, children)."""
    attrs = tuple(sorted((k if isinstance(k, str) else k[1], v)
                         for k, v in element.attributes.items()))
    text = "".join(str(c) for c in element.children if isinstance(c, str)).strip()
    kids = tuple(_canon(c) for c in element.elements())
    return (element.uri, element.name, attrs, text, kids)


# Example 14 (direct) of XEP-0065.
DIRECT_INITIATION = """
<iq from='requester@example.com/foo' id='hu3vax16' to='target@example.org/bar' type='set'>
  <query xmlns='http://jabber.org/protocol/bytestreams' sid='vxf9n471bn46'>
    <streamhost jid='requester@example.com/foo' host='192.168.4.1' port='5086'/>
  </query>
</iq>"""

# Example 19 (target notifies requester).
STREAMHOST_USED = """
<iq from='target@example.org/bar' id='hu3vax16' to='requester@example.com/foo' type='result'>
  <query xmlns='http://jabber.org/protocol/bytestreams' sid='vxf9n471bn46'>
    <streamhost-used jid='requester@example.com/foo'/>
  </query>
</iq>"""

# Example 24 (activation).
ACTIVATE = """
<iq from='requester@example.com/foo' id='oqx6t1c9' to='streamer.example.com' type='set'>
  <query xmlns='http://jabber.org/protocol/bytestreams' sid='vxf9n471bn46'>
    <activate>target@example.org/bar</activate>
  </query>
</iq>"""

# Examples 7 and 8 (proxy address).
ADDRESS_REQUEST = """
<iq from='requester@example.com/foo' id='uj2c15z9' to='streamer.example.com' type='get'>
  <query xmlns='http://jabber.org/protocol/bytestreams'/>
</iq>"""

ADDRESS_ANSWER = """
<iq from='streamer.example.com' id='uj2c15z9' to='requester@example.com/foo' type='result'>
  <query xmlns='http://jabber.org/protocol/bytestreams'>
    <streamhost host='24.24.24.1' jid='streamer.example.com' port='7625'/>
  </query>
</iq>"""

# Example 26 (MUC, with dstaddr).
MUC_INITIATION = """
<iq from='requester@example.com/foo' id='npq71g53' to='room@conference.example.net/Tget' type='set'>
  <query xmlns='http://jabber.org/protocol/bytestreams'
         dstaddr='416781edf1ae50bad01cb8509ba35b43952bc345' sid='yia72g3v49j7'>
    <streamhost host='24.24.24.1' jid='streamer.example.com' port='7625'/>
  </query>
</iq>"""


class DstAddrTests(SynchronousTestCase):
    def test_xepMucExample(self):
        # The only hash value the XEP states, with the room JID as target.
        self.assertEqual(
            dstAddr("yia72g3v49j7", JID("requester@example.com/foo"),
                    JID("room@conference.example.net/Tget")),
            "416781edf1ae50bad01cb8509ba35b43952bc345")

    def test_orderMatters(self):
        a, b = JID("a@x/1"), JID("b@x/2")
        self.assertNotEqual(dstAddr("s", a, b), dstAddr("s", b, a))

    def test_stringprepApplied(self):
        # JID() case-folds the node and domain (RFC 6122), as the XEP requires.
        self.assertEqual(dstAddr("s", JID("Alice@Example.ORG/R"), JID("b@x/2")),
                         dstAddr("s", JID("alice@example.org/R"), JID("b@x/2")))

    def test_format(self):
        value = dstAddr("s", JID("a@x/1"), JID("b@x/2"))
        self.assertEqual(len(value), 40)
        self.assertEqual(value, value.lower())
        int(value, 16)


class QueryTests(SynchronousTestCase):
    def test_parseDirectExample(self):
        q = Query.fromElement(_query(DIRECT_INITIATION))
        self.assertEqual(q.sid, "vxf9n471bn46")
        self.assertEqual(q.mode, "tcp")
        self.assertIsNone(q.dstaddr)
        self.assertEqual(q.streamhosts, [
            StreamHost(JID("requester@example.com/foo"), "192.168.4.1", 5086)])

    def test_roundTripDirectExample(self):
        q = Query(sid="vxf9n471bn46", mode="tcp", streamhosts=[
            StreamHost(JID("requester@example.com/foo"), "192.168.4.1", 5086)])
        expected = _query(DIRECT_INITIATION)
        expected["mode"] = "tcp"  # we always state the mode
        self.assertEqual(_canon(q.toElement()), _canon(expected))
        self.assertEqual(Query.fromElement(q.toElement()), q)

    def test_mucDstaddr(self):
        q = Query.fromElement(_query(MUC_INITIATION))
        self.assertEqual(q.dstaddr, "416781edf1ae50bad01cb8509ba35b43952bc345")
        self.assertEqual(q.streamhosts[0].jid, JID("streamer.example.com"))
        self.assertEqual(Query.fromElement(q.toElement()), q)

    def test_orderKept(self):
        hosts = [StreamHost(JID("a@x/r"), "10.0.0.%d" % i, 1000 + i) for i in range(5)]
        q = Query.fromElement(Query(sid="s", streamhosts=hosts).toElement())
        self.assertEqual(q.streamhosts, hosts)

    def test_udpMode(self):
        el = _query(DIRECT_INITIATION)
        el["mode"] = "udp"
        self.assertEqual(Query.fromElement(el).mode, "udp")

    def test_defaultPort(self):
        el = parseXml("<query xmlns='%s' sid='s'><streamhost jid='p.x' host='h'/></query>"
                      % NS_S5B)
        self.assertEqual(Query.fromElement(el).streamhosts[0].port, DEFAULT_PORT)

    def assertMalformed(self, xml):
        self.assertRaises(MalformedS5B, Query.fromElement, parseXml(xml))

    def test_malformed(self):
        ns = NS_S5B
        self.assertMalformed("<query xmlns='%s'><streamhost jid='a@x' host='h' port='1'/></query>" % ns)
        self.assertMalformed("<query xmlns='%s' sid='s'/>" % ns)
        self.assertMalformed("<query xmlns='%s' sid='s' mode='sctp'>"
                             "<streamhost jid='a@x' host='h' port='1'/></query>" % ns)
        self.assertMalformed("<query xmlns='%s' sid='s'><streamhost host='h' port='1'/></query>" % ns)
        self.assertMalformed("<query xmlns='%s' sid='s'><streamhost jid='a@x' port='1'/></query>" % ns)
        self.assertMalformed("<query xmlns='%s' sid='s'><streamhost jid='@@' host='h' port='1'/></query>" % ns)
        for port in ("0", "65536", "-1", "+5", " 5", "1_0", "abc", "", "99999999"):
            self.assertMalformed("<query xmlns='%s' sid='s'><streamhost jid='a@x' host='h' port='%s'/>"
                                 "</query>" % (ns, port))
        self.assertMalformed("<query xmlns='urn:other' sid='s'>"
                             "<streamhost jid='a@x' host='h' port='1'/></query>")


class OtherElementTests(SynchronousTestCase):
    def test_streamHostUsedExample(self):
        used = StreamHostUsed.fromElement(_query(STREAMHOST_USED))
        self.assertEqual(used, StreamHostUsed(JID("requester@example.com/foo"), "vxf9n471bn46"))
        self.assertEqual(_canon(used.toElement()), _canon(_query(STREAMHOST_USED)))

    def test_streamHostUsedMalformed(self):
        self.assertRaises(MalformedS5B, StreamHostUsed.fromElement,
                          parseXml("<query xmlns='%s' sid='s'/>" % NS_S5B))
        self.assertRaises(MalformedS5B, StreamHostUsed.fromElement,
                          parseXml("<query xmlns='%s'><streamhost-used/></query>" % NS_S5B))
        self.assertRaises(MalformedS5B, StreamHostUsed.fromElement, parseXml(
            "<query xmlns='%s'><streamhost-used jid='a@x'/><streamhost-used jid='b@x'/></query>"
            % NS_S5B))

    def test_activateExample(self):
        act = Activate.fromElement(_query(ACTIVATE))
        self.assertEqual(act, Activate("vxf9n471bn46", JID("target@example.org/bar")))
        self.assertEqual(_canon(act.toElement()), _canon(_query(ACTIVATE)))

    def test_activateMalformed(self):
        self.assertRaises(MalformedS5B, Activate.fromElement,
                          parseXml("<query xmlns='%s' sid='s'><activate/></query>" % NS_S5B))
        self.assertRaises(MalformedS5B, Activate.fromElement,
                          parseXml("<query xmlns='%s'><activate>a@x</activate></query>" % NS_S5B))

    def test_addressRequestExample(self):
        self.assertEqual(_canon(AddressRequest().toElement()), _canon(_query(ADDRESS_REQUEST)))
        self.assertEqual(AddressRequest.fromElement(_query(ADDRESS_REQUEST)), AddressRequest())

    def test_addressAnswerExample(self):
        answer = AddressAnswer.fromElement(_query(ADDRESS_ANSWER))
        self.assertEqual(answer.streamhosts,
                         [StreamHost(JID("streamer.example.com"), "24.24.24.1", 7625)])
        self.assertEqual(_canon(answer.toElement()), _canon(_query(ADDRESS_ANSWER)))
        self.assertRaises(MalformedS5B, AddressAnswer.fromElement,
                          parseXml("<query xmlns='%s'/>" % NS_S5B))

    def test_describe(self):
        self.assertEqual(StreamHost(JID("p.x"), "::1", 7).describe(), "p.x ([::1]:7)")
        self.assertEqual(StreamHost(JID("p.x"), "h.x", 7).describe(), "p.x (h.x:7)")
