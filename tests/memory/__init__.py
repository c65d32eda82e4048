"""
The memory tier: real daemons' object graphs on an in-memory network and
XMPP router with a fake clock (see world.py).  Fast enough to run with the
unit tests; every truth case of a link can be written here.
"""
