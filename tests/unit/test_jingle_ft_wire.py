"""
XEP-0234 (version 5) codecs against every example of the XEP, hashes in the
standard form and in Libervia 0.9's base64-of-hex form, and round trips.
"""

import base64
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.ns import NS_HASHES, NS_JINGLE, NS_JINGLE_FT, NS_JINGLE_FT_ERRORS
from bytestreamd.wire import jingle
from bytestreamd.wire.jingle import Jingle, MalformedJingle, Reason
from bytestreamd.wire.jingle_ft import (
    Checksum, File, FileDescription, Hash, HashUsed, Range, Received, fileError,
    rawDigest)
from bytestreamd.wire.jingle_s5b import S5BTransport
from tests.helpers import parseXml
from tests.unit.jingle_examples import canonical, census, child, examples, reparse

EXAMPLES = {e.number: e.stanza() for e in examples("0234")}
SHA1 = "w0mcJylzCn+AfvuGdqkty2+KP48="
SHA1_RAW = base64.b64decode(SHA1)


def jingleOf(number):
    return Jingle.fromElement(child(EXAMPLES[number], NS_JINGLE, "jingle"))


def fileOf(number):
    return jingleOf(number).contents[0].description.file


def parseFile(body):
    return File.fromElement(parseXml("<file xmlns='%s'>%s</file>" % (NS_JINGLE_FT, body)))


class EveryExampleTests(SynchronousTestCase):
    def test_census(self):
        self.assertEqual(len(EXAMPLES), 20)
        self.assertEqual(census(EXAMPLES.values()), {"jingle": 14, "ack": 4, "disco": 2})

    def test_offer(self):
        j = jingleOf(1)
        content = j.contents[0]
        self.assertEqual((content.creator, content.senders), ("initiator", "initiator"))
        self.assertIsInstance(content.transport, S5BTransport)
        self.assertEqual(content.description, FileDescription(File(
            name="test.txt", size=6144, date="1969-07-21T02:56:15Z",
            mediaType="text/plain", desc="This is a test. If this were a real file...",
            hashes=(Hash("sha-1", SHA1),), range=Range())))
        self.assertIsNone(content.description.file.offerProblems())
        self.assertEqual(fileOf(1).hash("sha-1").digest(), SHA1_RAW)
        self.assertIsNone(fileOf(1).hash())  # no sha-256 in it
        self.assertEqual(fileOf(3), fileOf(1))  # the accept repeats the file

    def test_request(self):
        """Example 5: a file request names the file by its hash only."""
        content = jingleOf(5).contents[0]
        self.assertEqual((content.creator, content.senders), ("initiator", "responder"))
        self.assertEqual(content.description.file, File(hashes=(Hash("sha-1", SHA1),)))
        self.assertEqual(content.description.file.offerProblems(),
                         "file offer without a <size/>")

    def test_contentAddAndRange(self):
        self.assertEqual(jingleOf(6).action, jingle.CONTENT_ADD)
        self.assertEqual(fileOf(6).name, "second-file.txt")
        self.assertEqual(fileOf(8).range, Range(offset=270336))
        self.assertEqual(fileOf(8).range.effectiveOffset, 270336)

    def test_abortAndEnd(self):
        self.assertEqual(jingleOf(9).reason, Reason("cancel"))
        remove = jingleOf(10)
        self.assertEqual((remove.action, remove.contents[0].key, remove.reason),
                         (jingle.CONTENT_REMOVE, ("initiator", "a-file-offer"),
                          Reason("cancel")))
        self.assertEqual(jingleOf(12).reason, Reason("success"))

    def test_received(self):
        self.assertEqual(jingleOf(13).info, (Received("initiator", "a-file-offer"),))

    def test_checksums(self):
        [checksum] = jingleOf(14).info
        self.assertEqual(checksum, Checksum(File(hashes=(Hash("sha-1", SHA1),)),
                                            "initiator", "a-file-offer"))
        self.assertEqual(checksum.hashes(), (Hash("sha-1", SHA1),))
        [ranged] = jingleOf(15).info
        self.assertEqual(ranged.file.range.offset, 2048)
        self.assertEqual(ranged.file.range.length, 1024)
        self.assertEqual([h.digest() for h in ranged.hashes()],
                         [base64.b64decode("kHp5RSzW/h7Gm1etSf90Mr5PC/k=")])

    def test_hashUsed(self):
        self.assertEqual(fileOf(16).hashesUsed, (HashUsed("sha-1"),))
        self.assertEqual(fileOf(16).hashes, ())
        self.assertIsNone(fileOf(16).offerProblems())

    def test_fileErrors(self):
        reject, remove = jingleOf(17), jingleOf(18)
        self.assertEqual(reject.reason, Reason("failed-application",
                                               extra=fileError("file-not-available")))
        self.assertEqual(remove.reason, Reason("media-error",
                                               extra=fileError("file-too-large")))
        self.assertEqual(reject.reason.extra.namespace, NS_JINGLE_FT_ERRORS)
        self.assertRaises(ValueError, fileError, "file-too-small")

    def test_schemaExampleOutsideExamples(self):
        """The <description/> of section 5 (a <code/>, not an <example/>)."""
        element = parseXml(
            "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>"
            "<media-type>text/plain</media-type><name>test.txt</name>"
            "<date>2015-07-26T21:46:00+01:00</date><size>6144</size>"
            "<hash xmlns='urn:xmpp:hashes:2' algo='sha-1'>%s</hash>"
            "</file></description>" % SHA1)
        value = FileDescription.fromElement(element)
        self.assertEqual(value.file.date, "2015-07-26T21:46:00+01:00")
        self.assertEqual(canonical(reparse(value.toElement())), canonical(element))


