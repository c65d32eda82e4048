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
- Federation (``federation.py``) reuses this class with keyword-only
  ``domain``, ``address``, ``ca`` (one :class:`CertificateAuthority` for
  all servers) and ``s2s`` (:class:`S2SConfig`); the defaults keep the
  single-server setup above unchanged. Account files go where Prosody looks
  for them: ``util/datamanager.lua`` escapes every non-alphanumeric byte of
  host and user names, so ``a.test`` is stored as ``a%2etest``.
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
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

PROSODY = "/usr/bin/prosody"
DOMAIN = "localhost"
PROXY_JID = "proxy.localhost"
ACCOUNTS = ("alice", "bob", "mallory")


class ProsodyStartError(RuntimeError):
    """Prosody did not come up; the message carries its log tail."""


def freePort(address: str = "127.0.0.1") -> int:
    """A currently free loopback TCP port (bind to port 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((address, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _lua(value: str) -> str:
    """A Lua string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _storeName(name: str) -> str:
    """
    A host or user name as Prosody's ``util/datamanager.lua`` ``encode``
    writes it in a path: every non-alphanumeric byte becomes ``%xx``
    (``a.test`` is stored as ``a%2etest``).
    """
    return "".join(chr(b) if chr(b).isalnum() else "%%%02x" % b
                   for b in name.encode("utf-8"))


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "<no %s: %s>" % (path, e)


