"""
Knowing when a peer's XMPP session ends.

An in-band bytestream lives inside both parties' XMPP sessions.  When the
sender's session dies (crash, network, server kick) nothing in XEP-0047 tells
the receiver: its link would sit GOOD forever, which is exactly the "hangs
with no error" users hate.  XMPP has the mechanism already: an entity that
sent *directed presence* to someone is announced ``unavailable`` to them by
its server when it goes offline (RFC 6121 4.6.3).  So each side of an
in-band link sends its peer directed presence when the link comes up, and
an ``unavailable`` presence from a peer's full JID ends that peer's in-band
links with ERR.  (SOCKS5 links run over their own TCP connection and notice
a dead peer by themselves; they are left alone.)
"""

from __future__ import annotations

from typing import Callable, Set

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd.errors import NotConnected
from bytestreamd.xmpp.stanzas import Handler, parseJID

UNAVAILABLE = "/presence[@type='unavailable']"


class PeerPresence(Handler):
    """
    ``announce(peer)`` sends directed presence once per peer and session;
    ``offline(peer)`` is called with the full JID of a peer that went away.
    """

    def __init__(self, offline: Callable[[JID], None]):
        Handler.__init__(self)
        self._offline = offline
        self._announced: Set[str] = set()

    def connectionInitialized(self) -> None:
        self._announced = set()
        self.xmlstream.addObserver(UNAVAILABLE, self._onUnavailable)

    def announce(self, peer: JID) -> None:
        key = peer.full()
        if key in self._announced:
            return
        presence = domish.Element((None, "presence"))
        presence["to"] = key
        try:
            self.send(presence)
        except NotConnected:
            return
        self._announced.add(key)

    def _onUnavailable(self, presence: domish.Element) -> None:
        peer = parseJID(presence.getAttribute("from"))
        if peer is None or peer.resource is None:
            return
        self._announced.discard(peer.full())
        self._offline(peer)
