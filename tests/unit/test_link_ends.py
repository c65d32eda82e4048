"""ILinkEnd: its providers, and which one a link gets (bytestreamd.local.ends)."""

from __future__ import annotations

import bytestreamd.links  # noqa: F401  (import order: links before local)
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from bytestreamd.interfaces import ILinkEnd
from bytestreamd.local.ends import makeEnd
from bytestreamd.local.splice import Splice
from bytestreamd.local.stanzas import StanzaRelay


def test_providers():
    assert verifyClass(ILinkEnd, Splice)
    assert verifyClass(ILinkEnd, StanzaRelay)


def test_make_end_by_mode():
    ended = []
    for mode, kind in ((None, Splice), ("bytes", Splice), ("xmpp", StanzaRelay)):
        end = makeEnd(mode, ended.append, Clock(), 1024, 30.0)
        assert isinstance(end, kind) and verifyObject(ILinkEnd, end)


class _Stream:
    """What Splice.streamReady touches of a relayed (proxy65) stream."""

    relayed = True
    bytesSent = 0

    def __init__(self, e2e):
        if e2e:
            self.e2eFingerprint = "AB" * 32
        self.protocol = None

    def pauseProducing(self):
        pass

    def attachProtocol(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self)


class _Channel:
    onTail = None


def test_relayed_tail_kept_only_for_plain_links():
    """
    The in-band tail (docs/protocol.rst) would carry an e2e link's
    plaintext through the servers, and let them inject bytes into it:
    a relayed e2e link neither keeps its tail nor takes one.
    """
    from bytestreamd.links.lifecycle import LinkLifecycle
    for e2e in (False, True):
        splice = makeEnd("bytes" if e2e else None, lambda r: None, Clock(), 1024, 30.0)
        channel = _Channel()
        splice.streamReady(_Stream(e2e), LinkLifecycle(True, 30.0), channel)
        assert (splice._kept is None) == e2e
        assert (channel.onTail is None) == e2e
