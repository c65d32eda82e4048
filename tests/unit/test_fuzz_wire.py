"""
Property tests (hypothesis) for every wire codec in bytestreamd.wire (ibb,
s5b, si): values survive toElement -> XML text -> a real parser ->
fromElement; arbitrary elements (any names, namespaces, attributes and
text, characters XML cannot carry included) and arbitrary bytes only ever
raise the codec's own error; and whatever a codec accepted serialises to XML
a server accepts (issue 8, "Fuzzing").
"""

from __future__ import annotations

import string
from typing import Any, Callable, List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from bytestreamd import ns
from bytestreamd.text import isXMLText
from bytestreamd.wire import end, ibb, s5b, si

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

NAMESPACES = [ns.NS_END, ns.NS_IBB, ns.NS_S5B, ns.NS_SI, ns.NS_FEATURE_NEG, ns.NS_DATA,
              ns.NS_SI_MULTIPLE, ns.NS_SI_FILE_TRANSFER, ns.NS_LINK_PROFILE, "urn:other"]
NAMES = ["open", "data", "close", "query", "streamhost", "streamhost-used", "activate",
         "si", "feature", "x", "field", "option", "value", "file", "desc", "range",
         "link", "si-multiple", "item", "eof", "end"]
ATTRIBUTES = ["sid", "seq", "block-size", "stanza", "jid", "host", "port", "mode",
              "dstaddr", "id", "profile", "mime-type", "name", "size", "date", "hash",
              "offset", "length", "service", "type", "var", "label", "sent",
              "received", "status"]

#: Any text, surrogates and controls included: domish builds what it is given.
ANY = st.text(max_size=12)
NUMERIC = st.one_of(st.integers(-5, 70000).map(str), st.sampled_from(
    ["", "+1", " 1", "1_0", "\u0661", "65535", "65536", "0", "4096", "tcp", "udp", "iq",
     "message", "list-single", "form", "submit", "stream-method", "done", "closed",
     "failed", "1" * 21]))
VALUE = st.one_of(ANY, NUMERIC, st.sampled_from(
    NAMESPACES + ["proxy.example.org", "bob@example.org/x", "bob@[::1]/x", "a b", "s1"]))


def _element(children) -> st.SearchStrategy:
    def build(uri, name, attrs, kids):
        element = domish.Element((uri, name))
        for key, value in attrs.items():
            element[key] = value
        for kid in kids:
            if isinstance(kid, str):
                element.addContent(kid)
            else:
                element.addChild(kid)
        return element
    return st.builds(build, st.sampled_from(NAMESPACES), st.sampled_from(NAMES),
                     st.dictionaries(st.sampled_from(ATTRIBUTES), VALUE, max_size=5),
                     st.lists(children, max_size=4))


ELEMENTS = st.recursive(_element(st.just("x") | ANY | NUMERIC),
                        lambda inner: _element(inner | ANY), max_leaves=12)

#: (parse, its own error) for every entry point that reads a peer's element.
PARSERS: List[Tuple[Callable[[domish.Element], Any], type]] = [
    (end.parse, end.MalformedEnd),
    (end.EOF.fromElement, end.MalformedEnd),
    (end.End.fromElement, end.MalformedEnd),
    (ibb.Open.fromElement, ibb.MalformedIBB),
    (ibb.Data.fromElement, ibb.MalformedIBB),
    (ibb.Close.fromElement, ibb.MalformedIBB),
    (s5b.StreamHost.fromElement, s5b.MalformedS5B),
    (s5b.Query.fromElement, s5b.MalformedS5B),
    (s5b.StreamHostUsed.fromElement, s5b.MalformedS5B),
    (s5b.Activate.fromElement, s5b.MalformedS5B),
    (s5b.AddressRequest.fromElement, s5b.MalformedS5B),
    (s5b.AddressAnswer.fromElement, s5b.MalformedS5B),
    (si.SIOffer.fromElement, si.MalformedSI),
    (si.SIAccept.fromElement, si.MalformedSI),
    (si.LinkProfile.fromElement, si.MalformedSI),
    (si.FileProfile.fromElement, si.MalformedSI),
    (si.streamMethodsOffered, si.MalformedSI),
    (si.streamMethodChosen, si.MalformedSI),
    (lambda e: si.answerHeaders(ns.NS_SI_FILE_TRANSFER, e), si.MalformedSI),
    (lambda e: si.headersFromPayload(ns.NS_LINK_PROFILE, e), si.MalformedSI),
    (lambda e: si.headersFromPayload(ns.NS_SI_FILE_TRANSFER, e), si.MalformedSI),
]


