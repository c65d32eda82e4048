"""
End-to-end links in the link layer (docs/e2e.rst): which links ask for an
e2e stream, what an offer's e2e field makes of an incoming link, securing
the stream between "the negotiator has a bytestream" and ``GOOD``, and the
control backend's ``FINGERPRINT``/``TRUST``/``FORGET``.  A mixin of
:class:`bytestreamd.links.LinkManager`.

The policy, ``[links] e2e`` and ``OPEN ... e2e=``:

==================  ===========================================================
``OPEN e2e=bytes``  this link carries its bytes inside TLS, or fails ``BAD``
``OPEN e2e=xmpp``   this link is an XEP-0246 stream of stanzas, or fails
``OPEN e2e=off``    plain (refused, 512, under ``required``)
``required``        every OPEN without ``e2e=`` is ``e2e=bytes``; offers that
                    do not ask for e2e are refused; a peer that answers
                    without e2e fails the link ``BAD`` (no clear byte sent)
``preferred``       every OPEN without ``e2e=`` asks for ``e2e=bytes``; a
                    peer that answers without it gets a plain link
``off`` (default)   plain unless OPEN asks; offers that ask are honoured
==================  ===========================================================

Files (``profile=file``, XEP-0096) carry the same field in ``<file/>``;
``e2e=xmpp`` is for links only.

The negotiators carry the field, this module never sees their wire: SI in
the link profile, Jingle as XEP-0247's ``xmlstream`` application
(``negotiation/jingle_apps.py``; a file with ``e2e=`` goes by SI).  Both
answer ``LinkAnswer(e2e)`` (files: ``RangeAnswer.e2e``) through ``answered``
before the stream exists, so :meth:`E2ELinks._secureIfAsked` is the same
for both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple

from twisted.internet import defer

from bytestreamd import application as app
from bytestreamd.e2e import MODE_BYTES, MODE_XMPP
from bytestreamd.e2e.secure import E2EFailed, secure
from bytestreamd.e2e.stream import INITIATOR, RESPONDER
from bytestreamd.errors import (ConfigError, ControlError, OfferRejected,
                                SyntaxErrorInArgument)
from bytestreamd.links.link import Link
from bytestreamd.text import SafeLogger

log = SafeLogger()

REQUIRED, PREFERRED, OFF = "required", "preferred", "off"


class E2EUnavailable(ControlError):
    """This daemon's identity cannot be loaded (state directory, key)."""

    code = 550


