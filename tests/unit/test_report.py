from bytestreamd import ns
from bytestreamd.report import peerSummary


def test_peerSummaryNamesMethodsProfilesAndExtensions():
    features = {ns.NS_SI, ns.NS_IBB, ns.NS_SI_MULTIPLE, ns.NS_LINK_PROFILE,
                ns.NS_SI_FILE_TRANSFER}
    pairs = dict(peerSummary("bob@x/r", {("client", "bot")}, features))
    assert pairs["si"] == "yes"
    assert pairs["methods"] == "ibb"
    assert pairs["profiles"] == "file-transfer,link"
    assert pairs["si-multiple"] == "yes"
    assert pairs["jingle"] == "no"
    assert pairs["identities"] == "client/bot"


def test_peerSummaryOfAPeerWithNothing():
    pairs = dict(peerSummary("bob@x/r", set(), set()))
    assert (pairs["si"], pairs["methods"], pairs["profiles"]) == ("no", "-", "-")
