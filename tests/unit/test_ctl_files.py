"""
``bytestreamctl send`` and ``receive`` against the scripted control server
of test_ctl.py: the commands they send, the bytes that cross the fake link
socket, what is left in the target directory, exit codes and messages.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

from bytestreamd.control.grammar import formatValue, parseCommand
from bytestreamd.ctl import run
from bytestreamd.ctl.files import FILE_TRANSFER, safeFileName
from bytestreamd.ctl.output import Console, ProgressBar
from tests.unit.test_ctl import FakeLink, daemon, runCtl  # noqa: F401  (fixture)

FT = FILE_TRANSFER
DATA = bytes(range(256)) * 40 + b"tail"  # 10244 bytes
MD5 = hashlib.md5(DATA).hexdigest()


def writeFile(tmp_path, name="data.bin", data=DATA):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def offerLine(offerId="6", name="data.bin", size=len(DATA), md5=MD5, ranged=True,
              sender="alice@example.org/daemon"):
    line = "650 OFFER %s from=%s profile=%s name=%s size=%d" % (
        offerId, sender, FT, formatValue(name), size)
    if md5:
        line += " hash=" + md5
    if ranged:
        line += " range=yes"
    return line


# --- send ------------------------------------------------------------------------


def sendingLink(daemon, tmp_path, good="650 LINK 1 GOOD method=ibb", end="650 LINK 1 CLOS"):
    """A link that reads everything, then ends with ``end``."""
    def behaviour(sock):
        link.readAll(sock)
        sock.close()
        daemon.conns[-1].send(end)
    link = FakeLink(str(tmp_path), "1", behaviour)
    daemon.reply("OPEN", "250 link=1 socket=%s" % link.path,
                 "650 LINK 1 INIT method=ibb", good)
    daemon.reply("CLOSE", "250 OK")
    return link


def test_sendOffersTheFileAndSendsIt(daemon, tmp_path):
    path = writeFile(tmp_path)
    os.utime(path, (0, 86400 + 3661))
    link = sendingLink(daemon, tmp_path)
    result = runCtl(daemon, ["send", path, "bob@example.org/d", "--desc", "the data",
                             "--methods", "ibb", "--json"])
    link.join()
    assert result.code == 0, result.err
    assert link.received == DATA
    command = parseCommand(daemon.lines[0])
    assert command.verb == "OPEN" and command.args == ["bob@example.org/d"]
    assert command.options == {
        "profile": "file", "name": "data.bin", "size": str(len(DATA)), "hash": MD5,
        "date": "1970-01-02T01:01:01Z", "desc": "the data", "range": "yes", "methods": "ibb"}
    out = json.loads(result.out)
    assert (out["link"], out["name"], out["size"], out["md5"], out["offset"],
            out["sent"], out["method"]) == ("1", "data.bin", len(DATA), MD5, 0, len(DATA),
                                            "ibb")
    assert result.err == ""  # not a terminal: no bar


def test_sendStartsAtTheAskedOffset(daemon, tmp_path):
    path = writeFile(tmp_path)
    link = sendingLink(daemon, tmp_path, good="650 LINK 1 GOOD method=s5b offset=10000")
    result = runCtl(daemon, ["send", path, "bob@example.org/d", "--no-hash", "--json"])
    link.join()
    assert result.code == 0, result.err
    assert link.received == DATA[10000:]
    assert "hash" not in parseCommand(daemon.lines[0]).options
    out = json.loads(result.out)
    assert (out["offset"], out["length"], out["sent"], out["md5"]) == (
        10000, len(DATA) - 10000, len(DATA) - 10000, None)


def test_sendRangeWithLength(daemon, tmp_path):
    path = writeFile(tmp_path)
    link = sendingLink(daemon, tmp_path, good="650 LINK 1 GOOD offset=5 length=7")
    result = runCtl(daemon, ["send", path, "bob@example.org/d"])
    link.join()
    assert result.code == 0, result.err
    assert link.received == DATA[5:12]


def test_sendRangeBeyondTheFileIsRefused(daemon, tmp_path):
    path = writeFile(tmp_path)
    daemon.reply("OPEN", "250 link=1 socket=/nowhere", "650 LINK 1 GOOD offset=99999")
    daemon.reply("CLOSE", "250 OK")
    result = runCtl(daemon, ["send", path, "bob@example.org/d"])
    assert result.code == 1
    assert "outside the file" in result.err
    assert daemon.lines[-1] == "CLOSE 1"


def test_sendRefused(daemon, tmp_path):
    path = writeFile(tmp_path)
    daemon.reply("OPEN", "250 link=1 socket=/nowhere",
                 "650 LINK 1 INIT method=ibb",
                 '650 LINK 1 BAD reason="peer refused the offer: forbidden: file exists" '
                 "final=yes")
    result = runCtl(daemon, ["send", path, "bob@example.org/d"])
    assert result.code == 1
    assert result.err == ("bytestreamctl: link 1 BAD: peer refused the offer: "
                          "forbidden: file exists\n")


def test_sendLinkFails(daemon, tmp_path):
    path = writeFile(tmp_path)
    link = sendingLink(daemon, tmp_path, end='650 LINK 1 ERR reason="ibb: closed by peer"')
    result = runCtl(daemon, ["send", path, "bob@example.org/d"])
    link.join()
    assert result.code == 1
    assert result.err == "bytestreamctl: link 1 ERR: ibb: closed by peer\n"


def test_sendEndsEarly(daemon, tmp_path):
    """CLOS before every byte was written is not a success."""
    path = writeFile(tmp_path, data=DATA * 200)  # more than the socket buffers

    def behaviour(sock):
        sock.recv(10)
        sock.close()
        daemon.conns[-1].send("650 LINK 1 CLOS")
    link = FakeLink(str(tmp_path), "1", behaviour)
    daemon.reply("OPEN", "250 link=1 socket=%s" % link.path, "650 LINK 1 GOOD")
    result = runCtl(daemon, ["send", path, "bob@example.org/d"])
    link.join()
    assert result.code == 1
    assert "of %d bytes were sent" % (len(DATA) * 200) in result.err


def test_sendMissingOrSpecialFile(daemon, tmp_path):
    for path, words in ((str(tmp_path / "nope"), "cannot read"),
                        (str(tmp_path), "not a regular file")):
        result = runCtl(daemon, ["send", path, "bob@example.org/d"])
        assert result.code == 2
        assert words in result.err
    assert daemon.lines == []


def test_sendOpenError(daemon, tmp_path):
    path = writeFile(tmp_path)
    daemon.reply("OPEN", "550 not connected to the XMPP server")
    result = runCtl(daemon, ["send", path, "bob@example.org/d"])
    assert result.code == 1
    assert result.err == "bytestreamctl: 550 not connected to the XMPP server\n"


# --- receive ---------------------------------------------------------------------


def offering(daemon, tmp_path, *offers, data=DATA, end="650 LINK 6 CLOS", pending=()):
    """WATCH brings ``offers``; ACCEPT gets a link that sends ``data``, then ``end``."""
    def behaviour(sock):
        sock.sendall(data)
        sock.close()
        try:
            daemon.conns[-1].send(end)
        except OSError:
            pass  # the client may already have given up (e.g. too much data)
    link = FakeLink(str(tmp_path), "6", behaviour)
    daemon.reply("WATCH", "250 OK", *offers)
    daemon.reply("LINKS", *(list(pending) + ["250 OK"]))
    daemon.reply("ACCEPT", "250 link=6 socket=%s" % link.path, "650 LINK 6 GOOD method=ibb")
    daemon.reply("REJECT", "250 OK")
    return link


def inDir(tmp_path):
    path = tmp_path / "in"
    path.mkdir()
    return path


def test_receiveSavesTheFile(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path,
                    "650 OFFER 4 from=alice@example.org/daemon service=ssh",
                    offerLine("5", sender="mallory@example.org/x"),
                    offerLine("6"))
    result = runCtl(daemon, ["receive", "--dir", str(out), "--from", "alice@example.org"])
    link.join()
    assert result.code == 0, result.err
    assert daemon.lines == ["WATCH", "LINKS", "ACCEPT 6"]
    assert sorted(os.listdir(out)) == ["data.bin"]
    assert (out / "data.bin").read_bytes() == DATA
    assert result.out == str(out / "data.bin") + "\n"


def test_receiveJSON(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, offerLine("6"))
    result = runCtl(daemon, ["receive", "--dir", str(out), "--json"])
    link.join()
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "file": str(out / "data.bin"), "name": "data.bin", "size": len(DATA),
        "from": "alice@example.org/daemon", "md5": MD5, "hash-checked": True,
        "offset": 0, "link": "6"}


def test_receiveTakesAPendingOffer(daemon, tmp_path):
    """An offer that came before WATCH is found with LINKS."""
    out = inDir(tmp_path)
    pending = ("250-link=6 state=OFFER peer=alice@example.org/daemon method=- direction=in "
               "sent=0 received=0 socket=- profile=%s name=data.bin size=%d hash=%s "
               "range=yes" % (FT, len(DATA), MD5))
    link = offering(daemon, tmp_path, pending=[pending])
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 0, result.err
    assert (out / "data.bin").read_bytes() == DATA


def test_receiveWrongHash(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, offerLine("6", md5="0" * 32))
    result = runCtl(daemon, ["receive", "--dir", str(out), "--resume"])
    link.join()
    assert result.code == 1
    assert "data.bin is corrupt: md5 %s, the offer said %s" % (MD5, "0" * 32) in result.err
    assert os.listdir(out) == []  # even with --resume: wrong bytes are not kept


def test_receiveShortFile(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, offerLine("6"), data=DATA[:1000])
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 1
    assert "data.bin is incomplete: received 1000 of %d bytes" % len(DATA) in result.err
    assert os.listdir(out) == []


def test_receiveShortFileKeptForResume(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, offerLine("6"), data=DATA[:1000])
    result = runCtl(daemon, ["receive", "--dir", str(out), "--resume"])
    link.join()
    assert result.code == 1
    assert "partial file kept as %s" % (out / ".data.bin.part") in result.err
    assert os.listdir(out) == [".data.bin.part"]
    assert (out / ".data.bin.part").read_bytes() == DATA[:1000]


def test_receiveResumes(daemon, tmp_path):
    out = inDir(tmp_path)
    (out / ".data.bin.part").write_bytes(DATA[:1000])
    link = offering(daemon, tmp_path, offerLine("6"), data=DATA[1000:])
    result = runCtl(daemon, ["receive", "--dir", str(out), "--resume", "--json"])
    link.join()
    assert result.code == 0, result.err
    assert daemon.lines[-1] == "ACCEPT 6 offset=1000"
    assert os.listdir(out) == ["data.bin"]
    assert (out / "data.bin").read_bytes() == DATA
    assert json.loads(result.out)["offset"] == 1000


def test_receiveResumeNeedsARange(daemon, tmp_path):
    """No range in the offer: start over, the old partial file is replaced."""
    out = inDir(tmp_path)
    (out / ".data.bin.part").write_bytes(b"junk")
    link = offering(daemon, tmp_path, offerLine("6", ranged=False))
    result = runCtl(daemon, ["receive", "--dir", str(out), "--resume"])
    link.join()
    assert result.code == 0, result.err
    assert daemon.lines[-1] == "ACCEPT 6"
    assert (out / "data.bin").read_bytes() == DATA


def test_receiveWithoutResumeStartsOver(daemon, tmp_path):
    out = inDir(tmp_path)
    (out / ".data.bin.part").write_bytes(DATA[:1000])
    link = offering(daemon, tmp_path, offerLine("6"))
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 0, result.err
    assert daemon.lines[-1] == "ACCEPT 6"
    assert os.listdir(out) == ["data.bin"]


def test_receiveLinkFails(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, offerLine("6"), data=DATA[:100],
                    end='650 LINK 6 ERR reason="s5b: connection reset"')
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 1
    assert result.err == "bytestreamctl: link 6 ERR: s5b: connection reset\n"
    assert os.listdir(out) == []


def test_receiveTooMuch(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, offerLine("6"), data=DATA + b"more")
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 1
    assert "sent more than the %d bytes it offered" % len(DATA) in result.err
    assert os.listdir(out) == []


def test_receiveRefusesToOverwrite(daemon, tmp_path):
    out = inDir(tmp_path)
    (out / "data.bin").write_bytes(b"mine")
    offering(daemon, tmp_path, offerLine("6"))
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    assert result.code == 1
    assert "exists (use --overwrite)" in result.err
    assert parseCommand(daemon.lines[-1]).options == {"reason": "file exists"}
    assert parseCommand(daemon.lines[-1]).args == ["6"]
    assert (out / "data.bin").read_bytes() == b"mine"


def test_receiveOverwrites(daemon, tmp_path):
    out = inDir(tmp_path)
    (out / "data.bin").write_bytes(b"mine")
    link = offering(daemon, tmp_path, offerLine("6"))
    result = runCtl(daemon, ["receive", "--dir", str(out), "--overwrite"])
    link.join()
    assert result.code == 0, result.err
    assert (out / "data.bin").read_bytes() == DATA


def test_receiveSanitizesTheName(daemon, tmp_path):
    out = inDir(tmp_path)
    link = offering(daemon, tmp_path, offerLine("6", name="../../.bashrc"))
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    link.join()
    assert result.code == 0, result.err
    assert os.listdir(out) == ["bashrc"]


def test_receiveRefusesAnUnusableName(daemon, tmp_path):
    out = inDir(tmp_path)
    offering(daemon, tmp_path, offerLine("6", name="../.."))
    result = runCtl(daemon, ["receive", "--dir", str(out)])
    assert result.code == 1
    assert "unusable file name" in result.err
    assert parseCommand(daemon.lines[-1]).verb == "REJECT"
    assert os.listdir(out) == []


def test_receiveGivesUpAndChecksTheDir(daemon, tmp_path):
    daemon.reply("WATCH", "250 OK", "650 OFFER 4 from=alice@example.org/daemon")
    daemon.reply("LINKS", "250 OK")
    result = runCtl(daemon, ["receive", "--dir", str(tmp_path), "--max-wait", "0.2"])
    assert result.code == 1
    assert "no file offer within 0.2 s" in result.err
    result = runCtl(daemon, ["receive", "--dir", str(tmp_path / "nope")])
    assert result.code == 2
    assert "is not a directory" in result.err


# --- pieces -----------------------------------------------------------------------


def test_safeFileName():
    assert safeFileName("report.pdf") == "report.pdf"
    assert safeFileName("a b.txt") == "a b.txt"
    assert safeFileName("/etc/passwd") == "passwd"
    assert safeFileName("..\\..\\windows\\evil.exe") == "evil.exe"
    assert safeFileName("...hidden") == "hidden"
    assert safeFileName("bad\x00\x1b[31mname\x7f") == "bad[31mname"
    assert safeFileName("é" * 200) == "é" * 120
    for bad in (None, "", ".", "..", "dir/", " . ", "\x01\x02"):
        assert safeFileName(bad) is None, bad


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progressBarOnlyOnATerminal():
    now = [100.0]
    tty = FakeTTY()
    bar = ProgressBar(tty, "f.bin", 4 * 1048576, clock=lambda: now[0])
    now[0] = 101.0
    bar.update(1048576)
    bar.update(2 * 1048576)  # too soon: not drawn
    now[0] = 102.0
    bar.update(3 * 1048576)
    bar.finish()
    lines = tty.getvalue().split("\r")
    assert lines[1] == "f.bin  1.0 MiB / 4.0 MiB   25%  1.0 MiB/s"
    assert lines[2].startswith("f.bin  3.0 MiB / 4.0 MiB   75%  1.5 MiB/s")
    assert tty.getvalue().endswith("\n")
    plain = io.StringIO()
    bar = ProgressBar(plain, "f.bin", 10)
    bar.update(5, force=True)
    bar.finish()
    assert plain.getvalue() == ""


def test_helpShowsTheFileOptions(capsys):
    console = Console(0, 1, io.StringIO(), io.StringIO(), {}, 0)
    assert run(["send", "--help"], console) == 0
    text = capsys.readouterr().out
    for option in ("--desc", "--no-hash", "--methods", "--json"):
        assert option in text
    assert run(["receive", "--help"], console) == 0
    text = capsys.readouterr().out
    for option in ("--dir", "--from", "--max-wait", "--overwrite", "--resume", "--json"):
        assert option in text


def test_receiveClosesItsSideOfAHalfClosedLink(daemon, tmp_path):
    """SOCKS5: the peer's EOF comes first; CLOS only once our side is closed too."""
    import socket as socketModule
    out = inDir(tmp_path)

    def behaviour(sock):
        sock.sendall(DATA)
        sock.shutdown(socketModule.SHUT_WR)
        link.readAll(sock)  # returns at the client's EOF (times out without it)
        daemon.conns[-1].send("650 LINK 6 CLOS")
    link = FakeLink(str(tmp_path), "6", behaviour)
    daemon.reply("WATCH", "250 OK", offerLine("6"))
    daemon.reply("LINKS", "250 OK")
    daemon.reply("ACCEPT", "250 link=6 socket=%s" % link.path)
    result = runCtl(daemon, ["receive", "--dir", str(out), "--linger", "10"])
    link.join()
    assert result.code == 0, result.err
    assert (out / "data.bin").read_bytes() == DATA


def test_receiveKeepsThePartialFileWhenAcceptFails(daemon, tmp_path):
    out = inDir(tmp_path)
    (out / ".data.bin.part").write_bytes(DATA[:1000])
    daemon.reply("WATCH", "250 OK", offerLine("6"))
    daemon.reply("LINKS", "250 OK")
    daemon.reply("ACCEPT", "552 no such link or offer: 6")
    result = runCtl(daemon, ["receive", "--dir", str(out), "--resume"])
    assert result.code == 1
    assert "552 no such link or offer: 6" in result.err
    assert (out / ".data.bin.part").read_bytes() == DATA[:1000]
