"""
Sans-I/O SOCKS5 handshakes as XEP-0065 uses them (RFC 1928, no
authentication, CONNECT to a DOMAINNAME that is the 40-hex-digit SHA-1
DST.ADDR, port 0).

Each machine is fed bytes and returns a list of outputs -- bytes to
:class:`Send`, and events (:class:`ConnectRequest`, :class:`Established`,
:class:`Failed`) -- and never touches a socket or a clock, so every byte
boundary and every piece of junk can be tested directly.  The Twisted
protocols in :mod:`bytestreamd.methods.s5b` are thin adapters around them,
and own the time limits.

Buffering is bounded by construction: each message has a length known
after a few bytes and a field that does not fit XEP-0065 is refused as soon
as it is seen, so a peer cannot make a machine hold more than one message
(plus ``maxEarlyData`` bytes a server holds while its caller decides).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Union

VERSION = 5
METHOD_NO_AUTH = 0x00
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04

SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02
NETWORK_UNREACHABLE = 0x03
HOST_UNREACHABLE = 0x04
CONNECTION_REFUSED = 0x05
TTL_EXPIRED = 0x06
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08

REPLY_TEXT = {
    GENERAL_FAILURE: "general SOCKS server failure",
    NOT_ALLOWED: "connection not allowed by ruleset",
    NETWORK_UNREACHABLE: "network unreachable",
    HOST_UNREACHABLE: "host unreachable",
    CONNECTION_REFUSED: "connection refused",
    TTL_EXPIRED: "TTL expired",
    COMMAND_NOT_SUPPORTED: "command not supported",
    ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}

#: XEP-0065 DST.ADDR: hex SHA-1.
DST_ADDR_LENGTH = 40
_HEX = frozenset(b"0123456789abcdefABCDEF")


def replyText(code: int) -> str:
    """``host unreachable (4)``: the words and the number, for reasons."""
    return "%s (%d)" % (REPLY_TEXT.get(code, "unknown reply code"), code)


@dataclass(frozen=True)
class Send:
    """Bytes to write to the peer."""

    data: bytes


@dataclass(frozen=True)
class ConnectRequest:
    """
    (server) The client asked to CONNECT to ``address`` (a lower-case hex
    SHA-1) and ``port``; the caller must call ``accept()`` or ``refuse()``.
    """

    address: str
    port: int


@dataclass(frozen=True)
class Established:
    """
    The handshake is complete.  ``data`` is what the peer sent after it:
    the first bytes of the bytestream.
    """

    data: bytes


@dataclass(frozen=True)
class Failed:
    """The handshake failed; ``reason`` is words for an operator. Close."""

    reason: str


Output = Union[Send, ConnectRequest, Established, Failed]


def _reply(code: int, address: bytes = b"", port: int = 0) -> bytes:
    """A reply; BND.ADDR/BND.PORT echo the request, as XEP-0065 requires."""
    if address:
        return struct.pack("!BBBBB", VERSION, code, 0, ATYP_DOMAIN, len(address)) \
            + address + struct.pack("!H", port)
    return struct.pack("!BBBB4sH", VERSION, code, 0, ATYP_IPV4, b"\0\0\0\0", 0)


def connectRequest(address: str, port: int = 0) -> bytes:
    """The CONNECT request for a DOMAINNAME address."""
    raw = address.encode("ascii")
    return struct.pack("!BBBBB", VERSION, CMD_CONNECT, 0, ATYP_DOMAIN, len(raw)) \
        + raw + struct.pack("!H", port)


class _Machine:
    _state: str

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def state(self) -> str:
        return self._state

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def failed(self) -> bool:
        return self._state == "failed"

    def _fail(self, reason: str, *before: Output) -> List[Output]:
        self._state = "failed"
        self._buffer = b""
        return list(before) + [Failed(reason)]

    def feed(self, data: bytes) -> List[Output]:
        """Bytes from the peer; returns what to do, in order."""
        if self._state == "failed":
            return []  # junk after a failure: the caller is closing anyway
        if self._state == "done":
            raise RuntimeError("the SOCKS5 handshake is over: bytes belong to the stream")
        self._buffer += data
        return self._advance()

    def _advance(self) -> List[Output]:
        raise NotImplementedError


class ServerHandshake(_Machine):
    """
    The streamhost side: greeting -> ``05 00``; CONNECT request ->
    :class:`ConnectRequest`; then the caller's ``accept()`` (reply success,
    :class:`Established`) or ``refuse()``.  Bytes the client sends while
    the caller decides are held, up to ``maxEarlyData``, and handed over in
    :class:`Established`.
    """

    def __init__(self, maxEarlyData: int = 65536) -> None:
        _Machine.__init__(self)
        self.maxEarlyData = maxEarlyData
        self._state = "greeting"
        self._address = b""
        self._port = 0

    def _advance(self) -> List[Output]:
        out: List[Output] = []
        if self._state == "greeting":
            out += self._greeting()
        if self._state == "request":
            out += self._request()
        if self._state == "deciding" and len(self._buffer) > self.maxEarlyData:
            return out + self._fail(
                "SOCKS5 client sent more than %d bytes before its CONNECT was answered"
                % self.maxEarlyData)
        return out

    def _greeting(self) -> List[Output]:
        buf = self._buffer
        if len(buf) < 1:
            return []
        if buf[0] != VERSION:
            return self._fail("not a SOCKS5 client (first byte 0x%02x)" % buf[0])
        if len(buf) < 2:
            return []
        count = buf[1]
        if count == 0:
            return self._fail("SOCKS5 client offered no authentication method",
                              Send(bytes([VERSION, METHOD_NONE_ACCEPTABLE])))
        if len(buf) < 2 + count:
            return []
        methods = buf[2:2 + count]
        self._buffer = buf[2 + count:]
        if METHOD_NO_AUTH not in methods:
            return self._fail(
                "SOCKS5 client does not offer 'no authentication' (offers %s)"
                % ", ".join("0x%02x" % m for m in methods),
                Send(bytes([VERSION, METHOD_NONE_ACCEPTABLE])))
        self._state = "request"
        return [Send(bytes([VERSION, METHOD_NO_AUTH]))]

    def _request(self) -> List[Output]:
        buf = self._buffer
        if len(buf) < 4:
            return []
        version, command, _reserved, atyp = buf[0], buf[1], buf[2], buf[3]
        if version != VERSION:
            return self._fail("SOCKS5 request with version byte 0x%02x" % version,
                              Send(_reply(GENERAL_FAILURE)))
        if command != CMD_CONNECT:
            return self._fail("SOCKS5 command 0x%02x is not CONNECT" % command,
                              Send(_reply(COMMAND_NOT_SUPPORTED)))
        if atyp != ATYP_DOMAIN:
            return self._fail("SOCKS5 address type 0x%02x is not DOMAINNAME" % atyp,
                              Send(_reply(ADDRESS_TYPE_NOT_SUPPORTED)))
        if len(buf) < 5:
            return []
        length = buf[4]
        if length != DST_ADDR_LENGTH:
            return self._fail("SOCKS5 DST.ADDR of %d bytes is not a SHA-1 hash" % length,
                              Send(_reply(NOT_ALLOWED)))
        end = 5 + length + 2
        if len(buf) < end:
            return []
        address = buf[5:5 + length]
        (port,) = struct.unpack("!H", buf[5 + length:end])
        if not _HEX.issuperset(address):
            return self._fail("SOCKS5 DST.ADDR is not hexadecimal",
                              Send(_reply(NOT_ALLOWED)))
        self._buffer = buf[end:]
        self._address = address
        self._port = port
        self._state = "deciding"
        return [ConnectRequest(address.decode("ascii").lower(), port)]

    def accept(self) -> List[Output]:
        """Answer the pending CONNECT with success: the stream begins."""
        if self._state != "deciding":
            raise RuntimeError("no CONNECT request to accept (state %s)" % self._state)
        self._state = "done"
        early, self._buffer = self._buffer, b""
        return [Send(_reply(SUCCEEDED, self._address, self._port)), Established(early)]

    def refuse(self, code: int = HOST_UNREACHABLE, reason: str = "") -> List[Output]:
        """Answer the pending CONNECT with failure ``code``."""
        if self._state != "deciding":
            raise RuntimeError("no CONNECT request to refuse (state %s)" % self._state)
        return self._fail(reason or "CONNECT refused: %s" % replyText(code),
                          Send(_reply(code, self._address, self._port)))


class ClientHandshake(_Machine):
    """
    The side that connects to a streamhost (the target, or the requester
    joining a proxy): offer no authentication, CONNECT to ``address``
    (the DST.ADDR hash) port ``port`` (0 in XEP-0065), read the reply.
    BND.ADDR in the reply is not checked: XEP-0065 says it echoes DST.ADDR,
    but some proxies answer with an IP address, and nothing depends on it.
    """

    def __init__(self, address: str, port: int = 0) -> None:
        _Machine.__init__(self)
        raw = address.encode("ascii")
        if not 0 < len(raw) < 256:
            raise ValueError("SOCKS5 DOMAINNAME must be 1..255 bytes")
        self.address = address
        self.port = port
        self._state = "idle"

    def start(self) -> List[Output]:
        """The connection is up: send the greeting."""
        if self._state != "idle":
            raise RuntimeError("the SOCKS5 handshake has already started")
        self._state = "method"
        return [Send(bytes([VERSION, 1, METHOD_NO_AUTH]))]

    def feed(self, data: bytes) -> List[Output]:
        if self._state == "idle":
            raise RuntimeError("bytes before start(): the server spoke first")
        return _Machine.feed(self, data)

    def _advance(self) -> List[Output]:
        out: List[Output] = []
        if self._state == "method":
            out += self._method()
        if self._state == "reply":
            out += self._reply()
        return out

    def _method(self) -> List[Output]:
        buf = self._buffer
        if len(buf) < 2:
            return []
        version, method = buf[0], buf[1]
        if version != VERSION:
            return self._fail("streamhost is not a SOCKS5 server (first byte 0x%02x)" % version)
        if method == METHOD_NONE_ACCEPTABLE:
            return self._fail("streamhost requires authentication")
        if method != METHOD_NO_AUTH:
            return self._fail("streamhost chose authentication method 0x%02x, "
                              "which we did not offer" % method)
        self._buffer = buf[2:]
        self._state = "reply"
        return [Send(connectRequest(self.address, self.port))]

    def _reply(self) -> List[Output]:
        buf = self._buffer
        if len(buf) < 4:
            return []
        version, code, _reserved, atyp = buf[0], buf[1], buf[2], buf[3]
        if version != VERSION:
            return self._fail("streamhost sent a reply with version byte 0x%02x" % version)
        if code != SUCCEEDED:
            return self._fail("SOCKS5 error from streamhost: %s" % replyText(code))
        if atyp == ATYP_IPV4:
            end = 4 + 4 + 2
        elif atyp == ATYP_IPV6:
            end = 4 + 16 + 2
        elif atyp == ATYP_DOMAIN:
            if len(buf) < 5:
                return []
            end = 5 + buf[4] + 2
        else:
            return self._fail("streamhost replied with unknown address type 0x%02x" % atyp)
        if len(buf) < end:
            return []
        self._state = "done"
        rest, self._buffer = buf[end:], b""
        return [Established(rest)]
