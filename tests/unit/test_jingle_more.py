"""
bytestreamd.negotiation.jingle_more: which events are an extra content's,
and what the responder answers to a content-add (accept only on a live
many-connections session, for the session's application and an enabled
transport).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.negotiation.jingle_effects import Event
from bytestreamd.negotiation.jingle_more import MoreStreams
from bytestreamd.negotiation.jingle_session import JingleSession
from bytestreamd.wire.jingle_ibb import IBBTransport
from tests.unit.test_jingle_session import (
    JULIET, KEY, ROMEO, TIMEOUTS, content, sends)
from bytestreamd.wire import jingle as J


class _Negotiator:
    def __init__(self, names):
        self.names = names

    def method(self, name):
        return object() if name in self.names else None


class _Parent:
    """The responder's session controller, as MoreStreams sees it."""

    weAreInitiator = False

    def __init__(self, methods=("s5b", "ibb")):
        self.session, _ = JingleSession.incoming(
            JULIET, ROMEO, J.Jingle(J.SESSION_INITIATE, "x", contents=(content(),)),
            TIMEOUTS)
        self.session.accept()
        self.key = KEY
        self.usable = ["s5b", "ibb"]
        self.stream = object()
        self.onExtraStream = lambda stream: None
        self.negotiator = _Negotiator(methods)
        self.sid = "x"
        self.peer = ROMEO
        self.options = {}
        self.performed = []

    @property
    def live(self):
        return True

    def perform(self, effects):
        self.performed.extend(effects)


def _add(parent, c):
    """The peer's content-add of ``c``: the machine's event for it."""
    effects = parent.session.receive(J.Jingle(J.CONTENT_ADD, "x", contents=(c,)))
    [event] = [e for e in effects if isinstance(e, Event) and e.kind == "content-add"]
    return event


class RefusalTests(SynchronousTestCase):
    def rejected(self, parent, c):
        more = MoreStreams(parent)
        event = _add(parent, c)
        self.assertTrue(more.owns(event))
        more.event(event)
        [reject] = sends(parent.performed, J.CONTENT_REJECT)
        self.assertEqual(parent.session.theirAdds, {})
        self.assertEqual(more.contents, {})
        return reject.reason.condition

    def test_noListener(self):
        parent = _Parent()
        parent.onExtraStream = None
        self.assertEqual(self.rejected(parent, content("link-1")), "decline")

    def test_noStreamYet(self):
        parent = _Parent()
        parent.stream = None
        self.assertEqual(self.rejected(parent, content("link-1")), "decline")

    def test_anotherApplication(self):
        self.assertEqual(self.rejected(_Parent(), content("link-1", ns="urn:x-other")),
                         "unsupported-applications")

    def test_transportNotEnabledHere(self):
        parent = _Parent(methods=("s5b",))
        c = content("link-1", transport=IBBTransport("i1", 4096))
        self.assertEqual(self.rejected(parent, c), "unsupported-transports")


class RoutingTests(SynchronousTestCase):
    def test_ownsOnlyOtherContents(self):
        parent = _Parent()
        more = MoreStreams(parent)
        mine = Event(ROMEO, "x", "transport-info", "", content=KEY)
        other = Event(ROMEO, "x", "transport-info", "", content=("initiator", "link-1"))
        whole = Event(ROMEO, "x", "ended", "")
        self.assertFalse(more.owns(mine))
        self.assertFalse(more.owns(whole))
        self.assertTrue(more.owns(other))
        self.assertTrue(more.owns(Event(ROMEO, "x", "content-add", "",
                                        content=("initiator", "link-2"))))
        # a content already gone: ours to ignore, never the anchor's handlers'
        more.event(Event(ROMEO, "x", "transport-replace", "", content=("initiator", "gone")))
        self.assertEqual(parent.performed, [])
