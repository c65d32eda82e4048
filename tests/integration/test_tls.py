"""
Verified TLS is the default: a daemon that does not trust the server's
certificate must not connect, and must say why in its log.
"""

from __future__ import annotations

import pytest

from .harness import DaemonProcess, DaemonStartError
from .harness.prosody import makeCertificates


@pytest.mark.timeout(60)
def test_untrusted_server_certificate_is_refused(prosody, tmp_path):
    otherCA = makeCertificates(str(tmp_path / "other-ca"))["ca"]
    daemon = DaemonProcess(prosody, "alice", tmp_path / "alice",
                           {"xmpp": {"ca_certs": otherCA}})
    try:
        with pytest.raises(DaemonStartError):
            daemon.start(timeout=8)
        log = daemon.logText().lower()
        assert any(w in log for w in ("certificate", "verif", "tls")), daemon.logTail()
    finally:
        daemon.close()
