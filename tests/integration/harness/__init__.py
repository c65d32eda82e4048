"""
Harness for the real-server test tier: a throwaway Prosody, a minimal raw
XMPP client, the bytestreamd daemon as a real ``twistd`` process, and a
blocking client for its control socket.

Everything here is plain blocking Python (sockets, subprocesses, threads):
these tests drive the daemon the way a user or a script does, so they must
not share a reactor with it.
"""

from .control import ControlClient, ControlError, Line, Reply, parseArgs, quote
from .daemon import (DaemonProcess, DaemonStartError, REPO_ROOT, runTwistd,
                     statusSaysConnected, twistdCommand, writeConfig)
from .prosody import ProsodyServer, ProsodyStartError, freePort
from .rawxmpp import (RawXMPPClient, StanzaSplitter, XMPPError, attr, elementName,
                      errorCondition, xmlEscape)

__all__ = [
    "ControlClient", "ControlError", "Line", "Reply", "parseArgs", "quote",
    "DaemonProcess", "DaemonStartError", "REPO_ROOT", "runTwistd",
    "statusSaysConnected", "twistdCommand", "writeConfig",
    "ProsodyServer", "ProsodyStartError", "freePort",
    "RawXMPPClient", "StanzaSplitter", "XMPPError", "attr", "elementName",
    "errorCondition", "xmlEscape",
]
