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
  ended the previous stream (server restart, network, auth failure);
* :class:`ServerState` turns stream events into ``650 SERVER`` events, log
  lines an operator can act on, and systemd ``STATUS=`` lines.
"""

from __future__ import annotations

import random
from typing import Callable, List, Optional, Sequence

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, endpoints, error, ssl
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
from bytestreamd.disco import DiscoResponder
from bytestreamd.stanzas import Connection, Handler
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
    Watches the stream and reports its state to ``listener(connected: bool,
    reason: str)``; sends our initial presence once bound.

    Presence carries priority -1: the daemon is not a chat client, and a
    negative priority keeps messages to the bare JID away from it (RFC 6121
    8.5.2.1.1) while full-JID iqs, which is all bytestreams need, still arrive.
    """

    def __init__(self, listener: Callable[[bool, str], None],
                 failed: Optional[Callable[[str], None]] = None):
        Handler.__init__(self)
        self._listener = listener
        self._failed = failed
        self.connected = False
        self.lastReason = "not connected yet"

    def connectionInitialized(self):
        self.connected = True
        presence = domish.Element((None, "presence"))
        presence.addElement("priority", content="-1")
        self.send(presence)
        self._listener(True, "")

    def connectionLost(self, reason):
        if self.connected:
            self.connected = False
            self.lastReason = _describeDisconnect(reason)
            self._listener(False, self.lastReason)
        else:
            # Never got as far as a bound session: TLS or authentication
            # went wrong, or the server hung up.  Nothing changes for the
            # control channel (still disconnected) but the operator must
            # see why, at every attempt.
            self.lastReason = "login failed: " + _describeDisconnect(reason)
            if self._failed is not None:
                self._failed(self.lastReason)


def _describeDisconnect(reason) -> str:
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


class _ReportingEndpoint:
    """Logs why a connection attempt failed (ClientService only says it retries)."""

    def __init__(self, endpoint, target: str):
        self._endpoint = endpoint
        self._target = target
        self.lastError: Optional[str] = None

    def connect(self, factory):
        d = self._endpoint.connect(factory)

        def failed(f):
            self.lastError = f.getErrorMessage()
            log.warn("cannot connect to XMPP server {target}: {why}",
                     target=self._target, why=self.lastError)
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
    """

    def __init__(self, reactor, jid: JID, password: str, host: Optional[str],
                 port: int, caCerts: Sequence[str] = (), insecure: bool = False,
                 listener: Optional[Callable[[bool, str], None]] = None,
                 logTraffic: bool = False):
        service.MultiService.__init__(self)
        self.reactor = reactor
        self.jid = jid
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
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, self._initFailed)
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, _noDelay)
        self.connection = Connection(factory, reactor, jid)
        self.connection.logTraffic = logTraffic
        self.state = ServerState(self._stateChanged, self._loginFailed)
        self.state.setHandlerParent(self.connection)
        DiscoResponder().setHandlerParent(self.connection)
        Identity().setHandlerParent(self.connection)
        VersionHandler("bytestreamd", bytestreamd.__version__).setHandlerParent(
            self.connection)
        FallbackHandler().setHandlerParent(self.connection)

        if host:
            endpoint = endpoints.HostnameEndpoint(reactor, host, port)
            self.target = "%s:%d" % (host, port)
        else:
            endpoint = SRVEndpoint(reactor, jid.host)
            self.target = "%s (SRV)" % (jid.host,)
        self._endpoint = _ReportingEndpoint(endpoint, self.target)
        self._client = ClientService(
            self._endpoint, factory, retryPolicy=backoffPolicy(1.0, 30.0),
            clock=reactor)
        self._client.setServiceParent(self)

    def addListener(self, listener: Callable[[bool, str], None]) -> None:
        self._listeners.append(listener)

    def addHandler(self, handler) -> None:
        handler.setHandlerParent(self.connection)

    @property
    def connected(self) -> bool:
        return self.connection.connected

    def _stateChanged(self, connected: bool, reason: str) -> None:
        if connected:
            bound = self.connection.factory.authenticator.jid
            self.connection.jid = bound
            log.info("XMPP connected to {target} as {jid}", target=self.target,
                     jid=bound.full())
        else:
            log.warn("XMPP connection to {target} lost: {reason}; reconnecting",
                     target=self.target, reason=reason)
        for listener in list(self._listeners):
            listener(connected, reason)

    def _loginFailed(self, reason: str) -> None:
        log.error("XMPP connection to {target} as {jid} failed: {why}; retrying",
                  target=self.target, jid=self.jid.full(), why=reason)

    def _initFailed(self, reason) -> None:
        # Authentication or TLS failed: say why, then let the stream close so
        # ClientService retries with backoff (the password file or the
        # server's certificate may be fixed without restarting us).
        self.state.lastReason = "stream initialization failed: %s" % (
            reason.getErrorMessage(),)
        log.error("XMPP login to {target} as {jid} failed: {why}",
                  target=self.target, jid=self.jid.full(),
                  why=reason.getErrorMessage())
        xs = self.connection.xmlstream
        if xs is not None and xs.transport is not None:
            xs.transport.loseConnection()

    def stopService(self):
        xs = self.connection.xmlstream
        if xs is not None:
            try:
                xs.sendFooter()
            except Exception:
                pass
        return service.MultiService.stopService(self)
