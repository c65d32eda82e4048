"""
Tests for bytestreamd.tap (the twistd plugin's options and makeService) and
the plugin file that points twistd at it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
from twisted.python import usage

from bytestreamd import tap
from bytestreamd.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return str(path)


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def test_command_line_only(secret, tmp_path):
    options = parse("--jid", "bot@example.org/r", "--password-file", secret,
                    "--runtime-dir", str(tmp_path), "--host", "127.0.0.1",
                    "--port", "5299", "--tls", "insecure",
                    "--socket-mode", "0660", "--methods", "ibb",
                    "--allow", "a@example.org", "--allow", "*@example.net",
                    "--log-traffic")
    c = options.config
    assert isinstance(c, Config)
    assert c.jid.full() == "bot@example.org/r"
    assert c.password == "s3cret"
    assert (c.host, c.port, c.tls) == ("127.0.0.1", 5299, "insecure")
    assert (c.runtime_dir, c.socket_mode) == (str(tmp_path), 0o660)
    assert c.methods == ("ibb",)
    assert c.accept_allow == ("a@example.org", "*@example.net")
    assert c.log_traffic is True


def test_options_override_config_file(secret, tmp_path):
    conf = tmp_path / "b.conf"
    conf.write_text("[xmpp]\njid = file@example.org\npassword = p\n"
                    "[daemon]\nruntime_dir = %s\n"
                    "[accept]\nallow = x@example.org\n" % tmp_path)
    c = parse("--config", str(conf)).config
    assert c.jid.userhost() == "file@example.org"
    assert c.accept_allow == ("x@example.org",)
    assert c.log_traffic is False
    c = parse("--config", str(conf), "--jid", "cli@example.org",
              "--password-file", secret, "--allow", "y@example.org").config
    assert c.jid.userhost() == "cli@example.org"
    assert c.password == "s3cret"
    assert c.accept_allow == ("y@example.org",)


def test_bad_config_is_usage_error(tmp_path):
    with pytest.raises(usage.UsageError, match=r"^\[xmpp\] jid: "):
        parse("--jid", "nodomain", "--runtime-dir", str(tmp_path))
    with pytest.raises(usage.UsageError, match="cannot read config file"):
        parse("--config", str(tmp_path / "missing.conf"))


def test_no_password_option():
    with pytest.raises(usage.UsageError):
        parse("--password", "x")
    assert "--password=" not in str(tap.Options())
    assert "no --password option" in str(tap.Options())


def test_help_documents_every_option():
    text = str(tap.Options())
    for name in list(tap.OVERRIDES) + ["config", "allow", "log-traffic"]:
        assert "--%s" % name in text


def test_makeService(monkeypatch, secret, tmp_path):
    made = []

    class Daemon:
        def __init__(self, config, reactor):
            made.append((config, reactor))

    fake = types.ModuleType("bytestreamd.daemon")
    fake.Daemon = Daemon  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bytestreamd.daemon", fake)
    import bytestreamd
    monkeypatch.setattr(bytestreamd, "daemon", fake, raising=False)
    options = parse("--jid", "bot@example.org", "--password-file", secret,
                    "--runtime-dir", str(tmp_path))
    service = tap.makeService(options)
    assert isinstance(service, Daemon)
    from twisted.internet import reactor
    assert made == [(options.config, reactor)]


def twistd(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run(
        [sys.executable, "-c",
         "import sys; from twisted.scripts.twistd import run; "
         "sys.argv[0] = 'twistd'; run()"] + list(argv),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_twistd_help_lists_plugin_and_options(tmp_path):
    result = twistd("bytestreamd", "--help", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "--password-file" in result.stdout
    assert "--allow" in result.stdout


def test_twistd_bad_config_exits_before_starting(tmp_path):
    result = twistd("-n", "--pidfile=", "bytestreamd", "--jid", "nodomain",
                    "--runtime-dir", str(tmp_path), cwd=str(tmp_path))
    assert result.returncode != 0
    assert ("[xmpp] jid: 'nodomain' has no user part"
            in result.stdout + result.stderr)
    assert os.listdir(tmp_path) == []


def test_control_socket_backlog_is_large(tmp_path):
    """Issue 8 item 7: bursts of control clients are not refused by listen(2)."""
    from twisted.internet.testing import MemoryReactor
    from twisted.internet.protocol import Factory
    from bytestreamd.daemon import CONTROL_BACKLOG, ControlSocketService
    reactor = MemoryReactor()
    service = ControlSocketService(reactor, str(tmp_path / "control"), Factory(), 0o600, None)
    service.startService()
    assert reactor.unixServers[0][2] == CONTROL_BACKLOG >= 512
