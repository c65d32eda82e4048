"""
What the sans-I/O Jingle session machine asks its caller to do.

The machine (:mod:`bytestreamd.negotiation.jingle_session`) and the session
table (:mod:`bytestreamd.negotiation.jingle_sessions`) return lists of these
effects and never send, wait or schedule anything themselves:

* :class:`Ack` / :class:`Refuse` -- answer the request just received with an
  empty ``result`` or with an error (:meth:`Refuse.toStanzaError`).  Every
  request gets exactly one of the two, and it comes first in the list:
  XEP-0166 has the responder acknowledge at once and act afterwards.
* :class:`Send` -- send a Jingle request (an iq ``set``) to the peer; tell the
  machine how it was answered (``acknowledged`` / ``requestFailed``).
* :class:`StartTimer` / :class:`StopTimer` -- schedule or cancel a call of
  ``timerExpired(name)``; starting a running timer restarts it.
* :class:`Event` -- a transition, with words an operator can act on.

:class:`Timeouts` bounds every state that waits for someone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from twisted.words.protocols.jabber.jid import JID

from bytestreamd.errors import stanzaError
from bytestreamd.wire.jingle import ERRORS, Jingle, jingleError


class SessionStateError(ValueError):
    """
    A local command that the session's state does not allow (accepting a
    session we initiated, answering a transport-replace nobody sent...): a
    bug in the caller, never something a peer can cause.
    """


@dataclass(frozen=True)
class Timeouts:
    """
    Seconds each waiting state may last; every one ends the session with
    reason ``timeout`` (``lifetime``: ``expired``) and words naming what
    did not happen.
    """

    #: PENDING: the initiator waits for session-accept, the responder for
    #: the local decision (its ``offer_timeout``).
    pending: float = 120.0
    #: A content's transport from session-accept (or transport-accept) to
    #: ``transportEstablished``: every candidate and the fallback included.
    transport: float = 120.0
    #: An answer to a transport-replace or content-add, ours or theirs.
    answer: float = 30.0
    #: The whole session, if bounded at all (reason ``expired``).
    lifetime: Optional[float] = None


@dataclass(frozen=True)
class Ack:
    """Answer the request just received with an empty iq ``result``."""


@dataclass(frozen=True)
class Refuse:
    """
    Answer the request just received with an error: ``condition`` is a
    Jingle condition (``out-of-order``, ``tie-break``, ``unknown-session``,
    ``unsupported-info``) or a plain stanza condition (``bad-request``).
    """

    condition: str
    text: str

    def toStanzaError(self):
        if self.condition in ERRORS:
            return jingleError(self.condition, self.text)
        return stanzaError(self.condition, text=self.text)


@dataclass(frozen=True)
class Send:
    """Send ``jingle`` in an iq ``set`` to ``to``."""

    to: JID
    jingle: Jingle


@dataclass(frozen=True)
class StartTimer:
    peer: JID
    sid: str
    name: str
    seconds: float


@dataclass(frozen=True)
class StopTimer:
    peer: JID
    sid: str
    name: str


@dataclass(frozen=True)
class Event:
    """
    A transition of session ``sid`` with ``peer``.  ``kind`` is one of
    :data:`EVENT_KINDS`; ``reason`` is for an operator; ``jingle`` is the
    request that caused it, if one did; ``content`` the (creator, name) it
    is about, if any.
    """

    peer: JID
    sid: str
    kind: str
    reason: str
    jingle: Optional[Jingle] = None
    content: Optional[Tuple[str, str]] = None


#: Every Event kind.  Those marked (decide) wait for a local command.
EVENT_KINDS = frozenset([
    "incoming",              # (decide) a session-initiate: accept() or terminate()
    "accepted",              # the session is ACTIVE
    "ended",                 # the session is ENDED; reason says by whom and why
    "transport-info",        # the peer's transport-info (candidates, IBB sessions...)
    "transport-replace",     # (decide) acceptTransport() or rejectTransport()
    "transport-accepted",    # a replacement transport is now the content's
    "transport-rejected",    # the old transport stays
    "transport-established",
    "content-add",           # (decide) acceptContent() or rejectContent()
    "content-accepted", "content-rejected", "content-removed", "content-modified",
    "session-info", "description-info",
    "request-failed",        # a request of ours failed without ending the session
])

Effect = Union[Ack, Refuse, Send, StartTimer, StopTimer, Event]
