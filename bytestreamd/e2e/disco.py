"""
What the daemon advertises about e2e links in disco#info: bytestreamd's
raw-bytes stream feature (``urn:x-bytestreamd:e2e:bytes:0``) and XEP-0246
end-to-end XML streams over its link profile.  ``PROBE`` shows a peer that
advertises the first as ``e2e=yes``.  (XEP-0247's
``urn:xmpp:jingle:apps:xmlstream:0`` is advertised only once Jingle XML
streams are negotiated, not before.)
"""

from __future__ import annotations

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from wokkel import disco, iwokkel
from zope.interface import implementer

from bytestreamd.e2e import NS_BYTES
from bytestreamd.xmpp.stanzas import Handler


@implementer(iwokkel.IDisco)
class E2EFeatures(Handler):
    """A handler whose only job is the disco#info features."""

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        return [] if nodeIdentifier else [disco.DiscoFeature(NS_BYTES)]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []
