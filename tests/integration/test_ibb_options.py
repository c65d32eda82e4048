"""
Per-link IBB options from OPEN: message stanzas and block sizes, end to end.
"""

from __future__ import annotations

import pytest

from .harness.flows import MiB, transferFile


def _pair(daemons):
    return (daemons("alice", accept="bob@localhost"),
            daemons("bob", accept="alice@localhost"))


@pytest.mark.timeout(180)
def test_message_stanzas_carry_a_file(daemons, tmp_path):
    """stanza=message: no acks, so the sender paces itself; nothing may be lost."""
    alice, bob = _pair(daemons)
    transferFile(alice, bob, tmp_path, 4 * MiB, "methods=ibb stanza=message", "ibb",
                 timeout=120)


@pytest.mark.parametrize("blockSize", [512, 16384, 65535])
@pytest.mark.timeout(180)
def test_block_sizes(daemons, tmp_path, blockSize):
    alice, bob = _pair(daemons)
    transferFile(alice, bob, tmp_path, 2 * MiB + 7,
                 "methods=ibb block-size=%d" % blockSize, "ibb", timeout=120)
