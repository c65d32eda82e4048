"""
netcat between stdin/stdout and one link socket, for ``connect`` and
``listen``: it must behave like netcat when ssh runs it as a ProxyCommand,
with stdin and stdout carrying the stream and stderr the only place for
words.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import time
from typing import Any, Dict, Optional

from bytestreamd.ctl.client import (CHUNK, EXIT_FAILED, EXIT_OK, ControlConnection, Reply,
                                    remaining)
from bytestreamd.ctl.link import (LINGER, connectLink, linkSocket, pollSelector, recvSome,
                                  setInterest, shutWrite)
from bytestreamd.ctl.output import Console


class StdoutClosed(Exception):
    pass


class Hangup(StdoutClosed):
    """SIGHUP: ssh sends it to its ProxyCommand when it exits."""


def writeAll(fd: int, data: bytes) -> None:
    """Write everything, even to a non-blocking fd; raises StdoutClosed."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_WRITE)
                sel.select()
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise StdoutClosed()
        view = view[n:]


class Splice:
    """
    netcat between the console and one link socket, watching the link's
    events on the control connection: they, not the socket, say whether the
    link ended cleanly (``CLOS``) or failed (final ``BAD``, ``ERR``).
    """

    def __init__(self, control: ControlConnection, linkId: str, link: socket.socket,
                 console: Console, linger: float = LINGER, verbose: bool = False,
                 readStdin: bool = True):
        self.control = control
        self.linkId = linkId
        self.link = link
        self.console = console
        self.linger = linger
        self.verbose = verbose
        self.toLink = bytearray()
        self.readStdin = readStdin
        self.stdinOpen = readStdin
        self.linkWritable = True
        self.linkReadable = True
        self.closed = False
        self.state: Optional[str] = None
        self.lastBad: Optional[str] = None
        self.deadline: Optional[float] = None

    def run(self) -> int:
        self.link.setblocking(False)
        sel = pollSelector()

        def hangup(signum, frame):
            raise Hangup()
        try:
            previous = signal.signal(signal.SIGHUP, hangup)
        except ValueError:  # not the main thread (tests run the client in one)
            previous = None
        try:
            return self._loop(sel)
        except Hangup:
            # The program we serve ended (ssh exited): what the peer still
            # sends is for nobody; take it so the link ends cleanly.
            self._drain()
            return EXIT_OK
        except StdoutClosed:
            self.console.say("stdout was closed; closing link %s" % self.linkId)
            self._drain()
            return EXIT_FAILED
        finally:
            if previous is not None:
                signal.signal(signal.SIGHUP, previous)
            sel.close()

    def _drain(self) -> None:
        """
        Whoever read our stdout is gone (ssh exits before reading the
        server's last packets): end our side, then read and drop what is
        still coming for up to ``linger`` seconds, so the daemon sees a
        client that took every byte it was handed -- closing with bytes
        unread resets the socket, and the daemon reports that as a loss.
        """
        try:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        except ValueError:
            pass
        if self.linkWritable:
            self.linkWritable = False
            try:
                shutWrite(self.link)
            except OSError:
                pass
        self.link.setblocking(True)
        self.link.settimeout(self.linger)
        try:
            while self.link.recv(CHUNK):
                pass
        except OSError:
            pass

    def _loop(self, sel: selectors.BaseSelector) -> int:
        registered: Dict[Any, int] = {}
        while True:
            result = self._handleEvents()
            if result is not None:
                return result
            if not self.linkReadable:
                result = self._linkEnded()
                if result is not None:
                    return result
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return EXIT_OK
            setInterest(sel, registered, self._interest())
            for key, mask in sel.select(remaining(self.deadline)):
                self._ready(key.fileobj, mask)

    def _interest(self) -> Dict[Any, int]:
        wanted: Dict[Any, int] = {}
        if not self.control.eof:
            wanted[self.control.sock] = selectors.EVENT_READ
        if self.stdinOpen and not self.toLink:
            wanted[self.console.stdinFd] = selectors.EVENT_READ
        linkMask = (selectors.EVENT_READ if self.linkReadable else 0) | (
            selectors.EVENT_WRITE if self.toLink and self.linkWritable else 0)
        if linkMask:
            wanted[self.link] = linkMask
        return wanted

    def _ready(self, fileobj: Any, mask: int) -> None:
        if fileobj is self.control.sock:
            self.control.readSome()
        elif fileobj is self.link:
            if mask & selectors.EVENT_WRITE and self.toLink:
                self._sendToLink()
            if mask & selectors.EVENT_READ:
                self._readLink()
        else:
            self._readStdin()

    def _readStdin(self) -> None:
        try:
            data = os.read(self.console.stdinFd, CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.toLink += data
        else:
            self.stdinOpen = False
        self._maybeHalfClose()

    def _sendToLink(self) -> None:
        try:
            sent = self.link.send(self.toLink)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # The daemon dropped the local connection: the link failed and
            # its event says why.
            self.toLink.clear()
            self.linkWritable = self.stdinOpen = False
            return
        del self.toLink[:sent]
        self._maybeHalfClose()

    def _maybeHalfClose(self) -> None:
        if self.readStdin and not self.stdinOpen and not self.toLink and self.linkWritable:
            self.linkWritable = False
            shutWrite(self.link)

    def _readLink(self) -> None:
        data = recvSome(self.link)
        if data is None:
            return
        if data:
            writeAll(self.console.stdoutFd, data)
        else:
            self.linkReadable = False

    def _handleEvents(self) -> Optional[int]:
        for event in self.control.queuedLinkEvents(self.linkId):
            self.state = event.state
            if event.state == "CLOS":
                self.closed = True
                self.stdinOpen = False
                if self.deadline is None:
                    self.deadline = time.monotonic() + self.linger
            elif event.state == "ERR" or event.final:
                return self._fail(event.state or "BAD", event.reason)
            elif event.state == "BAD":
                self.lastBad = event.reason
                if self.verbose:
                    self.console.say("link %s: %s failed: %s; trying the next method" % (
                        self.linkId, event.options.get("method", "a method"), event.reason))
            elif self.verbose:
                self.console.say("link %s %s" % (self.linkId, event.detail))
        if self.control.eof and not self.closed:
            return self._fail("?", "the daemon closed the control connection")
        return None

    def _linkEnded(self) -> Optional[int]:
        """The link socket reached EOF: decide, or wait for the last event."""
        if self.closed:
            return EXIT_OK
        if self.state == "BAD":
            return self._fail("BAD", self.lastBad or "no reason given")
        if self.linkWritable and (self.stdinOpen or self.toLink):
            return None  # a half-close: stdin still flows to the peer
        if self.deadline is None:
            self.deadline = time.monotonic() + self.linger
        return None

    def _fail(self, state: str, reason: str) -> int:
        self.console.say("link %s %s: %s" % (self.linkId, state, reason))
        return EXIT_FAILED


def pipe(control: ControlConnection, reply: Reply, console: Console,
         args: argparse.Namespace) -> int:
    """Splice the console with the link an ``OPEN``/``ACCEPT`` reply names."""
    linkId, path = linkSocket(reply)
    link = connectLink(control, linkId, path, args.linger)
    try:
        console.out.flush()
        return Splice(control, linkId, link, console, linger=args.linger,
                      verbose=args.verbose, readStdin=not args.no_stdin).run()
    finally:
        link.close()
