"""
Negotiators in the memory tier: two real daemons, fake time.  Every LINK
event and LINKS row names the negotiation framework that carries the link
(here ``[links] negotiation = si``; Jingle's are in test_jingle.py), on both
sides.
"""

from __future__ import annotations

import pytest

from tests.memory.test_truth import daemons


@pytest.mark.parametrize("method", ["ibb", "s5b"])
def test_open_shows_negotiation_si(world, method):
    alice, bob = daemons(world, method, negotiation="si")
    ctl, watch = world.control(alice), world.control(bob, watch=True)
    opened = ctl.expect("OPEN %s methods=%s" % (bob.jid.full(), method))
    linkA = opened.get("link")
    offer = watch.waitEvent(r"^650 OFFER ")
    linkB = offer.words[1]
    assert offer.options["negotiation"] == "si"
    watch.expect("ACCEPT %s" % linkB)
    goodA = ctl.waitLinkState(linkA, ("GOOD", "BAD", "ERR"))
    goodB = watch.waitLinkState(linkB, ("GOOD", "BAD", "ERR"))
    assert (goodA.words[2], goodB.words[2]) == ("GOOD", "GOOD")
    for events in (ctl.linkEvents(linkA), watch.linkEvents(linkB)):
        assert events and all(e.options["negotiation"] == "si" for e in events), events
    rowsA = {row["link"]: row for row in ctl.expect("LINKS").rows()}
    rowsB = {row["link"]: row for row in watch.expect("LINKS").rows()}
    assert rowsA[linkA]["negotiation"] == rowsB[linkB]["negotiation"] == "si"
    assert rowsA[linkA]["profile"] == "urn:x-bytestreamd:si:link:0"  # unchanged contract
    ctl.expect("CLOSE %s" % linkA)
    end = ctl.waitLinkState(linkA)
    assert end.words[2] == "CLOS" and end.options["negotiation"] == "si"
