"""
XEP-0260: a Jingle session's bytestream over SOCKS5, on the SOCKS5 engine
of :mod:`bytestreamd.methods.s5b` (its direct streamhost, its proxy
directory, its ``[s5b] connect`` policy and its SOCKS5 client).

Unlike XEP-0065, both parties offer candidates and both try the other's:

1. Each side offers its candidates: direct ones from ``[s5b] listen`` /
   ``advertise`` (type ``direct``) and the server's proxy65 (``proxy``),
   with XEP-0260's priorities, and waits on its direct streamhost for
   SOCKS5 connections with the DST.ADDR of *its own* candidates:
   SHA1(sid + offerer's full JID + the other's), the transport's sid.
2. Each side tries the other's candidates, highest priority first, each
   within ``candidateTimeout``, after checking every address against
   ``[s5b] connect`` (a proxy of our own server is exempt, as in XEP-0065),
   and says ``candidate-used`` (cid) or ``candidate-error`` in a
   transport-info.
3. Once both reports are known, both nominate the same candidate
   (:func:`~bytestreamd.wire.jingle_s5b.nominate`: higher priority, then
   the initiator's choice).  A direct candidate is ready at once (the side
   that offered it takes the connection its streamhost accepted).  A proxy
   is activated by the side that offered it: it connects to the proxy too,
   asks it to activate, and says ``activated`` (or ``proxy-error``); the
   other side waits for that word before it writes.
4. Both ``candidate-error``: the transport failed, with a reason naming
   each candidate and why; the initiator then replaces it by IBB
   (:mod:`.jingle_streams`).

The whole attempt is bounded by ``attempt_timeout``.  Reasons sent to the
peer carry no addresses or errors (the engine's rule against making us a
port scanner); the local reason says everything.
"""

from __future__ import annotations

import secrets
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.words.protocols.jabber.jid import JID

from bytestreamd.errors import MethodFailed
from bytestreamd.methods.s5b_proxies import ask
from bytestreamd.methods.s5b_tcp import (CandidateFailed, connectStreamhost,
                                         isAddressLiteral, resolveHost)
from bytestreamd.text import SafeLogger
from bytestreamd.wire import jingle as J
from bytestreamd.wire.jingle_s5b import (DIRECT, PROXY, Candidate, S5BTransport,
                                         candidateDstAddr, nominate, priority)
from bytestreamd.wire.s5b import Activate, StreamHost
from bytestreamd.xmpp.stanzas import makeIQ

log = SafeLogger()  # peer and user text escaped (bytestreamd.text)


def newS5BSid() -> str:
    return "bjs" + secrets.token_hex(8)


def _streamhost(c: Candidate) -> StreamHost:
    return StreamHost(c.jid, c.host, c.effectivePort)


