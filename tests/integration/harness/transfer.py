"""
Moving bytes through link sockets the way users do, and small local servers
standing in for the services a link reaches.

netcat: Debian's netcat-openbsd 1.219 only half-closes its socket at stdin
EOF with ``-N``; without it the sender never signals EOF and the link never
closes. A receiver must *not* use ``-N`` with an empty stdin (it would send
EOF at once, which closes the link); ``-d`` (never read stdin) keeps it
passive, and it exits when the daemon closes the socket. Hence:

    nc -N -U <socket> < file      # sender
    nc -d -U <socket> > copy      # receiver
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from typing import List, Optional

NC = "nc"
CHUNK = 1 << 20


def writeRandomFile(path: str, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256 hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256File(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def ncSend(socketPath: str, filePath: str) -> subprocess.Popen:
    """``nc -N -U socket < file``: send the file, then half-close (EOF)."""
    with open(filePath, "rb") as f:
        return subprocess.Popen([NC, "-N", "-U", socketPath], stdin=f,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ncReceive(socketPath: str, outPath: str) -> subprocess.Popen:
    """``nc -d -U socket > out``: copy everything until the daemon closes."""
    with open(outPath, "wb") as out:
        return subprocess.Popen([NC, "-d", "-U", socketPath], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.PIPE)


def waitProcess(process: subprocess.Popen, timeout: float, what: str) -> int:
    """Wait for ``process``; on timeout kill it and raise with its stderr."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=5)
        raise AssertionError("%s did not finish within %.0fs (stderr: %r)"
                             % (what, timeout, err)) from None
    return process.returncode


def waitForPath(path: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def waitGone(path: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class EchoServer:
    """
    A TCP service on 127.0.0.1 for ``[services]`` tests: greets each client
    with ``greeting`` (so answers flow before the client says anything),
    echoes every byte, and half-closes after the client's EOF. Records what
    it received per connection.
    """

    def __init__(self, greeting: bytes = b"HELLO from echo\n") -> None:
        self.greeting = greeting
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.endpoint = "tcp:host=127.0.0.1:port=%d" % self.port
        self.received: List[bytearray] = []
        self.finished = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self.received)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            buf = bytearray()
            self.received.append(buf)
            threading.Thread(target=self._serve, args=(conn, buf), daemon=True).start()

    def _serve(self, conn: socket.socket, buf: bytearray) -> None:
        try:
            conn.sendall(self.greeting)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf.extend(data)
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()
            self.finished.set()

    def close(self) -> None:
        self._closing = True
        self.listener.close()

    def __enter__(self) -> "EchoServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SocketPump:
    """
    A local client of a link socket driven from Python: a thread reads
    everything into ``received`` until EOF (``eof`` is set then), while the
    test writes. Reading concurrently avoids deadlock on echoing services.
    """

    def __init__(self, socketPath: str, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socketPath)
        self.received = bytearray()
        self.eof = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.received.extend(data)
        except OSError as e:
            self.error = e
        finally:
            self.eof.set()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdownWrite(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def waitReceived(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and not self.eof.is_set():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return len(self.received) >= count

    def waitEOF(self, timeout: float = 60.0) -> bool:
        return self.eof.wait(timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class ThrottledWriter:
    """
    Writes ``chunk`` bytes every ``interval`` seconds to a link socket until
    stopped or the socket fails, so a transfer is reliably still running
    when a test pulls the server out from under it.
    """

    def __init__(self, socketPath: str, chunk: int = 16384, interval: float = 0.02) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socketPath)
        self.sock.settimeout(2.0)
        self.chunk, self.interval = chunk, interval
        self.sent = 0
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        block = os.urandom(self.chunk)
        try:
            while not self._stop.is_set():
                try:
                    self.sock.sendall(block)
                    self.sent += len(block)
                except socket.timeout:
                    pass  # backpressure: the daemon is not reading; keep trying
                self._stop.wait(self.interval)
        except OSError as e:
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.sock.close()
        except OSError:
            pass
