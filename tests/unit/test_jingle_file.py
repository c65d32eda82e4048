"""
XEP-0234 as an application: the neutral FileApplication <-> <description/>
(negotiation/jingle_file.py), the choice of Jingle or SI from disco, resume
ranges, and the end of a transfer (negotiation/jingle_file_end.py):
checksum after the data, received, who terminates and why, time bounds.
Libervia 0.9's forms (hash-used offer, base64-of-hex checksum) are the
shapes its plugin_xep_0234/0300 build.
"""

import base64
import hashlib

from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.application import FileApplication, RangeAnswer, fromControl
from bytestreamd.errors import SyntaxErrorInArgument
from bytestreamd.negotiation import jingle_file as JF
from bytestreamd.negotiation.jingle_file_end import (
    CHECKSUM_TIMER, END_TIMER, RECEIVER, SENDER, FileEnd, Outcome, SendInfo, StartTimer,
    StopTimer, StreamDigest, Terminate)
from bytestreamd.ns import (NS_HASHES, NS_JINGLE, NS_JINGLE_FT, NS_JINGLE_IBB,
                            NS_JINGLE_S5B, NS_SI, NS_SI_FILE_TRANSFER)
from bytestreamd.wire.jingle_ft import Checksum, FileDescription, Received
from tests.helpers import parseXml

DATA = b"0123456789" * 1000
SHA = hashlib.sha256(DATA).digest()
SHA_HEX = SHA.hex()
MD5_HEX = hashlib.md5(DATA).hexdigest()
STANDARD = base64.b64encode(SHA).decode()
LIBERVIA = base64.b64encode(SHA_HEX.encode()).decode()  # base64 of the hex digest

JINGLE_FEATURES = [NS_JINGLE, NS_JINGLE_FT, NS_JINGLE_IBB, NS_JINGLE_S5B]
SI_FEATURES = [NS_SI, NS_SI_FILE_TRANSFER]


def description(body: str) -> FileDescription:
    return FileDescription.fromElement(parseXml(
        "<description xmlns='%s'><file>%s</file></description>" % (NS_JINGLE_FT, body)))


def reparsed(value) -> FileDescription:
    return FileDescription.fromElement(parseXml(value.toElement().toXml()))


def liberviaOffer(extra: str = "") -> FileDescription:
    """What Libervia 0.9's sender puts in its session-initiate."""
    return description(
        "<date>2026-11-26T07:51:27Z</date><desc></desc><media-type>application/octet-stream"
        "</media-type><name>data.bin</name><size>%d</size><range/>"
        "<hash-used xmlns='%s' algo='sha-256'/>%s" % (len(DATA), NS_HASHES, extra))


def liberviaChecksum(value: str = LIBERVIA) -> Checksum:
    return Checksum.fromElement(parseXml(
        "<checksum xmlns='%s' creator='initiator' name='c0'><file>"
        "<hash xmlns='%s' algo='sha-256'>%s</hash></file></checksum>"
        % (NS_JINGLE_FT, NS_HASHES, value)))


