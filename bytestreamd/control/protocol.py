"""
The daemon side of the control socket: a thin adapter from lines to
:class:`bytestreamd.interfaces.IControlBackend` calls and back.

Three promises to the client are kept here and nowhere else:

* one reply per command, in command order, each written with a single
  ``transport.write`` -- even when an earlier command (``PROBE``) answers
  later, replies behind it wait;
* an event never splits a reply, and an event caused by a command (``650
  LINK <id> INIT`` emitted inside ``open()``) comes after that command's
  reply, so a client has learnt the link id before it sees events about it;
* exceptions become reply codes at this one boundary: a ``ControlError``
  is ``<code> <text>``, anything else is logged and answered ``550``.

A line that is too long is answered once and skipped up to its LF, unlike
``LineOnlyReceiver`` which drops the whole connection.

Why one long module: it is the one boundary where exceptions become reply codes; each command's handler is short.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Union

from twisted.internet import defer, interfaces, protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from bytestreamd import application, events
from bytestreamd.control import grammar
from bytestreamd.errors import (
    ControlError,
    SyntaxErrorInArgument,
    UnknownCommand,
    UnknownOption,
)
from bytestreamd.events import Event, LinkInfo
from bytestreamd.text import SafeLogger, badCharacter

log = SafeLogger()

#: Commands read but not yet answered before we stop reading the socket.
#: Only reachable by pipelining behind slow commands; keeps a client from
#: making us queue without bound.
MAX_PENDING = 64

#: Bytes of replies and events a connection may owe a client that has
#: stopped reading, beyond the transport's own buffer, before it is dropped.
MAX_BACKLOG = 1 << 20

#: How much of an unexpected exception's text goes into a 550 reply.
_SHORT = 200

_STANZAS = ("iq", "message")

#: ``OPEN ... profile=`` names -> application names (bytestreamd.application;
#: no negotiation framework's namespace reaches the control channel).
_PROFILES = application.PROFILE_NAMES
#: The OPEN options that describe a file (profile=file only).
_FILE_OPTIONS = ("name", "size", "hash", "date", "desc", "range")
#: XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD (seconds optional, as
#: XEP-0096's own example shows).
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_YES = ("yes", "true", "1")
_NO = ("no", "false", "0")
_FINAL_STATES = (events.CLOS, events.ERR)
#: Options whose value is free text over several lines: the control
#: characters they may hold (XEP-0096's <desc/> is a paragraph).
_MULTILINE = {"desc": "\n\t"}
#: As the link profile's codec allows (bytestreamd.wire.si.checkServiceName).
_MAX_SERVICE = 255


@dataclass
class _Spec:
    """How one verb is called: its positional arguments and options."""

    syntax: str
    help: str
    args: Tuple[str, ...] = ()
    optionalArgs: Tuple[str, ...] = ()
    options: Tuple[str, ...] = ()


_COMMANDS: Dict[str, _Spec] = {
    "OPEN": _Spec(
        "OPEN <jid> [service=NAME] [methods=m1,m2] [block-size=N] [stanza=iq|message] "
        "[negotiation=jingle|si] [connections=one|many] [profile=link|file] [name=NAME size=N [hash=MD5] [date=ISO8601] [desc=TEXT] "
        "[range=yes]]",
        "open an outgoing link (profile=file: offer a file, XEP-0096); "
        "progress comes as 650 LINK events",
        args=("jid",), options=("service", "methods", "block-size", "stanza", "profile",
                                 "negotiation", "connections")
        + _FILE_OPTIONS),
    "ACCEPT": _Spec("ACCEPT <id> [offset=N] [length=N]",
                    "accept an offered link (offset/length: part of a ranged file offer)",
                    args=("id",), options=("offset", "length")),
    "REJECT": _Spec("REJECT <id> [reason=TEXT]", "refuse an offered link",
                    args=("id",), options=("reason",)),
    "CLOSE": _Spec("CLOSE <id>", "close a link or withdraw an offer", args=("id",)),
    "LINKS": _Spec("LINKS", "list links and pending offers"),
    "STATUS": _Spec("STATUS", "show the daemon's own JID, connection and counts"),
    "PROBE": _Spec("PROBE <jid>", "ask a peer which bytestream features it supports",
                   args=("jid",)),
    "WATCH": _Spec("WATCH", "receive every event on this connection, offers too"),
    "UNWATCH": _Spec("UNWATCH", "receive only events about this connection's links"),
    "HELP": _Spec("HELP [command]", "describe the commands", optionalArgs=("command",)),
    "QUIT": _Spec("QUIT", "close this control connection"),
}


@dataclass
class _Slot:
    """A place in the output: a reply (maybe not ready yet) or an event."""

    data: Optional[bytes] = None
    closeAfter: bool = False
    pending: Optional[defer.Deferred] = field(default=None, repr=False)


Result = Union[bytes, "defer.Deferred[bytes]"]


class ControlProtocol(protocol.Protocol):
    """One control connection."""

    def __init__(self, backend: Any):
        self.backend = backend
        self._buffer = bytearray()
        self._discarding = False
        self._queue: Deque[_Slot] = deque()
        self._executing = False
        self._held: List[Event] = []
        self._links: Set[str] = set()
        self._watching = False
        self._closing = False
        self._paused = False
        self._quitting = False
        self._sink: Optional[Callable[[Event], None]] = None

    # --- connection life -------------------------------------------------

    def connectionMade(self) -> None:
        self._sink = self.eventReceived
        self.backend.subscribe(self._sink)
        # Know when the client stops reading: the transport pauses us once
        # its send buffer is full.  See _send.
        self._outputPaused = False
        self._backlog = 0
        self.transport.registerProducer(_OutputWatch(self), True)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._closing = True
        self._buffer.clear()
        pending = [slot.pending for slot in self._queue if slot.pending is not None]
        self._queue.clear()
        self._held = []
        for d in pending:
            d.cancel()
        try:
            if self._sink is not None:
                self.backend.unsubscribe(self._sink)
            self.backend.forgetOwner(self)
        except Exception:
            log.failure("control backend failed to forget a closed connection")

    # --- input -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer += data
        self._processBuffer()

    def _processBuffer(self) -> None:
        """Split off complete lines; stop while too many replies are owed."""
        while not (self._closing or self._paused or self._quitting):
            end = self._buffer.find(b"\n")
            if self._discarding:
                if end < 0:
                    self._buffer.clear()
                    return
                del self._buffer[:end + 1]
                self._discarding = False
                continue
            if end < 0:
                # A full line plus a CR may still be waiting for its LF.
                if len(self._buffer) > grammar.MAX_LINE + 1:
                    self._buffer.clear()
                    self._discarding = True
                    self._lineTooLong()
                return
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > grammar.MAX_LINE:
                self._lineTooLong()
            else:
                self._lineReceived(line)
            if len(self._queue) >= MAX_PENDING and not self._paused:
                self._paused = True
                self.transport.pauseProducing()

    def _lineTooLong(self) -> None:
        self._answer(lambda: _raise(SyntaxErrorInArgument(
            "line too long (max %d bytes)" % grammar.MAX_LINE)))

    def _lineReceived(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = SyntaxErrorInArgument(
                "line is not valid UTF-8 (byte %d)" % (exc.start + 1))
            self._answer(lambda: _raise(error))
            return
        if not line.strip(" \t"):
            return
        self._answer(lambda: self._execute(line))

    # --- output ordering -------------------------------------------------

    def _answer(self, run: Callable[[], Result]) -> None:
        """
        Run one command with a place reserved in the output.  Events that
        arrive while it runs are held and routed only once it has returned,
        so they follow its reply and see the link ids it produced.
        """
        slot = _Slot()
        self._queue.append(slot)
        self._executing = True
        try:
            try:
                result = run()
            except Exception:
                result = _failureReply(Failure())
        finally:
            self._executing = False
        slot.closeAfter = self._quitting
        if isinstance(result, defer.Deferred):
            slot.pending = result
            result.addErrback(_failureReply)
            result.addCallback(self._fill, slot)
        else:
            slot.data = result
        held, self._held = self._held, []
        for event in held:
            self._route(event)
        self._flush()

    def _fill(self, data: bytes, slot: _Slot) -> None:
        slot.pending = None
        if self._closing:
            return
        slot.data = data
        self._flush()

    def _flush(self) -> None:
        while self._queue and self._queue[0].data is not None:
            slot = self._queue.popleft()
            self._send(slot.data)
            if slot.closeAfter:
                self._closing = True
                self._queue.clear()
                self.transport.loseConnection()
                return
        if self._paused and len(self._queue) < MAX_PENDING // 2:
            self._paused = False
            self.transport.resumeProducing()
            self._processBuffer()

    # --- events ----------------------------------------------------------

    def eventReceived(self, event: Event) -> None:
        """The backend's sink: every event of the daemon comes here."""
        if self._closing:
            return
        if self._executing:
            self._held.append(event)
            return
        self._route(event)
        self._flush()

    def _wants(self, event: Event) -> bool:
        if event.broadcast or self._watching:
            return True
        if event.kind == "OFFER":
            return False
        return event.linkId is not None and event.linkId in self._links

    def _route(self, event: Event) -> None:
        if self._closing or not self._wants(event):
            return
        if event.kind == "LINK" and event.linkId is not None and _isFinal(event):
            self._links.discard(event.linkId)
        try:
            data = grammar.formatEvent(event)
        except Exception:
            log.failure("cannot format event {event!r}", event=event)
            return
        # Behind a ready reply that waits for an earlier one, an event must
        # wait too; with only unanswered commands queued it may go now.
        if any(slot.data is not None for slot in self._queue):
            self._queue.append(_Slot(data))
        else:
            self._send(data)

    def _send(self, data: bytes) -> None:
        """
        Write to the client, bounded: a client that stops reading (a WATCH
        left in a stopped terminal, a crashed script) would otherwise make
        the daemon buffer every event for it, forever.  Past MAX_BACKLOG
        bytes written while the transport is full, the connection is dropped.
        """
        if self._outputPaused:
            self._backlog += len(data)
            if self._backlog > MAX_BACKLOG:
                log.warn("control client is not reading ({n} bytes waiting); "
                         "disconnecting it", n=self._backlog)
                self._closing = True
                self.transport.abortConnection()
                return
        self.transport.write(data)

    # --- commands ----------------------------------------------------------

    def _execute(self, line: str) -> Result:
        command = grammar.parseCommand(line)
        assert command is not None  # blank lines never get here
        spec = _COMMANDS.get(command.verb)
        if spec is None:
            raise UnknownCommand("unknown command %s" % grammar.formatValue(command.verb))
        for key in command.options:
            if key not in spec.options:
                raise UnknownOption("unknown option %s for %s"
                                    % (grammar.formatValue(key), command.verb))
        low, high = len(spec.args), len(spec.args) + len(spec.optionalArgs)
        if not low <= len(command.args) <= high:
            raise SyntaxErrorInArgument("usage: %s" % spec.syntax)
        for name, value in zip(spec.args + spec.optionalArgs, command.args):
            _checkText(name, value)
        for key, value in command.options.items():
            _checkText(key, value, _MULTILINE.get(key, ""))
        handler = getattr(self, "do_" + command.verb)
        return handler(*command.args, **{key.replace("-", "_"): value
                                         for key, value in command.options.items()})

    def do_OPEN(self, jid: str, service: Optional[str] = None,
                methods: Optional[str] = None, block_size: Optional[str] = None,
                stanza: Optional[str] = None, profile: Optional[str] = None,
                negotiation: Optional[str] = None, connections: Optional[str] = None,
                **fileOptions: str) -> bytes:
        peer = grammar.parseJID(jid)
        if service is not None and not service:
            raise SyntaxErrorInArgument("service= needs a name")
        if service is not None and (len(service) > _MAX_SERVICE
                                    or any(ch.isspace() for ch in service)):
            raise SyntaxErrorInArgument(
                "service: a service name is 1 to %d characters without spaces"
                % _MAX_SERVICE)
        namespace = _parseProfile(profile)
        extra: Dict[str, Any] = {}
        if namespace == application.FILE_PROFILE:
            if service is not None:
                raise SyntaxErrorInArgument("service= cannot be used with profile=file")
            # Only a file offer passes these, so backends that know nothing
            # of profiles keep working.
            extra = {"profile": namespace, "headers": _fileHeaders(fileOptions)}
        elif fileOptions:
            raise SyntaxErrorInArgument(
                "%s= describe a file: it needs profile=file" % sorted(fileOptions)[0])
        if negotiation is not None:
            # Passed only when given, so backends without it keep working.
            extra["negotiation"] = _parseNegotiation(negotiation)
        if connections is not None:
            if connections.lower() not in ("one", "many"):
                raise SyntaxErrorInArgument("connections= must be one or many")
            if connections.lower() == "many":
                extra["connections"] = "many"
        info = self.backend.open(
            peer, owner=self, service=service,
            methods=None if methods is None else _parseMethods(methods),
            blockSize=None if block_size is None else _parseBlockSize(block_size),
            stanza=None if stanza is None else _parseStanza(stanza), **extra)
        return self._linkReply(info)

    def do_ACCEPT(self, linkId: str, offset: Optional[str] = None,
                  length: Optional[str] = None) -> bytes:
        extra: Dict[str, int] = {}
        if offset is not None:
            extra["offset"] = _parseCount("offset", offset)
        if length is not None:
            extra["length"] = _parseCount("length", length)
        return self._linkReply(self.backend.accept(_linkId(linkId), owner=self, **extra))

    def _linkReply(self, info: LinkInfo) -> bytes:
        self._links.add(info.id)
        return grammar.formatReply(250, [grammar.formatOptions(
            [("link", info.id), ("socket", _dash(info.socket))])])

    def do_REJECT(self, linkId: str, reason: Optional[str] = None) -> bytes:
        self.backend.reject(_linkId(linkId), reason=reason)
        return _ok()

    def do_CLOSE(self, linkId: str) -> bytes:
        self.backend.close(_linkId(linkId))
        return _ok()

    def do_LINKS(self) -> bytes:
        return grammar.formatReply(
            250, [formatLinkInfo(info) for info in self.backend.links()] + ["OK"])

    def do_STATUS(self) -> bytes:
        return _pairsReply(self.backend.status())

    def do_PROBE(self, jid: str) -> "defer.Deferred[bytes]":
        peer = grammar.parseJID(jid)
        return defer.maybeDeferred(self.backend.probe, peer).addCallback(_pairsReply)

    def do_WATCH(self) -> bytes:
        self._watching = True
        return _ok()

    def do_UNWATCH(self) -> bytes:
        self._watching = False
        return _ok()

    def do_HELP(self, verb: Optional[str] = None) -> bytes:
        if verb is None:
            specs = list(_COMMANDS.values())
        else:
            spec = _COMMANDS.get(verb.upper())
            if spec is None:
                raise UnknownCommand("unknown command %s" % grammar.formatValue(verb))
            specs = [spec]
        return grammar.formatReply(
            250, ["%s -- %s" % (spec.syntax, spec.help) for spec in specs] + ["OK"])

    def do_QUIT(self) -> bytes:
        self._quitting = True
        return grammar.formatReply(250, ["closing"])