class S5BDriver:
    """One SOCKS5 transport of a session (see the module docstring)."""

    name = "s5b"

    def __init__(self, control: Any, method: Any):
        self.control = control
        self.method = method
        self.sid: Optional[str] = None
        self.ours: Dict[str, Candidate] = {}
        self.theirs: Tuple[Candidate, ...] = ()
        self.pending: Any = None
        self.ourAddress: Optional[str] = None
        #: What we reached of theirs: (candidate, stream), or None (error);
        #: unset until we tried.
        self.ourResult: Any = _UNSET
        #: What they reached of ours: cid, or None (error); unset until told.
        self.theirResult: Any = _UNSET
        self.problems: List[str] = []
        self.stopped = False
        self.done = False
        self.waitingActivation: Optional[Tuple[Candidate, Any]] = None
        self._tries: Optional[defer.Deferred] = None
        self._trying = False
        self._timer: Any = None
        self._streams: List[Any] = []

    # -- roles -------------------------------------------------------------------

    @property
    def ourRole(self) -> str:
        return J.INITIATOR if self.control.weAreInitiator else J.RESPONDER

    @property
    def theirRole(self) -> str:
        return J.RESPONDER if self.control.weAreInitiator else J.INITIATOR

    def _address(self, offeredBy: str) -> str:
        return candidateDstAddr(self.sid, self.control.initiator, self.control.responder,
                                offeredBy)

    # -- our candidates ---------------------------------------------------------------

    async def _gather(self) -> S5BTransport:
        own = self.control.own
        direct = self.method.direct.candidates(own)
        try:
            proxies = await self.method.proxyDirectory.streamhosts(JID(own.host))
        except defer.CancelledError:
            raise
        except Exception:
            proxies = []
        candidates: List[Candidate] = []
        limit = self.method.maxCandidates
        for i, host in enumerate(direct[:limit]):
            candidates.append(Candidate(secrets.token_hex(4), host.host, host.jid,
                                        priority(DIRECT, max(0, 65535 - i)), host.port,
                                        DIRECT))
        for i, host in enumerate(proxies[:max(0, limit - len(candidates))]):
            candidates.append(Candidate(secrets.token_hex(4), host.host, host.jid,
                                        priority(PROXY, max(0, 65535 - i)), host.port,
                                        PROXY))
        self.ours = {c.cid: c for c in candidates}
        self.ourAddress = self._address(self.ourRole)
        if direct:
            try:
                self.pending = self.method.direct.expect(self.ourAddress)
            except ValueError:
                raise MethodFailed("s5b: session %s is already being offered" % self.sid)
        return S5BTransport(self.sid, candidates=tuple(candidates))

    def prepare(self) -> "defer.Deferred[S5BTransport]":
        """The initiator's offer."""
        self.sid = newS5BSid()
        return defer.Deferred.fromCoroutine(self._gather())

    def answer(self, offer: Any) -> "defer.Deferred[S5BTransport]":
        """The responder's answer: our candidates for the offered sid."""
        if not isinstance(offer, S5BTransport):
            return defer.fail(MethodFailed("s5b: the offer is not a SOCKS5 transport"))
        if offer.effectiveMode != "tcp":
            return defer.fail(MethodFailed("s5b: mode %s is not supported"
                                           % offer.effectiveMode))
        self.sid = offer.sid
        return defer.Deferred.fromCoroutine(self._gather())

    # -- trying theirs -----------------------------------------------------------------

    def start(self, answer: Any) -> None:
        """The initiator: the responder accepted with its candidates."""
        if not isinstance(answer, S5BTransport) or answer.sid != self.sid:
            self._fail("s5b: the answer is not a SOCKS5 transport for sid %s" % self.sid)
            return
        self._begin(answer.candidates)

    def startAnswered(self, offer: Any) -> None:
        """The responder: session-accept is sent; try the initiator's."""
        self._begin(offer.candidates)

    def _begin(self, theirs: Tuple[Candidate, ...]) -> None:
        self.theirs = tuple(sorted(theirs, key=lambda c: -c.priority))
        timeout = self.control.negotiator.attemptTimeout
        self._timer = self.control.clock.callLater(timeout, self._expired, timeout)
        self._tries = defer.Deferred.fromCoroutine(self._tryTheirs())
        self._tries.addErrback(lambda f: None if f.check(defer.CancelledError)
                               else self._fail("s5b: %s" % f.getErrorMessage()))

    async def _tryTheirs(self) -> None:
        address = self._address(self.theirRole)
        for c in self.theirs[:self.method.maxCandidates]:
            if self.stopped:
                return
            self._trying = True
            try:
                stream = await self._reach(c, address)
            except CandidateFailed as e:
                self.problems.append("their %s: %s" % (c.describe(), e.reason))
                continue
            finally:
                self._trying = False
            if self.stopped:
                stream.abortConnection()
                return
            self._streams.append(stream)
            self.ourResult = (c, stream)
            self._tell(S5BTransport(self.sid, candidateUsed=c.cid))
            self._decide()
            return
        if not self.theirs:
            self.problems.append("%s offered no candidate" % self.control.peer.full())
        self.ourResult = None
        self._tell(S5BTransport(self.sid, candidateError=True))
        self._decide()

    async def _reach(self, c: Candidate, address: str) -> Any:
        """One candidate within candidateTimeout, ``[s5b] connect`` checked
        (a proxy of our own server exempt), as the XEP-0065 target does."""
        method = self.method
        clock = self.control.clock
        host = _streamhost(c)
        if method.proxyDirectory.knows(host):
            return await connectStreamhost(clock, c.host, c.effectivePort, address,
                                           method.candidateTimeout)
        deadline = clock.seconds() + method.candidateTimeout
        addresses = await resolveHost(clock, c.host, method.candidateTimeout)
        literal = isAddressLiteral(c.host)
        for ip in addresses:
            refused = method.connectPolicy.check(ip)
            if refused is not None:
                raise CandidateFailed(refused if literal else "%s resolves to %s; %s"
                                      % (c.host, ", ".join(addresses), refused))
        problems: List[str] = []
        for ip in addresses:
            remaining = round(deadline - clock.seconds(), 3)
            if remaining <= 0:
                problems.append("%s: not tried, no time left" % ip)
                continue
            try:
                return await connectStreamhost(clock, ip, c.effectivePort, address,
                                               remaining)
            except CandidateFailed as e:
                problems.append(e.reason if literal else "%s: %s" % (ip, e.reason))
        raise CandidateFailed("; ".join(problems))

    def _tell(self, transport: S5BTransport) -> None:
        control = self.control
        if control.live and not self.stopped:
            control.perform(control.session.sendTransportInfo(control.key, transport))

    # -- the peer's words -------------------------------------------------------------

    def info(self, transport: Any) -> None:
        if not isinstance(transport, S5BTransport) or transport.sid != self.sid \
                or self.stopped:
            return
        kind = transport.kind
        if kind == "candidate-used":
            if transport.candidateUsed not in self.ours:
                self.theirResult = None
                self.problems.append("%s said it used candidate %s, which we did not "
                                     "offer" % (self.control.peer.full(),
                                                transport.candidateUsed))
            else:
                self.theirResult = transport.candidateUsed
            self._decide()
        elif kind == "candidate-error":
            self.theirResult = None
            self.problems.append("%s reached none of our candidates (%s)" % (
                self.control.peer.full(),
                ", ".join(c.describe() for c in self.ours.values()) or "we offered none"))
            self._decide()
        elif kind == "activated" and self.waitingActivation is not None:
            c, stream = self.waitingActivation
            self.waitingActivation = None
            if transport.activated != c.cid:
                self._fail("s5b: %s activated candidate %s, not the nominated %s"
                           % (self.control.peer.full(), transport.activated, c.cid))
                return
            self._up(stream, c, relayed=True)
        elif kind == "proxy-error" and self.waitingActivation is not None:
            c, _ = self.waitingActivation
            self.waitingActivation = None
            self._fail("s5b: %s could not activate proxy %s" % (
                self.control.peer.full(), c.describe()))

    # -- nomination -------------------------------------------------------------------

    def _decide(self) -> None:
        if self.ourResult is _UNSET or self.theirResult is _UNSET or self.done \
                or self.stopped:
            return
        ours = self.ourResult[0] if self.ourResult else None
        theirs = self.ours.get(self.theirResult) if self.theirResult else None
        if self.control.weAreInitiator:
            nomination = nominate(ours, theirs)
        else:
            nomination = nominate(theirs, ours)
        if nomination is None:
            self._fail("s5b: no candidate worked: %s" % "; ".join(self.problems))
            return
        c = nomination.candidate
        if nomination.offeredBy == self.ourRole:
            # Ours: the peer connected to it.
            if c.effectiveType == PROXY:
                defer.Deferred.fromCoroutine(self._activate(c))
                return
            stream = self.pending.take() if self.pending is not None else None
            if stream is None:
                self._fail("s5b: %s says it connected to our %s, but no SOCKS5 "
                           "connection for this session is up" % (
                               self.control.peer.full(), c.describe()))
                return
            self._up(stream, c, relayed=False)
        else:
            stream = self.ourResult[1]
            if c.effectiveType == PROXY:
                self.waitingActivation = (c, stream)  # the peer activates
                return
            self._up(stream, c, relayed=False)

    async def _activate(self, c: Candidate) -> None:
        """Our proxy was nominated: join it and ask it to activate."""
        try:
            stream = await connectStreamhost(self.control.clock, c.host, c.effectivePort,
                                             self.ourAddress,
                                             self.method.candidateTimeout)
        except CandidateFailed as e:
            self._tell(S5BTransport(self.sid, proxyError=True))
            self._fail("s5b: cannot join our proxy %s: %s" % (c.describe(), e.reason))
            return
        self._streams.append(stream)
        iq = makeIQ("set", c.jid)
        iq.addChild(Activate(self.sid, self.control.peer).toElement())
        try:
            await ask(self.control.negotiator, iq, self.method.requestTimeout,
                      "proxy %s (activate)" % c.jid.full())
        except MethodFailed as e:
            self._tell(S5BTransport(self.sid, proxyError=True))
            self._fail("s5b: %s" % e.reason)
            return
        if self.stopped:
            return
        self._tell(S5BTransport(self.sid, activated=c.cid))
        self._up(stream, c, relayed=True)

    # -- the end ----------------------------------------------------------------------

    def _up(self, stream: Any, c: Candidate, relayed: bool) -> None:
        if self.stopped or self.done:
            return
        self.done = True
        offeredBy = self.control.own if c.cid in self.ours else self.control.peer
        stream.bind(self.control.context(self.sid, offeredBy=offeredBy), _streamhost(c),
                    relayed=relayed)
        self._cleanup(keep=stream)
        self.control.transportUp(self, stream)

    def _fail(self, reason: str) -> None:
        if self.stopped or self.done:
            return
        self.done = True
        self._cleanup()
        self.control.transportFailed(self, reason)

    def _expired(self, timeout: float) -> None:
        self._timer = None
        waiting = "activation" if self.waitingActivation else (
            "our tries" if self.ourResult is _UNSET else "the peer's candidate report")
        self._fail("s5b: not established within %gs (waiting for %s)%s" % (
            timeout, waiting, "; " + "; ".join(self.problems) if self.problems else ""))

    def _cleanup(self, keep: Any = None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        tries, self._tries = self._tries, None
        if tries is not None and self._trying and not tries.called:
            tries.cancel()  # only while it waits, never from inside it
        if self.ourAddress is not None and self.pending is not None:
            self.method.direct.forget(self.ourAddress, keep=keep)
            self.pending = None
        streams, self._streams = self._streams, []
        for stream in streams:
            if stream is not keep:
                stream.abortConnection()

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._cleanup()


_UNSET = object()
