"""
What every bytestream is, whichever method carries its bytes.

:mod:`bytestreamd.transport.base` holds the transport half that IBB
(:mod:`bytestreamd.methods.ibb_stream`), SOCKS5
(:mod:`bytestreamd.methods.s5b_stream`) and later Jingle's streams share:
holding bytes until a protocol is attached, pause and resume towards it, the
order in which the end is delivered, and ``startTLS``
(:mod:`bytestreamd.transport.tls`).  A method module keeps only what is its
own: how bytes reach the peer and how the peer ends.
"""

from bytestreamd.transport.base import BytestreamTransport

__all__ = ["BytestreamTransport"]
