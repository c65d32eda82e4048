"""
XEP-0166 codecs against every example of the XEP, what they refuse, the
Jingle error conditions, the payload registry, and round trips of
generated values (hypothesis).
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.ns import NS_JINGLE, NS_JINGLE_ERRORS, NS_JINGLE_IBB
from bytestreamd.wire import jingle
from bytestreamd.wire.jingle import Content, Jingle, MalformedJingle, Opaque, Reason
from bytestreamd.wire.jingle_ibb import IBBTransport
from tests.helpers import parseXml
from tests.unit.jingle_examples import (
    canonical, census, checkExample, child, examples, reparse)

EXAMPLES = {e.number: e for e in examples("0166")}


def jingleOf(number):
    return Jingle.fromElement(child(EXAMPLES[number].stanza(), NS_JINGLE, "jingle"))


def parse(xml):
    return Jingle.fromElement(parseXml(xml))


def jingleXml(attrs, body=""):
    return "<jingle xmlns='%s' %s>%s</jingle>" % (NS_JINGLE, attrs, body)


STUB = ("<description xmlns='urn:xmpp:jingle:apps:stub:0'/>"
        "<transport xmlns='urn:xmpp:jingle:transports:stub:0'/>")


class EveryExampleTests(SynchronousTestCase):
    def test_census(self):
        """
        All 39 examples: 21 Jingle requests round-trip semantically (and as
        values), 7 acks, 5 plain stanza errors, 4 Jingle errors rebuilt
        exactly by jingleError, 2 disco examples naming our namespaces.
        """
        self.assertEqual(len(EXAMPLES), 39)
        self.assertEqual(census(e.stanza() for e in EXAMPLES.values()),
                         {"jingle": 21, "ack": 7, "error": 5, "jingle-error": 4,
                          "disco": 2})

    def test_stubInitiate(self):
        j = jingleOf(1)
        self.assertEqual(j.action, jingle.SESSION_INITIATE)
        self.assertEqual(j.sid, "a73sjjvkla37jfea")
        self.assertEqual(j.initiator, JID("romeo@montague.lit/orchard"))
        self.assertIsNone(j.responder)
        [content] = j.contents
        self.assertEqual(content.key, ("initiator", "this-is-a-stub"))
        self.assertIsNone(content.senders)
        self.assertEqual(content.effectiveSenders, "both")
        self.assertEqual(content.effectiveDisposition, "session")
        self.assertIsInstance(content.description, Opaque)
        self.assertEqual(content.description.namespace, "urn:xmpp:jingle:apps:stub:0")
        self.assertEqual(content.transport.namespace, "urn:xmpp:jingle:transports:stub:0")

    def test_accept(self):
        j = jingleOf(2)
        self.assertEqual(j.action, jingle.SESSION_ACCEPT)
        self.assertEqual(j.responder, JID("juliet@capulet.lit/balcony"))

    def test_rtpPayloadKeptWhole(self):
        """An unknown description keeps every child, and serialises back."""
        j = jingleOf(4)
        description = j.contents[0].description
        self.assertIsInstance(description, Opaque)
        self.assertEqual(len(list(description.element.elements())), 6)
        self.assertEqual(len(list(j.contents[0].transport.element.elements())), 2)

    def test_terminationReasons(self):
        reasons = {n: jingleOf(n).reason.condition for n in range(19, 28)}
        self.assertEqual(reasons, {
            19: "success", 20: "busy", 21: "decline", 22: "alternative-session",
            23: "unsupported-transports", 24: "failed-transport",
            25: "unsupported-applications", 26: "failed-application",
            27: "incompatible-parameters"})
        self.assertEqual(jingleOf(22).reason.alternativeSid, "b84tkkwlmb48kgfb")

    def test_reasonText(self):
        reason = jingleOf(8).reason
        self.assertEqual(reason, Reason("success", "Sorry, gotta go!"))
        self.assertEqual(reason.describe(), "success: Sorry, gotta go!")

    def test_sessionInfo(self):
        ringing = jingleOf(30)
        [payload] = ringing.info
        self.assertIsInstance(payload, Opaque)
        self.assertEqual(payload.key, ("urn:xmpp:jingle:apps:rtp:1:info", "ringing"))
        self.assertEqual(jingle.payloadKey(payload), payload.key)
        ping = jingleOf(32)
        self.assertEqual((ping.action, ping.contents, ping.info),
                         (jingle.SESSION_INFO, (), ()))

    def test_securityPrecondition(self):
        content = jingleOf(35).contents[0]
        self.assertEqual(content.security.namespace, "urn:xmpp:jingle:security:stub:0")
        info = jingleOf(36)
        self.assertEqual(info.action, jingle.SECURITY_INFO)
        self.assertIsNone(info.contents[0].transport)

    def test_jingleErrorExamples(self):
        for number, condition in [(29, "unknown-session"), (31, "unsupported-info"),
                                  (34, "tie-break"), (37, "security-required")]:
            self.assertEqual(jingle.jingleErrorCondition(EXAMPLES[number].stanza()),
                             condition)

    def test_plainErrorsHaveNoJingleCondition(self):
        for number in (12, 13, 14, 15, 16):
            stanza = EXAMPLES[number].stanza()
            self.assertEqual(checkExample(stanza), "error")


class ErrorConditionTests(SynchronousTestCase):
    def test_pairs(self):
        """XEP-0166 section 10's table."""
        self.assertEqual(
            {name: e.stanzaCondition for name, e in jingle.ERRORS.items()},
            {"out-of-order": "unexpected-request", "tie-break": "conflict",
             "unknown-session": "item-not-found",
             "unsupported-info": "feature-not-implemented",
             "security-required": "not-acceptable"})

    def test_roundTrip(self):
        for name, spec in jingle.ERRORS.items():
            exc = jingle.jingleError(name, "words")
            self.assertEqual(exc.condition, spec.stanzaCondition)
            self.assertEqual(exc.type, spec.type)
            self.assertEqual(exc.text, "words")
            element = reparse(exc.getElement())
            self.assertEqual(jingle.jingleErrorCondition(element), name)

    def test_noCondition(self):
        error = parseXml("<error type='cancel'><item-not-found xmlns="
                         "'urn:ietf:params:xml:ns:xmpp-stanzas'/></error>")
        self.assertIsNone(jingle.jingleErrorCondition(error))
        self.assertIsNone(jingle.jingleErrorCondition(parseXml("<iq type='error'/>")))
        unknown = parseXml("<error><x xmlns='%s'/></error>" % NS_JINGLE_ERRORS)
        self.assertIsNone(jingle.jingleErrorCondition(unknown))


