"""Tests for bytestreamd.e2e.trust: the policies and the known-peers file."""

from __future__ import annotations

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bytestreamd.e2e import files, identity, trust
from bytestreamd.e2e.identity import Identity
from bytestreamd.e2e.trust import (CA, PINNED, SIGNALLING, TOFU, Accept,
                                   KnownPeers, KnownPeersError, Refuse, decide)

JULIET = "juliet@capulet.lit"
NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def juliet():
    return Identity.generate(JULIET)


@pytest.fixture(scope="module")
def mallory():
    return Identity.generate(JULIET)  # claims to be Juliet, other key


class FakeStore:
    def __init__(self, pins=None):
        self.pins = dict(pins or {})

    def lookup(self, jid):
        return frozenset(self.pins.get(jid, ()))


class BrokenStore:
    def lookup(self, jid):
        raise KnownPeersError("/x/known-peers line 3: expected '<bare JID> sha-256 <fingerprint>'")


# --- the signalled fingerprint, in every policy --------------------------------


@pytest.mark.parametrize("policy", trust.POLICIES)
def test_signalled_mismatch_refused_in_every_policy(policy, juliet, mallory):
    store = FakeStore({JULIET: {mallory.fingerprint}})
    result = decide(policy, JULIET + "/balcony", mallory.certificate,
                    juliet.fingerprint, store, caCertificates=[mallory.certificate])
    assert isinstance(result, Refuse)
    assert mallory.fingerprint in result.reason
    assert juliet.fingerprint in result.reason
    assert "man in the middle" in result.reason
    assert (result.presented, result.signalled) == (mallory.fingerprint, juliet.fingerprint)
    assert "\n" not in result.reason


@pytest.mark.parametrize("policy", trust.POLICIES)
def test_nothing_signalled_refused(policy, juliet):
    result = decide(policy, JULIET, juliet.certificate, None, FakeStore())
    assert isinstance(result, Refuse)
    assert juliet.fingerprint in result.reason and "signalled no" in result.reason


def test_unreadable_signalled_fingerprint_refused(juliet):
    result = decide(SIGNALLING, JULIET, juliet.certificate, "zz", FakeStore())
    assert isinstance(result, Refuse) and juliet.fingerprint in result.reason


def test_signalled_fingerprint_is_normalized(juliet):
    signalled = juliet.fingerprint.replace(":", "").lower()
    assert decide(SIGNALLING, JULIET, juliet.certificate, signalled,
                  FakeStore()) == Accept(juliet.fingerprint, "signalled fingerprint")


def test_unknown_policy(juliet):
    with pytest.raises(ValueError) as e:
        decide("yolo", JULIET, juliet.certificate, juliet.fingerprint, FakeStore())
    assert "tofu" in str(e.value)


def test_default_policy_is_tofu():
    assert trust.DEFAULT_POLICY == TOFU


# --- pinned / tofu ---------------------------------------------------------------


def test_signalling_ignores_pins(juliet, mallory):
    store = FakeStore({JULIET: {mallory.fingerprint}})
    assert isinstance(decide(SIGNALLING, JULIET, juliet.certificate,
                             juliet.fingerprint, store), Accept)


@pytest.mark.parametrize("policy", [PINNED, TOFU])
def test_pinned_match_accepted(policy, juliet, mallory):
    store = FakeStore({JULIET: {mallory.fingerprint, juliet.fingerprint}})
    result = decide(policy, "Juliet@Capulet.lit/balcony", juliet.certificate,
                    juliet.fingerprint, store)
    assert result == Accept(juliet.fingerprint, "pinned fingerprint", pin=False)


@pytest.mark.parametrize("policy", [PINNED, TOFU])
def test_pin_mismatch_refused_loudly(policy, juliet, mallory):
    store = FakeStore({JULIET: {juliet.fingerprint}})
    result = decide(policy, JULIET, mallory.certificate, mallory.fingerprint, store)
    assert isinstance(result, Refuse)
    assert "NOT the pinned one" in result.reason
    assert "pinned sha-256 %s" % juliet.fingerprint in result.reason
    assert "presented (and signalled) sha-256 %s" % mallory.fingerprint in result.reason
    assert "TRUST %s %s" % (JULIET, mallory.fingerprint) in result.reason


def test_tofu_first_use_pins(juliet):
    result = decide(TOFU, JULIET, juliet.certificate, juliet.fingerprint, FakeStore())
    assert result == Accept(juliet.fingerprint, "first use, now pinned", pin=True)


