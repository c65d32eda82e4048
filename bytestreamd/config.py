"""
The daemon's configuration: an INI file plus command-line overrides, turned
into one validated, immutable :class:`Config` before anything starts.

Everything that can be checked without the network is checked here (JIDs,
files, modes, endpoint strings), so a typo is reported by ``twistd`` with
the section and key to fix instead of surfacing minutes later as a failed
link.  Unknown sections and keys are errors for the same reason.

Overrides (from the command line) use the file's own syntax and are keyed
``"section.key"``, e.g. ``{"xmpp.jid": "bot@example.org",
"accept.allow": "*@example.org"}``; they replace the file's value.

Why one long module: every key's validation and its one-line error live together, so the reader of a key finds all its rules in one place.
"""

from __future__ import annotations

import configparser
import dataclasses
import grp
import ipaddress
import os
import re
import types
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from twisted.internet.endpoints import clientFromString
from twisted.internet.testing import MemoryReactor
from twisted.words.protocols.jabber.jid import JID

from bytestreamd import registry
from bytestreamd.errors import ConfigError
from bytestreamd.methods.s5b_policy import (DEFAULT_CONNECT, formatConnectRule,
                                            parseConnectRule)
from bytestreamd.jids import InvalidJID, makeJID, parseJID, parseJIDOrNone

#: Resource used when the configured JID has none.
DEFAULT_RESOURCE = "bytestreamd"

#: Stream methods we implement, by the name used in config and control
#: (the one list is bytestreamd.registry).
KNOWN_METHODS = registry.METHOD_NAMES

#: Direct SOCKS5 candidates: listen on every IPv4 interface, any free port.
#: The daemon advertises the host's non-loopback addresses with that port
#: (see INTERFACE.md); IPv6 needs an explicit ``[::]:0``.
DEFAULT_S5B_LISTEN: Tuple[Tuple[str, int], ...] = (("0.0.0.0", 0),)

#: The longest UNIX socket path the kernel takes (sun_path less the NUL).
MAX_SOCKET_PATH = 107

HostPort = Tuple[str, int]
Advertised = Tuple[str, Optional[int]]


@dataclasses.dataclass(frozen=True)
class Config:
    """
    Every setting the daemon uses, validated.  Build it with
    :func:`loadConfig`; tests may build one directly or use
    :func:`dataclasses.replace` on a loaded one.
    """

    # [xmpp]
    jid: JID
    password: str = dataclasses.field(repr=False)
    host: Optional[str] = None
    port: int = 5222
    ca_certs: Tuple[str, ...] = ()
    tls: str = "verify"
    # [daemon]
    runtime_dir: str = ""
    socket_mode: int = 0o600
    socket_group: Optional[int] = None
    # [links]
    methods: Tuple[str, ...] = ("s5b", "ibb")
    #: Negotiation frameworks in preference order (registry names): the
    #: first one a peer's disco supports is used.
    negotiation: Tuple[str, ...] = ("jingle", "si")
    ibb_block_size: int = 4096
    ibb_stanza: str = "iq"
    ibb_window: int = 32
    max_links: int = 64
    link_buffer: int = 262144
    #: Bytes taken from local clients that every link together may hold
    #: (held before GOOD, queued, in flight unacknowledged); when reached,
    #: local clients are not read until peers acknowledge (bytestreamd.links.budget).
    max_buffered: int = 8 * 1024 * 1024
    offer_timeout: float = 60.0
    attempt_timeout: float = 30.0
    #: How long a peer may stay silent (no data, no acks, no answer to a
    #: ping) while a link waits on it, before the link ends ERR; also how
    #: long an ended transport or a CLOSE waits for the peer's confirmation.
    peer_timeout: float = 60.0
    #: How long a GOOD link waits for its first local client.
    attach_timeout: float = 300.0
    log_traffic: bool = False
    # [s5b]
    s5b_listen: Tuple[HostPort, ...] = DEFAULT_S5B_LISTEN
    s5b_advertise: Tuple[Advertised, ...] = ()
    #: ``None``: discover a proxy on the server; ``""``: use none; else its JID.
    s5b_proxy: Optional[str] = None
    #: Which candidate addresses a peer may make us connect to: ``[s5b]
    #: connect`` rules, normalised (``net`` or ``!net``); see s5b_policy.
    s5b_connect: Tuple[str, ...] = DEFAULT_CONNECT
    #: Direct streamhost handshakes held at once; ``None``: follow max_links.
    s5b_max_handshakes: Optional[int] = None
    # [accept]
    accept_allow: Tuple[str, ...] = ()
    #: ``[links] e2e``: ``required`` (every link end-to-end, never a clear
    #: byte), ``preferred`` (e2e=bytes with peers that can), ``off``
    #: (plain unless OPEN asks; offers asking for it are still honoured).
    links_e2e: str = "off"
    # [e2e] (docs/e2e.rst)
    #: Where identity.pem and known-peers live; "" = the default
    #: ($STATE_DIRECTORY, /var/lib/bytestreamd as root, $XDG_STATE_HOME).
    e2e_state_dir: str = ""
    e2e_trust: str = "tofu"
    #: The known-peers file; "" = <state dir>/known-peers.
    e2e_known_peers: str = ""
    #: PEM files of the CAs trusted by ``trust = ca``.
    e2e_ca_certs: Tuple[str, ...] = ()
    # [services]
    services: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}))