def reparse(element: domish.Element) -> domish.Element:
    """Serialise ``element`` and parse it back with expat, as the peer will."""
    found: List[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<r xmlns='jabber:client'>" + element.toXml().encode("utf-8") + b"</r>")
    assert len(found) == 1
    return found[0]


def _serialisable(value: Any) -> None:
    """A value a codec accepted must go out as XML a server accepts."""
    if isinstance(value, (end.EOF, end.End, ibb.Open, ibb.Data, ibb.Close, s5b.StreamHost, s5b.Query,
                          s5b.StreamHostUsed, s5b.Activate, s5b.AddressRequest,
                          s5b.AddressAnswer, si.SIOffer, si.SIAccept, si.LinkProfile,
                          si.FileProfile)):
        if isinstance(value, ibb.Open) and value.blockSize > ibb.MAX_BLOCK_SIZE:
            return  # parsed only to be answered resource-constraint
        if isinstance(value, si.SIAccept) and not value.chosen:
            return
        reparse(value.toElement())
    elif isinstance(value, dict):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


@FAST
@given(ELEMENTS)
def test_arbitraryElementsOnlyRaiseTheCodecsError(element):
    for parse, own in PARSERS:
        try:
            value = parse(element)
        except own:
            continue
        _serialisable(value)


def _templates() -> List[domish.Element]:
    """One valid element of every kind, for mutation."""
    peer = JID("proxy.example.org")
    hosts = [s5b.StreamHost(peer, "192.0.2.1", 7777)]
    filePayload = si.payloadFromHeaders(ns.NS_SI_FILE_TRANSFER, {
        "name": "f.txt", "size": "10", "date": "2026-01-01T00:00:00Z",
        "hash": "0" * 32, "desc": "d", "range": "true"})
    return [
        end.EOF("s1", 5).toElement(), end.End("s1", 5, 3, "failed", "why").toElement(),
        ibb.Open("s1", 4096).toElement(), ibb.Data("s1", 3, b"abc").toElement(),
        ibb.Close("s1").toElement(), s5b.Query("s1", hosts, dstaddr="x").toElement(),
        s5b.StreamHostUsed(peer, "s1").toElement(), s5b.Activate("s1", peer).toElement(),
        s5b.AddressAnswer(hosts).toElement(), s5b.AddressRequest().toElement(),
        si.SIOffer("s1", ns.NS_LINK_PROFILE, [ns.NS_IBB, ns.NS_S5B], "text/plain", True,
                   si.LinkProfile("ssh").toElement()).toElement(),
        si.SIOffer("s1", ns.NS_SI_FILE_TRANSFER, [ns.NS_IBB], None, False,
                   filePayload).toElement(),
        si.SIAccept(method=ns.NS_IBB).toElement(),
        si.SIAccept(methods=[ns.NS_S5B, ns.NS_IBB]).toElement(),
        si.fileRangeAnswer(5, 10), filePayload, si.LinkProfile("ssh").toElement(),
        si.streamMethodOffer([ns.NS_IBB]), si.streamMethodChoice(ns.NS_IBB),
    ]


def _walk(element: domish.Element) -> List[domish.Element]:
    found = [element]
    for child in element.elements():
        found.extend(_walk(child))
    return found


@st.composite
def mutated(draw) -> domish.Element:
    """A valid element with one to three attributes or texts set to anything."""
    element = reparse(draw(st.sampled_from(_templates())))
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(_walk(element)))
        if draw(st.booleans()):
            keys = sorted(set(target.attributes) | set(ATTRIBUTES))
            target[draw(st.sampled_from(keys))] = draw(VALUE)
        else:
            target.children = [draw(VALUE)] if not list(target.elements()) else (
                target.children + [draw(VALUE)])
    return element


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutatedElementsOnlyRaiseTheCodecsError(element):
    for parse, own in PARSERS:
        try:
            value = parse(element)
        except own:
            continue
        _serialisable(value)


@FAST
@given(st.binary(max_size=120))
def test_arbitraryBytesOnlyRaiseTheCodecsError(data):
    """Bytes from the network: the XML parser's error, or the codecs' own."""
    found: List[domish.Element] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    try:
        stream.parse(b"<r xmlns='%s'>" % ns.NS_IBB.encode() + data + b"</r>")
    except domish.ParserError:
        return
    for element in found:
        for parse, own in PARSERS:
            try:
                _serialisable(parse(element))
            except own:
                pass


@FAST
@given(st.text(max_size=40))
def test_base64OnlyRaisesMalformedIBB(text):
    try:
        ibb.decodeBase64(text)
    except ibb.MalformedIBB:
        pass


# --- round trips -------------------------------------------------------------

SID = st.text(string.ascii_letters + string.digits + "-_.:", min_size=1, max_size=20)
XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                 blacklist_characters="\ufffe\uffff"), max_size=20)
NONEMPTY_XML = XML_TEXT.filter(lambda t: t.strip() == t and t != "")
JIDS = st.builds(lambda u, d, r: JID(tuple=(u, d, r)),
                 st.one_of(st.none(), st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)),
                 st.sampled_from(["example.org", "proxy.example.net", "127.0.0.1"]),
                 st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)))


