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
