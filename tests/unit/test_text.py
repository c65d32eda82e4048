"""
bytestreamd.text, and the wire boundary it guards: nothing the daemon sends
can be XML the server refuses, and nothing a peer or a user wrote reaches the
log with its control characters raw (issue 8 finding 2).
"""

from __future__ import annotations

import pytest
from twisted.logger import eventAsText
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd import ns
from bytestreamd.errors import stanzaError
from bytestreamd.text import (SafeLogger, badCharacter, describeCharacter, firstNonXML,
                              isXMLText, safeText, xmlText)
from bytestreamd.wire import end, ibb, s5b, si

NON_XML = ["\x00", "\x01", "\x1b", "\x08", "\ufffe", "\uffff", "\ud800"]


def _parses(xml: str) -> domish.Element:
    """Parse ``xml`` as a server would (expat); fail if not well-formed."""
    found = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(("<r>%s</r>" % xml).encode("utf-8"))
    assert len(found) == 1, xml
    return found[0]


def test_xmlChars():
    assert isXMLText("tab\t lf\n cr\r é \U0001f600 \ue000 \ufffd")
    for ch in NON_XML:
        assert not isXMLText("a" + ch), repr(ch)
        assert firstNonXML("ab" + ch) == 2
    assert xmlText("a\x01b\ufffec") == "a\ufffdb\ufffdc"


def test_badCharacterAtTheControlBoundary():
    assert badCharacter("caf\u00e9 \U0001f600 ok") is None
    assert badCharacter("a\x01") == "control character U+0001"
    assert badCharacter("\x1b[2J") == "control character U+001B"
    assert badCharacter("\x85") == "control character U+0085"
    assert badCharacter("\ufffe") == "noncharacter U+FFFE"
    assert badCharacter("\U0001ffff") == "noncharacter U+1FFFF"
    assert badCharacter("\ufdd0") == "noncharacter U+FDD0"
    assert badCharacter("\u2029") == "paragraph separator U+2029"
    assert badCharacter("a\nb") == "control character U+000A"
    assert badCharacter("a\nb\tc", "\n\t") is None
    assert describeCharacter("\ud800") == "surrogate U+D800"


def test_safeText():
    assert safeText("a\nb") == "a\\x0ab"
    assert safeText("\x1b[31mred") == "\\x1b[31mred"
    assert safeText("\u202eevil") == "\\u202eevil"
    assert safeText("\u2028") == "\\u2028"
    assert safeText("caf\u00e9 \U0001f600 \\ ok") == "caf\u00e9 \U0001f600 \\ ok"
    assert safeText(ValueError("x\ny")) == "x\\x0ay"


def test_safeLoggerEscapesEveryField():
    events = []
    log = SafeLogger(observer=events.append)
    log.info("reason {reason} from {peer} ({e}) n={n} {r!r}",
             reason="forged\n2026-01-01 [link] GOOD", peer=JID("bob@example.org/x"),
             e=ValueError("a\x1b[2Jb"), n=3, r="q")
    text = eventAsText(events[0], includeTimestamp=False)
    assert "\n" not in text and "\x1b" not in text
    assert "forged\\x0a2026-01-01 [link] GOOD" in text
    assert "bob@example.org/x" in text and "a\\x1b[2Jb" in text and "n=3" in text


def test_safeLoggerKeepsFailures():
    events = []
    log = SafeLogger(observer=events.append)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.failure("it failed: {what}", what="x\ny")
    assert events[0]["log_failure"].check(RuntimeError)
    assert events[0]["what"] == "x\\x0ay"


def test_stanzaErrorTextIsRepaired():
    """The error of REJECT reason="\\x01..." is sendable, whatever the reason."""
    error = stanzaError("forbidden", "no\x01 way\ufffe\x00", type="cancel")
    assert error.text == "no\ufffd way\ufffd\ufffd"
    parsed = _parses(error.getElement().toXml())
    text = [c for c in parsed.elements() if c.name == "text"][0]
    assert str(text) == "no\ufffd way\ufffd\ufffd"
    assert stanzaError("forbidden").text is None


