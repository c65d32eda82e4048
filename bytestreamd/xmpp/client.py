"""
The daemon's one XMPP client connection.

Built from parts rather than wokkel's ``XMPPClient`` because that class
hard-wires the global reactor, connects once with ``connectTCP`` and stops
for good on the first authentication failure.  Here:

* Twisted's ``XMPPClientFactory`` does STARTTLS (required, verified against
  the system roots plus ``ca_certs``, hostname = the JID's domain even when
  ``host`` points elsewhere), SASL, bind and session;
* :class:`bytestreamd.stanzas.Connection` (a wokkel ``StreamManager`` that
  never queues) carries the XEP handlers;
* Twisted's ``ClientService`` reconnects with exponential backoff, whatever
  ended the previous stream (server restart, network, auth failure), and
  waits minutes after a ``conflict`` (:mod:`bytestreamd.xmpp.session` has
  the numbers and why);
* :class:`ServerState` and :class:`~bytestreamd.xmpp.session.SessionLog` turn
  stream events into ``650 SERVER`` events, one true log line per attempt
  (wrong password, no STARTTLS, conflict, a silent server, a deliberate
  stop), STATUS's ``reason`` and systemd ``STATUS=`` lines.

Why one long module: the client connection's parts (TLS trust, SRV, reasons, reconnect) are wired here; the sans-I/O session record is session.py.
"""

from __future__ import annotations

import random
from typing import Callable, List, Optional, Sequence

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.application import service
from twisted.application.internet import ClientService
from twisted.internet import defer, endpoints, ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.python import failure
from twisted.words.protocols.jabber import client as jclient
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import disco, iwokkel
from wokkel.generic import FallbackHandler, VersionHandler
from zope.interface import implementer

import bytestreamd
from bytestreamd.xmpp.disco import DiscoResponder
from bytestreamd.xmpp.stanzas import Connection, Handler
from bytestreamd.xmpp.session import (CONFLICTED, LOGIN, SETUP_TIMEOUT, STOPPING, Ended,
                                     SessionLog)
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


@implementer(IOpenSSLTrustRoot)
class _ExtraTrust:
    """
    Trust the platform's roots *and* the configured extra CA certificates
    (INTERFACE.md: ``ca_certs`` adds trust roots, it does not replace them).
    """

    def __init__(self, pemPaths: Sequence[str]):
        self._certs = []
        for path in pemPaths:
            with open(path, "rb") as f:
                data = f.read()
            for block in _pemBlocks(data):
                self._certs.append(ssl.Certificate.loadPEM(block).original)

    def _addCACertsToContext(self, context) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for cert in self._certs:
            store.add_cert(cert)


def _pemBlocks(data: bytes) -> List[bytes]:
    end = b"-----END CERTIFICATE-----"
    blocks = []
    for part in data.split(end)[:-1]:
        start = part.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:] + end + b"\n")
    return blocks


def tlsOptions(domain: str, caCerts: Sequence[str], insecure: bool):
    """
    The TLS client configuration for the server connection.  ``insecure``
    (``tls = insecure``) turns verification off; the caller logs it loudly.
    """
    if insecure:
        return ssl.CertificateOptions(verify=False)
    return ssl.optionsForClientTLS(domain, trustRoot=_ExtraTrust(caCerts))


class SRVEndpoint:
    """
    Connect the way XMPP clients do (RFC 6120 3.2): the ``_xmpp-client._tcp``
    SRV records of the domain in priority/weight order, else the domain on
    port 5222.  Each target is tried in turn; the first that connects wins.
    """

    def __init__(self, reactor, domain: str, resolver=None):
        self._reactor = reactor
        self._domain = domain
        self._resolver = resolver

    def _targets(self):
        from twisted.names import client as dnsclient, dns
        resolver = self._resolver or dnsclient.getResolver()
        d = resolver.lookupService("_xmpp-client._tcp." + self._domain)

        def gotRecords(result):
            answers = [a.payload for a in result[0] if a.type == dns.SRV]
            answers = [a for a in answers if str(a.target) != "."]
            if not answers:
                return [(self._domain, 5222)]
            answers.sort(key=lambda a: (a.priority, -a.weight * random.random()))
            return [(str(a.target), a.port) for a in answers]

        def noRecords(f):
            return [(self._domain, 5222)]

        return d.addCallbacks(gotRecords, noRecords)

    @defer.inlineCallbacks
    def connect(self, protocolFactory):
        targets = yield self._targets()
        lastFailure = None
        for host, port in targets:
            ep = endpoints.HostnameEndpoint(self._reactor, host, port)
            try:
                proto = yield ep.connect(protocolFactory)
            except Exception:
                lastFailure = failure.Failure()
                log.info("could not connect to {host}:{port}: {why}",
                         host=host, port=port, why=lastFailure.getErrorMessage())
                continue
            return proto
        lastFailure.raiseException()


