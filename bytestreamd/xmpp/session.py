"""
Why the XMPP session ended, in one true line, and how long to wait before
the next attempt.

:class:`SessionLog` is a sans-I/O record of the current connection attempt.
:class:`bytestreamd.xmpp.XMPPClientService` feeds it what the stream does
(TCP up, stream error, initialization failure, setup timeout, bound, lost,
deliberate stop); it keeps the *first* thing that went wrong, because what
follows is only its consequence -- a wrong password is answered with SASL
``not-authorized``, after which *we* close the stream, and the close must
not overwrite the reason.  It also answers ClientService's retry policy.

Numbers, and why:

``SETUP_TIMEOUT`` (30 s)
    From TCP connected to a bound session: TLS, SASL and bind are a few round
    trips; a server that accepts TCP and never speaks (a wrong port, a hung
    server, a middlebox) would otherwise hold the daemon forever.

Backoff after a failed attempt: 1 s, x1.5 per consecutive failure, at most
30 s, plus up to 1 s of jitter.  A session that got bound resets it.  A
login that keeps failing (wrong password) is therefore retried every 30 s,
not every second, so it does not hammer the server.

``CONFLICT_DELAY`` (5 min, doubling per consecutive conflict, at most 1 h)
    ``conflict`` means another client logged in with our full JID (usually
    a second daemon with the same configuration).  Reconnecting at once
    would knock it off, and it would knock us off in turn, forever; waiting
    minutes leaves the other one in peace and says so in the log.  A
    session that ends for any other reason resets the doubling.
"""

from __future__ import annotations

import random
from typing import Callable, NamedTuple, Optional

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import error
from twisted.python import failure
from twisted.words.protocols.jabber import client as jclient
from twisted.words.protocols.jabber import error as jerror
from twisted.words.protocols.jabber import sasl, xmlstream

#: Seconds from TCP connected until the session must be bound.
SETUP_TIMEOUT = 30.0
#: Seconds to wait after a conflict (doubled per consecutive conflict).
CONFLICT_DELAY = 300.0
#: The longest wait after conflicts.
MAX_CONFLICT_DELAY = 3600.0
#: Backoff after other failures: first delay, factor, ceiling, jitter.
INITIAL_DELAY, FACTOR, MAX_DELAY, JITTER = 1.0, 1.5, 30.0, 1.0

CONFLICT = "conflict: another client logged in with the same resource"
STOPPED = "stopped: the daemon is shutting down"

# kinds of endings
LOST, LOGIN, CONFLICTED, STOPPING = "lost", "login", "conflict", "stopped"


class Ended(NamedTuple):
    """How one attempt ended: the reason, its kind, and the wait before the next."""

    reason: str
    kind: str
    wasBound: bool
    delay: Optional[float]   # None: no retry (stopping)


def describeDisconnect(reason: Optional[failure.Failure]) -> str:
    """Words for a transport that went away with no better reason known."""
    if reason is None:
        return "connection closed"
    if reason.check(error.ConnectionDone):
        return "connection closed by the server"
    text = reason.getErrorMessage() or reason.type.__name__
    if "certificate verify failed" in text or "VerificationError" in text:
        text = ("TLS certificate of the server did not verify (%s); add its "
                "CA to [xmpp] ca_certs" % (text,))
    elif reason.type.__module__.startswith("OpenSSL"):
        text = "TLS error: %s" % (text,)
    return text


def describeStreamError(exc: jerror.StreamError) -> str:
    """Words for a ``<stream:error/>`` the server sent."""
    if exc.condition == "conflict":
        return CONFLICT
    text = "stream error from the server: %s" % (exc.condition,)
    if exc.text:
        text += " (%s)" % (" ".join(exc.text.split()),)
    return text


def describeInitFailure(reason: failure.Failure, initializer: object = None) -> str:
    """
    Words for a failed stream initialization.  ``initializer`` is the one
    that failed (Twisted leaves it first in ``xs.initializers``), which is
    the only way to tell *which* required feature the server did not offer.
    """
    exc = reason.value
    if reason.check(xmlstream.FeatureNotAdvertized):
        if isinstance(initializer, xmlstream.TLSInitiatingInitializer):
            return ("the server does not offer STARTTLS, and bytestreamd never "
                    "logs in without TLS")
        if isinstance(initializer, sasl.SASLInitiatingInitializer):
            return "the server offers no SASL authentication"
        if isinstance(initializer, jclient.BindInitializer):
            return "the server does not offer resource binding"
        return "the server does not offer a required stream feature (%s)" % (
            type(initializer).__name__,)
    if reason.check(sasl.SASLNoAcceptableMechanism):
        return "the server offers no SASL mechanism we support (DIGEST-MD5, PLAIN)"
    if reason.check(sasl.SASLAuthError):
        condition = exc.condition or "failure"
        if condition == "not-authorized":
            return "not-authorized: the server refused the password (or the account does not exist)"
        return "authentication failed: %s" % (condition,)
    if reason.check(xmlstream.TLSFailed):
        return "the server refused STARTTLS"
    if reason.check(jerror.StreamError):
        return describeStreamError(exc)
    if reason.check(jerror.StanzaError):
        if exc.condition == "conflict":
            return CONFLICT
        return "resource binding refused: %s" % (exc.condition,)
    return reason.getErrorMessage() or reason.type.__name__


