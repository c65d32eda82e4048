"""
File transfer, XEP-0096 (Stream Initiation) or XEP-0234 (Jingle), which
the daemon chooses from the peer's disco (``--negotiation`` overrides):
``send`` offers a file and sends the range the receiver asks for;
``receive`` accepts the next file offer and saves it under a safe name,
checking the size and every digest it is given -- the MD5 of an SI offer,
the SHA-256 of a Jingle offer, or the SHA-256 the daemon reports on the
link's ``CLOS`` when the sender sent it after the data (XEP-0234 checksum)
-- optionally resuming a partial file.  The bytes move in
:mod:`bytestreamd.ctl.transfer`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, List, Optional, Tuple

from bytestreamd.control.grammar import formatValue
from bytestreamd.ctl.client import (EXIT_OK, EXIT_USAGE, ControlConnection, CtlError, Event,
                                    deadlineAfter, listLinks, nextOffer, peerMatches, waitGood)
from bytestreamd.ctl.commands import methodPairs, openLine
from bytestreamd.ctl.link import connectLink, linkSocket
from bytestreamd.ctl.output import Console, ProgressBar, printJSON
from bytestreamd.ctl.transfer import Receiver, Sender

#: The SI profile of XEP-0096 file transfer, as OFFER events name it.
FILE_TRANSFER = "http://jabber.org/protocol/si/profile/file-transfer"
#: Longest name (in UTF-8 bytes) ``receive`` writes; leaves room for the
#: temporary ``.NAME.part`` within the usual 255-byte limit.
MAX_NAME = 240


class Digests:
    """MD5 (what XEP-0096 offers carry) and SHA-256 (XEP-0234, XEP-0300) of
    the same bytes, fed once."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        self.sha256.update(data)


def _hashInto(h: Any, f: BinaryIO) -> None:
    """Feed the rest of ``f`` to the hash ``h``."""
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)


def _cannotRead(path: str, exc: OSError) -> CtlError:
    return CtlError("cannot read %s: %s" % (path, exc.strerror or exc), EXIT_USAGE)


@dataclass
class LocalFile:
    """What ``send`` offers: the XEP-0096 attributes of one regular file."""

    path: str
    name: str
    size: int
    date: str
    md5: Optional[str]
    sha256: Optional[str] = None

    @classmethod
    def inspect(cls, path: str, withHash: bool = True) -> "LocalFile":
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _cannotRead(path, exc)
        if not stat.S_ISREG(st.st_mode):
            raise CtlError("%s is not a regular file (its size must be known to offer it)"
                           % path, EXIT_USAGE)
        name = os.path.basename(os.path.normpath(path))
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
        if not withHash:
            return cls(path, name, st.st_size, date, None)
        h = Digests()
        try:
            with open(path, "rb") as f:
                _hashInto(h, f)
        except OSError as exc:
            raise _cannotRead(path, exc)
        return cls(path, name, st.st_size, date, h.md5.hexdigest(), h.sha256.hexdigest())


def safeFileName(offered: Optional[str]) -> Optional[str]:
    """
    The name a received file may have in the target directory: the last
    path component only (``/`` and ``\\`` both count), without control
    characters or leading dots (no hidden files, no ``..``), at most
    :data:`MAX_NAME` bytes.  ``None`` when nothing usable is left.
    """
    if not offered:
        return None
    name = offered.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ord(ch) >= 0x20 and not 0x7F <= ord(ch) < 0xA0)
    name = name.strip().lstrip(".").strip()
    encoded = name.encode("utf-8")
    if len(encoded) > MAX_NAME:
        name = encoded[:MAX_NAME].decode("utf-8", "ignore").rstrip()
    return name or None


# --- send ----------------------------------------------------------------------


def _sendCommand(jid: str, local: LocalFile, args: argparse.Namespace) -> str:
    return openLine(jid, [
        ("profile", "file"), ("name", local.name), ("size", str(local.size)),
        ("hash", local.md5), ("date", local.date), ("desc", args.desc), ("range", "yes"),
        ("negotiation", getattr(args, "negotiation", None)),
    ] + methodPairs(args))


def _rangeOf(good: Event, size: int) -> Tuple[Optional[int], int]:
    """(offset, count) the GOOD event asks for; offset None if impossible."""
    offset, length = good.options.get("offset", "0"), good.options.get("length")
    if not offset.isdigit() or (length is not None and not length.isdigit()):
        return None, 0
    start = int(offset)
    if start > size:
        return None, 0
    count = size - start if length is None else min(int(length), size - start)
    return start, count


