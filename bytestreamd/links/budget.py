"""
A daemon-wide budget for the bytes the daemon holds on behalf of links.

Why: every link bounds its own buffers (the hold before GOOD is
``link_buffer``; an IBB sender keeps at most ``window`` blocks unacknowledged
and pauses its local reader above ``window * block size``), but nothing
bounded their sum.  1000 parallel IBB transfers of 64 KiB took the opener to
240 MB of RSS (issue 8, finding 7): each link read its client's 64 KiB at
once, and every block sat in the XMPP connection's write buffer as base64,
then again as TLS records.

What is counted: bytes the daemon has *taken from a local client* and not
yet got rid of -- held before GOOD, queued in a bytestream, or sent in-band
and not yet acknowledged by the peer.  A SOCKS5 stream hands its bytes to
the kernel at once (Twisted's TCP buffer has its own water marks), so they
leave the budget as soon as they are written.  What arrives from a peer is
not counted: it is bounded per link by the peer's window, and delaying it
would only move the wait to the peer.

What happens when it runs out: **backpressure, never an error**.  Every
member (a link's splice) has its local reader paused, so no more bytes are
taken from local clients; bytes already taken still flow (each link's own
window is unchanged, so one link's throughput is too), and as the peers
acknowledge them the budget fills again and the readers are resumed, in the
order they were paused.  One read of a local socket (Twisted reads up to
64 KiB) may go past the limit: the limit is where reading stops, not a
hard ceiling.

Holds before GOOD may take at most half of the budget (``holdShare``): a
burst of links whose peers have not answered yet -- which may take up to
``offer_timeout`` -- must not starve links that are moving bytes.

The budget does no I/O: members are told ``budgetPause()`` and
``budgetResume()``; the splice (:mod:`bytestreamd.local.splice`) pauses its
local transport.
"""

from __future__ import annotations

from typing import Dict, Optional, Protocol


class BudgetMember(Protocol):
    """What the budget asks of a link: stop and start taking local bytes."""

    def budgetPause(self) -> None: ...

    def budgetResume(self) -> None: ...


class ByteBudget:
    """
    ``limit`` bytes for every link together (``[links] max_buffered``).

    Members ``charge`` what they take and ``release`` what they are rid of.
    When ``used`` reaches a member's ceiling -- ``limit`` for a link that is
    moving bytes, ``limit * holdShare`` for one still holding before GOOD --
    it is paused; it is resumed once ``used`` is back below ``resumeShare``
    of that ceiling (hysteresis: pausing and resuming a thousand readers on
    every acknowledgement would cost more than it saves).
    """

    def __init__(self, limit: int, holdShare: float = 0.5, resumeShare: float = 0.75):
        if limit < 1:
            raise ValueError("the budget must be at least 1 byte, not %r" % (limit,))
        self.limit = limit
        self.holdShare = holdShare
        self.resumeShare = resumeShare
        self.used = 0
        #: The most ``used`` has been (for tests and the bench).
        self.peak = 0
        #: member -> whether it is still holding (before GOOD); insertion order.
        self._members: Dict[BudgetMember, bool] = {}
        #: members we paused, in the order we paused them (resumed in that order).
        self._paused: Dict[BudgetMember, None] = {}
        # Are holders / all members over their ceiling (as last acted on)?
        self._holdersOver = False
        self._allOver = False

    def _ceiling(self, holding: bool) -> int:
        return max(1, int(self.limit * self.holdShare)) if holding else self.limit

    # -- members ---------------------------------------------------------------

    def add(self, member: BudgetMember, holding: bool = True) -> None:
        """A new link: paused at once if its class is over its ceiling."""
        self._members[member] = holding
        if self._allOver or (holding and self._holdersOver):
            self._pause(member)

    def moving(self, member: BudgetMember) -> None:
        """The link is GOOD: its ceiling is the whole budget from now on."""
        if self._members.get(member) is True:
            self._members[member] = False
            if member in self._paused and not self._allOver:
                del self._paused[member]
                member.budgetResume()

    def remove(self, member: BudgetMember) -> None:
        """The link is over (its charge must have been released first)."""
        self._members.pop(member, None)
        self._paused.pop(member, None)

    def isPaused(self, member: BudgetMember) -> bool:
        return member in self._paused

    # -- bytes -------------------------------------------------------------------

    def charge(self, n: int) -> None:
        """``n`` bytes were taken from a local client."""
        if n <= 0:
            return
        self.used += n
        if self.used > self.peak:
            self.peak = self.used
        if not self._holdersOver and self.used >= self._ceiling(True):
            self._holdersOver = True
            self._pauseWhere(holding=True)
        if not self._allOver and self.used >= self.limit:
            self._allOver = True
            self._pauseWhere(holding=None)

    def release(self, n: int) -> None:
        """``n`` charged bytes are gone (sent and acknowledged, or dropped)."""
        if n <= 0:
            return
        self.used = max(0, self.used - n)
        if self._allOver and self.used <= self.limit * self.resumeShare:
            self._allOver = False
            self._resumeWhere(holding=False)
        if self._holdersOver and self.used <= self._ceiling(True) * self.resumeShare:
            self._holdersOver = False
            self._resumeWhere(holding=True)

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    # -- internals ---------------------------------------------------------------

    def _pause(self, member: BudgetMember) -> None:
        if member not in self._paused:
            self._paused[member] = None
            member.budgetPause()

    def _pauseWhere(self, holding: Optional[bool]) -> None:
        """Pause the holders (``True``), or everyone (``None``)."""
        for member, isHolding in list(self._members.items()):
            if holding is None or isHolding == holding:
                self._pause(member)

    def _resumeWhere(self, holding: bool) -> None:
        # Holders stay paused while the whole budget is over.
        if holding and self._allOver:
            return
        for member in list(self._paused):
            isHolding = self._members.get(member)
            if isHolding is None:
                del self._paused[member]
            elif isHolding == holding or (not holding and isHolding
                                          and not self._holdersOver):
                del self._paused[member]
                member.budgetResume()


__all__ = ["ByteBudget", "BudgetMember"]
