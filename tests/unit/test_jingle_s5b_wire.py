"""
XEP-0260 codec against every example of the XEP, the DST.ADDR rule (checked
against the XEP's own two values), priorities and the nomination rule.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.ns import NS_JINGLE, NS_JINGLE_S5B
from bytestreamd.wire import jingle
from bytestreamd.wire.jingle import Jingle, MalformedJingle
from bytestreamd.wire.jingle_ibb import IBBTransport
from bytestreamd.wire.jingle_s5b import (
    Candidate, S5BTransport, candidateDstAddr, dstAddr, nominate, priority)
from tests.helpers import parseXml
from tests.unit.jingle_examples import census, child, examples, reparse

EXAMPLES = {e.number: e.stanza() for e in examples("0260")}
ROMEO = JID("romeo@montague.lit/orchard")
JULIET = JID("juliet@capulet.lit/balcony")


def jingleOf(number):
    return Jingle.fromElement(child(EXAMPLES[number], NS_JINGLE, "jingle"))


def transportOf(number):
    return jingleOf(number).contents[0].transport


def transport(body, attrs="sid='s'"):
    return S5BTransport.fromElement(parseXml(
        "<transport xmlns='%s' %s>%s</transport>" % (NS_JINGLE_S5B, attrs, body)))


def candidate(attrs):
    return transport("<candidate %s/>" % attrs).candidates[0]


GOOD = "cid='c' host='h' jid='a@b/c' priority='1'"


class EveryExampleTests(SynchronousTestCase):
    def test_census(self):
        self.assertEqual(len(EXAMPLES), 20)
        self.assertEqual(census(EXAMPLES.values()),
                         {"jingle": 9, "ack": 8, "s5b-query": 1, "disco": 2})

    def test_initiatorCandidates(self):
        t = transportOf(1)
        self.assertEqual((t.sid, t.mode, t.kind), ("vj3hs98y", "tcp", "candidates"))
        self.assertEqual(t.candidates[0], Candidate(
            "hft54dqy", "192.168.4.1", ROMEO, 8257636, 5086, "direct"))
        proxy = t.candidate("xmdh4b7i")
        self.assertEqual((proxy.host, proxy.jid, proxy.effectiveType),
                         ("123.456.7.8", JID("streamer.shakespeare.lit"), "proxy"))
        self.assertEqual(proxy.describe(), "cid xmdh4b7i proxy 123.456.7.8:7625")

    def test_dstaddrOfBothExamples(self):
        """
        The XEP's two values: SHA1(sid + initiator + responder) for the
        initiator's proxy candidate, SHA1(sid + responder + initiator) for
        the responder's -- with the S5B sid, not the Jingle sid.
        """
        offer, answer = transportOf(1), transportOf(3)
        self.assertEqual(offer.dstaddr,
                         candidateDstAddr("vj3hs98y", ROMEO, JULIET, "initiator"))
        self.assertEqual(answer.dstaddr,
                         candidateDstAddr("vj3hs98y", ROMEO, JULIET, "responder"))
        self.assertEqual(offer.dstaddr, "972b7bf47291ca609517f67f86b5081086052dad")
        self.assertEqual(answer.dstaddr, "1a12fb7bc625e55f3ed5b29a53dbe0e4aa7d80ba")
        self.assertEqual(dstAddr("vj3hs98y", ROMEO, JULIET), offer.dstaddr)
        self.assertRaises(ValueError, candidateDstAddr, "s", ROMEO, JULIET, "proxy")

    def test_responderCandidates(self):
        t = transportOf(3)
        self.assertIsNone(t.mode)
        self.assertEqual(t.effectiveMode, "tcp")
        self.assertEqual([c.effectiveType for c in t.candidates],
                         ["direct", "direct", "assisted", "proxy"])
        ipv6 = t.candidate("grt654q2")
        self.assertEqual(ipv6.describe(),
                         "cid grt654q2 direct [2001:638:708:30c9:219:d1ff:fea4:a17d]:6539")

    def test_transportInfos(self):
        self.assertEqual(transportOf(5), S5BTransport("vj3hs98y", candidateUsed="hr65dqyd"))
        self.assertEqual(transportOf(5).kind, "candidate-used")
        self.assertEqual(transportOf(7).kind, "candidate-error")
        self.assertEqual(transportOf(11), S5BTransport("vj3hs98y", activated="xmdh4b7i"))
        self.assertEqual(transportOf(12).kind, "proxy-error")
        for n in (5, 7, 11, 12):
            self.assertEqual(jingleOf(n).action, jingle.TRANSPORT_INFO)
            # The XEP puts 'initiator' on transport-info; it SHOULD NOT,
            # and it is kept (ignored) when valid.
            self.assertEqual(jingleOf(n).initiator, ROMEO)

    def test_fallback(self):
        """Examples 15 and 17: transport-replace to IBB, a smaller block-size back."""
        replace, accept = jingleOf(15), jingleOf(17)
        self.assertEqual(replace.action, jingle.TRANSPORT_REPLACE)
        self.assertEqual(replace.contents[0].transport, IBBTransport("ch3d9s71", 4096))
        self.assertEqual(accept.action, jingle.TRANSPORT_ACCEPT)
        self.assertEqual(accept.contents[0].transport, IBBTransport("ch3d9s71", 2048))


class ValidationTests(SynchronousTestCase):
    def test_transport(self):
        for body, attrs in [("", ""), ("", "sid=''"), ("", "sid='s' mode='sctp'"),
                            ("", "sid='s' dstaddr=''"),
                            ("<candidate-used/>", "sid='s'"),
                            ("<activated/>", "sid='s'"),
                            ("<candidate-error/><candidate-error/>", "sid='s'"),
                            ("<candidate-error/><proxy-error/>", "sid='s'"),
                            ("<candidate %s/><candidate-used cid='c'/>" % GOOD, "sid='s'"),
                            ("<candidate %s/><candidate %s/>" % (GOOD, GOOD), "sid='s'"),
                            ("<bogus/>", "sid='s'")]:
            self.assertRaises(MalformedJingle, transport, body, attrs)
        self.assertRaises(MalformedJingle, S5BTransport.fromElement,
                          parseXml("<transport xmlns='urn:x' sid='s'/>"))

    def test_candidate(self):
        for attrs in ["host='h' jid='a@b/c' priority='1'",
                      "cid='c' jid='a@b/c' priority='1'",
                      "cid='c' host='h' priority='1'",
                      "cid='c' host='h' jid='@' priority='1'",
                      "cid='c' host='h' jid='a@b/c'",
                      "cid='c' host='h' jid='a@b/c' priority='0'",
                      "cid='c' host='h' jid='a@b/c' priority='-1'",
                      "cid='c' host='h' jid='a@b/c' priority='4294967296'",
                      "cid='c' host='h' jid='a@b/c' priority='1' port='0'",
                      "cid='c' host='h' jid='a@b/c' priority='1' port='65536'",
                      "cid='c' host='h' jid='a@b/c' priority='1' port='+1'",
                      "cid='c' host='h' jid='a@b/c' priority='1' type='relay'"]:
            self.assertRaises(MalformedJingle, candidate, attrs)

    def test_defaults(self):
        c = candidate(GOOD)
        self.assertEqual((c.port, c.effectivePort, c.type, c.effectiveType),
                         (None, 1080, None, "direct"))
        self.assertEqual(transport("").kind, "empty")

    def test_toElementRefusesMixtures(self):
        c = candidate(GOOD)
        self.assertRaises(ValueError, S5BTransport("s", candidates=(c,),
                                                   candidateError=True).toElement)


class RuleTests(SynchronousTestCase):
    def test_priority(self):
        """XEP-0260 section 2.2: (2^16)*(type preference) + local preference."""
        self.assertEqual(priority("direct"), 126 << 16)
        self.assertEqual(priority("proxy", 65535), (10 << 16) + 65535)
        self.assertEqual(priority("assisted", 1), (120 << 16) + 1)
        self.assertEqual(priority("tunnel"), 110 << 16)
        self.assertRaises(ValueError, priority, "direct", 65536)

    def test_nomination(self):
        """XEP-0260 section 2.5, its four cases."""
        low = Candidate("low", "h", JULIET, 10)
        high = Candidate("high", "h", ROMEO, 20)
        same = Candidate("same", "h", ROMEO, 10)
        self.assertIsNone(nominate(None, None))
        n = nominate(low, None)
        self.assertEqual((n.candidate, n.chosenBy, n.offeredBy), (low, "initiator", "responder"))
        n = nominate(None, high)
        self.assertEqual((n.candidate, n.chosenBy, n.offeredBy), (high, "responder", "initiator"))
        self.assertEqual(nominate(low, high).candidate, high)
        self.assertEqual(nominate(high, low).candidate, high)
        self.assertEqual(nominate(low, same).chosenBy, "initiator")
        self.assertEqual(nominate(low, same).candidate, low)


_candidates = st.builds(
    Candidate, cid=st.from_regex(r"\A[a-z0-9]{1,10}\Z"),
    host=st.sampled_from(["127.0.0.1", "::1", "proxy.example.net"]),
    jid=st.sampled_from([ROMEO, JULIET, JID("proxy.example.net")]),
    priority=st.integers(1, 2 ** 32 - 1), port=st.one_of(st.none(), st.integers(1, 65535)),
    type=st.sampled_from([None, "assisted", "direct", "proxy", "tunnel"]))


class GeneratedTests(SynchronousTestCase):
    @settings(max_examples=100, deadline=None)
    @given(st.lists(_candidates, max_size=5, unique_by=lambda c: c.cid),
           st.sampled_from([None, "tcp", "udp"]),
           st.one_of(st.none(), st.from_regex(r"\A[0-9a-f]{40}\Z")))
    def test_roundTrip(self, candidates, mode, dstaddr):
        value = S5BTransport("sid", mode, dstaddr, tuple(candidates))
        self.assertEqual(S5BTransport.fromElement(reparse(value.toElement())), value)

    @settings(max_examples=50, deadline=None)
    @given(st.sampled_from(["used", "error", "activated", "proxy"]))
    def test_infoRoundTrip(self, kind):
        value = {"used": S5BTransport("s", candidateUsed="c"),
                 "error": S5BTransport("s", candidateError=True),
                 "activated": S5BTransport("s", activated="c"),
                 "proxy": S5BTransport("s", proxyError=True)}[kind]
        self.assertEqual(S5BTransport.fromElement(reparse(value.toElement())), value)