def cmdSend(control: ControlConnection, args: argparse.Namespace, console: Console) -> int:
    local = LocalFile.inspect(args.file, withHash=not args.no_hash)
    try:
        fd = os.open(local.path, os.O_RDONLY)
    except OSError as exc:
        raise _cannotRead(local.path, exc)
    try:
        linkId, path = linkSocket(control.check(_sendCommand(args.jid, local, args)))
        good = waitGood(control, linkId, say=console.say if args.verbose else None)
        assert good is not None  # no deadline
        offset, count = _rangeOf(good, local.size)
        if offset is None:
            control.command("CLOSE " + formatValue(linkId))
            raise CtlError("link %s: the receiver asked for a range outside the file "
                           "(%s)" % (linkId, good.text))
        if args.verbose and (offset or count != local.size):
            console.say("the receiver asked for %d bytes from offset %d" % (count, offset))
        link = connectLink(control, linkId, path, args.linger)
        try:
            progress = ProgressBar(console.err, local.name, local.size, offset)
            sender = Sender(control, linkId, link, progress, fd, offset, count, args.linger)
            closed = sender.run()
        finally:
            link.close()
        if not sender.complete:
            raise CtlError("link %s ended (%s) after %d of %d bytes were sent" % (
                linkId, closed.text, sender.written, sender.end))
    finally:
        os.close(fd)
    if args.json:
        printJSON(console, {
            "link": linkId, "file": local.path, "name": local.name, "size": local.size,
            "md5": local.md5, "sha256": local.sha256, "offset": offset, "length": count,
            "method": good.options.get("method"),
            "negotiation": good.options.get("negotiation", "si"), "peer": args.jid,
            "sent": sender.sent, "seconds": round(progress.seconds, 3)})
    elif progress.enabled or args.verbose:
        console.say("sent %s (%d bytes%s) to %s via %s" % (
            local.name, sender.sent, " from offset %d" % offset if offset else "", args.jid,
            good.options.get("method", closed.options.get("method", "?"))))
    return EXIT_OK


# --- receive -------------------------------------------------------------------


@dataclass
class _Offer:
    """A file offer as ``receive`` sees it."""

    id: str
    sender: str
    name: str
    size: int
    md5: Optional[str]
    ranged: bool
    sha256: Optional[str] = None


def _nextFileOffer(control: ControlConnection,
                   args: argparse.Namespace) -> Tuple[Event, Optional[_Offer]]:
    """The next file offer from ``--from``; ``None`` for its details when they are unusable."""
    deadline = deadlineAfter(args.max_wait)

    def matches(event: Event) -> bool:
        return (event.options.get("profile") == FILE_TRANSFER
                and peerMatches(event.options.get("from", ""), args.peer))

    # Offers that came before WATCH sent no event to us: LINKS shows them.
    event = nextOffer(control, matches, deadline, _pendingOffers(control))
    if event is None:
        raise CtlError("no file offer within %g s" % args.max_wait)
    size = event.options.get("size", "")
    name = safeFileName(event.options.get("name"))
    if name is None or not (size.isascii() and size.isdigit()):
        return event, None
    md5 = event.options.get("hash")
    sha256 = event.options.get("sha256")
    return event, _Offer(event.subject or "", event.options.get("from", ""), name, int(size),
                         md5.lower() if md5 else None, event.options.get("range") == "yes",
                         sha256.lower() if sha256 else None)


def _pendingOffers(control: ControlConnection) -> List[Event]:
    """Incoming offers still waiting, from ``LINKS``, as OFFER events."""
    offers = []
    for row in listLinks(control):
        if row.get("state") != "OFFER" or row.get("direction") != "in" or not row.get("link"):
            continue
        options = {"from": row.get("peer", "")}
        options.update((k, v) for k, v in row.items() if k in (
            "profile", "service", "name", "size", "hash", "range", "sha256"))
        offers.append(Event("OFFER", [row["link"]], options, "OFFER %s (pending)" % row["link"]))
    return offers


def _refuse(control: ControlConnection, offerId: str, reason: str, message: str) -> CtlError:
    control.command("REJECT %s reason=%s" % (formatValue(offerId), formatValue(reason)))
    return CtlError(message)


