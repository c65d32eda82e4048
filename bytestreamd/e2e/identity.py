"""
The daemon's long-lived TLS identity: one key and one certificate, made at
first start and kept in the state directory.

Where
    ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``; the first of a
    colon-separated list), else ``/var/lib/bytestreamd`` when running as root,
    else ``$XDG_STATE_HOME/bytestreamd`` (``~/.local/state/bytestreamd`` when
    ``$XDG_STATE_HOME`` is unset) -- see :func:`defaultStateDir`.  The
    directory is created mode 0700 and refused if another user owns it or
    others may write to it (:mod:`bytestreamd.e2e.files`).

What
    One file, ``identity.pem`` (mode 0600): the PKCS#8 private key, then the
    certificate, then (only for a CA-issued certificate) its intermediates.
    Key and certificate live in one file so that they are replaced together
    by one rename and can never be out of step.  An operator who wants
    CA-mode trust replaces the file with the same key and a certificate from
    their CA (which must carry the id-on-xmppAddr below).

Key type: ECDSA P-256.
    Ed25519 handshakes work here as well (OpenSSL 4.0 with pyOpenSSL 26 and
    cryptography 50: TLS 1.2 and 1.3 with bare pyOpenSSL memory BIOs, and
    TLS 1.3 with Twisted's CertificateOptions over TLSMemoryBIOProtocol and
    iosim, both key types), but ``ecdsa_secp256r1_sha256`` is
    the signature scheme TLS 1.3 makes mandatory to implement (RFC 8446,
    section 9.1) while Ed25519 is optional, and the issue asks for one end
    to be driven by an independent stack: Python's ``ssl`` on an older
    OpenSSL, GnuTLS, Java before 15 or an ``openssl s_client`` from a LTS
    distribution all handle P-256, not all handle Ed25519.  The speed of
    either is irrelevant next to a handshake per link.

The certificate
    Self-signed, subject CN = the bare JID (for humans; RFC 6120 does not
    rely on it), subjectAltName = otherName id-on-xmppAddr (OID
    1.3.6.1.5.5.7.8.5, a UTF8String) with the bare JID, as RFC 6120 section
    13.7.1.4 defines for client certificates.  The same certificate is
    therefore what a CA would sign, and CA-mode trust checks exactly that
    name.  notAfter is 99991231235959Z, RFC 5280's "no well-defined
    expiration date": the fingerprint is the identity and a pinned peer must
    not break on a date; CA-issued certificates carry their own dates, which
    CA mode checks.  If the daemon's JID changes, a self-signed certificate
    is re-issued with the same key for the new JID (peers pin per JID, so
    the new JID has no pins to break); a CA-issued one is refused instead.

Fingerprints
    SHA-256 of the DER certificate, written as XEP-0320 (and RFC 4572)
    shows it: colon-separated upper-case hex, hash name ``sha-256``
    (the XEP-0300 name).  :func:`formatFingerprint` writes it;
    :func:`parseFingerprint` reads what a user types (with or without colons,
    any case, spaces around) and returns the canonical form.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Tuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.words.protocols.jabber.jid import JID, InvalidFormat

from bytestreamd.e2e import files
from bytestreamd.errors import ConfigError

#: The file in the state directory that holds key and certificate.
IDENTITY_FILE = "identity.pem"
#: RFC 6120 section 13.7.1.4: id-on-xmppAddr.
ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
#: The XEP-0300 / RFC 4572 name of the one hash this daemon uses.
HASH_NAME = "sha-256"
#: RFC 5280 section 4.1.2.5: "no well-defined expiration date".
NO_EXPIRY = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)

_DIGEST_LENGTH = 32


class IdentityError(ConfigError):
    """The identity file exists but cannot be used; the message says why."""


class MalformedFingerprint(ValueError):
    """Text that is not a SHA-256 fingerprint (64 hex digits)."""


# --- where -----------------------------------------------------------------


def defaultStateDir(environ: Mapping[str, str], euid: int) -> str:
    """
    The state directory when the configuration names none:
    ``$STATE_DIRECTORY``, else ``/var/lib/bytestreamd`` for root, else
    ``$XDG_STATE_HOME/bytestreamd`` (``$HOME/.local/state`` by default, as
    the XDG base directory specification says).  A pure function of its
    arguments, so every branch is tested.
    """
    if environ.get("STATE_DIRECTORY"):
        # systemd's StateDirectory= may list several, colon-separated.
        return os.path.abspath(environ["STATE_DIRECTORY"].split(":")[0])
    if euid == 0:
        return "/var/lib/bytestreamd"
    base = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        # The XDG spec: a relative path is invalid and must be ignored.
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "state")
    return os.path.join(base, "bytestreamd")


# --- fingerprints ------------------------------------------------------------


def formatFingerprint(digest: bytes) -> str:
    """``02:1A:CC:...``: the XEP-0320 form of a SHA-256 digest."""
    if len(digest) != _DIGEST_LENGTH:
        raise MalformedFingerprint("a SHA-256 digest has 32 bytes, not %d" % len(digest))
    return ":".join("%02X" % b for b in digest)


_FINGERPRINT_COLONS = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){31}\Z")
_FINGERPRINT_PLAIN = re.compile(r"[0-9a-fA-F]{64}\Z")


def parseFingerprint(text: str) -> str:
    """
    Normalize a fingerprint a user or a peer wrote: 64 hex digits, either
    all in colon-separated pairs or with no separator at all, any case,
    surrounding whitespace ignored.  Returns the :func:`formatFingerprint`
    form; raises :class:`MalformedFingerprint` naming what was wrong.
    Half-colonised or truncated text is refused rather than guessed at:
    a fingerprint is compared for equality, and a typo must not match.
    """
    value = text.strip() if isinstance(text, str) else ""
    if _FINGERPRINT_COLONS.match(value):
        value = value.replace(":", "")
    elif not _FINGERPRINT_PLAIN.match(value):
        raise MalformedFingerprint(
            "not a SHA-256 fingerprint (64 hex digits, optionally in "
            "colon-separated pairs): %r" % (text,))
    return formatFingerprint(bytes.fromhex(value))


def certificateFingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of ``certificate`` (its DER form)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return formatFingerprint(hashlib.sha256(der).digest())


# --- id-on-xmppAddr ----------------------------------------------------------


def bareJID(jid: str) -> str:
    """``user@host`` of ``jid``, normalized (nodeprep/nameprep)."""
    try:
        return JID(jid).userhost()
    except (InvalidFormat, UnicodeError) as e:
        raise ValueError("invalid JID %r: %s" % (jid, e))


def encodeUTF8String(text: str) -> bytes:
    """DER UTF8String (tag 12) of ``text``."""
    raw = text.encode("utf-8")
    if len(raw) < 0x80:
        return bytes((0x0C, len(raw))) + raw
    length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return bytes((0x0C, 0x80 | len(length))) + length + raw


def decodeUTF8String(der: bytes) -> str:
    """The text of a DER UTF8String; ValueError for anything else."""
    if len(der) < 2 or der[0] != 0x0C:
        raise ValueError("not a UTF8String")
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            raise ValueError("bad DER length")
        length, offset = int.from_bytes(der[2:2 + count], "big"), 2 + count
    if len(der) != offset + length:
        raise ValueError("DER length does not match")
    return der[offset:].decode("utf-8")


def xmppAddrs(certificate: x509.Certificate) -> List[str]:
    """Every id-on-xmppAddr in the subjectAltName (undecodable ones skipped)."""
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id != ID_ON_XMPPADDR:
            continue
        try:
            names.append(decodeUTF8String(other.value))
        except (ValueError, UnicodeDecodeError):
            continue
    return names


# --- the certificate ---------------------------------------------------------


def makeCertificate(key: ec.EllipticCurvePrivateKey, jid: str,
                    now: Optional[datetime.datetime] = None) -> x509.Certificate:
    """A self-signed certificate for ``key`` naming the bare ``jid``."""
    bare = bareJID(jid)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, bare)])
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # An hour of slack for a peer whose clock is behind.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(NO_EXPIRY)
        .add_extension(x509.SubjectAlternativeName([
            x509.OtherName(ID_ON_XMPPADDR, encodeUTF8String(bare))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def isSelfSigned(certificate: x509.Certificate) -> bool:
    """Issued by itself (the only kind this module makes)."""
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """
    The key, the certificate (and any intermediates) and where they live.
    :mod:`bytestreamd.e2e.tls` turns it into a TLS context.
    """

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: Tuple[x509.Certificate, ...] = ()
    path: str = ""

    @property
    def fingerprint(self) -> str:
        """What STATUS shows and what the negotiation signals."""
        return certificateFingerprint(self.certificate)

    @property
    def jids(self) -> List[str]:
        return xmppAddrs(self.certificate)

    def toPEM(self) -> bytes:
        key = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return key + b"".join(c.public_bytes(serialization.Encoding.PEM)
                              for c in (self.certificate,) + self.chain)

    @classmethod
    def fromPEM(cls, data: bytes, path: str = "") -> "Identity":
        """Parse :meth:`toPEM`'s form; IdentityError naming ``path``."""
        where = path or "identity"
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise IdentityError("%s: no usable unencrypted private key (%s)" % (where, e))
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise IdentityError("%s: no certificate (%s)" % (where, e))
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise IdentityError("%s: the key is not an EC key (ECDSA P-256 expected)" % where)
        own = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        cert = certs[0]
        if cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) != own:
            raise IdentityError("%s: the first certificate is not for the private key" % where)
        return cls(key=key, certificate=cert, chain=tuple(certs[1:]), path=path)

    @classmethod
    def generate(cls, jid: str, now: Optional[datetime.datetime] = None,
                 path: str = "") -> "Identity":
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(key=key, certificate=makeCertificate(key, jid, now), path=path)


