"""
TLS in memory: two Twisted TLS endpoints over iosim with identities made by
bytestreamd.e2e.identity, the mutual handshake of bytestreamd.e2e.tls, the
decision of bytestreamd.e2e.trust -- first on a bare TLS connection, then
the whole XEP-0246 sequence (E2EStream, STARTTLS inserted into the
connection the way twisted.internet._newtls does it), and one end driven by
Python's own ssl module instead of this project's code.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from typing import List, Optional

import pytest
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.words.xish import domish
from zope.interface import implementer

from bytestreamd.e2e import NS_TLS
from bytestreamd.e2e.identity import Identity, loadOrCreate
from bytestreamd.e2e.stream import (INITIATOR, MODE_BYTES, MODE_XMPP, RESPONDER,
                                    Closed, Data, E2EStream, Established, Failed,
                                    Send, Stanza, StartTLS)
from bytestreamd.e2e.tls import E2ETLSOptions, checkPeer, makeContext
from bytestreamd.e2e.trust import (CA, PINNED, SIGNALLING, TOFU, Accept, KnownPeers,
                                   Refuse, decide)

ROMEO = "romeo@montague.lit"
JULIET = "juliet@capulet.lit"


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    base = tmp_path_factory.mktemp("ids")
    return {
        "romeo": loadOrCreate(str(base / "romeo"), ROMEO + "/orchard"),
        "juliet": loadOrCreate(str(base / "juliet"), JULIET + "/balcony"),
        # a relay or proxy terminating TLS with its own certificate
        "mallory": loadOrCreate(str(base / "mallory"), JULIET),
    }


# --- 1. a bare TLS connection ------------------------------------------------


@implementer(IHandshakeListener)
class Endpoint(Protocol):
    """Checks the peer after the handshake; says hello only if accepted."""

    def __init__(self, peer, signalled, store, policy=TOFU):
        self.peer, self.signalled, self.store, self.policy = peer, signalled, store, policy
        self.decision = None
        self.received = b""
        self.lost = False

    def handshakeCompleted(self):
        self.decision = checkPeer(self.transport, self.policy, self.peer,
                                  self.signalled, self.store)
        if isinstance(self.decision, Refuse):
            self.transport.abortConnection()
            return
        if self.decision.pin:
            self.store.trust(self.peer, self.decision.fingerprint)
        self.transport.write(b"hello, I trust you")

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = True


def tlsPair(clientId, serverId, clientEnd, serverEnd):
    # Twisted's TLS layer coalesces small writes on a clock: iosim's pump
    # advances this one.
    clock = Clock()

    def side(identity, isClient, end):
        factory = TLSMemoryBIOFactory(E2ETLSOptions(identity), isClient,
                                      Factory.forProtocol(lambda: end), clock)
        return lambda: factory.buildProtocol(None)

    client, server, pump = connectedServerAndClient(
        side(serverId, False, serverEnd), side(clientId, True, clientEnd), clock=clock)
    pump.flush()
    return client, server, pump


def test_mutual_handshake_fingerprints_and_tofu(ids, tmp_path):
    romeo, juliet = ids["romeo"], ids["juliet"]
    romeoStore = KnownPeers(str(tmp_path / "romeo-peers"))
    julietStore = KnownPeers(str(tmp_path / "juliet-peers"))
    # each side learnt the other's fingerprint from the negotiation
    atRomeo = Endpoint(JULIET, juliet.fingerprint, romeoStore)
    atJuliet = Endpoint(ROMEO, romeo.fingerprint, julietStore)
    client, server, pump = tlsPair(romeo, juliet, atRomeo, atJuliet)

    # both sides saw a certificate: the handshake is mutual
    assert atRomeo.decision == Accept(juliet.fingerprint, "first use, now pinned", pin=True)
    assert atJuliet.decision == Accept(romeo.fingerprint, "first use, now pinned", pin=True)
    assert client.getPeerCertificate().digest("sha256").decode() == juliet.fingerprint
    assert server.getPeerCertificate().digest("sha256").decode() == romeo.fingerprint
    assert atRomeo.received == atJuliet.received == b"hello, I trust you"
    assert client.getHandle().get_protocol_version_name() in ("TLSv1.2", "TLSv1.3")
    assert romeoStore.lookup(JULIET) == {juliet.fingerprint}
    assert julietStore.lookup(ROMEO) == {romeo.fingerprint}

    # the second time, the pins hold
    again = Endpoint(JULIET, juliet.fingerprint, romeoStore)
    tlsPair(romeo, juliet, again, Endpoint(ROMEO, romeo.fingerprint, julietStore))
    assert again.decision == Accept(juliet.fingerprint, "pinned fingerprint")


def test_certificate_other_than_signalled_is_refused(ids, tmp_path):
    romeo, juliet, mallory = ids["romeo"], ids["juliet"], ids["mallory"]
    atRomeo = Endpoint(JULIET, juliet.fingerprint,
                       KnownPeers(str(tmp_path / "p")), policy=SIGNALLING)
    atMallory = Endpoint(ROMEO, romeo.fingerprint, KnownPeers(str(tmp_path / "m")),
                         policy=SIGNALLING)
    client, server, pump = tlsPair(romeo, mallory, atRomeo, atMallory)
    decision = atRomeo.decision
    assert isinstance(decision, Refuse)
    assert mallory.fingerprint in decision.reason and juliet.fingerprint in decision.reason
    assert (decision.presented, decision.signalled) == (mallory.fingerprint,
                                                        juliet.fingerprint)
    pump.flush()
    assert atRomeo.lost and atMallory.lost
    # nothing of Mallory's reached Romeo's application
    assert atRomeo.received == b""
    assert not os.path.exists(tmp_path / "p")  # nothing pinned


def test_pin_mismatch_is_refused_naming_both(ids, tmp_path):
    romeo, juliet, mallory = ids["romeo"], ids["juliet"], ids["mallory"]
    store = KnownPeers(str(tmp_path / "p"))
    store.trust(JULIET, juliet.fingerprint)
    # Mallory controls the signalling too (a bad server): only the pin helps
    atRomeo = Endpoint(JULIET, mallory.fingerprint, store, policy=PINNED)
    tlsPair(romeo, mallory, atRomeo, Endpoint(ROMEO, romeo.fingerprint,
                                              KnownPeers(str(tmp_path / "m"))))
    assert isinstance(atRomeo.decision, Refuse)
    assert "pinned sha-256 %s" % juliet.fingerprint in atRomeo.decision.reason
    assert mallory.fingerprint in atRomeo.decision.reason
    assert atRomeo.received == b""


def test_client_without_certificate_fails_the_handshake(ids, tmp_path):
    juliet = ids["juliet"]

    class Anonymous:
        """A client that presents no certificate."""

        def clientConnectionForTLS(self, tlsProtocol):
            from OpenSSL import SSL
            context = SSL.Context(SSL.TLS_METHOD)
            context.set_verify(SSL.VERIFY_NONE, lambda *a: True)
            connection = SSL.Connection(context, None)
            connection.set_connect_state()
            return connection

    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from zope.interface import directlyProvides
    anonymous = Anonymous()
    directlyProvides(anonymous, IOpenSSLClientConnectionCreator)
    atJuliet = Endpoint(ROMEO, "00" * 32, KnownPeers(str(tmp_path / "j")))
    atAnon = Endpoint(JULIET, juliet.fingerprint, KnownPeers(str(tmp_path / "a")),
                      policy=SIGNALLING)
    clock = Clock()
    serverFactory = TLSMemoryBIOFactory(E2ETLSOptions(juliet), False,
                                        Factory.forProtocol(lambda: atJuliet), clock)
    clientFactory = TLSMemoryBIOFactory(anonymous, True,
                                        Factory.forProtocol(lambda: atAnon), clock)
    client, server, pump = connectedServerAndClient(
        lambda: serverFactory.buildProtocol(None), lambda: clientFactory.buildProtocol(None),
        clock=clock)
    pump.flush()
    assert atJuliet.decision is None  # the handshake never completed on her side
    assert atJuliet.lost and atJuliet.received == b""


def test_ca_mode_with_intermediates_over_tls(tmp_path):
    """Both daemons hold CA-issued certificates with an intermediate, which
    each sends in the handshake; CA mode checks chain and id-on-xmppAddr."""
    from tests.unit.test_e2e_trust import _ca, _leaf
    rootKey, root = _ca("Root")
    midKey, mid = _ca("Intermediate", rootKey, root.subject)

    def issued(jid):
        leaf = _leaf(midKey, mid, [jid])
        return Identity(key=leaf.key, certificate=leaf.certificate, chain=(mid,))

    romeo, juliet = issued(ROMEO), issued(JULIET)
    atRomeo = CAEndpoint(JULIET, juliet.fingerprint, [root])
    atJuliet = CAEndpoint(ROMEO, romeo.fingerprint, [root])
    tlsPair(romeo, juliet, atRomeo, atJuliet)
    assert atRomeo.decision == Accept(juliet.fingerprint, "certificate from a trusted CA")
    assert atJuliet.decision == Accept(romeo.fingerprint, "certificate from a trusted CA")
    assert atRomeo.received == atJuliet.received == b"hello, I trust you"
    # the same certificates, but only the root of another CA is trusted
    _, otherRoot = _ca("Other")
    refusing = CAEndpoint(JULIET, juliet.fingerprint, [otherRoot])
    tlsPair(romeo, juliet, refusing, CAEndpoint(ROMEO, romeo.fingerprint, [root]))
    assert isinstance(refusing.decision, Refuse)
    assert "does not chain" in refusing.decision.reason and refusing.received == b""


class CAEndpoint(Endpoint):
    def __init__(self, peer, signalled, roots):
        Endpoint.__init__(self, peer, signalled, None, policy=CA)
        self.roots = roots

    def handshakeCompleted(self):
        self.decision = checkPeer(self.transport, CA, self.peer, self.signalled,
                                  None, caCertificates=self.roots)
        if isinstance(self.decision, Refuse):
            self.transport.abortConnection()
        else:
            self.transport.write(b"hello, I trust you")


# --- 2. the whole XEP-0246 sequence over iosim, with real TLS ------------------


@implementer(IHandshakeListener)
class StreamAdapter(Protocol):
    """
    A minimal adapter performing an E2EStream's outputs: what the link layer
    will do over an ILinkEnd.  On StartTLS it puts a TLSMemoryBIOProtocol
    between itself and the transport, as twisted.internet._newtls.startTLS
    does for TCP.
    """

    def __init__(self, machine, identity, signalled, store, clock, policy=TOFU):
        self.machine, self.identity, self.clock = machine, identity, clock
        self.signalled, self.store, self.policy = signalled, store, policy
        self.events: List[object] = []
        self.tls = None
        self.raw = b""  # everything this side wrote to the bytestream

    def connectionMade(self):
        write = self.transport.write

        def recording(data):
            self.raw += data
            write(data)

        self.transport.write = recording
        self.perform(self.machine.start())

    def dataReceived(self, data):
        self.perform(self.machine.dataReceived(data))

    def send(self, data):
        (self.tls or self.transport).write(data)

    def perform(self, outputs):
        for output in outputs:
            if isinstance(output, Send):
                self.send(output.data)
                continue
            self.events.append(output)
            if isinstance(output, StartTLS):
                self.startTLS(output.role == "client")
            elif isinstance(output, Established) and output.data:
                self.events.append(Data(output.data))
            elif isinstance(output, (Failed, Closed)):
                (self.tls or self.transport).loseConnection()

    def startTLS(self, isClient):
        factory = TLSMemoryBIOFactory(E2ETLSOptions(self.identity), isClient, None,
                                      self.clock)
        tls = factory.protocol(factory, self, False)
        self.transport.protocol = tls  # iosim delivers to transport.protocol
        self.tls = tls
        tls.makeConnection(self.transport)

    def handshakeCompleted(self):
        decision = checkPeer(self.tls, self.policy, self.machine.peer,
                             self.signalled, self.store)
        self.events.append(decision)
        if isinstance(decision, Refuse):
            self.perform(self.machine.tlsFailed(decision.reason))
            self.tls.abortConnection()
            return
        if decision.pin:
            self.store.trust(self.machine.peer, decision.fingerprint)
        self.perform(self.machine.tlsEstablished())

    def connectionLost(self, reason):
        self.perform(self.machine.connectionLost())


def streamPair(ids, tmp_path, mode=MODE_XMPP, julietIdentity=None, romeoStore=None,
               romeoPolicy=TOFU):
    romeo, juliet = ids["romeo"], ids["juliet"]
    presented = julietIdentity or juliet
    clock = Clock()
    initiator = StreamAdapter(
        E2EStream(INITIATOR, ROMEO + "/orchard", JULIET + "/balcony", mode),
        romeo, juliet.fingerprint,  # what Juliet signalled over XMPP
        romeoStore or KnownPeers(str(tmp_path / "romeo-peers")), clock, romeoPolicy)
    responder = StreamAdapter(
        E2EStream(RESPONDER, JULIET + "/balcony", ROMEO + "/orchard", mode),
        presented, romeo.fingerprint, KnownPeers(str(tmp_path / "juliet-peers")), clock)
    client, server, pump = connectedServerAndClient(lambda: responder, lambda: initiator,
                                                    clock=clock)
    pump.flush()
    return initiator, responder, pump


def kinds(events):
    return [type(e).__name__ for e in events]


def test_xep0246_over_tls_in_memory_xmpp_mode(ids, tmp_path):
    romeo, juliet = ids["romeo"], ids["juliet"]
    i, r, pump = streamPair(ids, tmp_path)
    assert kinds(i.events) == ["StartTLS", "Accept", "Established"]
    assert kinds(r.events) == ["StartTLS", "Accept", "Established"]
    assert i.events[1].fingerprint == juliet.fingerprint
    assert r.events[1].fingerprint == romeo.fingerprint
    assert i.events[2] == r.events[2] == Established(MODE_XMPP)
    assert KnownPeers(str(tmp_path / "romeo-peers")).lookup(JULIET) == {juliet.fingerprint}

    # in clear: the headers and STARTTLS only
    clear = i.raw[:i.raw.index(b"<starttls xmlns='%s'/>" % NS_TLS.encode()) + 50]
    assert clear.startswith(b"<?xml version='1.0'?><stream:stream")

    message = domish.Element(("jabber:client", "message"))
    message.addElement("body", content="secret: the balcony at midnight")
    i.perform(i.machine.sendStanza(message))
    pump.flush()
    got = r.events[-1]
    assert isinstance(got, Stanza)
    assert str(got.element.body) == "secret: the balcony at midnight"
    assert b"balcony at midnight" not in i.raw  # ciphertext on the bytestream

    i.perform(i.machine.close())
    pump.flush()
    assert i.events[-1] == Closed() and r.events[-1] == Closed()


def test_xep0246_over_tls_in_memory_bytes_mode(ids, tmp_path):
    i, r, pump = streamPair(ids, tmp_path, mode=MODE_BYTES)
    assert i.events[-1] == Established(MODE_BYTES)
    assert r.events[-1] == Established(MODE_BYTES)
    payload = os.urandom(200_000) + b"<plaintext marker>"
    i.send(payload)
    pump.flush()
    received = b"".join(e.data for e in r.events if isinstance(e, Data))
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert b"<plaintext marker>" not in i.raw


def test_xep0246_man_in_the_middle_refused(ids, tmp_path):
    juliet, mallory = ids["juliet"], ids["mallory"]
    i, r, pump = streamPair(ids, tmp_path, julietIdentity=ids["mallory"])
    refusal = i.events[1]
    assert isinstance(refusal, Refuse)
    assert mallory.fingerprint in refusal.reason and juliet.fingerprint in refusal.reason
    assert isinstance(i.events[-1], Failed) and i.events[-1].reason == refusal.reason
    assert not any(isinstance(e, Established) for e in i.events + r.events)
    # Juliet's side (here Mallory's) sees the bytestream end under it
    assert isinstance(r.events[-1], Failed)
    assert "ended during e2e negotiation" in r.events[-1].reason


def test_xep0246_pinned_peer_with_a_new_key_refused(ids, tmp_path):
    store = KnownPeers(str(tmp_path / "romeo-peers"))
    store.trust(JULIET, ids["mallory"].fingerprint)  # an old key, say
    i, r, pump = streamPair(ids, tmp_path, romeoStore=store)
    refusal = i.events[1]
    assert isinstance(refusal, Refuse) and "NOT the pinned one" in refusal.reason
    assert ids["juliet"].fingerprint in refusal.reason
    assert ids["mallory"].fingerprint in refusal.reason
    assert not any(isinstance(e, Established) for e in i.events)


# --- 3. one end driven by Python's ssl module -----------------------------------


def _pem(tmp_path, name, identity):
    path = tmp_path / name
    path.write_bytes(identity.toPEM())
    return str(path)


def test_python_ssl_client_against_our_xep0246_responder(ids, tmp_path):
    """
    The initiator here is not this project's code: Python's ssl module over
    MemoryBIOs, speaking XEP-0246 from literal strings.  Our responder is an
    E2EStream with the TLS context of bytestreamd.e2e.tls.
    """
    from OpenSSL import SSL
    romeo, juliet = ids["romeo"], ids["juliet"]
    responder = E2EStream(RESPONDER, JULIET, ROMEO, MODE_XMPP, newId=lambda: "s1")
    responder.start()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # checked by fingerprint below
    context.load_cert_chain(_pem(tmp_path, "romeo.pem", romeo))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_side=False)
    server: Optional[SSL.Connection] = None
    received = b""

    def toResponder(data):
        nonlocal server, received
        outputs = responder.dataReceived(data)
        for output in outputs:
            if isinstance(output, Send):
                if server is None:
                    received += output.data
                else:
                    server.sendall(output.data)
            elif isinstance(output, StartTLS):
                server = SSL.Connection(makeContext(juliet), None)
                server.set_accept_state()
        return outputs

    header = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              "xmlns:stream='http://etherx.jabber.org/streams' "
              "from='%s' to='%s' version='1.0'>" % (ROMEO, JULIET)).encode()
    toResponder(header)
    assert b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>" in received
    toResponder(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert received.endswith(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert server is not None

    def shuttle():
        for _ in range(20):
            try:
                client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            if outgoing.pending:
                server.bio_write(outgoing.read())
            try:
                server.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                incoming.write(server.bio_read(65536))
            except SSL.WantReadError:
                pass

    shuttle()
    # both ends see the other's certificate, by fingerprint
    seen = hashlib.sha256(client.getpeercert(binary_form=True)).hexdigest()
    assert seen.upper() == juliet.fingerprint.replace(":", "")
    assert decide(TOFU, ROMEO, server.get_peer_certificate().to_cryptography(),
                  romeo.fingerprint, KnownPeers(str(tmp_path / "k"))).fingerprint \
        == romeo.fingerprint
    assert responder.tlsEstablished() == []

    def clientSends(data):
        client.write(data)
        server.bio_write(outgoing.read())
        plain = b""
        while True:
            try:
                plain += server.recv(65536)
            except SSL.WantReadError:
                break
        return toResponder(plain)

    def clientReads():
        incoming.write(server.bio_read(65536))
        plain = b""
        while True:
            try:
                plain += client.read(65536)
            except ssl.SSLWantReadError:
                return plain

    out = clientSends(header)
    assert kinds(out) == ["Send", "Send", "Established"]
    answer = clientReads()
    assert b"from='%s'" % JULIET.encode() in answer
    assert answer.endswith(b"<stream:features/>")
    out = clientSends(b"<message to='%s'><body>from another stack</body></message>"
                      % JULIET.encode())
    assert kinds(out) == ["Stanza"] and str(out[0].element.body) == "from another stack"
    for output in responder.sendStanza(out[0].element):  # echo it back
        server.sendall(output.data)
    assert b"<body>from another stack</body>" in clientReads()
    out = clientSends(b"</stream:stream>")
    assert kinds(out) == ["Send", "Closed"]  # its answer, already sent by toResponder
    assert clientReads() == b"</stream:stream>"
