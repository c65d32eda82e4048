"""
Which :class:`~bytestreamd.interfaces.ILinkEnd` a link gets: the one place
the link layer asks, so that it never builds a splice itself.

* plain links and ``e2e=bytes`` links: :class:`bytestreamd.local.splice.Splice`
  (for e2e, the stream it is handed at GOOD is TLS-terminated:
  :class:`bytestreamd.e2e.secure.SecuredStream`);
* ``e2e=xmpp`` links: :class:`bytestreamd.local.stanzas.StanzaRelay`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.python.failure import Failure

from bytestreamd.interfaces import ILinkEnd
from bytestreamd.local.splice import Splice
from bytestreamd.local.stanzas import StanzaRelay


def makeEnd(e2eMode: Optional[str], onEnded: Callable[[Failure], None], clock: Any,
            holdLimit: int, settleTimeout: float,
            onLocalConnected: Optional[Callable[[], None]] = None,
            budget: Any = None) -> ILinkEnd:
    """
    The end for a link whose e2e mode is ``e2eMode`` (None: plain);
    ``budget`` is the daemon-wide byte budget a Splice joins.
    """
    if e2eMode == "xmpp":
        return StanzaRelay(onEnded, clock=clock, onLocalConnected=onLocalConnected)
    return Splice(holdLimit, onEnded, clock=clock, settleTimeout=settleTimeout,
                  onLocalConnected=onLocalConnected, budget=budget)
