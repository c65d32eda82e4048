"""
The twistd plugin's code: command-line options and ``makeService``.

``twistd bytestreamd --help`` only imports this module and
:mod:`bytestreamd.config`; the daemon itself (and wokkel) is imported when
the service is made.  The configuration is loaded and validated in
``postOptions`` so that a bad config makes twistd print the problem and exit
non-zero before it daemonizes, opens a log or touches a socket.

This is the only module that imports the global reactor.
"""

from __future__ import annotations

import textwrap
from typing import Dict, List, Optional

from twisted.application.service import IService
from twisted.python import usage

from bytestreamd import __version__
from bytestreamd.config import Config, loadConfig
from bytestreamd.errors import ConfigError

LONGDESC = """\
bytestreamd keeps one XMPP client connection and exposes XMPP bytestreams
(SOCKS5 Bytestreams XEP-0065, In-Band Bytestreams XEP-0047, negotiated with
Stream Initiation XEP-0095) as local UNIX sockets, driven through a line-based
control socket at <runtime_dir>/control.

Settings come from the INI file given with --config (see
etc/bytestreamd.conf for every key and its default); the options below
override the file.  There is deliberately no --password option: a secret on
the command line is visible to every local user in the process list.  Put it
in a file readable only by the daemon and use --password-file (or
password_file in the config).

Run in the foreground with `twistd -n --pidfile= bytestreamd --config FILE`
(systemd, containers).  The configuration is checked before anything starts;
a problem is reported with its [section] and key.
"""

#: option name -> "section.key" of the config file it overrides.
OVERRIDES: Dict[str, str] = {
    "jid": "xmpp.jid",
    "password-file": "xmpp.password_file",
    "host": "xmpp.host",
    "port": "xmpp.port",
    "ca-certs": "xmpp.ca_certs",
    "tls": "xmpp.tls",
    "runtime-dir": "daemon.runtime_dir",
    "socket-mode": "daemon.socket_mode",
    "socket-group": "daemon.socket_group",
    "methods": "links.methods",
}


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = LONGDESC

    optParameters = [
        ["config", "c", None,
         "INI configuration file (e.g. /etc/bytestreamd/bytestreamd.conf)."],
        ["jid", None, None,
         "The daemon's XMPP account, user@domain[/resource] "
         "(resource defaults to 'bytestreamd'). [xmpp] jid"],
        ["password-file", None, None,
         "File holding the account's password (one trailing newline is "
         "ignored). [xmpp] password_file"],
        ["host", None, None,
         "Connect to this host instead of looking up the domain's SRV "
         "records. [xmpp] host"],
        ["port", None, None,
         "Port to connect to with --host (default 5222). [xmpp] port"],
        ["ca-certs", None, None,
         "Comma-separated PEM files of extra trust roots for the server's "
         "certificate. [xmpp] ca_certs"],
        ["tls", None, None,
         "'verify' (default) or 'insecure' (do not verify the server "
         "certificate; logged loudly). [xmpp] tls"],
        ["runtime-dir", None, None,
         "Directory for the control socket and link sockets (default "
         "$RUNTIME_DIRECTORY, /run/bytestreamd as root, else "
         "$XDG_RUNTIME_DIR/bytestreamd). [daemon] runtime_dir"],
        ["socket-mode", None, None,
         "Octal mode of the sockets, 0600 (default) or 0660. "
         "[daemon] socket_mode"],
        ["socket-group", None, None,
         "Group name or gid owning the sockets (with --socket-mode 0660). "
         "[daemon] socket_group"],
        ["methods", None, None,
         "Bytestream methods in preference order, e.g. 's5b,ibb' "
         "(default). [links] methods"],
    ]

    optFlags = [
        ["log-traffic", None,
         "Log every XML stanza sent and received (very verbose; shows "
         "data). [daemon] log_traffic"],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["allow"] = []
        #: The validated configuration, set by postOptions.
        self.config: Optional[Config] = None

    def opt_allow(self, pattern: str) -> None:
        self["allow"].append(pattern)

    opt_allow.__doc__ = (
        "Accept offers from this JID or pattern (alice@example.org, "
        "*@example.org, example.org); repeat for more.  Replaces [accept] "
        "allow.  The daemon's own bare JID is always allowed.")

    def opt_version(self) -> None:
        """Print bytestreamd's version and exit."""
        print("bytestreamd %s" % (__version__,))
        raise SystemExit(0)

    def getUsage(self, width: Optional[int] = None) -> str:
        # usage.Options wraps longdesc into one paragraph; keep ours apart.
        longdesc, self.longdesc = self.longdesc, ""
        try:
            text = usage.Options.getUsage(self, width)
        finally:
            self.longdesc = longdesc
        paragraphs = [textwrap.fill(" ".join(p.split()), width or 79)
                      for p in longdesc.split("\n\n")]
        return text + "\n" + "\n\n".join(paragraphs) + "\n"

    def overrides(self) -> Dict[str, str]:
        """The command-line values as loadConfig overrides."""
        result: Dict[str, str] = {}
        for option, dotted in OVERRIDES.items():
            if self[option] is not None:
                result[dotted] = self[option]
        allow: List[str] = self["allow"]
        if allow:
            result["accept.allow"] = ", ".join(allow)
        if self["log-traffic"]:
            result["daemon.log_traffic"] = "yes"
        return result

    def postOptions(self) -> None:
        try:
            self.config = loadConfig(self["config"], self.overrides())
        except ConfigError as e:
            raise usage.UsageError(str(e))


def makeService(options: Options) -> IService:
    """
    The daemon's service for twistd.  ``options.config`` was validated by
    postOptions.
    """
    from twisted.internet import reactor

    from bytestreamd import daemon

    config = options.config
    if config is None:  # makeService called without parseOptions
        options.postOptions()
        config = options.config
    return daemon.Daemon(config, reactor)