class ServerState(Handler):
    """
    Watches the stream: sends our initial presence once bound, and tells
    ``listener(connected: bool, reason: str)`` when a session starts and
    ``ended(Ended)`` when an attempt ends, with the true reason kept by
    ``session`` (a :class:`~bytestreamd.xmpp.session.SessionLog`).

    Presence carries priority -1: the daemon is not a chat client, and a
    negative priority keeps messages to the bare JID away from it (RFC 6121
    8.5.2.1.1) while full-JID iqs, which is all bytestreams need, still arrive.
    """

    def __init__(self, listener: Callable[[bool, str], None],
                 ended: Optional[Callable[[Ended], None]] = None,
                 session: Optional[SessionLog] = None):
        Handler.__init__(self)
        self._listener = listener
        self._ended = ended
        self.session = session if session is not None else SessionLog()
        self.connected = False

    @property
    def lastReason(self) -> str:
        """Why we are not connected (empty while connected)."""
        return self.session.lastReason

    def connectionInitialized(self):
        self.connected = True
        self.session.sessionBound()
        presence = domish.Element((None, "presence"))
        presence.addElement("priority", content="-1")
        self.send(presence)
        self._listener(True, "")

    def connectionLost(self, reason):
        wasConnected, self.connected = self.connected, False
        ended = self.session.lost(reason)
        if wasConnected:
            self._listener(False, ended.reason)
        if self._ended is not None:
            self._ended(ended)


def _delayWords(seconds: float) -> str:
    if seconds < 120:
        return "%.0fs" % (seconds,)
    return "%.0f min" % (seconds / 60.0,)


class _ReportingEndpoint:
    """Logs why a connection attempt failed (ClientService only says it retries)."""

    def __init__(self, endpoint, target: str,
                 failed: Optional[Callable[[str], None]] = None):
        self._endpoint = endpoint
        self._target = target
        self._failed = failed
        self.lastError: Optional[str] = None

    def connect(self, factory):
        d = self._endpoint.connect(factory)

        def failed(f):
            self.lastError = f.getErrorMessage() or f.type.__name__
            log.warn("cannot connect to XMPP server {target}: {why}",
                     target=self._target, why=self.lastError)
            if self._failed is not None:
                self._failed(self.lastError)
            return f

        return d.addErrback(failed)


@implementer(iwokkel.IDisco)
class Identity(Handler):
    """
    Our disco#info identity (an automated client) and the disco features
    themselves, which XEP-0030 says every entity supports and wokkel's
    DiscoHandler does not list on its own.
    """

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if nodeIdentifier:
            return defer.succeed([])
        return defer.succeed([
            disco.DiscoIdentity("client", "bot", "bytestreamd"),
            disco.DiscoFeature(disco.NS_DISCO_INFO),
            disco.DiscoFeature(disco.NS_DISCO_ITEMS),
        ])

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return defer.succeed([])


def _noDelay(xs) -> None:
    """
    Turn Nagle off on the server connection.  IBB acknowledgements are tiny
    stanzas; with Nagle on they wait for the ACK of the previous segment,
    which a delayed-ACK peer holds for ~40 ms, and a window of in-flight
    blocks then moves once per 40 ms instead of once per round trip.
    """
    setNoDelay = getattr(xs.transport, "setTcpNoDelay", None)
    if setNoDelay is not None:
        try:
            setNoDelay(True)
        except OSError:
            pass


