"""
Two federated Prosody servers on loopback, for the tests where the peer
sits behind *another* server (issue 6 case g: the peer's server crashes).

Layout (fixed, see :data:`SERVERS`)::

    a.test  127.0.0.2  c2s: a free port   s2s: 127.0.0.2:5269   accounts alice, mallory
    b.test  127.0.0.3  c2s: a free port   s2s: 127.0.0.3:5269   accounts bob, mallory

How the servers find each other: Debian's ``lua-unbound`` makes Prosody use
libunbound (``util/dependencies.lua`` preloads ``net.unbound`` as
``net.adns``), and each config says ``unbound = { hoststxt = <tmpdir>/hosts }``,
a hosts file of the harness's own mapping ``a.test``/``proxy.a.test`` ->
127.0.0.2 and ``b.test``/``proxy.b.test`` -> 127.0.0.3. The machine's
/etc/hosts is never touched. The SRV lookups (``_xmpps-server._tcp`` and
``_xmpp-server._tcp``) are answered NXDOMAIN at once by libunbound's
built-in RFC 6761 ``test.`` zone, so no query leaves the machine, and
Prosody falls back to the A record from the hosts file and port 5269. That
port is why the servers need addresses of their own: s2s cannot be moved to
a free port without SRV records, so both use 5269 on distinct addresses,
and :meth:`Federation.start` checks that nobody else holds them.

TLS: one throwaway CA (:class:`~.prosody.CertificateAuthority`) signs a
certificate per server (SAN DNS:domain, DNS:proxy.domain, IP:address;
serverAuth+clientAuth), and each server trusts it (``ssl.cafile``). s2s runs
with ``s2s_secure_auth = true``: each side verifies the other's certificate
for its domain and authenticates it with SASL EXTERNAL, no dialback. That
was practical, so ``secureAuth=False`` (dialback over unverified TLS) is
only an option, not the default. Clients verify their server against the
same CA (:attr:`Federation.caPath`).

Crash vs freeze: :meth:`Federation.crash` SIGKILLs Prosody: the kernel
closes its sockets (FIN/RST), so the surviving server sees its s2s
connection end at once, and new connections to port 5269 are refused at
once; nothing at XMPP level is sent (no ``</stream>``, no unavailable
presence). :meth:`Federation.freeze` SIGSTOPs it instead: connections stay
open and nothing answers, which is what a hung or unreachable host looks
like; :meth:`Federation.thaw` resumes it.

MEASURED (Prosody 0.12.3, Debian 12, loopback). test_federation.py
asserts 2-5 (times are the bounds the tests allow, measured typical values
in brackets):

1. Set-up: both servers start and s2s is proven both ways (a ping from a
   client of each to the other domain) in ~0.3 s.
2. The peer's server crashed (SIGKILL of b.test) -- test_peer_server_crash.
   An IQ from alice to bob's full JID is answered *by a.test* within
   2 s [0.002 s]::

     <iq type='error' from='bob@b.test/r' to='alice@a.test/r'>
       <error type='cancel' by='a.test'><remote-server-not-found/>
       <text>Server-to-server connection failed: connection refused</text>
     </error></iq>

   Note ``from`` is bob's full JID although bob never saw it: only the
   condition and ``by`` (alice's own server) tell it apart. An IQ to
   ``b.test`` itself gets the same. alice receives *no* unavailable presence
   for bob (3 s watched; Prosody keeps no state about remote presences to
   expire, and a crashed server sends nothing).
   The same bounce says ``remote-server-timeout`` (type ``wait``) instead
   when the remote had opened a stream before the connection failed
   (``had_stream`` in mod_s2s ``bounce_sendq``), e.g. for an untrusted
   certificate (test_s2s_refuses_a_certificate_from_another_ca). A liveness
   check must treat both conditions as "peer unreachable".
   On loopback the kill resets the s2s TCP connection at once; a host that
   dies on a real network sends no FIN/RST and looks like case 4 until
   TCP gives up.
3. b.test back, bob not logged in again (test_peer_server_crash), or bob's
   *client* killed while b.test stays up (test_peer_client_killed): the IQ
   is answered within 2 s [<0.01 s] by b.test with ``<error type='cancel'>
   <service-unavailable/></error>``, ``from`` bob's full JID and *no*
   ``by`` -- byte for byte the error element bob's own client sends for an
   IQ it does not handle (RFC 6120 8.4); the test asserts the equality.
   So "any answer from the full JID, even an error, means alive" does not
   hold: a peer counts as alive only on a ``result``, or on an error a
   server does not generate (not remote-server-*, not service-unavailable).
   When the client dies, alice gets ``<presence type='unavailable'
   from='bob@b.test/r'/>`` at once -- only because bob had sent her
   directed presence; without it she gets nothing.
4. The peer's server hangs (SIGSTOP of b.test; a partition or a dead host
   looks the same) -- test_peer_server_frozen: no answer and no presence
   at all (5 s in the test, 20 s measured by hand). Prosody 0.12 has no s2s
   liveness check: ``net/server_epoll.lua`` ``read_timeout`` (840 s) only
   sends a whitespace keepalive, which the kernel acknowledges for a
   stopped process, and ``send_timeout`` (180 s) only applies once the
   socket buffers are full. After SIGCONT the held IQ is delivered late and
   answered. Only the daemon's own timer (``peer_timeout``) ends this case.
5. bytestreamd (main at 1fefe2d, with liveness), case g -- the two
   test_case_g_* tests: bob's daemon sends to alice's over IBB and b.test
   is SIGKILLed. If b.test stays down, alice's probe of bob's full JID is
   answered remote-server-not-found by a.test and her link ends ERR [3.9 s
   with peer_timeout 6]. If b.test comes straight back, bob's daemon
   reconnects [~2.5 s after the crash] with the *same* full JID
   ``bob@b.test/daemon``, having forgotten the link; it answers the
   XEP-0199 ping with a result, so alice's link stays GOOD for good
   (watched 77 s with peer_timeout 30; the test is a strict xfail). The
   restarted daemon answers IBB ``<data/>`` for the old sid with
   ``item-not-found`` ("no such IBB session"): a probe scoped to the
   link's session tells "peer restarted and forgot the link" from "peer
   alive", a ping to the full JID cannot.
   When alice is the sender instead (measured by hand), her next IBB
   ``<data/>`` bounces remote-server-not-found from a.test and her link
   ends ERR at once [0.01 s].
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

from .prosody import CertificateAuthority, ProsodyServer, ProsodyStartError, S2SConfig
from .rawxmpp import RawXMPPClient, XMPPError, attr

#: (domain, loopback address) of each server, in order.
SERVERS: Tuple[Tuple[str, str], ...] = (("a.test", "127.0.0.2"), ("b.test", "127.0.0.3"))
#: accounts created on each server.
ACCOUNTS: Mapping[str, Sequence[str]] = {"a.test": ("alice", "mallory"),
                                         "b.test": ("bob", "mallory")}
S2S_PORT = 5269
PING = "<ping xmlns='urn:xmpp:ping'/>"


class FederationError(RuntimeError):
    """The federation could not be set up (port taken, s2s not working...)."""


def _bindable(address: str, port: int) -> Optional[str]:
    """None if ``address:port`` can be bound now, else the error text."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        return None
    except OSError as e:
        return str(e)
    finally:
        s.close()


