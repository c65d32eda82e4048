"""
``twistd -n bytestreamd --config <bad file>`` must exit non-zero before it
starts anything (no control socket), with a message naming the problem and
no Python traceback (a traceback is not "a clear message").
"""

from __future__ import annotations

import os

import pytest

from .harness import runTwistd, writeConfig

pytestmark = pytest.mark.timeout(60)


def _base(tmp_path):
    password = tmp_path / "password"
    password.write_text("secret\n")
    os.chmod(password, 0o600)
    runtime = tmp_path / "run"
    runtime.mkdir()
    return {
        "xmpp": {"jid": "alice@localhost/daemon", "password_file": str(password),
                 "host": "127.0.0.1", "port": "1", "ca_certs": "/etc/ssl/certs/ca-certificates.crt"},
        "daemon": {"runtime_dir": str(runtime)},
    }


def _run(tmp_path, config, *args):
    path = str(tmp_path / "bad.conf")
    writeConfig(path, config)
    result = runTwistd(["bytestreamd", "--config", path] + list(args), timeout=45)
    output = result.stdout + result.stderr
    return result.returncode, output, config["daemon"]["runtime_dir"]


def _assertRefused(tmp_path, config, words, *args):
    rc, output, runtime = _run(tmp_path, config, *args)
    assert rc != 0, "twistd accepted a bad config:\n%s" % output
    low = output.lower()
    assert any(w in low for w in words), \
        "the message does not name the problem (%s):\n%s" % (" / ".join(words), output)
    assert "traceback" not in low, "a traceback is not a clear message:\n%s" % output
    assert not os.path.exists(os.path.join(runtime, "control")), "it started anyway"


def test_missing_jid(tmp_path):
    config = _base(tmp_path)
    del config["xmpp"]["jid"]
    _assertRefused(tmp_path, config, ["jid"])


def test_unreadable_password_file(tmp_path):
    config = _base(tmp_path)
    config["xmpp"]["password_file"] = str(tmp_path / "no-such-password-file")
    _assertRefused(tmp_path, config, ["password"])


def test_password_file_is_a_directory(tmp_path):
    config = _base(tmp_path)
    config["xmpp"]["password_file"] = str(tmp_path)
    _assertRefused(tmp_path, config, ["password"])


def test_bad_service_endpoint(tmp_path):
    config = _base(tmp_path)
    config["services"] = {"ssh": "nosuchtype:host=1.2.3.4:port=22"}
    _assertRefused(tmp_path, config, ["ssh", "endpoint", "nosuchtype"])


@pytest.mark.parametrize("mode", ["rw-------", "999", "0o1777x"])
def test_bad_socket_mode(tmp_path, mode):
    config = _base(tmp_path)
    config["daemon"]["socket_mode"] = mode
    _assertRefused(tmp_path, config, ["socket_mode", "socket mode", "socket-mode"])


def test_bad_jid(tmp_path):
    config = _base(tmp_path)
    config["xmpp"]["jid"] = "not a jid@@"
    _assertRefused(tmp_path, config, ["jid"])


def test_missing_config_file(tmp_path):
    result = runTwistd(["bytestreamd", "--config", str(tmp_path / "nope.conf")], timeout=45)
    output = (result.stdout + result.stderr).lower()
    assert result.returncode != 0
    assert "nope.conf" in output and "traceback" not in output, output
