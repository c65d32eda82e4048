"""
The one list of what the daemon can speak: bytestream methods and
negotiation frameworks, each by the short name used in the config, the
control channel, events and STATUS/PROBE, and the namespace a peer's disco
features carry.

Config validation (``[links] methods``), the daemon's wiring, SI's "what
does the peer support" and STATUS/PROBE all read it, so a new method or
negotiator is one entry here plus its module.  The builders import their
modules only when called: config.py imports this module, and must stay
cheap and free of the methods' imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

from bytestreamd import ns


@dataclass(frozen=True)
class Entry:
    """One method or negotiator: its name, its disco feature, its builder."""

    name: str
    namespace: str
    build: Callable[..., Any]


def _buildS5B(reactor, config):
    from bytestreamd.methods import s5b
    return s5b.fromConfig(reactor, config)


def _buildIBB(reactor, config):
    from bytestreamd.methods.ibb import IBBMethod
    return IBBMethod(reactor, blockSize=config.ibb_block_size, stanza=config.ibb_stanza,
                     window=config.ibb_window, dataAckTimeout=None)


def _buildSI(reactor, config, methods, discovery):
    from bytestreamd.negotiation.si import StreamInitiation
    return StreamInitiation(
        reactor, methods, discovery, None,
        attemptTimeout=config.attempt_timeout, offerTimeout=config.offer_timeout,
        profiles=(ns.NS_LINK_PROFILE, ns.NS_SI_FILE_TRANSFER),
        maxPendingOffers=config.max_links)


def _buildJingle(reactor, config, methods, discovery):
    from bytestreamd.negotiation.jingle import JingleNegotiator
    return JingleNegotiator(
        reactor, methods, discovery, None,
        attemptTimeout=config.attempt_timeout, offerTimeout=config.offer_timeout,
        requestTimeout=config.peer_timeout, maxPendingOffers=config.max_links)


#: Bytestream methods (IStreamMethod), in the default preference order.
METHODS: Tuple[Entry, ...] = (
    Entry("s5b", ns.NS_S5B, _buildS5B),
    Entry("ibb", ns.NS_IBB, _buildIBB),
)

#: Negotiation frameworks (INegotiator), in the default preference order.
#: ``build(reactor, config, methods, discovery)``; the acceptor is wired
#: afterwards with ``setAcceptor`` (two-phase wiring, see daemon.py).
NEGOTIATORS: Tuple[Entry, ...] = (
    Entry("jingle", ns.NS_JINGLE, _buildJingle),
    Entry("si", ns.NS_SI, _buildSI),
)

METHOD_NAMES: Tuple[str, ...] = tuple(e.name for e in METHODS)
DEFAULT_METHODS: Tuple[str, ...] = METHOD_NAMES
NEGOTIATOR_NAMES: Tuple[str, ...] = tuple(e.name for e in NEGOTIATORS)


def methodNamesByNamespace() -> Dict[str, str]:
    """Disco feature -> method name (what a peer supports, in words)."""
    return {e.namespace: e.name for e in METHODS}


def methodsIn(features: Sequence[str]) -> List[str]:
    """The names of the methods a peer's disco ``features`` advertise, in our order."""
    return [e.name for e in METHODS if e.namespace in features]


def _byName(entries: Tuple[Entry, ...], name: str, what: str) -> Entry:
    for entry in entries:
        if entry.name == name:
            return entry
    raise KeyError("unknown %s %s (known: %s)"
                   % (what, name, ", ".join(e.name for e in entries)))


def buildMethods(reactor, config, names: Sequence[str]) -> List[Any]:
    """The methods named ``names``, built in that order (KeyError: unknown)."""
    return [_byName(METHODS, name, "method").build(reactor, config) for name in names]


def buildNegotiators(reactor, config, methods, discovery,
                     names: Sequence[str] = NEGOTIATOR_NAMES) -> List[Any]:
    """The negotiators named ``names``, in that order, sharing ``methods``."""
    return [_byName(NEGOTIATORS, name, "negotiator").build(reactor, config, methods,
                                                           discovery)
            for name in names]
