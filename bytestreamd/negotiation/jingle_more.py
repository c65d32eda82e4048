"""
More streams in one Jingle session, each in a content of its own
(content-add, XEP-0166 section 7.2.3-7.2.5): what a ``connections=many``
link uses when the session's first stream went by SOCKS5.

Why contents, and not XEP-0261's transport-info trick: a XEP-0260
transport is one negotiation (both sides' candidates, the reports, the
nomination, the proxy activation) bound to one content; a second SOCKS5
stream needs a negotiation of its own, with its own sid (so its own
DST.ADDR on the streamhosts), candidates and timer, and its own fallback
-- which only a content of its own can carry (transport-replace names a
content).  So each extra stream is:

1. ``content-add`` by the initiator: a new content (``<anchor>-<n>``)
   with the anchor's description and a fresh XEP-0260 transport (new sid,
   freshly gathered candidates);
2. ``content-accept`` by the responder with its own candidates (or
   ``content-reject``: no listener for more streams, another
   application, a transport not enabled here);
3. the XEP-0260 exchange for that content (:class:`S5BDriver` as for the
   first content: candidate-used / candidate-error, nomination,
   activation);
4. when no candidate works, the initiator replaces *that content's*
   transport by IBB (``transport-replace``), as for the first;
5. when its stream has ended, the initiator removes the content
   (``content-remove``, reason ``success``); the session and its other
   contents stay.  Ending the session ends every content.

:class:`MoreStreams` belongs to one session controller
(:class:`~.jingle_streams._StreamSession`, which routes to it every event
about a content other than its own) and keeps one :class:`ExtraContent`
per such content.  An ExtraContent is what the transport drivers report
to: it looks like a session controller of one content.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from twisted.internet import defer

from bytestreamd.errors import MethodFailed
from bytestreamd.interfaces import StreamContext
from bytestreamd.negotiation.attempts import summary
from bytestreamd.negotiation.jingle_effects import Event, SessionStateError
from bytestreamd.text import SafeLogger
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle import Content

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

Key = Tuple[str, str]


def _streams() -> Any:
    """:mod:`.jingle_streams` (drivers, ``watchEnd``): it imports this
    module, so its helpers are looked up when first used."""
    from bytestreamd.negotiation import jingle_streams
    return jingle_streams


class ExtraContent:
    """
    One content beyond the session's first, and its stream.  The drivers
    see the session's identity (roles, JIDs, clock, the negotiator) and
    this content's key; ``result`` fires with the stream or fails with
    MethodFailed.
    """

    def __init__(self, more: "MoreStreams", key: Key,
                 options: Optional[Dict[str, Any]] = None):
        self.more = more
        self.parent = more.parent
        self.key = key
        self.options = dict(self.parent.options, **(options or {}))
        self.driver: Any = None
        self.stream: Any = None
        self.failures: list = []
        self.result: defer.Deferred = defer.Deferred(self._cancel)

    # -- what a driver needs of its controller --------------------------------------

    weAreInitiator = property(lambda self: self.parent.weAreInitiator)
    initiator = property(lambda self: self.parent.initiator)
    responder = property(lambda self: self.parent.responder)
    own = property(lambda self: self.parent.own)
    peer = property(lambda self: self.parent.peer)
    negotiator = property(lambda self: self.parent.negotiator)
    clock = property(lambda self: self.parent.clock)
    session = property(lambda self: self.parent.session)

    @property
    def live(self) -> bool:
        return self.parent.live and self.key in self.parent.session.contents

    def perform(self, effects) -> None:
        self.parent.perform(effects)

    def context(self, transportSid: str, options=None, offeredBy=None) -> StreamContext:
        return self.parent.context(transportSid, options, offeredBy)

    def newDriver(self, name: str) -> Any:
        return _streams().DRIVERS[name](self, self.negotiator.method(name))

    # -- the driver's reports ---------------------------------------------------------

    def transportUp(self, driver: Any, stream: Any) -> None:
        if driver is not self.driver or self.result.called or not self.live:
            stream.abortConnection()
            return
        self.stream = stream
        self.perform(self.session.transportEstablished(self.key))
        log.info("jingle session {sid}: content {name} up via {method}",
                 sid=self.parent.sid, name=self.key[1], method=driver.name)
        self.parent.extras.append(stream)
        if self.weAreInitiator:
            _streams().watchEnd(stream, self._streamEnded)
        self.result.callback(stream)

    def transportFailed(self, driver: Any, reason: str,
                        condition: Optional[str] = None) -> None:
        if driver is not self.driver or self.result.called:
            return
        self.failures.append((driver.name, reason))
        fallback = driver.name != "ibb" and "ibb" in self.parent.usable \
            and self.negotiator.method("ibb") is not None and self.live
        if fallback and self.weAreInitiator:
            log.info("jingle session {sid}: content {name}: {why}; replacing it by IBB",
                     sid=self.parent.sid, name=self.key[1], why=reason)
            self._replaceWithIBB()
            return
        if fallback:
            self.driver = None  # the initiator drives the replace
            return
        self.fail(summary(self.failures), condition)

    def _replaceWithIBB(self) -> None:
        self.driver = driver = self.newDriver("ibb")

        def offered(transport):
            if driver is self.driver and self.live:
                self.perform(self.session.replaceTransport(self.key, transport))

        driver.prepare().addCallbacks(offered, lambda f: self.transportFailed(
            driver, f.getErrorMessage()))

    # -- the end ----------------------------------------------------------------------

    def fail(self, reason: str, condition: Optional[str] = None) -> None:
        """This content failed: remove it (the initiator) and say why."""
        if self.driver is not None:
            self.driver.stop()
        self.remove("failed-transport", reason)
        if not self.result.called:
            self.result.errback(MethodFailed(reason, condition))

    def remove(self, condition: str, text: Optional[str] = None) -> None:
        self.more.contents.pop(self.key, None)
        if self.parent.live and self.key in self.session.contents:
            try:
                self.perform(self.session.removeContent(self.key, condition, text))
            except SessionStateError:
                pass

    def _streamEnded(self) -> None:
        # The initiator removes the content once its stream has ended both
        # ways; the responder's stream ends with the same SOCKS5/IBB close.
        if self.stream in self.parent.extras:
            self.parent.extras.remove(self.stream)
        self.remove("success", "its stream ended")

    def stop(self) -> None:
        if self.driver is not None:
            self.driver.stop()
        if not self.result.called:
            self.result.errback(MethodFailed("session %s ended" % self.parent.sid))

    def _cancel(self, d: defer.Deferred) -> None:
        if self.driver is not None:
            self.driver.stop()
        self.remove("cancel", "the connection went away before its stream was up")

    # -- events about this content ----------------------------------------------------

    def event(self, event: Event) -> None:
        handler = getattr(self, "_on_" + event.kind.replace("-", "_"), None)
        if handler is not None:
            handler(event)

    def _transportIn(self, event: Event) -> Any:
        if event.jingle is not None:
            c = event.jingle.content(*self.key)
            if c is not None and c.transport is not None:
                return c.transport
        c = self.session.contents.get(self.key)
        return c.transport if c is not None else None

    def _on_content_accepted(self, event: Event) -> None:
        if self.weAreInitiator and self.driver is not None:
            self.driver.start(self._transportIn(event))

    def _on_content_rejected(self, event: Event) -> None:
        self.more.contents.pop(self.key, None)
        if self.driver is not None:
            self.driver.stop()
        if not self.result.called:
            self.result.errback(MethodFailed("jingle: %s" % event.reason))

    def _on_content_removed(self, event: Event) -> None:
        self.more.contents.pop(self.key, None)
        if self.driver is not None:
            self.driver.stop()
        if not self.result.called:
            self.result.errback(MethodFailed("jingle: %s" % event.reason))
            return
        stream = self.stream
        if event.jingle is not None and stream is not None and stream.connected:
            # The peer removed it: its stream's end should follow; one
            # that does not is closed (as a session's is).
            self.clock.callLater(self.negotiator.requestTimeout, self._close)

    def _close(self) -> None:
        stream = self.stream
        if stream is not None and stream.connected and not stream.disconnecting:
            stream.loseConnection()

    def _on_transport_info(self, event: Event) -> None:
        if self.driver is not None:
            self.driver.info(self._transportIn(event))

    def _on_transport_accepted(self, event: Event) -> None:
        if self.weAreInitiator and self.driver is not None:
            self.driver.start(self._transportIn(event))

    def _on_transport_rejected(self, event: Event) -> None:
        if self.weAreInitiator and event.jingle is not None:
            self.fail("%s rejected the fallback to IBB; %s" % (
                self.peer.full(), summary(self.failures)))

    def _on_transport_replace(self, event: Event) -> None:
        transport = self._transportIn(event)
        name = _streams().driverNameFor(transport)
        if self.weAreInitiator or name not in self.parent.usable \
                or self.negotiator.method(name) is None or self.result.called:
            self.perform(self.session.rejectTransport(self.key))
            return
        if self.driver is not None:
            self.driver.stop()
        self.driver = driver = self.newDriver(name)

        def answered(answer):
            if driver is self.driver and self.live:
                self.perform(self.session.acceptTransport(self.key, answer))
                driver.startAnswered(transport)

        driver.answer(transport).addCallbacks(
            answered, lambda f: self.transportFailed(driver, f.getErrorMessage()))


class MoreStreams:
    """The contents beyond the first of one session controller."""

    def __init__(self, parent: Any):
        self.parent = parent
        self.contents: Dict[Key, ExtraContent] = {}
        self.count = 0

    def owns(self, event: Event) -> bool:
        """Is ``event`` about a content other than the session's own?  (One
        of these, a new one, or one already gone: never the anchor's.)"""
        return event.content is not None and event.content != self.parent.key

    def event(self, event: Event) -> None:
        if event.kind == "content-add":
            self._added(event)
            return
        extra = self.contents.get(event.content)
        if extra is not None:
            extra.event(event)

    def ended(self) -> None:
        contents, self.contents = self.contents, {}
        for extra in contents.values():
            extra.stop()

    # -- the initiator ------------------------------------------------------------------

    def add(self, name: str, options: Optional[Dict[str, Any]] = None
            ) -> "defer.Deferred[Any]":
        """
        One more stream by method ``name`` in a content of its own:
        content-add with a fresh transport; fires with the stream.
        """
        parent = self.parent
        anchor = parent.session.contents[parent.key]
        key = self._newKey(anchor.name)
        extra = ExtraContent(self, key, options)
        extra.driver = driver = extra.newDriver(name)
        self.contents[key] = extra

        def offered(transport):
            if not parent.live or driver is not extra.driver:
                driver.stop()
                self.contents.pop(key, None)
                raise MethodFailed("session %s ended" % parent.sid)
            parent.perform(parent.session.addContent(Content(
                J.INITIATOR, key[1], anchor.senders, anchor.disposition,
                anchor.description, transport)))
            return extra.result

        def failed(f):
            self.contents.pop(key, None)
            return f

        return driver.prepare().addCallbacks(offered, failed)

    def _newKey(self, anchorName: str) -> Key:
        session = self.parent.session
        while True:
            self.count += 1
            key = (J.INITIATOR, "%s-%d" % (anchorName, self.count))
            if key not in session.contents and key not in session.ourAdds \
                    and key not in session.theirAdds:
                return key

    # -- the responder ------------------------------------------------------------------

    def _added(self, event: Event) -> None:
        parent = self.parent
        key = event.content
        offer = event.jingle.content(*key) if event.jingle is not None else None
        if offer is None or not parent.live:
            return
        problem = self._refusal(offer)
        if problem is not None:
            log.info("jingle session {sid}: refused content {name} from {peer}: {why}",
                     sid=parent.sid, name=key[1], peer=parent.peer.full(), why=problem[1])
            parent.perform(parent.session.rejectContent(key, *problem))
            return
        extra = ExtraContent(self, key)
        extra.driver = driver = extra.newDriver(_streams().driverNameFor(offer.transport))
        self.contents[key] = extra

        def answered(answer):
            if driver is not extra.driver or not parent.live \
                    or key not in parent.session.theirAdds:
                driver.stop()
                self.contents.pop(key, None)
                return
            parent.perform(parent.session.acceptContent(key, Content(
                offer.creator, offer.name, offer.senders, offer.disposition,
                offer.description, answer, offer.security)))
            driver.startAnswered(offer.transport)

        def failed(f):
            self.contents.pop(key, None)
            if parent.live and key in parent.session.theirAdds:
                parent.perform(parent.session.rejectContent(
                    key, "failed-transport", f.getErrorMessage()))

        driver.answer(offer.transport).addCallbacks(answered, failed)
        extra.result.addCallbacks(self._up, lambda f: None)

    def _refusal(self, offer: Content) -> Optional[Tuple[str, str]]:
        parent = self.parent
        if parent.weAreInitiator or parent.stream is None \
                or parent.onExtraStream is None:
            return "decline", "no more streams are expected in this session"
        anchor = parent.session.contents.get(parent.key)
        if anchor is None or offer.description is None or anchor.description is None \
                or J.payloadKey(offer.description) != J.payloadKey(anchor.description):
            return "unsupported-applications", "another application than the session's"
        name = _streams().driverNameFor(offer.transport)
        if name is None or name not in parent.usable \
                or parent.negotiator.method(name) is None:
            return "unsupported-transports", "that transport is not enabled here"
        return None

    def _up(self, stream: Any) -> None:
        parent = self.parent
        if parent.onExtraStream is not None and parent.live:
            parent.onExtraStream(stream)
        else:
            stream.abortConnection()