#: section -> key -> description (used for unknown-key errors and docs).
KEYS: Dict[str, Tuple[str, ...]] = {
    "xmpp": ("jid", "password_file", "password", "host", "port", "ca_certs",
             "tls"),
    "daemon": ("runtime_dir", "socket_mode", "socket_group", "log_traffic"),
    "links": ("methods", "negotiation", "ibb_block_size", "ibb_stanza", "ibb_window",
              "max_links", "link_buffer", "max_buffered", "offer_timeout", "attempt_timeout",
              "peer_timeout", "attach_timeout", "e2e"),
    "s5b": ("listen", "advertise", "proxy", "connect", "max_handshakes"),
    "accept": ("allow",),
    "e2e": ("state_dir", "trust", "known_peers", "ca_certs"),
    "services": (),  # free-form: NAME = ENDPOINT
}

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_SIZE_SUFFIX = {"": 1, "k": 1024, "kib": 1024, "m": 1024 * 1024,
                "mib": 1024 * 1024}


def loadConfig(path: Optional[str],
               overrides: Optional[Mapping[str, str]] = None,
               *,
               environ: Optional[Mapping[str, str]] = None,
               geteuid: Callable[[], int] = os.geteuid) -> Config:
    """
    Read the INI file at ``path`` (``None``: no file), apply ``overrides``
    (``{"section.key": "value"}``, values in the file's syntax, ``None``
    values ignored) and validate everything.

    Raises :class:`ConfigError` naming the section, the key and the problem.
    ``environ`` and ``geteuid`` exist for tests of the runtime_dir default.
    """
    parser = _readFile(path)
    raw: Dict[str, Dict[str, str]] = {
        section: dict(parser.items(section)) for section in parser.sections()}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError("override %r is not of the form section.key"
                              % (dotted,))
        values = raw.setdefault(section, {})
        values[key] = str(value)
        if (section, key) == ("xmpp", "password_file"):
            # A password file given on the command line wins over a
            # password in the file, instead of clashing with it.
            values.pop("password", None)
    _checkKnown(raw)
    reader = _Reader(raw)
    return _build(reader, os.environ if environ is None else environ, geteuid)


