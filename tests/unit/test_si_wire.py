"""
The SI codecs against the examples of XEP-0095, XEP-0096 and si-multiple,
compared as XML trees (namespace, name, attributes, children, text), not as
bytes.
"""

from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from bytestreamd import ns
from bytestreamd.wire import si
from tests.helpers import parseXml


def canonical(element):
    """A comparable tree: (uri, name, attributes, stripped text, children)."""
    attrs = tuple(sorted((k if isinstance(k, str) else "{%s}%s" % k, v)
                         for k, v in element.attributes.items()))
    text = "".join(str(c) for c in element.children if isinstance(c, str)).strip()
    children = tuple(canonical(c) for c in element.elements())
    return (element.uri, element.name, attrs, text, children)


def assertSameXml(test, actual, expected):
    test.assertEqual(canonical(parseXml(actual.toXml())), canonical(parseXml(expected)))


def siOf(xml):
    return next(parseXml(xml).elements(ns.NS_SI, "si"))


XEP95_OFFER = """
<iq type='set' id='offer1' to='receiver@jabber.org/resource'>
  <si xmlns='http://jabber.org/protocol/si'
      id='a0'
      mime-type='text/plain'
      profile='http://jabber.org/protocol/si/profile/file-transfer'>
    <file xmlns='http://jabber.org/protocol/si/profile/file-transfer'
          name='test.txt'
          size='1022'>
      <desc>This is info about the file.</desc>
    </file>
    <feature xmlns='http://jabber.org/protocol/feature-neg'>
      <x xmlns='jabber:x:data' type='form'>
        <field var='stream-method' type='list-single'>
          <option><value>http://jabber.org/protocol/bytestreams</value></option>
          <option><value>jabber:iq:oob</value></option>
          <option><value>http://jabber.org/protocol/ibb</value></option>
        </field>
      </x>
    </feature>
  </si>
</iq>"""

XEP95_ACCEPT = """
<iq type='result' to='sender@jabber.org/resource' id='offer1'>
  <si xmlns='http://jabber.org/protocol/si'>
    <feature xmlns='http://jabber.org/protocol/feature-neg'>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='stream-method'>
          <value>http://jabber.org/protocol/bytestreams</value>
        </field>
      </x>
    </feature>
  </si>
</iq>"""

XEP96_COMPLETE_OFFER = """
<iq type='set' id='offer1' to='receiver@jabber.org/resource'>
  <si xmlns='http://jabber.org/protocol/si'
      id='a0'
      mime-type='text/plain'
      profile='http://jabber.org/protocol/si/profile/file-transfer'>
    <file xmlns='http://jabber.org/protocol/si/profile/file-transfer'
          name='test.txt'
          size='1022'
          hash='552da749930852c69ae5d2141d3766b1'
          date='1969-07-21T02:56:15Z'>
      <desc>This is a test. If this were a real file...</desc>
    </file>
    <feature xmlns='http://jabber.org/protocol/feature-neg'>
      <x xmlns='jabber:x:data' type='form'>
        <field var='stream-method' type='list-single'>
          <option><value>http://jabber.org/protocol/bytestreams</value></option>
          <option><value>http://jabber.org/protocol/ibb</value></option>
        </field>
      </x>
    </feature>
  </si>
</iq>"""

# si-multiple, Example 1 (the tubes profile element dropped: not ours).
MULTIPLE_OFFER = """
<iq to='juliet@capulet.lit/Balcony' type='set' id='H_1' from='romeo@montague.lit/Home'>
  <si xmlns='http://jabber.org/protocol/si' profile='urn:x-bytestreamd:si:link:0' id='alpha'>
    <feature xmlns='http://jabber.org/protocol/feature-neg'>
      <x xmlns='jabber:x:data' type='form'>
        <field var='stream-method' type='list-single'>
          <option><value>http://jabber.org/protocol/bytestreams</value></option>
          <option><value>http://jabber.org/protocol/ibb</value></option>
        </field>
      </x>
    </feature>
    <si-multiple xmlns='http://telepathy.freedesktop.org/xmpp/si-multiple'/>
  </si>
</iq>"""

# si-multiple, Example 2 (with the closing quote the document lost).
MULTIPLE_ACCEPT = """
<iq type='result' id='H_1'>
  <si xmlns='http://jabber.org/protocol/si'>
    <si-multiple xmlns='http://telepathy.freedesktop.org/xmpp/si-multiple'>
      <value>http://jabber.org/protocol/bytestreams</value>
      <value>http://jabber.org/protocol/ibb</value>
    </si-multiple>
  </si>
</iq>"""


