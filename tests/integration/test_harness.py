"""
The harness on its own, without the daemon: Prosody comes up with verified
TLS, raw clients log in and talk, restart works, the control client parses
the protocol, and netcat behaves as the transfer tests assume.
"""

from __future__ import annotations

import configparser
import os
import re
import socket
import ssl
import threading

import pytest

from .harness import (ControlClient, DaemonProcess, RawXMPPClient, Reply, StanzaSplitter,
                      XMPPError, attr, errorCondition, parseArgs, quote,
                      statusSaysConnected)
from .harness.transfer import (EchoServer, ncReceive, ncSend, sha256File, waitProcess,
                               writeRandomFile)

pytestmark = pytest.mark.timeout(60)


def test_login_message_and_iq(prosody):
    with RawXMPPClient.connect(prosody, "alice", "h1") as alice, \
            RawXMPPClient.connect(prosody, "bob", "h1", answerIQs=False) as bob:
        assert alice.jid == "alice@localhost/h1"
        assert bob.jid == "bob@localhost/h1"

        alice.message(bob.jid, "hi <bob> & co", stanzaId="m1")
        msg = bob.waitFor(r"^<message[^>]*id=['\"]m1['\"]")
        assert attr(msg, "from") == alice.jid
        assert "hi &lt;bob&gt; &amp; co" in msg

        qid = alice.iq("get", bob.jid, "<query xmlns='urn:test:harness'/>")
        got = bob.waitFor(lambda s: attr(s, "id") == qid)
        assert attr(got, "from") == alice.jid and attr(got, "type") == "get"
        bob.send("<iq type='result' to='%s' id='%s'><query xmlns='urn:test:harness'>"
                 "<ok/></query></iq>" % (alice.jid, qid))
        reply = alice.waitForId(qid)
        assert attr(reply, "type") == "result" and "<ok/>" in reply

        # answerIQs: an IQ nobody handles gets service-unavailable, not silence
        # (the client is single-threaded: alice answers while she reads)
        eid = bob.iq("get", alice.jid, "<query xmlns='urn:test:unknown'/>")
        alice.waitFor(lambda s: attr(s, "id") == eid)
        err = bob.waitForId(eid)
        assert attr(err, "type") == "error"
        assert errorCondition(err) == "service-unavailable"


def test_server_features_ping_and_proxy65(prosody):
    with RawXMPPClient.connect(prosody, "alice", "h2") as alice:
        pong = alice.request("get", "localhost", "<ping xmlns='urn:xmpp:ping'/>")
        assert attr(pong, "type") == "result"
        items = alice.request("get", "localhost",
                              "<query xmlns='http://jabber.org/protocol/disco#items'/>")
        assert "jid='proxy.localhost'" in items or 'jid="proxy.localhost"' in items
        hosts = alice.request("get", "proxy.localhost",
                              "<query xmlns='http://jabber.org/protocol/bytestreams'/>")
        m = re.search(r"<streamhost[^>]*>", hosts)
        assert m, hosts
        assert attr(m.group(0), "host") == "127.0.0.1"
        assert attr(m.group(0), "port") == str(prosody.proxyPort)


def test_wrong_password_refused(prosody):
    client = RawXMPPClient("127.0.0.1", prosody.c2sPort, "alice@localhost/x", "wrong",
                           prosody.caPath)
    with pytest.raises(XMPPError, match="SASL PLAIN failed"):
        client.login()
    client.sock.close()


def test_tls_needs_the_test_ca(prosody, tmp_path):
    from .harness.prosody import makeCertificates
    other = makeCertificates(str(tmp_path / "other"))["ca"]
    client = RawXMPPClient("127.0.0.1", prosody.c2sPort, "alice@localhost/x",
                           prosody.passwords["alice"], other)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.login()
    client.sock.close()


