"""
What a hostile peer or a local flood can make the XEP-0065 side do (issue 8,
findings 3 and 4, and the handshake cap of item 7):

* the direct streamhost is not starved by idle connections: a real target
  for a pending session gets through a server full of idle handshakes;
* ``[s5b] connect`` decides which candidate addresses we connect to, host
  names included, and a refused candidate is a local candidate failure;
* errors sent to a peer carry the condition only; the details stay local;
* the handshake cap follows ``max_links`` and a session failing while the
  cap evicted handshakes says so.

All on MemoryReactorClock and StringTransport (see test_s5b_method.Side).
"""

from __future__ import annotations

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from bytestreamd import ns
from bytestreamd.errors import MethodFailed
from bytestreamd.methods.s5b import fromConfig
from bytestreamd.methods.s5b_policy import (
    ConnectPolicy,
    HandshakeSlots,
    defaultMaxHandshakes,
    parseConnectRule,
)
from bytestreamd.methods.s5b_tcp import GREETING_TIMEOUT
from bytestreamd.wire.s5b import StreamHost, dstAddr
from tests.unit.test_s5b_method import (
    ALICE,
    BOB,
    GREETING,
    PROXY,
    SID,
    Side,
    ctxIn,
    ctxOut,
    itemNotFound,
    request,
    success,
    used,
)

ATTACKER = "203.0.113.66"
TARGET = "198.51.100.7"


# -- HandshakeSlots ------------------------------------------------------------------


class HandshakeSlotsTests(SynchronousTestCase):
    def test_belowTheLimitNobodyIsEvicted(self):
        slots = HandshakeSlots(3)
        self.assertEqual([slots.admit(k, "a") for k in "xyz"], [None, None, None])
        self.assertEqual(len(slots), 3)

    def test_oldestOfTheBusiestSourceGoes(self):
        slots = HandshakeSlots(4)
        slots.admit("t1", "target")
        for k in ("a1", "a2", "a3"):
            slots.admit(k, "attacker")
        # The target's handshake is the oldest, but the attacker holds most.
        self.assertEqual(slots.admit("t2", "target"), "a1")
        # 2 and 2: a tie goes against the newcomer's own source.
        self.assertEqual(slots.admit("a4", "attacker"), "a2")
        self.assertEqual(slots.admit("t3", "target"), "t1")
        self.assertEqual((slots.held("target"), slots.held("attacker")), (2, 2))

    def test_tiesGoToTheSourceWhoseOldestIsOldest(self):
        slots = HandshakeSlots(2)
        slots.admit("b1", "b")
        slots.admit("a1", "a")
        self.assertEqual(slots.admit("c1", "c"), "b1")
        self.assertEqual(slots.admit("c2", "c"), "c1")  # a tie: c's own
        self.assertEqual(slots.admit("d1", "d"), "a1")
        # One source alone evicts its own oldest: the newest stays.
        self.assertEqual(slots.admit("c3", "c"), "c2")
        self.assertEqual(slots.heaviest(), ["d", "c"])

    def test_release(self):
        slots = HandshakeSlots(1)
        slots.admit("x", "a")
        slots.release("x")
        slots.release("x")  # twice is harmless
        self.assertEqual((len(slots), slots.held("a")), (0, 0))
        self.assertIsNone(slots.admit("y", "b"))

    def test_limitMustBePositive(self):
        self.assertRaises(ValueError, HandshakeSlots, 0)

    def test_defaultFollowsMaxLinks(self):
        self.assertEqual(defaultMaxHandshakes(1), 64)
        self.assertEqual(defaultMaxHandshakes(32), 64)
        self.assertEqual(defaultMaxHandshakes(1000), 2000)


# -- the direct streamhost under a flood -------------------------------------------------


