"""
Fakes shared by the unit tests, each standing for an interface of
:mod:`bytestreamd.interfaces` and checked against it with ``verifyObject``
(``test_fakes.py``), so a fake cannot drift from the seam it stands for.
"""

from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from bytestreamd.interfaces import IBytestream


@implementer(IBytestream)
class FakeStream:
    """A recording IBytestream ."""

    method = "ibb"
    sid = "sid-1"
    sessionId = "sid-1"
    peerJID = JID("bob@example.org/daemon")
    weAreInitiator = True
    bytesSent = 0
    bytesReceived = 0

    def __init__(self):
        self.written = []
        self.closed = False
        self.aborted = False
        self.producer = None
        self.protocol = None
        self.paused = False

    @property
    def connected(self):
        return not (self.closed or self.aborted)

    @property
    def disconnecting(self):
        return self.closed or self.aborted

    def write(self, data):
        self.written.append(data)

    def writeSequence(self, seq):
        self.written.extend(seq)

    def loseConnection(self):
        self.closed = True

    def abortConnection(self):
        self.aborted = True

    def getPeer(self):
        return None

    def getHost(self):
        return None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def attachProtocol(self, protocol):
        self.protocol = protocol
        protocol.makeConnection(self)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        pass

    def startTLS(self, contextFactory, normal=True):
        raise NotImplementedError("no TLS on a fake stream")

    def getPeerCertificate(self):
        return None