@implementer(interfaces.IPushProducer)
class _OutputWatch:
    """Registered on the transport only to hear when its send buffer is full."""

    def __init__(self, proto: "ControlProtocol"):
        self._proto = proto

    def pauseProducing(self) -> None:
        self._proto._outputPaused = True

    def resumeProducing(self) -> None:
        self._proto._outputPaused = False
        self._proto._backlog = 0

    def stopProducing(self) -> None:
        pass


class ControlFactory(protocol.Factory):
    """Builds one :class:`ControlProtocol` per connection, all on ``backend``."""

    protocol = ControlProtocol

    def __init__(self, backend: Any):
        self.backend = backend

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        p = self.protocol(self.backend)
        p.factory = self
        return p


# --- helpers -----------------------------------------------------------------


def formatLinkInfo(info: LinkInfo) -> str:
    """One LINKS line (without the code): the fixed fields, then extras."""
    pairs: List[Tuple[str, str]] = [
        ("link", info.id), ("state", _dash(info.state)), ("peer", _dash(info.peer)),
        ("method", _dash(info.method)), ("direction", _dash(info.direction)),
        ("sent", str(info.sent)), ("received", str(info.received)),
        ("socket", _dash(info.socket)),
    ]
    for key in ("service", "profile", "reason"):
        value = getattr(info, key)
        if value is not None:
            pairs.append((key, value))
    pairs.extend(info.extra)
    return grammar.formatOptions(pairs)


