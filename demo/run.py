#!/usr/bin/env python3
"""
The embedded demo behind ``make demo``.

Starts a throwaway Prosody on loopback (its own CA, accounts alice and bob),
one bytestreamd for each account, opens a link from alice to bob through the
control sockets exactly as a user would with ``nc -U``, pipes a file through
the link with netcat in each direction and checks it byte for byte.

Everything lives in a temporary directory that is removed at the end (pass
``--keep`` to keep it and look at the logs and configs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.integration.harness.daemon import DaemonProcess  # noqa: E402
from tests.integration.harness.prosody import ProsodyServer  # noqa: E402


def say(text: str) -> None:
    print("demo: " + text, flush=True)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def transfer(work: str, sender, receiver, size: int, label: str,
             methods: str) -> float:
    """
    Open a link sender -> receiver, accept it on the receiver's watching
    control connection, move ``size`` random bytes nc-to-nc, verify.
    """
    src = os.path.join(work, "%s.in" % label)
    dst = os.path.join(work, "%s.out" % label)
    with open(src, "wb") as f:
        f.write(os.urandom(size))
    ctlS = sender.control()
    ctlR = receiver.control(watch=True)
    peer = "%s@localhost/daemon" % receiver.account
    say("%s: OPEN %s  (on %s's control socket)" % (label, peer, sender.account))
    reply = ctlS.command("OPEN %s service=demo methods=%s" % (peer, methods))
    say("  -> %s" % reply)
    sockS = reply.lines[0].split("socket=", 1)[1]
    offer = ctlR.waitEvent(lambda l: " OFFER " in l, 15)
    say("  %s sees: %s" % (receiver.account, offer))
    linkR = offer.split()[2]
    reply = ctlR.command("ACCEPT " + linkR)
    say("  ACCEPT %s -> %s" % (linkR, reply))
    sockR = reply.lines[0].split("socket=", 1)[1]
    good = ctlS.waitEvent(lambda l: " GOOD " in l or " BAD " in l, 30)
    say("  %s sees: %s" % (sender.account, good))
    if " GOOD " not in good:
        raise SystemExit("demo: the link failed: " + good)
    say("  nc -d -U %s > %s   and   nc -N -U %s < %s" % (sockR, dst, sockS, src))
    start = time.monotonic()
    with open(dst, "wb") as out, open(src, "rb") as inp:
        recv = subprocess.Popen(["nc", "-d", "-U", sockR], stdout=out)
        send = subprocess.Popen(["nc", "-N", "-U", sockS], stdin=inp,
                                stdout=subprocess.DEVNULL)
        recv.wait(300)
        send.wait(30)
    elapsed = time.monotonic() - start
    for ctl, who in ((ctlS, sender.account), (ctlR, receiver.account)):
        say("  %s sees: %s" % (who, ctl.waitEvent(
            lambda l: " CLOS " in l or " ERR " in l, 30)))
        ctl.close()
    ok = sha256(src) == sha256(dst)
    say("  %d bytes in %.2fs (%.1f MB/s), sha256 %s" % (
        size, elapsed, size / elapsed / 1e6, "MATCHES" if ok else "DIFFERS"))
    if not ok:
        raise SystemExit("demo: FAILED: the copy differs from the original")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--mib", type=int, default=16, help="MiB each way (16)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bytestreamd-demo-")
    prosody = ProsodyServer(os.path.join(work, "prosody"))
    daemons = []
    try:
        say("starting a throwaway Prosody on 127.0.0.1 (accounts alice, bob)")
        for name in ("alice", "bob"):
            prosody.register(name)
        prosody.start()
        say("prosody c2s on 127.0.0.1:%d, CA %s" % (prosody.c2sPort, prosody.caPath))
        # Both methods, loopback SOCKS5 candidates (a real deployment offers
        # its interface addresses; the demo stays on 127.0.0.1, so [s5b]
        # connect must allow loopback, which it refuses by default).
        common = {"links": {"methods": "s5b, ibb"},
                  "s5b": {"listen": "127.0.0.1:0", "connect": "127.0.0.0/8, ::1"}}
        alice = DaemonProcess(prosody, "alice", os.path.join(work, "alice"),
                              dict(common, accept={"allow": "bob@localhost"}))
        bob = DaemonProcess(prosody, "bob", os.path.join(work, "bob"),
                            dict(common, accept={"allow": "alice@localhost"}))
        daemons = [alice, bob]
        for d in daemons:
            d.start()
            say("%s's daemon is up: control socket %s" % (d.account, d.controlPath))
        size = args.mib << 20
        transfer(work, alice, bob, size, "alice-to-bob", "ibb")
        transfer(work, bob, alice, size, "bob-to-alice", "s5b")
        say("OK: %d MiB went each way (in-band, then SOCKS5) and arrived intact"
            % args.mib)
        return 0
    finally:
        for d in daemons:
            d.stop()
        prosody.close()
        if args.keep:
            say("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
