"""
The table of Jingle sessions: routes each request to its session and
answers what no session can.

Sessions are keyed by (the peer's full JID, sid).  A request whose key
matches no live session is answered ``unknown-session`` (item-not-found):
whether the sid is unknown, the session ended (XEP-0166 section 6.7 says a
party that sent session-terminate MUST answer so), or the request comes
from any other full JID than the session's peer -- a stranger cannot touch
a session by guessing its sid, because its JID is part of the key.

Both parties initiating at once (XEP-0166 section 7.2.16, "no existing
session"): when a session-initiate arrives from a peer to whom our own
session-initiate is still unacknowledged and the two are functionally
equivalent, "the action with the lower of the two session IDs MUST overrule
the other action", lower by ``i;octet`` collation (bytes of the UTF-8), and
"in the unlikely event that the random session IDs are the same, the action
sent by the lower of the JabberIDs MUST overrule the other action".  If ours
wins we answer theirs ``tie-break`` (conflict); if theirs wins we take it
and our session ends with an event saying so (the peer answers ours with
``tie-break``).  "Functionally equivalent" is the caller's to define
(``equivalent``); by default, the same applications with equal
descriptions (:func:`sameApplications`).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from twisted.words.protocols.jabber.jid import JID

from bytestreamd.negotiation.jingle_effects import Effect, Refuse, Timeouts
from bytestreamd.negotiation.jingle_session import JingleSession, State
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle import Content, Jingle, payloadKey

Equivalent = Callable[[Jingle, Jingle], bool]


def sameApplications(ours: Jingle, theirs: Jingle) -> bool:
    """
    The default equivalence: the same applications asking for the same thing.
    A description we parse into a value (a link to a service, a file) must
    be equal, not just of the same namespace: two links to different
    services, or two files, crossing on the wire are two sessions that both
    should happen (a soak of links both ways lost OPENs to false
    tie-breaks).  A description we keep as XML compares by namespace.
    """
    def apps(j: Jingle):
        return sorted(repr(c.description) if dataclasses.is_dataclass(c.description)
                      and not isinstance(c.description, J.Opaque)
                      else payloadKey(c.description)[0]
                      for c in j.contents if c.description)
    return apps(ours) == apps(theirs)


def newSid() -> str:
    """A random session id: 16 hex digits (64 bits, RFC 4086's advice)."""
    return secrets.token_hex(8)


class JingleSessions:
    """
    Every live session of this client (``own``).  ``initiate`` starts one;
    ``receive`` takes every incoming Jingle request; timers and answers go
    straight to the session (``get``).  Ended sessions leave the table.
    """

    def __init__(self, own: JID, timeouts: Timeouts = Timeouts(),
                 equivalent: Equivalent = sameApplications,
                 sidFactory: Callable[[], str] = newSid):
        self.own = own
        self.timeouts = timeouts
        self.equivalent = equivalent
        self.sidFactory = sidFactory
        self._sessions: Dict[Tuple[str, str], JingleSession] = {}
        #: Our session-initiate of each of our PENDING sessions.
        self._offers: Dict[Tuple[str, str], Jingle] = {}

    def __iter__(self) -> Iterator[JingleSession]:
        self.collect()
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        self.collect()
        return len(self._sessions)

    def get(self, peer: JID, sid: str) -> Optional[JingleSession]:
        """The live session ``sid`` with ``peer``, for timers, answers and
        local commands."""
        self.collect()
        return self._sessions.get((peer.full(), sid))

    def initiate(self, peer: JID, contents: Sequence[Content],
                 sid: Optional[str] = None) -> Tuple[JingleSession, List[Effect]]:
        """Start a session with ``peer`` (a full JID)."""
        self.collect()
        sid = sid or self.sidFactory()
        if (peer.full(), sid) in self._sessions:
            raise ValueError("session %s with %s exists" % (sid, peer.full()))
        session, effects = JingleSession.initiate(self.own, peer, sid, contents,
                                                  self.timeouts)
        self._sessions[(peer.full(), sid)] = session
        self._offers[(peer.full(), sid)] = Jingle(J.SESSION_INITIATE, sid,
                                                  initiator=self.own,
                                                  contents=tuple(contents))
        return session, effects

    def receive(self, sender: JID, request: Jingle) -> List[Effect]:
        """
        A Jingle request from ``sender`` (the iq's full 'from').  The first
        effect answers it (Ack or Refuse).
        """
        self.collect()
        if request.action == J.SESSION_INITIATE:
            return self._initiated(sender, request)
        session = self._sessions.get((sender.full(), request.sid))
        if session is None:
            return [Refuse(J.UNKNOWN_SESSION, "no session %s with %s"
                           % (request.sid, sender.full()))]
        try:
            return session.receive(request)
        finally:
            self.collect()

    def _initiated(self, sender: JID, request: Jingle) -> List[Effect]:
        crossing = self._crossing(sender, request)
        existing = self._sessions.get((sender.full(), request.sid))
        if existing is not None and existing not in crossing:
            return [Refuse(J.OUT_OF_ORDER, "session %s with %s already exists"
                           % (request.sid, sender.full()))]
        for ours in crossing:
            if self._ourActionWins(ours.sid, request.sid, sender):
                return [Refuse(J.TIE_BREAK, "our session-initiate %s crossed yours and "
                               "wins (lower session id, or equal ids and lower JID)"
                               % ours.sid)]
        # Theirs wins over every crossing one of ours; end ours first, since
        # with equal sids ours holds the very key theirs needs.
        overruled: List[Effect] = []
        for ours in crossing:
            overruled.extend(ours.overruled(request.sid))
        self.collect()
        session, effects = JingleSession.incoming(self.own, sender, request, self.timeouts)
        self._sessions[(sender.full(), request.sid)] = session
        return effects + overruled

    def _crossing(self, sender: JID, request: Jingle) -> List[JingleSession]:
        """Our unacknowledged, equivalent session-initiates to ``sender``."""
        found = []
        for key, session in self._sessions.items():
            offer = self._offers.get(key)
            if (offer is not None and session.peer.full() == sender.full()
                    and session.state is State.PENDING
                    and not session.initiateAcknowledged
                    and self.equivalent(offer, request)):
                found.append(session)
        return found

    def _ourActionWins(self, ourSid: str, theirSid: str, sender: JID) -> bool:
        ours, theirs = ourSid.encode("utf-8"), theirSid.encode("utf-8")
        if ours != theirs:
            return ours < theirs
        return self.own.full().encode("utf-8") < sender.full().encode("utf-8")

    def collect(self) -> None:
        """
        Forget the sessions that have ended (by a request, a local command
        or a timer): from then on, their sid is an unknown session.
        """
        for key, session in list(self._sessions.items()):
            if session.state is State.ENDED:
                del self._sessions[key]
                self._offers.pop(key, None)
            elif session.state is not State.PENDING:
                self._offers.pop(key, None)
