"""
bytestreamd: XMPP bytestreams as ordinary local sockets.

A twistd daemon that keeps one XMPP client connection and exposes every
negotiated bytestream (In-Band Bytestreams, SOCKS5 Bytestreams, ...) as its
own UNIX socket, driven through a line-based control socket.
"""

__version__ = "0.1.0"