def allowed(config: Config, jid: Union[JID, str]) -> bool:
    """
    Whether offers from ``jid`` may be accepted under ``[accept] allow``.

    Our own bare JID is always allowed.  A pattern matches when it is the
    exact bare JID, the exact full JID, ``*@domain`` (any user at domain)
    or ``domain`` (anything at that domain -- the domain itself, its users
    and their resources -- as in XEP-0016).
    """
    if not isinstance(jid, JID):
        parsed = parseJIDOrNone(jid)
        if parsed is None:
            return False
        jid = parsed
    bare = jid.userhost()
    if bare == config.jid.userhost():
        return True
    full = jid.full()
    for pattern in config.accept_allow:
        if pattern.startswith("*@"):
            if jid.user and jid.host == pattern[2:]:
                return True
        elif "@" in pattern or "/" in pattern:
            if pattern == bare or pattern == full:
                return True
        elif jid.host == pattern:
            return True
    return False


# --- reading ---------------------------------------------------------------


def _readFile(path: Optional[str]) -> configparser.ConfigParser:
    # No interpolation: a password may contain "%".  Only "=" separates a
    # key from its value, because endpoint strings are full of ":".
    parser = configparser.ConfigParser(
        interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"),
        inline_comment_prefixes=None, default_section="\0none",
        empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    if path is None:
        return parser
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, source=path)
    except OSError as e:
        raise ConfigError("cannot read config file %s: %s"
                          % (path, e.strerror or e))
    except UnicodeDecodeError as e:
        raise ConfigError("config file %s is not UTF-8: %s" % (path, e))
    except configparser.Error as e:
        raise ConfigError("config file %s: %s" % (path, _oneLine(str(e))))
    return parser


def _oneLine(text: str) -> str:
    return " ".join(text.split())


def _checkKnown(raw: Mapping[str, Mapping[str, str]]) -> None:
    for section, values in raw.items():
        if section not in KEYS:
            raise ConfigError(
                "unknown section [%s] (known: %s)"
                % (section, ", ".join("[%s]" % s for s in KEYS)))
        if section == "services":
            continue
        for key in values:
            if key not in KEYS[section]:
                raise ConfigError(
                    "[%s] %s: unknown key (known in [%s]: %s)"
                    % (section, key, section, ", ".join(KEYS[section])))


class _Reader:
    """Typed access to raw values; every error names [section] key."""

    def __init__(self, raw: Mapping[str, Mapping[str, str]]):
        self.raw = raw

    def get(self, section: str, key: str) -> Optional[str]:
        value = self.raw.get(section, {}).get(key)
        if value is None:
            return None
        value = value.strip()
        return value

    def fail(self, section: str, key: str, problem: str) -> ConfigError:
        return ConfigError("[%s] %s: %s" % (section, key, problem))

    def integer(self, section: str, key: str, default: int,
                low: int, high: Optional[int] = None) -> int:
        value = self.get(section, key)
        if value is None or value == "":
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise self.fail(section, key, "%r is not a whole number" % value)
        return self._inRange(section, key, number, low, high)

    def size(self, section: str, key: str, default: int, low: int) -> int:
        value = self.get(section, key)
        if value is None or value == "":
            return default
        m = re.match(r"^(\d+)\s*([A-Za-z]*)$", value)
        if not m or m.group(2).lower() not in _SIZE_SUFFIX:
            raise self.fail(section, key,
                            "%r is not a size in bytes (e.g. 262144 or 256k)"
                            % value)
        number = int(m.group(1)) * _SIZE_SUFFIX[m.group(2).lower()]
        return self._inRange(section, key, number, low, None)

    def seconds(self, section: str, key: str, default: float) -> float:
        value = self.get(section, key)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.fail(section, key, "%r is not a number of seconds"
                            % value)
        if not (0 < number < float("inf")):
            raise self.fail(section, key, "must be more than 0 seconds, not %s"
                            % value)
        return number

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self.get(section, key)
        if value is None or value == "":
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise self.fail(section, key, "%r is not yes or no" % value)

    def choice(self, section: str, key: str, default: str,
               choices: Tuple[str, ...]) -> str:
        value = self.get(section, key)
        if value is None or value == "":
            return default
        if value.lower() not in choices:
            raise self.fail(section, key, "%r is not one of %s"
                            % (value, ", ".join(choices)))
        return value.lower()

    def items(self, section: str, key: str) -> Optional[Tuple[str, ...]]:
        """A comma- and/or whitespace-separated list; None when not set."""
        value = self.get(section, key)
        if value is None:
            return None
        return tuple(part for part in re.split(r"[,\s]+", value) if part)

    def _inRange(self, section: str, key: str, number: int, low: int,
                 high: Optional[int]) -> int:
        if number < low or (high is not None and number > high):
            if high is None:
                raise self.fail(section, key, "must be at least %d, not %d"
                                % (low, number))
            raise self.fail(section, key, "must be between %d and %d, not %d"
                            % (low, high, number))
        return number