@pytest.mark.parametrize("bad", NON_XML)
def test_codecsRefuseToBuildNonXML(bad):
    peer = JID("bob@example.org/x")
    builders = [
        lambda: end.EOF("s" + bad, 0).toElement(),
        lambda: end.End("s" + bad, 0, 0).toElement(),
        lambda: ibb.Open("s" + bad).toElement(),
        lambda: ibb.Close("s" + bad).toElement(),
        lambda: ibb.Data("s" + bad, 0, b"").toElement(),
        lambda: ibb.DataWriter("a@b/c" + bad, None, "s"),
        lambda: s5b.Query("s" + bad, [s5b.StreamHost(peer, "h")]).toElement(),
        lambda: s5b.Query("s", [s5b.StreamHost(peer, "h" + bad)]).toElement(),
        lambda: s5b.Query("s", [s5b.StreamHost(peer, "h")], dstaddr=bad).toElement(),
        lambda: s5b.StreamHostUsed(peer, "s" + bad).toElement(),
        lambda: s5b.Activate("s" + bad, peer).toElement(),
        lambda: si.SIOffer("i" + bad, ns.NS_LINK_PROFILE, ["m"]).toElement(),
        lambda: si.SIOffer("i", ns.NS_LINK_PROFILE, ["m" + bad]).toElement(),
        lambda: si.SIOffer("i", ns.NS_LINK_PROFILE, ["m"], mimeType=bad).toElement(),
        lambda: si.SIAccept(method="m" + bad).toElement(),
        lambda: si.SIAccept(methods=["m" + bad]).toElement(),
        lambda: si.LinkProfile("svc" + bad).toElement(),
        lambda: si.FileProfile(name="f" + bad, size="1").toElement(),
        lambda: si.FileProfile(name="f", size="1", desc="d" + bad).toElement(),
        lambda: si.payloadFromHeaders(ns.NS_SI_FILE_TRANSFER, {"name": "f" + bad,
                                                               "size": "1"}),
        lambda: si.payloadFromHeaders(ns.NS_LINK_PROFILE, {"service": "s" + bad}),
    ]
    for index, build in enumerate(builders):
        with pytest.raises(ValueError):
            build()
            pytest.fail("builder %d accepted %r" % (index, bad))


def test_endTextIsRepaired():
    element = end.End("s1", 1, 2, "failed", "peer said \x1bno\ufffe").toElement()
    parsed = end.End.fromElement(_parses(element.toXml()))
    assert parsed.text == "peer said \ufffdno\ufffd"


def test_codecsRefuseToParseNonXML():
    """A value a codec accepted can always be serialised again."""
    element = domish.Element((ns.NS_SI_FILE_TRANSFER, "file"))
    element["name"] = "f\x01"
    element["size"] = "1"
    with pytest.raises(si.MalformedSI, match="U\\+0001"):
        si.FileProfile.fromElement(element)
    query = domish.Element((ns.NS_S5B, "query"))
    query["sid"] = "s\ufffe"
    host = query.addElement("streamhost")
    host["jid"], host["host"] = "proxy.example.org", "192.0.2.1"
    with pytest.raises(s5b.MalformedS5B, match="noncharacter U\\+FFFE"):
        s5b.Query.fromElement(query)


def test_modulesThatLogPeerTextUseSafeLogger():
    """Reasons, JIDs, headers and stanza error texts are logged by these."""
    import importlib
    for name in ["links", "xmpp.client", "daemon", "methods.s5b", "methods.s5b_proxies",
                 "methods.s5b_tcp", "negotiation.si", "control.protocol", "links.confirm",
                 "xmpp.liveness"]:
        module = importlib.import_module("bytestreamd." + name)
        assert isinstance(module.log, SafeLogger), name