class OfferTests(SynchronousTestCase):
    def test_offer_announces_sha256_and_always_has_a_desc(self):
        app = FileApplication("report.pdf", 42, date="2026-11-26T07:00:00Z", range=True,
                              sha256=SHA_HEX)
        d = reparsed(JF.offerDescription(app))
        f = d.file
        self.assertEqual((f.name, f.size, f.date, f.desc, f.mediaType),
                         ("report.pdf", 42, "2026-11-26T07:00:00Z", "", "application/pdf"))
        self.assertEqual([u.algo for u in f.hashesUsed], ["sha-256"])
        self.assertEqual(f.hashes, ())
        self.assertIsNotNone(f.range)
        self.assertIsNone(f.range.offset)
        self.assertIsNone(f.offerProblems())

    def test_offer_with_the_standard_hash_on_request(self):
        app = FileApplication("a.bin", len(DATA), sha256=SHA_HEX, desc="noise")
        f = reparsed(JF.offerDescription(app, hashInOffer=True)).file
        self.assertEqual(f.hash("sha-256").value, STANDARD)
        self.assertEqual(f.hashesUsed, ())
        self.assertIsNone(f.range)
        self.assertEqual(f.desc, "noise")

    def test_round_trip_through_the_neutral_value(self):
        app = FileApplication("a.bin", len(DATA), sha256=SHA_HEX, desc="d", range=True,
                              date="2026-01-02")
        back = JF.applicationOf(reparsed(JF.offerDescription(app, hashInOffer=True)))
        self.assertEqual(back, app)

    def test_libervia_offer_is_taken(self):
        app = JF.applicationOf(liberviaOffer())
        self.assertEqual((app.name, app.size, app.range, app.sha256, app.desc, app.hash),
                         ("data.bin", len(DATA), True, None, None, None))
        self.assertIn(("size", str(len(DATA))), app.offerDetails())

    def test_both_hash_forms_become_hex(self):
        for value in (STANDARD, LIBERVIA):
            app = JF.applicationOf(description(
                "<name>x</name><size>1</size><hash xmlns='%s' algo='sha-256'>%s</hash>"
                "<hash xmlns='%s' algo='md5'>%s</hash>"
                % (NS_HASHES, value, NS_HASHES,
                   base64.b64encode(bytes.fromhex(MD5_HEX)).decode())))
            self.assertEqual((app.sha256, app.hash), (SHA_HEX, MD5_HEX))
            self.assertIn(("sha256", SHA_HEX), app.offerDetails())

    def test_unusable_offers(self):
        cases = {
            "<name>x</name><size>1</size>": "hash",
            "<name>x</name><hash-used xmlns='%s' algo='sha-256'/>" % NS_HASHES: "size",
            "<size>1</size><hash-used xmlns='%s' algo='sha-256'/>" % NS_HASHES: "name",
            "<name>x</name><size>1</size><hash xmlns='%s' algo='sha-256'>%s</hash>"
            % (NS_HASHES, base64.b64encode(b"short").decode()): "sha-256",
        }
        for body, word in cases.items():
            with self.assertRaises(JF.FileOfferError) as e:
                JF.applicationOf(description(body))
            self.assertIn(word, str(e.exception))


class RangeTests(SynchronousTestCase):
    def test_resume_asks_for_the_rest(self):
        offer = liberviaOffer()
        accepted = reparsed(JF.acceptDescription(offer, RangeAnswer(4000)))
        self.assertEqual((accepted.file.range.offset, accepted.file.range.length), (4000, None))
        self.assertEqual(accepted.file.name, "data.bin")
        self.assertEqual(JF.rangeOfAccept(accepted, len(DATA)), RangeAnswer(4000, None))

    def test_whole_file_without_a_range(self):
        offer = liberviaOffer()
        for answer in (None, RangeAnswer(0, None)):
            accepted = reparsed(JF.acceptDescription(offer, answer))
            self.assertIsNone(accepted.file.range)
            self.assertEqual(JF.rangeOfAccept(accepted, len(DATA)), RangeAnswer(0, None))
        self.assertEqual(JF.rangeOfAccept(None, 5), RangeAnswer(0, None))

    def test_offset_and_length(self):
        accepted = reparsed(JF.acceptDescription(liberviaOffer(), RangeAnswer(10, 20)))
        self.assertEqual(JF.rangeOfAccept(accepted, len(DATA)), RangeAnswer(10, 20))

    def test_range_outside_the_file_is_refused(self):
        for answer in (RangeAnswer(len(DATA) + 1), RangeAnswer(len(DATA) - 5, 6)):
            accepted = JF.acceptDescription(liberviaOffer(), answer)
            self.assertRaises(JF.FileOfferError, JF.rangeOfAccept, accepted, len(DATA))


class ControlTests(SynchronousTestCase):
    def test_open_takes_sha256(self):
        app = fromControl("file", None, {"name": "a", "size": "3", "sha256": SHA_HEX.upper()})
        self.assertEqual(app.sha256, SHA_HEX)
        self.assertRaises(SyntaxErrorInArgument, fromControl, "file", None,
                          {"name": "a", "size": "3", "sha256": "abc"})


def digestOf(data: bytes) -> StreamDigest:
    d = StreamDigest()
    for i in range(0, len(data), 333):
        d.update(data[i:i + 333])
    return d


def kinds(effects):
    return [type(e).__name__ for e in effects]


def outcome(effects) -> Outcome:
    found = [e for e in effects if isinstance(e, Outcome)]
    assert len(found) == 1, effects
    return found[0]


