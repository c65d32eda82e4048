"""
The daemon's e2e facilities in one place: its identity (made on first use),
the trust policy and the known-peers file, and the TLS options built from
them -- what the link layer, STATUS and TRUST/FORGET need.

The identity is loaded lazily (at the first e2e link, ``FINGERPRINT`` or
``TRUST``), or at start when ``[links] e2e`` is not ``off``
(:meth:`E2EService.load`, so a broken state directory stops the daemon
with one line instead of failing links later).  A daemon that never uses
e2e never writes a key anywhere.
"""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from cryptography import x509

from bytestreamd.e2e import trust
from bytestreamd.e2e.identity import Identity, defaultStateDir, loadOrCreate
from bytestreamd.e2e.tls import E2ETLSOptions, checkPeer


class E2EService:
    """
    ``stateDir``: where ``identity.pem`` (and, unless ``knownPeers`` says
    otherwise, ``known-peers``) live; ``policy`` one of
    :data:`bytestreamd.e2e.trust.POLICIES`; ``caCertificates`` for ``ca``.
    """

    def __init__(self, jid: str, stateDir: str, policy: str = trust.DEFAULT_POLICY,
                 knownPeers: Optional[str] = None,
                 caCertificates: Sequence[x509.Certificate] = ()):
        self.jid = jid
        self.stateDir = stateDir
        self.policy = trust.checkPolicy(policy)
        self.caCertificates = tuple(caCertificates)
        self.store = trust.KnownPeers(knownPeers or os.path.join(stateDir,
                                                                 trust.KNOWN_PEERS_FILE))
        self._identity: Optional[Identity] = None
        self._options: Optional[E2ETLSOptions] = None

    @classmethod
    def fromConfig(cls, config: Any, environ: Mapping[str, str] = os.environ) -> "E2EService":
        stateDir = config.e2e_state_dir or defaultStateDir(environ, os.geteuid())
        cas: List[x509.Certificate] = []
        for path in config.e2e_ca_certs:
            with open(path, "rb") as f:
                cas.extend(x509.load_pem_x509_certificates(f.read()))
        return cls(config.jid.full(), stateDir, config.e2e_trust,
                   config.e2e_known_peers, cas)

    @property
    def loaded(self) -> bool:
        return self._identity is not None

    def load(self) -> Identity:
        """The identity, made on first use (IdentityError/UnsafeStateDirectory)."""
        if self._identity is None:
            self._identity = loadOrCreate(self.stateDir, self.jid)
            self._options = E2ETLSOptions(self._identity)
        return self._identity

    @property
    def fingerprint(self) -> str:
        return self.load().fingerprint

    def tlsOptions(self) -> E2ETLSOptions:
        self.load()
        assert self._options is not None
        return self._options

    def check(self, transport: Any, peer: str, signalled: Optional[str]) -> trust.Decision:
        """
        Decide on ``transport``'s peer certificate; records a first use
        (``tofu``) in the same call, so two racing first links cannot both pin.
        """
        decision = checkPeer(transport, self.policy, peer, signalled, self.store,
                             caCertificates=self.caCertificates)
        if isinstance(decision, trust.Accept) and decision.pin:
            try:
                self.store.trust(peer, decision.fingerprint)
            except trust.KnownPeersError as e:
                return trust.Refuse("cannot pin %s's fingerprint: %s" % (peer, e),
                                    decision.fingerprint, signalled)
        return decision

    def trust(self, jid: str, fingerprint: str) -> bool:
        self.load()  # the state directory, checked and made
        return self.store.trust(jid, fingerprint)

    def forget(self, jid: str, fingerprint: Optional[str] = None) -> int:
        self.load()
        return self.store.forget(jid, fingerprint)

    def pins(self, jid: Optional[str] = None) -> List[Tuple[str, str]]:
        entries = self.store.entries()
        if jid is None:
            return entries
        from bytestreamd.e2e.identity import bareJID
        bare = bareJID(jid)
        return [e for e in entries if e[0] == bare]
