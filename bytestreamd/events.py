"""
Events and link descriptions shared by the link layer and the control channel.

Values, not behaviour: the link layer creates them, the control channel
formats them (``650 LINK ...``).  Keeping them plain makes the control
protocol testable without a daemon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

#: XEP-0041 link states, as used in ``650 LINK`` events.
INIT = "INIT"
GOOD = "GOOD"
BAD = "BAD"
CLOS = "CLOS"
ERR = "ERR"

#: States a link can be in before or outside XEP-0041's (LINKS only):
#: an offer waiting for ACCEPT/REJECT, an outgoing link still negotiating.
OFFER = "OFFER"
NEGOTIATING = "NEGO"


@dataclass(frozen=True)
class Event:
    """
    One asynchronous event.

    ``kind`` is ``LINK``, ``OFFER`` or ``SERVER``; ``words`` are the
    positional words after the kind (``<id> <STATE>`` for LINK, ``<id>`` for
    OFFER, ``connected`` for SERVER); ``options`` are ``key=value`` pairs in
    order (values are quoted when formatted, as the grammar says).
    ``linkId`` routes the event to the control connection that owns the link;
    ``None`` means only watchers get it (SERVER events go to everyone).
    """

    kind: str
    words: Tuple[str, ...] = ()
    options: Tuple[Tuple[str, str], ...] = ()
    linkId: Optional[str] = None
    broadcast: bool = False


@dataclass
class LinkInfo:
    """One row of ``LINKS``; also what OPEN and ACCEPT reply with."""

    id: str
    state: str
    peer: str
    direction: str  # "out" or "in"
    method: Optional[str] = None
    socket: Optional[str] = None
    service: Optional[str] = None
    profile: Optional[str] = None
    sent: int = 0
    received: int = 0
    reason: Optional[str] = None
    extra: Tuple[Tuple[str, str], ...] = field(default_factory=tuple)