class Federation:
    """
    Two (or more) Prosody servers federated over s2s on loopback.

    ``federation["a.test"]`` is that domain's :class:`ProsodyServer`
    (``c2sPort``, ``address``, ``caPath``, ``jid()``, ``passwords``);
    :attr:`caPath` is the CA all of them and all clients trust;
    :attr:`hostsPath` the hosts file Prosody resolves peers with.
    :meth:`start` starts all and checks s2s works both ways; :meth:`close`
    stops all (thawing frozen ones first) and removes nothing the caller
    did not create (the temporary directory is the caller's).
    """

    def __init__(self, tmpdir, servers: Iterable[Tuple[str, str]] = SERVERS,
                 accounts: Mapping[str, Sequence[str]] = ACCOUNTS, tuned: bool = True,
                 secureAuth: bool = True, logLevel: str = "info",
                 s2sPort: int = S2S_PORT, untrusted: Iterable[str] = ()) -> None:
        self.tmpdir = os.path.abspath(str(tmpdir))
        os.makedirs(self.tmpdir, exist_ok=True)
        servers = list(servers)
        self.ca = CertificateAuthority(os.path.join(self.tmpdir, "ca"),
                                       "bytestreamd federation CA")
        self.caPath = self.ca.path
        self.hostsPath = os.path.join(self.tmpdir, "hosts")
        with open(self.hostsPath, "w") as f:
            for domain, address in servers:
                f.write("%s %s proxy.%s\n" % (address, domain, domain))
        self.s2sPort = s2sPort
        untrusted = set(untrusted)
        self.rogueCA = CertificateAuthority(os.path.join(self.tmpdir, "rogue-ca"),
                                            "some other CA") if untrusted else None
        self.servers: Dict[str, ProsodyServer] = {}
        for domain, address in servers:
            self.servers[domain] = ProsodyServer(
                os.path.join(self.tmpdir, domain), tuned=tuned,
                accounts=accounts.get(domain, ()), logLevel=logLevel,
                domain=domain, address=address,
                ca=self.rogueCA if domain in untrusted else self.ca,
                s2s=S2SConfig(self.hostsPath, s2sPort, secureAuth))
        self._frozen: set = set()

    # -- access -------------------------------------------------------------

    def __getitem__(self, domain: str) -> ProsodyServer:
        return self.servers[domain]

    @property
    def domains(self) -> Sequence[str]:
        return list(self.servers)

    def serverOf(self, jid: str) -> ProsodyServer:
        """The server hosting ``jid`` (bare or full)."""
        return self.servers[jid.split("/")[0].rpartition("@")[2]]

    def client(self, jid: str, **kwargs) -> RawXMPPClient:
        """A logged-in :class:`RawXMPPClient` for ``name@domain/resource``."""
        server = self.serverOf(jid)
        name = jid.split("@")[0]
        client = RawXMPPClient(server.address, server.c2sPort, jid, server.passwords[name],
                               server.caPath, **kwargs)
        try:
            client.login()
        except BaseException:
            if client.sock is not None:
                client.sock.close()
            raise
        return client

    def daemonConfig(self, domain: str) -> Dict[str, Dict[str, str]]:
        """The ``[xmpp]`` keys a bytestreamd needs to reach ``domain``'s server."""
        server = self.servers[domain]
        return {"xmpp": {"host": server.address, "port": str(server.c2sPort),
                         "ca_certs": self.caPath}}

    def logTails(self, lines: int = 30) -> str:
        return "".join("===== prosody %s =====\n%s" % (d, s.logTail(lines))
                       for d, s in self.servers.items())

    # -- life cycle ---------------------------------------------------------

    def start(self, timeout: float = 20.0, link: bool = True) -> "Federation":
        """Start every server that is not running; then (``link``) :meth:`waitLinked`."""
        for server in self.servers.values():
            if server.running:
                continue
            problem = _bindable(server.address, self.s2sPort)
            if problem is not None:
                raise FederationError(
                    "%s:%d is not free (%s); another federation test run or a system "
                    "Prosody may hold it" % (server.address, self.s2sPort, problem))
            try:
                server.start(timeout)
            except ProsodyStartError:
                self.close()
                raise
        if link:
            self.waitLinked(timeout)
        return self

    def waitLinked(self, timeout: float = 20.0) -> None:
        """
        Prove s2s works from every server to every other: a client of each
        pings every other domain (XEP-0199 to the server JID) and must get a
        result. Raises :class:`FederationError` with the log tails if not.
        """
        for domain, server in self.servers.items():
            account = next(iter(server.passwords), None)
            if account is None:
                continue
            try:
                with self.client("%s@%s/linkcheck" % (account, domain)) as client:
                    for other in self.servers:
                        if other == domain:
                            continue
                        reply = client.request("get", other, PING, timeout)
                        if attr(reply, "type") != "result":
                            raise FederationError("ping %s -> %s: %s" % (domain, other, reply))
            except (XMPPError, OSError, FederationError) as e:
                raise FederationError("s2s does not work: %s\n%s"
                                      % (e, self.logTails())) from None

    def crash(self, domain: str) -> None:
        """SIGKILL the server of ``domain`` (no stream close, no presence)."""
        self.thaw(domain)
        self.servers[domain].kill()  # returns once its ports, 5269 too, refuse

    def freeze(self, domain: str) -> None:
        """SIGSTOP the server: its connections stay open and nothing answers."""
        server = self.servers[domain]
        if not server.running:
            raise FederationError("%s is not running" % domain)
        server.process.send_signal(signal.SIGSTOP)
        self._frozen.add(domain)

    def thaw(self, domain: str) -> None:
        """SIGCONT a server :meth:`freeze` stopped (no-op otherwise)."""
        if domain in self._frozen:
            self._frozen.discard(domain)
            server = self.servers[domain]
            if server.running:
                server.process.send_signal(signal.SIGCONT)

    def restart(self, domain: str, timeout: float = 20.0) -> None:
        """Start ``domain`` again (after :meth:`crash`, or stop it first)."""
        self.thaw(domain)
        server = self.servers[domain]
        server.stop()
        self.start(timeout)

    def close(self) -> None:
        for domain in list(self._frozen):
            self.thaw(domain)
        for server in self.servers.values():
            server.close()

    def __enter__(self) -> "Federation":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<Federation %s>" % ", ".join(repr(s) for s in self.servers.values())
