"""
XEP-0047 codecs against the XEP's own examples, strict base64, and the
raw-string serialisers of the data path.
"""

import base64

from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.ns import NS_IBB
from bytestreamd.wire import ibb
from tests.helpers import parseXml

# Examples 1, 8 (sending data in an IQ), 10 (close) and 13 (message) of
# XEP-0047, verbatim.
EXAMPLE_OPEN = """
<iq from='romeo@montague.net/orchard'
    id='jn3h8g65'
    to='juliet@capulet.com/balcony'
    type='set'>
  <open xmlns='http://jabber.org/protocol/ibb'
        block-size='4096'
        sid='i781hf64'
        stanza='iq'/>
</iq>"""

EXAMPLE_PAYLOAD = """
    qANQR1DBwU4DX7jmYZnncmUQB/9KuKBddzQH+tZ1ZywKK0yHKnq57kWq+RFtQdCJ
    WpdWpR0uQsuJe7+vh3NWn59/gTc5MDlX8dS9p0ovStmNcyLhxVgmqS8ZKhsblVeu
    IpQ0JgavABqibJolc3BKrVtVV1igKiX/N7Pi8RtY1K18toaMDhdEfhBRzO/XB0+P
    AQhYlRjNacGcslkhXqNjK5Va4tuOAPy2n1Q8UUrHbUd0g+xJ9Bm0G0LZXyvCWyKH
    kuNEHFQiLuCY6Iv0myq6iX6tjuHehZlFSh80b5BVV9tNLwNR5Eqz1klxMhoghJOA
  """

EXAMPLE_DATA_IQ = """
<iq from='romeo@montague.net/orchard'
    id='kr91n475'
    to='juliet@capulet.com/balcony'
    type='set'>
  <data xmlns='http://jabber.org/protocol/ibb' seq='0' sid='i781hf64'>%s</data>
</iq>""" % EXAMPLE_PAYLOAD

EXAMPLE_DATA_MESSAGE = """
<message from='romeo@montague.net/orchard'
         id='dsw71gj3'
         to='juliet@capulet.com/balcony'>
  <data xmlns='http://jabber.org/protocol/ibb' seq='0' sid='i781hf64'>%s</data>
</message>""" % EXAMPLE_PAYLOAD

EXAMPLE_CLOSE = """
<iq from='romeo@montague.net/orchard'
    id='us71g45j'
    to='juliet@capulet.com/balcony'
    type='set'>
  <close xmlns='http://jabber.org/protocol/ibb' sid='i781hf64'/>
</iq>"""

PAYLOAD_BYTES = base64.b64decode("".join(EXAMPLE_PAYLOAD.split()))


def child(stanza, name):
    return [c for c in stanza.elements(NS_IBB, name)][0]


def element(xml, name="x"):
    return parseXml("<%s xmlns='%s' %s" % (name, NS_IBB, xml))


class ExampleTests(SynchronousTestCase):
    def test_openExample(self):
        parsed = ibb.Open.fromElement(child(parseXml(EXAMPLE_OPEN), "open"))
        self.assertEqual(parsed, ibb.Open("i781hf64", 4096, "iq"))

    def test_openRoundTrip(self):
        original = child(parseXml(EXAMPLE_OPEN), "open")
        produced = parseXml(ibb.Open("i781hf64", 4096, "iq").toElement().toXml())
        self.assertEqual((produced.uri, produced.name), (original.uri, original.name))
        self.assertEqual(produced.attributes, original.attributes)

    def test_openDefaultsToIQ(self):
        parsed = ibb.Open.fromElement(
            parseXml("<open xmlns='%s' sid='a' block-size='1'/>" % NS_IBB))
        self.assertEqual(parsed.stanza, "iq")

    def test_dataExample(self):
        parsed = ibb.Data.fromElement(child(parseXml(EXAMPLE_DATA_IQ), "data"))
        self.assertEqual(parsed.sid, "i781hf64")
        self.assertEqual(parsed.seq, 0)
        self.assertEqual(parsed.payload, PAYLOAD_BYTES)
        self.assertEqual(len(parsed.payload), 240)

    def test_dataMessageExample(self):
        parsed = ibb.Data.fromElement(child(parseXml(EXAMPLE_DATA_MESSAGE), "data"))
        self.assertEqual(parsed, ibb.Data("i781hf64", 0, PAYLOAD_BYTES))

    def test_dataRoundTrip(self):
        produced = parseXml(ibb.Data("i781hf64", 0, PAYLOAD_BYTES).toElement().toXml())
        original = child(parseXml(EXAMPLE_DATA_IQ), "data")
        self.assertEqual(produced.attributes, original.attributes)
        self.assertEqual(ibb.Data.fromElement(produced).payload, PAYLOAD_BYTES)

    def test_closeExample(self):
        parsed = ibb.Close.fromElement(child(parseXml(EXAMPLE_CLOSE), "close"))
        self.assertEqual(parsed, ibb.Close("i781hf64"))
        produced = parseXml(parsed.toElement().toXml())
        self.assertEqual(produced.attributes, {"sid": "i781hf64"})
        self.assertEqual(produced.uri, NS_IBB)