def test_pinned_without_pin_refused(juliet):
    result = decide(PINNED, JULIET, juliet.certificate, juliet.fingerprint, FakeStore())
    assert isinstance(result, Refuse)
    assert "no fingerprint is pinned for %s" % JULIET in result.reason
    assert "TRUST %s %s" % (JULIET, juliet.fingerprint) in result.reason


@pytest.mark.parametrize("policy", [PINNED, TOFU])
def test_unreadable_store_refuses_rather_than_repins(policy, juliet):
    result = decide(policy, JULIET, juliet.certificate, juliet.fingerprint, BrokenStore())
    assert isinstance(result, Refuse) and "line 3" in result.reason


def test_tofu_end_to_end_with_the_file(tmp_path, juliet, mallory):
    store = KnownPeers(str(tmp_path / "known-peers"))
    first = decide(TOFU, JULIET, juliet.certificate, juliet.fingerprint, store)
    assert first.pin
    store.trust(JULIET, first.fingerprint)
    assert decide(TOFU, JULIET, juliet.certificate, juliet.fingerprint, store).how == \
        "pinned fingerprint"
    assert isinstance(decide(TOFU, JULIET, mallory.certificate, mallory.fingerprint,
                             store), Refuse)
    store.forget(JULIET)
    assert decide(TOFU, JULIET, mallory.certificate, mallory.fingerprint, store).pin


# --- ca ------------------------------------------------------------------------


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn, issuerKey=None, issuerName=None):
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (x509.CertificateBuilder().subject_name(_name(cn))
            .issuer_name(issuerName or _name(cn)).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2040, 1, 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                         False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(issuerKey or key, hashes.SHA256()))
    return key, cert


