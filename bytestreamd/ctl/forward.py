"""
``bytestreamctl forward LOCAL JID --service NAME``: like ``ssh -L``.

It opens one ``connections=many`` link to JID's ``[services]`` entry NAME
(one Jingle session; docs/jingle.rst), listens on LOCAL -- ``PORT`` or
``HOST:PORT`` (TCP, default host 127.0.0.1), ``tcp:[HOST:]PORT``, or
``unix:PATH`` / a path with a ``/`` -- and relays every connection it
accepts through its own connection to the link socket, i.e. one more stream
in the session, with half-closes passed on.  It runs until the link ends
(exit 1 with the reason) or until interrupted (the link is closed).
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
from typing import Dict, List, Optional, Tuple

from bytestreamd.ctl.client import EXIT_OK, ControlConnection, CtlError, linkFailure
from bytestreamd.ctl.link import linkSocket, pollSelector, recvSome, shutWrite
from bytestreamd.ctl.output import Console

#: Bytes buffered per direction of one relayed connection before reading
#: from its source pauses.
BUFFER = 256 * 1024


def parseLocal(text: str) -> Tuple[int, object]:
    """(address family, address) of a LOCAL_ENDPOINT."""
    if text.startswith("unix:"):
        return socket.AF_UNIX, text[5:]
    if "/" in text:
        return socket.AF_UNIX, text
    if text.startswith("tcp:"):
        text = text[4:]
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CtlError("LOCAL must be PORT, HOST:PORT, tcp:..., or unix:PATH, not %r" % text,
                       2)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port))


class _Half:
    """One direction of a relayed connection: src -> dst, with a buffer."""

    def __init__(self, src: socket.socket, dst: socket.socket):
        self.src, self.dst = src, dst
        self.buffer = bytearray()
        self.eof = False      # src said EOF
        self.shut = False     # dst was told

    @property
    def done(self) -> bool:
        return self.shut


class _Relay:
    def __init__(self, client: socket.socket, link: socket.socket):
        self.client, self.link = client, link
        self.up = _Half(client, link)
        self.down = _Half(link, client)

    @property
    def done(self) -> bool:
        return self.up.done and self.down.done

    def close(self) -> None:
        for s in (self.client, self.link):
            try:
                s.close()
            except OSError:
                pass


def _openLine(args: argparse.Namespace) -> str:
    from bytestreamd.ctl.commands import methodPairs, openLine
    return openLine(args.jid, [("service", args.service), ("connections", "many")]
                    + methodPairs(args))


def cmdForward(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    if not args.service:
        raise CtlError("forward needs --service NAME (the peer's [services] entry)", 2)
    family, address = parseLocal(args.local)
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise CtlError("cannot listen on %s: %s" % (args.local, exc.strerror or exc))
    reply = control.check(_openLine(args))
    linkId, path = linkSocket(reply)
    signal.signal(signal.SIGTERM, _interrupted)  # end like ^C: CLOSE the link
    if args.verbose:
        console.say("forwarding %s through link %s (%s) to %s service %s"
                    % (args.local, linkId, path, args.jid, args.service))
    try:
        return _serve(control, listener, linkId, path, console, args)
    except KeyboardInterrupt:
        control.command("CLOSE %s" % linkId)
        return EXIT_OK
    finally:
        listener.close()
        if family == socket.AF_UNIX:
            try:
                os.unlink(address)  # type: ignore[arg-type]
            except OSError:
                pass


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt()


def _serve(control: ControlConnection, listener: socket.socket, linkId: str, path: str,
           console: Console, args: argparse.Namespace) -> int:
    listener.setblocking(False)
    relays: List[_Relay] = []
    sel = pollSelector()
    try:
        while True:
            for event in list(control.events):
                control.events.remove(event)
                if event.kind == "LINK" and event.subject == linkId:
                    if args.verbose:
                        console.say(event.text)
                    if event.final:
                        raise linkFailure(linkId, event) if event.state != "CLOS" \
                            else CtlError("link %s closed" % linkId)
            wanted: Dict[object, int] = {listener: selectors.EVENT_READ,
                                         control.sock: selectors.EVENT_READ}
            for relay in relays:
                for half in (relay.up, relay.down):
                    if not half.eof and len(half.buffer) < BUFFER:
                        wanted[half.src] = wanted.get(half.src, 0) | selectors.EVENT_READ
                    if half.buffer or (half.eof and not half.shut):
                        wanted[half.dst] = wanted.get(half.dst, 0) | selectors.EVENT_WRITE
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
            for fileobj, mask in wanted.items():
                sel.register(fileobj, mask)
            ready = {key.fileobj: mask for key, mask in sel.select()}
            if control.sock in ready and not control.readSome():
                raise CtlError("the daemon closed the control connection")
            if listener in ready:
                _accept(listener, path, relays)
            for relay in list(relays):
                for half in (relay.up, relay.down):
                    if ready.get(half.src, 0) & selectors.EVENT_READ and not half.eof:
                        data = recvSome(half.src)
                        if data == b"":
                            half.eof = True
                        elif data:
                            half.buffer += data
                    if ready.get(half.dst, 0) & selectors.EVENT_WRITE:
                        _flush(half)
                    if half.eof and not half.buffer and not half.shut:
                        shutWrite(half.dst)
                        half.shut = True
                if relay.done:
                    relay.close()
                    relays.remove(relay)
    finally:
        sel.close()
        for relay in relays:
            relay.close()


def _accept(listener: socket.socket, path: str, relays: List[_Relay]) -> None:
    try:
        client, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        link.connect(path)
    except OSError:
        client.close()
        link.close()
        return
    client.setblocking(False)
    link.setblocking(False)
    relays.append(_Relay(client, link))


def _flush(half: _Half) -> None:
    try:
        sent = half.dst.send(half.buffer)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        half.buffer.clear()
        half.eof = True
        return
    del half.buffer[:sent]