class SessionLog:
    """
    The current attempt's story (see the module docstring).  ``rng`` gives
    jitter in [0, 1); injected so tests are exact.
    """

    def __init__(self, rng: Callable[[], float] = random.random):
        self._rng = rng
        self.lastReason = "not connected yet"
        self.stopping = False
        self.bound = False
        self._first: Optional[str] = None
        self._firstKind: Optional[str] = None
        self._failures = 0      # consecutive attempts without a session
        self._conflicts = 0     # consecutive sessions ended by conflict
        self._nextDelay: Optional[float] = None

    # -- inputs -------------------------------------------------------------

    def connected(self) -> None:
        """A TCP connection is up: a fresh attempt begins."""
        self._first = self._firstKind = None
        self.bound = False
        self._nextDelay = None

    def _record(self, reason: str, kind: str) -> None:
        if self._first is None:
            self._first, self._firstKind = reason, kind

    def streamError(self, reason: failure.Failure) -> None:
        """A ``<stream:error/>`` from the server, or XML we could not parse."""
        if reason.check(jerror.StreamError):
            exc = reason.value
            self._record(describeStreamError(exc),
                         CONFLICTED if exc.condition == "conflict" else LOST)
        else:
            self._record("the server sent malformed XML: %s" % (
                reason.getErrorMessage() or reason.type.__name__,), LOST)

    def initFailed(self, reason: failure.Failure, initializer: object = None) -> str:
        """Record why login failed; returns the words (for the log)."""
        words = describeInitFailure(reason, initializer)
        if words == CONFLICT:
            self._record(CONFLICT, CONFLICTED)
        else:
            self._record("login failed: " + words, LOGIN)
        return self._first or words

    def setupTimedOut(self, seconds: float) -> None:
        self._record("login failed: the server accepted the TCP connection but did "
                     "not complete XMPP stream setup within %gs" % (seconds,), LOGIN)

    def connectFailed(self, words: str) -> None:
        """No TCP connection at all (refused, unreachable, DNS)."""
        if not self.stopping:
            self.lastReason = "cannot connect: %s" % (words,)

    def sessionBound(self) -> None:
        self.bound = True
        self._failures = 0
        self.lastReason = ""

    def stop(self) -> None:
        """A deliberate stop: whatever happens next is because of it."""
        self.stopping = True
        self._first, self._firstKind = STOPPED, STOPPING

    def lost(self, reason: Optional[failure.Failure]) -> Ended:
        """The stream is gone: the true reason, and the delay before the next attempt."""
        wasBound = self.bound
        self.bound = False
        if self._first is not None:
            text, kind = self._first, self._firstKind or LOST
        elif wasBound:
            text, kind = describeDisconnect(reason), LOST
        else:
            text, kind = "login failed: " + describeDisconnect(reason), LOGIN
        self._first = self._firstKind = None
        self.lastReason = text
        if kind == STOPPING:
            self._nextDelay = None
            return Ended(text, kind, wasBound, None)
        if kind == CONFLICTED:
            self._conflicts += 1
            delay = min(CONFLICT_DELAY * 2 ** (self._conflicts - 1), MAX_CONFLICT_DELAY)
        else:
            if wasBound:
                self._conflicts = 0
            else:
                self._failures += 1
            delay = self._backoff(max(1, self._failures))
        self._nextDelay = delay
        return Ended(text, kind, wasBound, delay)

    # -- ClientService's retry policy ----------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return min(INITIAL_DELAY * FACTOR ** attempt, MAX_DELAY) + self._rng() * JITTER

    def retryDelay(self, attempt: int) -> float:
        """
        ``ClientService(retryPolicy=...)``: the delay :meth:`lost` chose for
        the attempt that just ended, else (TCP did not even connect) the
        backoff for ``attempt`` consecutive connect failures.
        """
        delay, self._nextDelay = self._nextDelay, None
        if delay is not None:
            return delay
        return self._backoff(max(attempt, self._failures))
