"""
bytestreamd's own Jingle application: a byte link to a named service.

``<description xmlns='urn:x-bytestreamd:jingle:link:0' [service='NAME']/>``
is :class:`LinkDescription`.  It is the Jingle twin of the SI link profile
(``<link xmlns='urn:x-bytestreamd:si:link:0' service='NAME'/>``): the only
field is ``service``, the name the responder maps to a local endpoint
(``[services]``); without it the link is a plain byte pipe.
``connections='many'`` asks for a link whose every local connection is one
more stream in the session (the responder connects each to the service).  The service
name follows the same rule as SI's (1 to 255 characters, no whitespace or
control characters).  Unknown attributes and children are ignored, so that
a later version can add fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from twisted.words.xish import domish

from bytestreamd.ns import NS_JINGLE_LINK
from bytestreamd.wire.jingle import MalformedJingle
from bytestreamd.wire.si import MalformedSI, checkServiceName


@dataclass(frozen=True)
class LinkDescription:
    """The description of a link content; ``service`` ``None`` when absent."""

    namespace = NS_JINGLE_LINK
    elementName = "description"

    service: Optional[str] = None
    #: ``connections='many'``: each local connection is one more stream
    #: (an IBB session by transport-info) in the same session.
    many: bool = False

    def toElement(self) -> domish.Element:
        element = domish.Element((NS_JINGLE_LINK, "description"))
        if self.service is not None:
            element["service"] = checkServiceName(self.service)
        if self.many:
            element["connections"] = "many"
        return element

    @classmethod
    def fromElement(cls, element: domish.Element) -> "LinkDescription":
        if (element.uri, element.name) != (NS_JINGLE_LINK, "description"):
            raise MalformedJingle("not a bytestreamd link <description/>")
        service = element.getAttribute("service")
        if service is not None:
            try:
                checkServiceName(service)
            except MalformedSI as e:
                raise MalformedJingle("link description: %s" % (e,))
        connections = element.getAttribute("connections")
        if connections not in (None, "one", "many"):
            raise MalformedJingle("link description: connections must be one or many, "
                                  "not %r" % (connections,))
        return cls(service, connections == "many")


#: The codecs :func:`bytestreamd.wire.jingle.defaultRegistry` registers.
CODECS = (LinkDescription,)