class HashTests(SynchronousTestCase):
    DATA = b"hello, world\n"

    def test_standard(self):
        digest = hashlib.sha256(self.DATA).digest()
        h = Hash.fromDigest("sha-256", digest)
        self.assertEqual(h.value, base64.b64encode(digest).decode())
        self.assertEqual(h.digest(), digest)
        element = reparse(h.toElement())
        self.assertEqual((element.uri, element["algo"]), (NS_HASHES, "sha-256"))

    def test_libervia(self):
        """Libervia 0.9: base64 of the hex digest (88 characters for sha-256)."""
        sha = hashlib.sha256(self.DATA)
        text = base64.b64encode(sha.hexdigest().encode()).decode()
        self.assertEqual(len(text), 88)
        self.assertEqual(rawDigest("sha-256", text), sha.digest())
        upper = base64.b64encode(sha.hexdigest().upper().encode()).decode()
        self.assertEqual(rawDigest("sha-256", upper), sha.digest())
        sha1 = hashlib.sha1(self.DATA)
        self.assertEqual(rawDigest("sha-1", base64.b64encode(
            sha1.hexdigest().encode()).decode()), sha1.digest())

    def test_bad(self):
        self.assertRaises(MalformedJingle, rawDigest, "sha-256", "")
        self.assertRaises(MalformedJingle, rawDigest, "sha-256", "not base64!")
        self.assertRaises(MalformedJingle, rawDigest, "sha-256",
                          base64.b64encode(b"x" * 31).decode())
        # 64 bytes that are not hex digits: not Libervia's form either.
        self.assertRaises(MalformedJingle, rawDigest, "sha-256",
                          base64.b64encode(b"x" * 64).decode())
        self.assertRaises(MalformedJingle, Hash.fromElement,
                          parseXml("<hash xmlns='%s'>AAAA</hash>" % NS_HASHES))
        self.assertRaises(MalformedJingle, Hash.fromElement,
                          parseXml("<hash xmlns='%s' algo='sha-1'>A!</hash>" % NS_HASHES))
        self.assertRaises(MalformedJingle, HashUsed.fromElement,
                          parseXml("<hash-used xmlns='%s'/>" % NS_HASHES))

    def test_unknownAlgorithm(self):
        self.assertEqual(rawDigest("x-new", base64.b64encode(b"abc").decode()), b"abc")

    def test_emptyHashInOffer(self):
        """An offer MAY carry an empty <hash algo/> (not computed yet)."""
        f = parseFile("<size>1</size><hash xmlns='%s' algo='sha-256'/>" % NS_HASHES)
        self.assertEqual(f.hashes, (Hash("sha-256", ""),))
        self.assertIsNone(f.hash())
        self.assertEqual(f.hashes[0].toElement().children, [])


