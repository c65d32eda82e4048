"""
The sans-I/O SOCKS5 machines: whole messages, byte-at-a-time, junk, limits,
and the two machines talking to each other.
"""

import random

from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.methods.socks5 import (
    ClientHandshake,
    ConnectRequest,
    Established,
    Failed,
    Send,
    ServerHandshake,
    connectRequest,
    replyText,
)

HASH = "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff"
GREETING = b"\x05\x01\x00"
REQUEST = b"\x05\x01\x00\x03\x28" + HASH.encode() + b"\x00\x00"
SUCCESS = b"\x05\x00\x00\x03\x28" + HASH.encode() + b"\x00\x00"


def feedAll(machine, data, bytewise=False):
    out = []
    if bytewise:
        for i in range(len(data)):
            out += machine.feed(data[i:i + 1])
    else:
        out += machine.feed(data)
    return out


def sent(outputs):
    return b"".join(o.data for o in outputs if isinstance(o, Send))


def failures(outputs):
    return [o for o in outputs if isinstance(o, Failed)]


class ServerHandshakeTests(SynchronousTestCase):
    def handshake(self, bytewise):
        server = ServerHandshake()
        out = feedAll(server, GREETING, bytewise)
        self.assertEqual(out, [Send(b"\x05\x00")])
        out = feedAll(server, REQUEST, bytewise)
        self.assertEqual(out, [ConnectRequest(HASH, 0)])
        self.assertEqual(server.state, "deciding")
        out = server.accept()
        self.assertEqual(out, [Send(SUCCESS), Established(b"")])
        self.assertTrue(server.done)

    def test_whole(self):
        self.handshake(False)

    def test_byteAtATime(self):
        self.handshake(True)

    def test_pipelinedGreetingAndRequestAndData(self):
        server = ServerHandshake()
        out = server.feed(GREETING + REQUEST + b"early")
        self.assertEqual(out, [Send(b"\x05\x00"), ConnectRequest(HASH, 0)])
        out = server.feed(b" bytes")
        self.assertEqual(out, [])
        self.assertEqual(server.accept(), [Send(SUCCESS), Established(b"early bytes")])
        self.assertRaises(RuntimeError, server.feed, b"x")

    def test_severalMethodsOffered(self):
        server = ServerHandshake()
        self.assertEqual(server.feed(b"\x05\x03\x02\x01\x00"), [Send(b"\x05\x00")])

    def test_upperCaseHashIsNormalised(self):
        server = ServerHandshake()
        server.feed(GREETING)
        req = b"\x05\x01\x00\x03\x28" + HASH.upper().encode() + b"\x00\x00"
        self.assertEqual(server.feed(req), [ConnectRequest(HASH, 0)])
        # The reply echoes what the client sent.
        self.assertEqual(sent(server.accept())[5:45], HASH.upper().encode())

    def test_portReportedAndEchoed(self):
        server = ServerHandshake()
        server.feed(GREETING)
        out = server.feed(REQUEST[:-2] + b"\x01\x02")
        self.assertEqual(out, [ConnectRequest(HASH, 0x0102)])
        self.assertEqual(sent(server.accept())[-2:], b"\x01\x02")

    def test_refuse(self):
        server = ServerHandshake()
        server.feed(GREETING + REQUEST)
        out = server.refuse()
        self.assertEqual(sent(out), b"\x05\x04\x00\x03\x28" + HASH.encode() + b"\x00\x00")
        self.assertEqual(len(failures(out)), 1)
        self.assertIn("host unreachable (4)", failures(out)[0].reason)
        self.assertTrue(server.failed)
        self.assertEqual(server.feed(b"more junk"), [])

    def test_acceptOrRefuseOnlyWhenDeciding(self):
        server = ServerHandshake()
        self.assertRaises(RuntimeError, server.accept)
        self.assertRaises(RuntimeError, server.refuse)

    def assertFailsWith(self, data, reply, words, bytewise=False):
        server = ServerHandshake()
        out = feedAll(server, data, bytewise)
        self.assertEqual(sent(out), reply)
        fails = failures(out)
        self.assertEqual(len(fails), 1, out)
        self.assertIn(words, fails[0].reason)
        self.assertFalse(any(isinstance(o, (ConnectRequest, Established)) for o in out))
        self.assertTrue(server.failed)

    def test_junk(self):
        for bytewise in (False, True):
            self.assertFailsWith(b"GET / HTTP/1.0\r\n\r\n", b"", "not a SOCKS5 client", bytewise)
            self.assertFailsWith(b"\x04\x01\x00\x50", b"", "not a SOCKS5 client", bytewise)
            self.assertFailsWith(b"\x05\x00", b"\x05\xff", "no authentication method", bytewise)
            self.assertFailsWith(b"\x05\x01\x02", b"\x05\xff", "offers 0x02", bytewise)

    def test_badRequests(self):
        fail = lambda code: b"\x05" + bytes([code]) + b"\x00\x01\x00\x00\x00\x00\x00\x00"
        ok = b"\x05\x00"
        for bytewise in (False, True):
            self.assertFailsWith(GREETING + b"\x04\x01\x00\x03", ok + fail(1), "version", bytewise)
            # BIND and UDP ASSOCIATE are not for us.
            self.assertFailsWith(GREETING + b"\x05\x02\x00\x03", ok + fail(7), "not CONNECT", bytewise)
            self.assertFailsWith(GREETING + b"\x05\x03\x00\x03", ok + fail(7), "not CONNECT", bytewise)
            self.assertFailsWith(GREETING + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
                                 ok + fail(8), "not DOMAINNAME", bytewise)
            self.assertFailsWith(GREETING + b"\x05\x01\x00\x04", ok + fail(8), "not DOMAINNAME", bytewise)
            self.assertFailsWith(GREETING + b"\x05\x01\x00\x03\x0bexample.org\x00\x00",
                                 ok + fail(2), "11 bytes", bytewise)
            self.assertFailsWith(GREETING + b"\x05\x01\x00\x03\x28" + b"g" * 40 + b"\x00\x00",
                                 ok + fail(2), "not hexadecimal", bytewise)

    def test_longAddressRefusedBeforeItArrives(self):
        # The length byte alone is enough to refuse: nothing more is buffered.
        server = ServerHandshake()
        server.feed(GREETING)
        out = server.feed(b"\x05\x01\x00\x03\xff")
        self.assertEqual(len(failures(out)), 1)
        self.assertIn("255 bytes", failures(out)[0].reason)

    def test_earlyDataBounded(self):
        server = ServerHandshake(maxEarlyData=10)
        server.feed(GREETING + REQUEST)
        self.assertEqual(server.feed(b"0123456789"), [])
        out = server.feed(b"!")
        self.assertEqual(len(failures(out)), 1)
        self.assertIn("more than 10 bytes", failures(out)[0].reason)
        self.assertRaises(RuntimeError, server.accept)

    def test_randomJunkNeverRaisesOrBuffersMuch(self):
        rng = random.Random(65)
        for _ in range(500):
            server = ServerHandshake(maxEarlyData=100)
            prefix = rng.choice([b"", GREETING, b"\x05"])
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
            out = []
            data = prefix + junk
            pos = 0
            while pos < len(data):
                n = rng.randrange(1, 20)
                out += server.feed(data[pos:pos + n])
                pos += n
                if server.state == "deciding":
                    server.refuse()
                self.assertLessEqual(len(server._buffer), 300)
            self.assertLessEqual(len(failures(out)), 1)


