"""
Libervia 0.9 (Debian's ``libervia-backend`` and ``libervia-cli``) as a real
peer of the integration tier, headless and confined.

Why it looks like this:

- **Confinement.**  Libervia offers every address of every interface as a
  SOCKS5 candidate, probes UPnP (SSDP multicast) when it starts, and asks a
  web site for its external address when it finds none.  The tests may send
  traffic to loopback only, so everything of a Libervia test runs in a
  network namespace of its own that has nothing but ``lo``
  (:class:`NetNamespace`, ``ip netns add``): a Prosody
  (:class:`NamespacedProsody`), our daemons (:class:`NamespacedDaemon`) and
  the Libervia backends (:class:`LiberviaBackend`).  Multicast and any
  other address then fail at once with "network unreachable", and the only
  S5B candidate left is 127.0.0.1.  UNIX sockets are not bound to a network
  namespace, so the test process (outside) still drives our daemons'
  control sockets and Libervia's D-Bus socket; a TCP probe of a port inside
  is made from a thread that entered the namespace (``setns`` changes the
  calling thread only).
- **Python.**  Debian's Libervia runs on Debian's ``/usr/bin/python3`` with
  Debian's Twisted 22.4 and its own wokkel fork; our Python (and its
  Twisted 26) must not leak into it, so the backend and CLI are started as
  ``/usr/bin/python3 /usr/bin/libervia-...`` with ``PYTHONPATH`` removed.
- **D-Bus.**  The CLI talks to the backend over D-Bus: each backend gets a
  private session bus (``dbus-daemon --session --address=unix:path=...``)
  and ``DBUS_SESSION_BUS_ADDRESS`` points both at it.
- **Files.**  ``HOME`` and the XDG directories are private, so the
  configuration (``$XDG_CONFIG_HOME/libervia/libervia.conf``), the SQLite
  store, the log and the downloads are the test's own.
- **TLS.**  Libervia verifies the server with Twisted's
  ``optionsForClientTLS``, i.e. OpenSSL's default paths:
  ``SSL_CERT_FILE`` = the harness CA makes it trust the test Prosody.
- **No UPnP.**  Where ``python3-miniupnpc`` is installed (a Recommends of
  libervia-backend), Libervia's NAT-PORT plugin fails in the namespace with
  "Miniupnpc Socket error", and that failure reaches every SOCKS5
  candidate gathering: a Jingle file send then gives up and falls back to
  XEP-0096, whose sender stalls.  A one-line ``miniupnpc`` module that
  raises ImportError, first on Libervia's ``PYTHONPATH``, makes the
  plugin skip itself (its own "missing module" path), as on a machine
  without the package.
- **Profile.**  ``profile create`` with the JID (resource ``libervia``)
  and the password, ``Force server``/``Force port`` to the Prosody port,
  ``allow_get_ip`` false (else the backend waits for a user to allow a web
  request), then ``profile connect``.
- **Time.**  A backend takes about 6 s to start (plugins, SQLite
  migrations); the CLI another ~1 s per command.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Sequence, TypeVar

from .daemon import DaemonProcess, twistdEnvironment
from .prosody import ProsodyServer, ProsodyStartError

SYSTEM_PYTHON = "/usr/bin/python3"
BACKEND = "/usr/bin/libervia-backend"
CLI = "/usr/bin/libervia-cli"
DBUS_DAEMON = "/usr/bin/dbus-daemon"
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"
CLONE_NEWNET = 0x40000000
RESOURCE = "libervia"

T = TypeVar("T")

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>%(address)s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class LiberviaError(RuntimeError):
    """A Libervia backend or CLI step failed; the message has its output."""


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "<no %s: %s>" % (path, e)


# -- the network namespace --------------------------------------------------

class NetNamespace:
    """
    A named network namespace with only ``lo`` (up): ``prefix`` runs a
    command inside it, :meth:`call` runs a function in a thread inside it.
    """

    PREFIX = "bsd-lv-"

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name or "%s%d-%s" % (self.PREFIX, os.getpid(), uuid.uuid4().hex[:6])
        self.path = "/run/netns/" + self.name
        self.created = False

    @classmethod
    def removeStale(cls) -> List[str]:
        """
        Delete namespaces this harness left behind in runs that were killed:
        ours are named ``bsd-lv-<pid>-<hex>``, and only those whose process
        is gone are removed (a parallel run keeps its own).
        """
        removed = []
        try:
            names = os.listdir("/run/netns")
        except OSError:
            return removed
        for name in names:
            if not name.startswith(cls.PREFIX):
                continue
            pid = name[len(cls.PREFIX):].split("-", 1)[0]
            if not pid.isdigit() or os.path.exists("/proc/%s" % pid):
                continue
            subprocess.run([IP, "netns", "del", name], capture_output=True)
            removed.append(name)
        return removed

    @property
    def prefix(self) -> List[str]:
        return [IP, "netns", "exec", self.name]

    def create(self) -> "NetNamespace":
        self.removeStale()
        subprocess.run([IP, "netns", "add", self.name], check=True, capture_output=True)
        self.created = True
        subprocess.run([IP, "-n", self.name, "link", "set", "lo", "up"],
                       check=True, capture_output=True)
        return self

    def interfaces(self) -> List[str]:
        """The names of the namespace's interfaces (only ``lo``)."""
        out = subprocess.run([IP, "-n", self.name, "-o", "link", "show"], check=True,
                             capture_output=True, text=True).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` in a thread that entered the namespace."""
        result: Dict[str, object] = {}

        def target() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, os.strerror(errno))
                finally:
                    os.close(fd)
                result["value"] = function()
            except BaseException as e:  # handed to the caller
                result["error"] = e

        thread = threading.Thread(target=target, name="netns-" + self.name)
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        return result["value"]  # type: ignore[return-value]

    def portOpen(self, port: int, address: str = "127.0.0.1") -> bool:
        def probe() -> bool:
            try:
                socket.create_connection((address, port), timeout=0.5).close()
                return True
            except OSError:
                return False
        return self.call(probe)

    def close(self) -> None:
        if self.created:
            subprocess.run([IP, "netns", "del", self.name], capture_output=True)
            self.created = False

    def __enter__(self) -> "NetNamespace":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()


class NamespacedProsody(ProsodyServer):
    """The harness Prosody, run inside ``namespace`` (ports probed there)."""

    def __init__(self, namespace: NetNamespace, tmpdir: str, **kwargs) -> None:
        self.namespace = namespace
        super().__init__(tmpdir, **kwargs)

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        self._stdout = open(self.stdoutPath, "ab")
        self.process = subprocess.Popen(
            self.namespace.prefix + ["/usr/bin/prosody", "-F", "--config", self.configPath],
            stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=subprocess.STDOUT,
            cwd=self.tmpdir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                rc = self.process.returncode
                self._closeStdout()
                self.process = None
                raise ProsodyStartError("prosody exited with status %s; log tail:\n%s"
                                        % (rc, self.logTail()))
            if all(self.namespace.portOpen(port, self.address) for port in self.ports):
                return
            time.sleep(0.05)
        self.stop()
        raise ProsodyStartError("prosody did not listen in %s within %.0fs:\n%s"
                                % (self.namespace.name, timeout, self.logTail()))


class NamespacedDaemon(DaemonProcess):
    """Our daemon (``twistd``) inside ``namespace``; its control socket is
    a UNIX socket, reached from outside as usual."""

    def __init__(self, namespace: NetNamespace, *args, **kwargs) -> None:
        self.namespace = namespace
        super().__init__(*args, **kwargs)

    def command(self) -> List[str]:
        return self.namespace.prefix + super().command()


# -- Libervia -----------------------------------------------------------------

def liberviaEnvironment(home: str, busAddress: str, caPath: str) -> Dict[str, str]:
    """
    The environment of Libervia's processes: private home and XDG
    directories, the private bus, the test CA, nothing of our Python, and no UPnP (see the module
    docstring).
    """
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, "config"),
        "XDG_DATA_HOME": os.path.join(home, "data"),
        "XDG_CACHE_HOME": os.path.join(home, "cache"),
        "XDG_RUNTIME_DIR": os.path.join(home, "run"),
        "DBUS_SESSION_BUS_ADDRESS": busAddress,
        "SSL_CERT_FILE": caPath,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        os.makedirs(env[key], mode=0o700, exist_ok=True)
    shims = os.path.join(home, "pyshims")
    os.makedirs(shims, exist_ok=True)
    with open(os.path.join(shims, "miniupnpc.py"), "w") as f:
        f.write('raise ImportError("no UPnP in the test namespace (bytestreamd harness)")\n')
    env["PYTHONPATH"] = shims
    return env


class CliResult:
    """A finished ``libervia-cli`` run: ``code`` (None: timed out), output."""

    def __init__(self, argv: Sequence[str], code: Optional[int], out: str, err: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.out = out
        self.err = err

    @property
    def ok(self) -> bool:
        return self.code == 0

    def __repr__(self) -> str:
        return "<li %s: exit %s stdout=%r stderr=%r>" % (
            " ".join(self.argv), self.code, self.out[-2000:], self.err[-2000:])


class CliProcess:
    """A ``libervia-cli`` running in the background (e.g. ``file receive``)."""

    def __init__(self, argv: Sequence[str], process: subprocess.Popen,
                 outPath: str, errPath: str) -> None:
        self.argv = list(argv)
        self.process = process
        self.outPath = outPath
        self.errPath = errPath

    def wait(self, timeout: float) -> CliResult:
        try:
            code: Optional[int] = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            code = None
        return CliResult(self.argv, code, _tail(self.outPath, 10 ** 5),
                         _tail(self.errPath, 10 ** 5))

    def output(self) -> str:
        return _tail(self.outPath, 10 ** 5) + _tail(self.errPath, 10 ** 5)

    def waitOutput(self, text: str, timeout: float) -> None:
        """Until ``text`` is in the output (e.g. the receiver is listening)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise LiberviaError("%s: no %r in its output (exit %s):\n%s" % (
                    " ".join(self.argv), text, self.process.poll(), self.output()))
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class LiberviaBackend:
    """
    One Libervia backend with one profile for ``account`` of ``prosody``
    (a :class:`NamespacedProsody`), in ``prosody.namespace``.

    Attributes: ``jid`` (full, resource ``libervia``), ``bareJID``,
    ``profile``, ``home``, ``downloads``, ``logPath``.  :meth:`start`
    returns once the profile is connected; :meth:`cli` runs a CLI command
    to completion, :meth:`cliBackground` starts one.
    """

    def __init__(self, prosody: NamespacedProsody, account: str, tmpdir: str,
                 extraConfig: Optional[Dict[str, str]] = None) -> None:
        self.prosody = prosody
        self.namespace = prosody.namespace
        self.account = account
        self.profile = account
        self.bareJID = prosody.jid(account)
        self.jid = prosody.jid(account, RESOURCE)
        self.home = os.path.abspath(os.path.join(str(tmpdir), "libervia-" + account))
        os.makedirs(self.home, exist_ok=True)
        # the bus socket path must fit in sun_path: a short /tmp directory
        self.runDir = os.path.join("/tmp", "lv-" + uuid.uuid4().hex[:10])
        os.makedirs(self.runDir, mode=0o700)
        self.busPath = os.path.join(self.runDir, "bus")
        self.busAddress = "unix:path=" + self.busPath
        self.env = liberviaEnvironment(self.home, self.busAddress, prosody.caPath)
        self.localDir = os.path.join(self.home, "local")
        self.downloads = os.path.join(self.home, "downloads")
        os.makedirs(self.localDir, exist_ok=True)
        os.makedirs(self.downloads, exist_ok=True)
        self.logPath = os.path.join(self.localDir, "libervia.log")
        self.stdoutPath = os.path.join(self.home, "backend.stdout")
        self.extraConfig = dict(extraConfig or {})
        self._writeConfig()
        self.bus: Optional[subprocess.Popen] = None
        self.process: Optional[subprocess.Popen] = None
        self._background: List[CliProcess] = []
        self._counter = 0

    def _writeConfig(self) -> None:
        directory = os.path.join(self.env["XDG_CONFIG_HOME"], "libervia")
        os.makedirs(directory, exist_ok=True)
        items = {
            "local_dir": self.localDir,
            "downloads_dir": self.downloads,
            "pid_dir": self.localDir,
            "log_dir": self.localDir,
            "bridge": "dbus",
            "log_level": "debug",
        }
        items.update(self.extraConfig)
        with open(os.path.join(directory, "libervia.conf"), "w") as f:
            f.write("[DEFAULT]\n")
            for key, value in items.items():
                f.write("%s = %s\n" % (key, value.replace("%", "%%")))

    def _writeBusConfig(self) -> str:
        """
        A session bus *without service directories*: the stock session
        configuration would activate ``org.libervia.Libervia`` from
        ``/usr/share/dbus-1/services`` when the CLI calls it before the
        backend owns the name -- a second backend, outside the namespace.
        """
        path = os.path.join(self.home, "bus.conf")
        with open(path, "w") as f:
            f.write(BUS_CONFIG % {"address": self.busAddress})
        return path

    # -- processes --------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logTail(self, lines: int = 60) -> str:
        return "--- %s (%s) ---\n%s--- stdout ---\n%s" % (
            self.logPath, self.jid, _tail(self.logPath, lines), _tail(self.stdoutPath, 20))

    def logText(self) -> str:
        return _tail(self.logPath, 10 ** 6)

    def start(self, timeout: float = 120.0) -> "LiberviaBackend":
        """Bus, backend, profile (created once), connection."""
        deadline = time.monotonic() + timeout
        self.bus = subprocess.Popen(
            self.namespace.prefix + [DBUS_DAEMON, "--nofork", "--nopidfile",
                                     "--config-file=" + self._writeBusConfig()],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.home, "dbus.stderr"), "ab"),
            start_new_session=True)
        while not os.path.exists(self.busPath):
            if self.bus.poll() is not None or time.monotonic() > deadline:
                raise LiberviaError("dbus-daemon did not start: %s"
                                    % _tail(os.path.join(self.home, "dbus.stderr")))
            time.sleep(0.02)
        self.process = subprocess.Popen(
            self.namespace.prefix + [SYSTEM_PYTHON, BACKEND, "fg"],
            env=self.env, cwd=self.home, stdin=subprocess.DEVNULL,
            stdout=open(self.stdoutPath, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            self._waitReady(deadline)
            self._ensureProfile()
            self.cli("profile", "connect", "-c", "-p", self.profile,
                     timeout=max(5.0, deadline - time.monotonic()), check=True)
        except BaseException:
            tail = self.logTail()
            self.stop()
            raise LiberviaError("Libervia for %s did not come up\n%s" % (self.jid, tail))
        return self

    def _waitReady(self, deadline: float) -> None:
        """The bridge answers once the backend has loaded its plugins."""
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise LiberviaError("backend exited with status %s"
                                    % self.process.returncode)
            result = self.cli("profile", "list", timeout=20)
            if result.ok:
                return
            if time.monotonic() > deadline:
                raise LiberviaError("backend never answered: %r" % (result,))
            time.sleep(0.2)

    def _ensureProfile(self) -> None:
        listed = self.cli("profile", "list", check=True).out.split()
        if self.profile in listed:
            return
        password = self.prosody.passwords[self.account]
        self.cli("profile", "create", self.profile, "-j", self.jid, "-x", password,
                 check=True)
        for category, name, value in (
                ("Connection", "Force server", self.prosody.address),
                ("Connection", "Force port", str(self.prosody.c2sPort)),
                ("General", "allow_get_ip", "false")):
            self.cli("param", "set", "-p", self.profile, category, name, value, check=True)

    def argv(self, *args: str) -> List[str]:
        return self.namespace.prefix + [SYSTEM_PYTHON, CLI] + list(args)

    def cli(self, *args: str, timeout: float = 60.0, check: bool = False) -> CliResult:
        """``libervia-cli args...`` to completion (killed after ``timeout``)."""
        argv = self.argv(*args)
        try:
            done = subprocess.run(argv, env=self.env, cwd=self.home, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
            result = CliResult(args, done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired as e:
            def text(value) -> str:
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
            result = CliResult(args, None, text(e.stdout), text(e.stderr))
        if check and not result.ok:
            raise LiberviaError("%r failed" % (result,))
        return result

    def cliBackground(self, *args: str) -> CliProcess:
        """``libervia-cli args...`` in the background; :meth:`CliProcess.wait`."""
        self._counter += 1
        outPath = os.path.join(self.home, "cli-%d.out" % self._counter)
        errPath = os.path.join(self.home, "cli-%d.err" % self._counter)
        process = subprocess.Popen(self.argv(*args), env=self.env, cwd=self.home,
                                   stdin=subprocess.DEVNULL, stdout=open(outPath, "wb"),
                                   stderr=open(errPath, "wb"), start_new_session=True)
        background = CliProcess(args, process, outPath, errPath)
        self._background.append(background)
        return background

    # -- file transfer ------------------------------------------------------

    def receiveFiles(self, directory: str, sender: Optional[str] = None) -> CliProcess:
        """``file receive``: accept one file (from ``sender``) into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        args = ["file", "receive", "-p", self.profile, "--path", directory, "-vv"]
        if sender:
            args.append(sender)
        receiver = self.cliBackground(*args)
        receiver.waitOutput("waiting for incoming file request", 60)
        return receiver

    def sendFile(self, path: str, to: str) -> CliProcess:
        """``file send PATH JID`` in the background."""
        return self.cliBackground("file", "send", "-p", self.profile, "-v", path, to)

    def stop(self) -> None:
        for background in self._background:
            background.stop()
        self._background = []
        for process in (self.process, self.bus):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.process = None
        self.bus = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.runDir, ignore_errors=True)

    def __enter__(self) -> "LiberviaBackend":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<LiberviaBackend %s pid=%s>" % (
            self.jid, self.process.pid if self.process else None)


def namespacedDaemon(namespace: NetNamespace, prosody: ProsodyServer, account: str,
                     tmpdir: str, config: Optional[Dict[str, Dict[str, str]]] = None
                     ) -> NamespacedDaemon:
    """A :class:`NamespacedDaemon` configured like the ``daemons`` fixture's."""
    return NamespacedDaemon(namespace, prosody, account, os.path.join(str(tmpdir), account),
                            config or {})


__all__ = [
    "CliProcess", "CliResult", "LiberviaBackend", "LiberviaError", "NamespacedDaemon",
    "NamespacedProsody", "NetNamespace", "liberviaEnvironment", "namespacedDaemon",
    "twistdEnvironment",
]