class OpenValidationTests(SynchronousTestCase):
    def parse(self, attrs):
        return ibb.Open.fromElement(parseXml("<open xmlns='%s' %s/>" % (NS_IBB, attrs)))

    def test_bad(self):
        for attrs in ["block-size='4096'",                       # no sid
                      "sid='' block-size='4096'",
                      "sid='a b' block-size='4096'",               # not an NMTOKEN
                      "sid='a'",                                   # no block-size
                      "sid='a' block-size='0'",
                      "sid='a' block-size='-1'",
                      "sid='a' block-size='+5'",
                      "sid='a' block-size='4k'",
                      "sid='a' block-size='4096' stanza='presence'"]:
            self.assertRaises(ibb.MalformedIBB, self.parse, attrs)

    def test_largeBlockSizeParsed(self):
        # Left to the handler, which answers resource-constraint.
        self.assertEqual(self.parse("sid='a' block-size='100000'").blockSize, 100000)

    def test_wrongElement(self):
        self.assertRaises(ibb.MalformedIBB, ibb.Open.fromElement,
                          parseXml("<close xmlns='%s' sid='a'/>" % NS_IBB))
        self.assertRaises(ibb.MalformedIBB, ibb.Open.fromElement,
                          parseXml("<open xmlns='urn:other' sid='a' block-size='1'/>"))

    def test_toElementRefusesOutOfRange(self):
        self.assertRaises(ValueError, ibb.Open("a", 65536).toElement)
        self.assertRaises(ValueError, ibb.Open("a", 0).toElement)
        self.assertRaises(ValueError, ibb.Open("a", 10, "presence").toElement)

    def test_malformedIsValueError(self):
        self.assertTrue(issubclass(ibb.MalformedIBB, ValueError))
        self.assertEqual(ibb.MalformedIBB.condition, "bad-request")


class DataValidationTests(SynchronousTestCase):
    def parse(self, attrs, text="QUFB"):
        return ibb.Data.fromElement(
            parseXml("<data xmlns='%s' %s>%s</data>" % (NS_IBB, attrs, text)))

    def test_seq(self):
        self.assertEqual(self.parse("sid='a' seq='65535'").seq, 65535)
        self.assertEqual(self.parse("sid='a' seq='00007'").seq, 7)
        for seq in ["", "-1", "65536", "1.0", "x", "+1", " 1", "\u0661"]:
            self.assertRaises(ibb.MalformedIBB, self.parse, "sid='a' seq='%s'" % seq)
        self.assertRaises(ibb.MalformedIBB, self.parse, "sid='a'")

    def test_childElementRefused(self):
        self.assertRaises(ibb.MalformedIBB, self.parse, "sid='a' seq='0'", "QUFB<x/>")

    def test_emptyPayload(self):
        self.assertEqual(self.parse("sid='a' seq='0'", "").payload, b"")


