"""Tests for bytestreamd.e2e.identity and bytestreamd.e2e.files."""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from bytestreamd.e2e import files, identity
from bytestreamd.e2e.identity import (
    Identity, IdentityError, MalformedFingerprint,
    defaultStateDir, formatFingerprint, loadOrCreate, parseFingerprint)
from bytestreamd.errors import ConfigError

#: The example of XEP-0320 section 2.
XEP0320 = ("02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:"
           "3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2")


# --- defaultStateDir ---------------------------------------------------------


def test_state_directory_from_systemd():
    env = {"STATE_DIRECTORY": "/var/lib/bsd:/var/lib/other",
           "XDG_STATE_HOME": "/home/u/.st"}
    assert defaultStateDir(env, 0) == "/var/lib/bsd"
    assert defaultStateDir(env, 1000) == "/var/lib/bsd"


def test_state_directory_for_root():
    assert defaultStateDir({"XDG_STATE_HOME": "/x"}, 0) == "/var/lib/bytestreamd"


def test_state_directory_xdg():
    assert defaultStateDir({"XDG_STATE_HOME": "/home/u/st", "HOME": "/home/u"},
                           1000) == "/home/u/st/bytestreamd"


def test_state_directory_xdg_default_and_relative_ignored():
    assert defaultStateDir({"HOME": "/home/u"}, 1000) == \
        "/home/u/.local/state/bytestreamd"
    assert defaultStateDir({"HOME": "/home/u", "XDG_STATE_HOME": "rel/dir"},
                           1000) == "/home/u/.local/state/bytestreamd"
    assert defaultStateDir({"HOME": "/home/u", "STATE_DIRECTORY": ""},
                           1000) == "/home/u/.local/state/bytestreamd"


# --- fingerprints ------------------------------------------------------------


def test_format_fingerprint():
    digest = bytes.fromhex(XEP0320.replace(":", ""))
    assert formatFingerprint(digest) == XEP0320
    with pytest.raises(MalformedFingerprint):
        formatFingerprint(b"\x00" * 20)


@pytest.mark.parametrize("text", [
    XEP0320,
    XEP0320.lower(),
    XEP0320.replace(":", ""),
    XEP0320.replace(":", "").lower(),
    "  %s\n" % XEP0320,
    XEP0320[:30].lower() + XEP0320[30:],
])
def test_parse_fingerprint_accepts(text):
    assert parseFingerprint(text) == XEP0320


@pytest.mark.parametrize("text", [
    "",
    XEP0320[:-3],                                  # one byte short
    XEP0320 + ":00",                               # one byte long
    XEP0320.replace(":", "", 5),                   # half colonised
    XEP0320.replace("02", "0G", 1),                # not hex
    XEP0320.replace(":", "-"),
    "sha-256 " + XEP0320,
    XEP0320.replace(":", "")[:-1],
])
def test_parse_fingerprint_refuses(text):
    with pytest.raises(MalformedFingerprint) as e:
        parseFingerprint(text)
    assert "64 hex digits" in str(e.value)


def test_parse_fingerprint_refuses_non_text():
    with pytest.raises(MalformedFingerprint):
        parseFingerprint(None)  # type: ignore[arg-type]


def test_certificate_fingerprint_matches_openssl():
    ident = Identity.generate("romeo@montague.lit")
    der = ident.certificate.public_bytes(serialization.Encoding.DER)
    assert ident.fingerprint == formatFingerprint(hashlib.sha256(der).digest())
    # An independent implementation: pyOpenSSL's digest.
    x = crypto.X509.from_cryptography(ident.certificate)
    assert ident.fingerprint == x.digest("sha256").decode("ascii")


# --- the certificate ---------------------------------------------------------


def test_certificate_carries_xmppaddr_for_bare_jid():
    ident = Identity.generate("Romeo@Montague.LIT/orchard")
    assert ident.jids == ["romeo@montague.lit"]
    cert = ident.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "romeo@montague.lit"
    assert isinstance(ident.key, ec.EllipticCurvePrivateKey)
    assert ident.key.curve.name == "secp256r1"
    assert cert.not_valid_after_utc == identity.NO_EXPIRY
    assert identity.isSelfSigned(cert)


def test_openssl_reads_the_xmppaddr(tmp_path):
    ident = Identity.generate("juliet@capulet.lit")
    path = tmp_path / "c.pem"
    path.write_bytes(ident.certificate.public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(path)],
                          capture_output=True, check=True, text=True).stdout
    assert "XmppAddr::juliet@capulet.lit" in text


def test_utf8string_round_trip_long_and_unicode():
    for text in ("a@b", "ж" * 40 + "@example.org", "x" * 300):
        der = identity.encodeUTF8String(text)
        assert identity.decodeUTF8String(der) == text
    assert identity.encodeUTF8String("a@b") == b"\x0c\x03a@b"
    with pytest.raises(ValueError):
        identity.decodeUTF8String(b"\x16\x03a@b")  # IA5String
    with pytest.raises(ValueError):
        identity.decodeUTF8String(b"\x0c\x05a@b")  # short


def test_xmppaddrs_ignores_other_names():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2040, 1, 1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("example.org"),
                x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.1"),
                               identity.encodeUTF8String("no@thanks")),
                x509.OtherName(identity.ID_ON_XMPPADDR, b"\x04\x01x"),
                x509.OtherName(identity.ID_ON_XMPPADDR,
                               identity.encodeUTF8String("a@example.org")),
            ]), critical=False)
            .sign(key, hashes.SHA256()))
    assert identity.xmppAddrs(cert) == ["a@example.org"]