class OfferTests(SynchronousTestCase):
    def test_parseXep95Offer(self):
        offer = si.SIOffer.fromElement(siOf(XEP95_OFFER))
        self.assertEqual(offer.id, "a0")
        self.assertEqual(offer.profile, ns.NS_SI_FILE_TRANSFER)
        self.assertEqual(offer.mimeType, "text/plain")
        self.assertEqual(offer.methods, [ns.NS_S5B, "jabber:iq:oob", ns.NS_IBB])
        self.assertFalse(offer.multiple)
        self.assertEqual(offer.payload.name, "file")

    def test_buildXep95Offer(self):
        payload = si.FileProfile(name="test.txt", size="1022",
                                 desc="This is info about the file.").toElement()
        offer = si.SIOffer("a0", ns.NS_SI_FILE_TRANSFER,
                           [ns.NS_S5B, "jabber:iq:oob", ns.NS_IBB],
                           mimeType="text/plain", payload=payload)
        assertSameXml(self, offer.toElement(), siOf(XEP95_OFFER).toXml())

    def test_roundTripXep96Complete(self):
        element = siOf(XEP96_COMPLETE_OFFER)
        offer = si.SIOffer.fromElement(element)
        assertSameXml(self, offer.toElement(), element.toXml())

    def test_multipleOffer(self):
        offer = si.SIOffer.fromElement(siOf(MULTIPLE_OFFER))
        self.assertTrue(offer.multiple)
        self.assertEqual(offer.methods, [ns.NS_S5B, ns.NS_IBB])
        self.assertIsNone(offer.payload)
        built = si.SIOffer("alpha", ns.NS_LINK_PROFILE, [ns.NS_S5B, ns.NS_IBB],
                           multiple=True)
        assertSameXml(self, built.toElement(), siOf(MULTIPLE_OFFER).toXml())

    def test_malformed(self):
        def check(xml, words):
            exc = self.assertRaises(si.MalformedSI, si.SIOffer.fromElement, siOf(xml))
            self.assertIsInstance(exc, ValueError)
            self.assertIn(words, str(exc))

        check("<iq><si xmlns='%s' profile='p'><feature xmlns='%s'/></si></iq>"
              % (ns.NS_SI, ns.NS_FEATURE_NEG), "no id")
        check("<iq><si xmlns='%s' id='a'/></iq>" % ns.NS_SI, "no profile")
        check("<iq><si xmlns='%s' id='a' profile='p'/></iq>" % ns.NS_SI, "no feature-neg")
        check("<iq><si xmlns='%s' id='a' profile='p'><feature xmlns='%s'/></si></iq>"
              % (ns.NS_SI, ns.NS_FEATURE_NEG), "no jabber:x:data form")
        check("<iq><si xmlns='%s' id='a' profile='p'><feature xmlns='%s'>"
              "<x xmlns='jabber:x:data' type='form'/></feature></si></iq>"
              % (ns.NS_SI, ns.NS_FEATURE_NEG), "no stream-method field")
        check("<iq><si xmlns='%s' id='%s' profile='p'/></iq>" % (ns.NS_SI, "x" * 300),
              "longer than")

    def test_noOptionsIsEmptyNotMalformed(self):
        offer = si.SIOffer.fromElement(siOf(
            "<iq><si xmlns='%s' id='a' profile='p'><feature xmlns='%s'>"
            "<x xmlns='jabber:x:data' type='form'><field var='stream-method' "
            "type='list-single'/></x></feature></si></iq>"
            % (ns.NS_SI, ns.NS_FEATURE_NEG)))
        self.assertEqual(offer.methods, [])


class AcceptTests(SynchronousTestCase):
    def test_parsePlain(self):
        accept = si.SIAccept.fromElement(siOf(XEP95_ACCEPT))
        self.assertEqual(accept.method, ns.NS_S5B)
        self.assertFalse(accept.multiple)
        self.assertEqual(accept.chosen, [ns.NS_S5B])

    def test_buildPlain(self):
        assertSameXml(self, si.SIAccept(method=ns.NS_S5B).toElement(),
                      siOf(XEP95_ACCEPT).toXml())

    def test_multiple(self):
        accept = si.SIAccept.fromElement(siOf(MULTIPLE_ACCEPT))
        self.assertTrue(accept.multiple)
        self.assertEqual(accept.chosen, [ns.NS_S5B, ns.NS_IBB])
        assertSameXml(self, si.SIAccept(methods=[ns.NS_S5B, ns.NS_IBB]).toElement(),
                      siOf(MULTIPLE_ACCEPT).toXml())

    def test_withProfilePayload(self):
        xml = """<iq type='result'><si xmlns='http://jabber.org/protocol/si'>
            <file xmlns='http://jabber.org/protocol/si/profile/file-transfer'/>
            <feature xmlns='http://jabber.org/protocol/feature-neg'>
              <x xmlns='jabber:x:data' type='submit'><field var='stream-method'>
              <value>http://jabber.org/protocol/bytestreams</value></field></x>
            </feature></si></iq>"""
        accept = si.SIAccept.fromElement(siOf(xml))
        self.assertEqual(accept.payload.name, "file")
        self.assertEqual(accept.method, ns.NS_S5B)

    def test_malformed(self):
        self.assertRaises(si.MalformedSI, si.SIAccept.fromElement, None)
        self.assertRaises(si.MalformedSI, si.SIAccept.fromElement,
                          siOf("<iq><si xmlns='%s'/></iq>" % ns.NS_SI))
        self.assertRaises(si.MalformedSI, si.SIAccept.fromElement, siOf(
            "<iq><si xmlns='%s'><si-multiple xmlns='%s'/></si></iq>"
            % (ns.NS_SI, ns.NS_SI_MULTIPLE)))
        exc = self.assertRaises(si.MalformedSI, si.SIAccept.fromElement, siOf(
            "<iq><si xmlns='%s'><feature xmlns='%s'><x xmlns='jabber:x:data' "
            "type='submit'><field var='stream-method'/></x></feature></si></iq>"
            % (ns.NS_SI, ns.NS_FEATURE_NEG)))
        self.assertIn("0 values", str(exc))