def _portOpen(port: int, address: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((address, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class CertificateAuthority:
    """
    A private CA (key kept in memory) that signs server certificates.

    One CA can sign the certificates of several servers, so that federated
    servers verify each other's s2s certificates with the same trust anchor
    their clients use (``path``, the CA certificate PEM).
    """

    def __init__(self, directory: str, name: str = "bytestreamd test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        os.makedirs(directory, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.notBefore = now - datetime.timedelta(days=1)
        self.notAfter = now + datetime.timedelta(days=30)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.notBefore).not_valid_after(self.notAfter)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.path = os.path.join(directory, "ca.crt")
        with open(self.path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, directory: str, domain: str,
              addresses: Sequence[str] = ("127.0.0.1",)) -> Dict[str, str]:
        """
        Write a server certificate and key for ``domain`` into ``directory``.

        SAN: DNS:domain, DNS:proxy.domain and an IP entry per address, so
        name-based and address-based verification both pass; EKU serverAuth
        *and* clientAuth, because an s2s initiator presents the same
        certificate as a TLS client. Returns paths ``cert`` and ``key``.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        os.makedirs(directory, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        names: List[x509.GeneralName] = [x509.DNSName(domain), x509.DNSName("proxy." + domain)]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.notBefore).not_valid_after(self.notAfter)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
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
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        paths = {
            "cert": os.path.join(directory, domain + ".crt"),
            "key": os.path.join(directory, domain + ".key"),
        }
        pem = serialization.Encoding.PEM
        with open(paths["cert"], "wb") as f:
            f.write(cert.public_bytes(pem))
        with open(paths["key"], "wb") as f:
            f.write(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        os.chmod(paths["key"], 0o600)
        return paths


def makeCertificates(directory: str, domain: str = DOMAIN,
                     addresses: Sequence[str] = ("127.0.0.1",)) -> Dict[str, str]:
    """
    Write a private CA and a server certificate for ``domain`` signed by it.

    Returns paths: ``ca`` (CA certificate PEM), ``cert``, ``key``.
    The server certificate has SAN DNS:domain, DNS:proxy.domain and
    IP:127.0.0.1, so both name-based and address-based verification pass.
    """
    ca = CertificateAuthority(directory)
    paths = ca.issue(directory, domain, addresses)
    paths["ca"] = ca.path
    return paths


@dataclass(frozen=True)
class S2SConfig:
    """
    Server-to-server settings of a federated :class:`ProsodyServer`.

    ``hostsFile`` is a hosts(5) file handed to libunbound (Debian's
    ``lua-unbound``) as ``unbound = { hoststxt = FILE }``: Prosody resolves
    its peers' names there, never through the machine's /etc/hosts or DNS.
    No SRV records exist (the ``.test`` zone is answered NXDOMAIN locally by
    libunbound's built-in RFC 6761 zone, at once), so Prosody falls back to
    the A record and the default port 5269. ``secureAuth`` is
    ``s2s_secure_auth``: true means the peer must present a certificate that
    verifies against the server's ``cafile`` (the harness CA) for its domain.
    """

    hostsFile: str
    port: int = 5269
    secureAuth: bool = True


class ProsodyServer:
    """
    One Prosody process in ``tmpdir``.

    Attributes: ``domain``, ``address`` (the loopback address every port
    listens on), ``c2sPort``, ``proxyPort``, ``proxyJID``, ``caPath``,
    ``passwords`` (account name -> password), ``logPath``, ``configPath``,
    ``tmpdir``, ``tuned``, ``s2s`` (None: no federation); ``process`` while
    running.

    The defaults are the single-server setup (``localhost`` on 127.0.0.1,
    s2s disabled, its own CA). For federation (see ``federation.py``) pass
    ``domain``, ``address``, a shared :class:`CertificateAuthority` as
    ``ca`` and an :class:`S2SConfig`.
    """

    def __init__(self, tmpdir: str, tuned: bool = True, accounts=ACCOUNTS,
                 logLevel: str = "info", *, domain: str = DOMAIN,
                 address: str = "127.0.0.1", ca: Optional[CertificateAuthority] = None,
                 s2s: Optional[S2SConfig] = None) -> None:
        self.tmpdir = os.path.abspath(str(tmpdir))
        self.tuned = tuned
        self.logLevel = logLevel
        self.domain = domain
        self.address = address
        self.s2s = s2s
        self.proxyJID = "proxy." + domain
        self.dataPath = os.path.join(self.tmpdir, "data")
        self.certDir = os.path.join(self.tmpdir, "certs")
        self.logPath = os.path.join(self.tmpdir, "prosody.log")
        self.stdoutPath = os.path.join(self.tmpdir, "prosody.stdout")
        self.pidPath = os.path.join(self.tmpdir, "prosody.pid")
        self.configPath = os.path.join(self.tmpdir, "prosody.cfg.lua")
        self.c2sPort = freePort(address)
        self.proxyPort = freePort(address)
        while self.proxyPort == self.c2sPort:
            self.proxyPort = freePort(address)
        os.makedirs(self.dataPath, exist_ok=True)
        if ca is None:
            certs = makeCertificates(self.certDir, self.domain, (address,))
        else:
            certs = dict(ca.issue(self.certDir, self.domain, (address,)), ca=ca.path)
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
        accounts = os.path.join(self.dataPath, _storeName(self.domain), "accounts")
        os.makedirs(accounts, exist_ok=True)
        with open(os.path.join(accounts, _storeName(name) + ".dat"), "w") as f:
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
        address = _lua(self.address)
        if self.s2s is None:
            s2s = "s2s_ports = { }\n"
            disabled = '"s2s"; "offline";'
        else:
            # s2s_secure_auth = true: the peer's certificate must verify
            # (cafile below) for its domain; dialback is then not needed.
            s2s = (
                f"s2s_ports = {{ {self.s2s.port} }}\n"
                f"s2s_interfaces = {{ {address} }}\n"
                f"s2s_secure_auth = {'true' if self.s2s.secureAuth else 'false'}\n"
                f"unbound = {{ hoststxt = {_lua(self.s2s.hostsFile)} }}\n"
            )
            disabled = '"offline";'
        ssl = (f"certificate = {_lua(self.certPath)}, key = {_lua(self.keyPath)}, "
               f"cafile = {_lua(self.caPath)}")
        config = f"""-- generated by tests/integration/harness/prosody.py
run_as_root = true
pidfile = {_lua(self.pidPath)}
data_path = {_lua(self.dataPath)}
certificates = {_lua(self.certDir)}
log = {{ {{ levels = {{ min = {_lua(self.logLevel)} }}, to = "file", filename = {_lua(self.logPath)} }} }}
use_ipv6 = false
interfaces = {{ {address} }}
local_interfaces = {{ {address} }}
c2s_ports = {{ {self.c2sPort} }}
c2s_direct_tls_ports = {{ }}
{s2s}s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
proxy65_ports = {{ {self.proxyPort} }}
proxy65_interfaces = {{ {address} }}
{tuning}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix";
}}
modules_disabled = {{ {disabled} }}
c2s_require_encryption = true
s2s_require_encryption = true
allow_registration = false
authentication = "internal_plain"
storage = "internal"
ssl = {{ cafile = {_lua(self.caPath)} }}

VirtualHost {_lua(self.domain)}
    ssl = {{ {ssl} }}

Component {_lua(self.proxyJID)} "proxy65"
    proxy65_address = {address}
"""
        with open(self.configPath, "w") as f:
            f.write(config)

    # -- process ----------------------------------------------------------

    @property
    def ports(self) -> List[int]:
        """Every port this server listens on (c2s, proxy65, s2s if federated)."""
        ports = [self.c2sPort, self.proxyPort]
        if self.s2s is not None:
            ports.append(self.s2s.port)
        return ports

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
            if all(_portOpen(port, self.address) for port in self.ports):
                return
            time.sleep(0.05)
        self.stop()
        raise ProsodyStartError(
            "prosody did not listen on %s ports %s within %.0fs; log tail:\n%s"
            % (self.address, self.ports, timeout, self.logTail()))

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
        while any(_portOpen(port, self.address) for port in self.ports) \
                and time.monotonic() < deadline:
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
        return "<ProsodyServer %s %s c2s=%d proxy65=%d s2s=%s>" % (
            self.domain, self.address, self.c2sPort, self.proxyPort,
            self.s2s.port if self.s2s else None)