class DirectStreamhostFloodTests(SynchronousTestCase):
    """Finding 3: 80 idle connections, then the target of a pending session."""

    def setUp(self):
        self.side = Side(ALICE, advertise=[("192.0.2.1", None)], maxHandshakes=64)
        self.side.listen()
        self.factory = self.side.method.serverFactory

    def offer(self):
        d = self.side.method.initiate(ctxOut())
        return d, self.side.last()

    def flood(self, count, host=ATTACKER, data=b""):
        return [self.side.incoming(data, host=host) for _ in range(count)]

    def test_realTargetGetsThroughIdleHandshakes(self):
        d, iq = self.offer()
        idle = self.flood(80)
        self.assertEqual(self.factory.handshaking, 64)
        self.assertEqual(self.factory.evicted, 16)
        self.assertTrue(all(t.disconnected for _, t in idle[:16]))
        self.assertFalse(any(t.disconnecting for _, t in idle[16:]))
        proto, transport = self.side.incoming(GREETING + request(), host=TARGET)
        self.assertEqual(transport.value(), b"\x05\x00" + success())
        self.assertFalse(transport.disconnecting)
        # The target's handshake is done: 63 idle ones are left.
        self.assertEqual((self.factory.handshaking, self.factory.evicted), (63, 17))
        self.side.answer(iq, used(ALICE.full()))
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_realTargetFromTheAttackersAddressGetsThrough(self):
        # Same source address (NAT, or everything on 127.0.0.1): the newest
        # handshake of that source is the last one evicted.
        d, iq = self.offer()
        self.flood(80, host=TARGET)
        proto, transport = self.side.incoming(GREETING, host=TARGET)
        self.flood(10, host=TARGET)  # more idle ones while it waits a round trip
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(request())
        self.assertEqual(transport.value(), b"\x05\x00" + success())
        self.side.answer(iq, used(ALICE.full()))
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_slowTargetIsNotEvictedByTheAttackersFlood(self):
        # The target's greeting is in; the attacker keeps opening
        # connections from its own address: only its own handshakes go.
        d, iq = self.offer()
        proto, transport = self.side.incoming(GREETING, host=TARGET)
        self.flood(500)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(request())
        self.side.answer(iq, used(ALICE.full()))
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_idleConnectionsAreDroppedAfterTheGreetingDeadline(self):
        self.offer()
        idle = self.flood(5)
        _, partial = self.side.incoming(b"\x05", host=ATTACKER)
        _, greeted = self.side.incoming(GREETING, host=ATTACKER)
        self.side.reactor.advance(GREETING_TIMEOUT - 0.1)
        self.assertEqual(self.factory.handshaking, 7)
        self.side.reactor.advance(0.2)
        self.assertTrue(all(t.disconnected for _, t in idle))
        self.assertTrue(partial.disconnected)
        # A client that sent its greeting has the whole handshake timeout.
        self.assertFalse(greeted.disconnecting)
        self.assertEqual(self.factory.handshaking, 1)
        self.side.reactor.advance(10 - GREETING_TIMEOUT - 0.2)
        self.assertFalse(greeted.disconnecting)
        self.side.reactor.advance(0.2)
        self.assertTrue(greeted.disconnected)
        self.assertEqual(self.factory.handshaking, 0)

    def test_nothingIsHeldWhileNoSessionWaits(self):
        idle = self.flood(3)
        self.assertTrue(all(proto is None and t.disconnecting for proto, t in idle))
        self.assertEqual((self.factory.handshaking, self.factory.unwanted), (0, 3))
        d, iq = self.offer()
        self.assertIsNotNone(self.side.incoming()[0])
        self.side.answer(iq, itemNotFound(), type="error")
        self.failureResultOf(d, MethodFailed)
        self.assertIsNone(self.side.incoming()[0])  # the session is over

    def test_failureWhileEvictingSaysSo(self):
        # Item 7: the cap used to fail links "with a reason that names nothing".
        self.factory.maxHandshakes = 4
        d, iq = self.offer()
        self.flood(6)
        self.side.answer(iq, itemNotFound(), type="error")
        reason = self.failureResultOf(d, MethodFailed).value.reason
        self.assertIn("closed 2 SOCKS5 handshakes to make room", reason)
        self.assertIn("all 4 slots ([s5b] max_handshakes)", reason)

    def test_evictionIsLoggedWithWhatHappened(self):
        events = []
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.factory.maxHandshakes = 2
        self.offer()
        self.flood(3)
        reasons = [e.get("reason", "") for e in events if "reason" in e]
        self.assertTrue(any("all 2 SOCKS5 handshake slots ([s5b] max_handshakes) were "
                            "in use, and %s held the most (2)" % ATTACKER in r
                            for r in reasons), reasons)

    def test_initiatorReasonNamesWhatItOfferedAndSaw(self):
        d, iq = self.offer()
        self.side.answer(iq, itemNotFound(), type="error")
        reason = self.failureResultOf(d, MethodFailed).value.reason
        self.assertIn("we offered %s (192.0.2.1:7777)" % ALICE.full(), reason)
        self.assertIn("no SOCKS5 connection for this session reached our direct "
                      "streamhost", reason)
        self.assertNotIn("closed", reason)


