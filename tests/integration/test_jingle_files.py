"""
XEP-0234 between two real daemons through a real Prosody: ``bytestreamctl
send`` and ``receive`` (subprocesses, as a user runs them) move 32 MiB both
ways over each Jingle transport, and the file is checked on arrival (size,
sha256, the MD5 the offer carried, the daemon's verdict on the checksum).
Both daemons advertise Jingle and the file-transfer application, so the
default ``[links] negotiation = jingle, si`` picks Jingle.
"""

from __future__ import annotations

import os

import pytest

from .harness.flows import MiB
from .harness.transfer import sha256File, writeRandomFile
from .test_file_transfer import Done, _files, ctl

SIZE = 32 * MiB


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["ibb", "s5b"])
def test_32MiB_both_ways_over_jingle(daemons, tmp_path, method):
    alice = daemons("alice", accept="bob@localhost")
    bob = daemons("bob", accept="alice@localhost")
    for sender, receiver, name in ((alice, bob, "there"), (bob, alice, "back")):
        src = str(tmp_path / ("%s-%s.bin" % (name, method)))
        digest = writeRandomFile(src, SIZE)
        outDir = str(tmp_path / ("in-" + name))
        os.mkdir(outDir)
        r, rOut = ctl(receiver, tmp_path, "recv-" + name, "receive", "--dir", outDir,
                      "--from", sender.bareJID, "--max-wait", "60", "--json")
        s, sOut = ctl(sender, tmp_path, "send-" + name, "send", src, receiver.jid,
                      "--methods", method, "--json")
        sent, got = Done(s, sOut, 240), Done(r, rOut, 240)
        assert sent.code == 0 and got.code == 0, (sent, got)
        final = os.path.join(outDir, os.path.basename(src))
        assert _files(outDir) == [os.path.basename(src)]
        assert os.path.getsize(final) == SIZE
        assert sha256File(final) == digest
        sj, rj = sent.json(), got.json()
        assert (sj["negotiation"], sj["method"], sj["sent"]) == ("jingle", method, SIZE), sj
        assert rj["negotiation"] == "jingle", rj
        assert rj["md5"] == sj["md5"] and "md5" in rj["checked-with"], rj
        assert rj["sha256"] == digest, rj
        os.unlink(src)
        os.unlink(final)