class XMPPClientService(service.MultiService):
    """
    Keeps the XMPP client connection up.  ``connection`` is the
    :class:`Connection` every handler hangs off; ``addHandler`` adds one.

    Every attempt ends with one log line giving its true reason (see
    :mod:`bytestreamd.xmpp.session`), which is also STATUS's ``reason``; a
    stream that is not bound ``setupTimeout`` seconds after TCP connected is
    dropped; a ``conflict`` waits minutes instead of fighting.
    """

    def __init__(self, reactor, jid: JID, password: str, host: Optional[str],
                 port: int, caCerts: Sequence[str] = (), insecure: bool = False,
                 listener: Optional[Callable[[bool, str], None]] = None,
                 logTraffic: bool = False, setupTimeout: float = SETUP_TIMEOUT,
                 endpoint=None, rng: Callable[[], float] = random.random):
        service.MultiService.__init__(self)
        self.reactor = reactor
        self.jid = jid
        self.setupTimeout = setupTimeout
        #: When the next attempt is due (reactor seconds), while waiting.
        self.retryAt: Optional[float] = None
        self._setupTimer = None
        self._listeners: List[Callable[[bool, str], None]] = []
        if listener is not None:
            self._listeners.append(listener)
        if insecure:
            log.warn("TLS certificate verification of the XMPP server is OFF "
                     "(tls = insecure): anyone on the path can read and change "
                     "every stanza and every in-band byte")
        factory = jclient.XMPPClientFactory(
            jid, password,
            configurationForTLS=tlsOptions(jid.host, caCerts, insecure))
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, self._tcpConnected)
        factory.addBootstrap(xmlstream.STREAM_ERROR_EVENT, self._streamError)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, self._initFailed)
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._stopSetupTimer)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, self._stopSetupTimer)
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, _noDelay)
        self.connection = Connection(factory, reactor, jid)
        self.connection.logTraffic = logTraffic
        self.state = ServerState(self._stateChanged, self._attemptEnded, SessionLog(rng))
        self.state.setHandlerParent(self.connection)
        DiscoResponder().setHandlerParent(self.connection)
        Identity().setHandlerParent(self.connection)
        VersionHandler("bytestreamd", bytestreamd.__version__).setHandlerParent(
            self.connection)
        FallbackHandler().setHandlerParent(self.connection)

        if endpoint is not None:
            self.target = "%s:%d" % (host, port)
        elif host:
            endpoint = endpoints.HostnameEndpoint(reactor, host, port)
            self.target = "%s:%d" % (host, port)
        else:
            endpoint = SRVEndpoint(reactor, jid.host)
            self.target = "%s (SRV)" % (jid.host,)
        self._endpoint = _ReportingEndpoint(endpoint, self.target,
                                            self.state.session.connectFailed)
        self._client = ClientService(
            self._endpoint, factory, retryPolicy=self._retryDelay, clock=reactor)
        self._client.setServiceParent(self)

    def addListener(self, listener: Callable[[bool, str], None]) -> None:
        self._listeners.append(listener)

    def addHandler(self, handler) -> None:
        handler.setHandlerParent(self.connection)

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def session(self) -> SessionLog:
        return self.state.session

    def retryIn(self) -> Optional[float]:
        """Seconds until the next connection attempt, while waiting for one."""
        if self.connected or self.retryAt is None or self.session.stopping:
            return None
        return max(0.0, self.retryAt - self.reactor.seconds())

    # -- stream events ------------------------------------------------------

    def _tcpConnected(self, xs) -> None:
        self.retryAt = None
        self.session.connected()
        self._stopSetupTimer()
        if self.setupTimeout:
            self._setupTimer = self.reactor.callLater(
                self.setupTimeout, self._setupTimedOut, xs)

    def _stopSetupTimer(self, _=None) -> None:
        timer, self._setupTimer = self._setupTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _setupTimedOut(self, xs) -> None:
        self._setupTimer = None
        self.session.setupTimedOut(self.setupTimeout)
        _dropTransport(xs)

    def _streamError(self, reason) -> None:
        self.session.streamError(reason)

    def _initFailed(self, reason) -> None:
        # Authentication, TLS or bind failed: record why (the first reason
        # wins, the close that follows is only its consequence), then let
        # the stream close so ClientService retries with backoff (the
        # password file or the server may be fixed without restarting us).
        xs = self.connection.xmlstream
        initializers = getattr(xs, "initializers", None) or [None]
        self.session.initFailed(reason, initializers[0])
        if xs is not None:
            _dropTransport(xs, abort=False)

    def _stateChanged(self, connected: bool, reason: str) -> None:
        if connected:
            bound = self.connection.factory.authenticator.jid
            self.connection.jid = bound
            log.info("XMPP connected to {target} as {jid}", target=self.target,
                     jid=bound.full())
        for listener in list(self._listeners):
            listener(connected, reason)

    def _attemptEnded(self, ended: Ended) -> None:
        """One line saying how the attempt ended and what happens next."""
        if ended.kind == STOPPING:
            log.info("XMPP connection to {target} closed: {reason}",
                     target=self.target, reason=ended.reason)
            return
        delay = _delayWords(ended.delay or 0.0)
        if ended.kind == CONFLICTED:
            log.error("XMPP connection to {target} as {jid} ended: {reason}; not "
                      "fighting it: next attempt in {delay}", target=self.target,
                      jid=self.jid.full(), reason=ended.reason, delay=delay)
        elif ended.wasBound:
            log.warn("XMPP connection to {target} lost: {reason}; reconnecting in "
                     "{delay}", target=self.target, reason=ended.reason, delay=delay)
        else:
            level = log.error if ended.kind == LOGIN else log.warn
            level("XMPP connection to {target} as {jid}: {reason}; retrying in "
                  "{delay}", target=self.target, jid=self.jid.full(),
                  reason=ended.reason, delay=delay)

    def _retryDelay(self, attempt: int) -> float:
        delay = self.session.retryDelay(attempt)
        self.retryAt = self.reactor.seconds() + delay
        return delay

    def stopService(self):
        self.session.stop()
        self._stopSetupTimer()
        xs = self.connection.xmlstream
        if xs is not None:
            try:
                xs.sendFooter()
            except Exception:
                pass
        return service.MultiService.stopService(self)


def _dropTransport(xs, abort: bool = True) -> None:
    """Close a stream's transport (abort: without waiting for a silent peer)."""
    transport = getattr(xs, "transport", None)
    if transport is None:
        return
    if abort and hasattr(transport, "abortConnection"):
        transport.abortConnection()
    else:
        transport.loseConnection()