# -- [s5b] connect ---------------------------------------------------------------------


class ConnectPolicyTests(SynchronousTestCase):
    def test_defaultRefusesTheSpecialAddresses(self):
        policy = ConnectPolicy()
        for address in ("127.0.0.1", "127.255.0.9", "::1", "169.254.169.254", "fe80::1",
                        "fe80::1%eth0", "0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "ff02::1",
                        "255.255.255.255", "::ffff:127.0.0.1", "::ffff:169.254.1.1"):
            self.assertEqual(policy.check(address),
                             "address %s is not allowed by [s5b] connect" % address)
        for address in ("192.0.2.1", "10.1.2.3", "192.168.1.1", "2001:db8::1",
                        "::ffff:192.0.2.1"):
            self.assertIsNone(policy.check(address), address)

    def test_explicitEntriesAllowTheSpecialOnes(self):
        policy = ConnectPolicy(["127.0.0.0/8", "::1"])
        self.assertTrue(policy.allows("127.0.0.1"))
        self.assertTrue(policy.allows("::1"))
        self.assertTrue(policy.allows("::ffff:127.0.0.1"))
        self.assertFalse(policy.allows("192.0.2.1"))  # not listed
        self.assertFalse(policy.allows("169.254.1.1"))
        self.assertTrue(ConnectPolicy(["127.0.0.1"]).allows("127.0.0.1"))
        self.assertFalse(ConnectPolicy(["127.0.0.1"]).allows("127.0.0.2"))
        # A wider entry is not explicit enough.
        self.assertFalse(ConnectPolicy(["0.0.0.0/0", "126.0.0.0/7"]).allows("127.0.0.1"))

    def test_mostSpecificRuleWins(self):
        policy = ConnectPolicy(["0.0.0.0/0", "!10.0.0.0/8", "10.1.0.0/16", "::/0",
                                "!2001:db8::/32"])
        self.assertTrue(policy.allows("192.0.2.1"))
        self.assertFalse(policy.allows("10.2.0.1"))
        self.assertTrue(policy.allows("10.1.0.1"))
        self.assertFalse(policy.allows("2001:db8::1"))
        self.assertTrue(policy.allows("2001:db9::1"))

    def test_emptyAllowsNothing(self):
        self.assertFalse(ConnectPolicy([]).allows("192.0.2.1"))

    def test_notAnAddress(self):
        self.assertIn("not an IP address", ConnectPolicy().check("example.org"))

    def test_parse(self):
        self.assertEqual(parseConnectRule(" !10.0.0.0/8 ")[0], False)
        self.assertEqual(str(parseConnectRule("::1")[1]), "::1/128")
        self.assertRaises(ValueError, parseConnectRule, "10.0.0.1/8")
        self.assertRaises(ValueError, parseConnectRule, "bad")


@implementer(IHostnameResolver)
class FakeResolver:
    """Resolves names from a table; unknown names resolve to nothing."""

    def __init__(self, table):
        self.table = table
        self.asked = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        for address in self.table.get(hostName, ()):
            cls = IPv6Address if ":" in address else IPv4Address
            receiver.addressResolved(cls("TCP", address, portNumber))
        receiver.resolutionComplete()


