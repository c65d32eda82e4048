"""
The stranded tail of a relayed e2e link, kept and re-sent *below TLS*.

Prosody 0.12's proxy65 can strand a link's last few KiB in the relay
(docs/protocol.rst, "A flush, a tail, and why").  A plain link re-sends its
last payload bytes in-band, over XMPP.  An e2e link must not: those bytes
would cross the servers in clear, and a tail the servers made up would
reach the local client.  So an e2e link keeps and re-sends the bytes it
wrote to the SOCKS5 transport -- the TLS records, ciphertext -- and the
receiver feeds a received tail to the transport's input, *under* its TLS
layer, exactly where the socket's bytes go:

* the servers see only ciphertext they cannot read;
* a tail they alter or make up breaks the TLS record MAC: the TLS layer
  fails, and the link ends ``ERR`` (never ``CLOS``) with TLS's reason;
* a tail they drop is a tail that never came: the link ends ``ERR`` once
  the receiver gives up waiting (``Splice.tailTimeout``).

Counts: the ``<flush received='M'/>`` and ``<tail offset='M'/>`` of a
relayed e2e link count *transport* bytes -- every byte on the SOCKS5
connection after its SOCKS5 handshake, the clear XEP-0246 negotiation and
the TLS records included (``S5BStream.bytesSent`` on one side,
``bytesReceived`` on the other).  The end confirmation (``<eof sent/>``,
``<end sent received/>``) still counts the link's *payload* bytes, what the
local clients wrote and read, as for every link.  The wire elements are the
plain links' (docs/e2e.rst).

:class:`CipherTail` is attached by :func:`bytestreamd.e2e.secure.secure` to
the stream under a relayed e2e link when TLS is established (so that the
last records of the negotiation are kept too), and used by the link's
splice (:mod:`bytestreamd.local.splice`).
"""

from __future__ import annotations

from typing import Any, Optional

#: The last bytes written that are kept at least (at most twice as many).
KEEP = 65536


class CipherTail:
    """
    The last bytes a SOCKS5 stream wrote (ciphertext), kept to be re-sent,
    and the way in for the peer's re-sent ones.  ``transport`` is the
    stream below TLS: an :class:`~bytestreamd.methods.s5b_stream.S5BStream`
    (``onWritten``, ``bytesSent``, ``bytesReceived``, ``feedTail``).
    """

    def __init__(self, transport: Any, keep: int = KEEP):
        self.transport = transport
        self.keep = keep
        self._kept = bytearray()
        transport.onWritten = self._written

    def _written(self, data: bytes) -> None:
        kept = self._kept
        kept += data
        if len(kept) > 2 * self.keep:
            del kept[:len(kept) - self.keep]

    @property
    def sent(self) -> int:
        """Transport bytes written (the offset after the last kept byte)."""
        return self.transport.bytesSent

    @property
    def received(self) -> int:
        """Transport bytes of the peer's stream that arrived: a flush's ``received``."""
        return self.transport.bytesReceived

    @property
    def keptFrom(self) -> int:
        """The transport offset of the first byte still kept."""
        return self.transport.bytesSent - len(self._kept)

    def since(self, received: int) -> Optional[bytes]:
        """
        Our stream's bytes from transport offset ``received`` on, for a
        peer's flush: ``b""`` when nothing is missing, ``None`` when they
        are no longer (or were never) kept.
        """
        sent = self.sent
        if received >= sent:
            return b""
        keptFrom = sent - len(self._kept)
        if received < keptFrom:
            return None
        return bytes(self._kept[received - keptFrom:])

    def feed(self, offset: int, data: bytes) -> int:
        """
        The peer's re-sent bytes from transport offset ``offset``: only the
        new ones go into the transport's input, below TLS.  Returns how
        many were new.
        """
        return self.transport.feedTail(offset, data)

    def stop(self) -> None:
        """The link is over: keep nothing more."""
        if self.transport.onWritten == self._written:
            self.transport.onWritten = None
        self._kept = bytearray()


def attach(stream: Any) -> Optional[CipherTail]:
    """
    A :class:`CipherTail` for ``stream`` (the transport under a new e2e
    stream) when it goes through a relay and can take a re-sent tail;
    None otherwise (direct SOCKS5: nothing is stranded; IBB: in-band already).
    """
    if getattr(stream, "relayed", False) and callable(getattr(stream, "feedTail", None)):
        return CipherTail(stream)
    return None


__all__ = ["CipherTail", "attach", "KEEP"]
