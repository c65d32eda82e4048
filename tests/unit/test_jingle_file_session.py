"""
FileStreamEnd on a fake stream and a fake session (task.Clock): what it
counts and hashes on each side, that the receiving side holds the stream's
end back from the link layer until the checksum is checked (then leaves
``endDetails`` for CLOS), that the grace timer lets it go unverified, and
the translator registered for XEP-0234.
"""

import hashlib

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.application import FileApplication, RangeAnswer
from bytestreamd.negotiation import jingle_apps
from bytestreamd.negotiation import jingle_file_session as FT
from bytestreamd.negotiation.jingle_file import checksumInfo
from bytestreamd.ns import NS_JINGLE_FT
from bytestreamd.wire.jingle_ft import File, FileDescription, Received

DATA = b"abc" * 5000
SHA = hashlib.sha256(DATA).digest()


class FakeSessionMachine:
    def __init__(self):
        self.infos = []

    def sendSessionInfo(self, payloads):
        self.infos.extend(payloads)
        return []


class FakeHost:
    """The parts of jingle_streams._StreamSession FileStreamEnd uses."""

    def __init__(self):
        self.clock = task.Clock()
        self.session = FakeSessionMachine()
        self.live = True
        self.terminated = []
        self.sid = "s1"
        self.peer = JID("peer@example.org/r")

    def perform(self, effects):
        pass

    def terminate(self, condition, text=None):
        self.terminated.append((condition, text))


class FakeStream:
    def __init__(self):
        self.written = []
        self.protocol = None

    def write(self, data):
        self.written.append(data)

    def writeSequence(self, seq):
        self.written.extend(seq)

    def attachProtocol(self, protocol):
        self.protocol = protocol


class Recorder:
    def __init__(self):
        self.calls = []

    def makeConnection(self, transport):
        self.calls.append("made")

    def dataReceived(self, data):
        self.calls.append(len(data))

    def connectionLost(self, reason):
        self.calls.append("lost")


def receiving(sha256=None, size=len(DATA)):
    host, stream = FakeHost(), FakeStream()
    end = FT.FileStreamEnd(host, FileApplication("f", size, sha256=sha256), "initiator",
                           "file", sending=False, size=size)
    end.watch(stream)
    inner = Recorder()
    stream.attachProtocol(inner)
    wrapped = stream.protocol
    wrapped.makeConnection(stream)
    for i in range(0, len(DATA), 4096):
        wrapped.dataReceived(DATA[i:i + 4096])
    return host, stream, end, inner, wrapped


class ReceivingTests(SynchronousTestCase):
    def test_end_is_held_until_the_checksum(self):
        host, stream, end, inner, wrapped = receiving()
        wrapped.connectionLost(None)
        self.assertNotIn("lost", inner.calls)  # held: no checksum yet
        end.sessionInfo([checksumInfo(SHA, "initiator", "file")])
        self.assertEqual(inner.calls[-1], "lost")
        self.assertEqual(stream.endDetails, (("verified", "yes"), ("sha256", SHA.hex())))
        self.assertEqual(host.terminated, [("success", None)])
        self.assertIsInstance(host.session.infos[0], Received)

    def test_offered_hash_lets_go_at_once(self):
        host, stream, end, inner, wrapped = receiving(sha256=SHA.hex())
        wrapped.connectionLost(None)
        self.assertEqual(inner.calls[-1], "lost")
        self.assertEqual(dict(stream.endDetails)["verified"], "yes")

    def test_no_checksum_lets_go_after_the_grace(self):
        host, stream, end, inner, wrapped = receiving()
        wrapped.connectionLost(None)
        host.clock.advance(4.9)
        self.assertNotIn("lost", inner.calls)
        host.clock.advance(0.2)
        self.assertEqual(inner.calls[-1], "lost")
        self.assertEqual(dict(stream.endDetails)["verified"], "unknown")
        self.assertEqual(host.terminated[0][0], "success")

    def test_mismatch_is_said_on_the_end(self):
        host, stream, end, inner, wrapped = receiving()
        wrapped.connectionLost(None)
        end.sessionInfo([checksumInfo(hashlib.sha256(b"x").digest(), "initiator", "file")])
        self.assertEqual(dict(stream.endDetails)["verified"], "no")
        self.assertEqual(host.terminated[0][0], "failed-application")

    def test_session_lost_lets_go(self):
        host, stream, end, inner, wrapped = receiving()
        wrapped.connectionLost(None)
        end.sessionEnded("connectivity-error", "XMPP connection lost", False)
        end.stop()
        self.assertEqual(inner.calls[-1], "lost")
        self.assertEqual(host.clock.getDelayedCalls(), [])


