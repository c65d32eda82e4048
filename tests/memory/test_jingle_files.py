"""
XEP-0234 file transfer between two real daemons in the memory tier: the
offer goes out as Jingle (the peer advertises urn:xmpp:jingle:apps:
file-transfer:5), the receiver sees the file's fields in OFFER, the bytes
cross, the sender's checksum follows the data, the receiver checks it,
says ``received`` and ends the session ``success``; a resume asks for the
rest with ``<range offset/>`` in session-accept.
"""

from __future__ import annotations

from tests.memory.test_truth import daemons, payload


def fileOffer(world, alice, bob, data, extra=""):
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=ibb profile=file name=notes.txt size=%d "
                        "desc=notes range=yes%s" % (bob.jid.full(), len(data), extra))
    offer = watch.waitEvent(r"^650 OFFER ")
    return ctl, watch, opened.get("link"), opened.get("socket"), offer


def fileLines(world, who):
    return [line for line in world.log if "file transfer" in line and who in line]


def test_file_over_jingle_checked_by_the_receiver(world):
    alice, bob = daemons(world, "ibb")
    data = payload(21, 150000)
    ctl, watch, linkA, socketA, offer = fileOffer(world, alice, bob, data)
    o = offer.options
    assert (o["negotiation"], o["name"], o["size"], o["desc"], o["range"]) == (
        "jingle", "notes.txt", str(len(data)), "notes", "yes"), offer
    assert "sha256" not in o  # announced (hash-used), sent after the data
    linkB = offer.words[1]
    socketB = watch.expect("ACCEPT %s" % linkB).get("socket")
    assert ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR")).words[2] == "GOOD"
    a, b = world.localClient(alice, socketA), world.localClient(bob, socketB)
    a.write(data)
    a.writeEOF()
    b.waitReceived(len(data))
    assert bytes(b.received) == data
    world.runUntil(lambda: not alice.jingle._live and not bob.jingle._live, 30,
                   "both sessions ended")
    got = "\n".join(world.log)
    assert "received %d bytes, sha-256 checked" % len(data) in got, world.log[-30:]
    assert "the peer ended the session: success" in got, world.log[-30:]


def test_resume_asks_for_the_rest(world):
    alice, bob = daemons(world, "ibb")
    data = payload(22, 90000)
    ctl, watch, linkA, socketA, offer = fileOffer(world, alice, bob, data)
    linkB = offer.words[1]
    socketB = watch.expect("ACCEPT %s offset=60000" % linkB).get("socket")
    good = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    assert good.words[2] == "GOOD" and good.options.get("offset") == "60000", good
    a, b = world.localClient(alice, socketA), world.localClient(bob, socketB)
    a.write(data[60000:])
    a.writeEOF()
    b.waitReceived(30000)
    assert bytes(b.received) == data[60000:]
    world.runUntil(lambda: not alice.jingle._live and not bob.jingle._live, 30,
                   "both sessions ended")
    got = "\n".join(world.log)
    # a range is checked by the checksum of the range, which the sender sends
    assert "received 30000 bytes, sha-256 checked" in got, world.log[-30:]



def test_between_daemons_clos_is_confirmed_before_the_verdict(world):
    """
    Between two bytestreamd the end confirmation (urn:x-bytestreamd:end:0)
    already proves the byte count, and CLOS says ``confirmed=yes`` as soon
    as it arrives -- before the checksum is checked, so CLOS has no
    ``verified=`` here; the verdict is the session's (logged, and a
    mismatch would end it failed-application).  With a peer that has no
    end confirmation (Libervia), CLOS waits for the verdict and carries it
    (tests/integration/test_libervia.py).
    """
    alice, bob = daemons(world, "ibb")
    data = payload(23, 70000)
    ctl, watch, linkA, socketA, offer = fileOffer(world, alice, bob, data)
    linkB = offer.words[1]
    socketB = watch.expect("ACCEPT %s" % linkB).get("socket")
    assert ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR")).words[2] == "GOOD"
    a, b = world.localClient(alice, socketA), world.localClient(bob, socketB)
    a.write(data)
    a.writeEOF()
    end = watch.waitLinkState(linkB, ("CLOS", "ERR"))
    assert (end.words[2], end.options["confirmed"]) == ("CLOS", "yes"), end
    assert bytes(b.received) == data
    world.runUntil(lambda: not bob.jingle._live, 30, "the session ended")
    assert any("received 70000 bytes, sha-256 checked" in line for line in world.log)