class StreamDigestTests(SynchronousTestCase):
    def test_counts_and_hashes(self):
        d = digestOf(DATA)
        self.assertEqual((d.count, d.digest()), (len(DATA), SHA))
        self.assertRaises(ValueError, StreamDigest, "crc32")


class SenderEndTests(SynchronousTestCase):
    def sender(self, **kw) -> FileEnd:
        return FileEnd(SENDER, "initiator", "c0", len(DATA), **kw)

    def test_checksum_after_the_data_then_the_receiver_ends(self):
        end = self.sender()
        effects = end.dataDone(len(DATA), "sha-256", SHA)
        self.assertEqual(kinds(effects), ["SendInfo", "StartTimer"])
        checksum = reparsed_checksum(effects[0].payload)
        self.assertEqual((checksum.creator, checksum.name), ("initiator", "c0"))
        self.assertEqual(checksum.file.hashes[0].value, STANDARD)
        self.assertEqual(effects[1], StartTimer(END_TIMER, 10.0))
        self.assertEqual(end.sessionInfo(Received("initiator", "c0")), [])
        self.assertTrue(end.received)
        effects = end.sessionEnded("success")
        self.assertEqual(kinds(effects), ["StopTimer", "Outcome"])
        o = outcome(effects)
        self.assertEqual((o.ok, o.verified, o.digest), (True, None, SHA_HEX))
        self.assertEqual(end.sessionEnded("success"), [])

    def test_receiver_that_never_ends_is_ended_for(self):
        end = self.sender(endGrace=3)
        end.dataDone(len(DATA), "sha-256", SHA)
        self.assertEqual(end.timerExpired("other"), [])
        effects = end.timerExpired(END_TIMER)
        self.assertEqual(effects[0], Terminate("success", None))
        self.assertIn("did not end the session within 3s", outcome(effects).reason)
        self.assertTrue(outcome(effects).ok)

    def test_short_transport_fails(self):
        effects = self.sender().dataDone(10, "sha-256", SHA)
        self.assertEqual(effects[0], Terminate("failed-transport", "sent 10 of %d bytes"
                                               % len(DATA)))
        self.assertFalse(outcome(effects).ok)

    def test_receiver_refusing_is_a_failure(self):
        end = self.sender()
        end.dataDone(len(DATA), "sha-256", SHA)
        effects = end.sessionEnded("failed-application", "sha-256 mismatch")
        o = outcome(effects)
        self.assertFalse(o.ok)
        self.assertIn("failed-application: sha-256 mismatch", o.reason)

    def test_no_checksum_when_the_offer_had_the_hash(self):
        effects = self.sender(sendChecksum=False).dataDone(len(DATA), "sha-256", SHA)
        self.assertEqual(kinds(effects), ["StartTimer"])


def reparsed_checksum(value: Checksum) -> Checksum:
    return Checksum.fromElement(parseXml(value.toElement().toXml()))


