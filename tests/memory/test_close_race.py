"""
Issue 6, "CLOSE ends any link": a CLOSE at any instant around the local
clients' connects ends the link on both sides at once -- not after
``peer_timeout``.

The race (seen by bench/jingle with SI and Jingle, over IBB and SOCKS5):
the closing side's ``<end status=closed/>`` reached the peer before the
peer's local client had connected.  The peer's lifecycle then waited for
its local client to drain (AwaitDrain) -- a client that was not there, and
that nobody looked at again once it came -- so the peer sent no end, and
both sides waited for the settle timer (``peer_timeout``, 60 s by default):
the closer said ``CLOS ... the peer did not confirm the end within 60s``.

Each case is a fresh pair of daemons with ``peer_timeout = 60``; the clock
is fake, so "at once" is asserted as "within a few seconds of fake time"
(IBB's EOF grace is 2 s).  An *instant* is a number of network pump rounds
between the CLOSE and the connects: ``before`` (the peer has had the end
and everything is quiet), ``-1`` (one round after the CLOSE), ``0`` (the
same turn), ``+n`` (n rounds after the connects), and the same with data
in flight both ways.
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import pytest

from tests.memory.clients import LocalClient, OneShotFactory
from tests.memory.test_truth import daemons, good, payload
from tests.memory.world import World

PEER_TIMEOUT = 60
#: What "at once" means in fake seconds: far below peer_timeout.
BOUND = 5
INSTANTS: List[Tuple[str, bool]] = [
    ("before", False), ("-2", False), ("-1", False), ("0", False), ("+1", False),
    ("+3", False), ("+8", False), ("0", True), ("+1", True), ("+4", True), ("+30", True)]


def rounds(world: World, n: int) -> None:
    """Run ``n`` rounds of the network (fewer if it goes quiet)."""
    count = [0]

    def done() -> bool:
        count[0] += 1
        return count[0] > n

    world.network.pump(done)


def closeAt(world: World, negotiation: str, method: str, closer: str, instant: str,
            data: bool) -> str:
    """One case; returns what went wrong ('' if nothing)."""
    alice, bob = daemons(world, method, peer_timeout=PEER_TIMEOUT, negotiation=negotiation)
    ctl, watch, linkA, linkB, pathA, pathB = good(world, alice, bob, method, clients=False)
    goodA = [e for e in ctl.linkEvents(linkA) if e.words[2] == "GOOD"][-1]
    assert goodA.options["negotiation"] == negotiation, goodA
    clients: List[LocalClient] = []
    refused: List[OneShotFactory] = []

    def connect() -> None:
        for path in (pathA, pathB):
            client = LocalClient(world)
            factory = OneShotFactory(client)
            world.tester.connectUNIX(path, factory)
            clients.append(client)
            refused.append(factory)

    def told() -> bool:
        # EOF, a closed connection, or a refused connect (the link had
        # ended and its socket was gone).
        return all(c.eof or c.lost is not None or f.reason is not None
                   for c, f in zip(clients, refused))

    closing, closeId = (ctl, linkA) if closer == "alice" else (watch, linkB)
    if instant == "before":
        closing.send("CLOSE %s" % closeId)
        world.pump()
        connect()
    elif instant.startswith("-"):
        closing.send("CLOSE %s" % closeId)
        rounds(world, int(instant[1:]))
        connect()
    else:
        connect()
        rounds(world, int(instant))
        if data:
            for i, client in enumerate(clients):
                if client.transport is not None:
                    client.write(payload(20 + i, 100000))
        closing.send("CLOSE %s" % closeId)
    started = world.now()
    try:
        mine = ctl.waitLinkState(linkA, ("CLOS", "ERR"), timeout=PEER_TIMEOUT * 3)
        theirs = watch.waitLinkState(linkB, ("CLOS", "ERR"), timeout=PEER_TIMEOUT * 3)
    except AssertionError as e:
        return "no final event: %s" % str(e).splitlines()[0]
    took = world.now() - started
    ends = {"alice": mine, "bob": theirs}
    closed, other = ends[closer], ends["bob" if closer == "alice" else "alice"]
    problems = []
    if took > BOUND:
        problems.append("took %gs" % took)
    if closed.words[2] != "CLOS" or not closed.options["reason"].startswith(
            "closed by local request"):
        problems.append("closer: %s" % closed)
    if "did not confirm" in closed.options["reason"]:
        problems.append("closer waited for the peer: %s" % closed)
    if not data:
        # Nothing in flight: nothing lost, confirmed on both sides.
        if other.words[2] != "CLOS" or other.options.get("reason") != "closed by the peer":
            problems.append("peer: %s" % other)
        if closed.options.get("confirmed") != "yes" or other.options.get("confirmed") != "yes":
            problems.append("not confirmed: %s / %s" % (closed, other))
    elif other.words[2] == "ERR" and "closed by the peer" not in other.options["reason"]:
        problems.append("peer's ERR does not say the peer closed: %s" % other)
    try:
        world.runUntil(told, BOUND, "the local clients told the end")
    except AssertionError:
        problems.append("a local client was not told the end (no EOF)")
    return "; ".join(problems)


@pytest.mark.parametrize("closer", ["alice", "bob"])
@pytest.mark.parametrize("method", ["ibb", "s5b"])
@pytest.mark.parametrize("negotiation", ["si", "jingle"])
def test_close_around_local_connect_ends_both_sides_at_once(tmp_path, negotiation, method,
                                                            closer):
    failures = []
    for n, (instant, data) in enumerate(INSTANTS):
        world = World(str(tmp_path / str(n)))
        try:
            problem = closeAt(world, negotiation, method, closer, instant, data)
        finally:
            world.close()
        if problem:
            failures.append("CLOSE at %s%s: %s" % (instant, " with data" if data else "",
                                                  problem))
    assert not failures, "\n".join(failures)
