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
