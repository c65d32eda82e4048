"""
XEP-0247 Jingle XML Streams: the ``urn:xmpp:jingle:apps:xmlstream:0``
application description, as bytestreamd carries its e2e links in it.

XEP-0247's schema has an empty ``<description/>``; the e2e link (docs/e2e.rst)
needs three more things, each a child element in a namespace of its own so
that a XEP-0247 implementation that knows none of them still reads an XML
stream offer (XEP-0166 section 7: unknown children are ignored)::

    <description xmlns='urn:xmpp:jingle:apps:xmlstream:0'>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256'
                   setup='active'>02:1A:...:B2</fingerprint>
      <bytes xmlns='urn:x-bytestreamd:e2e:bytes:0'/>
      <link xmlns='urn:x-bytestreamd:jingle:link:0' service='backup'/>
    </description>

``<fingerprint/>``
    XEP-0320's element, the SHA-256 of the sender's certificate, binding the
    TLS of the stream to this signalling (:mod:`bytestreamd.e2e.wire`).  In
    session-initiate with ``setup='active'`` (or ``actpass``), in
    session-accept with the responder's certificate and ``setup='passive'``.
``<bytes/>``
    The mode: present, ``e2e=bytes`` (the link's raw bytes inside TLS after
    the stream's bytestreamd feature); absent, ``e2e=xmpp`` (a stream of
    stanzas), which is what a plain XEP-0247 peer means.  The answer
    repeats it.
``<link service='NAME'/>``
    The responder's ``[services]`` entry the link is for, the same name and
    rule as bytestreamd's own link description (:mod:`.jingle_link`);
    absent, a link to no service.  Only in the offer.

:class:`XmlStreamDescription` is the value; ``e2e`` is ``None`` for an
XML stream offer without a fingerprint (XEP-0247's own example), which
the codec reads but bytestreamd's translator refuses: it makes no stream
without TLS bound to the signalling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from twisted.words.xish import domish

from bytestreamd.e2e.wire import E2EParams, Malformed
from bytestreamd.ns import NS_JINGLE_LINK, NS_JINGLE_XMLSTREAM
from bytestreamd.wire.jingle import MalformedJingle
from bytestreamd.wire.si import MalformedSI, checkServiceName


@dataclass(frozen=True)
class XmlStreamDescription:
    """The description of an ``xmlstream`` content (module docstring)."""

    namespace = NS_JINGLE_XMLSTREAM
    elementName = "description"

    #: The sender's fingerprint and the mode; None: no e2e field.
    e2e: Optional[E2EParams] = None
    #: The service the link is for (offer only); None: none.
    service: Optional[str] = None

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_JINGLE_XMLSTREAM, "description"))
        if self.e2e is not None:
            self.e2e.addTo(element)
        if self.service is not None:
            link = element.addElement((NS_JINGLE_LINK, "link"))
            link["service"] = checkServiceName(self.service)
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "XmlStreamDescription":
        if (element.uri, element.name) != (NS_JINGLE_XMLSTREAM, "description"):
            raise MalformedJingle("not a XEP-0247 <description/>")
        try:
            e2e = E2EParams.fromParent(element)
        except Malformed as e:
            raise MalformedJingle("xmlstream description: %s" % (e,))
        links = list(element.elements(NS_JINGLE_LINK, "link"))
        if len(links) > 1:
            raise MalformedJingle("xmlstream description: %d <link/> elements; "
                                  "expected at most one" % len(links))
        service = links[0].getAttribute("service") if links else None
        if service is not None:
            try:
                checkServiceName(service)
            except MalformedSI as e:
                raise MalformedJingle("xmlstream description: %s" % (e,))
        return cls(e2e, service)


#: The codecs :func:`bytestreamd.wire.jingle.defaultRegistry` registers.
CODECS = (XmlStreamDescription,)