class FileValidationTests(SynchronousTestCase):
    def test_bad(self):
        for body in ["<size>-1</size>", "<size>1k</size>", "<size>1</size><size>2</size>",
                     "<name>a</name><name>b</name>", "<date>yesterday</date>",
                     "<range offset='x'/>", "<range length='-1'/>",
                     "<range/><range/>", "<name><b/></name>"]:
            self.assertRaises(MalformedJingle, parseFile, body)

    def test_lenient(self):
        f = parseFile("<size>0</size><desc>one</desc><desc xml:lang='de'>eins</desc>"
                      "<thumbnail xmlns='urn:xmpp:thumbs:1' uri='cid:x'/>"
                      "<future/><date>2015-07-26</date>")
        self.assertEqual((f.size, f.desc, f.date), (0, "one", "2015-07-26"))
        self.assertEqual([e.element.name for e in f.extra], ["thumbnail", "future"])
        self.assertEqual(File.fromElement(reparse(f.toElement())), f)
        self.assertEqual(parseFile("<size>1</size>").offerProblems(),
                         "file offer without a <hash/> or <hash-used/>")

    def test_containers(self):
        self.assertRaises(MalformedJingle, FileDescription.fromElement,
                          parseXml("<description xmlns='%s'/>" % NS_JINGLE_FT))
        self.assertRaises(MalformedJingle, FileDescription.fromElement,
                          parseXml("<description xmlns='%s'><file/><file/></description>"
                                   % NS_JINGLE_FT))
        self.assertRaises(MalformedJingle, Checksum.fromElement,
                          parseXml("<checksum xmlns='%s'><file><name>a</name></file>"
                                   "</checksum>" % NS_JINGLE_FT))
        self.assertRaises(MalformedJingle, Received.fromElement,
                          parseXml("<received xmlns='%s' creator='me'/>" % NS_JINGLE_FT))
        self.assertEqual(Received.fromElement(parseXml(
            "<received xmlns='%s'/>" % NS_JINGLE_FT)), Received())


_texts = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Co")),
                 min_size=1, max_size=30).filter(lambda s: s.strip() == s)
_hashes = st.builds(lambda data: Hash.fromDigest("sha-256", hashlib.sha256(data).digest()),
                    st.binary(max_size=8))
_files = st.builds(
    File, name=st.one_of(st.none(), _texts), size=st.one_of(st.none(), st.integers(0, 2**63)),
    date=st.sampled_from([None, "1969-07-21T02:56:15Z", "2015-07-26T21:46:00+01:00"]),
    mediaType=st.one_of(st.none(), _texts), desc=st.one_of(st.none(), _texts),
    hashes=st.lists(_hashes, max_size=2).map(tuple),
    hashesUsed=st.lists(st.builds(HashUsed, st.sampled_from(["sha-256", "sha-1"])),
                        max_size=1).map(tuple),
    range=st.one_of(st.none(), st.builds(Range, st.one_of(st.none(), st.integers(0, 2**40)),
                                         st.one_of(st.none(), st.integers(0, 2**40)))))


class GeneratedTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(_files)
    def test_descriptionRoundTrip(self, f):
        value = FileDescription(f)
        self.assertEqual(FileDescription.fromElement(reparse(value.toElement())), value)

    @settings(max_examples=50, deadline=None)
    @given(_hashes, st.sampled_from([None, "initiator", "responder"]), st.one_of(
        st.none(), _texts))
    def test_checksumRoundTrip(self, h, creator, name):
        value = Checksum(File(hashes=(h,)), creator, name)
        self.assertEqual(Checksum.fromElement(reparse(value.toElement())), value)
        received = Received(creator, name)
        self.assertEqual(Received.fromElement(reparse(received.toElement())), received)
