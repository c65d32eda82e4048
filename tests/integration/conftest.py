"""
Fixtures for the real-server tier.

- ``prosody``: one tuned Prosody for the whole session (restarted if a test
  left it stopped). Tests that stop or restart the server use
  ``privateProsody`` so they cannot disturb the others.
- ``daemons``: a factory ``daemons(account, accept=..., services=...,
  extra=..., watch=False) -> DaemonProcess`` (started, connected); all are
  stopped at teardown, and their log tails are printed when the test failed.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Dict, List, Optional

import pytest

from .harness import DaemonProcess, ProsodyServer
from .fixtures_federation import (federationDaemonsFixture, federationFixture,  # noqa: F401
                                  sessionFederationFixture)


def pytest_collection_modifyitems(config, items):
    """
    The real tier needs real tools; missing ones are an error to fix (run
    scripts/bootstrap, which ``make test`` does), never a reason to skip.
    """
    needed = ("prosody", "nc", "socat", "ssh", "scp", "ssh-keygen", "/usr/sbin/sshd")
    missing = [tool for tool in needed
               if not (os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool))]
    if missing and any("tests/integration" in str(item.fspath) for item in items):
        raise pytest.UsageError(
            "the integration tier needs %s; run scripts/bootstrap (make test does)"
            % ", ".join(missing))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture(scope="session")
def sessionProsody(tmp_path_factory):
    server = ProsodyServer(str(tmp_path_factory.mktemp("prosody")), tuned=True)
    server.start()
    yield server
    server.close()


@pytest.fixture
def prosody(sessionProsody, request):
    if not sessionProsody.running:
        sessionProsody.start()
    yield sessionProsody
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("\n===== prosody log tail =====\n" + sessionProsody.logTail(30))


@pytest.fixture
def privateProsody(tmp_path, request):
    server = ProsodyServer(str(tmp_path / "prosody"), tuned=True)
    server.start()
    yield server
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("\n===== private prosody log tail =====\n" + server.logTail(30))
    server.close()


def makeDaemonFactory(server: ProsodyServer, tmp_path, request):
    started: List[DaemonProcess] = []

    def factory(account: str, accept: Optional[str] = None,
                services: Optional[Dict[str, str]] = None,
                extra: Optional[Dict[str, Dict[str, str]]] = None,
                watch: bool = False, start: bool = True) -> DaemonProcess:
        config: Dict[str, Dict[str, str]] = {}
        if accept is not None:
            config["accept"] = {"allow": accept}
        if services:
            config["services"] = dict(services)
        for section, items in (extra or {}).items():
            config.setdefault(section, {}).update(items)
        daemon = DaemonProcess(server, account, tmp_path / account, config)
        started.append(daemon)
        if start:
            daemon.start(watch=watch)
        return daemon

    def finish():
        report = getattr(request.node, "rep_call", None)
        failed = report is not None and report.failed
        for daemon in started:
            if failed:
                print("\n===== %s =====\n%s" % (daemon.jid, daemon.logTail(60)))
            daemon.close()

    return factory, finish


@pytest.fixture
def daemons(prosody, tmp_path, request) -> Callable[..., DaemonProcess]:
    factory, finish = makeDaemonFactory(prosody, tmp_path, request)
    yield factory
    finish()


@pytest.fixture
def privateDaemons(privateProsody, tmp_path, request) -> Callable[..., DaemonProcess]:
    factory, finish = makeDaemonFactory(privateProsody, tmp_path, request)
    yield factory
    finish()
