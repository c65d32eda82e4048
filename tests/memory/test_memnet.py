"""
The in-memory network behaves like Twisted's TCP and UNIX transports where
the link lifecycle can tell the difference: backpressure, half-close, EOF
versus reset, abort, a killed process, refused and unanswered connects.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet import error, interfaces, protocol
from twisted.python import failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.memory.memnet import READ_CHUNK, Network


class Recorder(protocol.Protocol):
    """Keeps what arrived and how the connection ended."""

    def __init__(self):
        self.data = bytearray()
        self.chunks = []
        self.lost = None

    def dataReceived(self, data):
        self.data += data
        self.chunks.append(len(data))

    def connectionLost(self, reason=None):
        self.lost = reason


@implementer(interfaces.IHalfCloseableProtocol)
class HalfRecorder(Recorder):
    def __init__(self):
        Recorder.__init__(self)
        self.readEOF = False
        self.writeEOF = False

    def readConnectionLost(self):
        self.readEOF = True

    def writeConnectionLost(self):
        self.writeEOF = True


@implementer(interfaces.IPushProducer)
class Producer:
    def __init__(self):
        self.paused = 0
        self.resumed = 0
        self.stopped = False

    def pauseProducing(self):
        self.paused += 1

    def resumeProducing(self):
        self.resumed += 1

    def stopProducing(self):
        self.stopped = True


class Net:
    """A network with hosts a and b; ``connect`` joins a client on a to a server on b."""

    def __init__(self, family="TCP"):
        self.network = Network(socketBuffer=128 * 1024)
        self.a = self.network.host("a")
        self.b = self.network.host("b")
        self.family = family

    def connect(self, clientProto, serverProto, path=None):
        factory = protocol.Factory.forProtocol(lambda: serverProto)
        clientFactory = protocol.ClientFactory.forProtocol(lambda: clientProto)
        if self.family == "TCP":
            port = self.b.listenTCP(0, factory, interface="127.0.0.1")
            connector = self.a.connectTCP("127.0.0.1", port.getHost().port, clientFactory)
        else:
            port = self.b.listenUNIX(path, factory)
            connector = self.a.connectUNIX(path, clientFactory)
        self.network.pump()
        assert clientProto.transport is not None and serverProto.transport is not None
        return port, connector


@pytest.fixture
def net():
    return Net()


def test_fakes_provide_their_interfaces(net, tmp_path):
    for iface in (interfaces.IReactorTime, interfaces.IReactorTCP, interfaces.IReactorUNIX,
                  interfaces.IReactorPluggableNameResolver):
        verifyObject(iface, net.a)
    verifyObject(interfaces.IHostnameResolver, net.a.nameResolver)
    client, server = Recorder(), Recorder()
    port, connector = net.connect(client, server)
    verifyObject(interfaces.IListeningPort, port)
    verifyObject(interfaces.IConnector, connector)
    for iface in (interfaces.ITCPTransport, interfaces.ITLSTransport, interfaces.IConsumer,
                  interfaces.IPushProducer):
        verifyObject(iface, client.transport)
    assert client.transport.getPeer() == server.transport.getHost()


def test_bytes_both_ways_in_read_sized_chunks(net):
    client, server = Recorder(), Recorder()
    net.connect(client, server)
    big = os.urandom(3 * READ_CHUNK + 5)
    client.transport.write(big)
    server.transport.write(b"hello")
    net.network.pump()
    assert bytes(server.data) == big and bytes(client.data) == b"hello"
    assert max(server.chunks) <= READ_CHUNK


def test_a_reader_that_pauses_pauses_the_writers_producer(net):
    client, server = Recorder(), Recorder()
    net.connect(client, server)
    producer = Producer()
    client.transport.registerProducer(producer, True)
    server.transport.pauseProducing()
    client.transport.write(b"x" * (400 * 1024))
    assert producer.paused == 1  # more than bufferSize waits: Twisted pauses at once
    net.network.pump()
    assert len(server.data) == 0 and producer.resumed == 0
    server.transport.resumeProducing()
    net.network.pump()
    assert len(server.data) == 400 * 1024 and producer.resumed == 1


def test_half_close_keeps_the_other_direction(net):
    client, server = HalfRecorder(), HalfRecorder()
    net.connect(client, server)
    client.transport.write(b"request")
    client.transport.loseWriteConnection()
    net.network.pump()
    assert server.readEOF and bytes(server.data) == b"request" and client.writeEOF
    server.transport.write(b"answer")
    server.transport.loseConnection()
    net.network.pump()
    assert bytes(client.data) == b"answer" and client.readEOF
    assert server.lost.check(error.ConnectionDone)
    client.transport.loseConnection()
    net.network.pump()
    assert client.lost.check(error.ConnectionDone)


def test_eof_ends_a_protocol_that_cannot_half_close(net):
    client, server = Recorder(), Recorder()
    net.connect(client, server)
    client.transport.write(b"bye")
    client.transport.loseConnection()
    net.network.pump()
    assert bytes(server.data) == b"bye"
    assert server.lost.check(error.ConnectionDone) and client.lost.check(error.ConnectionDone)


def test_tcp_abort_resets_the_peer():
    net = Net("TCP")
    client, server = Recorder(), Recorder()
    net.connect(client, server)
    client.transport.abortConnection()
    assert client.lost is None  # as in Twisted: on the next reactor turn
    net.network.pump()
    assert client.lost.check(error.ConnectionAborted)
    assert server.lost.check(error.ConnectionLost)


def test_unix_abort_is_an_eof_for_the_peer(tmp_path):
    net = Net("UNIX")
    client, server = Recorder(), Recorder()
    net.connect(client, server, path=str(tmp_path / "s"))
    server.transport.abortConnection()
    net.network.pump()
    assert server.lost.check(error.ConnectionAborted)
    assert client.lost.check(error.ConnectionDone)


def test_closing_over_unread_input_resets(net):
    client, server = Recorder(), Recorder()
    net.connect(client, server)
    server.transport.pauseProducing()
    client.transport.write(b"never read")
    net.network.pump()
    server.transport.loseConnection()
    net.network.pump()
    assert client.lost.check(error.ConnectionLost)


def test_writing_to_a_closed_peer_is_connection_lost(net):
    client, server = HalfRecorder(), HalfRecorder()
    net.connect(client, server)
    server.transport.loseConnection()
    net.network.pump()
    assert client.readEOF and client.lost is None
    client.transport.write(b"too late")
    net.network.pump()
    assert client.lost.check(error.ConnectionLost)


def test_killed_host_closes_like_a_kernel(net, tmp_path):
    client, server = Recorder(), Recorder()
    path = str(tmp_path / "sock")
    unixPort = net.b.listenUNIX(path, protocol.Factory.forProtocol(Recorder))
    net.connect(client, server)
    fired = []
    net.b.callLater(5, fired.append, True)
    server.transport.write(b"in the pipe")
    net.network.pump()  # reaches the pipe (and the client)
    server.transport.write(b"only in twisted's buffer")
    net.b.kill()
    net.network.advance(10)
    assert bytes(client.data) == b"in the pipe"
    assert client.lost.check(error.ConnectionDone)  # FIN: a clean EOF
    assert server.lost is None  # the dead process hears nothing
    assert fired == []
    assert os.path.exists(path) and not unixPort.listening  # the socket file stays
    failed = []

    class Failing(protocol.ClientFactory):
        def clientConnectionFailed(self, connector, reason):
            failed.append(reason)

    net.a.connectUNIX(path, Failing())
    net.network.pump()
    assert failed and failed[0].check(error.ConnectionRefusedError)


def test_unreachable_address_times_out(net):
    net.network.unreachable.add("192.0.2.1")
    failed = []

    class Failing(protocol.ClientFactory):
        def clientConnectionFailed(self, connector, reason):
            failed.append((net.network.clock.seconds(), reason))

    net.a.connectTCP("192.0.2.1", 1080, Failing(), timeout=7)
    net.network.advance(6)
    assert failed == []
    net.network.advance(2)
    assert failed[0][0] == 7 and failed[0][1].check(error.TimeoutError)


def test_unix_socket_file_lives_while_listening(tmp_path):
    net = Net("UNIX")
    path = str(tmp_path / "link")
    port = net.b.listenUNIX(path, protocol.Factory.forProtocol(Recorder), mode=0o600)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(error.CannotListenError):
        net.b.listenUNIX(path, protocol.Factory.forProtocol(Recorder))
    port.stopListening()
    assert not os.path.exists(path)
    net.network.listenUNIXError = lambda p: OSError(24, "Too many open files")
    with pytest.raises(error.CannotListenError):
        net.b.listenUNIX(path, protocol.Factory.forProtocol(Recorder))


def test_an_exception_in_a_protocol_is_kept_and_disconnects(net):
    class Boom(Recorder):
        def dataReceived(self, data):
            raise ValueError("boom")

    client, server = Recorder(), Boom()
    net.connect(client, server)
    client.transport.write(b"x")
    net.network.pump()
    assert len(net.network.errors) == 1 and net.network.errors[0].check(ValueError)
    assert server.lost.check(ValueError)
    assert isinstance(server.lost, failure.Failure)
