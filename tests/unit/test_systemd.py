"""
The systemd unit: `systemd-analyze verify` accepts it and its hardening
keeps `systemd-analyze security` exposure at 2.5 or better, while the
directives the daemon depends on stay as they are.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "systemd", "bytestreamd.service")

analyze = shutil.which("systemd-analyze")


def needsAnalyze(test):
    """systemd-analyze is installed by scripts/bootstrap: its absence fails
    the test (with the reason) instead of skipping it."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        assert analyze is not None, ("systemd-analyze is not installed "
                                     "(scripts/bootstrap installs systemd)")
        return test(*args, **kwargs)
    return run


def directives():
    result = {}
    with open(UNIT) as f:
        for line in f:
            m = re.match(r"^(\w+)=(.*)$", line.strip())
            if m:
                result.setdefault(m.group(1), []).append(m.group(2))
    return result


def test_essential_directives():
    d = directives()
    assert d["Type"] == ["notify"]
    (execStart,) = d["ExecStart"]
    assert re.match(r"^/\S*/twistd -n --pidfile= bytestreamd "
                    r"--config /etc/bytestreamd/bytestreamd\.conf$",
                    execStart)
    assert d["RuntimeDirectory"] == ["bytestreamd"]
    assert d["User"] == ["bytestreamd"]
    assert d["Restart"] == ["on-failure"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp",
                "PrivateDevices"):
        assert d[key] == ["yes"], key
    assert d["ProtectSystem"] == ["strict"]
    families = d["RestrictAddressFamilies"][0].split()
    for family in ("AF_UNIX", "AF_INET", "AF_INET6"):
        assert family in families
    # pyOpenSSL's cffi callbacks need W+X memory: TLS breaks without it.
    assert d.get("MemoryDenyWriteExecute", ["no"]) == ["no"]
    assert "PrivateNetwork" not in d or d["PrivateNetwork"] == ["no"]


def _verifiableCopy(tmp_path) -> str:
    """The unit with ExecStart's binary replaced by one that exists here."""
    twistd = shutil.which("twistd") or os.path.join(
        os.path.dirname(sys.executable), "twistd")
    assert os.path.exists(twistd), "twistd is not installed"
    with open(UNIT) as f:
        text = f.read()
    text, count = re.subn(r"^ExecStart=\S+", "ExecStart=" + twistd, text,
                          flags=re.M)
    assert count == 1
    path = tmp_path / "bytestreamd.service"
    path.write_text(text)
    return str(path)


@needsAnalyze
def test_verify(tmp_path):
    result = subprocess.run([analyze, "verify", _verifiableCopy(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", output  # warnings (unknown keys...) count too


@needsAnalyze
def test_security_exposure():
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", UNIT],
        capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    m = re.search(r"Overall exposure level for bytestreamd\.service: "
                  r"([0-9.]+)", output)
    assert m, output
    assert float(m.group(1)) <= 2.5, output
