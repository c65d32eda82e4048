"""
The contents of one Jingle session and their transports: the part of the
session machine (:class:`bytestreamd.negotiation.jingle_session.JingleSession`
builds on it) that handles transport-info, transport-replace/-accept/-reject,
content-add/-accept/-reject/-remove/-modify, from the peer and from us.

Each content has a :class:`TransportState`: NEGOTIATING until the caller
reports ``transportEstablished`` (bounded by ``Timeouts.transport`` once the
session is ACTIVE), REPLACING while our transport-replace waits for an answer,
REPLACE_OFFERED while the peer's waits for ours (both bounded by
``Timeouts.answer``), ESTABLISHED.  A transport-replace that crosses ours is
a tie (XEP-0166 section 7.2.16, "existing session"): the initiator's wins, so
the initiator answers the responder's with ``tie-break`` and the responder
takes the initiator's.  Handlers check a whole request before changing
anything, so a refused request leaves no trace.

The effect plumbing (``_send``, ``_event``, ``_start``, ``_stop``,
``_flush``) lives here too: it is what both halves of the machine share.

Why one long module: the per-content transport states of one Jingle session, one concern.
"""

from __future__ import annotations

from enum import Enum
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.words.protocols.jabber.jid import JID

from bytestreamd.negotiation.jingle_effects import (
    Effect, Event, Refuse, Send, SessionStateError, StartTimer, StopTimer, Timeouts)
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle import Content, Jingle, Payload, Reason

ContentKey = Tuple[str, str]


class State(Enum):
    PENDING = "pending"
    ACTIVE = "active"
    ENDED = "ended"


class TransportState(Enum):
    NEGOTIATING = "negotiating"
    REPLACING = "replacing"
    REPLACE_OFFERED = "replace-offered"
    ESTABLISHED = "established"


def _name(key: ContentKey) -> str:
    return "%s/%s" % key


