"""
The link lifecycle machine (bytestreamd.links.machine) as a table: every
phase is left by some input, the end of a GOOD link is delegated, and a
link that has ended ignores everything but a stream nobody wants.
"""

from twisted.trial.unittest import SynchronousTestCase

from bytestreamd.links import machine as m


def run(direction, *inputs):
    machine = m.LinkMachine(direction)
    outputs = []
    for i in inputs:
        outputs.append(machine.feed(i))
    return machine, outputs


class LinkMachineTests(SynchronousTestCase):
    def test_outgoingToGoodAndItsEnd(self):
        machine, outs = run("out", m.PROGRESS, m.ESTABLISHED, m.FEATURES_KNOWN,
                            m.CLOSE_REQUESTED, m.REMOTE_ENDED)
        self.assertEqual(outs, [(m.EMIT_PROGRESS,), (m.ASK_FEATURES,), (m.START_GOOD,),
                                (m.REQUEST_CLOSE,), (m.EMIT_END, m.FINISH)])
        self.assertTrue(machine.done)

    def test_goodDelegatesEverythingAboutItsEnd(self):
        machine, outs = run("out", m.ESTABLISHED, m.FEATURES_KNOWN, m.PEER_GONE,
                            m.ATTACH_EXPIRED, m.CLOSE_REQUESTED)
        self.assertEqual(outs[2:], [(m.DELEGATE_PEER_GONE,), (m.FAIL_UNATTACHED,),
                                    (m.REQUEST_CLOSE,)])
        self.assertEqual(machine.phase, m.GOOD)

    def test_closeWhileNegotiatingCancelsThenClos(self):
        machine, outs = run("out", m.CLOSE_REQUESTED, m.CANCELLED)
        self.assertEqual(outs, [(m.CANCEL_NEGOTIATION,),
                                (m.EMIT_CLOS_LOCAL, m.ABORT_LOCAL, m.FINISH)])

    def test_cancelledWithoutCloseIsFinalBad(self):
        _, outs = run("out", m.CANCELLED)
        self.assertEqual(outs, [(m.EMIT_BAD_CANCELLED, m.ABORT_LOCAL, m.FINISH)])

    def test_closeWhileEstablishingEndsUnconfirmedAtFeatures(self):
        machine, outs = run("out", m.ESTABLISHED, m.CLOSE_REQUESTED, m.FEATURES_KNOWN)
        self.assertEqual(outs[1:], [(), (m.ABORT_STREAM, m.EMIT_CLOS_UNCONFIRMED,
                                         m.ABORT_LOCAL, m.FINISH)])
        self.assertTrue(machine.done)

    def test_incoming(self):
        machine, outs = run("in", m.ACCEPTED, m.FAILED)
        self.assertEqual(outs, [(m.SHOW_INIT,), (m.EMIT_FINAL_BAD, m.ABORT_LOCAL, m.FINISH)])
        _, outs = run("in", m.CLOSE_REQUESTED)
        self.assertEqual(outs, [(m.REJECT_OFFER, m.FINISH)])
        _, outs = run("in", m.SERVICE_CONNECTING, m.CLOSE_REQUESTED)
        self.assertEqual(outs[1], (m.EMIT_CLOS_LOCAL, m.FINISH))

    def test_doneIgnoresAllButALateStream(self):
        machine, _ = run("out", m.FAILED)
        for i in (m.PROGRESS, m.FAILED, m.CANCELLED, m.CLOSE_REQUESTED, m.PEER_GONE,
                  m.REMOTE_ENDED, m.FORGOTTEN, m.FEATURES_KNOWN):
            self.assertEqual(machine.feed(i), ())
        self.assertEqual(machine.feed(m.ESTABLISHED), (m.ABORT_STREAM,))

    def test_everyPhaseButDoneCanEnd(self):
        phases = {phase for phase, _ in m.TABLE} - {m.DONE}
        for phase in phases:
            self.assertIn((phase, m.FORGOTTEN), m.TABLE, phase)
            nxt, outs = m.TABLE[(phase, m.FORGOTTEN)]
            self.assertEqual(nxt, m.DONE)
            self.assertIn(m.FINISH, outs)

    def test_peerGoneBeforeGoodIsErr(self):
        _, outs = run("out", m.ESTABLISHED, m.PEER_GONE)
        self.assertEqual(outs[1], (m.EMIT_ERR, m.ABORT_LOCAL, m.ABORT_STREAM, m.FINISH))
        _, outs = run("out", m.PEER_GONE)
        self.assertEqual(outs, [()])  # still negotiating: the negotiation's timers end it