def test_tuned_options_in_config(prosody):
    with open(prosody.configPath) as f:
        text = f.read()
    assert "network_settings = { nagle = false }" in text
    assert "network_default_read_size = 262144" in text
    assert "c2s_require_encryption = true" in text


def test_pipelined_messages_arrive_in_order(prosody):
    with RawXMPPClient.connect(prosody, "alice", "h3") as alice, \
            RawXMPPClient.connect(prosody, "bob", "h3") as bob:
        count = 2000
        payload = "x" * 3000
        alice.send("".join("<message to='%s' id='p%d'><body>%s</body></message>"
                           % (bob.jid, i, payload) for i in range(count)))
        last = bob.waitFor(r"id='p%d'" % (count - 1), timeout=30)
        assert payload in last
        ids = [attr(s, "id") for s in bob.received if s.startswith("<message")]
        assert ids == ["p%d" % i for i in range(count)]


@pytest.mark.timeout(90)
def test_restart_drops_clients_and_comes_back(privateProsody):
    server = privateProsody
    port = server.c2sPort
    alice = RawXMPPClient.connect(server, "alice", "r")
    server.restart()
    assert server.c2sPort == port
    with pytest.raises((XMPPError, OSError)):
        alice.poll(5.0)
        alice.message("bob@localhost", "after restart")
        alice.poll(2.0)
    alice.sock.close()
    with RawXMPPClient.connect(server, "alice", "r") as again:
        assert attr(again.request("get", "localhost", "<ping xmlns='urn:xmpp:ping'/>"),
                    "type") == "result"


def test_kill_and_start(privateProsody):
    privateProsody.kill()
    assert not privateProsody.running
    privateProsody.start()
    with RawXMPPClient.connect(privateProsody, "mallory") as m:
        assert m.jid.startswith("mallory@localhost/")


def test_splitter_handles_split_input():
    data = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='s'>"
            "<stream:features><x a='&gt;'>t</x></stream:features>"
            "<iq id='1' type='result'/>\n <message><body>a &lt; b</body></message>"
            "</stream:stream>")
    whole = StanzaSplitter().feed(data)
    splitter = StanzaSplitter()
    pieces = []
    for ch in data:
        pieces += splitter.feed(ch)
    assert pieces == whole
    assert len(whole) == 3 and whole[1] == "<iq id='1' type='result'/>"
    assert splitter.closed and splitter.header.startswith("<stream:stream")


def test_parse_args_and_quote():
    words, options = parseArgs('LINK L1 BAD method=ibb reason="forbidden: \\"no\\" \\\\ x"')
    assert words == ["LINK", "L1", "BAD"]
    assert options == {"method": "ibb", "reason": 'forbidden: "no" \\ x'}
    assert parseArgs("x=" + quote('a "b" c\\'))[1] == {"x": 'a "b" c\\'}
    assert quote("plain") == "plain"


