"""
``bytestreamctl send``/``receive`` with XEP-0234 (Jingle) file offers, against
the scripted control server of test_ctl.py: the SHA-256 an offer carries is
checked; the daemon's verdict on a checksum sent after the data (``CLOS ...
verified= sha256=``) is honoured; ``--negotiation`` reaches OPEN.
"""

from __future__ import annotations

import hashlib
import json
import os

from bytestreamd.control.grammar import parseCommand
from tests.unit.test_ctl import daemon, runCtl  # noqa: F401  (fixture)
from tests.unit.test_ctl_files import (DATA, inDir, offerLine, offering, sendingLink,
                                       writeFile)

SHA = hashlib.sha256(DATA).hexdigest()


def jingleOffer(sha256=None):
    line = offerLine("6", md5=None)
    return line + (" sha256=" + sha256 if sha256 else "")


def test_offered_sha256_is_checked(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, jingleOffer(SHA),
                    end="650 LINK 6 CLOS negotiation=jingle verified=yes sha256=" + SHA)
    result = runCtl(daemon, ["receive", "--dir", str(out), "--json"])
    link.join()
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["hash-checked"], report["checked-with"], report["sha256"],
            report["negotiation"]) == (True, ["sha256"], SHA, "jingle")
    assert (out / "data.bin").read_bytes() == DATA


def test_wrong_offered_sha256_leaves_nothing(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, jingleOffer("0" * 64))
    result = runCtl(daemon, ["receive", "--dir", str(out), "--resume"])
    link.join()
    assert result.code == 1
    assert "data.bin is corrupt: sha256 %s, the offer said %s" % (SHA, "0" * 64) in result.err
    assert os.listdir(out) == []


def test_checksum_after_the_data_verified_by_the_daemon(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, jingleOffer(),
                    end="650 LINK 6 CLOS negotiation=jingle verified=yes sha256=" + SHA)
    result = runCtl(daemon, ["receive", "--dir", str(out), "--json"])
    link.join()
    assert result.code == 0, result.err
    assert json.loads(result.out)["checked-with"] == ["sha256"]


def test_checksum_mismatch_reported_by_the_daemon(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, jingleOffer(),
                    end="650 LINK 6 CLOS negotiation=jingle verified=no")
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 1
    assert "the sender's checksum does not match" in result.err
    assert os.listdir(out) == []


def test_daemon_digest_disagreeing_with_the_bytes(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, jingleOffer(),
                    end="650 LINK 6 CLOS verified=yes sha256=" + "1" * 64)
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 1
    assert "the daemon checked %s" % ("1" * 64) in result.err


def test_unverified_jingle_file_is_kept_and_said(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, jingleOffer(),
                    end="650 LINK 6 CLOS negotiation=jingle verified=unknown")
    result = runCtl(daemon, ["receive", "--dir", str(out), "--json"])
    link.join()
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["hash-checked"], report["checked-with"], report["sha256"]) == (
        False, [], SHA)


def test_send_passes_negotiation(daemon, tmp_path):
    path = writeFile(tmp_path)
    link = sendingLink(daemon, tmp_path, good="650 LINK 1 GOOD method=ibb negotiation=jingle")
    result = runCtl(daemon, ["send", path, "bob@example.org/d", "--negotiation", "jingle",
                             "--json"])
    link.join()
    assert result.code == 0, result.err
    command = parseCommand(daemon.lines[0])
    assert command.options["negotiation"] == "jingle"
    report = json.loads(result.out)
    assert (report["negotiation"], report["sha256"]) == ("jingle", SHA)


def test_resume_does_not_compare_the_range_digest_with_the_file(daemon, tmp_path):
    """After --resume the daemon's sha256= is that of the range: not ours."""
    out = inDir(tmp_path)
    (out / ".data.bin.part").write_bytes(DATA[:1000])
    rangeSha = hashlib.sha256(DATA[1000:]).hexdigest()
    link = offering(daemon, tmp_path, offerLine("6", md5=None), data=DATA[1000:],
                    end="650 LINK 6 CLOS negotiation=jingle verified=yes sha256=" + rangeSha)
    result = runCtl(daemon, ["receive", "--dir", str(out), "--resume"])
    link.join()
    assert result.code == 0, result.err
    assert (out / "data.bin").read_bytes() == DATA
