"""
What STATUS and PROBE say: plain ``(key, value)`` pairs describing the
daemon and a peer.

Kept apart from the link registry because it only reads: the daemon's
advertised features come from the same handlers that answer disco#info, and
a peer's summary is a pure function of its disco#info answer.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.internet import defer
from wokkel import disco

from bytestreamd import ns, registry

Pairs = List[Tuple[str, str]]

#: Short names for the features an operator cares about.
#: Methods and negotiators by their registry names (bytestreamd.registry).
FEATURE_NAMES = dict(
    {e.namespace: e.name for e in registry.METHODS + registry.NEGOTIATORS},
    **{ns.NS_SI_MULTIPLE: "si-multiple", ns.NS_LINK_PROFILE: "link-profile",
       ns.NS_FEATURE_NEG: "feature-neg", ns.NS_SI_FILE_TRANSFER: "file-transfer"})


def advertisedFeatures(handlers: Iterable) -> List[str]:
    """
    The features our disco#info answer lists, by short name where there is
    one.  Every handler answers synchronously (a fired Deferred or a list).
    """
    out = []
    for handler in handlers:
        get = getattr(handler, "getDiscoInfo", None)
        if get is None:
            continue
        result: list = []
        answer = get(None, None, "")
        if isinstance(answer, defer.Deferred):
            answer.addCallback(result.extend)
        else:
            result.extend(answer)
        out.extend(FEATURE_NAMES.get(str(item), str(item))
                   for item in result if isinstance(item, disco.DiscoFeature))
    return out


def daemonStatus(xmpp, methodNames: List[str], states: Iterable[str]) -> Pairs:
    """STATUS: who we are, the server connection, features, link counts."""
    counts: Dict[str, int] = {}
    total = 0
    for state in states:
        counts[state] = counts.get(state, 0) + 1
        total += 1
    conn = xmpp.connection
    pairs = [
        ("jid", (conn.jid or xmpp.jid).full()),
        ("server", "connected" if xmpp.connected else "disconnected"),
        ("server-target", xmpp.target),
        ("methods", ",".join(methodNames)),
        ("features", ",".join(sorted(advertisedFeatures(conn)))),
        ("links", str(total)),
    ]
    if not xmpp.connected:
        # The true reason the last attempt ended (not-authorized, conflict,
        # no STARTTLS, a silent server, a stop...), and when the next one is.
        pairs.append(("reason", xmpp.state.lastReason))
        retryIn = getattr(xmpp, "retryIn", None)
        seconds = retryIn() if retryIn is not None else None
        if seconds is not None:
            pairs.append(("retry-in", "%ds" % (round(seconds),)))
    for state in sorted(counts):
        pairs.append(("links-" + state.lower(), str(counts[state])))
    return pairs


def peerSummary(peer: str, identities, features) -> Pairs:
    """PROBE: what a peer's disco#info says it can do, for people and scripts."""
    methods = registry.methodsIn(features)
    profilePrefix = ns.NS_SI + "/profile/"
    profiles = sorted(
        f[len(profilePrefix):] if f.startswith(profilePrefix) else "link"
        for f in features
        if f.startswith(profilePrefix) or f == ns.NS_LINK_PROFILE)
    return [
        ("jid", peer),
        ("si", "yes" if ns.NS_SI in features else "no"),
        ("methods", ",".join(methods) or "-"),
        ("profiles", ",".join(profiles) or "-"),
        ("si-multiple", "yes" if ns.NS_SI_MULTIPLE in features else "no"),
        ("jingle", "yes" if "urn:xmpp:jingle:1" in features else "no"),
        ("e2e", "yes" if "urn:x-bytestreamd:e2e:bytes:0" in features else "no"),
        ("identities", ",".join("%s/%s" % i for i in sorted(identities)) or "-"),
        ("features", ",".join(sorted(features))),
    ]