class ReceiverEndTests(SynchronousTestCase):
    def receiver(self, offered=None, **kw) -> FileEnd:
        return FileEnd(RECEIVER, "initiator", "c0", len(DATA), offered=offered, **kw)

    def assertVerified(self, effects):
        self.assertEqual(kinds(effects)[-3:], ["SendInfo", "Terminate", "Outcome"])
        self.assertIsInstance(effects[-3].payload, Received)
        self.assertEqual(effects[-2], Terminate("success", None))
        o = outcome(effects)
        self.assertEqual((o.ok, o.verified, o.digest), (True, True, SHA_HEX))
        self.assertIn(("sha256", SHA_HEX), o.details())
        self.assertIn(("verified", "yes"), o.details())

    def test_offered_hash_checks_at_once(self):
        end = self.receiver({"sha-256": SHA})
        self.assertVerified(end.dataDone(len(DATA), "sha-256", SHA))

    def test_libervia_checksum_after_the_data(self):
        end = self.receiver()
        effects = end.dataDone(len(DATA), "sha-256", SHA)
        self.assertEqual(effects, [StartTimer(CHECKSUM_TIMER, 5.0)])
        effects = end.sessionInfo(liberviaChecksum())
        self.assertEqual(kinds(effects)[0], "StopTimer")
        self.assertVerified(effects)

    def test_standard_checksum_before_the_data_ends(self):
        end = self.receiver()
        self.assertEqual(end.sessionInfo(liberviaChecksum(STANDARD)), [])
        self.assertVerified(end.dataDone(len(DATA), "sha-256", SHA))

    def test_checksum_for_another_content_is_ignored(self):
        end = self.receiver()
        end.dataDone(len(DATA), "sha-256", SHA)
        other = Checksum(liberviaChecksum().file, "initiator", "other")
        self.assertEqual(end.sessionInfo(other), [])
        self.assertFalse(end.done)

    def test_mismatch_fails_the_application(self):
        end = self.receiver()
        end.dataDone(len(DATA), "sha-256", hashlib.sha256(b"other").digest())
        effects = end.sessionInfo(liberviaChecksum())
        term = [e for e in effects if isinstance(e, Terminate)][0]
        self.assertEqual(term.condition, "failed-application")
        self.assertIn(SHA_HEX, term.text)
        o = outcome(effects)
        self.assertEqual((o.ok, o.verified), (False, False))

    def test_no_checksum_in_time_is_success_unverified(self):
        end = self.receiver(checksumGrace=2)
        end.dataDone(len(DATA), "sha-256", SHA)
        effects = end.timerExpired(CHECKSUM_TIMER)
        self.assertEqual(effects[0], Terminate("success", "no checksum within 2s: not verified"))
        o = outcome(effects)
        self.assertEqual((o.ok, o.verified), (True, None))
        self.assertIn(("verified", "unknown"), o.details())
        self.assertEqual(end.sessionInfo(liberviaChecksum()), [])

    def test_missing_bytes_fail_the_transport(self):
        effects = self.receiver({"sha-256": SHA}).dataDone(7, "sha-256", SHA)
        self.assertEqual(effects[0].condition, "failed-transport")
        self.assertFalse(outcome(effects).ok)

    def test_a_range_is_not_checked_against_the_whole_file_hash(self):
        end = FileEnd(RECEIVER, "initiator", "c0", 100, offered={"sha-256": SHA}, whole=False)
        effects = end.dataDone(100, "sha-256", hashlib.sha256(DATA[:100]).digest())
        self.assertEqual(effects, [StartTimer(CHECKSUM_TIMER, 5.0)])

    def test_peer_ending_early_is_a_failure(self):
        end = self.receiver()
        effects = end.sessionEnded("cancel", "user cancelled")
        o = outcome(effects)
        self.assertFalse(o.ok)
        self.assertIn("cancel: user cancelled", o.reason)

    def test_unreadable_checksum_waits_for_the_timer(self):
        end = self.receiver()
        end.dataDone(len(DATA), "sha-256", SHA)
        bad = liberviaChecksum(base64.b64encode(b"x" * 10).decode())
        self.assertEqual(end.sessionInfo(bad), [])
        self.assertFalse(end.done)

    def test_role_checked(self):
        self.assertRaises(ValueError, FileEnd, "both", "initiator", "c0", 1)

    def test_effect_types_are_values(self):
        self.assertEqual(StopTimer("x"), StopTimer("x"))
        self.assertEqual(SendInfo(Received()), SendInfo(Received()))


class RangeChecksumTests(SynchronousTestCase):
    def test_checksum_of_a_range_is_inside_the_range(self):
        part = DATA[4000:]
        digest = hashlib.sha256(part).digest()
        end = FileEnd(SENDER, "initiator", "c0", len(part), whole=False,
                      sentRange=RangeAnswer(4000, None))
        effects = end.dataDone(len(part), "sha-256", digest)
        checksum = reparsed_checksum(effects[0].payload)
        self.assertEqual(checksum.file.hashes, ())
        self.assertEqual((checksum.file.range.offset, checksum.file.range.length), (4000, None))
        self.assertEqual(checksum.hashes()[0].digest(), digest)
        receiver = FileEnd(RECEIVER, "initiator", "c0", len(part), whole=False)
        receiver.dataDone(len(part), "sha-256", digest)
        self.assertTrue(outcome(receiver.sessionInfo(checksum)).verified)

    def test_whole_file_checksum_has_no_range(self):
        c = JF.checksumInfo(SHA, "initiator", "c0", sentRange=RangeAnswer(0, None))
        self.assertIsNone(c.file.range)
        self.assertEqual(c.file.hashes[0].value, STANDARD)
