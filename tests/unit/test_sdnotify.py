"""Tests for bytestreamd.sdnotify against a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

from bytestreamd.sdnotify import notify


@pytest.fixture
def receiver():
    # A short directory: tmp_path can exceed the 107-byte socket path limit.
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        path = os.path.join(directory, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        try:
            yield sock, path
        finally:
            sock.close()


def test_sends_one_datagram(receiver):
    sock, path = receiver
    assert notify("READY=1", "STATUS=listening on control",
                  environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening on control"
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


def test_uses_environment(receiver, monkeypatch):
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify("STOPPING=1")
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket():
    name = "bytestreamd-test-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"READY=1"


def test_noop_without_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    assert notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False


def test_errors_are_logged_not_raised(tmp_path):
    from twisted.logger import globalLogPublisher
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        assert notify("READY=1", environ={
            "NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) is False
        assert notify("READY=1",
                      environ={"NOTIFY_SOCKET": "relative"}) is False
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert len(seen) == 2
    assert all(e.get("log_namespace") == "bytestreamd.sdnotify" for e in seen)
