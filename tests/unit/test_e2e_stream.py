"""
Tests for bytestreamd.e2e.stream: two machines wired together in memory
(TLS stood in for by calling tlsEstablished() once both asked for it), and
every refusal path fed by hand.
"""

from __future__ import annotations

from typing import Dict, List

import pytest
from twisted.words.xish import domish

from bytestreamd.e2e import NS_BYTES, NS_STREAM_ERRORS, NS_STREAMS, NS_TLS
from bytestreamd.e2e.stream import (INITIATOR, MODE_BYTES, MODE_XMPP, RESPONDER,
                                    BadStanza, Closed, Data, E2EStream,
                                    Established, Failed, Send, StartTLS, Stanza)

ROMEO = "romeo@montague.lit"
JULIET = "juliet@capulet.lit"
HEADER_FROM_JULIET = (
    "<stream:stream xmlns='jabber:client' xmlns:stream='%s' from='%s' to='%s' "
    "id='x1' version='1.0'>" % (NS_STREAMS, JULIET, ROMEO)).encode()
HEADER_FROM_ROMEO = (
    "<stream:stream xmlns='jabber:client' xmlns:stream='%s' from='%s' to='%s' "
    "version='1.0'>" % (NS_STREAMS, ROMEO, JULIET)).encode()
STARTTLS_FEATURES = (
    "<stream:features><starttls xmlns='%s'><required/></starttls></stream:features>"
    % NS_TLS).encode()


def parseDocument(data: bytes):
    """(root, [children], ended) of one serialized stream."""
    found: Dict[str, object] = {"root": None, "children": [], "ended": False}
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: found.__setitem__("root", root)
    stream.ElementEvent = found["children"].append
    stream.DocumentEndEvent = lambda: found.__setitem__("ended", True)
    stream.parse(data)
    return found["root"], found["children"], found["ended"]