def _dash(value: Optional[Any]) -> str:
    return "-" if value is None or value == "" else str(value)


def _ok() -> bytes:
    return grammar.formatReply(250, ["OK"])


def _pairsReply(pairs: Any) -> bytes:
    return grammar.formatReply(
        250, [grammar.formatOptions([(key, value)]) for key, value in pairs] + ["OK"])


def _isFinal(event: Event) -> bool:
    state = event.words[1] if len(event.words) > 1 else None
    if state in _FINAL_STATES:
        return True
    return state == events.BAD and ("final", "yes") in event.options


def _linkId(text: str) -> str:
    if not text:
        raise SyntaxErrorInArgument("empty link id")
    return text


def _parseMethods(text: str) -> List[str]:
    names = [name.strip().lower() for name in text.split(",")]
    if not all(names):
        raise SyntaxErrorInArgument("methods= needs names separated by commas, e.g. s5b,ibb")
    if len(set(names)) != len(names):
        raise SyntaxErrorInArgument("methods= names a method twice")
    return names


def _parseBlockSize(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise SyntaxErrorInArgument("block-size= must be a number from 1 to 65535")
    return int(text)


def _parseProfile(text: Optional[str]) -> str:
    if text is None:
        return application.LINK_PROFILE
    namespace = _PROFILES.get(text if "/" in text or ":" in text else text.lower())
    if namespace is None:
        raise SyntaxErrorInArgument("profile= must be link or file")
    return namespace


def _parseCount(key: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise SyntaxErrorInArgument("%s= must be a number of bytes (0 or more)" % key)
    return int(text)


def _checkText(name: str, text: str, allowed: str = "") -> None:
    """
    Every argument and option value may end up in a stanza (a reason, a
    service or file name, a JID) or in the log: refuse, naming the
    argument, what XML cannot carry or a peer's terminal should not see
    (control characters, surrogates, noncharacters, line separators).
    Checked for every verb, so a new option cannot forget it.
    """
    problem = badCharacter(text, allowed)
    if problem is not None:
        raise SyntaxErrorInArgument("%s: %s is not allowed" % (name, problem))


def _parseNegotiation(value: str) -> str:
    """``negotiation=si|jingle``: a registry negotiator name; 512 otherwise."""
    from bytestreamd.registry import NEGOTIATOR_NAMES
    name = value.lower()
    if name not in NEGOTIATOR_NAMES:
        raise SyntaxErrorInArgument("negotiation= must be one of %s"
                                    % "|".join(NEGOTIATOR_NAMES))
    return name


def _fileHeaders(options: Dict[str, str]) -> Dict[str, str]:
    """The XEP-0096 headers of ``OPEN ... profile=file``; 512 on a bad value."""
    name, size = options.get("name"), options.get("size")
    if not name:
        raise SyntaxErrorInArgument("profile=file needs name=NAME")
    if size is None:
        raise SyntaxErrorInArgument("profile=file needs size=N (bytes)")
    headers = {"name": name,
               "size": str(_parseCount("size", size))}
    if "hash" in options:
        if not _MD5.match(options["hash"]):
            raise SyntaxErrorInArgument("hash= must be the file's MD5 as 32 hex digits")
        headers["hash"] = options["hash"].lower()
    if "date" in options:
        if not _DATETIME.match(options["date"]):
            raise SyntaxErrorInArgument(
                "date= must be a XEP-0082 DateTime, e.g. 2026-01-31T12:00:00Z")
        headers["date"] = options["date"]
    if "desc" in options:
        headers["desc"] = options["desc"]
    if "range" in options:
        flag = options["range"].lower()
        if flag not in _YES + _NO:
            raise SyntaxErrorInArgument("range= must be yes or no")
        if flag in _YES:
            headers["range"] = "true"
    return headers


def _parseStanza(text: str) -> str:
    if text.lower() not in _STANZAS:
        raise SyntaxErrorInArgument("stanza= must be iq or message")
    return text.lower()


def _raise(exc: BaseException) -> bytes:
    raise exc


def _internal(exc: BaseException) -> bytes:
    text = ("%s: %s" % (exc.__class__.__name__, exc)).rstrip(": ")
    if len(text) > _SHORT:
        text = text[:_SHORT] + "..."
    return grammar.formatReply(550, ["internal error: " + text])


def _failureReply(f: Failure) -> bytes:
    """The one place an exception becomes a reply."""
    if f.check(defer.CancelledError):
        return b""  # only after connectionLost; never written
    if f.check(ControlError):
        return grammar.formatReply(f.value.code, [f.value.text])
    log.failure("control command failed", f)
    return _internal(f.value)
