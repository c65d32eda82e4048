"""Fixtures of the memory tier."""

from __future__ import annotations

import pytest

from tests.memory.world import World


@pytest.fixture
def world():
    """A World with its router; daemons stopped and checked at teardown."""
    w = World()
    try:
        yield w
    finally:
        w.close()
