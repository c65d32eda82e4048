"""
The promise of README/INTERFACE, kept with a real OpenSSH: ``ssh -o
ProxyCommand='bytestreamctl connect <peer> --service ssh'`` logs in through
a link to a real sshd that the peer's ``[services] ssh = tcp:...`` entry
names, runs commands, and moves files both ways intact.

The sshd is private to the test: root, 127.0.0.1 on a free port, a
throwaway host key and a throwaway client key, key login only.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from typing import List, Sequence

import pytest

from .harness import REPO_ROOT, freePort
from .harness.flows import MiB

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"  # sshd refuses to start without it



def _keygen(path: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bytestreamd-test",
                    "-f", path], check=True, timeout=30, stdin=subprocess.DEVNULL)


class PrivateSSHD:
    """``sshd -D -e`` on 127.0.0.1:``port``, logging to ``logPath``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = freePort()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.hostKey = os.path.join(directory, "host_ed25519")
        self.clientKey = os.path.join(directory, "client_ed25519")
        self.configPath = os.path.join(directory, "sshd_config")
        self.logPath = os.path.join(directory, "sshd.log")
        self.process = None
        self._log = None
        _keygen(self.hostKey)
        _keygen(self.clientKey)
        authorized = os.path.join(directory, "authorized_keys")
        shutil.copyfile(self.clientKey + ".pub", authorized)
        with open(self.configPath, "w") as f:
            f.write("\n".join([
                "Port %d" % self.port,
                "ListenAddress 127.0.0.1",
                "HostKey %s" % self.hostKey,
                "PidFile %s" % os.path.join(directory, "sshd.pid"),
                "AuthorizedKeysFile %s" % authorized,
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]))

    def start(self, timeout: float = 10.0) -> None:
        if not os.path.isdir(PRIVSEP_DIR):
            try:
                os.makedirs(PRIVSEP_DIR, mode=0o755)
            except OSError as e:
                raise RuntimeError("sshd needs %s and it cannot be created: %s"
                                   % (PRIVSEP_DIR, e))
        self._log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", self.configPath], stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("sshd exited with %s:\n%s"
                                   % (self.process.returncode, self.logTail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not answer on port %d:\n%s" % (self.port, self.logTail()))

    def logTail(self, lines: int = 40) -> str:
        try:
            with open(self.logPath, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()


@pytest.fixture
def sshd(tmp_path, request):
    directory = tmp_path / "sshd"
    directory.mkdir()
    server = PrivateSSHD(str(directory))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print("\n===== sshd log tail =====\n" + server.logTail(40))


def _sshOptions(sshd: PrivateSSHD, alice, peer: str, methods: str) -> List[str]:
    proxy = [sys.executable, "-m", "bytestreamd.ctl", "--control", alice.controlPath,
             "connect", peer, "--service", "ssh", "-v"]
    if methods:
        proxy += ["--methods", methods]
    return ["-F", "/dev/null", "-i", sshd.clientKey, "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR",
            "-o", "ProxyCommand=" + " ".join(_shellQuote(a) for a in proxy)]


def _shellQuote(arg: str) -> str:
    """ssh hands ProxyCommand to ``$SHELL -c`` (after %-expansion)."""
    if arg and all(c.isalnum() or c in "/._-=,@:" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''").replace("%", "%%") + "'"


def _run(argv: Sequence[str], timeout: float, stdin=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("BYTESTREAMD_CONTROL", None)
    return subprocess.run(list(argv), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, env=env)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _explain(what: str, result: subprocess.CompletedProcess) -> str:
    return "%s: exit %s\n--- stdout ---\n%s\n--- stderr (ssh + bytestreamctl -v) ---\n%s" % (
        what, result.returncode, result.stdout[-2000:].decode(errors="replace"),
        result.stderr[-4000:].decode(errors="replace"))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("methods,expected", [("", "s5b"), ("ibb", "ibb")],
                         ids=["default-methods", "ibb"])
def test_ssh_proxycommand_through_a_link(daemons, sshd, tmp_path, methods, expected):
    alice = daemons("alice", accept="bob@localhost")
    bob = daemons("bob", accept="alice@localhost",
                  services={"ssh": "tcp:host=127.0.0.1:port=%d" % sshd.port})
    aliceWatch = alice.control(watch=True)
    options = _sshOptions(sshd, alice, bob.jid, methods)
    target = "%s@bob-through-xmpp" % sshd.user

    # 1. a command, with 3 MB of work on the far side and its answer back
    first = _run(["ssh"] + options + [
        target, "echo hello-through-xmpp; head -c 3000000 /dev/urandom | sha256sum"],
        timeout=40)
    assert first.returncode == 0, _explain("ssh command", first)
    lines = first.stdout.decode().splitlines()
    assert lines[0] == "hello-through-xmpp", _explain("ssh command", first)
    assert len(lines) == 2 and len(lines[1].split()[0]) == 64, _explain("ssh command", first)

    # 2. 5 MiB up through ssh's stdin, checked on the far side
    original = str(tmp_path / "upload.bin")
    with open(original, "wb") as f:
        f.write(os.urandom(5 * MiB + 4321))
    copy = str(tmp_path / "sshd" / "uploaded.bin")
    with open(original, "rb") as stdin:
        second = _run(["ssh"] + options + [target, "cat > %s && sha256sum %s" % (copy, copy)],
                      timeout=40, stdin=stdin)
    assert second.returncode == 0, _explain("ssh upload", second)
    assert second.stdout.decode().split()[:1] == [_sha256(original)], \
        _explain("ssh upload", second)
    assert _sha256(copy) == _sha256(original)

    # 3. the same 5 MiB back down with scp (SFTP subsystem) over its own link
    downloaded = str(tmp_path / "downloaded.bin")
    third = _run(["scp", "-q"] + options + ["%s:%s" % (target, copy), downloaded], timeout=40)
    assert third.returncode == 0, _explain("scp download", third)
    assert _sha256(downloaded) == _sha256(original)

    # every session was its own link, over the expected method, and ended cleanly
    # (ssh SIGHUPs its ProxyCommand when it exits: the link socket's EOF is a
    # clean close for the daemon)
    goods = []
    for _ in range(3):
        goods.append(aliceWatch.waitEvent(
            lambda e: e.words[:1] == ["LINK"] and e.words[2:3] == ["GOOD"], 10))
    assert [e.options.get("method") for e in goods] == [expected] * 3, aliceWatch.events
    assert len({e.words[1] for e in goods}) == 3, aliceWatch.events
    for e in goods:
        end = aliceWatch.waitLinkState(e.words[1], ("CLOS", "ERR", "BAD"), 15)
        assert end.words[2] == "CLOS", aliceWatch.linkEvents(e.words[1])
    assert not [e for e in aliceWatch.pollEvents(0.5) if e.words[2:3] == ["GOOD"]]
