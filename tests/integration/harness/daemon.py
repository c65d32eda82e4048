"""
bytestreamd as a real ``twistd`` process, configured and started the way a
user would (INTERFACE.md "Running"): an INI file, a password file, a runtime
directory; found through the plugin in ``<repo>/twisted/plugins`` with the
repository on ``PYTHONPATH`` (nothing installed).

``python3 -m twisted`` runs ``twist``, not ``twistd`` (it rejects ``-n`` and
``--pidfile``), so the process is started as ``python3 -c "from
twisted.scripts.twistd import run; run()" -n --pidfile= ...``, which is what
the ``twistd`` script does.

The runtime directory is a short path under /tmp, not inside pytest's
``tmp_path``: UNIX socket paths are limited to 107 bytes and
``<runtime_dir>/links/<link-id>`` must fit.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence, Union

from .control import ControlClient, ControlError, Reply, parseArgs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]

ConfigValue = Union[str, int]
ExtraConfig = Mapping[str, Mapping[str, ConfigValue]]


class DaemonStartError(RuntimeError):
    """The daemon exited, or did not connect in time; carries the log tail."""


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def twistdEnvironment() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("RUNTIME_DIRECTORY", None)
    env.pop("BYTESTREAMD_CONTROL", None)
    return env


def twistdCommand(args: Sequence[str], logfile: Optional[str] = None) -> List[str]:
    """The argv of ``twistd -n [--logfile=F] <args>`` using this interpreter."""
    argv = TWISTD + ["-n", "--pidfile="]
    if logfile:
        argv.append("--logfile=" + logfile)
    return argv + list(args)


def runTwistd(args: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run ``twistd -n <args>`` to completion (for start-up failures)."""
    return subprocess.run(twistdCommand(args), cwd=REPO_ROOT, env=twistdEnvironment(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def writeConfig(path: str, sections: Mapping[str, Mapping[str, ConfigValue]]) -> None:
    with open(path, "w") as f:
        for section, items in sections.items():
            f.write("[%s]\n" % section)
            for key, value in items.items():
                f.write("%s = %s\n" % (key, value))
            f.write("\n")


def statusSaysConnected(reply: Reply) -> bool:
    """
    Whether a ``STATUS`` reply reports the server connection as up. The
    contract only says STATUS has a line with the server connection state,
    so accept the plausible spellings (``server=connected``,
    ``connected=yes``, ``SERVER connected``) and refuse the negative ones.
    """
    for line in reply.lines:
        low = line.lower()
        words, options = parseArgs(low)
        for key, value in options.items():
            if value in ("connected", "online", "up"):
                return True
            if key == "connected" and value in ("yes", "true", "1"):
                return True
        if re.search(r"\b(disconnected|not connected|unconnected)\b", low):
            continue
        if "connected" in words:
            return True
    return False


class DaemonProcess:
    """
    One bytestreamd for ``account`` of ``prosody``.

    Attributes: ``jid`` (full, resource ``daemon``), ``bareJID``,
    ``configPath``, ``logPath``, ``runtimeDir``, ``controlPath``,
    ``process`` while running, ``ctl`` (a :class:`ControlClient` opened by
    :meth:`start`, WATCHing only if ``watch=True``).
    ``extraConfig`` maps section -> {key: value} and is merged over the
    defaults, e.g. ``{"accept": {"allow": "alice@localhost"},
    "services": {"echo": "tcp:host=127.0.0.1:port=4000"}}``.
    """

    def __init__(self, prosody, account: str, tmpdir, extraConfig: Optional[ExtraConfig] = None,
                 resource: str = "daemon", extraArgs: Sequence[str] = ()) -> None:
        self.prosody = prosody
        self.account = account
        self.tmpdir = os.path.abspath(str(tmpdir))
        os.makedirs(self.tmpdir, exist_ok=True)
        self.bareJID = prosody.jid(account)
        self.jid = prosody.jid(account, resource)
        self.runtimeDir = tempfile.mkdtemp(prefix="bsd-%s-" % account[:8], dir="/tmp")
        self.controlPath = os.path.join(self.runtimeDir, "control")
        self.linksDir = os.path.join(self.runtimeDir, "links")
        self.configPath = os.path.join(self.tmpdir, "%s.conf" % account)
        self.passwordPath = os.path.join(self.tmpdir, "%s.password" % account)
        self.logPath = os.path.join(self.tmpdir, "%s-daemon.log" % account)
        self.stderrPath = os.path.join(self.tmpdir, "%s-daemon.stderr" % account)
        self.extraArgs = list(extraArgs)
        self.process: Optional[subprocess.Popen] = None
        self.ctl: Optional[ControlClient] = None
        self._clients: List[ControlClient] = []
        self._stderr = None

        with open(self.passwordPath, "w") as f:
            f.write(prosody.passwords[account] + "\n")
        os.chmod(self.passwordPath, 0o600)
        sections: Dict[str, Dict[str, ConfigValue]] = {
            "xmpp": {
                "jid": self.jid,
                "password_file": self.passwordPath,
                "host": "127.0.0.1",
                "port": prosody.c2sPort,
                "ca_certs": prosody.caPath,
            },
            "daemon": {"runtime_dir": self.runtimeDir},
            # Every candidate in the tests is on loopback, which [s5b] connect
            # refuses unless listed.
            "s5b": {"listen": "127.0.0.1:0", "connect": "127.0.0.0/8, ::1"},
        }
        for section, items in (extraConfig or {}).items():
            sections.setdefault(section, {}).update(items)
        self.sections = sections
        writeConfig(self.configPath, sections)

    # -- process ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> List[str]:
        return twistdCommand(["bytestreamd", "--config", self.configPath] + self.extraArgs,
                             logfile=self.logPath)

    def logText(self) -> str:
        return _tail(self.logPath, 10 ** 6) + _tail(self.stderrPath, 10 ** 6)

    def logTail(self, lines: int = 40) -> str:
        return ("--- %s (%s) ---\n%s--- stderr ---\n%s" % (
            self.logPath, self.jid, _tail(self.logPath, lines),
            _tail(self.stderrPath, lines)))

    def start(self, timeout: float = 20.0, watch: bool = False) -> "DaemonProcess":
        """
        Start twistd; return once the control socket answers and STATUS (or a
        ``650 SERVER connected`` event) says the XMPP connection is up.
        """
        self._stderr = open(self.stderrPath, "ab")
        self.process = subprocess.Popen(
            self.command(), cwd=REPO_ROOT, env=twistdEnvironment(),
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            self.ctl = self._connectControl(deadline)
            self.ctl.expect("WATCH")
            self.waitConnected(deadline - time.monotonic(), self.ctl)
            if not watch:
                self.ctl.expect("UNWATCH")
        except (DaemonStartError, ControlError, OSError) as e:
            self.stop()
            raise DaemonStartError("bytestreamd for %s did not come up: %s\n%s"
                                   % (self.jid, e, self.logTail())) from None
        return self

    def _connectControl(self, deadline: float) -> ControlClient:
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise DaemonStartError("twistd exited with status %s"
                                       % self.process.returncode)
            if os.path.exists(self.controlPath):
                try:
                    return ControlClient(self.controlPath)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise DaemonStartError("no control socket at %s" % self.controlPath)
            time.sleep(0.05)

    def waitConnected(self, timeout: float = 20.0,
                      ctl: Optional[ControlClient] = None) -> None:
        """Poll STATUS until the server connection is reported up."""
        ctl = ctl or self.ctl
        assert ctl is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise DaemonStartError("twistd exited with status %s"
                                       % self.process.returncode)
            reply = ctl.command("STATUS")
            if reply.ok and statusSaysConnected(reply):
                return
            if any(e.words[:2] == ["SERVER", "connected"] for e in ctl.pollEvents(0.2)):
                return
            if time.monotonic() > deadline:
                raise DaemonStartError("STATUS never reported the server connected; "
                                       "last STATUS: %r" % (reply,))

    def control(self, watch: bool = False) -> ControlClient:
        """A new control connection (closed by :meth:`stop`)."""
        client = ControlClient(self.controlPath)
        if watch:
            client.expect("WATCH")
        self._clients.append(client)
        return client

    def linkSocket(self, linkId: str) -> str:
        return os.path.join(self.linksDir, linkId)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM, wait ``timeout``, then SIGKILL. Returns the exit status."""
        for client in self._clients + ([self.ctl] if self.ctl else []):
            try:
                client.close()
            except OSError:
                pass
        self._clients = []
        self.ctl = None
        rc = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            rc = self.process.returncode
            self.process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return rc

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.runtimeDir, ignore_errors=True)

    def __enter__(self) -> "DaemonProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<DaemonProcess %s pid=%s>" % (
            self.jid, self.process.pid if self.process else None)
