"""
JIDs from users (control socket, configuration) and from the wire.

One parser for every place, so that ``bob@[::1]/x`` means the same thing on
the control socket, in ``[accept] allow`` and in a stanza's ``from``.  It
follows RFC 7622 where Twisted's ``JID`` does not:

* a domainpart may be an IP literal (section 3.2): an IPv4 address, or an
  IPv6 address in brackets.  Twisted runs nameprep on it and refuses the
  brackets, so an IPv6 JID is built here from parts that were prepared
  separately (:class:`LiteralJID`); its address is written in the RFC 5952
  form (``[0:0::1]`` is ``[::1]``), so that equal addresses are equal JIDs;
* a trailing dot of the domain is removed (section 3.2);
* an empty localpart before an ``@``, or an empty resource after a ``/``, is
  an error rather than silently dropped;
* each part is at most 1023 bytes.

Plain ``JID()`` is used, never ``jid.internJID``: its cache has no bound, and
everything here may come from a stranger.
"""

from __future__ import annotations

import ipaddress
from typing import Optional, Tuple

from twisted.words.protocols.jabber.jid import JID, InvalidFormat, prep

#: Longest JID part in bytes (RFC 7622 section 3).
MAX_PART = 1023

#: What nameprep gets while the localpart and resource of an IPv6 JID are
#: prepared; never seen outside this module.
_PLACEHOLDER = "ip-literal.invalid"


class InvalidJID(ValueError):
    """
    A text that is not a JID; the message says why, without repeating the
    text (the caller shows it, escaped as its channel needs).
    """


class LiteralJID(JID):
    """
    A JID whose domain is an IPv6 literal (``[::1]``), which Twisted's
    nameprep refuses.  Its parts are prepared before construction; it
    compares and hashes like any JID.
    """

    def __init__(self, user: Optional[str], host: str, resource: Optional[str]):
        # JID.__init__ would run nameprep on the host: set the parts directly.
        self.user = user
        self.host = host
        self.resource = resource

    def userhostJID(self) -> JID:
        """The bare JID, without ``internJID`` (which would nameprep it)."""
        if self.resource is None:
            return self
        return LiteralJID(self.user, self.host, None)


def split(text: str) -> Tuple[Optional[str], str, Optional[str]]:
    """
    ``(localpart, domainpart, resourcepart)`` of ``text`` as RFC 7622
    section 3.1 says: the resource is everything after the first ``/``, the
    localpart everything before the first ``@`` of what remains.
    """
    bare, slash, resource = text.partition("/")
    if slash and not resource:
        raise InvalidJID("empty resource")
    local, at, domain = bare.partition("@")
    if not at:
        local, domain = "", bare
    elif not local:
        raise InvalidJID("empty localpart")
    return (local or None), domain, (resource if slash else None)


def _ipLiteral(domain: str) -> Optional[str]:
    """The canonical IP literal of ``domain``; ``None`` if it is a name."""
    if domain.startswith("[") or domain.endswith("]"):
        inner = domain[1:-1] if domain.startswith("[") and domain.endswith("]") else ""
        if "%" in inner:
            raise InvalidJID("an IPv6 literal of a JID cannot have a zone (%...)")
        try:
            return "[%s]" % (ipaddress.IPv6Address(inner),)
        except ValueError:
            raise InvalidJID("domain is not an IPv6 address in brackets")
    if ":" in domain:
        try:
            ipaddress.IPv6Address(domain)
        except ValueError:
            return None  # nameprep will refuse the colon
        raise InvalidJID("an IPv6 address in a JID is written in brackets: "
                         "user@[2001:db8::1]")
    try:
        return str(ipaddress.IPv4Address(domain))
    except ValueError:
        return None


def makeJID(user: Optional[str], host: str, resource: Optional[str] = None) -> JID:
    """
    A JID from its parts, prepared (nodeprep, nameprep or an IP literal,
    resourceprep) and checked; raises :class:`InvalidJID`.
    """
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]  # RFC 7622 3.2: a final dot is not part of the domain
    if not host:
        raise InvalidJID("empty domain")
    literal = _ipLiteral(host)
    try:
        if literal is not None and literal.startswith("["):
            user, _, resource = prep(user, _PLACEHOLDER, resource)
            jid: JID = LiteralJID(user, literal, resource)
        else:
            jid = JID(tuple=(user, literal or host, resource))
    except (InvalidFormat, UnicodeError, ValueError, IndexError) as e:
        # IndexError: a domain that nameprep maps to nothing (U+00AD alone)
        # reaches Twisted's final-dot check empty
        raise InvalidJID("empty domain" if isinstance(e, IndexError) else _words(e))
    for part, name in ((jid.user, "localpart"), (jid.host, "domain"),
                       (jid.resource, "resource")):
        if part is not None and len(part.encode("utf-8")) > MAX_PART:
            raise InvalidJID("%s longer than %d bytes" % (name, MAX_PART))
    if not jid.host:
        raise InvalidJID("empty domain")
    return jid


def _words(e: Exception) -> str:
    text = str(e) or e.__class__.__name__
    return {"Invalid character in username": "localpart has a character stringprep forbids",
            "Invalid character in hostname": "domain has a character nameprep forbids",
            "Invalid character in resource": "resource has a character stringprep forbids",
            "Server address required.": "empty domain"}.get(text, text)


def parseJID(text: str) -> JID:
    """``text`` as a JID; raises :class:`InvalidJID` saying what is wrong."""
    if not text:
        raise InvalidJID("empty")
    user, host, resource = split(text)
    return makeJID(user, host, resource)


def parseJIDOrNone(text: Optional[str]) -> Optional[JID]:
    """For the wire: the JID, or ``None`` for a missing or invalid one."""
    if not text:
        return None
    try:
        return parseJID(text)
    except InvalidJID:
        return None