class TargetConnectTests(SynchronousTestCase):
    """Finding 4: where the target side connects, and what the peer learns."""

    def setUp(self):
        self.side = Side(ALICE, candidateTimeout=5)

    def offer(self, hosts, iqId="offer1", mode=None, sid=SID):
        body = "".join("<streamhost jid='%s' host='%s' port='%d'/>" % h for h in hosts)
        modeAttr = " mode='%s'" % mode if mode else ""
        self.side.receive("<iq type='set' id='%s' from='%s' to='%s'>"
                          "<query xmlns='%s' sid='%s'%s>%s</query></iq>"
                          % (iqId, BOB.full(), ALICE.full(), ns.NS_S5B, sid, modeAttr, body))

    def errorSent(self):
        err = self.side.last()
        self.assertEqual(err["type"], "error")
        return err.error

    def assertBareError(self, condition):
        """The error names its condition and carries nothing else."""
        element = self.errorSent()
        self.assertEqual([c.name for c in element.elements()], [condition])
        self.assertEqual(str(element).strip(), "")

    def connects(self):
        return [c[:2] for c in self.side.reactor.tcpClients]

    def test_loopbackCandidateIsRefusedLocallyOnly(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "127.0.0.1", 22), (BOB.full(), "169.254.169.254", 80)])
        self.assertEqual(self.connects(), [])
        self.assertBareError("item-not-found")
        f = self.failureResultOf(d, MethodFailed)
        self.assertEqual(f.value.condition, "item-not-found")
        self.assertIn("(127.0.0.1:22): address 127.0.0.1 is not allowed by [s5b] connect",
                      f.value.reason)
        self.assertIn("(169.254.169.254:80): address 169.254.169.254 is not allowed",
                      f.value.reason)

    def test_refusedThenAllowed(self):
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "::ffff:127.0.0.1", 22), (BOB.full(), "192.0.2.9", 1080)])
        self.assertEqual(self.connects(), [("192.0.2.9", 1080)])
        proto, transport = self.side.outgoing()
        proto.dataReceived(b"\x05\x00" + success(dstAddr(SID, BOB, ALICE)))
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_noDetailsReachThePeer(self):
        # What used to be sent: "connection refused", "streamhost is not a
        # SOCKS5 server (first byte 0x53)" -- a port scanner and banner oracle.
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "192.0.2.1", 25), (BOB.full(), "192.0.2.2", 22)])
        self.side.reactor.tcpClients[0][2].clientConnectionFailed(
            None, Failure(error.ConnectionRefusedError()))
        proto, transport = self.side.outgoing()
        proto.dataReceived(b"SSH-2.0-OpenSSH_9.6\r\n")
        self.assertBareError("item-not-found")
        sent = self.errorSent().toXml()
        for leak in ("refused", "0x53", "192.0.2", "SOCKS5"):
            self.assertNotIn(leak, sent)
        reason = self.failureResultOf(d, MethodFailed).value.reason
        self.assertIn("(192.0.2.1:25): connection refused", reason)
        self.assertIn("(192.0.2.2:22): streamhost is not a SOCKS5 server (first byte 0x53)",
                      reason)

    def test_otherErrorsAreBareToo(self):
        self.side.receive("<iq type='set' id='x' from='%s'><query xmlns='%s'/></iq>"
                          % (BOB.full(), ns.NS_S5B))
        self.assertBareError("bad-request")
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "192.0.2.1", 1)], mode="udp")
        self.assertBareError("not-acceptable")
        self.failureResultOf(d, MethodFailed)
        d = self.side.method.expect(ctxIn("sid-2"))
        self.offer([], sid="sid-2")
        self.assertBareError("bad-request")
        self.failureResultOf(d, MethodFailed)
        d = self.side.method.expect(ctxIn("sid-3"))
        self.offer([(BOB.full(), "192.0.2.1", 1)], sid="sid-3")
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertBareError("item-not-found")

    def test_hostNameResolvingToLoopbackIsRefused(self):
        # MemoryReactorClock's resolver says 127.0.0.1 for every name.
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "localhost.example", 22)])
        self.assertEqual(self.connects(), [])
        self.assertIn("localhost.example resolves to 127.0.0.1; address 127.0.0.1 is not "
                      "allowed by [s5b] connect",
                      self.failureResultOf(d, MethodFailed).value.reason)

    def test_everyResolvedAddressIsChecked(self):
        self.side.reactor.nameResolver = FakeResolver({
            "rebind.example": ["192.0.2.5", "127.0.0.1"],
            "good.example": ["2001:db8::5", "192.0.2.6"],
        })
        d = self.side.method.expect(ctxIn())
        self.offer([(BOB.full(), "rebind.example", 1), (BOB.full(), "nothing.example", 2),
                    (BOB.full(), "good.example", 3)])
        # Connects to checked addresses, in the resolver's order.
        self.assertEqual(self.connects(), [("2001:db8::5", 3)])
        self.side.reactor.tcpClients[0][2].clientConnectionFailed(
            None, Failure(error.ConnectionRefusedError()))
        self.assertEqual(self.connects()[1:], [("192.0.2.6", 3)])
        self.side.reactor.tcpClients[1][2].clientConnectionFailed(
            None, Failure(error.ConnectionRefusedError()))
        reason = self.failureResultOf(d, MethodFailed).value.reason
        self.assertIn("rebind.example resolves to 192.0.2.5, 127.0.0.1; address 127.0.0.1 "
                      "is not allowed", reason)
        self.assertIn("(nothing.example:2): cannot resolve the host name", reason)
        self.assertIn("2001:db8::5: connection refused; 192.0.2.6: connection refused",
                      reason)

    def test_configuredLoopbackIsReached(self):
        side = Side(ALICE, connect=ConnectPolicy(["127.0.0.0/8", "::1"]))
        d = side.method.expect(ctxIn())
        self.side = side
        self.offer([(BOB.full(), "127.0.0.1", 1080)])
        self.assertEqual(self.connects(), [("127.0.0.1", 1080)])
        proto, transport = side.outgoing()
        proto.dataReceived(b"\x05\x00" + success(dstAddr(SID, BOB, ALICE)))
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_ourOwnProxyIsNotChecked(self):
        # A proxy of ours at a loopback address (its own answer): reached;
        # the same JID with another loopback port named by the peer: not.
        side = Side(ALICE, proxies=[PROXY])
        self.side = side
        side.method.proxyDirectory._cache = [StreamHost(PROXY, "127.0.0.1", 7625)]
        d = side.method.expect(ctxIn())
        self.offer([(PROXY.full(), "127.0.0.1", 22), (PROXY.full(), "127.0.0.1", 7625)])
        self.assertEqual(self.connects(), [("127.0.0.1", 7625)])
        proto, transport = side.outgoing()
        proto.dataReceived(b"\x05\x00" + success(dstAddr(SID, BOB, ALICE)))
        side.reactor.advance(2)  # proxy grace
        self.assertIs(self.successResultOf(d).transport, transport)

    def test_fromConfig(self):
        class Config:
            s5b_listen = ()
            s5b_advertise = ()
            s5b_proxy = ""
            s5b_connect = ("127.0.0.0/8",)
            s5b_max_handshakes = None
            max_links = 1000
        method = fromConfig(self.side.reactor, Config)
        self.assertEqual(method.serverFactory.maxHandshakes, 2000)
        self.assertTrue(method.connectPolicy.allows("127.0.0.1"))
        self.assertFalse(method.connectPolicy.allows("192.0.2.1"))
        Config.s5b_max_handshakes = 7
        Config.max_links = 1
        self.assertEqual(fromConfig(self.side.reactor, Config).serverFactory.maxHandshakes, 7)
        Config.s5b_max_handshakes = None
        self.assertEqual(fromConfig(self.side.reactor, Config).serverFactory.maxHandshakes, 64)


class PerSessionLimitTests(SynchronousTestCase):
    def test_fifthConnectionOfASessionSaysWhy(self):
        events = []
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        side = Side(ALICE, advertise=[("192.0.2.1", None)])
        side.listen()
        side.method.initiate(ctxOut())
        held = [side.incoming(GREETING + request())[1] for _ in range(4)]
        _, fifth = side.incoming(GREETING + request())
        self.assertFalse(any(t.disconnecting for t in held))
        self.assertEqual(fifth.value()[2:4], b"\x05\x04")  # host unreachable
        self.assertTrue(fifth.disconnecting)
        self.assertTrue(any("session already holds 4 SOCKS5 connections" in e.get("reason", "")
                            for e in events))
