"""
A throwaway Prosody 0.12 for the real-server tests.

Why it looks like this:
- Everything (config, certificates, accounts, data, log, pid file) lives in
  one temporary directory, and every port is a free loopback port, so runs
  never collide with each other or with a system Prosody.
- A private CA signs a certificate for ``localhost`` so the daemon is tested
  with *verified* TLS (``ca_certs``), exactly as a user would configure it.
- Accounts are written straight into Prosody's ``internal_plain`` storage
  (``<data>/localhost/accounts/<name>.dat``): one ``prosodyctl register`` per
  account costs a Lua start-up each, and the file format is trivial.
- We run as root in CI; ``mod_posix`` refuses that unless ``run_as_root =
  true`` (``/usr/lib/prosody/modules/mod_posix.lua``), and only
  ``prosodyctl`` switches to ``prosody_user`` (``util/startup.lua``
  ``switch_user``), so starting ``prosody -F`` directly with
  ``run_as_root`` is all it takes.
- ``tuned=True`` lifts Prosody's own per-connection throughput limits that
  would otherwise dominate a bytestream benchmark:
  ``network_settings = { nagle = false }`` is read by ``net/server.lua`` and
  applied by ``net/server_epoll.lua`` (``cfg.nagle == false`` sets
  TCP_NODELAY on every connection); ``network_default_read_size`` is read by
  ``core/portmanager.lua`` and passed as ``read_size`` to every listener, so
  each accepted connection reads up to that many bytes per wake-up instead
  of 4096.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import time
from typing import Dict, Optional

PROSODY = "/usr/bin/prosody"
DOMAIN = "localhost"
PROXY_JID = "proxy.localhost"
ACCOUNTS = ("alice", "bob", "mallory")


class ProsodyStartError(RuntimeError):
    """Prosody did not come up; the message carries its log tail."""


def freePort() -> int:
    """A currently free loopback TCP port (bind to port 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _lua(value: str) -> str:
    """A Lua string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "<no %s: %s>" % (path, e)


def _portOpen(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def makeCertificates(directory: str, domain: str = DOMAIN) -> Dict[str, str]:
    """
    Write a private CA and a server certificate for ``domain`` signed by it.

    Returns paths: ``ca`` (CA certificate PEM), ``cert``, ``key``.
    The server certificate has SAN DNS:domain, DNS:proxy.domain and
    IP:127.0.0.1, so both name-based and address-based verification pass.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bytestreamd test CA")])
    caCert = (
        x509.CertificateBuilder()
        .subject_name(caName).issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()),
                       critical=False)
        .sign(caKey, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(domain),
            x509.DNSName("proxy." + domain),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=True, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            caKey.public_key()), critical=False)
        .sign(caKey, hashes.SHA256())
    )

    paths = {
        "ca": os.path.join(directory, "ca.crt"),
        "cert": os.path.join(directory, domain + ".crt"),
        "key": os.path.join(directory, domain + ".key"),
    }
    pem = serialization.Encoding.PEM
    with open(paths["ca"], "wb") as f:
        f.write(caCert.public_bytes(pem))
    with open(paths["cert"], "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(paths["key"], "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)
    return paths


