"""
``bytestreamctl``: the command-line client of the bytestreamd control socket.

This module only parses the command line and runs one subcommand; the rest
lives in one module per concern:

* :mod:`.client`: the control connection (socket discovery, replies,
  events, the waits subcommands share);
* :mod:`.output`: the console, ``--json``, tables, the progress bar;
* :mod:`.link`: connecting to a link socket, non-blocking socket helpers;
* :mod:`.pipe`: the stdin/stdout splice of ``connect`` and ``listen``;
* :mod:`.commands`: ``status``, ``links``, ``open``, ``close``, ``watch``,
  ``connect``, ``listen``;
* :mod:`.forward`: ``forward`` (ssh -L over one ``connections=many`` link);
* :mod:`.files`: ``send`` and ``receive`` (XEP-0096), moving their bytes
  with :mod:`.transfer`.

Plain blocking sockets and :mod:`selectors`, no reactor: it must start fast
and behave like netcat when ssh runs it as a ProxyCommand, with stdin and
stdout carrying the stream and stderr the only place for words.

Exit codes: 0 success, 1 the daemon or the link said no (reply code, final
``BAD``/``ERR``), 2 usage errors and an unreachable control socket.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional, Sequence

from bytestreamd.ctl.client import (EXIT_FAILED, EXIT_USAGE, REPLY_TIMEOUT, ControlConnection,
                                    CtlError, defaultControlPath)
from bytestreamd.ctl.commands import (cmdClose, cmdConnect, cmdFingerprint, cmdForget,
                                      cmdLinks, cmdListen, cmdOpen, cmdStatus, cmdTrust,
                                      cmdWatch)
from bytestreamd.ctl.files import cmdReceive, cmdSend
from bytestreamd.ctl.forward import cmdForward
from bytestreamd.ctl.link import LINGER
from bytestreamd.ctl.output import Console

__all__ = ["buildParser", "main", "run"]


# --- command line -------------------------------------------------------------


def _common(defaults: bool) -> argparse.ArgumentParser:
    """
    Options accepted before and after the subcommand.  The subcommand copy
    has no defaults, so it does not overwrite what came before it.
    """
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    p.add_argument("--control", metavar="PATH", default=d(None),
                   help="control socket (default: $BYTESTREAMD_CONTROL, else "
                        "/run/bytestreamd/control as root, else "
                        "$XDG_RUNTIME_DIR/bytestreamd/control)")
    p.add_argument("--timeout", metavar="SECONDS", type=_positive, default=d(REPLY_TIMEOUT),
                   help="how long to wait for each reply (default %g)" % REPLY_TIMEOUT)
    p.add_argument("-v", "--verbose", action="store_true", default=d(False),
                   help="report link progress on stderr")
    return p


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0: %r" % text)
    return value


def _linkOptions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", metavar="NAME", help="service the peer connects the link to")
    _methodOptions(p)


def _methodOptions(p: argparse.ArgumentParser) -> None:
    """The options :func:`bytestreamd.ctl.commands.methodPairs` turns into OPEN's."""
    p.add_argument("--methods", metavar="M1,M2", action="append",
                   help="bytestream methods in preference order, e.g. s5b,ibb")
    p.add_argument("--block-size", metavar="N", type=int, help="IBB block size")
    p.add_argument("--stanza", choices=("iq", "message"), help="IBB stanza kind")
    e2e = p.add_mutually_exclusive_group()
    e2e.add_argument("--e2e", dest="e2e", action="store_const", const="bytes",
                     help="end-to-end: the bytes travel inside TLS between the two "
                          "daemons, or the link fails (docs/e2e.rst)")
    e2e.add_argument("--no-e2e", dest="e2e", action="store_const", const="off",
                     help="a plain link even when [links] e2e = preferred")
    e2e.add_argument("--e2e-mode", dest="e2e", choices=("bytes", "xmpp", "off"),
                     help="e2e=MODE; xmpp: the socket carries the stanzas of an "
                          "XEP-0246 stream")


def _fromOption(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="peer", metavar="JID",
                   help="only an offer from JID (bare JIDs match any resource)")


def _lingerOption(p: argparse.ArgumentParser) -> None:
    """How long to wait for a link's last event once its socket ended; hidden."""
    p.add_argument("--linger", metavar="SECONDS", type=_positive, default=LINGER,
                   help=argparse.SUPPRESS)


