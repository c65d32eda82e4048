"""
XEP-0234 file transfer plugged into the Jingle negotiator
(:mod:`bytestreamd.negotiation.jingle_streams`): the application translator,
the range of a session-accept, and the end of the transfer driven by
:class:`~bytestreamd.negotiation.jingle_file_end.FileEnd` over the real
stream.

The glue is deliberately thin:

* :data:`TRANSLATOR` is registered with :mod:`.jingle_apps` on import, so
  disco advertises ``urn:xmpp:jingle:apps:file-transfer:5`` and offers of
  :class:`~bytestreamd.application.FileApplication` go out as XEP-0234;
  its ``answerDescription``/``rangeFromAnswer`` hooks put the receiver's
  ``<range/>`` (resume) in the session-accept and read it back, and
  :func:`checkedRange` refuses a range the file cannot have;
* :class:`FileStreamEnd` sits on the established stream: it counts and
  hashes (SHA-256) the bytes that go through -- what the link layer writes
  on the sending side, what the stream delivers on the receiving side --
  and, when the stream ends, hands count and digest to its ``FileEnd``,
  then performs that machine's effects on the session (checksum or
  received session-info, session-terminate, timers) and logs the outcome.
  On the *receiving* side it holds the stream's end back from the link
  layer until the outcome is known (at most ``checksumGrace``, 5 s), and
  leaves the outcome on the stream as ``endDetails`` (``verified=``,
  ``sha256=``), which the link's ``CLOS``/``ERR`` event carries: so
  ``bytestreamctl receive`` learns the daemon's verdict on a checksum that
  came after the data.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from bytestreamd.application import Application, FileApplication, RangeAnswer
from bytestreamd.negotiation import jingle_apps
from bytestreamd.negotiation.jingle_file import (
    FileOfferError, acceptDescription, applicationOf, offerDescription, rangeOfAccept)
from bytestreamd.negotiation.jingle_file_end import (
    RECEIVER, SENDER, FileEnd, Outcome, SendInfo, StartTimer, StopTimer, StreamDigest,
    Terminate)
from bytestreamd.ns import NS_JINGLE_FT, NS_JINGLE_LINK
from bytestreamd.text import SafeLogger
from bytestreamd.wire.jingle_ft import DEFAULT_ALGO, File, FileDescription

log = SafeLogger()

#: The content name of our file offers (Libervia names its own "file" too).
CONTENT_NAME = "file"


def _toDescription(application: Application) -> Optional[FileDescription]:
    if isinstance(application, FileApplication):
        return offerDescription(application)
    return None


def _fromDescription(payload: Any) -> Optional[Application]:
    if isinstance(payload, FileDescription):
        try:
            return applicationOf(payload)
        except FileOfferError as e:
            raise ValueError(str(e))
    return None


def acceptedDescription(offered: Any, answer: Optional[RangeAnswer]) -> Any:
    """The description of our session-accept for the offered one."""
    if isinstance(offered, FileDescription):
        return acceptDescription(offered, answer)
    return offered


def _rangeFromAnswer(accepted: Any) -> Optional[RangeAnswer]:
    if not isinstance(accepted, FileDescription) or accepted.file.range is None:
        return None
    r = accepted.file.range
    return RangeAnswer(r.effectiveOffset, r.length)


def _forPeer(description: Any, application: Application, features: Any) -> Any:
    """
    A bytestreamd peer (it advertises our own link application) gets the
    hashes in the offer -- the MD5 ``bytestreamctl send`` computed, as over
    SI; any other peer gets only ``<hash-used/>`` (Libervia 0.9 fails an
    offer whose ``<hash/>`` it cannot read: docs/interop.rst).
    """
    if isinstance(application, FileApplication) and features is not None \
            and NS_JINGLE_LINK in features:
        return offerDescription(application, hashInOffer=True)
    return description


TRANSLATOR = jingle_apps.Translator(NS_JINGLE_FT, CONTENT_NAME, _toDescription,
                                    _fromDescription, acceptedDescription, _rangeFromAnswer,
                                    _forPeer)


def register() -> None:
    """Register the XEP-0234 translator once."""
    if TRANSLATOR not in jingle_apps.TRANSLATORS:
        jingle_apps.register(TRANSLATOR)


register()


def isFile(application: Optional[Application]) -> bool:
    return isinstance(application, FileApplication)


def checkedRange(application: Optional[Application],
                 asked: Optional[RangeAnswer]) -> Optional[RangeAnswer]:
    """
    The range the receiver's session-accept asks of us, checked against the
    file (``ValueError`` for one it cannot have); the whole file when it
    asks none; None when this is not a file.
    """
    if not isinstance(application, FileApplication):
        return None
    if asked is None:
        return RangeAnswer(0, None)
    return rangeOfAccept(acceptDescription(FileDescription(File(size=application.size)),
                                           asked), application.size)


class FileStreamEnd:
    """
    The end of one XEP-0234 transfer on a live session.

    ``host`` is the stream session (``jingle_streams._StreamSession``): it
    gives ``session`` (the machine), ``perform(effects)``, ``clock``,
    ``terminate``, ``weAreInitiator``.  ``sending`` is True for the file's
    sender.  ``size`` is the number of bytes to move (the asked range).
    """

    def __init__(self, host: Any, application: FileApplication, creator: str, name: str,
                 sending: bool, size: int, whole: bool = True,
                 onOutcome: Optional[Callable[[Outcome], None]] = None,
                 sentRange: Optional[RangeAnswer] = None) -> None:
        self.host = host
        self.digest = StreamDigest(DEFAULT_ALGO)
        offered: Dict[str, bytes] = {}
        if application.sha256:
            offered[DEFAULT_ALGO] = bytes.fromhex(application.sha256)
        self.machine = FileEnd(SENDER if sending else RECEIVER, creator, name, size,
                               offered=offered, whole=whole, sentRange=sentRange)
        self.sending = sending
        self.onOutcome = onOutcome
        self._timers: Dict[str, Any] = {}
        self.outcome: Optional[Outcome] = None
        self.stream: Any = None
        #: The receiving side's held end of the stream (see the module docstring).
        self._held: Optional[Callable[[], None]] = None

    # -- the stream ---------------------------------------------------------------

    def watch(self, stream: Any) -> None:
        """Count and hash what crosses ``stream``; act when it ends."""
        self.stream = stream
        if self.sending:
            write, writeSequence = stream.write, stream.writeSequence

            def counted(data: bytes) -> None:
                self.digest.update(data)
                write(data)

            def countedSequence(seq) -> None:
                seq = list(seq)
                for data in seq:
                    self.digest.update(data)
                writeSequence(seq)

            stream.write = counted
            stream.writeSequence = countedSequence
        attach = stream.attachProtocol
        end = self

        def attachProtocol(protocol: Any) -> None:
            attach(_Counting.around(protocol, end))

        stream.attachProtocol = attachProtocol

    def streamEnded(self) -> None:
        self._run(self.machine.dataDone(self.digest.count, self.digest.algo,
                                        self.digest.digest()))

    # -- the session --------------------------------------------------------------

    def sessionInfo(self, payloads) -> None:
        for payload in payloads:
            self._run(self.machine.sessionInfo(payload))

    def sessionEnded(self, condition: str, text: Optional[str], byPeer: bool) -> None:
        self._run(self.machine.sessionEnded(condition, text, byPeer))

    def stop(self) -> None:
        """The session is over: no timer left, nothing held back."""
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
        self._release()

    def holdEnd(self, deliver: Callable[[], None]) -> None:
        """
        The stream ended: on the receiving side, ``deliver`` (the link
        layer's connectionLost) waits for the outcome; at once otherwise.
        """
        self.streamEnded()
        if self.sending or self.outcome is not None:
            self._setDetails()
            deliver()
        else:
            self._held = deliver

    def _setDetails(self) -> None:
        if self.stream is not None and self.outcome is not None and not self.sending:
            try:
                self.stream.endDetails = self.outcome.details()
            except AttributeError:
                pass  # a stream with __slots__: the log still says it

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._setDetails()
            held()

    def _run(self, effects: List[Any]) -> None:
        host = self.host
        # Known before the session-terminate below runs (its "ended" event
        # releases the held end, which must carry the outcome).
        for effect in effects:
            if isinstance(effect, Outcome):
                self.outcome = effect
        for effect in effects:
            if isinstance(effect, SendInfo):
                if host.live:
                    host.perform(host.session.sendSessionInfo([effect.payload]))
            elif isinstance(effect, Terminate):
                host.terminate(effect.condition, effect.text)
            elif isinstance(effect, StartTimer):
                self._timers[effect.name] = host.clock.callLater(
                    effect.seconds, self._expired, effect.name)
            elif isinstance(effect, StopTimer):
                call = self._timers.pop(effect.name, None)
                if call is not None and call.active():
                    call.cancel()
            elif isinstance(effect, Outcome):
                self.outcome = effect
                log.info("file transfer {sid} with {peer}: {how}", sid=host.sid,
                         peer=host.peer.full(), how=effect.reason)
                if self.onOutcome is not None:
                    self.onOutcome(effect)
                self._release()

    def _expired(self, name: str) -> None:
        self._timers.pop(name, None)
        self._run(self.machine.timerExpired(name))


class _Counting:
    """
    Forwards every protocol call; hashes what the stream delivers (the
    receiving side) and tells the end once the data is over: on the
    receiving side the peer's end of data (``readConnectionLost`` of a
    half-closeable protocol, else ``connectionLost``), on the sending side
    ``connectionLost``.  What the end holds back (the receiving side) is
    delivered in order once it lets go.
    """

    def __init__(self, inner: Any, end: FileStreamEnd):
        self.inner = inner
        self.end = end
        self.ended = False
        self.released = False
        self.queue: List[Callable[[], None]] = []

    def _deliver(self, call: Callable[[], None], endsData: bool) -> None:
        self.queue.append(call)
        if endsData and not self.ended:
            self.ended = True
            self.end.holdEnd(self._release)
            return
        if self.released or not self.ended:
            self._release()

    def _release(self) -> None:
        self.released = True
        while self.queue:
            self.queue.pop(0)()

    @staticmethod
    def around(inner: Any, end: FileStreamEnd) -> Any:
        from twisted.internet.interfaces import IHalfCloseableProtocol
        if IHalfCloseableProtocol.providedBy(inner):
            return _HalfCloseableCounting(inner, end)
        return _Counting(inner, end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def makeConnection(self, transport: Any) -> None:
        self.inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if not self.end.sending:
            self.end.digest.update(data)
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        self._deliver(lambda: self.inner.connectionLost(reason), True)


def _halfCloseable():
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from zope.interface import implementer

    @implementer(IHalfCloseableProtocol)
    class _HalfCloseableCounting(_Counting):
        def readConnectionLost(self) -> None:
            self._deliver(self.inner.readConnectionLost, not self.end.sending)

        def writeConnectionLost(self) -> None:
            self._deliver(self.inner.writeConnectionLost, False)

    return _HalfCloseableCounting


_HalfCloseableCounting = _halfCloseable()


__all__ = ["CONTENT_NAME", "FileStreamEnd", "TRANSLATOR", "acceptedDescription",
           "checkedRange", "isFile", "register"]