class ValidationTests(SynchronousTestCase):
    def assertMalformed(self, xml, words=""):
        e = self.assertRaises(MalformedJingle, parse, xml)
        self.assertIn(words, str(e))

    def test_malformedIsBadRequest(self):
        self.assertTrue(issubclass(MalformedJingle, ValueError))
        self.assertEqual(MalformedJingle.condition, "bad-request")

    def test_jingleElement(self):
        self.assertMalformed(jingleXml("sid='s'", ""), "without an 'action'")
        self.assertMalformed(jingleXml("action='session-dance' sid='s'"),
                             "unknown Jingle action")
        self.assertMalformed(jingleXml("action='session-info'"), "missing 'sid'")
        self.assertMalformed(jingleXml("action='session-info' sid=''"), "missing 'sid'")
        self.assertMalformed(jingleXml("action='session-info' sid='a b'"), "whitespace")
        self.assertMalformed(jingleXml("action='session-info' sid='%s'" % ("x" * 257)),
                             "longer")
        self.assertRaises(MalformedJingle, Jingle.fromElement,
                          parseXml("<jingle xmlns='urn:xmpp:jingle:0' action='session-info'"
                                   " sid='s'/>"))
        self.assertMalformed(jingleXml("action='session-info' sid='s'", "<foo/>"),
                             "unexpected <foo/>")

    def test_content(self):
        def initiate(content):
            return jingleXml("action='session-initiate' sid='s'", content)
        self.assertMalformed(initiate("<content name='a'>%s</content>" % STUB), "creator")
        self.assertMalformed(initiate("<content creator='me' name='a'>%s</content>"
                                      % STUB), "creator")
        self.assertMalformed(initiate("<content creator='initiator'>%s</content>" % STUB),
                             "without a 'name'")
        self.assertMalformed(initiate("<content creator='initiator' name='a' "
                                      "senders='everyone'>%s</content>" % STUB),
                             "senders")
        self.assertMalformed(initiate("<content creator='initiator' name='a' "
                                      "disposition=''>%s</content>" % STUB),
                             "disposition")
        self.assertMalformed(initiate("<content creator='initiator' name='a'>%s%s"
                                      "</content>" % (STUB, STUB)), "more than one")
        self.assertMalformed(initiate("<content creator='initiator' name='a'>"
                                      "<description/><transport/></content>"),
                             "its own namespace")

    def test_contentsEachActionNeeds(self):
        for action in ("session-initiate", "session-accept", "content-add",
                       "content-remove", "transport-replace", "transport-info"):
            self.assertMalformed(jingleXml("action='%s' sid='s'" % action),
                                 "without a <content/>")
        for action in ("session-initiate", "content-add"):
            self.assertMalformed(
                jingleXml("action='%s' sid='s'" % action,
                          "<content creator='initiator' name='a'>"
                          "<transport xmlns='urn:x'/></content>"),
                "needs a <description/>")
        # session-accept: the transport is enough (see _FULL_CONTENTS).
        accept = parse(jingleXml("action='session-accept' sid='s'",
                                 "<content creator='initiator' name='a'>"
                                 "<transport xmlns='urn:x'/></content>"))
        self.assertIsNone(accept.contents[0].description)
        for action in ("session-accept", "transport-replace", "transport-accept",
                       "transport-info"):
            self.assertMalformed(
                jingleXml("action='%s' sid='s'" % action,
                          "<content creator='initiator' name='a'/>"),
                "has no <transport/>")
        self.assertMalformed(jingleXml("action='content-modify' sid='s'",
                                       "<content creator='initiator' name='a'/>"),
                             "senders")

    def test_dispositionRule(self):
        """Section 7.2.10: some content of a session-initiate is 'session'."""
        self.assertMalformed(jingleXml(
            "action='session-initiate' sid='s'",
            "<content creator='initiator' name='a' disposition='early-session'>%s"
            "</content>" % STUB), "disposition 'session'")
        j = parse(jingleXml(
            "action='session-initiate' sid='s'",
            "<content creator='initiator' name='a' disposition='early-session'>%s"
            "</content><content creator='initiator' name='b'>%s</content>"
            % (STUB, STUB)))
        self.assertEqual([c.effectiveDisposition for c in j.contents],
                         ["early-session", "session"])

    def test_parties(self):
        self.assertMalformed(jingleXml("action='session-initiate' initiator='@@' sid='s'",
                                       "<content creator='initiator' name='a'>%s"
                                       "</content>" % STUB), "'initiator'")
        self.assertMalformed(jingleXml("action='session-accept' responder='' sid='s'",
                                       "<content creator='initiator' name='a'>%s"
                                       "</content>" % STUB), "'responder'")
        # Elsewhere they SHOULD be ignored: an invalid one is dropped.
        j = parse(jingleXml("action='session-info' initiator='@@' sid='s'"))
        self.assertIsNone(j.initiator)

    def test_reason(self):
        def terminate(reason):
            return jingleXml("action='session-terminate' sid='s'", reason)
        self.assertMalformed(terminate("<reason/>"), "without a condition")
        self.assertMalformed(terminate("<reason><bored/></reason>"), "unknown Jingle reason")
        self.assertMalformed(terminate("<reason><success/><busy/></reason>"),
                             "more than one condition")
        self.assertMalformed(terminate("<reason><success/><text>a</text><text>b</text>"
                                       "</reason>"), "more than one <text/>")
        self.assertMalformed(terminate("<reason><success/></reason><reason><busy/></reason>"),
                             "more than one <reason/>")
        self.assertMalformed(terminate("<reason><success/><text><b/></text></reason>"),
                             "must not contain elements")
        self.assertMalformed(terminate("<reason><success/><a xmlns='urn:a'/>"
                                       "<b xmlns='urn:b'/></reason>"),
                             "more than one application-specific")
        self.assertMalformed(terminate("<reason><alternative-session><sid>a</sid>"
                                       "<sid>b</sid></alternative-session></reason>"),
                             "more than one <sid/>")

    def test_tooManyContents(self):
        contents = "".join("<content creator='initiator' name='c%d'/>" % i
                           for i in range(jingle.MAX_CONTENTS + 1))
        self.assertMalformed(jingleXml("action='content-remove' sid='s'", contents),
                             "more than")

    def test_toElementRefusesUnknown(self):
        self.assertRaises(ValueError, Jingle("dance", "s").toElement)
        self.assertRaises(ValueError, Reason("bored").toElement)
        self.assertRaises(ValueError, Content("me", "a").toElement)


