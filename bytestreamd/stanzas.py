"""
The stanza plumbing every XEP handler shares: a stream manager that never
queues, IQ requests with timeouts, and raw-XML helpers for the data path.

wokkel's ``StreamManager`` queues stanzas sent while disconnected and replays
them after the next login.  For bytestreams that is wrong -- an IBB data
packet or an SI offer means nothing on a new session, and the links it
belonged to have already been torn down -- so :class:`Connection` raises
:class:`bytestreamd.errors.NotConnected` instead and fails every pending
request when the stream goes away.
"""

from __future__ import annotations

from typing import Optional, Union

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from twisted.python import failure
from twisted.words.protocols.jabber import error as jerror
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.subprotocols import StreamManager, XMPPHandler

from bytestreamd.errors import NotConnected

Stanza = Union[domish.Element, str]


class RequestTimeout(Exception):
    """An IQ request got no answer in time."""


class Connection(StreamManager):
    """
    The StreamManager of the daemon's one XMPP stream.

    ``jid`` is the full JID bound on the current stream (``None`` before the
    first bind).  ``clock`` is used for request timeouts.
    """

    #: Default timeout (seconds) for requests made without one.
    timeout = 30.0

    def __init__(self, factory, clock, jid: Optional[JID] = None):
        StreamManager.__init__(self, factory, reactor=clock)
        self.clock = clock
        self.jid = jid

    @property
    def connected(self) -> bool:
        """True while a stream is up and initialized (bound)."""
        return bool(self._initialized)

    def send(self, obj: Stanza) -> None:
        """
        Send a stanza (an Element or an already-serialised ``str``) now, or
        raise NotConnected -- never queue.
        """
        if not self._initialized or self.xmlstream is None:
            raise NotConnected()
        self.xmlstream.send(obj)

    def request(self, iq: domish.Element, timeout: Optional[float] = None
                ) -> "defer.Deferred[domish.Element]":
        """
        Send an IQ get/set element and return a Deferred for the answer.

        Fires with the ``result`` iq; fails with ``StanzaError`` for an
        ``error`` answer, :class:`RequestTimeout` after ``timeout`` seconds,
        NotConnected if there is no stream, or the disconnect reason if the
        stream goes away first.  Cancelling it forgets the request.
        """
        if not self._initialized or self.xmlstream is None:
            return defer.fail(NotConnected())
        if not iq.getAttribute("id"):
            iq.addUniqueId()
        iqId = iq["id"]
        if timeout is None:
            timeout = self.timeout

        def cancel(d):
            self._iqDeferreds.pop(iqId, None)

        d = defer.Deferred(cancel)
        self._iqDeferreds[iqId] = d
        if timeout:
            def onTimeout():
                if self._iqDeferreds.pop(iqId, None) is d:
                    d.errback(RequestTimeout(
                        "no answer to iq %s from %s within %gs"
                        % (iqId, iq.getAttribute("to"), timeout)))

            call = self.clock.callLater(timeout, onTimeout)

            def stopTimer(result):
                if call.active():
                    call.cancel()
                return result

            d.addBoth(stopTimer)
        self.xmlstream.send(iq)
        return d

    def _disconnected(self, reason):
        # Nothing is queued here (see send), so there is nothing to replay.
        self._packetQueue = []
        StreamManager._disconnected(self, reason)


class Handler(XMPPHandler):
    """
    Base for the daemon's XEP handlers: ``send``/``request`` go to the
    :class:`Connection` and so never queue.
    """

    def send(self, obj: Stanza) -> None:
        self.parent.send(obj)

    def request(self, iq: domish.Element, timeout: Optional[float] = None):
        return self.parent.request(iq, timeout)

    @property
    def ownJID(self) -> Optional[JID]:
        return self.parent.jid


def makeIQ(type: str, to: JID, frm: Optional[JID] = None) -> domish.Element:
    """An ``<iq/>`` element in jabber:client, with a fresh id."""
    iq = domish.Element((None, "iq"))
    iq["type"] = type
    iq["to"] = to.full()
    if frm is not None:
        iq["from"] = frm.full()
    iq.addUniqueId()
    return iq


def resultFor(iq: domish.Element) -> domish.Element:
    """An empty ``result`` answering ``iq`` (to its sender, same id)."""
    return xmlstream.toResponse(iq, "result")


def errorFor(iq: domish.Element, exc: jerror.StanzaError) -> domish.Element:
    """The ``error`` iq answering ``iq`` with ``exc``."""
    return exc.toResponse(iq)


def parseJID(value: Optional[str]) -> Optional[JID]:
    """
    Parse a JID from the wire or the user without wokkel's unbounded intern
    cache; ``None`` for a missing or invalid one.
    """
    if not value:
        return None
    try:
        return JID(value)
    except Exception:
        return None


_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;",
            ord("'"): "&apos;", ord('"'): "&quot;"}


def escapeAttribute(value: str) -> str:
    """Escape a value for an XML attribute in single or double quotes."""
    return value.translate(_ESCAPES)


def failureText(f: failure.Failure) -> str:
    """Words for an operator from any failure we expect on a request."""
    exc = f.value
    if isinstance(exc, jerror.StanzaError):
        from bytestreamd.errors import describeStanzaError
        return describeStanzaError(exc)
    return str(exc) or exc.__class__.__name__
