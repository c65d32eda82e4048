"""
Which peer certificates an e2e link accepts.

Every policy first checks the **signalled fingerprint**: the SHA-256
fingerprint the peer sent in the link negotiation (``<fingerprint/>``, see
:mod:`bytestreamd.e2e.wire`) over its authenticated XMPP session must be the
fingerprint of the certificate it presents in the TLS handshake.  That binds
the TLS session to the XMPP session, as DTLS-SRTP does with XEP-0320: a
relay or a SOCKS5 proxy that terminates TLS with its own certificate is
refused however the policy is set.  Then the policy:

``signalling``
    The signalled fingerprint alone.  Protects against everything on the
    bytestream's path (proxies, relays, the network) but trusts both XMPP
    servers: a server that rewrites the signalled fingerprint and terminates
    TLS itself is not detected.
``tofu`` (trust on first use) -- **the default**
    As ``signalling`` the first time a bare JID is seen, and its fingerprint
    is pinned in the known-peers file; from then on as ``pinned``.
``pinned``
    The fingerprint must already be in the known-peers file (put there with
    ``TRUST <jid> <fingerprint>`` after comparing it out of band).  Nothing
    is learnt automatically.
``ca``
    The certificate must chain to one of ``[e2e] ca_certs`` and carry the
    peer's bare JID as id-on-xmppAddr (RFC 6120 section 13.7.1.4).

Why ``tofu`` is the default.  Someone running this daemon for years expects
what ssh gives them: it works the first time without a ceremony, and from
then on nobody -- not a proxy, not a compromised or coerced server, not a
DNS or BGP hijack -- can silently step in; if a key does change, the link is
refused loudly with both fingerprints and the exact command that accepts
the new one.  ``pinned`` is stronger only for the very first link, and only
for users who really compare fingerprints first; in practice an operator
who meets a refusal on first use will just copy the fingerprint from the
error, which is TOFU with extra steps.  ``signalling`` never notices a server
that turned bad after the first link, which is most of what end-to-end
security is for.  ``ca`` needs a PKI that XMPP clients do not have.  The
first link under ``tofu`` is exactly as safe as under ``signalling``, and
the pin can be checked after the fact (``bytestreamctl fingerprint`` on
the peer against the known-peers file).

The known-peers file (``<state_dir>/known-peers``) is like ssh's
known_hosts: one line per pinned certificate, ``<bare JID> sha-256
<FINGERPRINT>``, ``#`` comments and blank lines kept.  A JID may have several
lines (several daemons under one bare JID each have their own key); any of
them matches.  It is rewritten whole through a temporary file and a rename,
re-read whenever it changes on disk (so an operator may edit it by hand),
and a line that cannot be read refuses every link rather than being
skipped: a skipped pin would let TOFU pin whoever comes next.

:func:`decide` is a pure function: it reads the store and returns
:class:`Accept` (with ``pin=True`` when the caller must record a first use
with :meth:`KnownPeers.trust`) or :class:`Refuse` with a one-line reason.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import (Callable, FrozenSet, List, Optional, Protocol, Sequence,
                    Tuple, Union)

from cryptography import x509
from OpenSSL import crypto

from bytestreamd.e2e import files
from bytestreamd.e2e.identity import (HASH_NAME, MalformedFingerprint,
                                      bareJID, certificateFingerprint,
                                      parseFingerprint, xmppAddrs)
from bytestreamd.errors import ConfigError

PINNED = "pinned"
TOFU = "tofu"
SIGNALLING = "signalling"
CA = "ca"
POLICIES = (PINNED, TOFU, SIGNALLING, CA)
#: See the module docstring for why.
DEFAULT_POLICY = TOFU

#: The file in the state directory.
KNOWN_PEERS_FILE = "known-peers"

_HEADER = ("# bytestreamd known peers: <bare JID> sha-256 <fingerprint>, one per line.\n"
           "# Managed by TRUST/FORGET (bytestreamctl trust/forget); hand edits are read.\n")


class KnownPeersError(ConfigError):
    """The known-peers file cannot be read or written; names path and line."""


def checkPolicy(name: str) -> str:
    """``name`` if it is a policy; ValueError listing them otherwise."""
    if name not in POLICIES:
        raise ValueError("unknown trust policy %r (one of %s)"
                         % (name, ", ".join(POLICIES)))
    return name


# --- the store ---------------------------------------------------------------


class PeerStore(Protocol):
    def lookup(self, jid: str) -> FrozenSet[str]:
        """The fingerprints pinned for the bare ``jid`` (maybe none)."""


@dataclass(frozen=True)
class _Line:
    text: str
    jid: Optional[str] = None
    fingerprint: Optional[str] = None


class KnownPeers:
    """The known-peers file; see the module docstring for its format."""

    def __init__(self, path: str, geteuid: Callable[[], int] = os.geteuid):
        self.path = path
        self._geteuid = geteuid
        self._stamp: Optional[Tuple[int, int, int]] = None
        self._lines: List[_Line] = []

    def _load(self) -> List[_Line]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._lines = None, []
            return self._lines
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return self._lines
        files.checkProtectedFile(self.path, self._geteuid)
        with open(self.path, "rb") as f:
            data = f.read()
        self._lines = self._parse(data)
        self._stamp = stamp
        return self._lines

    def _parse(self, data: bytes) -> List[_Line]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KnownPeersError("%s is not UTF-8 text" % self.path)
        lines = []
        for number, raw in enumerate(text.splitlines(), 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                lines.append(_Line(raw))
                continue
            fields = stripped.split()
            try:
                if len(fields) != 3:
                    raise ValueError("expected '<bare JID> sha-256 <fingerprint>'")
                if fields[1].lower() != HASH_NAME:
                    raise ValueError("hash %r is not %s" % (fields[1], HASH_NAME))
                jid = bareJID(fields[0])
                fingerprint = parseFingerprint(fields[2])
            except (ValueError, MalformedFingerprint) as e:
                raise KnownPeersError("%s line %d: %s" % (self.path, number, e))
            lines.append(_Line(raw, jid, fingerprint))
        return lines

    def _write(self, lines: List[_Line]) -> None:
        text = "".join(line.text + "\n" for line in lines)
        if not any(line.jid is None and line.text.startswith("#") for line in lines):
            text = _HEADER + text
        try:
            files.replaceAtomically(self.path, text.encode("utf-8"))
        except OSError as e:
            raise KnownPeersError("cannot write %s: %s" % (self.path, e.strerror or e))
        self._stamp = None  # re-read next time (it is small)

    def lookup(self, jid: str) -> FrozenSet[str]:
        bare = bareJID(jid)
        return frozenset(line.fingerprint for line in self._load()
                         if line.jid == bare and line.fingerprint)

    def entries(self) -> List[Tuple[str, str]]:
        """Every (bare JID, fingerprint) pair, in file order."""
        return [(line.jid, line.fingerprint) for line in self._load()
                if line.jid and line.fingerprint]

    def trust(self, jid: str, fingerprint: str) -> bool:
        """Pin ``fingerprint`` for ``jid``; False if it was pinned already."""
        bare, fingerprint = bareJID(jid), parseFingerprint(fingerprint)
        lines = list(self._load())
        if any(line.jid == bare and line.fingerprint == fingerprint for line in lines):
            return False
        lines.append(_Line("%s %s %s" % (bare, HASH_NAME, fingerprint), bare, fingerprint))
        self._write(lines)
        return True

    def forget(self, jid: str, fingerprint: Optional[str] = None) -> int:
        """
        Unpin every fingerprint of ``jid`` (or only ``fingerprint``);
        returns how many lines went.  The next link to ``jid`` is then
        treated as a first use (``tofu``) or refused (``pinned``).
        """
        bare = bareJID(jid)
        wanted = parseFingerprint(fingerprint) if fingerprint else None
        lines = self._load()
        kept = [line for line in lines
                if not (line.jid == bare and wanted in (None, line.fingerprint))]
        removed = len(lines) - len(kept)
        if removed:
            self._write(kept)
        return removed


# --- the decision ------------------------------------------------------------


@dataclass(frozen=True)
class Accept:
    """
    Use the link.  ``pin``: a first use under ``tofu`` -- the caller records
    ``fingerprint`` with ``store.trust(peer, fingerprint)`` in the same
    reactor turn as :func:`decide` (so that two links racing to be the
    first use of one JID cannot both pin: the second sees the first's pin).
    ``how`` says why, for the log and the GOOD event.
    """

    fingerprint: str
    how: str
    pin: bool = False


@dataclass(frozen=True)
class Refuse:
    """Tear the link down; ``reason`` is one line naming the fingerprints."""

    reason: str
    presented: str
    signalled: Optional[str]


Decision = Union[Accept, Refuse]


def decide(policy: str, peer: str, certificate: x509.Certificate,
           signalled: Optional[str], store: PeerStore,
           chain: Sequence[x509.Certificate] = (),
           caCertificates: Sequence[x509.Certificate] = (),
           now: Optional[datetime.datetime] = None) -> Decision:
    """
    Decide on the ``certificate`` (and its ``chain`` of intermediates) that
    ``peer`` presented in the TLS handshake, given the fingerprint it
    ``signalled`` in the negotiation.  ``caCertificates`` and ``now`` are
    for ``ca`` only.
    """
    checkPolicy(policy)
    bare = bareJID(peer)
    presented = certificateFingerprint(certificate)
    if signalled is None:
        return Refuse("%s signalled no certificate fingerprint in the negotiation, so "
                      "its TLS certificate (sha-256 %s) cannot be bound to its XMPP "
                      "session" % (bare, presented), presented, None)
    try:
        signalled = parseFingerprint(signalled)
    except MalformedFingerprint as e:
        return Refuse("%s signalled an unreadable fingerprint (%s); it presented "
                      "sha-256 %s" % (bare, e, presented), presented, None)
    if presented != signalled:
        return Refuse(
            "the TLS certificate presented on the link (sha-256 %s) is not the one %s "
            "signalled over XMPP (sha-256 %s): something between the two daemons "
            "answered the handshake (a man in the middle, or a relay or proxy "
            "terminating TLS)" % (presented, bare, signalled), presented, signalled)
    if policy == SIGNALLING:
        return Accept(presented, "signalled fingerprint")
    if policy == CA:
        return _decideCA(bare, certificate, chain, caCertificates, now, presented)
    try:
        pinned = store.lookup(bare)
    except (KnownPeersError, files.UnsafeStateDirectory, OSError) as e:
        return Refuse("cannot check pinned fingerprints: %s" % (e,), presented, signalled)
    if presented in pinned:
        return Accept(presented, "pinned fingerprint")
    if pinned:
        return Refuse(
            "%s's certificate is NOT the pinned one: pinned sha-256 %s, presented "
            "(and signalled) sha-256 %s. If %s really has a new key or another "
            "daemon under the same JID, verify it out of band, then "
            "TRUST %s %s" % (bare, ", ".join(sorted(pinned)), presented, bare,
                             bare, presented), presented, signalled)
    if policy == TOFU:
        return Accept(presented, "first use, now pinned", pin=True)
    return Refuse(
        "no fingerprint is pinned for %s (policy pinned); it presented and signalled "
        "sha-256 %s: verify it out of band, then TRUST %s %s"
        % (bare, presented, bare, presented), presented, signalled)


def _decideCA(bare: str, certificate: x509.Certificate,
              chain: Sequence[x509.Certificate],
              caCertificates: Sequence[x509.Certificate],
              now: Optional[datetime.datetime], presented: str) -> Decision:
    if not caCertificates:
        return Refuse("policy ca, but [e2e] ca_certs holds no certificate; %s presented "
                      "sha-256 %s" % (bare, presented), presented, presented)
    store = crypto.X509Store()
    for ca in caCertificates:
        store.add_cert(crypto.X509.from_cryptography(ca))
    if now is not None:
        store.set_time(now)
    context = crypto.X509StoreContext(
        store, crypto.X509.from_cryptography(certificate),
        chain=[crypto.X509.from_cryptography(c) for c in chain])
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as e:
        return Refuse("%s's certificate (sha-256 %s) does not chain to [e2e] ca_certs: %s"
                      % (bare, presented, e), presented, presented)
    names = []
    for name in xmppAddrs(certificate):
        try:
            names.append(bareJID(name))
        except ValueError:
            continue
    if bare not in names:
        return Refuse("%s's certificate (sha-256 %s) is issued by a trusted CA but names "
                      "%s, not %s (id-on-xmppAddr)"
                      % (bare, presented, ", ".join(names) or "no JID", bare),
                      presented, presented)
    return Accept(presented, "certificate from a trusted CA")
