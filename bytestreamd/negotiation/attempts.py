"""
The neutral attempt driver: how a negotiated bytestream is opened by one of
several methods, whatever framework (SI today, Jingle next) negotiated it.

* The initiator tries the chosen methods **in order**
  (:meth:`Attempts.inOrder`), each bounded by the per-attempt timeout.
* The target **races** them (:meth:`Attempts.race`): every chosen method
  waits for the initiator at once, and the first to open wins.

Both report progress the same way, which is what ``650 LINK`` shows:
``INIT`` for each method tried, ``BAD`` for each that failed while another
is still to come -- never for the last, whose failure is the caller's final
``BAD`` (a :class:`MethodFailed` summing up every attempt).  Methods are
known only through :class:`~bytestreamd.interfaces.IStreamMethod`; nothing
here knows a namespace or a stanza.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber.error import StanzaError

from bytestreamd.errors import MethodFailed, describeStanzaError
from bytestreamd.interfaces import StreamContext
from bytestreamd.text import SafeLogger

Progress = Callable[[str, Optional[str], Optional[str]], None]

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


def noProgress(state: str, method: Optional[str], reason: Optional[str]) -> None:
    pass


def words(exc: BaseException) -> str:
    if isinstance(exc, StanzaError):
        return describeStanzaError(exc)
    return str(exc) or exc.__class__.__name__


def summary(failures: Sequence[Tuple[str, str]]) -> str:
    """``name: reason; ...`` -- methods may already name themselves
    (``"ibb: ..."``); say it once."""
    return "; ".join(reason if reason.startswith(name + ":") else "%s: %s" % (name, reason)
                     for name, reason in failures)


def bounded(clock, d: defer.Deferred, timeout: float) -> defer.Deferred:
    """
    Cancel ``d`` after ``timeout`` seconds and fail it with MethodFailed
    saying so; an outside cancel stays a CancelledError.
    """
    expired = []

    def expire():
        expired.append(True)
        d.cancel()

    call = clock.callLater(timeout, expire)

    def done(result):
        if call.active():
            call.cancel()
        if expired and isinstance(result, failure.Failure):
            return failure.Failure(MethodFailed("timed out after %gs" % timeout))
        return result

    return d.addBoth(done)


def _asMethodFailed(f: failure.Failure) -> failure.Failure:
    """Anything but MethodFailed or a cancel from a method is a bug; say so."""
    if f.check(MethodFailed, defer.CancelledError):
        return f
    log.failure("bytestream method failed unexpectedly", f)
    return failure.Failure(MethodFailed("internal error: %s" % words(f.value)))


def call(fn, ctx: StreamContext) -> defer.Deferred:
    """``fn(ctx)`` (a method's initiate or expect) as a Deferred that fails
    only with MethodFailed or CancelledError."""
    try:
        d = fn(ctx)
    except Exception:
        return defer.fail().addErrback(_asMethodFailed)
    return d.addErrback(_asMethodFailed)


class Attempts:
    """
    The attempts of one negotiation: what failed so far (``failures``, for
    the final reason) and the last failure's condition.  ``timeout`` bounds
    each attempt.
    """

    def __init__(self, clock, timeout: float, progress: Optional[Progress] = None):
        self.clock = clock
        self.timeout = timeout
        self.progress = progress or noProgress
        self.failures: List[Tuple[str, str]] = []
        self.condition: Optional[str] = None

    def summary(self) -> str:
        return summary(self.failures)

    def failed(self) -> MethodFailed:
        """The final failure: every attempt, summed up."""
        return MethodFailed(self.summary(), condition=self.condition)

    async def inOrder(self, methods: Sequence[Any], ctx: StreamContext,
                      more: bool = False) -> Any:
        """
        The initiator: try ``methods`` one after another; the first stream
        wins.  When all fail, raise :meth:`failed` -- unless ``more`` (the
        negotiation will offer other methods next), then return None; the
        last failure was then reported ``BAD`` too.
        """
        for i, method in enumerate(methods):
            self.progress("INIT", method.name, None)
            try:
                return await bounded(self.clock, call(method.initiate, ctx), self.timeout)
            except MethodFailed as e:
                self.failures.append((method.name, e.reason))
                self.condition = e.condition
                if i < len(methods) - 1 or more:
                    self.progress("BAD", method.name, e.reason)
        if more:
            return None
        raise self.failed()

    def race(self, methods: Sequence[Any], ctx: StreamContext) -> "Race":
        """The target: wait for every method at once; see :class:`Race`."""
        return Race(self.clock, list(methods), ctx, self.progress,
                    self.timeout * len(methods))


class Race:
    """
    The target's side: every chosen method waits for the initiator at once
    and the first to open wins.  ``INIT`` names the method the initiator
    should be trying (the first one still waiting, as it tries in order);
    when that one fails and another is still waiting, ``BAD`` then ``INIT``
    for the next.  ``result`` fires with the stream, or fails with
    MethodFailed when every method failed or ``timeout`` passed.
    """

    def __init__(self, clock, methods: List[Any], ctx: StreamContext,
                 progress: Progress, timeout: float):
        self.result: defer.Deferred = defer.Deferred(self._cancel)
        self.progress = progress
        self.timeout = timeout
        self.finished = False
        self.failures: List[Tuple[str, str]] = []
        self.live: Dict[Any, Optional[defer.Deferred]] = {m: None for m in methods}
        self.order = list(methods)
        self.announced = methods[0]
        self.timer = clock.callLater(timeout, self._expire)
        progress("INIT", self.announced.name, None)
        for method in methods:
            if method in self.live:
                d = call(method.expect, ctx)
                if method in self.live and not self.finished:
                    self.live[method] = d
                d.addBoth(self._done, method)

    def _done(self, result, method) -> None:
        if self.finished or method not in self.live:
            if not isinstance(result, failure.Failure) and self.finished:
                result.abortConnection()  # a late winner nobody wants
            return None
        del self.live[method]
        if not isinstance(result, failure.Failure):
            self._finish()
            self.result.callback(result)
            return None
        reason = result.value.reason if result.check(MethodFailed) else words(result.value)
        self.failures.append((method.name, reason))
        if not self.live:
            self._finish()
            self.result.errback(MethodFailed(summary(self.failures),
                                             getattr(result.value, "condition", None)))
        elif method is self.announced:
            self.announced = next(m for m in self.order if m in self.live)
            self.progress("BAD", method.name, reason)
            self.progress("INIT", self.announced.name, None)
        return None

    def _finish(self) -> None:
        self.finished = True
        if self.timer.active():
            self.timer.cancel()
        live, self.live = self.live, {}
        for d in live.values():
            if d is not None:
                d.cancel()

    def _expire(self) -> None:
        waited = ", ".join(m.name for m in self.live)
        text = "no bytestream opened within %gs (waited for %s)" % (self.timeout, waited)
        if self.failures:
            text += "; " + summary(self.failures)
        self.stop(MethodFailed(text))

    def stop(self, exc: Exception) -> None:
        if not self.finished:
            self._finish()
            self.result.errback(exc)

    def _cancel(self, d: defer.Deferred) -> None:
        if not self.finished:
            self._finish()