class Base64Tests(SynchronousTestCase):
    """XEP-0047 section 8: verify, reject (never ignore), no inner padding."""

    def test_valid(self):
        self.assertEqual(ibb.decodeBase64("QUFB"), b"AAA")
        self.assertEqual(ibb.decodeBase64("QQ=="), b"A")
        self.assertEqual(ibb.decodeBase64("QUE="), b"AA")
        self.assertEqual(ibb.decodeBase64(""), b"")
        self.assertEqual(ibb.decodeBase64("+/+/"), b"\xfb\xff\xbf")

    def test_xmlWhitespaceIsFormatting(self):
        self.assertEqual(ibb.decodeBase64(" QU\r\n FB\t"), b"AAA")
        self.assertEqual(ibb.decodeBase64(EXAMPLE_PAYLOAD), PAYLOAD_BYTES)

    def test_rejected(self):
        for text in ["=AAA", "BBBB=CCC", "QQ==QUFB", "QQ=", "QQ", "Q", "Q===",
                     "QQ===", "QU*B", "QU-B", "QU_B", "QUFB\x00", "QUFB\u00e9",
                     "QUFB\u00a0", "QU.B", "QUFB\x0b", "QUFB\x0c"]:
            self.assertRaises(ibb.MalformedIBB, ibb.decodeBase64, text)

    def test_encode(self):
        self.assertEqual(ibb.encodeBase64(b"A"), "QQ==")
        self.assertEqual(ibb.encodeBase64(bytes(range(256)) * 3),
                         base64.b64encode(bytes(range(256)) * 3).decode())


class RawSerialiserTests(SynchronousTestCase):
    def test_dataIQ(self):
        raw = ibb.dataIQ("juliet@capulet.com/balcony", "romeo@montague.net/orchard",
                         "kr91n475", "i781hf64", 0, PAYLOAD_BYTES)
        self.assertIsInstance(raw, str)
        produced = parseXml(raw)
        original = parseXml(EXAMPLE_DATA_IQ)
        self.assertEqual(produced.attributes, original.attributes)
        self.assertEqual(produced.uri, "jabber:client")
        self.assertEqual(ibb.Data.fromElement(child(produced, "data")),
                         ibb.Data.fromElement(child(original, "data")))

    def test_dataMessage(self):
        raw = ibb.dataMessage("juliet@capulet.com/balcony", "romeo@montague.net/orchard",
                              "dsw71gj3", "i781hf64", 0, PAYLOAD_BYTES)
        produced = parseXml(raw)
        original = parseXml(EXAMPLE_DATA_MESSAGE)
        self.assertEqual(produced.name, "message")
        self.assertEqual(produced.attributes, original.attributes)
        self.assertEqual(ibb.Data.fromElement(child(produced, "data")),
                         ibb.Data.fromElement(child(original, "data")))

    def test_noFrom(self):
        produced = parseXml(ibb.dataIQ("a@b/c", None, "1", "s", 65535, b"x"))
        self.assertEqual(produced.getAttribute("from"), None)
        self.assertEqual(child(produced, "data")["seq"], "65535")

    def test_escaping(self):
        produced = parseXml(ibb.dataIQ("a'\"<&>@b/c", None, "i'd&", "s", 1, b""))
        self.assertEqual(produced["to"], "a'\"<&>@b/c")
        self.assertEqual(produced["id"], "i'd&")

    def test_ack(self):
        produced = parseXml(ibb.ackIQ("romeo@montague.net/orchard", "kr91n475"))
        self.assertEqual(produced.attributes, {
            "type": "result", "to": "romeo@montague.net/orchard", "id": "kr91n475"})
        self.assertEqual(list(produced.elements()), [])

    def test_writerMatchesFunctions(self):
        writer = ibb.DataWriter("a@b/c", None, "s")
        self.assertEqual(writer.iq("1", 2, b"xyz"), ibb.dataIQ("a@b/c", None, "1", "s", 2, b"xyz"))
        self.assertEqual(writer.message("1", 2, b"xyz"),
                         ibb.dataMessage("a@b/c", None, "1", "s", 2, b"xyz"))
