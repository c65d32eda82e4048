"""XEP-0260 (placeholder while being written)."""

from __future__ import annotations

import secrets
from typing import Any

from twisted.internet import defer

from bytestreamd.errors import MethodFailed
from bytestreamd.wire.jingle_s5b import S5BTransport


class S5BDriver:
    name = "s5b"

    def __init__(self, control: Any, method: Any):
        self.control = control
        self.method = method

    def prepare(self):
        return defer.succeed(S5BTransport("bjs" + secrets.token_hex(8)))

    def start(self, answer: Any) -> None:
        self.control.clock.callLater(0, self.control.transportFailed, self, "not yet")

    def answer(self, offer: Any):
        return defer.succeed(S5BTransport(offer.sid))

    def startAnswered(self, offer: Any) -> None:
        self.control.clock.callLater(0, self.control.transportFailed, self, "not yet")

    def info(self, transport: Any) -> None:
        pass

    def stop(self) -> None:
        pass
