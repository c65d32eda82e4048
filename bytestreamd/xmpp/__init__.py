"""
The daemon's one XMPP client connection and what every XEP handler shares.

* :mod:`.client` -- the reconnecting client service (TLS, login, backoff);
* :mod:`.session` -- why a session ended, in one true line (sans-I/O);
* :mod:`.stanzas` -- the stanza plumbing: authenticated IQ requests with
  unpredictable ids, error replies, raw-XML helpers for the data path;
* :mod:`.disco` -- XEP-0030 responder and the per-full-JID feature cache;
* :mod:`.presence` -- what peers' presence tells the link layer;
* :mod:`.liveness` -- XEP-0199 pings and session probes for silent peers.

Nothing here knows about links: the link layer (:mod:`bytestreamd.links`)
and the methods (:mod:`bytestreamd.methods`) use this package, never the
other way round.
"""