# --- loadOrCreate ------------------------------------------------------------


def test_first_start_creates_directory_and_file(tmp_path):
    state = tmp_path / "a" / "state"
    ident = loadOrCreate(str(state), "romeo@montague.lit/orchard")
    assert os.stat(state).st_mode & 0o777 == 0o700
    assert os.stat(state / "identity.pem").st_mode & 0o777 == 0o600
    assert ident.path == str(state / "identity.pem")
    assert sorted(os.listdir(state)) == ["identity.pem"]  # no temporary left
    again = loadOrCreate(str(state), "romeo@montague.lit")
    assert again.fingerprint == ident.fingerprint
    assert again.toPEM() == ident.toPEM()


def test_existing_directory_with_0755_is_fine(tmp_path):
    state = tmp_path / "s"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)  # systemd's default StateDirectoryMode
    assert loadOrCreate(str(state), "a@b").jids == ["a@b"]


def test_refuses_directory_owned_by_another_user(tmp_path):
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    me = os.geteuid()
    with pytest.raises(files.UnsafeStateDirectory) as e:
        loadOrCreate(str(state), "a@b", geteuid=lambda: me + 1)
    message = str(e.value)
    assert str(state) in message and "owned by uid %d" % me in message
    assert "\n" not in message
    assert isinstance(e.value, ConfigError)
    assert os.listdir(state) == []


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o720])
def test_refuses_writable_directory(tmp_path, mode):
    state = tmp_path / "s"
    state.mkdir()
    os.chmod(state, mode)
    with pytest.raises(files.UnsafeStateDirectory) as e:
        loadOrCreate(str(state), "a@b")
    assert str(state) in str(e.value) and "chmod 700" in str(e.value)
    assert os.listdir(state) == []


def test_refuses_a_file_in_place_of_the_directory(tmp_path):
    (tmp_path / "s").write_text("")
    with pytest.raises(files.UnsafeStateDirectory) as e:
        loadOrCreate(str(tmp_path / "s"), "a@b")
    assert str(tmp_path / "s") in str(e.value)


def test_refuses_readable_identity_file(tmp_path):
    ident = loadOrCreate(str(tmp_path), "a@b")
    os.chmod(ident.path, 0o640)
    with pytest.raises(files.UnsafeStateDirectory) as e:
        loadOrCreate(str(tmp_path), "a@b")
    assert ident.path in str(e.value) and "chmod 600" in str(e.value)


def test_refuses_garbage_and_mismatched_key(tmp_path):
    path = tmp_path / "identity.pem"
    os.chmod(tmp_path, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"garbage")
    os.close(fd)
    with pytest.raises(IdentityError) as e:
        loadOrCreate(str(tmp_path), "a@b")
    assert str(path) in str(e.value)
    one, two = Identity.generate("a@b"), Identity.generate("a@b")
    mixed = Identity(key=one.key, certificate=two.certificate)
    path.write_bytes(mixed.toPEM())
    with pytest.raises(IdentityError) as e:
        loadOrCreate(str(tmp_path), "a@b")
    assert "not for the private key" in str(e.value)


def test_jid_change_reissues_with_the_same_key(tmp_path):
    old = loadOrCreate(str(tmp_path), "romeo@montague.lit")
    new = loadOrCreate(str(tmp_path), "romeo@verona.lit")
    assert new.jids == ["romeo@verona.lit"]
    assert new.fingerprint != old.fingerprint
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert new.key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        old.key.public_key().public_bytes(serialization.Encoding.DER, spki)
    assert loadOrCreate(str(tmp_path), "romeo@verona.lit").fingerprint == new.fingerprint


def test_ca_issued_certificate_for_another_jid_is_refused(tmp_path):
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .issuer_name(caName).public_key(key.public_key()).serial_number(7)
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2090, 1, 1))
            .add_extension(x509.SubjectAlternativeName([x509.OtherName(
                identity.ID_ON_XMPPADDR, identity.encodeUTF8String("old@example.org"))]),
                critical=False)
            .sign(caKey, hashes.SHA256()))
    os.chmod(tmp_path, 0o700)
    files.createAtomically(str(tmp_path / "identity.pem"),
                           Identity(key=key, certificate=cert).toPEM())
    with pytest.raises(IdentityError) as e:
        loadOrCreate(str(tmp_path), "new@example.org")
    assert "old@example.org" in str(e.value) and "new@example.org" in str(e.value)
    # ... and kept for its own JID, without re-issuing.
    assert loadOrCreate(str(tmp_path), "old@example.org").certificate == cert


def test_create_atomically_never_replaces(tmp_path):
    path = str(tmp_path / "f")
    assert files.createAtomically(path, b"first")
    assert not files.createAtomically(path, b"second")
    assert open(path, "rb").read() == b"first"
    assert os.listdir(tmp_path) == ["f"]
    files.replaceAtomically(path, b"third")
    assert open(path, "rb").read() == b"third"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_lost_creation_race_uses_the_other_identity(tmp_path, monkeypatch):
    os.chmod(tmp_path, 0o700)
    winner = Identity.generate("a@b")
    real = files.createAtomically

    def raced(path, data):
        real(path, winner.toPEM())  # the other daemon, just before us
        return real(path, data)

    monkeypatch.setattr(files, "createAtomically", raced)
    assert loadOrCreate(str(tmp_path), "a@b").fingerprint == winner.fingerprint
