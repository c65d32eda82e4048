"""
Test helpers shared by the unit tests: an initialized :class:`Connection`
whose stream is a wokkel ``XmlStreamStub``, and XML parsing for asserting on
what was sent (raw strings included).
"""

from __future__ import annotations

from typing import List, Union

from bytestreamd import _compat  # noqa: F401

from twisted.internet.task import Clock
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.test.helpers import XmlStreamStub

from bytestreamd.xmpp.stanzas import Connection


def parseXml(data: Union[str, bytes, domish.Element]) -> domish.Element:
    """Parse one serialized element (as sent on the stub) into an Element."""
    if isinstance(data, domish.Element):
        return data
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    elements: List[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = elements.append
    stream.ElementEvent = lambda e: elements[0].addChild(e)
    stream.DocumentEndEvent = lambda: None
    stream.parse("<stream xmlns='jabber:client'>" + data + "</stream>")
    children = [c for c in elements[0].elements()]
    assert len(children) == 1, children
    return children[0]


class ConnectionHarness:
    """
    A Connection as it is after login, on a stub stream.

    * ``sent`` -- everything sent, parsed into Elements.
    * ``receive(element)`` -- dispatch a stanza as if it came from the server.
    * ``clock`` -- drives request timeouts and handler timers.
    """

    def __init__(self, jid: str = "alice@example.org/daemon"):
        self.clock = Clock()
        self.stub = XmlStreamStub()
        factory = xmlstream.XmlStreamFactory(xmlstream.Authenticator())
        self.connection = Connection(factory, self.clock, JID(jid))
        self.connection._connected(self.stub.xmlstream)
        self.connection._authd(self.stub.xmlstream)

    @property
    def jid(self) -> JID:
        return self.connection.jid

    @property
    def sent(self) -> List[domish.Element]:
        return [parseXml(x) for x in self.stub.output]

    def addHandler(self, handler) -> None:
        handler.setHandlerParent(self.connection)

    def receive(self, element: Union[str, domish.Element]) -> None:
        self.stub.send(parseXml(element))

    def disconnect(self, reason=None) -> None:
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure
        self.connection._disconnected(reason or Failure(ConnectionLost()))
