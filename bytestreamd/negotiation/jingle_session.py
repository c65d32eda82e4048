"""
One XEP-0166 session as a sans-I/O state machine.

States (XEP-0166 section 5.1): PENDING (from session-initiate), ACTIVE (from
session-accept), ENDED (session-terminate sent or received, or a timeout).
Each content also has a transport state (:class:`TransportState`):
NEGOTIATING until the caller reports ``transportEstablished``, REPLACING
while our transport-replace waits for an answer, REPLACE_OFFERED while the
peer's waits for ours, ESTABLISHED.  The contents and transports half is
:mod:`bytestreamd.negotiation.jingle_contents`; this module is the session
half (initiate, accept, terminate, informational messages, answers, time).

Inputs are the peer's requests, already decoded and already known to come
from the session's peer (:meth:`JingleSession.receive`; the routing and
``unknown-session`` are :mod:`bytestreamd.negotiation.jingle_sessions`'s),
local commands (``accept``, ``terminate``, ``replaceTransport``...), the
answers to our own requests (``acknowledged``, ``requestFailed``) and
``timerExpired``.  Each returns a list of effects
(:mod:`bytestreamd.negotiation.jingle_effects`).

Rules kept here:

* every request is answered at once, first: Ack, or Refuse with
  ``out-of-order`` (session-accept when not PENDING, or to the responder;
  transport-accept/-reject without our transport-replace; content-accept/
  -reject without our content-add), ``tie-break`` (crossing transport-replace:
  XEP-0166 section 7.2.16, the initiator's wins), ``unsupported-info`` (an
  informational payload nobody registered a codec for) or ``bad-request``;
* a peer that answers our transport-replace with session-accept instead of
  transport-accept (Gajim) is taken as having accepted it;
* sending session-terminate ENDs the session at once (section 6.7): nobody
  waits for its answer, which Libervia 0.9 never sends for a session it
  already ended;
* every waiting state is bounded (:class:`Timeouts`) and ends with reason
  ``timeout`` (``expired`` for the lifetime) and words naming what did not
  happen -- except our content-add not answered, or the transport of one
  content of several, which removes that content alone.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from twisted.words.protocols.jabber.jid import JID

from bytestreamd.negotiation.jingle_contents import (
    ContentKey, ContentNegotiation, State, TransportState, _name)
from bytestreamd.negotiation.jingle_effects import (
    Ack, Effect, Refuse, SessionStateError, Timeouts)
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle import Content, Jingle, Opaque, Payload, Reason

__all__ = ["ContentKey", "JingleSession", "State", "TransportState"]


def _unknownPayloads(j: Jingle) -> List[str]:
    """``{ns}name`` of every payload of ``j`` no codec understood."""
    payloads: List[Payload] = list(j.info)
    for c in j.contents:
        payloads.extend(p for p in (c.description, c.transport, c.security) if p)
    return ["{%s}%s" % p.key for p in payloads if isinstance(p, Opaque)]


class JingleSession(ContentNegotiation):
    """
    One session with one peer.  Build it with :meth:`initiate` or
    :meth:`incoming`; both return the session and its first effects.
    """

    def __init__(self, own: JID, peer: JID, sid: str, role: str,
                 contents: Sequence[Content], timeouts: Timeouts):
        ContentNegotiation.__init__(self, own, peer, sid, role, contents, timeouts)
        #: Our session-initiate has been acknowledged (for the tie-break window).
        self.initiateAcknowledged = False

    # --- construction ---------------------------------------------------------

    @classmethod
    def initiate(cls, own: JID, peer: JID, sid: str, contents: Sequence[Content],
                 timeouts: Timeouts = Timeouts()) -> Tuple["JingleSession", List[Effect]]:
        session = cls(own, peer, sid, J.INITIATOR, contents, timeouts)
        session._send(Jingle(J.SESSION_INITIATE, sid, initiator=own,
                             contents=tuple(contents)))
        session._startCommon()
        session._start("pending", timeouts.pending,
                       "no session-accept from %s within %gs" % (peer.full(), timeouts.pending))
        return session, session._flush()

    @classmethod
    def incoming(cls, own: JID, peer: JID, request: Jingle,
                 timeouts: Timeouts = Timeouts()) -> Tuple["JingleSession", List[Effect]]:
        """A session-initiate from ``peer`` (its 'from'; the 'initiator'
        attribute is ignored, as XEP-0166 section 7.1 allows)."""
        session = cls(own, peer, request.sid, J.RESPONDER, request.contents, timeouts)
        session._out.append(Ack())
        session._startCommon()
        session._start("pending", timeouts.pending,
                       "the offer was neither accepted nor declined here within %gs"
                       % timeouts.pending)
        session._event("incoming", "session-initiate from %s with %s"
                       % (peer.full(), ", ".join(_name(k) for k in session.contents)),
                       request)
        return session, session._flush()

    def _startCommon(self) -> None:
        if self.timeouts.lifetime is not None:
            self._start("lifetime", self.timeouts.lifetime,
                        "the session reached its lifetime of %gs" % self.timeouts.lifetime)

    def _end(self, reason: str, j: Optional[Jingle] = None) -> None:
        for name in list(self._timers):
            self._stop(name)
        self.state = State.ENDED
        self._event("ended", reason, j)

    # --- the peer's requests ------------------------------------------------------

    def receive(self, j: Jingle) -> List[Effect]:
        """A request from the session's peer; the first effect answers it."""
        if self.state is State.ENDED:
            return [Refuse(J.UNKNOWN_SESSION, "session %s has ended" % self.sid)]
        if j.action == J.SESSION_INITIATE:
            return [Refuse(J.OUT_OF_ORDER, "session %s already exists" % self.sid)]
        unknown = _unknownPayloads(j)
        if unknown and j.action in (J.SESSION_INFO, J.DESCRIPTION_INFO,
                                    J.SECURITY_INFO, J.TRANSPORT_INFO):
            return [Refuse(J.UNSUPPORTED_INFO, "%s payload %s is not supported"
                           % (j.action, ", ".join(unknown)))]
        handler = getattr(self, "_on_" + j.action.replace("-", "_"))
        refusal = handler(j)
        if refusal is not None:
            self._out = []
            return [refusal]
        return [Ack()] + self._flush()

    def _on_session_accept(self, j: Jingle) -> Optional[Refuse]:
        if self.role == J.RESPONDER:
            return Refuse(J.OUT_OF_ORDER, "session-accept sent to the responder")
        if self.state is State.ACTIVE:
            return self._acceptAsTransportAccept(j)
        refusal = self._unknownContents(j)
        if refusal:
            return refusal
        for c in j.contents:
            ours = self.contents[c.key]
            self.contents[c.key] = Content(
                ours.creator, ours.name, c.senders or ours.senders, ours.disposition,
                c.description or ours.description, c.transport, ours.security)
        self._activate()
        self._event("accepted", "%s accepted the session" % self.peer.full(), j)
        return None

    def _acceptAsTransportAccept(self, j: Jingle) -> Optional[Refuse]:
        """Gajim answers a transport-replace with session-accept: tolerated
        when each content carries the transport namespace we proposed."""
        keys = [c.key for c in j.contents]
        if not keys or any(
                self.transports.get(c.key) is not TransportState.REPLACING
                or c.transport is None
                or J.payloadKey(c.transport) != J.payloadKey(self.replacements[c.key])
                for c in j.contents):
            return Refuse(J.OUT_OF_ORDER, "session-accept while the session is active")
        for c in j.contents:
            self._replaced(c, "%s accepted the transport-replace of content %s "
                              "(with a session-accept, tolerated)"
                           % (self.peer.full(), _name(c.key)), j)
        return None

    def _activate(self) -> None:
        self.state = State.ACTIVE
        self._stop("pending")
        for key, state in self.transports.items():
            if state is TransportState.NEGOTIATING:
                self._negotiate(key)

    def _on_session_terminate(self, j: Jingle) -> Optional[Refuse]:
        why = j.reason.describe() if j.reason else "no reason given"
        self._end("%s ended the session: %s" % (self.peer.full(), why), j)
        return None

    def _on_session_info(self, j: Jingle) -> Optional[Refuse]:
        if j.info:  # an empty one is a ping: nothing happens
            self._event("session-info", "session-info from %s: %s" % (
                self.peer.full(), ", ".join("{%s}%s" % J.payloadKey(p) for p in j.info)), j)
        return None

    def _on_description_info(self, j: Jingle) -> Optional[Refuse]:
        self._event("description-info", "description-info from %s" % self.peer.full(), j)
        return None

    def _on_security_info(self, j: Jingle) -> Optional[Refuse]:
        # Only reached without payloads; we have no security preconditions.
        return Refuse(J.UNSUPPORTED_INFO, "no security preconditions are supported")

    def accept(self, contents: Optional[Sequence[Content]] = None) -> List[Effect]:
        """The responder accepts; ``contents`` may narrow the transports
        (e.g. a smaller IBB block-size)."""
        self._require([State.PENDING], "accept")
        if self.role != J.RESPONDER:
            raise SessionStateError("only the responder accepts a session")
        for c in contents or ():
            self._content(c.key)
            self.contents[c.key] = c
        self._send(Jingle(J.SESSION_ACCEPT, self.sid, responder=self.own,
                          contents=tuple(self.contents.values())))
        self._activate()
        self._event("accepted", "we accepted the session")
        return self._flush()

    def terminate(self, condition: str, text: Optional[str] = None) -> List[Effect]:
        """End the session now (no effect if it already ended)."""
        if self.state is not State.ENDED:
            self._terminate(Reason(condition, text))
        return self._flush()

    def _terminate(self, reason: Reason) -> None:
        self._send(Jingle(J.SESSION_TERMINATE, self.sid, reason=reason))
        self._end("we ended the session: %s" % reason.describe())

    def sendSessionInfo(self, payloads: Sequence[Payload] = ()) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "send session-info in")
        self._send(Jingle(J.SESSION_INFO, self.sid, info=tuple(payloads)))
        return self._flush()

    # --- answers to our requests, and time --------------------------------------------

    def acknowledged(self, sent: Jingle) -> List[Effect]:
        """Our request ``sent`` got its iq result."""
        if sent.action == J.SESSION_INITIATE:
            self.initiateAcknowledged = True
        return []

    def requestFailed(self, sent: Jingle, condition: str, text: str = "") -> List[Effect]:
        """
        Our request ``sent`` got an error (``condition``: its Jingle
        condition if it has one, else the stanza condition) or no answer.
        """
        if self.state is State.ENDED:
            return []
        words = "%s answered our %s with %s%s" % (
            self.peer.full(), sent.action, condition, ": " + text if text else "")
        if sent.action == J.SESSION_INITIATE or condition == J.UNKNOWN_SESSION:
            self._end(words)  # the peer has no such session: nothing to terminate
        elif sent.action == J.TRANSPORT_REPLACE and condition == J.TIE_BREAK:
            pass  # the initiator's crossing replace won; already REPLACE_OFFERED
        elif sent.action in (J.SESSION_ACCEPT, J.TRANSPORT_REPLACE, J.TRANSPORT_ACCEPT,
                             J.CONTENT_ADD, J.CONTENT_ACCEPT):
            failed = "failed-transport" if sent.action.startswith("transport") \
                else "general-error"
            self._terminate(Reason(failed, words))
        elif sent.action != J.SESSION_TERMINATE:
            self._event("request-failed", words, sent)
        return self._flush()

    def overruled(self, winner: str) -> List[Effect]:
        """Our session-initiate lost a tie-break to the peer's session ``winner``."""
        if self.state is not State.ENDED:
            self._end("tie-break: %s initiated session %s at the same time, and it "
                      "wins over ours" % (self.peer.full(), winner))
        return self._flush()

    def timerExpired(self, name: str) -> List[Effect]:
        words = self._timers.pop(name, None)
        if words is None or self.state is State.ENDED:
            return []
        if self._dropStuckContent(name, words):
            return self._flush()
        condition = "expired" if name == "lifetime" else "timeout"
        self._terminate(Reason(condition, words))
        return self._flush()

    def _dropStuckContent(self, timer: str, words: str) -> bool:
        """
        Our content-add not answered, or the transport of one content of
        several not established: that content alone goes (content-remove,
        reason ``timeout``); the session and its other contents stay.  (One
        content per connection of a ``connections=many`` link: a stuck one
        must not end the link.)  A content-add of theirs that we did not
        answer in time is our own failure: it still ends the session.
        """
        kind, _, rest = timer.partition(" ")
        creator, _, contentName = rest.partition("/")
        key = (creator, contentName)
        if kind not in ("answer", "transport") or not contentName:
            return False
        reason = Reason("timeout", words)
        if kind == "answer" and key in self.ourAdds:
            self.ourAdds.pop(key)
        elif key in self.contents and len(self.contents) > 1:
            self._drop(key)
        else:
            return False
        self._send(Jingle(J.CONTENT_REMOVE, self.sid, contents=(
            Content(creator, contentName),), reason=reason))
        self._event("content-removed", "we removed content %s: %s" % (_name(key), words),
                    content=key)
        return True
