"""
The XMPP server goes away mid-transfer (a private Prosody, so other tests
are not disturbed): the running link ends ERR with a reason, the daemon
reports the disconnection, reconnects by itself, and a new link works.
"""

from __future__ import annotations

import pytest

from .harness.flows import MiB, acceptNextOffer, openLink, transferFile
from .harness.transfer import SocketPump, ThrottledWriter, waitGone


def _serverEvent(ctl, state, timeout):
    return ctl.waitEvent(lambda e: e.words[:2] == ["SERVER", state], timeout)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["restart", "kill"])
def test_server_lost_mid_transfer(privateProsody, privateDaemons, tmp_path, how):
    alice = privateDaemons("alice", accept="bob@localhost")
    bob = privateDaemons("bob", accept="alice@localhost")
    aliceWatch = alice.control(watch=True)
    bobWatch = bob.control(watch=True)
    ctl = alice.control()

    linkId, path = openLink(ctl, bob.jid, "methods=ibb")
    writer = ThrottledWriter(path)
    _, bobLink, bobPath = acceptNextOffer(bobWatch, alice.bareJID)
    reader = SocketPump(bobPath)
    good = ctl.waitLinkState(linkId, ("GOOD", "BAD", "ERR", "CLOS"), 30)
    assert good.words[2] == "GOOD", ctl.linkEvents(linkId)
    assert reader.waitReceived(256 * 1024, 30), "no data flowed before the restart"

    if how == "kill":
        privateProsody.kill()  # connections reset, no stream close
    else:
        privateProsody.stop()  # clean stream close from the server
    try:
        end = ctl.waitLinkState(linkId, ("ERR", "CLOS", "BAD"), 30)
        assert end.words[2] == "ERR", ctl.linkEvents(linkId)
        assert end.options.get("reason"), "ERR without reason: %r" % end
        bobEnd = bobWatch.waitLinkState(bobLink, ("ERR", "CLOS", "BAD"), 30)
        assert bobEnd.words[2] == "ERR" and bobEnd.options.get("reason"), \
            bobWatch.linkEvents(bobLink)
        assert _serverEvent(aliceWatch, "disconnected", 30)
        assert reader.waitEOF(15), "bob's local client was not closed after ERR"
        assert waitGone(path, 10) and waitGone(bobPath, 10), "link sockets left behind"
    finally:
        writer.stop()
        reader.close()
        if not privateProsody.running:
            privateProsody.start()

    # the daemon comes back by itself (reconnect with backoff)
    assert _serverEvent(aliceWatch, "connected", 60)
    _serverEvent(bobWatch, "connected", 60)
    alice.waitConnected(30, ctl)
    bob.waitConnected(30, bob.ctl)
    aliceWatch.close()
    bobWatch.close()
    transferFile(alice, bob, tmp_path, 1 * MiB, "methods=ibb", "ibb", timeout=60)