def loadOrCreate(directory: str, jid: str,
                 now: Optional[datetime.datetime] = None,
                 geteuid: Callable[[], int] = os.geteuid) -> Identity:
    """
    The identity in ``directory``, made (and the directory made) on first
    start.  Raises :class:`files.UnsafeStateDirectory` or
    :class:`IdentityError`, each a one-line message naming the path.
    """
    directory = files.ensureDirectory(directory, geteuid)
    path = os.path.join(directory, IDENTITY_FILE)
    bare = bareJID(jid)
    for _attempt in range(2):
        data = files.readPrivateFile(path, geteuid)
        if data is None:
            identity = Identity.generate(bare, now, path)
            if files.createAtomically(path, identity.toPEM()):
                return identity
            continue  # someone else made it first: use theirs
        identity = Identity.fromPEM(data, path)
        if bare in identity.jids:
            return identity
        if not isSelfSigned(identity.certificate):
            raise IdentityError(
                "%s: the certificate names %s, not this daemon's JID %s; "
                "get one for %s from your CA (or remove the file to make a "
                "self-signed one)" % (path, ", ".join(identity.jids) or "no JID",
                                      bare, bare))
        renewed = Identity(key=identity.key,
                           certificate=makeCertificate(identity.key, bare, now),
                           path=path)
        files.replaceAtomically(path, renewed.toPEM())
        return renewed
    raise IdentityError("%s: appeared and vanished while being created" % path)