class Pair:
    """Two machines whose Send outputs are fed to each other."""

    def __init__(self, modeI=MODE_XMPP, modeR=MODE_XMPP, chunk=None,
                 initiatorFirst=True):
        self.i = E2EStream(INITIATOR, ROMEO + "/orchard", JULIET + "/balcony", modeI)
        self.r = E2EStream(RESPONDER, JULIET + "/balcony", ROMEO + "/orchard", modeR,
                           newId=lambda: "s1")
        self.chunk = chunk
        self.initiatorFirst = initiatorFirst
        self.events: Dict[E2EStream, List[object]] = {self.i: [], self.r: []}
        # what each side wrote, per phase: 0 in clear, 1 inside TLS
        self.sent: Dict[E2EStream, List[bytes]] = {self.i: [b"", b""], self.r: [b"", b""]}
        self.tls: Dict[E2EStream, bool] = {self.i: False, self.r: False}

    def other(self, m):
        return self.r if m is self.i else self.i

    def run(self, sender, outputs):
        receiver = self.other(sender)
        for output in outputs:
            if isinstance(output, Send):
                self.sent[sender][int(self.tls[sender])] += output.data
                data = output.data
                pieces = ([data[k:k + self.chunk] for k in range(0, len(data), self.chunk)]
                          if self.chunk else [data])
                for piece in pieces:
                    self.run(receiver, receiver.dataReceived(piece))
            else:
                self.events[sender].append(output)
                if isinstance(output, StartTLS):
                    self.tls[sender] = True
                    if all(self.tls.values()):
                        first, second = ((self.i, self.r) if self.initiatorFirst
                                         else (self.r, self.i))
                        self.run(first, first.tlsEstablished())
                        self.run(second, second.tlsEstablished())

    def start(self):
        self.run(self.r, self.r.start())
        self.run(self.i, self.i.start())
        return self


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("initiatorFirst", [True, False])
def test_xmpp_stream_sequence(chunk, initiatorFirst):
    p = Pair(chunk=chunk, initiatorFirst=initiatorFirst).start()
    assert p.events[p.i] == [StartTLS("client"), Established(MODE_XMPP)]
    assert p.events[p.r] == [StartTLS("server"), Established(MODE_XMPP)]
    assert p.i.state == p.r.state == "xmpp" and p.i.secured and p.r.secured

    # In clear: the headers, features with required STARTTLS, starttls, proceed.
    root, children, _ = parseDocument(p.sent[p.i][0])
    assert (root.uri, root.name, root.defaultUri) == (NS_STREAMS, "stream", "jabber:client")
    assert (root["from"], root["to"], root["version"]) == (ROMEO, JULIET, "1.0")
    assert not root.hasAttribute("id")
    assert [(c.uri, c.name) for c in children] == [(NS_TLS, "starttls")]
    root, children, _ = parseDocument(p.sent[p.r][0])
    assert (root["from"], root["to"], root["id"], root["version"]) == (JULIET, ROMEO,
                                                                       "s1", "1.0")
    features, proceed = children
    assert (features.uri, features.name) == (NS_STREAMS, "features")
    starttls = features.firstChildElement()
    assert (starttls.uri, starttls.name) == (NS_TLS, "starttls")
    assert starttls.firstChildElement().name == "required"
    assert (proceed.uri, proceed.name) == (NS_TLS, "proceed")

    # After TLS: new headers, empty features.
    root, children, _ = parseDocument(p.sent[p.i][1])
    assert (root["from"], root["to"]) == (ROMEO, JULIET) and children == []
    root, children, _ = parseDocument(p.sent[p.r][1])
    assert [(c.uri, c.name, list(c.elements())) for c in children] == [
        (NS_STREAMS, "features", [])]

    # Stanzas both ways.
    message = domish.Element(("jabber:client", "message"))
    message["to"] = JULIET
    message.addElement("body", content="M'lady <3")
    p.run(p.i, p.i.sendStanza(message))
    got = p.events[p.r][-1]
    assert isinstance(got, Stanza) and str(got.element.body) == "M'lady <3"
    assert got.element.uri == "jabber:client" and got.element["to"] == JULIET
    iq = domish.Element((None, "iq"))
    iq["type"], iq["id"], iq["from"] = "get", "q1", JULIET + "/balcony"
    iq.addElement(("urn:xmpp:ping", "ping"))
    p.run(p.r, p.r.sendStanza(iq))
    got = p.events[p.i][-1]
    assert isinstance(got, Stanza) and got.element["id"] == "q1"
    assert got.element.ping.uri == "urn:xmpp:ping"

    # Closing, XEP-0246 section 5: each side sends </stream:stream> once.
    p.run(p.i, p.i.close())
    assert p.events[p.r][-1] == Closed() and p.events[p.i][-1] == Closed()
    assert p.sent[p.i][1].endswith(b"</stream:stream>")
    assert p.sent[p.r][1].endswith(b"</stream:stream>")
    assert p.sent[p.r][1].count(b"</stream:stream>") == 1
    assert p.i.state == p.r.state == "closed"
    assert p.i.connectionLost() == [] and p.i.close() == []


@pytest.mark.parametrize("chunk", [None, 1])
def test_bytes_mode(chunk):
    p = Pair(MODE_BYTES, MODE_BYTES, chunk=chunk).start()
    assert p.events[p.i] == [StartTLS("client"), Established(MODE_BYTES)]
    assert p.events[p.r] == [StartTLS("server"), Established(MODE_BYTES)]
    _, children, _ = parseDocument(p.sent[p.r][1])
    assert [(c.uri, c.name) for c in children] == [(NS_STREAMS, "features")]
    bytes_ = children[0].firstChildElement()
    assert (bytes_.uri, bytes_.name) == (NS_BYTES, "bytes")
    assert bytes_.firstChildElement().name == "required"
    assert p.sent[p.i][1].endswith(b"<bytes xmlns='%s'/>" % NS_BYTES.encode())
    # From here the machine hands raw bytes through, '<' or not.
    assert p.r.dataReceived(b"</stream:stream>\x00") == [Data(b"</stream:stream>\x00")]
    assert p.i.dataReceived(b"") == []
    assert p.i.close() == [Closed()]
    assert p.r.connectionLost() == [Closed()]


def test_bytes_that_follow_the_request_in_one_read():
    r = E2EStream(RESPONDER, JULIET, ROMEO, MODE_BYTES)
    r.start()
    r.dataReceived(HEADER_FROM_ROMEO)
    r.dataReceived(b"<starttls xmlns='%s'/>" % NS_TLS.encode())
    r.tlsEstablished()
    r.dataReceived(HEADER_FROM_ROMEO)
    out = r.dataReceived(b"<bytes xmlns='%s'/>raw <not xml> \xff" % NS_BYTES.encode())
    assert out == [Established(MODE_BYTES, b"raw <not xml> \xff")]