class E2ELinks:
    """The e2e part of the link manager (module docstring)."""

    # --- the service -----------------------------------------------------------

    def e2eService(self):
        """The E2EService, made from the config on first use."""
        if self._e2eService is None:
            from bytestreamd.e2e.service import E2EService
            self._e2eService = E2EService.fromConfig(self.config)
        return self._e2eService

    def _e2ePolicy(self) -> str:
        return getattr(self.config, "links_e2e", OFF)

    def _ourFingerprint(self) -> str:
        try:
            return self.e2eService().fingerprint
        except Exception as e:
            raise E2EUnavailable("e2e unavailable: %s" % (e,))

    # --- outgoing ---------------------------------------------------------------

    def _e2eWanted(self, application: Any, asked: Optional[str]) -> Tuple[Optional[str], bool]:
        """(mode, required) for ``OPEN ... e2e=asked``; 512 on a bad value."""
        policy = self._e2ePolicy()
        isFile = isinstance(application, app.FileApplication)
        if asked is not None and asked not in app.E2E_MODES + (OFF,):
            raise SyntaxErrorInArgument("e2e=%s is not one of bytes|xmpp|off" % (asked,))
        if asked == OFF:
            if policy == REQUIRED:
                raise SyntaxErrorInArgument(
                    "[links] e2e = required: this daemon sends no link in clear "
                    "(e2e=off asked)")
            return None, False
        if asked == MODE_XMPP and isFile:
            raise SyntaxErrorInArgument("a file is bytes: e2e=xmpp is for links")
        if asked is not None:
            return asked, True
        if policy == OFF:
            return None, False
        return MODE_BYTES, policy == REQUIRED

    def _e2eApplication(self, application: Any, mode: str) -> Any:
        return dataclasses.replace(application,
                                   e2e=app.E2ERequest(mode, self._ourFingerprint()))

    # --- incoming ---------------------------------------------------------------

    def _e2eOffered(self, link: Link) -> None:
        """
        An offer arrived: decide its e2e mode, or raise OfferRejected (the
        peer is told why) when ``required`` and the offer is plain, or when
        our identity cannot be used.
        """
        application = link.application
        asked = getattr(application, "e2e", None)
        if asked is None:
            if self._e2ePolicy() == REQUIRED:
                raise OfferRejected("%s requires end-to-end encrypted links "
                                    "([links] e2e = required); offer it with e2e=bytes"
                                    % (self.config.jid.userhost(),))
            return
        try:
            self._ourFingerprint()
        except E2EUnavailable as e:
            raise OfferRejected(str(e))
        link.peerE2E = asked
        link.e2eMode = asked.mode
        link.e2eRequired = True

    def _e2eAnswer(self, link: Link, rangeAnswer: Optional[app.RangeAnswer] = None) -> Any:
        """What ACCEPT answers: the range asked for (files) and, for an
        e2e offer, our fingerprint."""
        if link.e2eMode is None:
            return rangeAnswer
        e2e = app.E2ERequest(link.e2eMode, self._ourFingerprint())
        if rangeAnswer is not None:
            return dataclasses.replace(rangeAnswer, e2e=e2e)
        return app.LinkAnswer(e2e)

    # --- securing ---------------------------------------------------------------

    def _secureIfAsked(self, stream: Any, link: Link) -> Any:
        """
        Between the bytestream and GOOD: run the XEP-0246 negotiation when
        the link is e2e; fail it (BAD, nothing sent in clear) when it must
        be and cannot.
        """
        if link.e2eMode is None:
            return stream
        peer = link.peerE2E
        if peer is None:
            if not link.e2eRequired:
                log.info("link {id}: {peer} answered without an e2e stream; "
                         "plain link ([links] e2e = preferred)", id=link.id,
                         peer=link.peer.full())
                link.e2eMode = None
                return stream
            stream.abortConnection()
            return defer.fail(E2EFailed(
                "e2e: %s accepted without an end-to-end stream (it cannot do "
                "e2e=%s); nothing was sent in clear" % (link.peer.full(), link.e2eMode)))
        if peer.mode != link.e2eMode:
            stream.abortConnection()
            return defer.fail(E2EFailed("e2e: %s answered e2e=%s to e2e=%s"
                                        % (link.peer.full(), peer.mode, link.e2eMode)))
        role = INITIATOR if link.direction == "out" else RESPONDER
        local = (stream.localJID or self.config.jid).full()
        timeout = getattr(self.config, "attempt_timeout", 30.0)
        return secure(stream, self.e2eService(), role, link.e2eMode, peer.fingerprint,
                      local, link.peer.full(), clock=self.reactor, timeout=timeout)

    def _e2eGood(self, link: Link) -> tuple:
        """``e2e=tls fingerprint=... trust=...`` for the GOOD event."""
        stream = link.stream
        fingerprint = getattr(stream, "e2eFingerprint", None)
        if fingerprint is None:
            return ()
        return (("e2e", "tls"), ("e2e-mode", stream.e2eMode),
                ("fingerprint", fingerprint), ("trust", stream.e2eHow))

    # --- control ----------------------------------------------------------------

    def _e2eStatus(self) -> List[tuple]:
        service = self._e2eService
        if service is None and self._e2ePolicy() == OFF:
            return [("e2e", OFF)]
        try:
            fingerprint = self.e2eService().fingerprint
        except Exception as e:
            return [("e2e", self._e2ePolicy()), ("e2e-error", str(e))]
        return [("e2e", self._e2ePolicy()), ("trust", self.e2eService().policy),
                ("fingerprint", fingerprint)]

    def fingerprint(self) -> List[tuple]:
        """``FINGERPRINT``: this daemon's (made on first use)."""
        service = self.e2eService()
        fp = self._ourFingerprint()
        return [("jid", self.config.jid.userhost()), ("hash", "sha-256"),
                ("fingerprint", fp), ("trust", service.policy)]

    def trust(self, jid: str, fingerprint: str) -> List[tuple]:
        """``TRUST <jid> <fingerprint>``: pin it (known-peers)."""
        from bytestreamd.e2e.identity import MalformedFingerprint, bareJID, parseFingerprint
        try:
            bare, fp = bareJID(jid), parseFingerprint(fingerprint)
        except (ValueError, MalformedFingerprint) as e:
            raise SyntaxErrorInArgument(str(e))
        try:
            added = self.e2eService().trust(bare, fp)
        except ConfigError as e:
            raise E2EUnavailable("e2e unavailable: %s" % (e,))
        log.info("e2e: {jid} sha-256 {fp} {what}", jid=bare, fp=fp,
                 what="pinned" if added else "was already pinned")
        return [("jid", bare), ("fingerprint", fp), ("added", "yes" if added else "no")]

    def forget(self, jid: str, fingerprint: Optional[str] = None) -> List[tuple]:
        """``FORGET <jid> [fingerprint]``: unpin."""
        from bytestreamd.e2e.identity import MalformedFingerprint, bareJID
        try:
            bare = bareJID(jid)
            removed = self.e2eService().forget(bare, fingerprint)
        except (ValueError, MalformedFingerprint) as e:
            raise SyntaxErrorInArgument(str(e))
        except ConfigError as e:
            raise E2EUnavailable("e2e unavailable: %s" % (e,))
        log.info("e2e: forgot {n} pin(s) of {jid}", n=removed, jid=bare)
        return [("jid", bare), ("removed", str(removed))]

    def pins(self, jid: Optional[str] = None) -> List[tuple]:
        """``TRUST <jid>`` without a fingerprint: what is pinned."""
        return [("pin", "%s sha-256 %s" % entry) for entry in self.e2eService().pins(jid)]

