"""
XML namespaces and feature strings, in one place.

Every namespace the daemon speaks is listed here so that the disco#info
answer (``bytestreamd.xmpp.client``) and the codecs agree on spelling.
"""

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"

#: XEP-0095 Stream Initiation.
NS_SI = "http://jabber.org/protocol/si"
#: XEP-0020 Feature Negotiation.
NS_FEATURE_NEG = "http://jabber.org/protocol/feature-neg"
#: XEP-0004 Data Forms.
NS_DATA = "jabber:x:data"
#: The si-multiple extension (telepathy-gabble), see shared/seeds/003.
NS_SI_MULTIPLE = "http://telepathy.freedesktop.org/xmpp/si-multiple"

#: XEP-0047 In-Band Bytestreams.
NS_IBB = "http://jabber.org/protocol/ibb"
#: XEP-0065 SOCKS5 Bytestreams.
NS_S5B = "http://jabber.org/protocol/bytestreams"

#: XEP-0096 SI File Transfer profile.
NS_SI_FILE_TRANSFER = "http://jabber.org/protocol/si/profile/file-transfer"

#: bytestreamd's own SI profile for named-service links.  A URN in the
#: experimental ``x-`` space: it is ours, and registering it with the XSF
#: registrar would be the step before anyone else implemented it.  The
#: profile's single element is ``<link xmlns=NS_LINK_PROFILE service='NAME'/>``
#: (``service`` optional).  See docs/protocol.rst.
NS_LINK_PROFILE = "urn:x-bytestreamd:si:link:0"

#: The XEP-0041 REL namespace; we use its link states, not its wire protocol
#: (the XEP is retracted), so it is not advertised in disco.
NS_REL = "http://jabber.org/protocol/rel"

#: bytestreamd's end-of-link confirmation (see bytestreamd.wire.end and
#: docs/protocol.rst): two daemons confirm a link's end with byte counts.
#: Advertised in disco; a peer that advertises it gets confirmed ends.
NS_END = "urn:x-bytestreamd:end:0"

#: XEP-0199 XMPP Ping.
NS_PING = "urn:xmpp:ping"

#: bytestreamd's own Jingle application: a byte link to a named service,
#: ``<description xmlns=NS_JINGLE_LINK [service='NAME']/>``.  Experimental
#: ``x-`` space, like the SI link profile.  See docs/jingle.rst.
NS_JINGLE_LINK = "urn:x-bytestreamd:jingle:link:0"

#: XEP-0247 Jingle XML Streams: the application an end-to-end link (e2e=
#: bytes|xmpp) is negotiated with over Jingle.  See docs/e2e.rst and
#: bytestreamd.wire.jingle_xmlstream.
NS_JINGLE_XMLSTREAM = "urn:xmpp:jingle:apps:xmlstream:0"

#: XEP-0166 Jingle, and its error conditions (``<out-of-order/>``...).
NS_JINGLE = "urn:xmpp:jingle:1"
NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"
#: XEP-0261 Jingle In-Band Bytestreams transport.
NS_JINGLE_IBB = "urn:xmpp:jingle:transports:ibb:1"
#: XEP-0260 Jingle SOCKS5 Bytestreams transport.
NS_JINGLE_S5B = "urn:xmpp:jingle:transports:s5b:1"
#: XEP-0234 Jingle File Transfer, version 5 of the namespace, and its
#: application-specific reasons (``<file-not-available/>``...).
NS_JINGLE_FT = "urn:xmpp:jingle:apps:file-transfer:5"
NS_JINGLE_FT_ERRORS = "urn:xmpp:jingle:apps:file-transfer:errors:0"
#: XEP-0300 hashes (``<hash algo='sha-256'>base64</hash>``).
NS_HASHES = "urn:xmpp:hashes:2"