# --- validation ------------------------------------------------------------


def _build(r: _Reader, environ: Mapping[str, str],
           geteuid: Callable[[], int]) -> Config:
    jid = _jid(r)
    password = _password(r)
    host = r.get("xmpp", "host") or None
    if host is not None:
        _checkHost(r, "xmpp", "host", host)
    port = r.integer("xmpp", "port", 5222, 1, 65535)
    caCerts = _caCerts(r)
    tls = r.choice("xmpp", "tls", "verify", ("verify", "insecure"))

    runtimeDir = _runtimeDir(r, environ, geteuid)
    socketMode = _socketMode(r)
    socketGroup = _socketGroup(r)
    logTraffic = r.boolean("daemon", "log_traffic", False)

    methods = _methods(r)
    negotiation = _negotiation(r)
    ibbBlockSize = r.integer("links", "ibb_block_size", 4096, 1, 65535)
    ibbStanza = r.choice("links", "ibb_stanza", "iq", ("iq", "message"))
    ibbWindow = r.integer("links", "ibb_window", 32, 1, 256)
    maxLinks = r.integer("links", "max_links", 64, 1)
    linkBuffer = r.size("links", "link_buffer", 262144, 1024)
    maxBuffered = r.size("links", "max_buffered", 8 * 1024 * 1024, 65536)
    offerTimeout = r.seconds("links", "offer_timeout", 60.0)
    attemptTimeout = r.seconds("links", "attempt_timeout", 30.0)
    peerTimeout = r.seconds("links", "peer_timeout", 60.0)
    attachTimeout = r.seconds("links", "attach_timeout", 300.0)

    listen = _listen(r)
    advertise = _advertise(r)
    proxy = _proxy(r)
    connect = _connect(r)
    maxHandshakes = r.integer("s5b", "max_handshakes", 0, 1) or None

    allow = _allow(r)
    services = _services(r)
    e2e = _e2e(r)

    return Config(
        jid=jid, password=password, host=host, port=port, ca_certs=caCerts,
        tls=tls, runtime_dir=runtimeDir, socket_mode=socketMode,
        socket_group=socketGroup, methods=methods, negotiation=negotiation,
        ibb_block_size=ibbBlockSize, ibb_stanza=ibbStanza,
        ibb_window=ibbWindow, max_links=maxLinks, link_buffer=linkBuffer,
        max_buffered=maxBuffered,
        offer_timeout=offerTimeout, attempt_timeout=attemptTimeout,
        peer_timeout=peerTimeout, attach_timeout=attachTimeout,
        log_traffic=logTraffic, s5b_listen=listen, s5b_advertise=advertise,
        s5b_proxy=proxy, s5b_connect=connect, s5b_max_handshakes=maxHandshakes,
        accept_allow=allow, services=services, **e2e)


