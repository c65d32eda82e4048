"""
The local side of a link: its UNIX socket, and what joins that socket to
the bytestream.

* :mod:`.sockets` -- the per-link UNIX socket, the ``[services]`` endpoint
  client, and the protocol that reads and writes the local connection;
* :mod:`.splice` -- the byte splice: the :class:`~bytestreamd.interfaces.ILinkEnd`
  for plain byte links, which performs the end-of-link effects decided by
  :mod:`bytestreamd.links.lifecycle`.
"""

from bytestreamd.local.sockets import (LinkSocketFactory, LocalProtocol,  # noqa: F401
                                       ServiceFactory, listenLinkSocket)
from bytestreamd.local.splice import LinkClosed, RemoteProtocol, Splice  # noqa: F401
