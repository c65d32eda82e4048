"""
Fixtures for tests that need two federated servers (harness/federation.py).

Use them by importing into a test module (or, to offer them everywhere,
into conftest.py)::

    from .fixtures_federation import (  # noqa: F401 (pytest finds them by name)
        federationDaemonsFixture, federationFixture, sessionFederationFixture)

The functions carry a ``Fixture`` suffix and register under the plain names
(``name=``), so a test's ``federation`` argument does not shadow an import.

- ``sessionFederation``: one :class:`Federation` (a.test on 127.0.0.2,
  b.test on 127.0.0.3, s2s on port 5269 of each) for the whole session;
  started once, closed at the end.
- ``federation``: the same object, with every server running and s2s
  proven to work both ways before the test (a test that crashed or froze a
  server leaves it to this fixture to bring it back); the servers' log
  tails are printed when the test failed.
- ``federationDaemons``: a factory ``federationDaemons("alice@a.test",
  accept=..., services=..., extra=..., watch=False, start=True) ->
  DaemonProcess`` that runs bytestreamd against the server of the JID's
  domain (``[xmpp] host``/``port``/``ca_certs`` from
  :meth:`Federation.daemonConfig`); every daemon is stopped at teardown.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

import pytest

from .harness.daemon import DaemonProcess
from .harness.federation import Federation


@pytest.fixture(scope="session", name="sessionFederation")
def sessionFederationFixture(tmp_path_factory):
    federation = Federation(str(tmp_path_factory.mktemp("federation")))
    try:
        federation.start()
        yield federation
    finally:
        federation.close()


def _failed(request) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.failed


@pytest.fixture(name="federation")
def federationFixture(sessionFederation, request):
    for domain in sessionFederation.domains:
        sessionFederation.thaw(domain)
    sessionFederation.start()  # starts what is down, then proves s2s both ways
    yield sessionFederation
    if _failed(request):
        print("\n" + sessionFederation.logTails(30))


@pytest.fixture(name="federationDaemons")
def federationDaemonsFixture(federation, tmp_path, request) -> Callable[..., DaemonProcess]:
    started: List[DaemonProcess] = []

    def factory(bareJID: str, accept: Optional[str] = None,
                services: Optional[Dict[str, str]] = None,
                extra: Optional[Dict[str, Dict[str, str]]] = None,
                watch: bool = False, start: bool = True) -> DaemonProcess:
        account, _, domain = bareJID.partition("@")
        config: Dict[str, Dict[str, str]] = federation.daemonConfig(domain)
        if accept is not None:
            config["accept"] = {"allow": accept}
        if services:
            config["services"] = dict(services)
        for section, items in (extra or {}).items():
            config.setdefault(section, {}).update(items)
        daemon = DaemonProcess(federation[domain], account,
                               os.path.join(str(tmp_path), bareJID), config)
        started.append(daemon)
        if start:
            daemon.start(watch=watch)
        return daemon

    yield factory
    failed = _failed(request)
    for daemon in started:
        if failed:
            print("\n===== %s =====\n%s" % (daemon.jid, daemon.logTail(60)))
        daemon.close()