def _e2e(r: _Reader) -> Dict[str, Any]:
    """``[links] e2e`` and the ``[e2e]`` section (docs/e2e.rst)."""
    from bytestreamd.e2e.trust import DEFAULT_POLICY, POLICIES
    from cryptography import x509

    mode = r.choice("links", "e2e", "off", ("required", "preferred", "off"))
    policy = r.choice("e2e", "trust", DEFAULT_POLICY, POLICIES)
    stateDir = r.get("e2e", "state_dir") or ""
    knownPeers = r.get("e2e", "known_peers") or ""
    cas = r.items("e2e", "ca_certs") or ()
    for path in cas:
        try:
            with open(path, "rb") as f:
                certs = x509.load_pem_x509_certificates(f.read())
        except OSError as e:
            raise r.fail("e2e", "ca_certs", "cannot read %s: %s" % (path, e.strerror or e))
        except ValueError as e:
            raise r.fail("e2e", "ca_certs", "%s does not hold PEM certificates (%s)"
                         % (path, e))
        if not certs:
            raise r.fail("e2e", "ca_certs", "%s holds no certificate" % path)
    if policy == "ca" and not cas:
        raise r.fail("e2e", "ca_certs", "trust = ca needs at least one CA certificate")
    return dict(
        links_e2e=mode, e2e_trust=policy,
        e2e_state_dir=os.path.abspath(os.path.expanduser(stateDir)) if stateDir else "",
        e2e_known_peers=(os.path.abspath(os.path.expanduser(knownPeers))
                         if knownPeers else ""),
        e2e_ca_certs=tuple(os.path.abspath(p) for p in cas))


def _parseJID(r: _Reader, section: str, key: str, value: str) -> JID:
    """bytestreamd.jids: the parser of the control socket and the wire."""
    try:
        return parseJID(value)
    except InvalidJID as e:
        raise r.fail(section, key, "%r is not a valid JID (%s)" % (value, e))


def _jid(r: _Reader) -> JID:
    value = r.get("xmpp", "jid")
    if not value:
        raise r.fail("xmpp", "jid", "required (the daemon's account, "
                     "user@domain[/resource])")
    jid = _parseJID(r, "xmpp", "jid", value)
    if not jid.user:
        raise r.fail("xmpp", "jid", "%r has no user part (need user@domain)"
                     % value)
    if not jid.resource:
        jid = makeJID(jid.user, jid.host, DEFAULT_RESOURCE)
    return jid


def _password(r: _Reader) -> str:
    path = r.get("xmpp", "password_file")
    inline = r.raw.get("xmpp", {}).get("password")
    if path and inline is not None:
        raise r.fail("xmpp", "password",
                     "give password_file or password, not both")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                secret = f.read()
        except OSError as e:
            raise r.fail("xmpp", "password_file", "cannot read %s: %s"
                         % (path, e.strerror or e))
        except UnicodeDecodeError:
            raise r.fail("xmpp", "password_file", "%s is not UTF-8" % path)
        if secret.endswith("\n"):
            secret = secret[:-1]
            if secret.endswith("\r"):
                secret = secret[:-1]
        if not secret:
            raise r.fail("xmpp", "password_file", "%s is empty" % path)
        return secret
    if inline:
        return inline
    raise r.fail("xmpp", "password_file",
                 "required (or password; the file keeps the secret out of "
                 "the config and the command line)")