class ReasonTests(SynchronousTestCase):
    def test_everyCondition(self):
        self.assertEqual(len(jingle.REASONS), 17)
        for condition in sorted(jingle.REASONS):
            reason = Reason(condition, "why: %s" % condition)
            self.assertEqual(Reason.fromElement(reparse(reason.toElement())), reason)

    def test_extraElement(self):
        extra = Opaque(domish.Element(("urn:xmpp:jingle:apps:file-transfer:errors:0",
                                       "file-too-large")))
        reason = Reason("media-error", extra=extra)
        parsed = Reason.fromElement(reparse(reason.toElement()))
        self.assertEqual(parsed, reason)
        self.assertEqual(parsed.describe(), "media-error (file-too-large)")

    def test_alternativeSession(self):
        reason = Reason("alternative-session", alternativeSid="other")
        self.assertEqual(Reason.fromElement(reparse(reason.toElement())), reason)
        self.assertEqual(reason.describe(), "alternative-session (session other)")


class RegistryTests(SynchronousTestCase):
    def test_defaultKnowsOurCodecs(self):
        registry = jingle.defaultRegistry()
        self.assertTrue(registry.knows(NS_JINGLE_IBB, "transport"))
        self.assertFalse(registry.knows("urn:xmpp:jingle:apps:rtp:1", "description"))
        self.assertIs(jingle.defaultRegistry(), registry)

    def test_emptyRegistryKeepsEverythingOpaque(self):
        xml = EXAMPLES[1].xml.replace("urn:xmpp:jingle:transports:stub:0", NS_JINGLE_IBB)
        element = child(parseXml(xml.strip()), NS_JINGLE, "jingle")
        j = Jingle.fromElement(element, jingle.Registry())
        self.assertIsInstance(j.contents[0].transport, Opaque)

    def test_customCodec(self):
        class Stub:
            namespace = "urn:xmpp:jingle:apps:stub:0"
            elementName = "description"

            @classmethod
            def fromElement(cls, element):
                return cls()

            def toElement(self):
                return domish.Element((self.namespace, "description"))

        registry = jingle.Registry()
        registry.register(Stub.namespace, "description", Stub.fromElement)
        j = Jingle.fromElement(child(EXAMPLES[1].stanza(), NS_JINGLE, "jingle"), registry)
        self.assertIsInstance(j.contents[0].description, Stub)
        self.assertEqual(jingle.payloadKey(j.contents[0].description),
                         (Stub.namespace, "description"))
        self.assertEqual(canonical(reparse(j.toElement())),
                         canonical(child(EXAMPLES[1].stanza(), NS_JINGLE, "jingle")))

    def test_opaqueEquality(self):
        a = Opaque(parseXml("<x xmlns='urn:a' k='1'/>"))
        b = Opaque(parseXml("<x xmlns='urn:a' k='1'/>"))
        c = Opaque(parseXml("<x xmlns='urn:a' k='2'/>"))
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertNotEqual(a, c)