def test_xep0246_example_headers_and_xep0247_full_jids():
    # XEP-0246 section 2, verbatim JIDs.
    r = E2EStream(RESPONDER, "juliet@pronto", "romeo@forza")
    r.start()
    out = r.dataReceived(b"""<stream:stream
     xmlns='jabber:client'
     xmlns:stream='http://etherx.jabber.org/streams'
     from='romeo@forza'
     to='juliet@pronto'
     version='1.0'>""")
    assert [type(o) for o in out] == [Send, Send] and r.state == "starttls"
    # XEP-0247's example: full JIDs, with an id; compared as bare JIDs.
    i = E2EStream(INITIATOR, "romeo@montague.lit", "juliet@capulet.lit")
    i.start()
    assert i.dataReceived(b"""<stream:stream xmlns='jabber:client'
      xmlns:stream='http://etherx.jabber.org/streams' from='juliet@capulet.lit/balcony'
      id='hs91gh1836d8s717' to='romeo@montague.lit/orchard' version='1.0'>""") == []
    assert i.dataReceived(STARTTLS_FEATURES.replace(b"<required/>", b"")) == [
        Send(b"<starttls xmlns='%s'/>" % NS_TLS.encode())]


# --- refusals --------------------------------------------------------------


def initiator(mode=MODE_XMPP):
    i = E2EStream(INITIATOR, ROMEO, JULIET, mode)
    i.start()
    return i


def responder(mode=MODE_XMPP):
    r = E2EStream(RESPONDER, JULIET, ROMEO, mode, newId=lambda: "s1")
    r.start()
    return r


def securedInitiator(mode=MODE_XMPP):
    i = initiator(mode)
    i.dataReceived(HEADER_FROM_JULIET + STARTTLS_FEATURES)
    assert i.dataReceived(b"<proceed xmlns='%s'/>" % NS_TLS.encode()) == [StartTLS("client")]
    i.tlsEstablished()
    i.dataReceived(HEADER_FROM_JULIET)
    return i


def securedResponder(mode=MODE_XMPP):
    r = responder(mode)
    r.dataReceived(HEADER_FROM_ROMEO)
    r.dataReceived(b"<starttls xmlns='%s'/>" % NS_TLS.encode())
    r.tlsEstablished()
    r.dataReceived(HEADER_FROM_ROMEO)
    return r


def assertRefused(out, condition, *words):
    assert isinstance(out[-1], Failed), out
    for word in words:
        assert word in out[-1].reason
    sent = b"".join(o.data for o in out if isinstance(o, Send))
    if condition is None:
        assert sent == b""
        return out[-1].reason
    assert sent.endswith(b"</stream:stream>")
    error = sent[sent.index(b"<stream:error"):]
    _, children, ended = parseDocument(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='%s'>" % NS_STREAMS.encode()
        + error)
    assert ended
    conditions = [c.name for c in children[0].elements() if c.uri == NS_STREAM_ERRORS]
    assert conditions[0] == condition
    return out[-1].reason


def test_peer_offers_no_starttls():
    i = initiator()
    out = i.dataReceived(HEADER_FROM_JULIET + b"<stream:features/>")
    assertRefused(out, "policy-violation", "does not offer STARTTLS")
    assert i.state == "failed"
    assert i.dataReceived(b"<more/>") == []


def test_peer_refuses_starttls():
    i = initiator()
    i.dataReceived(HEADER_FROM_JULIET + STARTTLS_FEATURES)
    out = i.dataReceived(b"<failure xmlns='%s'/>" % NS_TLS.encode())
    assert out == [Failed("the peer refused STARTTLS (<failure/>)")]