class LinkProfileTests(SynchronousTestCase):
    def test_element(self):
        assertSameXml(self, si.LinkProfile("ssh").toElement(),
                      "<link xmlns='urn:x-bytestreamd:si:link:0' service='ssh'/>")
        assertSameXml(self, si.LinkProfile().toElement(),
                      "<link xmlns='urn:x-bytestreamd:si:link:0'/>")

    def test_headers(self):
        el = parseXml("<link xmlns='urn:x-bytestreamd:si:link:0' service='ssh'/>")
        self.assertEqual(si.headersFromPayload(ns.NS_LINK_PROFILE, el), {"service": "ssh"})
        self.assertEqual(si.headersFromPayload(ns.NS_LINK_PROFILE, None), {})
        self.assertEqual(si.LinkProfile.fromHeaders({"service": None}).headers(), {})
        assertSameXml(self, si.payloadFromHeaders(ns.NS_LINK_PROFILE, {"service": "web"}),
                      "<link xmlns='urn:x-bytestreamd:si:link:0' service='web'/>")

    def test_badService(self):
        for bad in ("", "a b", "x" * 256, "a\x01"):
            self.assertRaises(si.MalformedSI, si.LinkProfile.fromHeaders, {"service": bad})
        self.assertRaises(si.MalformedSI, si.LinkProfile.fromHeaders, {"name": "x"})
        self.assertRaises(si.MalformedSI, si.headersFromPayload, ns.NS_LINK_PROFILE,
                          parseXml("<other xmlns='urn:x-bytestreamd:si:link:0'/>"))


class FileProfileTests(SynchronousTestCase):
    def test_headersFromXep96(self):
        offer = si.SIOffer.fromElement(siOf(XEP96_COMPLETE_OFFER))
        self.assertEqual(si.headersFromPayload(offer.profile, offer.payload), {
            "name": "test.txt", "size": "1022",
            "hash": "552da749930852c69ae5d2141d3766b1",
            "date": "1969-07-21T02:56:15Z",
            "desc": "This is a test. If this were a real file..."})

    def test_range(self):
        el = parseXml("<file xmlns='%s' name='a' size='5'><range offset='128' "
                      "length='256'/></file>" % ns.NS_SI_FILE_TRANSFER)
        headers = si.headersFromPayload(ns.NS_SI_FILE_TRANSFER, el)
        self.assertEqual(headers, {"name": "a", "size": "5", "range": "true",
                                   "offset": "128", "length": "256"})
        assertSameXml(self, si.payloadFromHeaders(ns.NS_SI_FILE_TRANSFER, headers), el.toXml())
        bare = parseXml("<file xmlns='%s' name='a' size='5'><range/></file>"
                        % ns.NS_SI_FILE_TRANSFER)
        self.assertEqual(si.headersFromPayload(ns.NS_SI_FILE_TRANSFER, bare)["range"], "true")
        assertSameXml(self, si.FileProfile.fromHeaders(
            {"name": "a", "size": 5, "range": "true"}).toElement(), bare.toXml())

    def test_malformed(self):
        for xml, words in [
                ("<file xmlns='%s' size='1'/>", "no file name"),
                ("<file xmlns='%s' name='a'/>", "no file size"),
                ("<file xmlns='%s' name='a' size='-1'/>", "size"),
                ("<file xmlns='%s' name='a' size='1'><range offset='x'/></file>", "offset")]:
            exc = self.assertRaises(si.MalformedSI, si.headersFromPayload,
                                    ns.NS_SI_FILE_TRANSFER,
                                    parseXml(xml % ns.NS_SI_FILE_TRANSFER))
            self.assertIn(words, str(exc))
        self.assertRaises(si.MalformedSI, si.headersFromPayload, ns.NS_SI_FILE_TRANSFER, None)
        self.assertRaises(si.MalformedSI, si.headersFromPayload, "urn:nope", None)


class FormTests(SynchronousTestCase):
    def test_formUsesDataForms(self):
        feature = si.streamMethodOffer([ns.NS_IBB])
        self.assertIsInstance(feature, domish.Element)
        self.assertEqual(si.streamMethodsOffered(feature), [ns.NS_IBB])
        self.assertEqual(si.streamMethodChosen(si.streamMethodChoice(ns.NS_IBB)), ns.NS_IBB)
