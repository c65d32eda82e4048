"""
What a peer can make our XEP-0065 side do, and the limits on it: two small
sans-I/O pieces, kept apart from the sockets so they can be tested on their
own (docs/security-s5b.rst explains the threat model).

:class:`ConnectPolicy` -- ``[s5b] connect``
    A peer we accepted names the streamhosts our target side connects to.
    Without a check that is a port scanner aimed wherever the peer likes:
    this host's loopback services, the link-local cloud metadata address,
    the LAN.  So every address of a candidate the peer names (an IP literal,
    or every address its host name resolves to) is checked against a list
    of networks before we connect.  The rule that decides is the *most
    specific* one containing the address (the longest prefix); ``!net``
    refuses a network.  Loopback, link-local, unspecified ("this host"),
    multicast and broadcast addresses are refused by built-in rules of
    their own prefix length, so ``0.0.0.0/0`` does not reach them but
    ``127.0.0.0/8`` or ``127.0.0.1`` listed explicitly does (a tie goes to
    the configured rule).  IPv4-mapped IPv6 addresses are checked as the
    IPv4 address they reach.

:class:`HandshakeSlots` -- ``[s5b] max_handshakes``
    Our direct streamhost holds a handshake until the client's CONNECT says
    which session it is for; before that it cannot tell a target from an
    idle stranger.  The slots are capped, but reaching the cap never refuses
    the newcomer: the oldest handshake of the source address that holds the
    most is closed instead.  An attacker with many idle connections thus
    only ever evicts its own, and a real target -- which sends its greeting
    and CONNECT within a couple of round trips -- gets through unless the
    flood outpaces it from the same address.  (The streamhost also accepts
    only while a session of ours waits for a direct connection, and drops a
    client that has not sent its greeting within a few seconds: see
    :class:`~bytestreamd.methods.s5b_tcp.S5BServerFactory`.)
"""

from __future__ import annotations

import ipaddress
from typing import (Dict, Generic, Hashable, Iterable, List, Optional, Sequence, Tuple,
                    TypeVar, Union)

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: ``[s5b] connect`` when not configured: every address but the special ones.
DEFAULT_CONNECT: Tuple[str, ...] = ("0.0.0.0/0", "::/0")

#: Refused unless a configured rule at least as specific allows them:
#: loopback, link-local, "this host/network", multicast, broadcast.
SPECIAL_NETWORKS: Tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128",
    "169.254.0.0/16", "fe80::/10",
    "0.0.0.0/8", "::/128",
    "224.0.0.0/4", "ff00::/8",
    "255.255.255.255/32",
))

#: The handshake cap never goes below this, whatever ``max_links`` is.
MIN_HANDSHAKES = 64


def defaultMaxHandshakes(maxLinks: int) -> int:
    """``[s5b] max_handshakes`` when not set: room for two per link."""
    return max(MIN_HANDSHAKES, 2 * maxLinks)


def parseConnectRule(text: str) -> Tuple[bool, Network]:
    """
    One ``[s5b] connect`` item: ``net``, ``addr`` (a /32 or /128) or
    ``!net``.  Returns ``(allowed, network)``; raises ValueError with words
    for the operator.
    """
    item = text.strip()
    allowed = not item.startswith("!")
    body = item if allowed else item[1:].strip()
    try:
        network = ipaddress.ip_network(body, strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            raise ValueError("%r has host bits set (did you mean %s?)"
                             % (text, ipaddress.ip_network(body, strict=False)))
        raise ValueError("%r is not an IP address or network (e.g. 192.0.2.0/24, "
                         "::1, !10.0.0.0/8)" % text)
    return allowed, network


def formatConnectRule(allowed: bool, network: Network) -> str:
    return ("" if allowed else "!") + str(network)


def _address(text: str) -> Address:
    """An address to check: scope dropped, IPv4-mapped IPv6 unwrapped."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ConnectPolicy:
    """
    Which candidate addresses we connect to (see the module docstring).
    ``rules``: items in the ``[s5b] connect`` syntax, or ``(allowed,
    network)`` pairs; empty allows nothing.
    """

    def __init__(self, rules: Iterable[Union[str, Tuple[bool, Network]]] = DEFAULT_CONNECT):
        self.rules: List[Tuple[bool, Network]] = [
            parseConnectRule(r) if isinstance(r, str) else r for r in rules]

    def __repr__(self) -> str:
        return "ConnectPolicy(%s)" % ", ".join(formatConnectRule(*r) for r in self.rules)

    def check(self, address: str) -> Optional[str]:
        """``None`` if we may connect to ``address`` (an IP literal), else why not."""
        try:
            ip = _address(address)
        except ValueError:
            return "%r is not an IP address" % address
        best: Optional[Tuple[int, bool]] = None  # (prefix length, allowed)
        for allowed, network in self.rules:
            if network.version == ip.version and ip in network:
                if best is None or network.prefixlen > best[0]:
                    best = (network.prefixlen, allowed)
        for network in SPECIAL_NETWORKS:
            if network.version == ip.version and ip in network:
                if best is None or network.prefixlen > best[0]:
                    best = (network.prefixlen, False)
        if best is not None and best[1]:
            return None
        return "address %s is not allowed by [s5b] connect" % address

    def allows(self, address: str) -> bool:
        return self.check(address) is None


K = TypeVar("K", bound=Hashable)


class HandshakeSlots(Generic[K]):
    """
    The handshakes our direct streamhost holds, by source address, oldest
    first.  :meth:`admit` always takes the newcomer and, at ``limit``, names
    the one to close: the oldest of the source holding the most (ties: the
    newcomer's own source if it is one of them, else the source whose
    oldest is oldest).
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("at least one handshake slot is needed")
        self.limit = limit
        self._serial = 0
        self._where: Dict[K, Tuple[int, str]] = {}
        self._bySource: Dict[str, Dict[K, int]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def held(self, source: str) -> int:
        """How many handshakes ``source`` holds."""
        return len(self._bySource.get(source, ()))

    def admit(self, key: K, source: str) -> Optional[K]:
        """Take ``key`` from ``source``; returns the handshake to close, if any."""
        victim = self._victim(source) if len(self._where) >= self.limit else None
        if victim is not None:
            self.release(victim)
        self._serial += 1
        self._where[key] = (self._serial, source)
        self._bySource.setdefault(source, {})[key] = self._serial
        return victim

    def release(self, key: K) -> None:
        """``key`` is no longer a handshake (done, failed or closed)."""
        where = self._where.pop(key, None)
        if where is None:
            return
        held = self._bySource[where[1]]
        del held[key]
        if not held:
            del self._bySource[where[1]]

    def heaviest(self) -> Sequence[str]:
        """Sources holding the most handshakes, for log lines."""
        if not self._bySource:
            return []
        most = max(len(h) for h in self._bySource.values())
        return [s for s, h in self._bySource.items() if len(h) == most]

    def _victim(self, newcomer: str) -> Optional[K]:
        # (-count, not the newcomer's source, oldest serial, key): smallest goes.
        best: Optional[Tuple[int, bool, int, K]] = None
        for source, held in self._bySource.items():
            key, serial = next(iter(held.items()))
            candidate = (-len(held), source != newcomer, serial, key)
            if best is None or candidate[:3] < best[:3]:
                best = candidate
        return None if best is None else best[3]
