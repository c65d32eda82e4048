"""
End-to-end links on the real tier: two twistd daemons on Prosody.

* ``e2e=bytes`` over SOCKS5 direct, through Prosody's proxy65 and over IBB:
  32 MiB each way, sha-checked, GOOD naming the peer's fingerprint.
* ``e2e=xmpp``: messages and IQs both ways through the local sockets.
* A man in the middle: a relay between the two daemons' SOCKS5 legs that
  lets the clear XEP-0246 negotiation through and then answers alice's
  TLS handshake with its own certificate (Python's ssl, not our code):
  refused, and the event says why, naming both fingerprints.
* A passive relay in the same place records what crossed it: ciphertext.
* One end driven by an independent stack: Python's ssl module (MemoryBIO)
  and literal XEP-0246 strings answer a real daemon's e2e=bytes link with
  the peer's key; the daemon's link is GOOD and bytes cross both ways.

Prosody's proxy65 may strand the last few KiB of a link (plain S5B too).
Plain links get them re-sent in-band over XMPP (docs/protocol.rst,
"tail"); an e2e link gets its *ciphertext* re-sent and fed below TLS
(bytestreamd/e2e/tail.py, docs/e2e.rst), so the servers can drop such a
tail but neither read nor forge it.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from typing import List, Optional

import pytest

from .harness import freePort
from .harness.flows import MiB, transferFile
from .test_s5b import ENDED, SLOW, Exchange, _waitEnd, _waitOutcome

BIG = 32 * MiB


def _e2e(tmp_path, name, **sections):
    config = {"e2e": {"state_dir": str(tmp_path / ("%s-state" % name))}}
    for section, items in sections.items():
        config.setdefault(section, {}).update(items)
    return config


def _pair(daemons, tmp_path, alice=None, bob=None):
    a = daemons("alice", accept="bob@localhost", extra=_e2e(tmp_path, "alice", **(alice or {})))
    b = daemons("bob", accept="alice@localhost", extra=_e2e(tmp_path, "bob", **(bob or {})))
    return a, b


def _fingerprint(daemon) -> str:
    ctl = daemon.control()
    try:
        return ctl.command("FINGERPRINT").get("fingerprint")
    finally:
        ctl.close()


def _bigExchange(ex: Exchange) -> None:
    there, back = os.urandom(BIG), os.urandom(BIG)
    ex.exchangeThenClose(there, back, timeout=240)
    end = _waitEnd(ex.aliceCtl, ex.aliceLink, 60)
    assert end.words[2] == "CLOS", ex.aliceEvents
    assert end.options.get("confirmed") == "yes", end
    assert end.options.get("sent") == str(BIG) and end.options.get("received") == str(BIG)
    bobEnd = _waitEnd(ex.bobCtl, ex.bobLink, 60)
    assert bobEnd.words[2] == "CLOS", ex.bobEvents


def _checkGood(ex: Exchange, method: str, alice, bob) -> None:
    good = ex.waitGood(method, timeout=120)
    assert good.options.get("e2e") == "tls", good
    assert good.options.get("fingerprint") == _fingerprint(bob), good
    bobGood = [e for e in ex.bobEvents if e.words[2] == "GOOD"][0]
    assert bobGood.options.get("fingerprint") == _fingerprint(alice), bobGood


@pytest.mark.timeout(SLOW)
def test_e2e_bytes_s5b_direct_32MiB_each_way(daemons, tmp_path):
    direct = {"links": {"methods": "s5b"}, "s5b": {"proxy": "none"}}
    alice, bob = _pair(daemons, tmp_path, direct, direct)
    ex = Exchange(alice, bob, "methods=s5b e2e=bytes")
    _checkGood(ex, "s5b", alice, bob)
    _bigExchange(ex)


def _ncBothWays(alice, bob, tmp_path, method: str, timeout: float = 240) -> None:
    """
    32 MiB alice -> bob, then 32 MiB bob -> alice, each on its own e2e link
    with ``nc -U`` on both link sockets (sha-checked by transferFile), and
    each GOOD naming the other daemon's fingerprint.
    """
    options = "methods=%s e2e=bytes" % method
    for src, dst in ((alice, bob), (bob, alice)):
        result = transferFile(src, dst, tmp_path, BIG, options, method, timeout=timeout)
        good = [e for e in result.senderEvents if e.words[2] == "GOOD"][0]
        assert good.options.get("e2e") == "tls", good
        assert good.options.get("fingerprint") == _fingerprint(dst), good
        print("e2e=bytes over %s %s->%s %.1f MiB/s" % (method, src.account, dst.account,
                                                      result.rate))


@pytest.mark.timeout(2 * SLOW)
def test_e2e_bytes_s5b_direct_nc_each_way(daemons, tmp_path):
    direct = {"links": {"methods": "s5b"}, "s5b": {"proxy": "none"}}
    alice, bob = _pair(daemons, tmp_path, direct, direct)
    _ncBothWays(alice, bob, tmp_path, "s5b")


@pytest.mark.timeout(2 * SLOW)
def test_e2e_bytes_s5b_proxy65_32MiB_each_way(daemons, tmp_path):
    proxyOnly = {"links": {"methods": "s5b"}, "s5b": {"listen": "none"}}
    alice, bob = _pair(daemons, tmp_path, proxyOnly, proxyOnly)
    _ncBothWays(alice, bob, tmp_path, "s5b", timeout=60)
    assert "proxy.localhost" in alice.logText() and "proxy.localhost" in bob.logText()
    # How often the relay stranded a tail that came back as ciphertext (0 in
    # a run where proxy65 stranded nothing; the unit tests force it).
    print("tails re-sent in-band: alice %d, bob %d" % (
        alice.logText().count("in-band (a relay stranded them)"),
        bob.logText().count("in-band (a relay stranded them)")))


@pytest.mark.timeout(2 * SLOW)
def test_e2e_bytes_ibb_32MiB_each_way(daemons, tmp_path):
    ibb = {"links": {"methods": "ibb", "ibb_block_size": "65535"}}
    alice, bob = _pair(daemons, tmp_path, ibb, ibb)
    _ncBothWays(alice, bob, tmp_path, "ibb")


@pytest.mark.timeout(SLOW)
def test_e2e_bytes_over_jingle_s5b_32MiB(daemons, tmp_path):
    """
    XEP-0247: the e2e link negotiated over Jingle (session-initiate with
    urn:xmpp:jingle:apps:xmlstream:0 and alice's fingerprint, session-accept
    with bob's), S5B direct although [links] methods puts ibb first (IBB is
    XEP-0247's lowest preference), 32 MiB through nc, sha-checked.
    """
    ibbFirst = {"links": {"methods": "ibb, s5b"}, "s5b": {"proxy": "none"}}
    alice, bob = _pair(daemons, tmp_path, ibbFirst, ibbFirst)
    result = transferFile(alice, bob, tmp_path, BIG, "e2e=bytes negotiation=jingle", "s5b",
                          timeout=240)
    for events, peer in ((result.senderEvents, bob), (result.receiverEvents, alice)):
        good = [e for e in events if e.words[2] == "GOOD"][0]
        assert good.options.get("negotiation") == "jingle", good
        assert good.options.get("method") == "s5b", good
        assert good.options.get("e2e") == "tls", good
        assert good.options.get("fingerprint") == _fingerprint(peer), good
    print("e2e=bytes over Jingle S5B %.1f MiB/s" % result.rate)


@pytest.mark.timeout(SLOW)
def test_e2e_xmpp_messages_and_iqs_both_ways(daemons, tmp_path):
    alice, bob = _pair(daemons, tmp_path)
    ex = Exchange(alice, bob, "e2e=xmpp")
    good = ex.waitGood("s5b", timeout=120)
    assert good.options.get("e2e-mode") == "xmpp", good
    ex.alicePump.send(b"<message to='bob@localhost'><body>hello Bob</body></message>"
                      b"<iq type='get' id='a1'><ping xmlns='urn:xmpp:ping'/></iq>")
    want = (b"<message xmlns='jabber:client' to='bob@localhost'><body>hello Bob</body>"
            b"</message><iq xmlns='jabber:client' type='get' id='a1'>"
            b"<ping xmlns='urn:xmpp:ping'/></iq>")
    assert ex.bobPump.waitReceived(len(want), 30), bytes(ex.bobPump.received)
    assert bytes(ex.bobPump.received) == want
    answer = (b"<iq xmlns='jabber:client' type='result' id='a1'/>"
              b"<message xmlns='jabber:client'><body>hello Alice</body></message>")
    ex.bobPump.send(answer)
    assert ex.alicePump.waitReceived(len(answer), 30), bytes(ex.alicePump.received)
    assert bytes(ex.alicePump.received) == answer
    ex.alicePump.shutdownWrite()
    assert ex.bobPump.waitEOF(30) and ex.alicePump.waitEOF(30)
    end = _waitEnd(ex.aliceCtl, ex.aliceLink, 30)
    assert end.words[2] == "CLOS" and end.options.get("confirmed") == "yes", end


# --- relays between the SOCKS5 legs ------------------------------------------------------


class Relay:
    """
    Listens on ``port``; each connection (bob, the SOCKS5 client) is joined
    to ``target`` (alice's direct streamhost).  Records what crosses.  With
    ``mitm`` (an ssl.SSLContext), once bob's ``<proceed/>`` went to alice it
    stops relaying and answers alice's TLS handshake itself.
    """

    def __init__(self, port: int, target: int, mitm: Optional[ssl.SSLContext] = None):
        self.target, self.mitm = target, mitm
        self.seen: List[bytes] = []
        self.tlsError: Optional[str] = None
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(5)
        self.threads: List[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                bob, _ = self.listener.accept()
            except OSError:
                return
            alice = socket.create_connection(("127.0.0.1", self.target))
            switch = threading.Event()
            for src, dst, watch in ((bob, alice, True), (alice, bob, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, watch, switch),
                                     daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src, dst, watchProceed, switch):
        buffered = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    if not switch.is_set():
                        dst.shutdown(socket.SHUT_WR)
                    return
                self.seen.append(data)
                if switch.is_set() and not watchProceed:
                    self._fromAlice(src, data)  # alice's TLS, answered by us
                    continue
                if switch.is_set():
                    continue  # bob's side is cut off
                buffered = (buffered + data)[-200:]
                if self.mitm is not None and watchProceed and b"<proceed" in buffered:
                    # from here on, alice's handshake is ours (set up before
                    # she can answer <proceed/>)
                    self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
                    self._tls = self.mitm.wrap_bio(self._in, self._out, server_side=True)
                    switch.set()
                dst.sendall(data)
        except OSError:
            return

    def _fromAlice(self, alice, data):
        self._in.write(data)
        try:
            self._tls.do_handshake()
            self._tls.read(1)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            self.tlsError = str(e)
        pending = self._out.read()
        if pending:
            alice.sendall(pending)

    def close(self):
        self.listener.close()


def _mallory(tmp_path) -> ssl.SSLContext:
    from bytestreamd.e2e.identity import Identity
    identity = Identity.generate("bob@localhost")
    path = tmp_path / "mallory.pem"
    path.write_bytes(identity.toPEM())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(path))
    return context, identity.fingerprint


def _relayed(daemons, tmp_path, relayPort):
    real = freePort()
    alice, bob = _pair(daemons, tmp_path,
                       {"links": {"methods": "s5b"},
                        "s5b": {"proxy": "none", "listen": "127.0.0.1:%d" % real,
                                "advertise": "127.0.0.1:%d" % relayPort}},
                       {"links": {"methods": "s5b"}, "s5b": {"proxy": "none",
                                                             "listen": "none"}})
    return alice, bob, real


@pytest.mark.timeout(SLOW)
def test_man_in_the_middle_terminating_tls_is_refused(daemons, tmp_path):
    relayPort = freePort()
    alice, bob, real = _relayed(daemons, tmp_path, relayPort)
    context, malloryFingerprint = _mallory(tmp_path)
    relay = Relay(relayPort, real, mitm=context)
    try:
        ex = Exchange(alice, bob, "methods=s5b e2e=bytes")
        outcome = _waitOutcome(ex.aliceCtl, ex.aliceLink, 120)
        assert outcome.words[2] == "BAD", ex.aliceEvents
        reason = outcome.options.get("reason", "")
        assert malloryFingerprint in reason and _fingerprint(bob) in reason, reason
        assert "man in the middle" in reason, reason
        bobEnd = _waitOutcome(ex.bobCtl, ex.bobLink, 120)
        assert bobEnd.words[2] in ("BAD",) + ENDED and bobEnd.words[2] != "GOOD", ex.bobEvents
        assert not ex.bobPump.received and not ex.alicePump.received
    finally:
        relay.close()


@pytest.mark.timeout(SLOW)
def test_bytes_that_cross_a_relay_are_ciphertext(daemons, tmp_path):
    relayPort = freePort()
    alice, bob, real = _relayed(daemons, tmp_path, relayPort)
    relay = Relay(relayPort, real)
    try:
        ex = Exchange(alice, bob, "methods=s5b e2e=bytes")
        _checkGood(ex, "s5b", alice, bob)
        there = b"the plain text marker " * 50000
        back = b"and the answer marker " * 50000
        ex.exchangeThenClose(there, back, timeout=120)
        crossed = b"".join(relay.seen)
        assert len(crossed) > len(there) + len(back)
        assert b"plain text marker" not in crossed and b"answer marker" not in crossed
        # what is in clear: SOCKS5, the stream headers and STARTTLS, no more
        assert b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" in crossed
    finally:
        relay.close()


# --- one end driven by an independent stack -----------------------------------------


class PythonSSLResponder(Relay):
    """
    Stands in for bob's daemon on the bytestream: the SOCKS5 handshake goes
    through to alice's streamhost, then everything alice sends is answered
    here, by Python's ssl module (a MemoryBIO) and literal XEP-0246 strings,
    with bob's key and certificate (read from his state directory): not a
    line of bytestreamd's e2e code.  It collects the plaintext it receives.
    """

    def __init__(self, port, target, bobPEM, alicePEM):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(bobPEM)
        self.context.load_verify_locations(alicePEM)  # her self-signed cert
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.plain = b""
        self.peerCert = None
        self.log: List[str] = []
        Relay.__init__(self, port, target)

    def _pump(self, src, dst, fromBob, switch):
        if fromBob:
            return Relay._pump(self, src, dst, fromBob, switch)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    return
                if not switch.is_set():
                    if b"<?xml" not in data:
                        dst.sendall(data)  # the SOCKS5 replies, to bob
                        continue
                    switch.set()
                    data = data[data.index(b"<?xml"):]
                    self.state, self._in, self._out = "header", None, None
                self._speak(src, data)
        except OSError:
            return

    HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' from='bob@localhost' "
              "to='alice@localhost' id='py%d' version='1.0'>")

    def _speak(self, alice, data):
        if self.state in ("header", "starttls"):
            self.buf = getattr(self, "buf", b"") + data
            if self.state == "header" and self.buf.rstrip().endswith(b">"):
                self.log.append("header")
                alice.sendall((self.HEADER % 1).encode() + b"<stream:features><starttls "
                              b"xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
                              b"</starttls></stream:features>")
                self.state, self.buf = "starttls", b""
            elif self.state == "starttls" and b"<starttls" in self.buf:
                self.log.append("starttls")
                alice.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
                self._tls = self.context.wrap_bio(self._in, self._out, server_side=True)
                self.state, self.buf = "handshake", b""
            return
        self._in.write(data)
        if self.state == "handshake":
            try:
                self._tls.do_handshake()
                self.peerCert = self._tls.getpeercert(binary_form=True)
                self.state = "restart"
                self.log.append("tls")
            except ssl.SSLWantReadError:
                pass
            self._flush(alice)
            if self.state != "restart":
                return
        while True:
            try:
                chunk = self._tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.log.append("close_notify")
                break
            if not chunk:
                break
            if self.state == "restart":
                self.buf += chunk
                if self.buf.rstrip().endswith(b">") and b"<stream:stream" in self.buf:
                    self.log.append("restart")
                    self._tls.write((self.HEADER % 2).encode() + b"<stream:features><bytes "
                                    b"xmlns='urn:x-bytestreamd:e2e:bytes:0'><required/>"
                                    b"</bytes></stream:features>")
                    self.state, self.buf = "bytes-request", b""
            elif self.state == "bytes-request":
                self.buf += chunk
                marker = b"<bytes xmlns='urn:x-bytestreamd:e2e:bytes:0'/>"
                if marker in self.buf:
                    self.log.append("bytes")
                    self.plain += self.buf[self.buf.index(marker) + len(marker):]
                    self.state = "bytes"
                    self._tls.write(b"hello from Python's ssl")
            else:
                self.plain += chunk
        self._flush(alice)

    def _flush(self, alice):
        pending = self._out.read()
        if pending:
            alice.sendall(pending)


@pytest.mark.timeout(SLOW)
def test_python_ssl_responder_against_a_real_daemon(daemons, tmp_path):
    relayPort = freePort()
    alice, bob, real = _relayed(daemons, tmp_path, relayPort)
    aliceFP, bobFP = _fingerprint(alice), _fingerprint(bob)  # makes both identities
    bobPEM = str(tmp_path / "bob-state" / "identity.pem")
    alicePEM = str(tmp_path / "alice-cert.pem")
    from bytestreamd.e2e.identity import Identity
    with open(str(tmp_path / "alice-state" / "identity.pem"), "rb") as f:
        aliceId = Identity.fromPEM(f.read())
    from cryptography.hazmat.primitives import serialization
    with open(alicePEM, "wb") as f:
        f.write(aliceId.certificate.public_bytes(serialization.Encoding.PEM))
    relay = PythonSSLResponder(relayPort, real, bobPEM, alicePEM)
    try:
        ex = Exchange(alice, bob, "methods=s5b e2e=bytes")
        good = _waitOutcome(ex.aliceCtl, ex.aliceLink, 120)
        assert good.words[2] == "GOOD", (relay.log, ex.aliceEvents)
        assert good.options.get("fingerprint") == bobFP, good
        import time
        for _ in range(100):  # alice is GOOD once she sent <bytes/>; the relay reads it
            if "bytes" in relay.log:
                break
            time.sleep(0.1)
        assert relay.log[:5] == ["header", "starttls", "tls", "restart", "bytes"], relay.log
        # Python's ssl saw alice's daemon's certificate: mutual TLS
        import hashlib as h
        assert ":".join("%02X" % b for b in h.sha256(relay.peerCert).digest()) == aliceFP
        ex.alicePump.send(b"plaintext only Python's ssl can read")
        assert ex.alicePump.waitReceived(len(b"hello from Python's ssl"), 30)
        assert bytes(ex.alicePump.received) == b"hello from Python's ssl"
        for _ in range(100):
            if relay.plain:
                break
            time.sleep(0.1)
        assert relay.plain == b"plaintext only Python's ssl can read", relay.plain
    finally:
        relay.close()
