"""
Moving one file through one link socket for ``send`` and ``receive``: a
loop over the link socket and the control connection in which the link's
events, not the socket, say whether the transfer ended well.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from typing import Any, BinaryIO, Dict, Optional

from bytestreamd.ctl.client import (CHUNK, ControlClosed, ControlConnection, CtlError, Event,
                                    linkFailure, remaining)
from bytestreamd.ctl.link import LINGER, pollSelector, recvSome, setInterest, shutWrite
from bytestreamd.ctl.output import ProgressBar


class FileLink:
    """
    The loop shared by both directions.  A subclass says what to do with
    the socket (:class:`Sender` writes, :class:`Receiver` reads) and when
    its side is finished.
    """

    def __init__(self, control: ControlConnection, linkId: str, link: socket.socket,
                 progress: ProgressBar, linger: float = LINGER):
        self.control = control
        self.linkId = linkId
        self.link = link
        self.progress = progress
        self.linger = linger
        self.linkOpen = True
        self.closed: Optional[Event] = None
        self.deadline: Optional[float] = None

    def run(self) -> Event:
        """Returns the CLOS event once the transfer is complete; CtlError else."""
        self.link.setblocking(False)
        sel = pollSelector()
        try:
            return self._loop(sel)
        finally:
            sel.close()
            self.progress.finish()

    def _loop(self, sel: selectors.BaseSelector) -> Event:
        registered: Dict[Any, int] = {}
        while True:
            for event in self.control.queuedLinkEvents(self.linkId):
                if event.state == "CLOS":
                    self.closed = event
                elif event.state == "ERR" or event.final:
                    raise linkFailure(self.linkId, event)
            if self.control.eof and self.closed is None:
                raise ControlClosed()
            if self.closed is not None and self.finished():
                return self.closed
            if not self.linkOpen and self.deadline is None:
                self.deadline = time.monotonic() + self.linger
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise self.incomplete()
            wanted: Dict[Any, int] = {}
            if not self.control.eof:
                wanted[self.control.sock] = selectors.EVENT_READ
            if self.linkOpen:
                wanted[self.link] = self.linkInterest()
            setInterest(sel, registered, wanted)
            if self.deadline is None and self.closed is not None:
                # CLOS came: the socket's EOF is due once its bytes are read.
                self.deadline = time.monotonic() + self.linger
            for key, mask in sel.select(remaining(self.deadline)):
                if key.fileobj is self.control.sock:
                    self.control.readSome()
                else:
                    self.linkReady(mask)

    def linkInterest(self) -> int:
        raise NotImplementedError

    def linkReady(self, mask: int) -> None:
        raise NotImplementedError

    def finished(self) -> bool:
        raise NotImplementedError

    def incomplete(self) -> CtlError:
        raise NotImplementedError

    def drain(self) -> bytes:
        """One read from the link socket; marks it ended at EOF."""
        data = recvSome(self.link)
        if data is None:
            return b""
        if not data:
            self.linkOpen = False
            # The peer is done.  A SOCKS5 link is half-closed here and ends
            # (CLOS) only once our side is closed too; we have nothing to send.
            shutWrite(self.link)
        elif self.deadline is not None:
            self.deadline = time.monotonic() + self.linger  # still flowing
        return data


class Sender(FileLink):
    """Writes ``count`` bytes of ``fd`` from ``offset``, then half-closes."""

    def __init__(self, control: ControlConnection, linkId: str, link: socket.socket,
                 progress: ProgressBar, fd: int, offset: int, count: int,
                 linger: float = LINGER):
        FileLink.__init__(self, control, linkId, link, progress, linger)
        self.fd = fd
        self.position = offset
        self.end = offset + count
        self.buffer = b""
        self.shut = False
        self.sent = 0

    def linkInterest(self) -> int:
        return selectors.EVENT_READ | (0 if self.shut else selectors.EVENT_WRITE)

    def finished(self) -> bool:
        return self.complete or not self.linkOpen

    def linkReady(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and not self.shut:
            self._write()
        if mask & selectors.EVENT_READ:
            self.drain()  # a file receiver sends nothing; EOF ends the link

    def _write(self) -> None:
        if not self.buffer and self.position < self.end:
            self.buffer = os.pread(self.fd, min(CHUNK, self.end - self.position),
                                   self.position)
            if not self.buffer:
                raise CtlError("the file became shorter while it was sent "
                               "(%d bytes, %d expected)" % (self.position, self.end))
            self.position += len(self.buffer)
        if self.buffer:
            try:
                n = self.link.send(self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # The daemon dropped the local connection: the link failed
                # (its event says why) or the receiver closed it early.
                self.linkOpen = False
                return
            self.buffer = self.buffer[n:]
            self.sent += n
            self.progress.update(self.written)
        if not self.buffer and self.position >= self.end:
            self.shut = True
            shutWrite(self.link)

    @property
    def complete(self) -> bool:
        """Every byte was written and the write side shut."""
        return self.shut and self.position >= self.end and not self.buffer

    @property
    def written(self) -> int:
        """The file position up to which the link took the bytes."""
        return self.position - len(self.buffer)

    def incomplete(self) -> CtlError:
        if not self.complete:
            return CtlError("link %s: the link socket closed after %d of %d bytes, "
                            "without an event saying why" % (
                                self.linkId, self.written, self.end))
        return CtlError("link %s: the link socket closed but no CLOS came" % self.linkId)


class Receiver(FileLink):
    """Appends what the link brings to ``out`` (hashing it) up to ``expected``."""

    def __init__(self, control: ControlConnection, linkId: str, link: socket.socket,
                 progress: ProgressBar, out: BinaryIO, md5: Any, have: int,
                 expected: int, linger: float = LINGER):
        FileLink.__init__(self, control, linkId, link, progress, linger)
        self.out = out
        self.md5 = md5
        self.have = have
        self.expected = expected

    def linkInterest(self) -> int:
        return selectors.EVENT_READ

    def linkReady(self, mask: int) -> None:
        data = self.drain()
        if not data:
            return
        if self.have + len(data) > self.expected:
            raise CtlError("the sender sent more than the %d bytes it offered" % self.expected)
        self.out.write(data)
        self.md5.update(data)
        self.have += len(data)
        self.progress.update(self.have)

    def finished(self) -> bool:
        return not self.linkOpen

    def incomplete(self) -> CtlError:
        return CtlError("link %s: the link socket closed after %d of %d bytes, "
                        "without a CLOS event" % (self.linkId, self.have, self.expected))