# --- generated values ---------------------------------------------------------

_names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF,
                               blacklist_categories=("Cc", "Cs", "Z")),
                 min_size=1, max_size=20)
#: Attribute values XML can carry.
_xmlText = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Co")),
                   max_size=8)
_jids = st.sampled_from([JID("romeo@montague.lit/orchard"),
                         JID("juliet@capulet.lit/balcony"), JID("example.net")])
_ibb = st.builds(IBBTransport,
                 sid=st.from_regex(r"\A[a-zA-Z0-9_.:-]{1,20}\Z"),
                 blockSize=st.integers(1, 65535),
                 stanza=st.sampled_from([None, "iq", "message"]))
_contents = st.builds(
    Content, creator=st.sampled_from(jingle.CREATORS), name=_names,
    senders=st.sampled_from((None,) + jingle.SENDERS),
    disposition=st.sampled_from([None, "session"]),
    description=st.just(Opaque(domish.Element(("urn:x:app", "description")))),
    transport=_ibb)
_reasons = st.builds(Reason, condition=st.sampled_from(sorted(jingle.REASONS)),
                     text=st.one_of(st.none(), _names))
_jingles = st.builds(
    Jingle, action=st.sampled_from([jingle.SESSION_INITIATE, jingle.SESSION_ACCEPT,
                                    jingle.TRANSPORT_REPLACE, jingle.CONTENT_ADD]),
    sid=_names, initiator=st.one_of(st.none(), _jids),
    responder=st.one_of(st.none(), _jids),
    contents=st.lists(_contents, min_size=1, max_size=4).map(tuple),
    reason=st.one_of(st.none(), _reasons))


class GeneratedTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(_jingles)
    def test_roundTrip(self, value):
        self.assertEqual(Jingle.fromElement(reparse(value.toElement())), value)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(
        st.sampled_from(["action", "sid", "initiator", "responder", "creator", "name",
                         "senders", "disposition", "block-size", "stanza"]),
        _xmlText), max_size=6))
    def test_junkAttributesOnlyMalformed(self, junk):
        """Whatever the attribute values, parsing succeeds or says Malformed."""
        element = parseXml(jingleXml("action='session-initiate' sid='s'",
                                     "<content creator='initiator' name='a'>"
                                     "<description xmlns='urn:x'/><transport xmlns='%s' "
                                     "sid='i' block-size='4096'/></content>"
                                     % NS_JINGLE_IBB))
        content = child(element, NS_JINGLE, "content")
        transport = child(content, NS_JINGLE_IBB, "transport")
        for name, value in junk:
            target = {"creator": content, "name": content, "senders": content,
                      "disposition": content, "block-size": transport,
                      "stanza": transport}.get(name, element)
            target[name] = value
        try:
            Jingle.fromElement(reparse(element))
        except MalformedJingle:
            pass
