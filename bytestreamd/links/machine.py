r"""
The lifecycle of one link, as one explicit machine: a transition table with
no I/O.  The link manager feeds it inputs and performs the outputs it
returns (events, effects); nothing else decides what a link does next.

Phases (``LINKS`` shows the XEP-0041 state the events last said)::

    OFFERED --accepted--> NEGOTIATING --established--> ESTABLISHING --featuresKnown--> GOOD
       \--serviceConnecting--> CONNECTING --serviceUp--/                                  |
    NEGOTIATING --closeRequested--> CANCELLING            ESTABLISHING --closeRequested--> |
                                                               ESTABLISHING_CLOSING        |
    any --(failed | cancelled | remoteEnded | forgotten | ...)--> DONE  <------------------/

How a GOOD link *ends* is not decided here: :mod:`bytestreamd.links.lifecycle`
(``LinkLifecycle``, run by the link's splice) decides that -- when it may
say CLOS, how a bytestreamd peer confirms it.  In GOOD this machine only
hands requests to it (``closeRequested`` -> ``RequestClose``, ``peerGone``
-> ``DelegatePeerGone``, ``attachExpired`` -> ``FailUnattached``) and
waits for its verdict (``remoteEnded``).  ``ESTABLISHING`` is the short
wait for the peer's disco features (whether it confirms ends), almost
always answered from the cache.

An input a phase does not list is ignored (a late answer for a link that
has ended, a second CLOSE): every phase but DONE has a timer or an event
that moves it on (see :mod:`bytestreamd.links`).
"""

from __future__ import annotations

from typing import Dict, Tuple

# --- phases -------------------------------------------------------------------
OFFERED = "offered"
CONNECTING = "connecting"                  # accepting for a [services] endpoint
NEGOTIATING = "negotiating"
CANCELLING = "cancelling"                  # CLOSE while negotiating
ESTABLISHING = "establishing"              # stream up, peer features pending
ESTABLISHING_CLOSING = "establishing-closing"
GOOD = "good"                              # the end belongs to LinkLifecycle
DONE = "done"

# --- inputs -------------------------------------------------------------------
ACCEPTED = "accepted"
SERVICE_CONNECTING = "serviceConnecting"
SERVICE_UP = "serviceUp"
PROGRESS = "progress"
ESTABLISHED = "established"
FEATURES_KNOWN = "featuresKnown"
FAILED = "failed"
CANCELLED = "cancelled"
CLOSE_REQUESTED = "closeRequested"
PEER_GONE = "peerGone"
ATTACH_EXPIRED = "attachExpired"
REMOTE_ENDED = "remoteEnded"
FORGOTTEN = "forgotten"                    # rejected, expired, shutdown

# --- outputs (performed by the manager, in order) ----------------------------
SHOW_INIT = "ShowInit"                     # LINKS says INIT (no event)
EMIT_PROGRESS = "EmitProgress"             # 650 LINK INIT/BAD from negotiation
ASK_FEATURES = "AskFeatures"               # does the peer confirm ends?
START_GOOD = "StartGood"                   # lifecycle, session, 650 LINK GOOD
EMIT_FINAL_BAD = "EmitFinalBad"            # 650 LINK BAD final=yes reason=...
EMIT_BAD_CANCELLED = "EmitBadCancelled"
EMIT_CLOS_LOCAL = "EmitClosLocal"          # CLOS "closed by local request"
EMIT_CLOS_UNCONFIRMED = "EmitClosUnconfirmed"  # ... confirmed=no
EMIT_ERR = "EmitErr"
EMIT_END = "EmitEnd"                       # the lifecycle's CLOS or ERR
CANCEL_NEGOTIATION = "CancelNegotiation"
REJECT_OFFER = "RejectOffer"
EMIT_OFFER_ENDED = "EmitOfferEnded"        # an OFFER that went un-accepted says so
REQUEST_CLOSE = "RequestClose"             # -> LinkLifecycle via the splice
DELEGATE_PEER_GONE = "DelegatePeerGone"    # -> LinkLifecycle via the splice
FAIL_UNATTACHED = "FailUnattached"         # -> LinkLifecycle via the splice
ABORT_STREAM = "AbortStream"
ABORT_LOCAL = "AbortLocal"
FINISH = "Finish"                          # forget the link, remove its socket

Outputs = Tuple[str, ...]

_GONE_BEFORE_GOOD: Outputs = (EMIT_ERR, ABORT_LOCAL, ABORT_STREAM, FINISH)

