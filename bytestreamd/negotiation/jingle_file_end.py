"""
The end of one XEP-0234 file transfer, as a sans-I/O machine: what each
side does once the bytes have moved (checksum, ``received``, who terminates
the session and with which reason), and how the outcome is reported.

XEP-0234 sections 2 and 7, as we read them:

* the *sender* hashes what it sends and, unless the offer carried the
  value, sends ``<checksum/>`` in a session-info after the data; it then
  waits for the receiver to end the session;
* the *receiver* checks the bytes against the offered hash or the checksum,
  whichever it has (they may come in any order: a checksum can overtake the
  last data on another path), sends ``<received/>`` and terminates with
  ``success``; a digest that does not match ends the session with
  ``failed-application`` and words that name both values; bytes missing at
  the end of the transport end it with ``failed-transport``.

Time bounds (every state is bounded):

* a receiver that has all the bytes but no hash waits ``checksumGrace``
  seconds for the checksum (Libervia waits 5 s too), then ends the session
  ``success`` with the outcome *unverified* -- the transfer did happen, the
  user is told it could not be checked;
* a sender that sent everything waits ``endGrace`` seconds for the
  receiver's session-terminate, then ends the session ``success`` itself
  (Libervia 0.9, as a receiver of a file whose checksum it could not read,
  terminates only after its own 5 s).

Inputs: :meth:`FileEnd.dataDone` (the transport ended: byte count and the
digest of what went through, computed with :class:`StreamDigest`),
:meth:`FileEnd.sessionInfo` (a Checksum or Received payload),
:meth:`FileEnd.sessionEnded` (the peer or the session machine ended it),
:meth:`FileEnd.timerExpired`.  Each returns a list of effects:
:class:`SendInfo`, :class:`Terminate`, :class:`StartTimer`,
:class:`StopTimer` and, exactly once, :class:`Outcome`.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from bytestreamd.application import RangeAnswer
from bytestreamd.negotiation.jingle_file import checksumDigests, checksumInfo
from bytestreamd.wire.jingle import MalformedJingle
from bytestreamd.wire.jingle_ft import DEFAULT_ALGO, Checksum, Received

SENDER = "sender"
RECEIVER = "receiver"

CHECKSUM_TIMER = "checksum"
END_TIMER = "end"

#: hashlib names of the XEP-0300 algorithms we can compute.
HASHLIB_NAMES = {"sha-256": "sha256", "sha-1": "sha1", "md5": "md5",
                 "sha-512": "sha512", "sha3-256": "sha3_256", "sha3-512": "sha3_512",
                 "blake2b-512": "blake2b"}


class StreamDigest:
    """The running digest of the bytes of one transfer (one algorithm)."""

    def __init__(self, algo: str = DEFAULT_ALGO) -> None:
        if algo not in HASHLIB_NAMES:
            raise ValueError("cannot compute %s" % algo)
        self.algo = algo
        self._hash = hashlib.new(HASHLIB_NAMES[algo])
        self.count = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.count += len(data)

    def digest(self) -> bytes:
        return self._hash.digest()


# --- effects -------------------------------------------------------------------


@dataclass(frozen=True)
class SendInfo:
    """Send a session-info with this payload (Checksum or Received)."""

    payload: Union[Checksum, Received]


@dataclass(frozen=True)
class Terminate:
    """End the session with this XEP-0166 reason."""

    condition: str
    text: Optional[str] = None


@dataclass(frozen=True)
class StartTimer:
    name: str
    seconds: float


@dataclass(frozen=True)
class StopTimer:
    name: str


@dataclass(frozen=True)
class Outcome:
    """
    How the transfer ended, for the events: ``ok`` (the bytes arrived, or
    were sent, whole), ``verified`` (True: a digest matched; False: it did
    not; None: nothing to check against), ``algo``/``digest`` (hex) of what
    moved, and words for an operator.
    """

    ok: bool
    verified: Optional[bool]
    reason: str
    algo: Optional[str] = None
    digest: Optional[str] = None

    def details(self) -> tuple:
        """``key=value`` pairs for a ``650 LINK ... CLOS``/``ERR`` event."""
        pairs = [("verified", {True: "yes", False: "no", None: "unknown"}[self.verified])]
        if self.algo == DEFAULT_ALGO and self.digest:
            pairs.append(("sha256", self.digest))
        return tuple(pairs)


Effect = Union[SendInfo, Terminate, StartTimer, StopTimer, Outcome]


def _hex(digest: bytes) -> str:
    return binascii.hexlify(digest).decode("ascii")


# --- the machine ---------------------------------------------------------------


class FileEnd:
    """
    The end of one file content (``creator``, ``name``) of ``size`` bytes
    (the part to move: the whole file or the asked range), for ``role``.
    ``offered`` maps algo -> raw digest of hashes the offer carried (only
    meaningful for a whole-file transfer: a range is checked only by a
    checksum of the range).  ``sentRange`` is the range moved when it is not
    the whole file: the sender's checksum says so.
    """

    def __init__(self, role: str, creator: str, name: str, size: int,
                 offered: Optional[Dict[str, bytes]] = None, whole: bool = True,
                 checksumGrace: float = 5.0, endGrace: float = 10.0,
                 sendChecksum: bool = True,
                 sentRange: Optional[RangeAnswer] = None) -> None:
        if role not in (SENDER, RECEIVER):
            raise ValueError("role must be sender or receiver")
        self.role = role
        self.creator = creator
        self.name = name
        self.size = size
        self.whole = whole
        self.expected: Dict[str, bytes] = dict(offered or {}) if whole else {}
        self.checksumGrace = checksumGrace
        self.endGrace = endGrace
        self.sendChecksum = sendChecksum
        self.sentRange = sentRange
        self.count: Optional[int] = None
        self.digest: Optional[bytes] = None
        self.algo: Optional[str] = None
        self.received = False
        self.done = False
        self.outcome: Optional[Outcome] = None
        self._timers: List[str] = []

    # -- inputs -----------------------------------------------------------

    def dataDone(self, count: int, algo: str, digest: bytes) -> List[Effect]:
        """The transport ended after ``count`` bytes whose ``algo`` digest is ``digest``."""
        if self.done or self.count is not None:
            return []
        self.count, self.algo, self.digest = count, algo, digest
        if self.role == SENDER:
            return self._senderDone()
        return self._receiverDone()

    def sessionInfo(self, payload: object) -> List[Effect]:
        """A file-transfer session-info from the peer (others are ignored)."""
        if self.done:
            return []
        if isinstance(payload, Received):
            if self._mine(payload.creator, payload.name):
                self.received = True
            return []
        if isinstance(payload, Checksum) and self.role == RECEIVER:
            if not self._mine(payload.creator, payload.name):
                return []
            try:
                digests = checksumDigests(payload)
            except MalformedJingle:
                return []  # unreadable: as if none came (the grace timer decides)
            for algo, value in digests:
                self.expected.setdefault(algo, value)
            if self.count is not None:
                return self._receiverVerdict()
        return []

    def sessionEnded(self, condition: str, text: Optional[str] = None,
                     byPeer: bool = True) -> List[Effect]:
        """The session ended (by the peer, or by the session machine)."""
        if self.done:
            return []
        words = condition + (": " + text if text else "")
        who = "the peer" if byPeer else "the session"
        complete = self.count is not None and self.count >= self.size
        if condition == "success" and (complete or self.role == SENDER and self.count is not None):
            verified = None if self.role == SENDER else self._verified()
            return self._finish(None, Outcome(True, verified, "%s ended the session: %s"
                                              % (who, words), self.algo, self._digestHex()))
        return self._finish(None, Outcome(False, None, "%s ended the session: %s"
                                          % (who, words), self.algo, self._digestHex()))

    def timerExpired(self, name: str) -> List[Effect]:
        if self.done or name not in self._timers:
            return []
        self._timers.remove(name)
        if name == CHECKSUM_TIMER:
            return self._finish(
                Terminate("success", "no checksum within %gs: not verified"
                          % self.checksumGrace),
                Outcome(True, None, "received %d bytes; the sender sent no checksum "
                        "within %gs, not verified" % (self.count or 0, self.checksumGrace),
                        self.algo, self._digestHex()))
        if name == END_TIMER:
            return self._finish(
                Terminate("success", None),
                Outcome(True, None, "sent %d bytes; the receiver did not end the session "
                        "within %gs%s" % (self.count or 0, self.endGrace,
                                          " (it said received)" if self.received else ""),
                        self.algo, self._digestHex()))
        return []

    # -- sender -----------------------------------------------------------

    def _senderDone(self) -> List[Effect]:
        effects: List[Effect] = []
        assert self.count is not None and self.digest is not None and self.algo
        if self.count < self.size:
            return self._finish(
                Terminate("failed-transport", "sent %d of %d bytes" % (self.count, self.size)),
                Outcome(False, None, "the transport ended after %d of %d bytes"
                        % (self.count, self.size), self.algo, self._digestHex()))
        if self.sendChecksum:
            effects.append(SendInfo(checksumInfo(self.digest, self.creator, self.name,
                                                 self.algo, self.sentRange)))
        effects.append(self._start(END_TIMER, self.endGrace))
        return effects

    # -- receiver ---------------------------------------------------------

    def _receiverDone(self) -> List[Effect]:
        assert self.count is not None
        if self.count != self.size:
            return self._finish(
                Terminate("failed-transport", "received %d of %d bytes"
                          % (self.count, self.size)),
                Outcome(False, None, "the transport ended after %d of %d bytes"
                        % (self.count, self.size), self.algo, self._digestHex()))
        if self.algo in self.expected:
            return self._receiverVerdict()
        return [self._start(CHECKSUM_TIMER, self.checksumGrace)]

    def _verified(self) -> Optional[bool]:
        if self.algo is None or self.algo not in self.expected:
            return None
        return self.expected[self.algo] == self.digest

    def _receiverVerdict(self) -> List[Effect]:
        verified = self._verified()
        if verified is None:
            return []  # a checksum in another algorithm: wait for ours or the timer
        if verified:
            return self._finish(
                Terminate("success", None),
                Outcome(True, True, "received %d bytes, %s checked" % (self.count, self.algo),
                        self.algo, self._digestHex()),
                SendInfo(Received(self.creator, self.name)))
        said = _hex(self.expected[self.algo or ""])
        return self._finish(
            Terminate("failed-application", "%s mismatch: the sender said %s, we computed %s"
                      % (self.algo, said, self._digestHex())),
            Outcome(False, False, "%s mismatch: the sender said %s, the bytes are %s"
                    % (self.algo, said, self._digestHex()), self.algo, self._digestHex()))

    # -- helpers ----------------------------------------------------------

    def _mine(self, creator: Optional[str], name: Optional[str]) -> bool:
        """A payload without creator/name is for the only content there is."""
        return (creator in (None, self.creator)) and (name in (None, self.name))

    def _digestHex(self) -> Optional[str]:
        return _hex(self.digest) if self.digest is not None else None

    def _start(self, name: str, seconds: float) -> StartTimer:
        if name not in self._timers:
            self._timers.append(name)
        return StartTimer(name, seconds)

    def _finish(self, terminate: Optional[Terminate], outcome: Outcome,
                info: Optional[SendInfo] = None) -> List[Effect]:
        """Stop the timers, [send ``info``], terminate, report: in that order."""
        self.done = True
        self.outcome = outcome
        effects: List[Effect] = [StopTimer(name) for name in self._timers]
        self._timers = []
        if info is not None:
            effects.append(info)
        if terminate is not None:
            effects.append(terminate)
        effects.append(outcome)
        return effects


__all__ = [
    "CHECKSUM_TIMER", "END_TIMER", "Effect", "FileEnd", "Outcome", "RECEIVER", "SENDER",
    "SendInfo", "StartTimer", "StopTimer", "StreamDigest", "Terminate",
]
