"""
The link subcommands: ``status``, ``links``, ``open``, ``close``, ``watch``,
and the netcat-like ``connect`` and ``listen``.  Each is
``cmdX(control, args, console) -> exit code`` and raises
:class:`~bytestreamd.ctl.client.CtlError` for what the user must hear.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from bytestreamd.control.grammar import formatValue
from bytestreamd.ctl.client import (EXIT_OK, ControlConnection, CtlError, Event, deadlineAfter,
                                    listLinks, nextOffer, parseLine, peerMatches, waitGood)
from bytestreamd.ctl.output import Console, jsonValue, printJSON, writeFields, writeTable
from bytestreamd.ctl.pipe import pipe

Pairs = Iterable[Tuple[str, Optional[str]]]


def openLine(jid: str, pairs: Pairs) -> str:
    """``OPEN <jid> key=value...``, leaving out the options whose value is ``None``."""
    return " ".join(["OPEN", formatValue(jid)] + [
        "%s=%s" % (key, formatValue(value)) for key, value in pairs if value is not None])


def methodPairs(args: argparse.Namespace) -> List[Tuple[str, Optional[str]]]:
    """The ``OPEN`` options of ``--methods``, ``--block-size`` and ``--stanza``."""
    return [
        ("methods", ",".join(_splitMethods(args.methods)) if args.methods else None),
        ("block-size", None if args.block_size is None else str(args.block_size)),
        ("stanza", args.stanza),
        ("e2e", getattr(args, "e2e", None)),
    ]


def _splitMethods(values: Sequence[str]) -> List[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _openCommand(args: argparse.Namespace) -> str:
    return openLine(args.jid, [("service", args.service)] + methodPairs(args))


def cmdStatus(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    reply = control.check("STATUS")
    pairs: List[Tuple[str, str]] = []
    info: List[str] = []
    for line in reply.lines[:-1]:
        words, options = parseLine(line)
        pairs.extend(options.items())
        if words:
            info.append(line)
    if args.json:
        obj: Dict[str, Any] = {}
        for key, value in pairs:
            obj[key] = int(value) if value.isascii() and value.isdigit() else value
        if info:
            obj["info"] = info
        printJSON(console, obj)
    else:
        writeFields(console.out, pairs)
        for line in info:
            console.out.write(line + "\n")
    return EXIT_OK


_LINK_COLUMNS = [("link", "LINK"), ("state", "STATE"), ("direction", "DIR"),
                 ("peer", "PEER"), ("method", "METHOD"), ("service", "SERVICE"),
                 ("sent", "SENT"), ("received", "RECEIVED"), ("socket", "SOCKET")]


def cmdLinks(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    rows = listLinks(control)
    if args.json:
        printJSON(console, [{k: jsonValue(k, v) for k, v in row.items()} for row in rows])
        return EXIT_OK
    if not rows:
        console.out.write("no links\n")
        return EXIT_OK
    writeTable(console.out, [title for _, title in _LINK_COLUMNS],
               [[row.get(key) or "-" for key, _ in _LINK_COLUMNS] for row in rows])
    return EXIT_OK


def cmdOpen(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    reply = control.check(_openCommand(args))
    options = reply.options()
    linkId, path = options.get("link", ""), options.get("socket", "-")
    if args.json:
        printJSON(console, {"link": linkId, "socket": path})
    else:
        console.out.write("%s %s\n" % (linkId, path))
    console.out.flush()
    if not args.wait:
        return EXIT_OK
    if waitGood(control, linkId, deadlineAfter(args.wait_timeout)) is None:
        raise CtlError("link %s not GOOD within %g s" % (linkId, args.wait_timeout))
    return EXIT_OK


def _pairsCommand(control: ControlConnection, line: str, args: argparse.Namespace,
                  console: Console) -> int:
    reply = control.check(line)
    pairs: List[Tuple[str, str]] = []
    for text in reply.lines[:-1]:
        words, options = parseLine(text)
        pairs.extend(options.items())
    if args.json:
        obj: Dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:  # several pins
                obj[key] = (obj[key] if isinstance(obj[key], list) else [obj[key]]) + [value]
            else:
                obj[key] = value
        printJSON(console, obj)
    else:
        writeFields(console.out, pairs)
    return EXIT_OK


def cmdFingerprint(control: ControlConnection, args: argparse.Namespace,
                   console: Console) -> int:
    return _pairsCommand(control, "FINGERPRINT", args, console)


def cmdTrust(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    line = "TRUST " + formatValue(args.jid)
    if args.fingerprint:
        line += " " + formatValue(args.fingerprint)
    return _pairsCommand(control, line, args, console)


def cmdForget(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    line = "FORGET " + formatValue(args.jid)
    if args.fingerprint:
        line += " " + formatValue(args.fingerprint)
    return _pairsCommand(control, line, args, console)


def cmdClose(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    control.check("CLOSE " + formatValue(args.id))
    return EXIT_OK


def cmdWatch(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    control.check("WATCH")
    seen = 0
    while args.count is None or seen < args.count:
        event = control.nextEvent()
        assert event is not None
        seen += 1
        if args.json:
            printJSON(console, event.toJSON(), indent=None)
        else:
            console.out.write(event.text + "\n")
            console.out.flush()
    return EXIT_OK


def cmdConnect(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    return pipe(control, control.check(_openCommand(args)), console, args)


def cmdListen(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    control.check("WATCH")

    def matches(event: Event) -> bool:
        return ((args.service is None or event.options.get("service") == args.service)
                and peerMatches(event.options.get("from", ""), args.peer))

    event = nextOffer(control, matches, deadlineAfter(args.max_wait))
    if event is None:
        raise CtlError("no matching offer within %g s" % args.max_wait)
    if args.verbose:
        console.say("accepting offer %s" % event.text)
    reply = control.check("ACCEPT " + formatValue(event.subject or ""))
    return pipe(control, reply, console, args)