def _checkHost(r: _Reader, section: str, key: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        ascii = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii = ""
    labels = ascii.rstrip(".").split(".")
    if not ascii or len(ascii) > 253 or not all(
            _HOSTNAME_LABEL.match(label) for label in labels):
        raise r.fail(section, key, "%r is not a host name or IP address"
                     % host)


def _caCerts(r: _Reader) -> Tuple[str, ...]:
    from cryptography import x509

    paths = r.items("xmpp", "ca_certs") or ()
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise r.fail("xmpp", "ca_certs", "cannot read %s: %s"
                         % (path, e.strerror or e))
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise r.fail("xmpp", "ca_certs",
                         "%s does not hold PEM certificates (%s)" % (path, e))
        if not certs:
            raise r.fail("xmpp", "ca_certs", "%s holds no certificate" % path)
    return tuple(os.path.abspath(p) for p in paths)


def _runtimeDir(r: _Reader, environ: Mapping[str, str],
                geteuid: Callable[[], int]) -> str:
    value = r.get("daemon", "runtime_dir")
    if value:
        where = "runtime_dir"
    elif environ.get("RUNTIME_DIRECTORY"):
        # systemd's RuntimeDirectory= may list several, colon-separated.
        value = environ["RUNTIME_DIRECTORY"].split(":")[0]
        where = "$RUNTIME_DIRECTORY"
    elif geteuid() == 0:
        value = "/run/bytestreamd"
        where = "default for root"
    elif environ.get("XDG_RUNTIME_DIR"):
        value = os.path.join(environ["XDG_RUNTIME_DIR"], "bytestreamd")
        where = "$XDG_RUNTIME_DIR"
    else:
        raise r.fail("daemon", "runtime_dir",
                     "not set, and neither $RUNTIME_DIRECTORY nor "
                     "$XDG_RUNTIME_DIR is set (and not running as root)")
    value = os.path.abspath(os.path.expanduser(value))
    control = os.path.join(value, "control")
    if len(os.fsencode(control)) > MAX_SOCKET_PATH:
        raise r.fail("daemon", "runtime_dir",
                     "%s (%s) is too long for UNIX socket paths (at most %d "
                     "bytes for %s)" % (value, where, MAX_SOCKET_PATH,
                                        control))
    return value


def _socketMode(r: _Reader) -> int:
    value = r.get("daemon", "socket_mode")
    if not value:
        return 0o600
    text = value[2:] if value.lower().startswith("0o") else value
    if not re.match(r"^[0-7]{1,4}$", text):
        raise r.fail("daemon", "socket_mode",
                     "%r is not an octal mode like 0600 or 0660" % value)
    mode = int(text, 8)
    if mode > 0o777:
        raise r.fail("daemon", "socket_mode",
                     "%s: only permission bits (at most 0777) make sense "
                     "for a socket" % value)
    if mode & 0o007:
        raise r.fail("daemon", "socket_mode",
                     "%s gives other users access to the sockets; use 0600, "
                     "or 0660 with socket_group" % value)
    if mode & 0o600 != 0o600:
        raise r.fail("daemon", "socket_mode",
                     "%s: the owner needs read and write (0600) to use the "
                     "sockets" % value)
    return mode


def _socketGroup(r: _Reader) -> Optional[int]:
    value = r.get("daemon", "socket_group")
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise r.fail("daemon", "socket_group", "no group named %r" % value)


def _names(r: _Reader, key: str, what: str, known: Tuple[str, ...],
           default: Tuple[str, ...]) -> Tuple[str, ...]:
    """An ordered ``[links]`` list of registry names (``what``: one of them)."""
    names = r.items("links", key)
    if names is None:
        return default
    names = tuple(n.lower() for n in names)
    if not names:
        raise r.fail("links", key, "empty; name at least one of %s" % ", ".join(known))
    for name in names:
        if name not in known:
            raise r.fail("links", key, "unknown %s %r (known: %s)"
                         % (what, name, ", ".join(known)))
    if len(set(names)) != len(names):
        raise r.fail("links", key, "a %s is listed twice" % what)
    return names


def _methods(r: _Reader) -> Tuple[str, ...]:
    return _names(r, "methods", "method", KNOWN_METHODS, registry.DEFAULT_METHODS)


def _negotiation(r: _Reader) -> Tuple[str, ...]:
    """``[links] negotiation``: registry negotiator names, in preference order."""
    known = registry.NEGOTIATOR_NAMES
    return _names(r, "negotiation", "negotiation", known, known)


def _splitHostPort(r: _Reader, key: str, item: str
                   ) -> Tuple[str, Optional[str]]:
    """``[v6]:port``, ``[v6]``, ``v6``, ``host:port`` or ``host``."""
    if item.startswith("["):
        m = re.match(r"^\[([^\]]+)\](?::(.*))?$", item)
        if not m:
            raise r.fail("s5b", key, "%r: write IPv6 as [addr]:port" % item)
        return m.group(1), m.group(2)
    if item.count(":") > 1:
        return item, None  # a bare IPv6 address, no port
    host, sep, port = item.partition(":")
    return host, (port if sep else None)


def _port(r: _Reader, key: str, item: str, text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise r.fail("s5b", key, "%r: port %r is not 0..65535" % (item, text))
    return int(text)


def _listen(r: _Reader) -> Tuple[HostPort, ...]:
    items = r.items("s5b", "listen")
    if items is None:
        return DEFAULT_S5B_LISTEN
    if [i.lower() for i in items] == ["none"]:
        return ()
    result = []
    for item in items:
        host, port = _splitHostPort(r, "listen", item)
        if port is None:
            raise r.fail("s5b", "listen", "%r needs a port (0 for any)"
                         % item)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise r.fail("s5b", "listen", "%r: %r is not an IP address to "
                         "listen on" % (item, host))
        result.append((str(address), _port(r, "listen", item, port)))
    return tuple(result)


def _advertise(r: _Reader) -> Tuple[Advertised, ...]:
    result = []
    for item in r.items("s5b", "advertise") or ():
        host, port = _splitHostPort(r, "advertise", item)
        _checkHost(r, "s5b", "advertise", host)
        number = None if port is None else _port(r, "advertise", item, port)
        if number == 0:
            raise r.fail("s5b", "advertise", "%r: advertise a real port, or "
                         "none to use the listening one" % item)
        result.append((host, number))
    return tuple(result)


def _proxy(r: _Reader) -> Optional[str]:
    value = r.get("s5b", "proxy")
    if not value or value.lower() == "auto":
        return None
    if value.lower() == "none":
        return ""
    return _parseJID(r, "s5b", "proxy", value).full()


def _connect(r: _Reader) -> Tuple[str, ...]:
    items = r.items("s5b", "connect")
    if items is None or not items:
        return DEFAULT_CONNECT
    if [i.lower() for i in items] == ["none"]:
        return ()
    rules = []
    for item in items:
        try:
            rules.append(formatConnectRule(*parseConnectRule(item)))
        except ValueError as e:
            raise r.fail("s5b", "connect", str(e))
    return tuple(rules)


def _allow(r: _Reader) -> Tuple[str, ...]:
    patterns = []
    for item in r.items("accept", "allow") or ():
        if item.startswith("*@"):
            domain = _parseJID(r, "accept", "allow", item[2:])
            if domain.user or domain.resource:
                raise r.fail("accept", "allow", "%r: after *@ comes a domain"
                             % item)
            patterns.append("*@" + domain.host)
        elif "*" in item:
            raise r.fail("accept", "allow", "%r: the only wildcard is "
                         "*@domain" % item)
        else:
            patterns.append(_parseJID(r, "accept", "allow", item).full())
    return tuple(patterns)


def _services(r: _Reader) -> Mapping[str, str]:
    services: Dict[str, str] = {}
    reactor = MemoryReactor()
    for name, value in r.raw.get("services", {}).items():
        where = "[services] %s" % name
        if not _SERVICE_NAME.match(name):
            raise ConfigError("%s: service names are letters, digits, '.', "
                              "'_' and '-' (at most 64)" % where)
        value = value.strip()
        if not value:
            raise ConfigError("%s: empty endpoint (e.g. "
                              "tcp:host=127.0.0.1:port=22)" % where)
        try:
            clientFromString(reactor, value)
        except Exception as e:
            raise ConfigError("%s: bad client endpoint %r: %s"
                              % (where, value, e or type(e).__name__))
        services[name] = value
    return types.MappingProxyType(services)
