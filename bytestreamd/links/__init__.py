r"""
The link registry: the one package that knows every layer.

A *link* is one bytestream the daemon exposes as a local socket.  This
package creates links for ``OPEN`` and for offers, drives them through a
negotiator (:class:`~bytestreamd.interfaces.INegotiator`: SI today) and the
XEP-0041 link states, joins the established bytestream to the link's UNIX
socket (or to a ``[services]`` endpoint), emits the ``650`` events, and
enforces the limits and the ``[accept]`` policy.  It provides
:class:`IControlBackend` to the control channel and
:class:`IOfferAcceptor` to the negotiators.

* :mod:`.machine` -- one link's lifecycle as a transition table (no I/O);
* :mod:`.link` -- one link's data;
* :mod:`.manager` -- the registry, outgoing links, control, and the
  effects of the machine's outputs;
* :mod:`.incoming` -- offers: the ``[accept]`` policy, ACCEPT, REJECT,
  ``[services]``.

State of a link, as ``LINKS`` shows it::

    out:  NEGO -> INIT -> (BAD -> INIT)* -> GOOD -> CLOS | ERR
                      \-> BAD (final)
    in:   OFFER -> INIT -> GOOD -> CLOS | ERR
               \-> BAD (final: declined, withdrawn, expired) | CLOS (CLOSE)
                        \-> BAD (final)

Every state is bounded: NEGO by the disco and offer-answer timeouts, INIT by
``attempt_timeout``, OFFER by ``offer_timeout``, GOOD without a local client
by ``attach_timeout``, GOOD waiting on the peer by the liveness check
(:mod:`bytestreamd.xmpp.liveness`, ``peer_timeout``), the short wait for
the peer's features between the stream and GOOD by the disco timeout, and
the end itself by :mod:`bytestreamd.links.lifecycle` (when a link may say
CLOS, and how a bytestreamd peer confirms it).  ``CLOSE`` ends a link in
any of them, on both sides: tests/memory/test_bounded_states.py walks each
state, tests/memory/test_close_race.py the instants around a local
client's connect.
"""

__all__ = ["Link", "LinkManager", "log"]


def __getattr__(name: str):
    """
    Import the registry on first use, not with the package: the sans-I/O
    parts (:mod:`.lifecycle`, :mod:`.machine`) are used by :mod:`bytestreamd.local`,
    which the registry itself imports, and an eager import here made that a
    cycle (importing ``bytestreamd.local`` first failed).
    """
    if name == "Link":
        from bytestreamd.links.link import Link
        return Link
    if name in ("LinkManager", "log"):  # log: a SafeLogger
        from bytestreamd.links import manager
        return getattr(manager, name)
    raise AttributeError(name)
