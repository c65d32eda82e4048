"""
The memory tier: real daemons' object graphs on an in-memory network and
XMPP router with a fake clock, driven through their control and link
sockets.  The whole tier runs in seconds, with the unit tests.

* ``memnet.py`` -- the network: per-process reactors (``MemoryHost``) on one
  clock, the pump; ``transport.py`` -- TCP and UNIX connections with
  Twisted's buffering, backpressure, half-close, EOF/reset and ``kill -9``
  semantics;
* ``router.py`` -- the XMPP server the daemons log in to (unchanged client
  code: no seam in ``bytestreamd``), with traffic records, stanza filters,
  dropped/silenced sessions, a crashing server and a crashing domain;
  ``c2s.py`` -- one client's stream negotiation;
* ``world.py`` -- ``World``: daemons from real configs on their own hosts,
  ``advance``/``runUntil``/``kill``/``restart``; ``clients.py`` -- control
  clients, link-socket clients, plain XMPP clients.

What each truth case of issue 6 needs, and where it is:

a. CLOSE on a GOOD SOCKS5 link -- ``ControlClient.expect("CLOSE id")``, then
   ``world.advance``: the half-close is modelled, bytes keep flowing today.
b. a killed sender -- ``world.kill(daemon)`` mid-transfer (``runUntil`` stops
   between pump rounds): its kernel sends FIN, so the receiver sees a clean
   EOF, as in the real case.
c. a proxy that closes both legs -- a proxy65 is not in the router; a
   ``World.listenTCP`` SOCKS5 server plus ``router.items`` and a disco
   answer would be the way.
d./e. a slow or vanished reader -- ``LocalClient.stopReading()`` /
   ``close()``; the daemon's local transport pauses its producer as Twisted does.
f. a link with no local client -- just do not call ``world.localClient``.
g. a crashed federated server -- ``World(domains=("a.test", "b.test"))`` and
   ``router.crashDomain("b.test")`` (no unavailable, stanzas vanish or bounce).
h. no file descriptors -- ``world.network.listenUNIXError = lambda path: OSError(24, ...)``.
"""
