"""
The error hierarchy.

Errors carry a protocol condition and words an operator can act on.  They are
turned into wire form at exactly one boundary each:

* stanza errors: an IQ handler raises :class:`twisted.words.protocols.jabber.error.StanzaError`
  (use :func:`stanzaError` to build one with an application condition);
* control channel: ``bytestreamd.control.protocol`` maps :class:`ControlError`
  subclasses to reply codes (their ``code`` attribute);
* link states: :class:`MethodFailed` becomes ``650 LINK <id> BAD reason=...``,
  :class:`BytestreamBroken` becomes ``ERR`` with its reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # Twisted is imported where it is used: bytestreamctl
    # imports this module and should start in tens of milliseconds.
    from twisted.words.protocols.jabber.error import StanzaError
    from twisted.words.xish import domish


class BytestreamdError(Exception):
    """Base of every error this package raises on purpose."""

    def __str__(self) -> str:
        return self.args[0] if self.args else self.__class__.__name__


class ConfigError(BytestreamdError):
    """
    The configuration cannot be used.  The message names the section, the
    key and what is wrong, because it is shown to the operator before the
    daemon starts.
    """


# --- control channel ----------------------------------------------------


class ControlError(BytestreamdError):
    """An error answered on the control socket with ``code text``."""

    code = 550

    def __init__(self, text: str, code: Optional[int] = None):
        BytestreamdError.__init__(self, text)
        self.text = text
        if code is not None:
            self.code = code


class ResourceLimit(ControlError):
    """A configured limit (``max_links``...) is reached; try again later."""

    code = 451


class UnknownCommand(ControlError):
    code = 510


class SyntaxErrorInArgument(ControlError):
    code = 512


class UnknownOption(ControlError):
    code = 513


class NotConnected(ControlError):
    """
    There is no initialized XMPP stream right now.  Raised instead of
    queueing: a stanza for a bytestream is worthless after a reconnect.
    """

    code = 550

    def __init__(self, text: str = "not connected to the XMPP server"):
        ControlError.__init__(self, text)


class NoSuchLink(ControlError):
    code = 552


class PeerError(ControlError):
    """The peer refused, or cannot be reached (with the reason)."""

    code = 554


# --- negotiation and transports -------------------------------------------


class NegotiationFailed(BytestreamdError):
    """
    Stream Initiation did not produce a bytestream method to try: the peer
    refused, does not support us, or nothing is in common.  ``condition`` is
    the XMPP condition when there was one (``forbidden``, ``no-valid-streams``,
    ``bad-profile``, ``service-unavailable``...), for scripts to match on.
    """

    def __init__(self, reason: str, condition: Optional[str] = None):
        BytestreamdError.__init__(self, reason)
        self.reason = reason
        self.condition = condition


class MethodFailed(BytestreamdError):
    """
    One bytestream method could not establish the stream (state ``BAD``).
    ``reason`` names what was tried and why it failed, e.g. which candidate
    refused, which stanza error came back, which timeout expired.
    """

    def __init__(self, reason: str, condition: Optional[str] = None):
        BytestreamdError.__init__(self, reason)
        self.reason = reason
        self.condition = condition


class BytestreamBroken(BytestreamdError):
    """
    An established bytestream failed (state ``ERR``): delivered as the
    ``reason`` of ``connectionLost`` on the protocol attached to it.
    """

    def __init__(self, reason: str, condition: Optional[str] = None):
        BytestreamdError.__init__(self, reason)
        self.reason = reason
        self.condition = condition


class OfferRejected(BytestreamdError):
    """An incoming offer was refused locally (REJECT, policy or timeout)."""

    def __init__(self, reason: str):
        BytestreamdError.__init__(self, reason)
        self.reason = reason


class OfferBusy(OfferRejected):
    """
    Refused for now: a limit (``max_links``) is reached.  Answered
    ``resource-constraint`` of type ``wait``, which an opener retries with
    backoff inside its attempt timeout (issue 8: bursts of offers).
    """


def stanzaError(
    condition: str,
    text: Optional[str] = None,
    appCondition: Optional[domish.Element] = None,
    type: Optional[str] = None,
) -> StanzaError:
    """
    Build the StanzaError that the IQ boundary will serialise.

    ``appCondition`` is an application-specific child, e.g.
    ``<no-valid-streams xmlns='http://jabber.org/protocol/si'/>``.

    ``text`` is repaired, not refused: a character XML 1.0 cannot carry
    becomes U+FFFD (:func:`bytestreamd.text.xmlText`).  An error must always
    be sendable, and one raw control character in it would make the server
    close the whole stream.
    """
    from twisted.words.protocols.jabber.error import StanzaError

    from bytestreamd.text import xmlText
    if text is not None:
        text = xmlText(text)
    return StanzaError(condition, type=type, text=text, appCondition=appCondition)


def describeStanzaError(exc: StanzaError) -> str:
    """
    One line for an operator: ``condition (app-condition): text``.
    """
    words = exc.condition
    if exc.appCondition is not None:
        words += " (%s)" % exc.appCondition.name
    if exc.text:
        words += ": %s" % exc.text
    return words