def _leaf(caKey, caCert, jids, notAfter=datetime.datetime(2039, 1, 1)):
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.OtherName(identity.ID_ON_XMPPADDR, identity.encodeUTF8String(j))
             for j in jids] or [x509.DNSName("capulet.lit")]
    cert = (x509.CertificateBuilder().subject_name(_name("leaf"))
            .issuer_name(caCert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(notAfter)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(caKey, hashes.SHA256()))
    return Identity(key=key, certificate=cert)


@pytest.fixture(scope="module")
def pki():
    rootKey, root = _ca("Root")
    midKey, mid = _ca("Intermediate", rootKey, root.subject)
    return rootKey, root, midKey, mid


def _ca_decide(leaf, roots, chain=(), peer=JULIET, now=NOW):
    return decide(CA, peer, leaf.certificate, leaf.fingerprint, FakeStore(),
                  chain=chain, caCertificates=roots, now=now)


def test_ca_accepts_leaf_with_xmppaddr(pki):
    rootKey, root, midKey, mid = pki
    leaf = _leaf(rootKey, root, [JULIET])
    assert _ca_decide(leaf, [root]) == Accept(leaf.fingerprint,
                                              "certificate from a trusted CA")
    viaMid = _leaf(midKey, mid, ["other@capulet.lit", JULIET])
    assert isinstance(_ca_decide(viaMid, [root], chain=[mid]), Accept)


def test_ca_refuses_missing_intermediate_and_unknown_root(pki):
    rootKey, root, midKey, mid = pki
    viaMid = _leaf(midKey, mid, [JULIET])
    result = _ca_decide(viaMid, [root])
    assert isinstance(result, Refuse) and "does not chain" in result.reason
    assert viaMid.fingerprint in result.reason
    _, otherRoot = _ca("Other")
    assert isinstance(_ca_decide(_leaf(rootKey, root, [JULIET]), [otherRoot]), Refuse)
    # a self-signed daemon certificate is not a CA-issued one
    assert isinstance(_ca_decide(Identity.generate(JULIET), [root]), Refuse)


def test_ca_refuses_wrong_or_missing_xmppaddr(pki):
    rootKey, root, _, _ = pki
    result = _ca_decide(_leaf(rootKey, root, ["romeo@montague.lit"]), [root])
    assert isinstance(result, Refuse)
    assert "names romeo@montague.lit, not %s" % JULIET in result.reason
    result = _ca_decide(_leaf(rootKey, root, []), [root])
    assert isinstance(result, Refuse) and "no JID" in result.reason


def test_ca_refuses_expired(pki):
    rootKey, root, _, _ = pki
    leaf = _leaf(rootKey, root, [JULIET], notAfter=datetime.datetime(2025, 1, 1))
    result = _ca_decide(leaf, [root])
    assert isinstance(result, Refuse) and "expired" in result.reason


def test_ca_without_ca_certs(pki):
    rootKey, root, _, _ = pki
    result = _ca_decide(_leaf(rootKey, root, [JULIET]), [])
    assert isinstance(result, Refuse) and "ca_certs" in result.reason


# --- the known-peers file --------------------------------------------------------


FP1 = identity.formatFingerprint(bytes(range(32)))
FP2 = identity.formatFingerprint(bytes(range(32, 64)))


def test_store_trust_lookup_forget(tmp_path):
    path = tmp_path / "known-peers"
    store = KnownPeers(str(path))
    assert store.lookup(JULIET) == frozenset()
    assert store.trust("Juliet@Capulet.lit/balcony", FP1.lower().replace(":", ""))
    assert not store.trust(JULIET, FP1)  # already there
    assert store.trust(JULIET, FP2)
    assert store.trust("romeo@montague.lit", FP2)
    assert store.lookup(JULIET + "/x") == {FP1, FP2}
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = path.read_text()
    assert text.startswith("#")
    assert "%s sha-256 %s\n" % (JULIET, FP1) in text
    # a fresh reader sees the same
    assert KnownPeers(str(path)).entries() == [
        (JULIET, FP1), (JULIET, FP2), ("romeo@montague.lit", FP2)]
    assert store.forget(JULIET, FP1) == 1
    assert store.lookup(JULIET) == {FP2}
    assert store.forget(JULIET) == 1
    assert store.forget(JULIET) == 0
    assert store.lookup("romeo@montague.lit") == {FP2}
    assert sorted(os.listdir(tmp_path)) == ["known-peers"]


def test_store_keeps_comments_and_reads_hand_edits(tmp_path):
    path = tmp_path / "known-peers"
    path.write_text("# mine\n\n  # indented comment\nromeo@montague.lit SHA-256 %s\n"
                    % FP1.lower())
    os.chmod(path, 0o600)
    store = KnownPeers(str(path))
    assert store.lookup("romeo@montague.lit") == {FP1}
    store.trust(JULIET, FP2)
    text = path.read_text()
    assert text.startswith("# mine\n\n  # indented comment\nromeo@montague.lit SHA-256 ")
    assert text.endswith("%s sha-256 %s\n" % (JULIET, FP2))
    # a hand edit (new inode via rename, as editors do) is picked up
    files.replaceAtomically(str(path), b"# only this\n")
    assert store.lookup("romeo@montague.lit") == frozenset()


@pytest.mark.parametrize("line, words", [
    ("juliet@capulet.lit %s" % FP1, "expected"),
    ("juliet@capulet.lit sha-1 %s" % FP1, "sha-1"),
    ("juliet@capulet.lit sha-256 12:34", "64 hex digits"),
    ("@@@ sha-256 %s" % FP1, "invalid JID"),
])
def test_store_refuses_bad_lines(tmp_path, line, words):
    path = tmp_path / "known-peers"
    path.write_text("# c\n%s sha-256 %s\n%s\n" % (JULIET, FP1, line))
    os.chmod(path, 0o600)
    store = KnownPeers(str(path))
    with pytest.raises(KnownPeersError) as e:
        store.lookup(JULIET)
    assert "%s line 3" % path in str(e.value) and words in str(e.value)
    with pytest.raises(KnownPeersError):
        store.trust(JULIET, FP2)
    assert line in path.read_text()  # not rewritten


def test_store_refuses_writable_file(tmp_path):
    path = tmp_path / "known-peers"
    path.write_text("")
    os.chmod(path, 0o666)
    with pytest.raises(files.UnsafeStateDirectory) as e:
        KnownPeers(str(path)).lookup(JULIET)
    assert str(path) in str(e.value)
    os.chmod(path, 0o644)  # readable is fine: it holds no secret
    assert KnownPeers(str(path)).lookup(JULIET) == frozenset()


def test_store_refuses_bad_input(tmp_path):
    store = KnownPeers(str(tmp_path / "k"))
    with pytest.raises(identity.MalformedFingerprint):
        store.trust(JULIET, "12:34")
    with pytest.raises(ValueError):
        store.trust("@", FP1)
    assert not (tmp_path / "k").exists()