@pytest.mark.parametrize("header, condition, words", [
    (HEADER_FROM_JULIET.replace(JULIET.encode(), b"mallory@evil.lit"), "invalid-from",
     ["mallory@evil.lit", JULIET]),
    (HEADER_FROM_JULIET.replace(b"from='%s'" % JULIET.encode(), b""), "invalid-from",
     ["None"]),
    (HEADER_FROM_JULIET.replace(b"to='%s'" % ROMEO.encode(), b"to='tybalt@capulet.lit'"),
     "host-unknown", ["tybalt"]),
    (HEADER_FROM_JULIET.replace(b" version='1.0'", b""), "unsupported-version",
     ["version"]),
    (HEADER_FROM_JULIET.replace(b"jabber:client", b"jabber:server"), "invalid-namespace",
     ["jabber:server"]),
    (b"<stream xmlns='jabber:client' version='1.0' from='%s'>" % JULIET.encode(),
     "invalid-namespace", ["etherx"]),
])
def test_bad_headers_refused(header, condition, words):
    assertRefused(initiator().dataReceived(header), condition, *words)


def test_wrong_from_refused_by_responder_with_its_own_header_first():
    r = responder()
    out = r.dataReceived(HEADER_FROM_ROMEO.replace(ROMEO.encode(), b"paris@verona.lit"))
    assert out[0].data.startswith(b"<?xml version='1.0'?><stream:stream")
    assertRefused(out, "invalid-from", "paris@verona.lit", ROMEO)


def test_wrong_from_after_tls_refused():
    i = initiator()
    i.dataReceived(HEADER_FROM_JULIET + STARTTLS_FEATURES)
    i.dataReceived(b"<proceed xmlns='%s'/>" % NS_TLS.encode())
    i.tlsEstablished()
    out = i.dataReceived(HEADER_FROM_JULIET.replace(JULIET.encode(), b"nurse@capulet.lit"))
    assertRefused(out, "invalid-from", "nurse@capulet.lit")


@pytest.mark.parametrize("data", [
    b"<stream:stream xmlns='jabber:client' <<",
    HEADER_FROM_ROMEO + b"<a></b>",
    HEADER_FROM_ROMEO + b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/\xff>",
])
def test_malformed_xml(data):
    assertRefused(responder().dataReceived(data), "not-well-formed", "malformed XML")


def test_malformed_xml_after_header():
    r = responder()
    r.dataReceived(HEADER_FROM_ROMEO)
    assertRefused(r.dataReceived(b"<starttls xmlns='%s'></proceed>" % NS_TLS.encode()),
                  "not-well-formed")


@pytest.mark.parametrize("data", [
    b"<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY lol 'lol'>]>",
    HEADER_FROM_ROMEO + b"<!-- hi -->",
    HEADER_FROM_ROMEO + b"<?php echo 1; ?>",
])
def test_restricted_xml(data):
    assertRefused(responder().dataReceived(data), "restricted-xml", "DTD")


def test_stanza_before_tls_refused_by_responder():
    r = responder()
    r.dataReceived(HEADER_FROM_ROMEO)
    out = r.dataReceived(b"<message to='%s'><body>in clear</body></message>"
                         % JULIET.encode())
    assertRefused(out, "policy-violation", "<message/> stanza before TLS")


def test_stanza_before_tls_refused_by_initiator():
    i = initiator()
    out = i.dataReceived(HEADER_FROM_JULIET + b"<iq type='get' id='1'/>")
    assertRefused(out, "policy-violation", "<iq/> stanza before TLS")
    i = initiator()
    i.dataReceived(HEADER_FROM_JULIET + STARTTLS_FEATURES)
    assertRefused(i.dataReceived(b"<presence/>"), "policy-violation", "<presence/>")