def cmdReceive(control: ControlConnection, args: argparse.Namespace,
               console: Console) -> int:
    directory = args.dir or "."
    if not os.path.isdir(directory):
        raise CtlError("--dir %s is not a directory" % directory, EXIT_USAGE)
    control.check("WATCH")
    event, offer = _nextFileOffer(control, args)
    if offer is None:
        raise _refuse(control, event.subject or "", "unusable file name or size",
                      "refused offer %s: unusable file name or size (%s)" % (
                          event.subject, event.text))
    final = os.path.join(directory, offer.name)
    temp = os.path.join(directory, "." + offer.name + ".part")
    if os.path.lexists(final) and not args.overwrite:
        raise _refuse(control, offer.id, "file exists",
                      "refused %s from %s: %s exists (use --overwrite)" % (
                          offer.name, offer.sender, final))
    have = 0
    if args.resume and offer.ranged and os.path.isfile(temp):
        partial = os.path.getsize(temp)
        if 0 < partial <= offer.size:
            have = partial
    digests = Digests()
    try:
        out = open(temp, "r+b" if have else "wb")
    except OSError as exc:
        raise _refuse(control, offer.id, "cannot write the file",
                      "cannot write %s: %s" % (temp, exc.strerror or exc))
    keep = bool(have)  # a partial file from an earlier run stays until replaced
    try:
        if have:
            _hashInto(digests, out)
            out.seek(have)
            out.truncate()
        if args.verbose:
            console.say("accepting %s (%d bytes) from %s%s" % (
                offer.name, offer.size, offer.sender,
                ", resuming at %d" % have if have else ""))
        command = "ACCEPT " + formatValue(offer.id) + (" offset=%d" % have if have else "")
        linkId, path = linkSocket(control.check(command), default=offer.id)
        keep = args.resume
        link = connectLink(control, linkId, path, args.linger)
        try:
            progress = ProgressBar(console.err, offer.name, offer.size, have)
            receiver = Receiver(control, linkId, link, progress, out, digests, have,
                                offer.size, args.linger)
            closed = receiver.run()
        finally:
            link.close()
        if receiver.have != offer.size:
            raise CtlError("%s is incomplete: received %d of %d bytes" % (
                offer.name, receiver.have, offer.size))
        digest, sha256 = digests.md5.hexdigest(), digests.sha256.hexdigest()
        checked = _check(offer, closed, digest, sha256, whole=have == 0)
        if checked is not None:
            keep = False  # wrong bytes: nothing to resume from
            raise CtlError("%s is corrupt: %s" % (offer.name, checked))
        out.flush()
        os.fsync(out.fileno())
        out.close()
        if os.path.lexists(final) and not args.overwrite:
            raise CtlError("%s appeared while receiving; not overwritten (use --overwrite)"
                           % final)
        os.replace(temp, final)
    except BaseException as exc:
        out.close()
        if keep and os.path.exists(temp) and os.path.getsize(temp):
            if isinstance(exc, CtlError):
                exc.message += " (partial file kept as %s for --resume)" % temp
        else:
            _unlink(temp)
        raise
    if args.json:
        report = {
            "file": final, "name": offer.name, "size": offer.size, "from": offer.sender,
            "md5": digest, "hash-checked": bool(_checkedWith(offer, closed)), "offset": have,
            "link": linkId}
        if closed.options.get("negotiation") == "jingle" or "sha256" in _checkedWith(
                offer, closed):
            report.update({"sha256": sha256, "checked-with": _checkedWith(offer, closed),
                           "negotiation": closed.options.get("negotiation", "si")})
        printJSON(console, report)
    else:
        console.out.write(final + "\n")
        console.out.flush()
    return EXIT_OK


def _reportedSha256(closed: Event) -> Optional[str]:
    """The SHA-256 the daemon reports on CLOS: the sender's XEP-0234 checksum
    after the data, when one came (``sha256=`` with ``verified=``)."""
    value = closed.options.get("sha256")
    return value.lower() if value else None


def _checkedWith(offer: _Offer, closed: Event) -> List[str]:
    """The digests the received file was checked against (``md5``, ``sha256``)."""
    names = []
    if offer.md5 is not None:
        names.append("md5")
    if offer.sha256 is not None or (_reportedSha256(closed) is not None
                                    and closed.options.get("verified") == "yes"):
        names.append("sha256")
    return names


def _check(offer: _Offer, closed: Event, md5: str, sha256: str,
           whole: bool = True) -> Optional[str]:
    """Why the bytes are wrong, or None: against the offer's MD5 and SHA-256,
    and the daemon's verdict on the sender's checksum.  The daemon's
    ``sha256=`` is that of the bytes that crossed: compared with ours only
    when they are the whole file (not after ``--resume``)."""
    if offer.md5 is not None and md5 != offer.md5:
        return "md5 %s, the offer said %s" % (md5, offer.md5)
    if offer.sha256 is not None and sha256 != offer.sha256:
        return "sha256 %s, the offer said %s" % (sha256, offer.sha256)
    if closed.options.get("verified") == "no":
        return "the sender's checksum does not match (%s)" % closed.text
    reported = _reportedSha256(closed)
    if (whole and reported is not None and closed.options.get("verified") == "yes"
            and reported != sha256):
        return "sha256 %s, the daemon checked %s" % (sha256, reported)
    return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
