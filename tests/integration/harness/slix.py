"""
slixmpp as an independent second party for the interoperability tests.

slixmpp is asyncio and the daemon tests are blocking Python driving a
Twisted process, so slixmpp runs in a subprocess of its own:

    python3 -m tests.integration.harness.slix send    --to JID --file F --methods ibb ...
    python3 -m tests.integration.harness.slix receive --dir D [--from JID] ...

It logs in (its own resource: two logins with the same full JID kick each
other off silently), trusts the test CA, moves exactly one file with
XEP-0096 over XEP-0095 and XEP-0047 or XEP-0065, writes a JSON result
(``ok``, ``method``, ``size``, ``sha256``, ``error`` ...) and exits; every
step is bounded by ``--timeout``. ``receive`` prints ``READY <full jid>``
on stdout once it is online, so the test knows when to start sending.
slixmpp's DEBUG log (every stanza sent and received) goes to ``--log``.

The test side uses :class:`SlixPeer`, which needs no slixmpp import.

slixmpp 1.17 needs three workarounds, each marked ``WORKAROUND`` below and
described in docs/interop.rst:

- ``xep_0095.offer()`` with its default method list crashes
  (``add_field(options=[str])`` calls ``add_option(**str)``), so the
  methods are passed as ``[{'value': ns}]``.
- ``xep_0095._handle_request`` is a coroutine registered with a plain
  ``Callback``: the coroutine is created, never awaited, and every incoming
  offer is silently dropped. We re-register it as a ``CoroutineCallback``.
- The SOCKS5 protocol object has no ``close()``; the transport is closed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

IBB_NS = "http://jabber.org/protocol/ibb"
S5B_NS = "http://jabber.org/protocol/bytestreams"
FT_NS = "http://jabber.org/protocol/si/profile/file-transfer"
METHODS = {"ibb": IBB_NS, "s5b": S5B_NS}
SHORT = {v: k for k, v in METHODS.items()}

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def slixmppAvailable() -> bool:
    try:
        import slixmpp  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------
# test side (blocking, no slixmpp import)
# ---------------------------------------------------------------------------

class SlixPeer:
    """
    One run of the slixmpp peer as a subprocess.

    ``SlixPeer.start(prosody, account, resource, tmpdir, "send", "--to", ...)``;
    then :meth:`waitReady` (receive mode), :meth:`wait` -> result dict.
    Paths: ``resultPath``, ``logPath`` (slixmpp DEBUG log with all stanzas).
    """

    def __init__(self, process: subprocess.Popen, jid: str, resultPath: str,
                 logPath: str, stderrPath: str) -> None:
        self.process = process
        self.jid = jid
        self.resultPath = resultPath
        self.logPath = logPath
        self.stderrPath = stderrPath
        self._ready = threading.Event()
        self._stdout: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, prosody, account: str, resource: str, tmpdir, mode: str,
              *args: str, timeout: float = 60.0) -> "SlixPeer":
        tmpdir = os.path.abspath(str(tmpdir))
        os.makedirs(tmpdir, exist_ok=True)
        stem = os.path.join(tmpdir, "slix-%s-%s" % (resource, mode))
        passwordPath = stem + ".password"
        with open(passwordPath, "w") as f:
            f.write(prosody.passwords[account] + "\n")
        os.chmod(passwordPath, 0o600)
        jid = prosody.jid(account, resource)
        argv = [sys.executable, "-m", "tests.integration.harness.slix", mode,
                "--jid", jid, "--password-file", passwordPath,
                "--host", "127.0.0.1", "--port", str(prosody.c2sPort),
                "--ca", prosody.caPath, "--result", stem + ".json",
                "--log", stem + ".log", "--timeout", str(timeout)] + list(args)
        if os.path.exists(stem + ".json"):
            os.unlink(stem + ".json")
        stderr = open(stem + ".stderr", "wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=stderr, start_new_session=True)
        finally:
            stderr.close()
        return cls(process, jid, stem + ".json", stem + ".log", stem + ".stderr")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stdout.append(line)
            if line.startswith("READY"):
                self._ready.set()

    def waitReady(self, timeout: float = 30.0) -> bool:
        """True once the peer is online and listening for offers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.1):
                return True
            if self.process.poll() is not None:
                self._reader.join(1)
                return self._ready.is_set()
        return False

    def wait(self, timeout: float) -> Dict[str, Any]:
        """
        Wait for the peer to exit (killed after ``timeout``) and return its
        JSON result; a missing result becomes ``{"ok": False, "error": ...}``.
        """
        late = None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            late = "slixmpp peer still running after %.0fs (terminated)" % timeout
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(2)
        try:
            with open(self.resultPath) as f:
                result = json.load(f)
        except (OSError, ValueError) as e:
            result = {"ok": False, "error": "no result from the slixmpp peer (exit %s): %s"
                      % (self.process.returncode, e)}
        if late:
            result["ok"] = False
            result["error"] = "%s; %s" % (late, result.get("error"))
        result["exit"] = self.process.returncode
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def logTail(self, lines: int = 80) -> str:
        out = []
        for path in (self.logPath, self.stderrPath):
            try:
                with open(path, errors="replace") as f:
                    out.append("--- %s ---\n%s" % (path, "".join(f.readlines()[-lines:])))
            except OSError:
                pass
        return "\n".join(out)

    def stanzas(self, needle: str) -> List[str]:
        """Every SEND/RECV line of the slixmpp log that contains ``needle``."""
        try:
            with open(self.logPath, errors="replace") as f:
                return [line.rstrip("\n") for line in f
                        if needle in line and ("SEND:" in line or "RECV:" in line)]
        except OSError:
            return []