def test_other_element_instead_of_starttls():
    r = responder()
    r.dataReceived(HEADER_FROM_ROMEO)
    out = r.dataReceived(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    assertRefused(out, "policy-violation", "xmpp-sasl", "<starttls/>")


def test_data_after_proceed_or_starttls_in_the_same_read():
    i = initiator()
    i.dataReceived(HEADER_FROM_JULIET + STARTTLS_FEATURES)
    out = i.dataReceived(b"<proceed xmlns='%s'/>\x16\x03\x01" % NS_TLS.encode())
    assert out[0] == StartTLS("client")
    assertRefused(out[1:], None, "after <proceed/>")
    r = responder()
    r.dataReceived(HEADER_FROM_ROMEO)
    out = r.dataReceived(b"<starttls xmlns='%s'/>junk" % NS_TLS.encode())
    assert out[:2] == [Send(b"<proceed xmlns='%s'/>" % NS_TLS.encode()), StartTLS("server")]
    assertRefused(out[2:], None, "after <starttls/>")


def test_data_while_tls_handshake_runs_is_held_then_bounded():
    r = responder()
    r.dataReceived(HEADER_FROM_ROMEO)
    r.dataReceived(b"<starttls xmlns='%s'/>" % NS_TLS.encode())
    assert r.dataReceived(HEADER_FROM_ROMEO) == []
    out = r.tlsEstablished()
    assert [type(o) for o in out] == [Send, Send, Established]
    r = responder()
    r.dataReceived(HEADER_FROM_ROMEO)
    r.dataReceived(b"<starttls xmlns='%s'/>" % NS_TLS.encode())
    assertRefused(r.dataReceived(b"x" * 20000), None, "before the TLS handshake ended")


def test_tls_failure_reported():
    i = initiator()
    i.dataReceived(HEADER_FROM_JULIET + STARTTLS_FEATURES)
    i.dataReceived(b"<proceed xmlns='%s'/>" % NS_TLS.encode())
    assert i.tlsFailed("fingerprint mismatch") == [Failed("fingerprint mismatch")]
    assert i.state == "failed"


def test_peer_stream_error():
    i = initiator()
    out = i.dataReceived(
        HEADER_FROM_JULIET + b"<stream:error><policy-violation xmlns='%s'/>"
        b"<text xmlns='%s'>no thanks</text></stream:error>"
        % (NS_STREAM_ERRORS.encode(), NS_STREAM_ERRORS.encode()))
    assert out == [Send(b"</stream:stream>"), Failed(
        "the peer ended the e2e stream with a stream error: policy-violation (no thanks)")]


def test_peer_closes_during_negotiation():
    i = initiator()
    out = i.dataReceived(HEADER_FROM_JULIET + b"</stream:stream>")
    assert out == [Send(b"</stream:stream>"), Failed(
        "the peer closed the stream during e2e negotiation (waiting for <stream:features/>)")]


def test_mode_mismatch_bytes_wanted_xmpp_offered():
    i = initiator(MODE_BYTES)
    i.dataReceived(HEADER_FROM_JULIET + STARTTLS_FEATURES)
    i.dataReceived(b"<proceed xmlns='%s'/>" % NS_TLS.encode())
    i.tlsEstablished()
    out = i.dataReceived(HEADER_FROM_JULIET + b"<stream:features/>")
    assertRefused(out, "unsupported-feature", "does not offer raw bytes mode")


def test_mode_mismatch_xmpp_wanted_bytes_required():
    p = Pair(MODE_XMPP, MODE_BYTES).start()
    reason = p.events[p.i][-1].reason
    assert "requires raw bytes mode" in reason
    assert isinstance(p.events[p.r][-1], Failed)  # it got the stream error
    assert "unsupported-feature" in p.events[p.r][-1].reason


def test_bytes_responder_gets_a_stanza_instead():
    r = securedResponder(MODE_BYTES)
    assertRefused(r.dataReceived(b"<message/>"), "unsupported-feature",
                  "instead of asking for raw bytes mode")


def test_stanza_with_wrong_from_after_tls():
    i = securedInitiator()
    i.dataReceived(b"<stream:features/>")
    ok = i.dataReceived(b"<message from='%s/balcony'><body>hi</body></message>"
                        % JULIET.encode())
    assert isinstance(ok[0], Stanza)
    out = i.dataReceived(b"<message from='tybalt@capulet.lit'><body>hi</body></message>")
    assertRefused(out, "invalid-from", "tybalt@capulet.lit")


def test_non_stanza_after_tls():
    r = securedResponder()
    out = r.dataReceived(b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>")
    assertRefused(out, "unsupported-stanza-type", "xmpp-bind")


def test_oversized_elements():
    r = responder()
    r.dataReceived(HEADER_FROM_ROMEO)
    big = b"<starttls xmlns='%s'>" % NS_TLS.encode() + b"a" * 17000
    assertRefused(r.dataReceived(big), "policy-violation", "larger than 16384")
    r = E2EStream(RESPONDER, JULIET, ROMEO, maxStanzaBytes=1000)
    r.start()
    r.dataReceived(HEADER_FROM_ROMEO)
    r.dataReceived(b"<starttls xmlns='%s'/>" % NS_TLS.encode())
    r.tlsEstablished()
    r.dataReceived(HEADER_FROM_ROMEO)
    fine = r.dataReceived(b"<message><body>%s</body></message>" % (b"a" * 900))
    assert isinstance(fine[0], Stanza)
    out = r.dataReceived(b"<message><body>" + b"a" * 600)
    assert out == []
    assertRefused(r.dataReceived(b"a" * 600), "policy-violation", "larger than 1000")


def test_connection_lost():
    assert initiator().connectionLost() == [Failed(
        "the bytestream ended during e2e negotiation (waiting for the peer's stream header)")]
    r = securedResponder()
    assert r.connectionLost() == [Failed("the bytestream ended without </stream:stream>")]
    r = securedResponder()
    assert r.close() == [Send(b"</stream:stream>")]
    assert r.sendStanza  # still an object; sending now is refused:
    with pytest.raises(BadStanza):
        r.sendStanza(domish.Element((None, "message")))
    # stanzas the peer sent before seeing our close still arrive
    assert isinstance(r.dataReceived(b"<message/>")[0], Stanza)
    assert r.connectionLost() == [Closed()]


def test_close_during_negotiation():
    i = initiator()
    assert i.close() == [Send(b"</stream:stream>"), Failed(
        "closed locally before the e2e stream was established")]


def test_send_stanza_refusals():
    with pytest.raises(BadStanza):
        initiator().sendStanza(domish.Element((None, "message")))
    r = securedResponder()
    with pytest.raises(BadStanza) as e:
        r.sendStanza(domish.Element(("urn:x", "message")))
    assert "not a stanza" in str(e.value)
    with pytest.raises(BadStanza):
        r.sendStanza(domish.Element(("jabber:client", "starttls")))
    spoof = domish.Element(("jabber:client", "message"))
    spoof["from"] = "nurse@capulet.lit"
    with pytest.raises(BadStanza) as e:
        r.sendStanza(spoof)
    assert "nurse@capulet.lit" in str(e.value)
    assert r.state == "xmpp"
    # in the stream's default namespace, no redundant xmlns
    ok = domish.Element(("jabber:client", "presence"))
    assert r.sendStanza(ok) == [Send(b"<presence/>")]


def test_constructor_and_call_order():
    with pytest.raises(ValueError):
        E2EStream("both", ROMEO, JULIET)
    with pytest.raises(ValueError):
        E2EStream(INITIATOR, ROMEO, JULIET, "files")
    m = E2EStream(INITIATOR, ROMEO, JULIET)
    with pytest.raises(RuntimeError):
        m.dataReceived(b"x")
    with pytest.raises(RuntimeError):
        m.tlsEstablished()
    m.start()
    with pytest.raises(RuntimeError):
        m.start()


def test_nothing_after_the_end_of_the_stream_counts():
    r = securedResponder()
    out = r.dataReceived(b"<message/></stream:stream>junk<<")
    assert [type(o) for o in out] == [Stanza, Send, Closed]
    r = securedResponder()
    out = r.dataReceived(b"<message/><stream:error><conflict xmlns='%s'/></stream:error>"
                         b"<message/><iq/>" % NS_STREAM_ERRORS.encode())
    assert [type(o) for o in out] == [Stanza, Send, Failed]
    assert "conflict" in out[-1].reason


def test_peer_supplied_text_is_cut_short_in_reasons():
    i = initiator()
    out = i.dataReceived(HEADER_FROM_JULIET.replace(JULIET.encode(), b"x" * 3000 + b"@a.lit"))
    assert "x" * 70 + "..." in out[-1].reason and len(out[-1].reason) < 200
    i = initiator()
    out = i.dataReceived(HEADER_FROM_JULIET + b"<stream:error><conflict xmlns='%s'/>"
                         b"<text xmlns='%s'>%s</text></stream:error>"
                         % (NS_STREAM_ERRORS.encode(), NS_STREAM_ERRORS.encode(), b"y" * 5000))
    assert len(out[-1].reason) < 300 and out[-1].reason.endswith("...)")
