"""
The examples of the Jingle XEPs, as test data, and a semantic XML comparison.

``tests/unit/data/xep/`` holds copies of XEP-0166, 0234, 0260 and 0261 (the
XSF's XML sources) and of the XEP-0261 text in seed 004 (its "Listing N"
code blocks, some split across a page break).  :func:`examples` and
:func:`seedListings` return their examples in document order, so a test can
walk *every* one and prove it handled it.

:func:`canonical` is what "semantically equal" means here: namespace and
name, attributes (namespace declarations are not attributes), text with
surrounding whitespace removed, and children compared as a multiset -- the
order of siblings carries no meaning in these schemas (``xs:all``, candidates
with explicit priorities, contents named by creator and name).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

from twisted.words.xish import domish

from tests.helpers import parseXml

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "xep")

_EXAMPLE = re.compile(
    r"<example caption=(['\"])(?P<caption>.*?)\1>\s*<!\[CDATA\[(?P<xml>.*?)\]\]>\s*</example>",
    re.S)


@dataclass(frozen=True)
class Example:
    number: int
    caption: str
    xml: str

    def stanza(self) -> domish.Element:
        return parseXml(self.xml.strip())


def examples(xep: str) -> List[Example]:
    """The ``<example/>`` blocks of ``xep-NNNN.xml``, numbered from 1."""
    with open(os.path.join(DATA, "xep-%s.xml" % xep), encoding="utf-8") as f:
        text = f.read()
    found = []
    for i, m in enumerate(_EXAMPLE.finditer(text), 1):
        caption = (m.group("caption").replace("&lt;", "<").replace("&gt;", ">"))
        found.append(Example(i, caption, m.group("xml")))
    return found


_LISTING = re.compile(r"^Listing (\d+): (.*)$")


def seedListings() -> Dict[int, Tuple[str, str]]:
    """
    ``{n: (title, xml)}`` for the seed's "Listing n" blocks.  A listing is
    every fenced block after its title up to the next listing or heading:
    the text was made from a paginated document, so a page break can split
    one listing into two fences with a footnote between them.
    """
    with open(os.path.join(DATA, "xep-0261-seed.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    listings: Dict[int, Tuple[str, str]] = {}
    current = None
    inFence = False
    parts: List[str] = []
    title = ""

    def flush():
        if current is not None:
            listings[current] = (title, "\n".join(parts))

    for line in lines:
        if line.startswith("```"):
            inFence = not inFence
            continue
        if inFence:
            if current is not None:
                parts.append(line)
            continue
        m = _LISTING.match(line)
        if m:
            flush()
            current, title, parts = int(m.group(1)), m.group(2), []
        elif line.startswith("#"):
            flush()
            current = None
    flush()
    return listings


def _text(element: domish.Element) -> str:
    return "".join(c for c in element.children if isinstance(c, str)).strip()


def canonical(element: domish.Element):
    """A hashable, order-insensitive form of ``element`` (see module doc)."""
    attributes = tuple(sorted((str(k), v) for k, v in element.attributes.items()))
    children = tuple(sorted((canonical(c) for c in element.elements()), key=repr))
    return (element.uri, element.name, attributes, _text(element), children)


def child(stanza: domish.Element, uri: str, name: str) -> domish.Element:
    found = [c for c in stanza.elements(uri, name)]
    assert len(found) == 1, (uri, name, stanza.toXml())
    return found[0]


def reparse(element: domish.Element) -> domish.Element:
    """Serialise and parse again: what the peer would see."""
    return parseXml(element.toXml())


# --- walking every example --------------------------------------------------

#: Features a disco#info example may list: ours, and the RTP ones of the
#: XEP-0166 example (an application we do not speak).
def _knownFeatures():
    from bytestreamd import ns
    return {ns.NS_JINGLE, ns.NS_JINGLE_IBB, ns.NS_JINGLE_S5B, ns.NS_JINGLE_FT,
            "urn:xmpp:jingle:apps:rtp:1", "urn:xmpp:jingle:apps:rtp:audio",
            "urn:xmpp:jingle:apps:rtp:video"}


def checkExample(stanza: domish.Element) -> str:
    """
    Check one example stanza with the codecs and say what it was:
    ``jingle`` (parsed, serialised again, semantically equal, and equal as a
    value after a second parse), ``ack``, ``error``, ``jingle-error``,
    ``disco``, ``ibb`` or ``s5b-query``.  Raises AssertionError otherwise.
    """
    from bytestreamd import ns
    from bytestreamd.wire import ibb, jingle, s5b

    kids = [c for c in stanza.elements()]
    type = stanza.getAttribute("type")
    if stanza.name == "iq" and type == "result" and not kids:
        return "ack"
    assert len(kids) == 1, stanza.toXml()
    payload = kids[0]
    if (payload.uri, payload.name) == (ns.NS_JINGLE, "jingle"):
        value = jingle.Jingle.fromElement(payload)
        produced = reparse(value.toElement())
        assert canonical(produced) == canonical(payload), (
            produced.toXml(), payload.toXml())
        assert jingle.Jingle.fromElement(produced) == value
        return "jingle"
    if type == "error":
        condition = jingle.jingleErrorCondition(stanza)
        if condition is None:
            return "error"
        produced = reparse(jingle.jingleError(condition).getElement())
        # Twisted adds the legacy (pre-RFC 3920) 'code'; the XEP has none.
        del produced.attributes["code"]
        assert canonical(produced) == canonical(payload), (
            produced.toXml(), payload.toXml())
        return "jingle-error"
    if payload.uri == ns.NS_DISCO_INFO:
        features = {f["var"] for f in payload.elements(ns.NS_DISCO_INFO, "feature")}
        assert features <= _knownFeatures(), features
        return "disco"
    if payload.uri == ns.NS_IBB:
        codec = {"open": ibb.Open, "data": ibb.Data, "close": ibb.Close}[payload.name]
        produced = reparse(codec.fromElement(payload).toElement())
        if payload.name != "data":  # data text is re-wrapped base64
            assert canonical(produced) == canonical(payload), produced.toXml()
        return "ibb"
    if payload.uri == ns.NS_S5B:
        produced = reparse(s5b.Activate.fromElement(payload).toElement())
        assert canonical(produced) == canonical(payload), produced.toXml()
        return "s5b-query"
    raise AssertionError("unexpected example %s" % stanza.toXml())


def census(stanzas) -> Dict[str, int]:
    """How many examples of each kind :func:`checkExample` found."""
    counts: Dict[str, int] = {}
    for stanza in stanzas:
        kind = checkExample(stanza)
        counts[kind] = counts.get(kind, 0) + 1
    return counts
