"""
The daemon: wires configuration, the XMPP connection, the XEP handlers, the
link registry and the control socket into one twisted ``MultiService``.

Nothing here speaks a protocol; it only decides which pieces exist and in
what order they start and stop.  ``bytestreamd.tap`` builds it from the
command line; tests build it with a ``MemoryReactor``.
"""

from __future__ import annotations

import os
from typing import List

from twisted.application import service

from bytestreamd import registry, runtime, sdnotify
from bytestreamd.links.confirm import EndChannel
from bytestreamd.control.protocol import ControlFactory
from bytestreamd.xmpp.disco import PeerDiscovery
from bytestreamd.errors import ConfigError
from bytestreamd.links import LinkManager
from bytestreamd.xmpp.liveness import PeerMonitor
from bytestreamd.methods import s5b
from bytestreamd.xmpp.presence import PeerPresence
from bytestreamd.xmpp.client import XMPPClientService
from bytestreamd.text import SafeLogger

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)

#: listen(2) backlog of the control socket (capped by net.core.somaxconn).
CONTROL_BACKLOG = 1024


def buildMethods(reactor, config) -> List:
    """The enabled bytestream methods, in the configured preference order."""
    try:
        methods = registry.buildMethods(reactor, config, config.methods)
    except KeyError as e:
        raise ConfigError("[links] methods: %s" % (e.args[0],))
    if not methods:
        raise ConfigError("[links] methods: no method enabled")
    return methods


def _stopOnConfigError(start):
    """
    twistd prints a traceback for any exception out of ``startService``; a
    ConfigError found only at start (an unsafe runtime_dir, a socket in
    use, a port taken) is the operator's to fix, so it ends the process with
    its one line instead (SystemExit: exit status 1, the line on stderr or
    in the log).
    """
    def wrapper(self, *args, **kwargs):
        try:
            return start(self, *args, **kwargs)
        except ConfigError as e:
            raise SystemExit("bytestreamd: %s" % (e,))
    wrapper.__doc__ = start.__doc__
    wrapper.__name__ = start.__name__
    return wrapper


class ControlSocketService(service.Service):
    """Listens on ``<runtime_dir>/control``; refuses to steal a live socket."""

    def __init__(self, reactor, path: str, factory, mode: int, gid):
        self.reactor = reactor
        self.path = path
        self.factory = factory
        self.mode = mode
        self.gid = gid
        self.port = None

    def startService(self):
        service.Service.startService(self)
        # Only a stale socket of ours is removed; see bytestreamd.runtime.
        runtime.removeStaleSocket(self.path, "socket (the control socket)")
        try:
            # A burst of clients (a script opening hundreds of links at
            # once) must not be refused by the kernel: Twisted's default
            # backlog is 50.
            self.port = self.reactor.listenUNIX(self.path, self.factory,
                                                backlog=CONTROL_BACKLOG,
                                                mode=self.mode, wantPID=False)
            if self.gid is not None:
                os.chown(self.path, -1, self.gid)
        except Exception as e:
            raise runtime.RuntimeDirError("%s: cannot listen: %s" % (
                self.path, getattr(e, "strerror", None) or e))
        log.info("control socket listening on {path}", path=self.path)

    def stopService(self):
        service.Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()