# ---------------------------------------------------------------------------
# peer side (runs in the subprocess, asyncio + slixmpp)
# ---------------------------------------------------------------------------

def _digests(path: str) -> Dict[str, Any]:
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return {"size": size, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _makeClient(options):
    import asyncio  # noqa: F401
    import slixmpp
    from slixmpp.xmlstream.handler import CoroutineCallback
    from slixmpp.xmlstream.matcher import StanzaPath

    with open(options.password_file) as f:
        password = f.read().strip()
    xmpp = slixmpp.ClientXMPP(options.jid, password)
    xmpp.ca_certs = options.ca
    # The test server's c2s port speaks STARTTLS; slixmpp tries direct TLS
    # first and reports connection_failed for that attempt.
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = True
    xmpp.enable_plaintext = False
    for plugin in ("xep_0030", "xep_0020", "xep_0047", "xep_0065", "xep_0095", "xep_0096"):
        xmpp.register_plugin(plugin)

    # WORKAROUND: the SI request handler is a coroutine registered with a plain
    # Callback in slixmpp 1.17, so offers are dropped; register it properly.
    si = xmpp.plugin["xep_0095"]
    xmpp.remove_handler("SI Request")
    xmpp.register_handler(CoroutineCallback(
        "SI Request", StanzaPath("iq@type=set/si"), si._handle_request))
    return xmpp


async def _online(xmpp, options) -> None:
    import asyncio

    started = asyncio.get_running_loop().create_future()

    def onSession(_event):
        if not started.done():
            started.set_result(True)

    def onFail(event, what):
        if not started.done():
            started.set_exception(RuntimeError("%s: %s" % (what, event)))

    xmpp.add_event_handler("session_start", onSession)
    xmpp.add_event_handler("failed_auth", lambda e: onFail(e, "authentication failed"))
    xmpp.add_event_handler("connection_failed", lambda e: onFail(e, "connection failed"))
    xmpp.connect(options.host, options.port)
    await asyncio.wait_for(started, options.timeout)
    xmpp.send_presence()
    await xmpp.get_roster()


async def _send(xmpp, options, result: Dict[str, Any]) -> None:
    import asyncio
    from uuid import uuid4

    digests = _digests(options.file)
    result.update(digests)
    methods = [METHODS[m] for m in options.methods.split(",") if m]
    result["offered"] = [SHORT[m] for m in methods]
    sid = uuid4().hex
    result["sid"] = sid
    # WORKAROUND: offer()'s default method list is a list of strings, which
    # add_field(options=...) cannot take; pass the options as dicts.
    answer = await xmpp.plugin["xep_0096"].request_file_transfer(
        options.to, sid=sid, name=os.path.basename(options.file), size=digests["size"],
        hash=digests["md5"], desc="slixmpp interop test",
        methods=[{"value": m} for m in methods], timeout=options.timeout)
    fields = answer["si"]["feature_neg"]["form"].get_fields()
    chosen = fields["stream-method"]["value"] if "stream-method" in fields else None
    result["method"] = SHORT.get(chosen, chosen)
    if chosen not in methods:
        raise RuntimeError("peer chose %r, not one of the offered %r" % (chosen, methods))
    result["peer"] = str(answer["from"])
    peer = answer["from"]
    with open(options.file, "rb") as f:
        if chosen == IBB_NS:
            stream = await xmpp.plugin["xep_0047"].open_stream(
                peer, sid=sid, block_size=options.block_size, timeout=options.timeout)
            await stream.sendfile(f, timeout=options.timeout)
            await stream.close(timeout=options.timeout)
        else:
            closed = asyncio.get_running_loop().create_future()
            xmpp.add_event_handler(
                "socks5_closed", lambda exc: closed.done() or closed.set_result(exc))
            s5b = xmpp.plugin["xep_0065"]
            if options.no_proxies:
                # What slixmpp does on a server without a proxy65: it still
                # sends the streamhost query, with no <streamhost/> at all.
                async def noProxies(*args, **kwargs):
                    return {}
                s5b.discover_proxies = noProxies
            sock = await s5b.handshake(peer, sid=sid, timeout=options.timeout)
            if sock is None:
                raise RuntimeError("SOCKS5 handshake with %s failed (no socket)" % peer)
            result["streamhosts"] = {str(k): list(v) for k, v in
                                     xmpp.plugin["xep_0065"]._proxies.items()}
            for block in iter(lambda: f.read(65536), b""):
                await sock.write(block)
            # WORKAROUND: Socks5Protocol has no close(); closing the transport
            # flushes what is buffered, then sends FIN.
            sock.transport.close()
            await asyncio.wait_for(closed, options.timeout)
    result["sent"] = digests["size"]
    result["ok"] = True


async def _receive(xmpp, options, result: Dict[str, Any]) -> None:
    import asyncio

    si = xmpp.plugin["xep_0095"]
    allowed = [METHODS[m] for m in options.methods.split(",") if m]
    for ns in list(METHODS.values()):
        if ns not in allowed:
            si.unregister_method(ns)

    loop = asyncio.get_running_loop()
    offered = loop.create_future()
    data = bytearray()
    state: Dict[str, Any] = {"size": None}
    result["offers"] = []

    async def takeOffer(iq):
        # Every offer from the sender is accepted: a peer whose first method
        # failed may re-offer the remaining ones with a new SI id (XEP-0041
        # keepAlive, as bytestreamd does); what came before is discarded.
        sid = iq["si"]["id"]
        fields = iq["si"]["feature_neg"]["form"].get_fields()
        choices = fields["stream-method"]["options"] if "stream-method" in fields else []
        pending = await si.api["get_pending"](iq["to"], sid, iq["from"])
        if pending is None:
            return
        method = SHORT.get(pending["method"], pending["method"])
        offer = {"sid": sid, "offered": [SHORT.get(o["value"], o["value"]) for o in choices],
                 "method": method}
        result["offers"].append(offer)
        result.update(offer)
        result["from"] = str(iq["from"])
        result["profile"] = iq["si"]["profile"]
        result["name"] = iq["si"]["file"]["name"]
        result["offeredSize"] = int(iq["si"]["file"]["size"] or -1)
        result["offeredHash"] = iq["si"]["file"]["hash"] or None
        del data[:]
        state.update(size=result["offeredSize"], method=method, streamStarted=False,
                     ended=None)
        await si.accept(iq["from"], sid, ifrom=iq["to"], stream_handler=onStream)
        if not offered.done():
            offered.set_result(iq)

    def onRequest(iq):
        if options.sender and iq["from"].bare != options.sender.split("/")[0]:
            return
        if len(result["offers"]) >= 4:
            return
        asyncio.ensure_future(takeOffer(iq))

    def onIBBData(stream):
        data.extend(stream.read())
        result["received"] = len(data)

    def onIBBEnd(stream):
        state["ended"] = "ibb close"

    def onS5BData(chunk):
        data.extend(chunk)
        result["received"] = len(data)

    def onS5BClosed(exc):
        # socks5_closed carries no sid: slixmpp connects to every streamhost
        # and never closes the unused ones, so only note it.
        state.setdefault("closes", []).append(str(exc))
        if state.get("method") == "s5b" and state.get("streamStarted"):
            state["ended"] = "socks5 closed (%s)" % (exc,)

    def onStream(stream):
        state["streamStarted"] = True

    xmpp.add_event_handler("si_request", onRequest)
    xmpp.add_event_handler("ibb_stream_data", onIBBData)
    xmpp.add_event_handler("ibb_stream_end", onIBBEnd)
    xmpp.add_event_handler("socks5_data", onS5BData)
    xmpp.add_event_handler("socks5_closed", onS5BClosed)

    print("READY %s" % xmpp.boundjid.full, flush=True)
    try:
        await asyncio.wait_for(offered, options.timeout)
    except asyncio.TimeoutError:
        raise RuntimeError("no SI offer within %.0fs" % options.timeout) from None
    deadline = loop.time() + options.timeout
    complete = None
    while loop.time() < deadline:
        if state["size"] is not None and len(data) >= state["size"]:
            complete = complete or loop.time()
            if state.get("ended") or loop.time() - complete > 3.0:
                break
        elif state.get("ended") and state["method"] == "ibb":
            break
        await asyncio.sleep(0.05)
    if len(data) < state["size"]:
        raise RuntimeError("received %d of %s bytes (%s)" % (
            len(data), state["size"], state.get("ended") or "no end of stream"))
    result["ended"] = state.get("ended")
    name = os.path.basename(result["name"] or "unnamed") or "unnamed"
    path = os.path.join(options.dir, name)
    with open(path, "wb") as f:
        f.write(data)
    result["path"] = path
    result.update(_digests(path))
    result["ok"] = (result["size"] == result["offeredSize"]
                    and (not result["offeredHash"] or result["offeredHash"] == result["md5"]))
    if not result["ok"]:
        result["error"] = "received %d bytes (md5 %s), offer said %d (hash %s)" % (
            result["size"], result["md5"], result["offeredSize"], result["offeredHash"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    import asyncio
    import logging

    parser = argparse.ArgumentParser(prog="slix", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("send", "receive"))
    parser.add_argument("--jid", required=True, help="full JID, with its own resource")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True, help="CA certificate to trust")
    parser.add_argument("--result", required=True, help="JSON result file")
    parser.add_argument("--log", help="slixmpp DEBUG log (all stanzas)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--methods", default="ibb,s5b",
                        help="send: methods offered; receive: methods accepted")
    parser.add_argument("--to", help="send: full JID of the receiver")
    parser.add_argument("--file", help="send: the file")
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--no-proxies", action="store_true",
                        help="send: act as on a server without proxy65 (no streamhost)")
    parser.add_argument("--dir", help="receive: directory to write into")
    parser.add_argument("--from", dest="sender", help="receive: only offers from this JID")
    options = parser.parse_args(argv)

    if options.log:
        logging.basicConfig(filename=options.log, level=logging.DEBUG,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result: Dict[str, Any] = {"ok": False, "mode": options.mode, "jid": options.jid}

    async def run() -> None:
        xmpp = _makeClient(options)
        try:
            await _online(xmpp, options)
            result["boundJID"] = xmpp.boundjid.full
            if options.mode == "send":
                await asyncio.wait_for(_send(xmpp, options, result), options.timeout)
            else:
                await asyncio.wait_for(_receive(xmpp, options, result), options.timeout * 2)
        finally:
            try:
                await asyncio.wait_for(xmpp.disconnect(wait=1.0), 5)
            except Exception:  # noqa: BLE001 - leaving anyway
                pass

    async def guarded() -> None:
        # SIGTERM (SlixPeer.wait giving up) cancels the run, so the result
        # file still says how far it got.
        import signal
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await asyncio.wait_for(run(), options.timeout * 3)

    started = time.monotonic()
    try:
        asyncio.run(guarded())
    except BaseException as e:  # noqa: BLE001 - every failure goes into the result
        result["ok"] = False
        result["error"] = "%s: %s" % (type(e).__name__, e)
        logging.getLogger("slix").exception("peer failed")
    result["seconds"] = round(time.monotonic() - started, 3)
    with open(options.result + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(options.result + ".tmp", options.result)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
