"""The one registry of methods and negotiators, and who reads it."""

from twisted.internet.testing import MemoryReactorClock
from twisted.words.protocols.jabber.jid import JID

from bytestreamd import config, ns, registry, report
from bytestreamd.negotiation import si


def test_namesAndNamespaces():
    assert registry.METHOD_NAMES == ("s5b", "ibb") == registry.DEFAULT_METHODS
    assert registry.NEGOTIATOR_NAMES == ("jingle", "si")
    assert registry.methodNamesByNamespace() == {ns.NS_S5B: "s5b", ns.NS_IBB: "ibb"}
    assert registry.methodsIn([ns.NS_IBB, "x", ns.NS_S5B]) == ["s5b", "ibb"]


def test_everyListReadsTheRegistry():
    assert config.KNOWN_METHODS == registry.METHOD_NAMES
    assert si.KNOWN_METHODS == registry.methodNamesByNamespace()
    for entry in registry.METHODS + registry.NEGOTIATORS:
        assert report.FEATURE_NAMES[entry.namespace] == entry.name
    assert dict(report.peerSummary("b@x/y", [], [ns.NS_IBB]))["methods"] == "ibb"


def test_buildsInTheGivenOrder():
    c = config.Config(jid=JID("a@example.org/d"), password="x")
    methods = registry.buildMethods(MemoryReactorClock(), c, ["ibb", "s5b"])
    assert [m.name for m in methods] == ["ibb", "s5b"]
    try:
        registry.buildMethods(MemoryReactorClock(), c, ["jingle"])
    except KeyError as e:
        assert "unknown method jingle (known: s5b, ibb)" in e.args[0]
    else:
        raise AssertionError("an unknown method was built")