@FAST
@given(SID, st.integers(0, 65535), st.binary(max_size=300))
def test_ibbDataRoundTrip(sid, seq, payload):
    value = ibb.Data(sid, seq, payload)
    assert ibb.Data.fromElement(reparse(value.toElement())) == value
    assert ibb.decodeBase64(ibb.encodeBase64(payload)) == payload


@FAST
@given(SID, st.integers(1, 65535), st.sampled_from(ibb.STANZAS))
def test_ibbOpenCloseRoundTrip(sid, blockSize, stanza):
    value = ibb.Open(sid, blockSize, stanza)
    assert ibb.Open.fromElement(reparse(value.toElement())) == value
    assert ibb.Close.fromElement(reparse(ibb.Close(sid).toElement())) == ibb.Close(sid)


HOSTS = st.lists(st.builds(s5b.StreamHost, JIDS, NONEMPTY_XML, st.integers(1, 65535)),
                 min_size=1, max_size=3)


@FAST
@given(NONEMPTY_XML, HOSTS, st.sampled_from([s5b.MODE_TCP, s5b.MODE_UDP]),
       st.one_of(st.none(), XML_TEXT))
def test_s5bQueryRoundTrip(sid, hosts, mode, dstaddr):
    value = s5b.Query(sid, hosts, mode, dstaddr)
    assert s5b.Query.fromElement(reparse(value.toElement())) == value
    answer = s5b.AddressAnswer(hosts)
    assert s5b.AddressAnswer.fromElement(reparse(answer.toElement())) == answer


@FAST
@given(NONEMPTY_XML, JIDS)
def test_s5bUsedAndActivateRoundTrip(sid, jid):
    used = s5b.StreamHostUsed(jid, sid)
    assert s5b.StreamHostUsed.fromElement(reparse(used.toElement())) == used
    activate = s5b.Activate(sid, jid)
    assert s5b.Activate.fromElement(reparse(activate.toElement())) == activate


METHODS = st.lists(NONEMPTY_XML, min_size=1, max_size=4, unique=True)


@FAST
@given(NONEMPTY_XML.filter(lambda t: len(t) <= si.MAX_SID_LENGTH), METHODS,
       st.one_of(st.none(), NONEMPTY_XML), st.booleans(),
       st.one_of(st.none(), NONEMPTY_XML.filter(lambda s: not any(c.isspace() for c in s))))
def test_siOfferRoundTrip(sid, methods, mimeType, multiple, service):
    payload = si.LinkProfile(service).toElement()
    value = si.SIOffer(sid, ns.NS_LINK_PROFILE, methods, mimeType, multiple, payload)
    back = si.SIOffer.fromElement(reparse(value.toElement()))
    assert (back.id, back.profile, back.methods, back.mimeType or None, back.multiple) == (
        sid, ns.NS_LINK_PROFILE, methods, mimeType, multiple)
    assert si.LinkProfile.fromElement(back.payload) == si.LinkProfile(service)


@FAST
@given(METHODS, st.booleans())
def test_siAcceptRoundTrip(methods, multiple):
    value = si.SIAccept(methods=methods) if multiple else si.SIAccept(method=methods[0])
    back = si.SIAccept.fromElement(reparse(value.toElement()))
    assert back.chosen == value.chosen


@FAST
@given(NONEMPTY_XML, st.integers(0, 2 ** 63).map(str), st.one_of(st.none(), XML_TEXT),
       st.one_of(st.none(), st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
       st.one_of(st.none(), XML_TEXT.filter(lambda t: t.strip() == t)), st.booleans())
def test_fileProfileRoundTrip(name, size, date, hash, desc, ranged):
    headers = {"name": name, "size": size, "date": date, "hash": hash, "desc": desc,
               "range": "true" if ranged else None}
    expected = {k: v for k, v in headers.items() if v is not None}
    payload = si.payloadFromHeaders(ns.NS_SI_FILE_TRANSFER, headers)
    assert si.headersFromPayload(ns.NS_SI_FILE_TRANSFER, reparse(payload)) == expected


@FAST
@given(NONEMPTY_XML.filter(lambda t: len(t) <= 256), st.integers(0, 10 ** 20 - 1),
       st.integers(0, 10 ** 20 - 1), st.sampled_from(sorted(end.STATUSES)),
       st.one_of(st.none(), XML_TEXT.filter(lambda t: t.strip() == t and t)))
def test_endRoundTrip(sid, sent, received, status, text):
    eof = end.EOF(sid, sent)
    assert end.parse(reparse(eof.toElement())) == eof
    value = end.End(sid, sent, received, status, text)
    assert end.parse(reparse(value.toElement())) == value


@FAST
@given(st.text(max_size=30))
def test_endTextIsAlwaysSendable(text):
    """A final word is repaired, never refused: it must always go out."""
    element = reparse(end.End("s1", 0, 0, "failed", text).toElement())
    back = end.End.fromElement(element)
    assert back.sid == "s1" and (back.text is None or isXMLText(back.text))
