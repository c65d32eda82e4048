"""
End-to-end streams (XEP-0246) secured with STARTTLS over any bytestream.

One module per concern, none of them doing I/O on its own:

* :mod:`~bytestreamd.e2e.files` -- the state directory and atomic writes;
* :mod:`~bytestreamd.e2e.identity` -- the daemon's key, certificate and
  SHA-256 fingerprint;
* :mod:`~bytestreamd.e2e.trust` -- which peer certificates are accepted
  (the policies and the known-peers file);
* :mod:`~bytestreamd.e2e.wire` -- the ``<fingerprint/>`` element the link
  negotiation carries;
* :mod:`~bytestreamd.e2e.stream` -- the sans-I/O XEP-0246 stream machine
  (headers, STARTTLS, restart, raw-bytes mode, close);
* :mod:`~bytestreamd.e2e.tls` -- the pyOpenSSL context for the mutual
  handshake, and reading the peer's certificate afterwards.

and, wiring them into links: :mod:`~bytestreamd.e2e.service` (identity,
policy and pins for the daemon), :mod:`~bytestreamd.e2e.secure` (the
machine run on a link's stream, STARTTLS included) and
:mod:`~bytestreamd.e2e.disco`; the link layer's side is
:mod:`bytestreamd.links.e2e`.

See docs/e2e.rst for the whole picture.
"""

#: RFC 6120 STARTTLS.
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
#: RFC 6120 stream namespace and stream errors.
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
#: XEP-0320 fingerprint element.
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
#: XEP-0247 Jingle XML streams application.
NS_XMLSTREAM = "urn:xmpp:jingle:apps:xmlstream:0"
#: bytestreamd's stream feature for raw bytes inside the secured stream.
NS_BYTES = "urn:x-bytestreamd:e2e:bytes:0"

#: The two kinds of e2e link: an XEP-0246 stream of stanzas, or the link's
#: raw bytes inside TLS (see docs/e2e.rst).
MODE_XMPP = "xmpp"
MODE_BYTES = "bytes"
MODES = (MODE_XMPP, MODE_BYTES)
