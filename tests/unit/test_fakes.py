"""
Every fake that stands in for one of the daemon's seams is checked against
the interface it stands for (issue 6, section 2): a fake that drifts from
its interface makes the tests that use it prove nothing about the real
thing.  The real IBB objects are checked against theirs too.
"""

import bytestreamd.links  # noqa: F401  (first: importing bytestreamd.local before it is circular)

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID
from zope.interface.verify import verifyClass, verifyObject

from bytestreamd import ns
from bytestreamd.interfaces import (IBytestream, IControlBackend, IIncomingOffer,
                                    INegotiator, IOfferAcceptor, IStreamMethod,
                                    StreamContext)
from bytestreamd.methods.ibb import IBBMethod
from bytestreamd.methods.ibb_session import (IBBSession, IIBBSession, IIBBSessionLocal,
                                             IIBBSessionOwner)
from bytestreamd.methods.ibb_stream import IBBStream
from tests.unit import (fakes, test_control_protocol, test_file_transfer, test_ibb_session,
                        test_links, test_si_negotiation)


class FakesTests(SynchronousTestCase):
    def test_bytestreams(self):
        for stream in (fakes.FakeStream(), test_si_negotiation.FakeStream("s5b")):
            self.assertTrue(verifyObject(IBytestream, stream))
        # the transport base's own test double
        from tests.unit.test_transport_base import FakeMethodStream
        self.assertTrue(verifyClass(IBytestream, FakeMethodStream))

    def test_streamMethods(self):
        for cls in (test_si_negotiation.FakeMethod, test_si_negotiation.FailingMethod):
            self.assertTrue(verifyObject(IStreamMethod, cls("ibb", ns.NS_IBB)))

    def test_negotiatorsAndOffers(self):
        for module in (test_links, test_file_transfer):
            self.assertTrue(verifyObject(INegotiator, module.FakeSI()))
        self.assertTrue(verifyObject(IIncomingOffer, test_links.FakeOffer("b@x/y")))
        self.assertTrue(verifyObject(IIncomingOffer,
                                     test_file_transfer.RangedOffer("b@x/y")))

    def test_acceptorAndBackend(self):
        self.assertTrue(verifyObject(IOfferAcceptor, test_si_negotiation.FakeAcceptor()))
        self.assertTrue(verifyObject(IControlBackend, test_control_protocol.FakeBackend()))

    def test_ibbSessionFakes(self):
        self.assertTrue(verifyObject(IIBBSessionOwner, test_ibb_session.FakeOwner()))
        self.assertTrue(verifyObject(IIBBSessionLocal, test_ibb_session.FakeLocal()))


class RealIBBTests(SynchronousTestCase):
    """The real objects the fakes above stand beside."""

    def test_ibb(self):
        method = IBBMethod(Clock())
        self.assertTrue(verifyObject(IStreamMethod, method))
        self.assertTrue(verifyObject(IIBBSessionOwner, method))
        ctx = StreamContext("s1", JID("a@x/y"), JID("b@x/y"), True)
        stream = IBBStream(ctx, Clock(), method, "t.", 4096, "iq")
        self.assertTrue(verifyObject(IBytestream, stream))
        self.assertTrue(verifyObject(IIBBSessionLocal, stream))
        self.assertIsInstance(stream.session, IBBSession)
        self.assertTrue(verifyObject(IIBBSession, stream.session))
