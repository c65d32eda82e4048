"""
The one place where wokkel is made to import on current Twisted.

wokkel 18.0.0 (the last release) still imports ``_PY3`` from
``twisted.python.compat`` in ``wokkel.data_form`` (and through it
``wokkel.disco``).  Twisted removed that private name when it dropped
Python 2.  We restore it -- always ``True`` on the Pythons we support --
before anything imports wokkel, and nothing else.  Every module of
bytestreamd that needs wokkel imports this module first::

    from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

Keeping the patch here means that the day wokkel is fixed or replaced, this
file is the only thing to delete.  Beyond the import problem, wokkel has
behaviours we deliberately fence off elsewhere (see ``bytestreamd.xmpp.client``):
``StreamManager`` queues stanzas while disconnected and replays them after a
reconnect, which is wrong for bytestreams, and ``jid.internJID`` caches
without bound, so untrusted input is parsed with ``JID()`` instead.
"""

import twisted.python.compat as _twisted_compat

if not hasattr(_twisted_compat, "_PY3"):
    _twisted_compat._PY3 = True

__all__: list = []