class ContentNegotiation:
    """Contents, their transports, and the effects buffer of one session."""

    def __init__(self, own: JID, peer: JID, sid: str, role: str,
                 contents: Sequence[Content], timeouts: Timeouts):
        self.own, self.peer, self.sid, self.role = own, peer, sid, role
        self.timeouts = timeouts
        self.state = State.PENDING
        self.contents: Dict[ContentKey, Content] = {c.key: c for c in contents}
        self.transports: Dict[ContentKey, TransportState] = {
            c.key: TransportState.NEGOTIATING for c in contents}
        #: Replacement transports on the table, ours (REPLACING) or theirs.
        self.replacements: Dict[ContentKey, Payload] = {}
        #: content-add on the table: ours (waiting for an answer), theirs.
        self.ourAdds: Dict[ContentKey, Content] = {}
        self.theirAdds: Dict[ContentKey, Content] = {}
        self._timers: Dict[str, str] = {}  # name -> words for its expiry
        self._out: List[Effect] = []

    def _terminate(self, reason: Reason) -> None:
        """Send session-terminate and end (the session half implements it)."""
        raise NotImplementedError

    # --- effects ----------------------------------------------------------------

    def _flush(self) -> List[Effect]:
        out, self._out = self._out, []
        return out

    def _send(self, j: Jingle) -> None:
        self._out.append(Send(self.peer, j))

    def _event(self, kind: str, reason: str, j: Optional[Jingle] = None,
               content: Optional[ContentKey] = None) -> None:
        self._out.append(Event(self.peer, self.sid, kind, reason, j, content))

    def _start(self, name: str, seconds: float, words: str) -> None:
        self._timers[name] = words
        self._out.append(StartTimer(self.peer, self.sid, name, seconds))

    def _stop(self, name: str) -> None:
        if self._timers.pop(name, None) is not None:
            self._out.append(StopTimer(self.peer, self.sid, name))

    def _negotiate(self, key: ContentKey) -> None:
        """The content's transport is (again) being set up: bounded."""
        self.transports[key] = TransportState.NEGOTIATING
        if self.state is State.ACTIVE:
            self._start("transport " + _name(key), self.timeouts.transport,
                        "the transport of content %s was not established within %gs"
                        % (_name(key), self.timeouts.transport))

    def _drop(self, key: ContentKey) -> None:
        self.contents.pop(key, None)
        self.transports.pop(key, None)
        self.replacements.pop(key, None)
        for prefix in ("transport ", "answer "):
            self._stop(prefix + _name(key))

    def _unknownContents(self, j: Jingle, table: Optional[Dict] = None) -> Optional[Refuse]:
        table = self.contents if table is None else table
        missing = [_name(c.key) for c in j.contents if c.key not in table]
        if missing:
            return Refuse("bad-request", "%s for no content %s of session %s"
                          % (j.action, ", ".join(missing), self.sid))
        return None

    def _on_transport_info(self, j: Jingle) -> Optional[Refuse]:
        refusal = self._unknownContents(j)
        if refusal:
            return refusal
        for c in j.contents:
            self._event("transport-info", "transport-info from %s for content %s"
                        % (self.peer.full(), _name(c.key)), j, c.key)
        return None

    def _on_transport_replace(self, j: Jingle) -> Optional[Refuse]:
        refusal = self._unknownContents(j)
        if refusal:
            return refusal
        for c in j.contents:
            state = self.transports[c.key]
            if state is TransportState.REPLACING and self.role == J.INITIATOR:
                return Refuse(J.TIE_BREAK, "your transport-replace of content %s "
                              "crossed ours, and the initiator's wins" % _name(c.key))
            if state is TransportState.REPLACE_OFFERED:
                return Refuse(J.OUT_OF_ORDER, "content %s already has a transport-replace "
                              "waiting for an answer" % _name(c.key))
        for c in j.contents:
            crossed = self.transports[c.key] is TransportState.REPLACING
            self._stop("transport " + _name(c.key))
            self.transports[c.key] = TransportState.REPLACE_OFFERED
            self.replacements[c.key] = c.transport
            self._start("answer " + _name(c.key), self.timeouts.answer,
                        "the transport-replace of content %s from %s was not answered "
                        "here within %gs" % (_name(c.key), self.peer.full(),
                                             self.timeouts.answer))
            words = "%s proposes transport {%s}%s for content %s" % (
                (self.peer.full(),) + J.payloadKey(c.transport) + (_name(c.key),))
            if crossed:
                words += " (it crossed ours; the initiator's wins the tie-break)"
            self._event("transport-replace", words, j, c.key)
        return None

    def _checkReplacing(self, j: Jingle) -> Optional[Refuse]:
        refusal = self._unknownContents(j)
        if refusal:
            return refusal
        for c in j.contents:
            if self.transports[c.key] is not TransportState.REPLACING:
                return Refuse(J.OUT_OF_ORDER, "%s for content %s, for which we sent "
                              "no transport-replace" % (j.action, _name(c.key)))
        return None

    def _replaced(self, c: Content, words: str, j: Optional[Jingle]) -> None:
        current = self.contents[c.key]
        transport = c.transport or self.replacements[c.key]
        self.contents[c.key] = Content(current.creator, current.name, current.senders,
                                       current.disposition, current.description,
                                       transport, current.security)
        self.replacements.pop(c.key, None)
        self._stop("answer " + _name(c.key))
        self._negotiate(c.key)
        self._event("transport-accepted", words, j, c.key)

    def _on_transport_accept(self, j: Jingle) -> Optional[Refuse]:
        refusal = self._checkReplacing(j)
        if refusal:
            return refusal
        for c in j.contents:
            self._replaced(c, "%s accepted the transport-replace of content %s"
                           % (self.peer.full(), _name(c.key)), j)
        return None

    def _on_transport_reject(self, j: Jingle) -> Optional[Refuse]:
        refusal = self._checkReplacing(j)
        if refusal:
            return refusal
        for c in j.contents:
            self.replacements.pop(c.key, None)
            self._stop("answer " + _name(c.key))
            self._negotiate(c.key)
            self._event("transport-rejected", "%s rejected the transport-replace of "
                        "content %s" % (self.peer.full(), _name(c.key)), j, c.key)
        return None

    def _on_content_add(self, j: Jingle) -> Optional[Refuse]:
        taken = [_name(c.key) for c in j.contents
                 if c.key in self.contents or c.key in self.ourAdds or c.key in self.theirAdds]
        if taken:
            return Refuse("bad-request", "content-add of existing content %s" % ", ".join(taken))
        for c in j.contents:
            self.theirAdds[c.key] = c
            self._start("answer " + _name(c.key), self.timeouts.answer,
                        "the content-add of %s from %s was not answered here within %gs"
                        % (_name(c.key), self.peer.full(), self.timeouts.answer))
            self._event("content-add", "%s proposes content %s"
                        % (self.peer.full(), _name(c.key)), j, c.key)
        return None

    def _on_content_accept(self, j: Jingle) -> Optional[Refuse]:
        return self._answerToOurAdd(j, accepted=True)

    def _on_content_reject(self, j: Jingle) -> Optional[Refuse]:
        return self._answerToOurAdd(j, accepted=False)

    def _answerToOurAdd(self, j: Jingle, accepted: bool) -> Optional[Refuse]:
        missing = [_name(c.key) for c in j.contents if c.key not in self.ourAdds]
        if missing:
            return Refuse(J.OUT_OF_ORDER, "%s for %s, for which we sent no content-add"
                          % (j.action, ", ".join(missing)))
        for c in j.contents:
            ours = self.ourAdds.pop(c.key)
            self._stop("answer " + _name(c.key))
            if accepted:
                self.contents[c.key] = Content(
                    ours.creator, ours.name, ours.senders, ours.disposition,
                    c.description or ours.description, c.transport or ours.transport,
                    ours.security)
                self._negotiate(c.key)
                self._event("content-accepted", "%s accepted content %s"
                            % (self.peer.full(), _name(c.key)), j, c.key)
            else:
                why = ": " + j.reason.describe() if j.reason else ""
                self._event("content-rejected", "%s rejected content %s%s"
                            % (self.peer.full(), _name(c.key), why), j, c.key)
        if not accepted:
            self._voidCheck(j.reason)
        return None

    def _on_content_remove(self, j: Jingle) -> Optional[Refuse]:
        known = {**self.contents, **self.ourAdds, **self.theirAdds}
        refusal = self._unknownContents(j, known)
        if refusal:
            return refusal
        why = ": " + j.reason.describe() if j.reason else ""
        for c in j.contents:
            self.ourAdds.pop(c.key, None)
            self.theirAdds.pop(c.key, None)
            self._drop(c.key)
            self._event("content-removed", "%s removed content %s%s"
                        % (self.peer.full(), _name(c.key), why), j, c.key)
        self._voidCheck(j.reason)
        return None

    def _voidCheck(self, reason: Optional[Reason]) -> None:
        """XEP-0166 section 7.2.3/7.2.4: a session without contents is void."""
        if not self.contents and not self.ourAdds and not self.theirAdds:
            condition = reason.condition if reason else "success"
            self._terminate(Reason(condition, "no content left in the session"))

    def _on_content_modify(self, j: Jingle) -> Optional[Refuse]:
        refusal = self._unknownContents(j)
        if refusal:
            return refusal
        for c in j.contents:
            old = self.contents[c.key]
            self.contents[c.key] = Content(old.creator, old.name, c.senders,
                                           old.disposition, old.description,
                                           old.transport, old.security)
            self._event("content-modified", "%s set senders=%s on content %s"
                        % (self.peer.full(), c.senders, _name(c.key)), j, c.key)
        return None

    # --- local commands ---------------------------------------------------------------

    def _require(self, allowed: Iterable[State], what: str) -> None:
        if self.state not in allowed:
            raise SessionStateError("cannot %s session %s: it is %s"
                                    % (what, self.sid, self.state.value))

    def _content(self, key: ContentKey) -> Content:
        if key not in self.contents:
            raise SessionStateError("session %s has no content %s" % (self.sid, _name(key)))
        return self.contents[key]

    def transportEstablished(self, key: ContentKey) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "establish a transport of")
        self._content(key)
        if self.transports[key] is TransportState.NEGOTIATING:
            self.transports[key] = TransportState.ESTABLISHED
            self._stop("transport " + _name(key))
            self._event("transport-established", "the transport of content %s is up"
                        % _name(key), content=key)
        return self._flush()

    def sendTransportInfo(self, key: ContentKey, transport: Payload) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "send transport-info in")
        c = self._content(key)
        self._send(Jingle(J.TRANSPORT_INFO, self.sid, contents=(
            Content(c.creator, c.name, transport=transport),)))
        return self._flush()

    def replaceTransport(self, key: ContentKey, transport: Payload) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "replace a transport in")
        c = self._content(key)
        if self.transports[key] in (TransportState.REPLACING, TransportState.REPLACE_OFFERED):
            raise SessionStateError("content %s already has a transport-replace on the "
                                    "table" % _name(key))
        self._stop("transport " + _name(key))
        self.transports[key] = TransportState.REPLACING
        self.replacements[key] = transport
        self._send(Jingle(J.TRANSPORT_REPLACE, self.sid, contents=(
            Content(c.creator, c.name, transport=transport),)))
        self._start("answer " + _name(key), self.timeouts.answer,
                    "no transport-accept or transport-reject from %s for content %s "
                    "within %gs" % (self.peer.full(), _name(key), self.timeouts.answer))
        return self._flush()

    def _offered(self, key: ContentKey) -> Content:
        c = self._content(key)
        if self.transports[key] is not TransportState.REPLACE_OFFERED:
            raise SessionStateError("content %s has no transport-replace to answer"
                                    % _name(key))
        return c

    def acceptTransport(self, key: ContentKey,
                        transport: Optional[Payload] = None) -> List[Effect]:
        """Accept the peer's transport-replace, as offered or narrowed."""
        self._require([State.PENDING, State.ACTIVE], "accept a transport in")
        c = self._offered(key)
        answer = Content(c.creator, c.name, transport=transport or self.replacements[key])
        self._send(Jingle(J.TRANSPORT_ACCEPT, self.sid, contents=(answer,)))
        self._replaced(answer, "we accepted the transport-replace of content %s"
                       % _name(key), None)
        return self._flush()

    def rejectTransport(self, key: ContentKey) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "reject a transport in")
        c = self._offered(key)
        self._send(Jingle(J.TRANSPORT_REJECT, self.sid, contents=(
            Content(c.creator, c.name, transport=self.replacements.pop(key)),)))
        self._stop("answer " + _name(key))
        self._negotiate(key)
        self._event("transport-rejected", "we rejected the transport-replace of content %s"
                    % _name(key), content=key)
        return self._flush()

    def addContent(self, content: Content) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "add a content to")
        if content.creator != self.role:
            raise SessionStateError("the content we add has creator=%s" % self.role)
        if (content.key in self.contents or content.key in self.ourAdds
                or content.key in self.theirAdds):
            raise SessionStateError("content %s exists" % _name(content.key))
        self.ourAdds[content.key] = content
        self._send(Jingle(J.CONTENT_ADD, self.sid, contents=(content,)))
        self._start("answer " + _name(content.key), self.timeouts.answer,
                    "no content-accept or content-reject from %s for content %s within "
                    "%gs" % (self.peer.full(), _name(content.key), self.timeouts.answer))
        return self._flush()

    def acceptContent(self, key: ContentKey, content: Optional[Content] = None) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "accept a content in")
        if key not in self.theirAdds:
            raise SessionStateError("no content-add of %s to answer" % _name(key))
        accepted = content or self.theirAdds[key]
        del self.theirAdds[key]
        self._stop("answer " + _name(key))
        self.contents[key] = accepted
        self._send(Jingle(J.CONTENT_ACCEPT, self.sid, contents=(accepted,)))
        self._negotiate(key)
        self._event("content-accepted", "we accepted content %s" % _name(key), content=key)
        return self._flush()

    def rejectContent(self, key: ContentKey, condition: str = "decline",
                      text: Optional[str] = None) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "reject a content in")
        if key not in self.theirAdds:
            raise SessionStateError("no content-add of %s to answer" % _name(key))
        c = self.theirAdds.pop(key)
        self._stop("answer " + _name(key))
        self._send(Jingle(J.CONTENT_REJECT, self.sid, contents=(
            Content(c.creator, c.name),), reason=Reason(condition, text)))
        self._event("content-rejected", "we rejected content %s" % _name(key), content=key)
        return self._flush()

    def removeContent(self, key: ContentKey, condition: str = "cancel",
                      text: Optional[str] = None) -> List[Effect]:
        self._require([State.PENDING, State.ACTIVE], "remove a content from")
        c = self._content(key)
        reason = Reason(condition, text)
        self._send(Jingle(J.CONTENT_REMOVE, self.sid, contents=(
            Content(c.creator, c.name),), reason=reason))
        self._drop(key)
        self._event("content-removed", "we removed content %s: %s"
                    % (_name(key), reason.describe()), content=key)
        self._voidCheck(reason)
        return self._flush()