class SendingTests(SynchronousTestCase):
    def test_counts_what_is_written_and_sends_the_checksum(self):
        host, stream = FakeHost(), FakeStream()
        end = FT.FileStreamEnd(host, FileApplication("f", len(DATA)), "initiator", "file",
                               sending=True, size=len(DATA))
        end.watch(stream)
        inner = Recorder()
        stream.attachProtocol(inner)
        stream.write(DATA[:100])
        stream.writeSequence([DATA[100:200], DATA[200:]])
        self.assertEqual(b"".join(stream.written), DATA)
        stream.protocol.connectionLost(None)
        self.assertEqual(inner.calls[-1], "lost")  # never held on the sending side
        checksum = host.session.infos[0]
        self.assertEqual(checksum.hashes()[0].digest(), SHA)
        self.assertEqual((checksum.creator, checksum.name), ("initiator", "file"))
        host.clock.advance(10)
        self.assertEqual(host.terminated, [("success", None)])


class TranslatorTests(SynchronousTestCase):
    def test_registered_once_and_advertised(self):
        FT.register()
        self.assertEqual(jingle_apps.TRANSLATORS.count(FT.TRANSLATOR), 1)
        self.assertIn(NS_JINGLE_FT, jingle_apps.NAMESPACES)

    def test_files_only(self):
        description, name = jingle_apps.describe(FileApplication("a", 1))
        self.assertIsInstance(description, FileDescription)
        self.assertEqual(name, "file")
        self.assertEqual(jingle_apps.fromDescription(description),
                         FileApplication("a", 1, desc=None, range=False))
        self.assertIsNone(FT.checkedRange(None, None))
        app = FileApplication("a", 10)
        self.assertEqual(FT.checkedRange(app, None), RangeAnswer(0, None))
        self.assertEqual(FT.checkedRange(app, RangeAnswer(4, 3)), RangeAnswer(4, 3))
        self.assertRaises(ValueError, FT.checkedRange, app, RangeAnswer(11))

    def test_range_hooks_round_trip(self):
        offered, _ = jingle_apps.describe(FileApplication("a", 10, range=True))
        accepted = jingle_apps.answerDescription(offered, RangeAnswer(4))
        self.assertEqual(accepted.file.range.offset, 4)
        self.assertEqual(jingle_apps.rangeFromAnswer(accepted), RangeAnswer(4, None))
        whole = jingle_apps.answerDescription(offered, None)
        self.assertIsNone(jingle_apps.rangeFromAnswer(whole))

    def test_unusable_offer_is_a_value_error(self):
        bad = FileDescription(File(name="a"))  # no size, no hash
        self.assertRaises(ValueError, jingle_apps.fromDescription, bad)


class ForPeerTests(SynchronousTestCase):
    def test_bytestreamd_peer_gets_the_hashes_in_the_offer(self):
        from bytestreamd.ns import NS_JINGLE, NS_JINGLE_LINK
        md5 = hashlib.md5(DATA).hexdigest()
        app = FileApplication("f", len(DATA), hash=md5, sha256=SHA.hex())
        offered, _ = jingle_apps.describe(app)
        self.assertEqual(offered.file.hashes, ())  # to anyone: hash-used only
        ours = jingle_apps.descriptionForPeer(offered, app, {NS_JINGLE, NS_JINGLE_LINK,
                                                             NS_JINGLE_FT})
        self.assertEqual({h.algo: h.digest().hex() for h in ours.file.hashes},
                         {"md5": md5, "sha-256": SHA.hex()})
        self.assertEqual(jingle_apps.fromDescription(ours).hash, md5)
        libervia = jingle_apps.descriptionForPeer(offered, app, {NS_JINGLE, NS_JINGLE_FT})
        self.assertIs(libervia, offered)
        self.assertIs(jingle_apps.descriptionForPeer(offered, app, None), offered)

    def test_md5_alone_keeps_hash_used_for_the_checksum(self):
        from bytestreamd.negotiation.jingle_file import offerDescription
        md5 = hashlib.md5(DATA).hexdigest()
        f = offerDescription(FileApplication("f", 3, hash=md5), hashInOffer=True).file
        self.assertEqual([h.algo for h in f.hashes], ["md5"])
        self.assertEqual([u.algo for u in f.hashesUsed], ["sha-256"])