def buildParser() -> argparse.ArgumentParser:
    common = _common(False)
    parser = argparse.ArgumentParser(
        prog="bytestreamctl", parents=[_common(True)],
        description="Talk to bytestreamd: list, open and use XMPP bytestream links.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Any, helpText: str, withJson: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=helpText, description=helpText)
        p.set_defaults(func=func)
        if withJson:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    add("status", cmdStatus, "show the daemon's JID, server connection and counts", withJson=True)
    add("links", cmdLinks, "list links", withJson=True)
    p = add("open", cmdOpen, "open a link to JID; print its id and socket path", withJson=True)
    p.add_argument("jid", metavar="JID")
    _linkOptions(p)
    p.add_argument("--wait", action="store_true",
                   help="then wait until the link is GOOD (exit 1 if it fails)")
    p.add_argument("--wait-timeout", metavar="SECONDS", type=_positive,
                   help="give up waiting after SECONDS")
    p = add("close", cmdClose, "close link ID")
    p.add_argument("id", metavar="ID")
    p = add("watch", cmdWatch, "print events as they happen", withJson=True)
    p.add_argument("--count", metavar="N", type=int, help="exit after N events")
    for name, func, helpText in (
            ("connect", cmdConnect, "open a link to JID and pipe stdin/stdout through it "
                                    "(netcat-like; usable as ssh ProxyCommand)"),
            ("listen", cmdListen, "accept the next matching offer and pipe it to stdin/stdout")):
        p = add(name, func, helpText)
        if name == "connect":
            p.add_argument("jid", metavar="JID")
            _linkOptions(p)
        else:
            p.add_argument("--service", metavar="NAME", help="only an offer for service NAME")
            _fromOption(p)
            p.add_argument("--max-wait", metavar="SECONDS", type=_positive,
                           help="give up when no offer came within SECONDS")
        p.add_argument("-d", "--no-stdin", action="store_true",
                       help="do not read stdin (receive only); without it, EOF on "
                            "stdin ends the link once its bytes are delivered")
        _lingerOption(p)
    p = add("forward", cmdForward, "like ssh -L: listen on LOCAL and send every connection "
            "through one connections=many link to JID's service NAME")
    p.add_argument("local", metavar="LOCAL",
                   help="PORT, HOST:PORT, tcp:[HOST:]PORT, or unix:PATH")
    p.add_argument("jid", metavar="JID")
    _linkOptions(p)
    add("fingerprint", cmdFingerprint, "show this daemon's e2e certificate fingerprint "
        "(compare it with what a peer pinned)", withJson=True)
    p = add("trust", cmdTrust, "pin a peer's e2e certificate fingerprint (known-peers); "
            "without FINGERPRINT, list its pins", withJson=True)
    p.add_argument("jid", metavar="JID")
    p.add_argument("fingerprint", metavar="FINGERPRINT", nargs="?")
    p = add("forget", cmdForget, "unpin a peer's e2e fingerprints (all, or the one given)",
            withJson=True)
    p.add_argument("jid", metavar="JID")
    p.add_argument("fingerprint", metavar="FINGERPRINT", nargs="?")
    p = add("send", cmdSend, "offer FILE to JID (XEP-0234 over Jingle, else XEP-0096) and send it",
            withJson=True)
    p.add_argument("file", metavar="FILE")
    p.add_argument("jid", metavar="JID")
    p.add_argument("--desc", metavar="TEXT", help="description shown to the receiver")
    p.add_argument("--no-hash", action="store_true",
                   help="do not compute and offer the file's MD5 and SHA-256")
    p.add_argument("--negotiation", choices=("jingle", "si"),
                   help="XEP-0234 over Jingle or XEP-0096 over SI (default: the daemon "
                        "chooses Jingle for peers that advertise XEP-0234)")
    _methodOptions(p)
    _lingerOption(p)
    p = add("receive", cmdReceive, "accept the next file offer (XEP-0234 or XEP-0096) and save the file",
            withJson=True)
    p.add_argument("--dir", metavar="DIR", help="directory to save the file in (default: .)")
    _fromOption(p)
    p.add_argument("--max-wait", metavar="SECONDS", type=_positive,
                   help="give up when no file offer came within SECONDS")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing file of the same name")
    p.add_argument("--resume", action="store_true",
                   help="continue a partial file left by an earlier --resume, when the "
                        "sender allows ranged transfers; keep the partial file on failure")
    _lingerOption(p)
    return parser


def run(argv: Optional[Sequence[str]], console: Console) -> int:
    """Parse ``argv`` and run one subcommand; returns the exit code."""
    parser = buildParser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    control: Optional[ControlConnection] = None
    try:
        path = args.control or defaultControlPath(console.environ, console.euid)
        control = ControlConnection.connect(path, args.timeout)
        return args.func(control, args, console)
    except CtlError as exc:
        console.out.flush()
        console.say(exc.message)
        return exc.exitCode
    finally:
        if control is not None:
            control.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point (``bytestreamctl``)."""
    try:
        return run(argv, Console.system())
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `bytestreamctl watch | head`: stop quietly, and keep Python from
        # complaining when it flushes the dead stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