class ClientHandshakeTests(SynchronousTestCase):
    def handshake(self, bytewise, reply=SUCCESS, extra=b""):
        client = ClientHandshake(HASH)
        self.assertEqual(client.start(), [Send(GREETING)])
        out = feedAll(client, b"\x05\x00", bytewise)
        self.assertEqual(out, [Send(REQUEST)])
        out = feedAll(client, reply + extra, bytewise)
        return client, out

    def test_whole(self):
        client, out = self.handshake(False)
        self.assertEqual(out, [Established(b"")])
        self.assertTrue(client.done)

    def test_byteAtATimeExactReply(self):
        client, out = self.handshake(True)
        self.assertEqual(out, [Established(b"")])

    def test_dataAfterReplyIsStreamData(self):
        client, out = self.handshake(False, extra=b"hello")
        self.assertEqual(out, [Established(b"hello")])
        self.assertRaises(RuntimeError, client.feed, b"x")

    def test_otherReplyAddressTypes(self):
        ipv4 = b"\x05\x00\x00\x01\x0a\x00\x00\x01\x1f\x90"
        ipv6 = b"\x05\x00\x00\x04" + b"\x00" * 15 + b"\x01" + b"\x00\x00"
        short = b"\x05\x00\x00\x03\x03abc\x00\x00"
        for reply in (ipv4, ipv6, short):
            for bytewise in (False, True):
                client, out = self.handshake(bytewise, reply=reply)
                self.assertEqual(out, [Established(b"")])

    def test_requestFormat(self):
        self.assertEqual(connectRequest(HASH), REQUEST)
        self.assertEqual(connectRequest("ab", 7), b"\x05\x01\x00\x03\x02ab\x00\x07")
        self.assertRaises(ValueError, ClientHandshake, "")
        self.assertRaises(ValueError, ClientHandshake, "x" * 256)

    def assertClientFails(self, methodReply, words, reply=None):
        client = ClientHandshake(HASH)
        client.start()
        out = client.feed(methodReply)
        if reply is not None:
            self.assertEqual(out, [Send(REQUEST)])
            out = client.feed(reply)
        fails = failures(out)
        self.assertEqual(len(fails), 1, out)
        self.assertIn(words, fails[0].reason)
        self.assertTrue(client.failed)
        self.assertEqual(client.feed(b"junk"), [])

    def test_failures(self):
        self.assertClientFails(b"HTTP/1.1 400", "not a SOCKS5 server")
        self.assertClientFails(b"\x05\xff", "requires authentication")
        self.assertClientFails(b"\x05\x02", "method 0x02")
        self.assertClientFails(b"\x05\x00", "host unreachable (4)",
                               reply=b"\x05\x04\x00\x01\0\0\0\0\0\0")
        self.assertClientFails(b"\x05\x00", "connection refused (5)", reply=b"\x05\x05\x00\x03")
        self.assertClientFails(b"\x05\x00", "unknown reply code (99)", reply=b"\x05\x63\x00\x03")
        self.assertClientFails(b"\x05\x00", "version byte 0x04", reply=b"\x04\x00\x00\x03")
        self.assertClientFails(b"\x05\x00", "address type 0x07", reply=b"\x05\x00\x00\x07")

    def test_order(self):
        client = ClientHandshake(HASH)
        self.assertRaises(RuntimeError, client.feed, b"\x05\x00")
        client.start()
        self.assertRaises(RuntimeError, client.start)

    def test_replyText(self):
        self.assertEqual(replyText(2), "connection not allowed by ruleset (2)")


class BothMachinesTests(SynchronousTestCase):
    def test_talkToEachOther(self):
        client, server = ClientHandshake(HASH), ServerHandshake()
        toServer = sent(client.start())
        events = []
        for _ in range(5):
            out = server.feed(toServer) if toServer else []
            for o in out:
                if isinstance(o, ConnectRequest):
                    self.assertEqual(o.address, HASH)
                    out += server.accept()
            events += [o for o in out if not isinstance(o, Send)]
            toClient = sent(out)
            toServer = b""
            if toClient:
                cout = client.feed(toClient)
                events += [o for o in cout if not isinstance(o, Send)]
                toServer = sent(cout)
        self.assertTrue(client.done)
        self.assertTrue(server.done)
        self.assertEqual(events, [ConnectRequest(HASH, 0), Established(b""), Established(b"")])
