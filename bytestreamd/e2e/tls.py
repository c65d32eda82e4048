"""
The TLS side of an e2e stream: a context for the mutual handshake, and the
peer's certificate once it is done.

:class:`E2ETLSOptions` is what the adapter hands to ``startTLS`` (or to
:class:`twisted.protocols.tls.TLSMemoryBIOFactory`).  It provides Twisted's
``IOpenSSLClientConnectionCreator`` and ``IOpenSSLServerConnectionCreator``
and builds its own pyOpenSSL context rather than using
:class:`twisted.internet.ssl.CertificateOptions`, because the two things an
e2e stream needs are exactly what CertificateOptions does not do together:

* it **asks for and requires** the peer's certificate on the server side
  (``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT``) -- the handshake is
  mutual -- and
* it does **not** judge that certificate by a CA chain: the verify callback
  accepts whatever chain is presented, and the decision is taken after the
  handshake, by :func:`checkPeer` with :mod:`bytestreamd.e2e.trust` (a
  self-signed certificate never chains, and every policy -- ``ca``
  included -- must compare it with the fingerprint signalled over XMPP).

The adapter calls :func:`checkPeer` from ``handshakeCompleted``
(``IHandshakeListener``): Twisted's TLS layer calls it before delivering any
application data, so a refused peer never gets a byte to the local socket,
and aborts the connection on refusal.

Protocol settings: TLS 1.2 or later (1.3 where both ends have it; OpenSSL's
default cipher suites, all AEAD with forward secrecy at its default
security level), no session tickets and no session cache -- a resumed
session would skip the certificate exchange that this whole module is
about -- and no renegotiation.  The roles follow XEP-0246, not the
bytestream: the stream's initiator is the TLS client even when it was the
SOCKS5 server (``startTLS(options, normal=...)`` accordingly).
"""

from __future__ import annotations

import datetime
from typing import Any, Optional, Sequence, Tuple

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (IOpenSSLClientConnectionCreator,
                                         IOpenSSLServerConnectionCreator)
from zope.interface import implementer

from bytestreamd.e2e import trust
from bytestreamd.e2e.identity import Identity


def _acceptAnyChain(connection: SSL.Connection, certificate: crypto.X509,
                    errno: int, depth: int, ok: int) -> bool:
    # The trust decision is taken after the handshake (checkPeer); here
    # only "a certificate was presented" matters, which OpenSSL enforces.
    return True


def makeContext(identity: Identity) -> SSL.Context:
    """The pyOpenSSL context for ``identity`` (both roles)."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    options = SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
    options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)
    context.set_options(options)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.use_certificate(identity.certificate)
    for extra in identity.chain:
        context.add_extra_chain_cert(extra)
    context.use_privatekey(identity.key)
    context.check_privatekey()
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _acceptAnyChain)
    return context


@implementer(IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator)
class E2ETLSOptions:
    """Connection creator for both ends of an e2e stream's handshake."""

    def __init__(self, identity: Identity):
        self.identity = identity
        self._context = makeContext(identity)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_accept_state()
        return connection


def peerCertificates(transport: Any) -> Tuple[Optional[x509.Certificate],
                                              Tuple[x509.Certificate, ...]]:
    """
    The certificate the peer presented and the intermediates it sent, from
    a TLS transport after the handshake (``getPeerCertificate``, and the
    ``SSL.Connection`` from ``getHandle`` where there is one for the chain).
    """
    peer = transport.getPeerCertificate()
    if peer is None:
        return None, ()
    leaf = peer.to_cryptography()
    chain: Tuple[x509.Certificate, ...] = ()
    handle = getattr(transport, "getHandle", lambda: None)()
    if isinstance(handle, SSL.Connection):
        # On the client side OpenSSL puts the leaf first; on the server not.
        chain = tuple(c.to_cryptography() for c in handle.get_peer_cert_chain() or ())
        chain = tuple(c for c in chain if c != leaf)
    return leaf, chain


def checkPeer(transport: Any, policy: str, peer: str, signalled: Optional[str],
              store: trust.PeerStore,
              caCertificates: Sequence[x509.Certificate] = (),
              now: Optional[datetime.datetime] = None) -> trust.Decision:
    """:func:`bytestreamd.e2e.trust.decide` on what ``transport``'s peer presented."""
    leaf, chain = peerCertificates(transport)
    if leaf is None:
        return trust.Refuse("%s presented no TLS certificate" % (peer,), "", signalled)
    return trust.decide(policy, peer, leaf, signalled, store, chain=chain,
                        caCertificates=caCertificates, now=now)