#: (phase, input) -> (next phase, outputs).
TABLE: Dict[Tuple[str, str], Tuple[str, Outputs]] = {
    (OFFERED, ACCEPTED): (NEGOTIATING, (SHOW_INIT,)),
    (OFFERED, SERVICE_CONNECTING): (CONNECTING, (SHOW_INIT,)),
    (OFFERED, CLOSE_REQUESTED): (DONE, (REJECT_OFFER, FINISH)),  # says it (effects)
    (OFFERED, FORGOTTEN): (DONE, (EMIT_OFFER_ENDED, FINISH)),

    (CONNECTING, SERVICE_UP): (NEGOTIATING, ()),
    (CONNECTING, CLOSE_REQUESTED): (DONE, (EMIT_CLOS_LOCAL, FINISH)),
    (CONNECTING, FORGOTTEN): (DONE, (FINISH,)),

    (NEGOTIATING, PROGRESS): (NEGOTIATING, (EMIT_PROGRESS,)),
    (NEGOTIATING, ESTABLISHED): (ESTABLISHING, (ASK_FEATURES,)),
    (NEGOTIATING, FAILED): (DONE, (EMIT_FINAL_BAD, ABORT_LOCAL, FINISH)),
    (NEGOTIATING, CANCELLED): (DONE, (EMIT_BAD_CANCELLED, ABORT_LOCAL, FINISH)),
    (NEGOTIATING, CLOSE_REQUESTED): (CANCELLING, (CANCEL_NEGOTIATION,)),
    (NEGOTIATING, FORGOTTEN): (DONE, (FINISH, CANCEL_NEGOTIATION)),

    (CANCELLING, PROGRESS): (CANCELLING, (EMIT_PROGRESS,)),
    (CANCELLING, CANCELLED): (DONE, (EMIT_CLOS_LOCAL, ABORT_LOCAL, FINISH)),
    (CANCELLING, FAILED): (DONE, (EMIT_FINAL_BAD, ABORT_LOCAL, FINISH)),
    (CANCELLING, ESTABLISHED): (DONE, (ABORT_STREAM, EMIT_CLOS_LOCAL, ABORT_LOCAL,
                                       FINISH)),
    (CANCELLING, FORGOTTEN): (DONE, (FINISH,)),

    (ESTABLISHING, FEATURES_KNOWN): (GOOD, (START_GOOD,)),
    (ESTABLISHING, CLOSE_REQUESTED): (ESTABLISHING_CLOSING, ()),
    (ESTABLISHING, PEER_GONE): (DONE, _GONE_BEFORE_GOOD),
    (ESTABLISHING, FORGOTTEN): (DONE, (ABORT_STREAM, ABORT_LOCAL, FINISH)),

    (ESTABLISHING_CLOSING, FEATURES_KNOWN): (DONE, (ABORT_STREAM, EMIT_CLOS_UNCONFIRMED,
                                                    ABORT_LOCAL, FINISH)),
    (ESTABLISHING_CLOSING, PEER_GONE): (DONE, _GONE_BEFORE_GOOD),
    (ESTABLISHING_CLOSING, FORGOTTEN): (DONE, (ABORT_STREAM, ABORT_LOCAL, FINISH)),

    (GOOD, CLOSE_REQUESTED): (GOOD, (REQUEST_CLOSE,)),
    (GOOD, PEER_GONE): (GOOD, (DELEGATE_PEER_GONE,)),
    (GOOD, ATTACH_EXPIRED): (GOOD, (FAIL_UNATTACHED,)),
    (GOOD, REMOTE_ENDED): (DONE, (EMIT_END, FINISH)),
    (GOOD, FORGOTTEN): (DONE, (ABORT_STREAM, ABORT_LOCAL, FINISH)),

    # A stream that arrives for a link that has already ended is nobody's.
    (DONE, ESTABLISHED): (DONE, (ABORT_STREAM,)),
}


class LinkMachine:
    """One link's phase; :meth:`feed` is the only way it changes."""

    def __init__(self, direction: str):
        self.phase = NEGOTIATING if direction == "out" else OFFERED

    def feed(self, input: str) -> Outputs:
        """The outputs of ``input`` in the current phase (none if it does not apply)."""
        step = TABLE.get((self.phase, input))
        if step is None:
            return ()
        self.phase, outputs = step
        return outputs

    @property
    def done(self) -> bool:
        return self.phase == DONE

    @property
    def hasStream(self) -> bool:
        """An established bytestream belongs to the link (GOOD or about to be)."""
        return self.phase in (ESTABLISHING, ESTABLISHING_CLOSING, GOOD)
