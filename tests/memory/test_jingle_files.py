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


# --- a Libervia-shaped sender (a raw XMPP client) ---------------------------------


def _rawSet(client, to, xml):
    from tests.memory.test_jingle import _rawJingle
    return _rawJingle(client, to, xml)


def _ibb(client, to, child):
    from twisted.words.xish import domish
    iq = domish.Element((None, "iq"))
    iq["type"] = "set"
    iq["to"] = to
    iq.addChild(child)
    return client.request(iq)


def _libervia_sends(world, checksumOf):
    """
    carol sends a file as Libervia 0.9 does: ``<hash-used/>`` in the offer,
    an empty ``<desc/>``, IBB, then the checksum -- base64 of the *hex*
    digest of ``checksumOf`` -- after the data.  Returns bob's link events,
    the data, and what carol received.
    """
    import base64
    import hashlib
    from twisted.words.xish import domish
    bob = world.daemon("bob", allow="carol@%s" % world.domain, methods="ibb")
    watch = world.control(bob, watch=True)
    carol = world.xmppClient("carol", resource="libervia")
    data = payload(31, 10000)
    offer = (
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='lv1' "
        "initiator='%s'><content creator='initiator' name='c1' senders='initiator'>"
        "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>"
        "<date>2026-11-26T08:00:00Z</date><desc/><name>notes.txt</name><size>%d</size>"
        "<range/><hash-used xmlns='urn:xmpp:hashes:2' algo='sha-256'/></file></description>"
        "<transport xmlns='urn:xmpp:jingle:transports:ibb:1' sid='ibb9' block-size='4096'/>"
        "</content></jingle>" % (carol.jid.full(), len(data)))
    assert _rawSet(carol, bob.jid.full(), offer)["type"] == "result"
    event = watch.waitEvent(r"^650 OFFER ")
    assert (event.options["negotiation"], event.options["name"]) == ("jingle", "notes.txt")
    link = event.words[1]
    socket = watch.expect("ACCEPT %s" % link).get("socket")
    client = world.localClient(bob, socket)
    o = domish.Element(("http://jabber.org/protocol/ibb", "open"))
    o["sid"], o["block-size"], o["stanza"] = "ibb9", "4096", "iq"
    assert _ibb(carol, bob.jid.full(), o)["type"] == "result"
    for seq, start in enumerate(range(0, len(data), 4096)):
        d = domish.Element(("http://jabber.org/protocol/ibb", "data"))
        d["sid"], d["seq"] = "ibb9", str(seq)
        d.addContent(base64.b64encode(data[start:start + 4096]).decode())
        assert _ibb(carol, bob.jid.full(), d)["type"] == "result"
    c = domish.Element(("http://jabber.org/protocol/ibb", "close"))
    c["sid"] = "ibb9"
    assert _ibb(carol, bob.jid.full(), c)["type"] == "result"
    hexdigest = hashlib.sha256(checksumOf(data)).hexdigest()
    checksum = (
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='lv1'>"
        "<checksum xmlns='urn:xmpp:jingle:apps:file-transfer:5' creator='initiator' "
        "name='c1'><file><hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>%s</hash>"
        "</file></checksum></jingle>" % base64.b64encode(hexdigest.encode()).decode())
    assert _rawSet(carol, bob.jid.full(), checksum)["type"] == "result"
    end = watch.waitLinkState(link, ("CLOS", "ERR"))
    terminate = carol.waitStanza(
        lambda s: s.name == "iq" and any(
            c.name == "jingle" and c.getAttribute("action") == "session-terminate"
            for c in s.elements()))
    return end, data, client, terminate


def _reasonOf(terminate):
    jingle = [c for c in terminate.elements() if c.name == "jingle"][0]
    reason = [c for c in jingle.elements() if c.name == "reason"][0]
    return [c.name for c in reason.elements()]


def test_libervia_shaped_sender_verified(world):
    import hashlib
    end, data, client, terminate = _libervia_sends(world, lambda d: d)
    assert end.words[2] == "CLOS", end
    assert (end.options["verified"], end.options["sha256"]) == (
        "yes", hashlib.sha256(data).hexdigest()), end
    assert end.options["confirmed"] == "no"  # not a bytestreamd peer
    assert bytes(client.received) == data
    assert "success" in _reasonOf(terminate)
    infos = [j for s in world.router.routed("iq", child="{urn:xmpp:jingle:1}jingle")
             for j in [s.element.firstChildElement()]
             if j.getAttribute("action") == "session-info"
             and s.element.getAttribute("to", "").startswith("carol@")]
    assert [c.name for j in infos for c in j.elements()] == ["received"], infos


def test_libervia_shaped_sender_with_a_wrong_checksum(world):
    end, data, client, terminate = _libervia_sends(world, lambda d: d + b"x")
    assert end.options["verified"] == "no", end
    assert "failed-application" in _reasonOf(terminate)
