"""
XEP-0096 file transfer: ``send`` offers a file and sends the range the
receiver asks for; ``receive`` accepts the next file offer and saves it
under a safe name, checking the size and the offered MD5, optionally
resuming a partial file.  The bytes move in :mod:`bytestreamd.ctl.transfer`.
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
        digest = None
        if withHash:
            h = hashlib.md5()
            try:
                with open(path, "rb") as f:
                    _hashInto(h, f)
            except OSError as exc:
                raise _cannotRead(path, exc)
            digest = h.hexdigest()
        return cls(path, name, st.st_size, date, digest)


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
            "md5": local.md5, "offset": offset, "length": count,
            "method": good.options.get("method"), "peer": args.jid,
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
    return event, _Offer(event.subject or "", event.options.get("from", ""), name, int(size),
                         md5.lower() if md5 else None, event.options.get("range") == "yes")


def _pendingOffers(control: ControlConnection) -> List[Event]:
    """Incoming offers still waiting, from ``LINKS``, as OFFER events."""
    offers = []
    for row in listLinks(control):
        if row.get("state") != "OFFER" or row.get("direction") != "in" or not row.get("link"):
            continue
        options = {"from": row.get("peer", "")}
        options.update((k, v) for k, v in row.items() if k in (
            "profile", "service", "name", "size", "hash", "range"))
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
    md5 = hashlib.md5()
    try:
        out = open(temp, "r+b" if have else "wb")
    except OSError as exc:
        raise _refuse(control, offer.id, "cannot write the file",
                      "cannot write %s: %s" % (temp, exc.strerror or exc))
    keep = bool(have)  # a partial file from an earlier run stays until replaced
    try:
        if have:
            _hashInto(md5, out)
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
            receiver = Receiver(control, linkId, link, progress, out, md5, have,
                                offer.size, args.linger)
            receiver.run()
        finally:
            link.close()
        if receiver.have != offer.size:
            raise CtlError("%s is incomplete: received %d of %d bytes" % (
                offer.name, receiver.have, offer.size))
        digest = md5.hexdigest()
        if offer.md5 is not None and digest != offer.md5:
            keep = False  # wrong bytes: nothing to resume from
            raise CtlError("%s is corrupt: md5 %s, the offer said %s" % (
                offer.name, digest, offer.md5))
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
        printJSON(console, {
            "file": final, "name": offer.name, "size": offer.size, "from": offer.sender,
            "md5": digest, "hash-checked": offer.md5 is not None, "offset": have,
            "link": linkId})
    else:
        console.out.write(final + "\n")
        console.out.flush()
    return EXIT_OK


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
