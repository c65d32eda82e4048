"""
Tests for bytestreamd.config: parsing, defaults, overrides, and that every
error names the section and key an operator has to fix.
"""

from __future__ import annotations

import dataclasses
import datetime
import grp
import os
import textwrap

import pytest
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.config import Config, allowed, loadConfig
from bytestreamd.errors import ConfigError

BASE = {"xmpp.jid": "bot@example.org", "xmpp.password": "secret"}
ENV = {"RUNTIME_DIRECTORY": "/run/bytestreamd-test"}


def load(overrides=None, path=None, environ=ENV, euid=1000):
    values = dict(BASE)
    values.update(overrides or {})
    return loadConfig(path, values, environ=environ, geteuid=lambda: euid)


def error(overrides=None, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load(overrides, **kw)
    return str(info.value)


def writeConfig(tmp_path, text: str) -> str:
    path = tmp_path / "bytestreamd.conf"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def makeCertificate(path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(1))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# --- defaults and the file -------------------------------------------------


def test_defaults():
    c = load()
    assert c.jid == JID("bot@example.org/bytestreamd")
    assert c.password == "secret"
    assert (c.host, c.port, c.ca_certs, c.tls) == (None, 5222, (), "verify")
    assert c.runtime_dir == "/run/bytestreamd-test"
    assert (c.socket_mode, c.socket_group) == (0o600, None)
    assert c.methods == ("s5b", "ibb")
    assert (c.ibb_block_size, c.ibb_stanza, c.ibb_window) == (4096, "iq", 32)
    assert (c.max_links, c.link_buffer) == (64, 262144)
    assert (c.offer_timeout, c.attempt_timeout) == (60.0, 30.0)
    assert c.s5b_listen == (("0.0.0.0", 0),)
    assert (c.s5b_advertise, c.s5b_proxy) == ((), None)
    assert (c.accept_allow, dict(c.services), c.log_traffic) == ((), {}, False)


def test_password_not_in_repr():
    assert "secret" not in repr(load())


def test_config_is_frozen():
    c = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.services["x"] = "y"  # type: ignore[index]


def test_full_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("pa%ss:word\n")
    ca = tmp_path / "ca.pem"
    makeCertificate(ca)
    path = writeConfig(tmp_path, """\
        # a comment
        [xmpp]
        jid = Bot@Example.org/home
        password_file = %s
        host = xmpp.example.org
        port = 5223
        ca_certs = %s
        tls = insecure

        [daemon]
        runtime_dir = %s
        socket_mode = 0660
        socket_group = %d
        log_traffic = yes

        [links]
        methods = ibb
        ibb_block_size = 65535
        ibb_stanza = message
        ibb_window = 1
        max_links = 2
        link_buffer = 1m
        offer_timeout = 5
        attempt_timeout = 0.5

        [s5b]
        listen = 127.0.0.1:0, [::1]:7777
        advertise = gw.example.org:8000, 192.0.2.1, [2001:db8::1]:9
        proxy = none

        [accept]
        allow = alice@example.org, *@example.net
            bob@example.com/laptop

        [services]
        ssh = tcp:host=127.0.0.1:port=22
        Web.App = unix:path=/run/app.sock
        """ % (secret, ca, tmp_path / "rt", os.getgid()))
    c = loadConfig(path, {}, environ={}, geteuid=lambda: 1000)
    assert c.jid.full() == "bot@example.org/home"
    assert c.password == "pa%ss:word"
    assert (c.host, c.port, c.tls) == ("xmpp.example.org", 5223, "insecure")
    assert c.ca_certs == (str(ca),)
    assert c.runtime_dir == str(tmp_path / "rt")
    assert (c.socket_mode, c.socket_group) == (0o660, os.getgid())
    assert c.log_traffic is True
    assert c.methods == ("ibb",)
    assert (c.ibb_block_size, c.ibb_stanza, c.ibb_window) == (
        65535, "message", 1)
    assert (c.max_links, c.link_buffer) == (2, 1048576)
    assert (c.offer_timeout, c.attempt_timeout) == (5.0, 0.5)
    assert c.s5b_listen == (("127.0.0.1", 0), ("::1", 7777))
    assert c.s5b_advertise == (("gw.example.org", 8000), ("192.0.2.1", None),
                               ("2001:db8::1", 9))
    assert c.s5b_proxy == ""
    assert c.accept_allow == ("alice@example.org", "*@example.net",
                              "bob@example.com/laptop")
    assert dict(c.services) == {"ssh": "tcp:host=127.0.0.1:port=22",
                                "Web.App": "unix:path=/run/app.sock"}


def test_overrides_replace_file(tmp_path):
    path = writeConfig(tmp_path, """\
        [xmpp]
        jid = bot@example.org
        password = fromfile
        [links]
        methods = ibb
        """)
    secret = tmp_path / "pw"
    secret.write_text("fromcli")
    c = loadConfig(path, {"links.methods": "s5b", "xmpp.jid": "x@y.org/r",
                          "xmpp.password_file": str(secret),
                          "daemon.runtime_dir": None},
                   environ=ENV, geteuid=lambda: 1000)
    assert c.methods == ("s5b",)
    assert c.jid.full() == "x@y.org/r"
    assert c.password == "fromcli"


def test_missing_file():
    message = error(path="/nonexistent/bytestreamd.conf")
    assert "/nonexistent/bytestreamd.conf" in message


def test_syntax_error(tmp_path):
    path = writeConfig(tmp_path, "jid = outside a section\n")
    assert "bytestreamd.conf" in error(path=path)


def test_unknown_section_and_key():
    assert "[xmp]" in error({"xmp.jid": "a@b"})
    message = error({"xmpp.jdi": "a@b"})
    assert "[xmpp] jdi: unknown key" in message
    assert "jid" in message


# --- [xmpp] ---------------------------------------------------------------


def test_jid_required():
    with pytest.raises(ConfigError, match=r"\[xmpp\] jid: required"):
        loadConfig(None, {"xmpp.password": "x"}, environ=ENV)


@pytest.mark.parametrize("value", ["example.org", "a@b@c", "@example.org",
                                   "a@exa mple.org"])
def test_bad_jid(value):
    assert error({"xmpp.jid": value}).startswith("[xmpp] jid: ")


def test_password_file_strips_one_newline(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("two\n\n")
    c = load({"xmpp.password_file": str(secret)})
    assert c.password == "two\n"
    secret.write_text("crlf\r\n")
    assert load({"xmpp.password_file": str(secret)}).password == "crlf"


def test_password_errors(tmp_path):
    assert "password_file: cannot read" in error(
        {"xmpp.password_file": str(tmp_path / "missing")})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "is empty" in error({"xmpp.password_file": str(empty)})
    with pytest.raises(ConfigError, match=r"\[xmpp\] password_file: required"):
        loadConfig(None, {"xmpp.jid": "a@b.org"}, environ=ENV)


def test_password_and_file_clash(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("x")
    path = writeConfig(tmp_path, """\
        [xmpp]
        jid = a@b.org
        password = one
        password_file = %s
        """ % secret)
    with pytest.raises(ConfigError, match="not both"):
        loadConfig(path, {}, environ=ENV)


@pytest.mark.parametrize("key,value", [
    ("port", "0"), ("port", "65536"), ("port", "x"), ("tls", "maybe"),
    ("host", "bad host"), ("host", "-x.org")])
def test_bad_xmpp_values(key, value):
    assert error({"xmpp." + key: value}).startswith("[xmpp] %s: " % key)


def test_ca_certs_checked(tmp_path):
    notPem = tmp_path / "not.pem"
    notPem.write_text("hello\n")
    assert "[xmpp] ca_certs: %s" % notPem in error(
        {"xmpp.ca_certs": str(notPem)})
    assert "cannot read" in error({"xmpp.ca_certs": str(tmp_path / "nope")})
    one, two = tmp_path / "one.pem", tmp_path / "two.pem"
    makeCertificate(one)
    makeCertificate(two)
    c = load({"xmpp.ca_certs": "%s, %s" % (one, two)})
    assert c.ca_certs == (str(one), str(two))


# --- [daemon] -------------------------------------------------------------


def test_runtime_dir_defaults():
    assert load(environ={"RUNTIME_DIRECTORY": "/run/a:/run/b"}
                ).runtime_dir == "/run/a"
    assert load(environ={}, euid=0).runtime_dir == "/run/bytestreamd"
    assert load(environ={"XDG_RUNTIME_DIR": "/run/user/1000"}
                ).runtime_dir == "/run/user/1000/bytestreamd"
    assert "runtime_dir: not set" in error(environ={}, euid=1000)
    assert load({"daemon.runtime_dir": "/srv/x"}, environ={},
                euid=1000).runtime_dir == "/srv/x"


def test_runtime_dir_too_long():
    message = error({"daemon.runtime_dir": "/" + "x" * 100})
    assert message.startswith("[daemon] runtime_dir: ")
    assert "too long" in message


@pytest.mark.parametrize("value,mode", [
    ("0600", 0o600), ("600", 0o600), ("0660", 0o660), ("0o640", 0o640),
    ("0770", 0o770)])
def test_socket_mode(value, mode):
    assert load({"daemon.socket_mode": value}).socket_mode == mode


@pytest.mark.parametrize("value", ["0666", "0601", "1600", "0800", "rw",
                                   "0400", "-600", "06000"])
def test_bad_socket_mode(value):
    assert error({"daemon.socket_mode": value}).startswith(
        "[daemon] socket_mode: ")


def test_socket_group():
    group = grp.getgrgid(os.getgid())
    assert load({"daemon.socket_group": group.gr_name}
                ).socket_group == group.gr_gid
    assert load({"daemon.socket_group": "4242"}).socket_group == 4242
    assert "no group named" in error(
        {"daemon.socket_group": "no-such-group-xyz"})


def test_log_traffic():
    assert load({"daemon.log_traffic": "on"}).log_traffic is True
    assert load({"daemon.log_traffic": "No"}).log_traffic is False
    assert "[daemon] log_traffic" in error({"daemon.log_traffic": "2"})


# --- [links] --------------------------------------------------------------


def test_methods():
    assert load({"links.methods": "IBB s5b"}).methods == ("ibb", "s5b")
    assert "unknown method 'jingle'" in error({"links.methods": "jingle"})
    assert "twice" in error({"links.methods": "ibb, ibb"})
    assert "empty" in error({"links.methods": " , "})


@pytest.mark.parametrize("key,value", [
    ("ibb_block_size", "0"), ("ibb_block_size", "65536"),
    ("ibb_window", "0"), ("ibb_window", "257"), ("ibb_stanza", "presence"),
    ("max_links", "0"), ("link_buffer", "12"), ("link_buffer", "5 GB"),
    ("offer_timeout", "0"), ("offer_timeout", "inf"),
    ("attempt_timeout", "-1"), ("attempt_timeout", "soon")])
def test_bad_links_values(key, value):
    assert error({"links." + key: value}).startswith("[links] %s: " % key)


# --- [s5b] ----------------------------------------------------------------


def test_listen_none():
    assert load({"s5b.listen": "none"}).s5b_listen == ()


@pytest.mark.parametrize("value", [
    "127.0.0.1", "localhost:0", "127.0.0.1:70000", "[::1", "[::1]:x",
    "1.2.3.4:-1"])
def test_bad_listen(value):
    assert error({"s5b.listen": value}).startswith("[s5b] listen: ")


@pytest.mark.parametrize("value", ["bad_host:1", "a.org:0", "[::1]:99999"])
def test_bad_advertise(value):
    assert error({"s5b.advertise": value}).startswith("[s5b] advertise: ")


def test_proxy():
    assert load({"s5b.proxy": "auto"}).s5b_proxy is None
    assert load({"s5b.proxy": "None"}).s5b_proxy == ""
    assert load({"s5b.proxy": "Proxy.Example.org"}
                ).s5b_proxy == "proxy.example.org"
    assert error({"s5b.proxy": "a@b@c"}).startswith("[s5b] proxy: ")


def test_connect_default_and_lists():
    config = load()
    assert config.s5b_connect == ("0.0.0.0/0", "::/0")
    assert load({"s5b.connect": "127.0.0.0/8, ::1"}).s5b_connect == (
        "127.0.0.0/8", "::1/128")
    assert load({"s5b.connect": "0.0.0.0/0 !10.0.0.0/8, !192.168.0.0/16"}
                ).s5b_connect == ("0.0.0.0/0", "!10.0.0.0/8", "!192.168.0.0/16")
    assert load({"s5b.connect": "None"}).s5b_connect == ()
    assert load({"s5b.connect": ""}).s5b_connect == ("0.0.0.0/0", "::/0")


@pytest.mark.parametrize("value,words", [
    ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
    ("localhost", "not an IP address or network"),
    ("127.0.0.0/33", "not an IP address or network"),
    ("none, 10.0.0.0/8", "not an IP address or network"),
    ("!", "not an IP address or network")])
def test_bad_connect(value, words):
    message = error({"s5b.connect": value})
    assert message.startswith("[s5b] connect: "), message
    assert words in message, message


def test_max_handshakes():
    assert load().s5b_max_handshakes is None  # follows max_links
    assert load({"s5b.max_handshakes": "500"}).s5b_max_handshakes == 500
    for value in ("0", "-3", "many"):
        assert error({"s5b.max_handshakes": value}).startswith(
            "[s5b] max_handshakes: ")


# --- [accept] and allowed() ------------------------------------------------


@pytest.mark.parametrize("value", ["*", "*.example.org", "a@*", "*@a@b",
                                   "*@u@example.org"])
def test_bad_allow(value):
    assert error({"accept.allow": value}).startswith("[accept] allow: ")


def test_allowed_default_is_own_bare_jid():
    c = load()
    assert allowed(c, JID("bot@example.org/other"))
    assert allowed(c, "bot@example.org")
    assert not allowed(c, JID("eve@example.org/x"))
    assert not allowed(c, "example.org")
    assert not allowed(c, "not a jid@@")


def test_allowed_patterns():
    c = load({"accept.allow":
              "alice@example.org, bob@example.com/laptop, *@friends.org, "
              "partner.net"})
    assert allowed(c, "Alice@Example.org/phone")
    assert allowed(c, "bob@example.com/laptop")
    assert not allowed(c, "bob@example.com/phone")
    assert not allowed(c, "bob@example.com")
    assert allowed(c, "anyone@friends.org/r")
    assert not allowed(c, "friends.org")
    assert not allowed(c, "anyone@sub.friends.org/r")
    assert allowed(c, "partner.net")
    assert allowed(c, "x@partner.net/y")
    assert not allowed(c, "x@evilpartner.net/y")
    assert not allowed(c, "alice@example.org.evil/x")


def test_allowed_with_constructed_config():
    c = Config(jid=JID("me@h.org/r"), password="p",
               accept_allow=("*@h.org",))
    assert allowed(c, "you@h.org/x")


# --- [services] -----------------------------------------------------------


def test_bad_service_endpoint():
    message = error({"services.ssh": "tcp:host=127.0.0.1"})
    assert message.startswith("[services] ssh: bad client endpoint")
    assert "[services] web" in error({"services.web": "nope:x"})
    assert "[services] e" in error({"services.e": "  "})


def test_bad_service_name():
    assert "[services] -x" in error({"services.-x": "tcp:host=h:port=1"})