class Daemon(service.MultiService):
    """The whole daemon, built from one validated Config."""

    def __init__(self, config, reactor):
        service.MultiService.__init__(self)
        self.config = config
        self.reactor = reactor
        self.xmpp = XMPPClientService(
            reactor, config.jid, config.password, config.host, config.port,
            caCerts=config.ca_certs, insecure=(config.tls == "insecure"),
            logTraffic=config.log_traffic)
        self.discovery = PeerDiscovery()
        self.xmpp.addHandler(self.discovery)
        self.methods = buildMethods(reactor, config)
        for method in self.methods:
            self.xmpp.addHandler(method)
        # Two phases: construct every piece, then wire them (below), so
        # nothing is patched after construction.
        # [links] negotiation: the frameworks we speak (and advertise), in
        # the order the link manager tries them per peer.
        self.negotiators = registry.buildNegotiators(
            reactor, config, self.methods, self.discovery, config.negotiation)
        for negotiator in self.negotiators:
            self.xmpp.addHandler(negotiator)
        byName = {n.name: n for n in self.negotiators}
        self.si = byName.get("si")
        self.jingle = byName.get("jingle")
        self.endChannel = EndChannel(requestTimeout=config.peer_timeout)
        self.xmpp.addHandler(self.endChannel)
        self.presence = PeerPresence(self._peerOffline)
        self.xmpp.addHandler(self.presence)
        self.monitor = PeerMonitor(reactor, config.peer_timeout, self._cachedFeatures,
                                   self._peerGone)
        self.xmpp.addHandler(self.monitor)
        self.manager = LinkManager(reactor, config, self.xmpp, self.negotiators,
                                   self.discovery, [m.name for m in self.methods],
                                   endChannel=self.endChannel, monitor=self.monitor,
                                   presence=self.presence)
        for negotiator in self.negotiators:
            negotiator.setAcceptor(self.manager)
        self.xmpp.addListener(self._serverStateChanged)
        self.control = ControlSocketService(
            reactor, os.path.join(config.runtime_dir, runtime.CONTROL),
            ControlFactory(self.manager), config.socket_mode, config.socket_group)

    @_stopOnConfigError
    def startService(self):
        _makeRuntimeDir(self.config)
        service.MultiService.startService(self)
        for method in self.methods:
            # Bind the direct SOCKS5 ports now, so a port in use or a bad
            # address stops the daemon with its reason instead of quietly
            # leaving it proxy-only.
            if isinstance(method, s5b.S5BMethod) and method.direct.listen:
                try:
                    ports = method.startListening()
                except Exception as e:
                    raise ConfigError("[s5b] listen: %s" % (e,))
                for port in ports:
                    host = port.getHost()
                    log.info("SOCKS5 direct streamhost listening on {host}:{port}",
                             host=host.host, port=host.port)
        self.control.startService()
        sdnotify.notify("READY=1", "STATUS=control socket ready; connecting to "
                        "XMPP server %s" % (self.xmpp.target,))
        self.xmpp.setServiceParent(self)

    def stopService(self):
        sdnotify.notify("STOPPING=1")
        self.manager.shutdown()
        self.control.stopService()
        return service.MultiService.stopService(self)

    def _cachedFeatures(self, peer):
        info = self.discovery.cached(peer)
        return info.features if info is not None else None

    def _peerOffline(self, peer) -> None:
        self.manager.peerOffline(peer)

    def _peerGone(self, peer, reason: str) -> None:
        self.manager.peerGone(peer, reason)

    def _serverStateChanged(self, connected: bool, reason: str) -> None:
        self.manager.serverStateChanged(connected, reason)
        if connected:
            sdnotify.notify("STATUS=connected to XMPP as %s" % (
                self.xmpp.connection.jid.full(),))
        else:
            sdnotify.notify("STATUS=XMPP disconnected (%s)%s" % (
                reason, "" if self.xmpp.session.stopping else "; reconnecting"))
            # Links cannot survive the stream: their stanzas would go nowhere.
            # The methods end their own streams on connectionLost; offers and
            # negotiations fail through their pending requests.


def _makeRuntimeDir(config) -> None:
    """
    Check or create ``runtime_dir`` and ``links/`` (bytestreamd.runtime:
    ours, private or shared with ``socket_group`` only, no symlinks);
    RuntimeDirError, a ConfigError, stops the daemon with one line.
    """
    for warning in runtime.prepareRuntimeDir(
            config.runtime_dir, config.socket_mode, config.socket_group):
        log.warn("runtime_dir: {warning}", warning=warning)
