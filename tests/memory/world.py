"""
The memory tier's world: real daemons (``bytestreamd.daemon.Daemon`` built
from a real, validated ``Config``) on one in-memory network and one fake
clock, joined by the in-memory XMPP router, driven through their control
sockets -- the real ``ControlProtocol`` -- and their link sockets.

Nothing of the daemon is replaced: it listens with ``listenUNIX`` and
``listenTCP``, connects to the router with its usual endpoint, and runs its
timers on ``callLater``, all on a :class:`~tests.memory.memnet.MemoryHost`.
The clients are in :mod:`tests.memory.clients`.  A test reads like a user
session::

    world = World()
    alice = world.daemon("alice")
    bob = world.daemon("bob", allow="alice@example.test")
    watch = world.control(bob, watch=True)
    ctl = world.control(alice)
    reply = ctl.expect("OPEN %s methods=ibb" % bob.jid)
    ...
    world.advance(5)      # five seconds of fake time, pumped until quiet

Time only moves when the test moves it (``advance``, or the waits of the
control client: ``command``/``waitEvent`` advance the clock timer by timer
until their answer arrives or their timeout -- in fake seconds -- passes).

Each daemon runs on its own host, so :meth:`World.kill` is ``kill -9`` of
that daemon alone: its timers stop, and the kernel closes its sockets.  Test
clients (control and link sockets) run on the host ``tester``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from twisted.internet import protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.config import loadConfig
from bytestreamd.daemon import Daemon
from tests.integration.harness.control import Line, Reply, parseArgs, quote
from tests.memory.clients import ControlClient, LocalClient, WorldError, XMPPClient, OneShotFactory
from tests.memory.memnet import Network, NetworkError
from tests.memory.router import Router

__all__ = ["World", "ControlClient", "LocalClient", "XMPPClient", "Line", "Reply",
           "parseArgs", "quote", "WorldError"]

#: The router's address, as every daemon's config names it.
SERVER_HOST = "127.0.0.1"
SERVER_PORT = 5222


class World:
    """
    ``domains``: the router serves these (the first is the default for
    :meth:`daemon`).  ``tmpdir``: where runtime dirs go (a new temporary
    directory by default, removed by :meth:`close`).
    """

    def __init__(self, tmpdir: Optional[str] = None, domains: Sequence[str] = ("example.test",),
                 socketBuffer: int = 256 * 1024):
        self.network = Network(socketBuffer=socketBuffer)
        self.clock = self.network.clock
        self.domain = domains[0]
        self._ownTmp = tmpdir is None
        # Short paths: the daemon checks UNIX socket path lengths.
        self.tmpdir = tempfile.mkdtemp(prefix="bsm-", dir="/tmp") if tmpdir is None else tmpdir
        self.router = Router(self.network.host("xmpp"), domains, SERVER_PORT, SERVER_HOST)
        self.router.start()
        self.tester = self.network.host("tester")
        self.daemons: List[Daemon] = []
        self.log: List[str] = []
        self._clients: List[Any] = []
        globalLogPublisher.addObserver(self._logged)

    # -- time ---------------------------------------------------------------------

    def pump(self) -> None:
        """Run everything due now until the network is quiet."""
        self.network.pump()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of fake time pass, pumping at every timer."""
        self.network.advance(seconds)

    def now(self) -> float:
        return self.clock.seconds()

    def runUntil(self, done: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
        """Advance timer by timer until ``done()``; WorldError after ``timeout`` fake seconds."""
        if not self.network.runUntil(done, timeout):
            raise WorldError("not within %gs of fake time: %s\nlast log lines:\n%s"
                             % (timeout, what or done, "\n".join(self.log[-25:])))

    # -- daemons ------------------------------------------------------------------

    def daemon(self, name: str, allow: Union[str, Sequence[str]] = (),
               methods: Optional[str] = None,
               config: Optional[Mapping[str, Mapping[str, Any]]] = None,
               jid: Optional[str] = None, password: Optional[str] = None,
               start: bool = True, timeout: float = 30.0) -> Daemon:
        """
        A daemon for the account ``name@<domain>`` (resource ``daemon``),
        registered with the router, built on its own host, started and
        connected (unless ``start=False``).  ``allow`` is ``[accept] allow``;
        ``methods`` ``[links] methods``; ``config`` more ``section -> {key:
        value}`` (the file's syntax).  The daemon gets ``jid``, ``host``
        (its MemoryHost) and ``name`` attributes.
        """
        full = JID(jid or "%s@%s/daemon" % (name, self.domain))
        password = password or "pw-" + name
        self.router.addAccount(full.userhost(), password)
        hostName = self._hostName(name)
        runtime = os.path.join(self.tmpdir, hostName)
        overrides: Dict[str, str] = {
            "xmpp.jid": full.full(), "xmpp.password": password,
            "xmpp.host": SERVER_HOST, "xmpp.port": str(SERVER_PORT),
            "daemon.runtime_dir": runtime,
            # the e2e identity and known-peers, per daemon (never $HOME)
            "e2e.state_dir": os.path.join(self.tmpdir, hostName + "-state"),
            "s5b.listen": "127.0.0.1:0",
            # Everything is on loopback here (see [s5b] connect).
            "s5b.connect": "127.0.0.0/8, ::1",
        }
        if allow:
            overrides["accept.allow"] = allow if isinstance(allow, str) else ", ".join(allow)
        if methods:
            overrides["links.methods"] = methods
        for section, items in (config or {}).items():
            for key, value in items.items():
                overrides["%s.%s" % (section, key)] = str(value)
        return self._build(loadConfig(None, overrides), name, hostName, full, start, timeout)

    def _hostName(self, name: str) -> str:
        hostName, suffix = name, 1
        while hostName in self.network.hosts:
            suffix += 1
            hostName = "%s-%d" % (name, suffix)
        return hostName

    def _build(self, config: Any, name: str, hostName: str, full: JID, start: bool,
               timeout: float) -> Daemon:
        host = self.network.host(hostName)
        daemon = Daemon(config, host)
        daemon.jid = full  # type: ignore[attr-defined]
        daemon.host = host  # type: ignore[attr-defined]
        daemon.name = name  # type: ignore[attr-defined]
        self.daemons.append(daemon)
        if start:
            self.start(daemon, timeout)
        return daemon

    def restart(self, daemon: Daemon, timeout: float = 30.0) -> Daemon:
        """
        A new process with ``daemon``'s config -- same JID, same runtime
        dir, whatever the old one left there -- on a new host, started and
        connected.  A daemon still running is stopped first.
        """
        self.stop(daemon)
        daemon.host.kill()
        return self._build(daemon.config, daemon.name, self._hostName(daemon.name),
                           daemon.jid, True, timeout)

    def start(self, daemon: Daemon, timeout: float = 30.0) -> None:
        """Start ``daemon`` and wait until it is connected to the router."""
        daemon.startService()
        self.waitConnected(daemon, timeout)

    def waitConnected(self, daemon: Daemon, timeout: float = 30.0) -> None:
        self.runUntil(lambda: daemon.xmpp.connected, timeout,
                      "%s connected to the router" % (daemon.jid.full(),))
        self.pump()  # and its initial presence delivered

    def stop(self, daemon: Daemon) -> None:
        """Stop ``daemon`` the way twistd does on SIGTERM."""
        if daemon.running and daemon.host.alive:
            daemon.stopService()
            self.pump()

    def kill(self, daemon: Daemon) -> None:
        """``kill -9`` the daemon: see MemoryHost.kill."""
        daemon.host.kill()
        self.pump()

    def controlPath(self, daemon: Daemon) -> str:
        return os.path.join(daemon.config.runtime_dir, "control")

    # -- clients ------------------------------------------------------------------

    def listenTCP(self, factory: protocol.Factory, port: int = 0,
                  hostName: str = "services") -> int:
        """
        A TCP server (an sshd, an echo service) on 127.0.0.1 of the host
        ``hostName``, for ``[services] NAME = tcp:host=127.0.0.1:port=N``;
        returns the port number.
        """
        host = self.network.hosts.get(hostName) or self.network.host(hostName)
        return host.listenTCP(port, factory, interface="127.0.0.1").getHost().port

    def control(self, daemon: Daemon, watch: bool = False) -> "ControlClient":
        """A connection to ``daemon``'s control socket (WATCHing if ``watch``)."""
        client = ControlClient(self, self.controlPath(daemon))
        self._connect(client, self.controlPath(daemon))
        if watch:
            client.expect("WATCH")
        return client

    def localClient(self, daemon: Daemon, socketPath: str) -> "LocalClient":
        """
        A client of a link socket (the ``socket=`` of an OPEN/ACCEPT reply).
        ``daemon`` is only checked: the path names the socket.
        """
        if not socketPath.startswith(daemon.config.runtime_dir + os.sep):
            raise WorldError("%s is not a socket of %s" % (socketPath, daemon.jid.full()))
        client = LocalClient(self)
        self._connect(client, socketPath)
        return client

    def xmppClient(self, name: str, resource: str = "raw",
                   domain: Optional[str] = None) -> "XMPPClient":
        """
        A plain XMPP client (Twisted's, on the host ``tester``) logged in as
        ``name@domain/resource``: a peer that is not bytestreamd, or a
        script that sends what a test needs.
        """
        full = JID("%s@%s/%s" % (name, domain or self.domain, resource))
        password = "pw-" + name
        self.router.addAccount(full.userhost(), password)
        client = XMPPClient(self, full, password, SERVER_HOST, SERVER_PORT)
        self.runUntil(lambda: client.xmlstream is not None, 10.0,
                      "%s logged in" % (full.full(),))
        self.pump()
        return client

    def _connect(self, proto: protocol.Protocol, path: str) -> None:
        factory = OneShotFactory(proto)
        self.tester.connectUNIX(path, factory)
        self.runUntil(lambda: factory.done, 5.0, "connecting to %s" % path)
        if factory.reason is not None:
            raise WorldError("cannot connect to %s: %s" % (path, factory.reason.getErrorMessage()))
        self._clients.append(proto)

    # -- the end ------------------------------------------------------------------

    def _logged(self, event: Dict[str, Any]) -> None:
        try:
            text = formatEvent(event)
        except Exception:
            text = repr(event)
        if event.get("log_failure") is not None:
            text += "\n" + event["log_failure"].getTraceback()
        self.log.append("%9.3f %s" % (self.clock.seconds(), text))

    def checkErrors(self) -> None:
        """Fail if any protocol or timed call raised (a reactor would only log it)."""
        if self.network.errors:
            raise NetworkError("%d exception(s) escaped into the reactor; first:\n%s"
                               % (len(self.network.errors),
                                  self.network.errors[0].getTraceback()))

    def close(self) -> None:
        """Stop every daemon, check for escaped exceptions, remove the runtime dirs."""
        try:
            for daemon in self.daemons:
                self.stop(daemon)
            self.advance(1)
            self.checkErrors()
        finally:
            globalLogPublisher.removeObserver(self._logged)
            if self._ownTmp:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
