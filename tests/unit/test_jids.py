"""
bytestreamd.jids: one JID parser for the control socket, the configuration
and the wire, with IP literals (RFC 7622 section 3.2) that Twisted's JID
refuses (issue 8 finding 9).
"""

from __future__ import annotations

import pytest
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.config import allowed, loadConfig
from bytestreamd.errors import ConfigError
from bytestreamd.jids import InvalidJID, LiteralJID, makeJID, parseJID, parseJIDOrNone


def test_ipv6Literal():
    jid = parseJID("bob@[::1]/x")
    assert (jid.user, jid.host, jid.resource) == ("bob", "[::1]", "x")
    assert jid.full() == "bob@[::1]/x"
    assert jid.userhost() == "bob@[::1]"
    assert isinstance(jid, JID)


def test_ipv6LiteralIsCanonical():
    assert parseJID("bob@[0:0:0::1]") == parseJID("bob@[::1]")
    assert parseJID("bob@[2001:DB8::A]").host == "[2001:db8::a]"
    assert hash(parseJID("bob@[0::1]/r")) == hash(parseJID("bob@[::1]/r"))


def test_ipv4Literal():
    assert parseJID("bob@127.0.0.1/x").full() == "bob@127.0.0.1/x"
    assert parseJID("192.0.2.1").host == "192.0.2.1"


def test_partsArePreparedAroundALiteral():
    jid = parseJID("Bob@[::1]/Res")
    assert (jid.user, jid.resource) == ("bob", "Res")
    with pytest.raises(InvalidJID, match="resource"):
        parseJID("bob@[::1]/a\x01b")
    with pytest.raises(InvalidJID, match="localpart"):
        parseJID("b\u202eob@[::1]")


def test_bareOfALiteralJID():
    jid = parseJID("bob@[::1]/x")
    bare = jid.userhostJID()
    assert bare == parseJID("bob@[::1]") and bare.resource is None
    assert bare.userhostJID() is bare
    assert isinstance(bare, LiteralJID)


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("bob@::1", "in brackets"),
    ("bob@[::1", "not an IPv6 address"),
    ("bob@::1]", "not an IPv6 address"),
    ("bob@[1.2.3.4]", "not an IPv6 address"),
    ("bob@[example.org]", "not an IPv6 address"),
    ("bob@[fe80::1%eth0]", "zone"),
    ("bob@[]", "not an IPv6 address"),
    ("@example.org", "empty localpart"),
    ("bob@example.org/", "empty resource"),
    ("bob@/r", "empty domain"),
    ("a@b@c", "nameprep"),
    ("a" * 1024 + "@x", "longer than 1023"),
    ("a@x/" + "r" * 1024, "longer than 1023"),
])
def test_invalid(text, words):
    with pytest.raises(InvalidJID, match=words.replace("[", r"\[")):
        parseJID(text)
    assert parseJIDOrNone(text) is None


def test_trailingDotIsStripped():
    assert parseJID("bob@example.org./r") == JID("bob@example.org/r")


def test_sameAsTwistedForNames():
    for text in ["Bob@Example.ORG/Res", "example.org", "jürgen@example.org/x",
                 "a@b/c@d/e"]:
        assert parseJID(text) == JID(text)


def test_makeJID():
    assert makeJID("bob", "[::1]", "r").full() == "bob@[::1]/r"
    assert makeJID(None, "example.org").full() == "example.org"
    with pytest.raises(InvalidJID):
        makeJID("bob", "[nope]")


def test_wireParserIsForgiving():
    assert parseJIDOrNone(None) is None
    assert parseJIDOrNone("bob@[::1]/x") == parseJID("bob@[::1]/x")


# --- the configuration --------------------------------------------------------

BASE = {"xmpp.password": "secret"}
ENV = {"RUNTIME_DIRECTORY": "/run/bytestreamd-test"}


def _load(**values):
    overrides = dict(BASE, **{"xmpp.jid": "bot@example.org"})
    overrides.update({k.replace("_", "."): v for k, v in values.items()})
    return loadConfig(None, overrides, environ=ENV, geteuid=lambda: 1000)


def test_configAcceptsIPLiterals():
    config = _load(accept_allow="bob@[::1], *@[2001:db8::1], 192.0.2.7")
    assert config.accept_allow == ("bob@[::1]", "*@[2001:db8::1]", "192.0.2.7")
    assert allowed(config, parseJID("bob@[0::1]/x"))
    assert allowed(config, "bob@[::1]/x")
    assert allowed(config, "carol@[2001:db8::1]/y")
    assert allowed(config, "192.0.2.7/x")
    assert not allowed(config, "bob@[::2]/x")
    assert not allowed(config, "bob@[::1/x")


def test_configOwnJIDWithALiteral():
    config = loadConfig(None, dict(BASE, **{"xmpp.jid": "bot@[::1]", "xmpp.host": "::1"}),
                        environ=ENV, geteuid=lambda: 1000)
    assert config.jid.full() == "bot@[::1]/bytestreamd"
    assert config.jid.userhost() == "bot@[::1]"


def test_configRefusesABadLiteral():
    with pytest.raises(ConfigError, match=r"\[accept\] allow.*bob@::1"):
        _load(accept_allow="bob@::1")


def test_domainThatNameprepEmptiesIsInvalid():
    # U+00AD (soft hyphen) is mapped to nothing by nameprep: Twisted then
    # indexes an empty domain (found by test_fuzz_grammar: "OPEN \xad")
    with pytest.raises(InvalidJID) as e:
        parseJID("\xad")
    assert "empty domain" in str(e.value)