class ProsodyServer:
    """
    One Prosody process in ``tmpdir``.

    Attributes: ``domain``, ``c2sPort``, ``proxyPort``, ``proxyJID``,
    ``caPath``, ``passwords`` (account name -> password), ``logPath``,
    ``configPath``, ``tmpdir``, ``tuned``; ``process`` while running.
    """

    def __init__(self, tmpdir: str, tuned: bool = True, accounts=ACCOUNTS,
                 logLevel: str = "info") -> None:
        self.tmpdir = os.path.abspath(str(tmpdir))
        self.tuned = tuned
        self.logLevel = logLevel
        self.domain = DOMAIN
        self.proxyJID = PROXY_JID
        self.dataPath = os.path.join(self.tmpdir, "data")
        self.certDir = os.path.join(self.tmpdir, "certs")
        self.logPath = os.path.join(self.tmpdir, "prosody.log")
        self.stdoutPath = os.path.join(self.tmpdir, "prosody.stdout")
        self.pidPath = os.path.join(self.tmpdir, "prosody.pid")
        self.configPath = os.path.join(self.tmpdir, "prosody.cfg.lua")
        self.c2sPort = freePort()
        self.proxyPort = freePort()
        while self.proxyPort == self.c2sPort:
            self.proxyPort = freePort()
        os.makedirs(self.dataPath, exist_ok=True)
        certs = makeCertificates(self.certDir, self.domain)
        self.caPath = certs["ca"]
        self.certPath = certs["cert"]
        self.keyPath = certs["key"]
        self.passwords: Dict[str, str] = {}
        for name in accounts:
            self.register(name)
        self._writeConfig()
        self.process: Optional[subprocess.Popen] = None
        self._stdout = None

    # -- accounts ---------------------------------------------------------

    def jid(self, name: str, resource: Optional[str] = None) -> str:
        bare = "%s@%s" % (name, self.domain)
        return bare + "/" + resource if resource else bare

    def register(self, name: str, password: Optional[str] = None) -> str:
        """
        Create (or overwrite) an account; works while Prosody runs, since
        ``internal_plain`` reads the file at each authentication.
        """
        password = password or secrets.token_urlsafe(16)
        accounts = os.path.join(self.dataPath, self.domain, "accounts")
        os.makedirs(accounts, exist_ok=True)
        with open(os.path.join(accounts, name + ".dat"), "w") as f:
            f.write("return {\n\t[\"password\"] = %s;\n};\n" % _lua(password))
        self.passwords[name] = password
        return password

    # -- configuration ----------------------------------------------------

    def _writeConfig(self) -> None:
        tuning = ""
        if self.tuned:
            tuning = (
                "network_settings = { nagle = false }\n"
                "network_default_read_size = 262144\n"
            )
        config = f"""-- generated by tests/integration/harness/prosody.py
run_as_root = true
pidfile = {_lua(self.pidPath)}
data_path = {_lua(self.dataPath)}
certificates = {_lua(self.certDir)}
log = {{ {{ levels = {{ min = {_lua(self.logLevel)} }}, to = "file", filename = {_lua(self.logPath)} }} }}
use_ipv6 = false
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2sPort} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
proxy65_ports = {{ {self.proxyPort} }}
proxy65_interfaces = {{ "127.0.0.1" }}
{tuning}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix";
}}
modules_disabled = {{ "s2s"; "offline"; }}
c2s_require_encryption = true
s2s_require_encryption = true
allow_registration = false
authentication = "internal_plain"
storage = "internal"

VirtualHost {_lua(self.domain)}
    ssl = {{ certificate = {_lua(self.certPath)}, key = {_lua(self.keyPath)} }}

Component {_lua(self.proxyJID)} "proxy65"
    proxy65_address = "127.0.0.1"
"""
        with open(self.configPath, "w") as f:
            f.write(config)

    # -- process ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logTail(self, lines: int = 40) -> str:
        return _tail(self.logPath, lines) + _tail(self.stdoutPath, 10)

    def start(self, timeout: float = 15.0) -> None:
        """Start Prosody and wait until both the c2s and proxy65 ports accept."""
        if self.running:
            return
        self._stdout = open(self.stdoutPath, "ab")
        self.process = subprocess.Popen(
            [PROSODY, "-F", "--config", self.configPath],
            stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=subprocess.STDOUT,
            cwd=self.tmpdir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                rc = self.process.returncode
                self._closeStdout()
                self.process = None
                raise ProsodyStartError(
                    "prosody exited with status %s during start-up; log tail:\n%s"
                    % (rc, self.logTail()))
            if _portOpen(self.c2sPort) and _portOpen(self.proxyPort):
                return
            time.sleep(0.05)
        self.stop()
        raise ProsodyStartError(
            "prosody did not listen on c2s port %d / proxy65 port %d within %.0fs; "
            "log tail:\n%s" % (self.c2sPort, self.proxyPort, timeout, self.logTail()))

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Stop Prosody (SIGTERM, then SIGKILL after ``timeout``) and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.send_signal(sig)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        self._closeStdout()
        deadline = time.monotonic() + 5
        while _portOpen(self.c2sPort) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        """Stop abruptly: connections are reset, no stream close is sent."""
        self.stop(sig=signal.SIGKILL)

    def restart(self, timeout: float = 15.0) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        self.stop()

    def _closeStdout(self) -> None:
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None

    def __enter__(self) -> "ProsodyServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<ProsodyServer %s c2s=%d proxy65=%d>" % (
            self.domain, self.c2sPort, self.proxyPort)