def _fakeControl(path, script):
    """A one-connection control server: for each line received, send script[i]."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        f = conn.makefile("rb")
        conn.sendall(b"650 SERVER connected\n")
        for answer in script:
            if not f.readline():
                break
            conn.sendall(answer)
        conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()


def test_control_client_against_fake_server(tmp_path):
    path = str(tmp_path / "ctl")
    _fakeControl(path, [
        b"650 LINK L1 INIT method=ibb\r\n250 link=L1 socket=/run/x/links/L1\r\n",
        b"250-own=alice@localhost/daemon\n250-server=connected\n"
        b"650 LINK L1 GOOD method=ibb\n250 OK\n",
        b"552 no such link\n",
    ])
    with ControlClient(path) as ctl:
        reply = ctl.command("OPEN bob@localhost/daemon")
        assert reply.code == 250 and reply.ok
        assert reply.get("link") == "L1" and reply.get("socket") == "/run/x/links/L1"
        status = ctl.command("STATUS")
        # an event inside a multi-line reply violates the contract: it is
        # queued as an event and recorded in ``interleaved`` for assertions
        assert status.lines == ["own=alice@localhost/daemon", "server=connected", "OK"]
        assert statusSaysConnected(status)
        assert ctl.interleaved == ["650 LINK L1 GOOD method=ibb"]
        with pytest.raises(Exception):
            ctl.expect("CLOSE L9")
        event = ctl.waitEvent(r"^650 LINK L1 INIT")
        assert event.options == {"method": "ibb"} and event.words == ["LINK", "L1", "INIT"]
        assert ctl.waitEvent(lambda e: e.words[0] == "SERVER").words == ["SERVER", "connected"]


def test_status_heuristics():
    assert statusSaysConnected(Reply(250, ["jid=a@b/c", "server=connected", "OK"]))
    assert statusSaysConnected(Reply(250, ["connected=yes", "OK"]))
    assert not statusSaysConnected(Reply(250, ["server=disconnected", "OK"]))
    assert not statusSaysConnected(Reply(250, ["server=connecting", "OK"]))
    assert not statusSaysConnected(Reply(250, ["server not connected", "OK"]))


def test_daemon_config_file(prosody, tmp_path):
    daemon = DaemonProcess(prosody, "bob", tmp_path, {
        "accept": {"allow": "alice@localhost"},
        "services": {"echo": "tcp:host=127.0.0.1:port=4000"},
    })
    try:
        parser = configparser.ConfigParser()
        parser.read(daemon.configPath)
        assert parser["xmpp"]["jid"] == "bob@localhost/daemon"
        assert parser["xmpp"]["port"] == str(prosody.c2sPort)
        assert parser["xmpp"]["ca_certs"] == prosody.caPath
        with open(parser["xmpp"]["password_file"]) as f:
            assert f.read().strip() == prosody.passwords["bob"]
        assert parser["daemon"]["runtime_dir"] == daemon.runtimeDir
        assert parser["services"]["echo"] == "tcp:host=127.0.0.1:port=4000"
        assert parser["accept"]["allow"] == "alice@localhost"
        assert len(os.path.join(daemon.runtimeDir, "links", "L" * 40)) < 100
        assert "--config" in daemon.command() and "-n" in daemon.command()
    finally:
        daemon.close()
    assert not os.path.exists(daemon.runtimeDir)


def _unixServer(path, behaviour):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    result = {}

    def serve():
        conn, _ = listener.accept()
        behaviour(conn, result)
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, result


def test_netcat_flags(tmp_path):
    """nc -N half-closes at stdin EOF; nc -d stays passive until the peer closes."""
    src = str(tmp_path / "src")
    digest = writeRandomFile(src, 3 << 20)

    def sink(conn, result):
        data = bytearray()
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data.extend(chunk)
        result["data"] = bytes(data)
        conn.sendall(b"after-eof")

    path = str(tmp_path / "s1")
    thread, result = _unixServer(path, sink)
    assert waitProcess(ncSend(path, src), 10, "nc -N sender") == 0
    thread.join(5)
    import hashlib
    assert hashlib.sha256(result["data"]).hexdigest() == digest

    def source(conn, result):
        conn.settimeout(1.0)
        try:
            result["early"] = conn.recv(10)  # a passive receiver sends nothing, no EOF
        except socket.timeout:
            result["early"] = None
        with open(src, "rb") as f:
            conn.sendall(f.read())

    path = str(tmp_path / "s2")
    thread, result = _unixServer(path, source)
    copy = str(tmp_path / "copy")
    assert waitProcess(ncReceive(path, copy), 10, "nc -d receiver") == 0
    thread.join(5)
    assert result["early"] is None
    assert sha256File(copy) == digest


def test_echo_server():
    with EchoServer(b"HI\n") as echo:
        s = socket.create_connection(("127.0.0.1", echo.port))
        assert s.recv(3) == b"HI\n"
        s.sendall(b"ping")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        assert data == b"ping"
        assert echo.finished.wait(5) and bytes(echo.received[0]) == b"ping"
        s.close()
