"""
Codecs for Stream Initiation (XEP-0095), its stream-method negotiation
(XEP-0020 feature-neg with a XEP-0004 form), the si-multiple extension and
the two profiles we speak: our own link profile and XEP-0096 file transfer.

Pure values: nothing here sends or waits.  Anything a peer could get wrong
raises :class:`MalformedSI`, a ``ValueError`` whose words go into the
``bad-request`` answer, so the handler never needs to know which check failed.

Every text field (ids, profile and method namespaces, MIME type, service and
file names, dates, hashes, descriptions) must be XML 1.0 characters, when
parsed and when built: a value a codec accepted can always be serialised,
and a control character never reaches the server (which would close the
daemon's stream).  Building refuses with :class:`MalformedSI` too.

Why one long module: one codec per element of XEP-0095/0020/0096 and their examples' quirks; nothing here has behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Type

from bytestreamd import _compat  # noqa: F401  (restores what wokkel needs)

from twisted.words.xish import domish
from wokkel import data_form

from bytestreamd import ns
from bytestreamd.e2e import wire as e2ewire
from bytestreamd.text import describeCharacter, firstNonXML

#: The feature-neg field that carries the bytestream methods.
STREAM_METHOD = "stream-method"

#: Bounds on what a peer may send us; far above anything legitimate.
MAX_SID_LENGTH = 256
MAX_METHODS = 32

Headers = Dict[str, str]


class MalformedSI(ValueError):
    """
    A Stream Initiation element (or a profile element in it) is not what the
    XEPs allow; the message says what is wrong, for the ``bad-request`` text.
    """


def _text(value: Optional[str], what: str) -> Optional[str]:
    """``value`` if XML can carry it (or it is ``None``); else MalformedSI."""
    if value is not None:
        index = firstNonXML(value)
        if index is not None:
            raise MalformedSI("%s contains %s" % (what, describeCharacter(value[index])))
    return value


def _tree(element: Optional[domish.Element], what: str) -> Optional[domish.Element]:
    """
    ``element`` if every attribute and text in it is XML text: a profile
    payload is carried through opaquely, and must stay sendable.
    """
    if element is not None:
        for key, value in element.attributes.items():
            _text(key if isinstance(key, str) else key[1], what)
            _text(value, what)
        for child in element.children:
            if isinstance(child, str):
                _text(child, what)
            else:
                _tree(child, what)
    return element


def _children(element: domish.Element, uri: str, name: str) -> List[domish.Element]:
    return [c for c in element.elements() if c.uri == uri and c.name == name]


def _child(element: domish.Element, uri: str, name: str) -> Optional[domish.Element]:
    found = _children(element, uri, name)
    return found[0] if found else None


# --- XEP-0020 feature negotiation ------------------------------------------


def streamMethodOffer(methods: Iterable[str]) -> domish.Element:
    """``<feature/>`` offering ``methods`` as a ``list-single`` form field."""
    form = data_form.Form("form")
    form.addField(data_form.Field(
        "list-single", STREAM_METHOD,
        options=[data_form.Option(_text(m, "stream method")) for m in methods]))
    feature = domish.Element((ns.NS_FEATURE_NEG, "feature"))
    feature.addChild(form.toElement())
    return feature


def streamMethodChoice(method: str) -> domish.Element:
    """``<feature/>`` submitting the one chosen ``method``."""
    form = data_form.Form("submit")
    form.addField(data_form.Field(None, STREAM_METHOD,
                                  value=_text(method, "stream method")))
    feature = domish.Element((ns.NS_FEATURE_NEG, "feature"))
    feature.addChild(form.toElement())
    return feature


def _streamMethodField(feature: domish.Element) -> data_form.Field:
    form = _child(feature, ns.NS_DATA, "x")
    if form is None:
        raise MalformedSI("feature-neg element has no jabber:x:data form")
    try:
        parsed = data_form.Form.fromElement(form)
    except data_form.Error as e:
        raise MalformedSI("feature-neg form is malformed: %s" % (e,))
    fieldObj = parsed.fields.get(STREAM_METHOD)
    if fieldObj is None:
        raise MalformedSI("feature-neg form has no stream-method field")
    return fieldObj


def streamMethodsOffered(feature: domish.Element) -> List[str]:
    """
    The method namespaces of an offer's form, in the offerer's order.
    An empty list is not malformed: the handler answers no-valid-streams.
    """
    fieldObj = _streamMethodField(feature)
    methods: List[str] = []
    for option in fieldObj.options:
        value = option.value
        if not isinstance(value, str):
            raise MalformedSI("stream-method option without a text value")
        _text(value, "stream method")
        if value and value not in methods:
            methods.append(value)
    if len(methods) > MAX_METHODS:
        raise MalformedSI("offer lists %d stream methods, more than %d"
                          % (len(methods), MAX_METHODS))
    return methods


def streamMethodChosen(feature: domish.Element) -> str:
    """The single method namespace of a submitted form."""
    fieldObj = _streamMethodField(feature)
    values = [v for v in fieldObj.values if v]
    if len(values) != 1:
        raise MalformedSI("submitted stream-method field has %d values, "
                          "expected exactly one" % len(values))
    if not isinstance(values[0], str):
        raise MalformedSI("submitted stream-method is not text")
    return _text(values[0], "stream method")


# --- XEP-0095 offer and answer ------------------------------------------------


@dataclass
class SIOffer:
    """
    The ``<si/>`` of an offer (an iq ``set``).

    ``methods`` are stream-method namespaces in the offerer's order;
    ``multiple`` is the si-multiple child; ``payload`` is the profile's own
    element (the child qualified by the ``profile`` namespace), if any.
    """

    id: str
    profile: str
    methods: List[str] = field(default_factory=list)
    mimeType: Optional[str] = None
    multiple: bool = False
    payload: Optional[domish.Element] = None

    def toElement(self) -> domish.Element:
        if not self.id or len(self.id) > MAX_SID_LENGTH:
            raise MalformedSI("offer id must be 1 to %d characters" % MAX_SID_LENGTH)
        if not self.profile:
            raise MalformedSI("offer has no profile")
        si = domish.Element((ns.NS_SI, "si"))
        si["id"] = _text(self.id, "offer id")
        si["profile"] = _text(self.profile, "profile")
        if self.mimeType:
            si["mime-type"] = _text(self.mimeType, "mime-type")
        if self.payload is not None:
            si.addChild(_tree(self.payload, "profile element"))
        si.addChild(streamMethodOffer(self.methods))
        if self.multiple:
            si.addElement((ns.NS_SI_MULTIPLE, "si-multiple"))
        return si

    @classmethod
    def fromElement(cls, element: domish.Element) -> "SIOffer":
        if (element.uri, element.name) != (ns.NS_SI, "si"):
            raise MalformedSI("not a stream initiation element")
        sid = _text(element.getAttribute("id"), "offer id")
        if not sid:
            raise MalformedSI("offer has no id")
        if len(sid) > MAX_SID_LENGTH:
            raise MalformedSI("offer id is longer than %d characters" % MAX_SID_LENGTH)
        profile = _text(element.getAttribute("profile"), "profile")
        if not profile:
            raise MalformedSI("offer has no profile")
        feature = _child(element, ns.NS_FEATURE_NEG, "feature")
        if feature is None:
            raise MalformedSI("offer has no feature-neg stream-method form")
        payloads = [c for c in element.elements() if c.uri == profile]
        return cls(
            id=sid,
            profile=profile,
            methods=streamMethodsOffered(feature),
            mimeType=_text(element.getAttribute("mime-type"), "mime-type"),
            multiple=_child(element, ns.NS_SI_MULTIPLE, "si-multiple") is not None,
            payload=_tree(payloads[0], "profile element") if payloads else None,
        )


@dataclass
class SIAccept:
    """
    The ``<si/>`` of an accepting ``result``.

    Plain XEP-0095 carries one ``method``; an si-multiple answer carries the
    ordered ``methods`` the initiator should try (and no form).  ``payload``
    is a profile element returned to the initiator, if the profile has one.
    """

    method: Optional[str] = None
    methods: List[str] = field(default_factory=list)
    payload: Optional[domish.Element] = None

    @property
    def multiple(self) -> bool:
        return bool(self.methods)

    @property
    def chosen(self) -> List[str]:
        """What to try, in order, whichever form the answer had."""
        if self.methods:
            return list(self.methods)
        return [self.method] if self.method else []

    def toElement(self) -> domish.Element:
        si = domish.Element((ns.NS_SI, "si"))
        if self.payload is not None:
            si.addChild(_tree(self.payload, "profile element"))
        if self.methods:
            multiple = si.addElement((ns.NS_SI_MULTIPLE, "si-multiple"))
            for m in self.methods:
                multiple.addElement("value", content=_text(m, "stream method"))
        elif self.method:
            si.addChild(streamMethodChoice(self.method))
        else:
            raise ValueError("an SI answer needs a method")
        return si

    @classmethod
    def fromElement(cls, element: Optional[domish.Element]) -> "SIAccept":
        if element is None or (element.uri, element.name) != (ns.NS_SI, "si"):
            raise MalformedSI("answer has no stream initiation element")
        payloads = [c for c in element.elements()
                    if c.uri not in (ns.NS_SI, ns.NS_SI_MULTIPLE, ns.NS_FEATURE_NEG)]
        payload = _tree(payloads[0], "profile element") if payloads else None
        multiple = _child(element, ns.NS_SI_MULTIPLE, "si-multiple")
        if multiple is not None:
            methods: List[str] = []
            for value in multiple.elements():
                if value.name == "value" and str(value).strip():
                    text = _text(str(value).strip(), "stream method")
                    if text not in methods:
                        methods.append(text)
            if not methods:
                raise MalformedSI("si-multiple answer lists no method")
            if len(methods) > MAX_METHODS:
                raise MalformedSI("si-multiple answer lists more than %d methods"
                                  % MAX_METHODS)
            return cls(methods=methods, payload=payload)
        feature = _child(element, ns.NS_FEATURE_NEG, "feature")
        if feature is None:
            raise MalformedSI("answer has neither a stream-method form nor si-multiple")
        return cls(method=streamMethodChosen(feature), payload=payload)


# --- profiles -------------------------------------------------------------------


class Profile:
    """
    A profile codec: the profile element <-> the headers the link layer and
    the control channel show (``650 OFFER ... service=ssh``).  Header values
    are strings; absent means absent, never an empty string.
    """

    namespace: str = ""

    def toElement(self) -> domish.Element:
        raise NotImplementedError

    def headers(self) -> Headers:
        raise NotImplementedError

    @classmethod
    def fromElement(cls, element: Optional[domish.Element]) -> "Profile":
        raise NotImplementedError

    @classmethod
    def fromHeaders(cls, headers: Mapping[str, object]) -> "Profile":
        raise NotImplementedError


def _cleanHeaders(headers: Mapping[str, object], allowed: Iterable[str]) -> Headers:
    clean = {k: str(v) for k, v in headers.items() if v is not None}
    unknown = sorted(set(clean) - set(allowed))
    if unknown:
        raise MalformedSI("unknown header%s %s" % ("s" if len(unknown) > 1 else "",
                                                   ", ".join(unknown)))
    return clean


_SERVICE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")


def checkServiceName(name: str) -> str:
    """A service name: 1 to 255 characters, no whitespace or control characters."""
    if not _SERVICE.match(name) or firstNonXML(name) is not None:
        raise MalformedSI("service name %r is empty, too long or has "
                          "whitespace or control characters" % (name,))
    return name


@dataclass
class LinkProfile(Profile):
    """
    bytestreamd's link profile: ``<link xmlns=NS_LINK_PROFILE service='NAME'/>``.
    ``service`` is the name the target maps to a local endpoint
    (``[services]``); without it the link is a plain byte pipe.

    The e2e field (docs/e2e.rst): a ``<fingerprint/>`` (XEP-0320's element,
    the sender's certificate) child asks for an end-to-end stream, an empty
    ``<bytes xmlns='urn:x-bytestreamd:e2e:bytes:0'/>`` beside it for
    ``e2e=bytes`` (else ``e2e=xmpp``).  The same element in the SI result
    accepts it (``setup='passive'`` there, ``active`` in the offer).  As
    headers: ``e2e`` (the mode) and ``fingerprint``.
    """

    namespace = ns.NS_LINK_PROFILE
    service: Optional[str] = None
    e2e: Optional[str] = None
    fingerprint: Optional[str] = None
    setup: str = "active"

    def toElement(self) -> domish.Element:
        link = domish.Element((ns.NS_LINK_PROFILE, "link"))
        if self.service is not None:
            link["service"] = checkServiceName(self.service)
        if self.e2e is not None:
            _e2eParams(self.e2e, self.fingerprint, self.setup).addTo(link)
        return link

    def headers(self) -> Headers:
        headers = {} if self.service is None else {"service": self.service}
        if self.e2e is not None and self.fingerprint is not None:
            headers["e2e"] = self.e2e
            headers["fingerprint"] = self.fingerprint
        return headers

    @classmethod
    def fromElement(cls, element: Optional[domish.Element],
                    setup: str = "active") -> "LinkProfile":
        if element is None:
            return cls()
        if (element.uri, element.name) != (ns.NS_LINK_PROFILE, "link"):
            raise MalformedSI("link profile element must be <link/>")
        service = element.getAttribute("service")
        params = _readE2E(element, offer=(setup == "active"))
        return cls(None if service is None else checkServiceName(service),
                   params.mode if params is not None else None,
                   params.fingerprint.value if params is not None else None, setup)

    @classmethod
    def fromHeaders(cls, headers: Mapping[str, object]) -> "LinkProfile":
        clean = _cleanHeaders(headers, ("service", "e2e", "fingerprint", "setup"))
        service = clean.get("service")
        e2e, fingerprint = clean.get("e2e"), clean.get("fingerprint")
        if (e2e is None) != (fingerprint is None):
            raise MalformedSI("e2e and fingerprint go together")
        profile = cls(None if service is None else checkServiceName(service),
                      e2e, fingerprint, clean.get("setup", "active"))
        if e2e is not None:
            _e2eParams(e2e, fingerprint, profile.setup)  # checks them
        return profile


def _readE2E(element: domish.Element, offer: bool):
    """The e2e field of a profile element (an offer's, or an answer's)."""
    try:
        params = e2ewire.E2EParams.fromParent(element)
        if params is not None:
            if offer:
                e2ewire.checkSetup(params.fingerprint.setup, "passive")
            else:
                e2ewire.checkSetup("active", params.fingerprint.setup)
    except e2ewire.Malformed as e:
        raise MalformedSI("e2e: %s" % (e,))
    return params


def _e2eParams(mode: str, fingerprint: Optional[str], setup: str):
    try:
        return e2ewire.E2EParams(e2ewire.Fingerprint(fingerprint or "", setup), mode)
    except e2ewire.Malformed as e:
        raise MalformedSI("e2e: %s" % (e,))


def _nonNegative(name: str, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not value.isdigit() or not value.isascii():
        raise MalformedSI("file %s %r is not a non-negative integer" % (name, value))
    return str(int(value))


@dataclass
class FileProfile(Profile):
    """
    XEP-0096 ``<file name size [date] [hash]><desc/><range offset length/></file>``.

    Headers: ``name``, ``size``, ``date``, ``hash``, ``desc``; ``range`` is
    ``"true"`` when the sender supports ranged transfers, with ``offset`` and
    ``length`` when a range was asked for.
    """

    namespace = ns.NS_SI_FILE_TRANSFER
    name: str = ""
    size: str = "0"
    date: Optional[str] = None
    hash: Optional[str] = None
    desc: Optional[str] = None
    range: bool = False
    offset: Optional[str] = None
    length: Optional[str] = None
    #: The e2e field, as in the link profile (docs/e2e.rst): a
    #: ``<fingerprint/>`` (and ``<bytes/>``) child of ``<file/>``.
    e2e: Optional[str] = None
    fingerprint: Optional[str] = None

    def _check(self) -> None:
        if not self.name:
            raise MalformedSI("file-transfer offer has no file name")
        for key in ("name", "date", "hash", "desc"):
            _text(getattr(self, key), "file %s" % key)
        for key in ("size", "offset", "length"):
            _nonNegative(key, getattr(self, key))

    def toElement(self) -> domish.Element:
        self._check()
        f = domish.Element((ns.NS_SI_FILE_TRANSFER, "file"))
        f["name"] = self.name
        f["size"] = self.size
        if self.date is not None:
            f["date"] = self.date
        if self.hash is not None:
            f["hash"] = self.hash
        if self.desc is not None:
            f.addElement("desc", content=self.desc)
        if self.range or self.offset is not None or self.length is not None:
            r = f.addElement("range")
            if self.offset is not None:
                r["offset"] = self.offset
            if self.length is not None:
                r["length"] = self.length
        if self.e2e is not None:
            _e2eParams(self.e2e, self.fingerprint, "active").addTo(f)
        return f

    def headers(self) -> Headers:
        h: Headers = {"name": self.name, "size": self.size}
        for key in ("date", "hash", "desc", "offset", "length", "e2e", "fingerprint"):
            value = getattr(self, key)
            if value is not None:
                h[key] = value
        if self.range or self.offset is not None or self.length is not None:
            h["range"] = "true"
        return h

    @classmethod
    def _build(cls, name, size, date, hash, desc, range, offset, length,
               e2e=None, fingerprint=None) -> "FileProfile":
        if not name:
            raise MalformedSI("file-transfer offer has no file name")
        if size is None:
            raise MalformedSI("file-transfer offer has no file size")
        built = cls(name=name, size=_nonNegative("size", size), date=date, hash=hash,
                    desc=desc, range=bool(range) or offset is not None or length is not None,
                    offset=_nonNegative("offset", offset),
                    length=_nonNegative("length", length), e2e=e2e,
                    fingerprint=fingerprint)
        built._check()
        if (e2e is None) != (fingerprint is None):
            raise MalformedSI("e2e and fingerprint go together")
        if e2e is not None:
            _e2eParams(e2e, fingerprint, "active")  # checks them
        return built

    @classmethod
    def fromElement(cls, element: Optional[domish.Element]) -> "FileProfile":
        if element is None:
            raise MalformedSI("file-transfer offer has no <file/> element")
        if (element.uri, element.name) != (ns.NS_SI_FILE_TRANSFER, "file"):
            raise MalformedSI("file-transfer profile element must be <file/>")
        descEl = _child(element, ns.NS_SI_FILE_TRANSFER, "desc")
        rangeEl = _child(element, ns.NS_SI_FILE_TRANSFER, "range")
        params = _readE2E(element, offer=True)
        return cls._build(
            element.getAttribute("name"), element.getAttribute("size"),
            element.getAttribute("date"), element.getAttribute("hash"),
            None if descEl is None else str(descEl),
            rangeEl is not None,
            None if rangeEl is None else rangeEl.getAttribute("offset"),
            None if rangeEl is None else rangeEl.getAttribute("length"),
            params.mode if params is not None else None,
            params.fingerprint.value if params is not None else None)

    @classmethod
    def fromHeaders(cls, headers: Mapping[str, object]) -> "FileProfile":
        h = _cleanHeaders(headers, ("name", "size", "date", "hash", "desc",
                                    "range", "offset", "length", "e2e", "fingerprint"))
        rangeFlag = h.get("range", "false").lower()
        if rangeFlag not in ("true", "false", "1", "0", "yes", "no"):
            raise MalformedSI("file range %r is not a boolean" % (h["range"],))
        return cls._build(h.get("name"), h.get("size"), h.get("date"), h.get("hash"),
                          h.get("desc"), rangeFlag in ("true", "1", "yes"),
                          h.get("offset"), h.get("length"), h.get("e2e"),
                          h.get("fingerprint"))


def fileRangeAnswer(offset: Optional[int] = None,
                    length: Optional[int] = None) -> domish.Element:
    """
    The ``<file><range offset length/></file>`` of a file-transfer SI result:
    XEP-0096's way for the receiver to ask for part of the file (resume).
    ``<desc/>`` and the file's attributes are not repeated in a result.
    """
    f = domish.Element((ns.NS_SI_FILE_TRANSFER, "file"))
    r = f.addElement("range")
    if offset is not None:
        r["offset"] = str(int(offset))
    if length is not None:
        r["length"] = str(int(length))
    return f


def fileAnswer(e2e: str, fingerprint: str, rangeAsked: bool = False,
               offset: Optional[int] = None, length: Optional[int] = None
               ) -> domish.Element:
    """
    A file-transfer SI result's ``<file/>`` that accepts an e2e stream
    (``setup='passive'``), with a ``<range/>`` when one is asked for.
    """
    f = (fileRangeAnswer(offset, length) if rangeAsked
         else domish.Element((ns.NS_SI_FILE_TRANSFER, "file")))
    return _e2eParams(e2e, fingerprint, "passive").addTo(f)


def answerHeaders(profile: str, payload: Optional[domish.Element]) -> Headers:
    """
    What the accepting peer's profile element asks of the sender.  Only the
    file-transfer profile has anything: ``offset`` (and ``length`` when
    given) of a ``<range/>``.  No range, or one without attributes, means the
    whole file (XEP-0096 section 2), and gives ``{}``.
    """
    if (profile == ns.NS_LINK_PROFILE and payload is not None
            and (payload.uri, payload.name) == (ns.NS_LINK_PROFILE, "link")):
        # the e2e stream the acceptor agreed to (docs/e2e.rst)
        return LinkProfile.fromElement(payload, setup="passive").headers()
    if profile != ns.NS_SI_FILE_TRANSFER or payload is None:
        return {}
    if (payload.uri, payload.name) != (ns.NS_SI_FILE_TRANSFER, "file"):
        return {}
    params = _readE2E(payload, offer=False)
    e2eHeaders: Headers = ({} if params is None else
                           {"e2e": params.mode, "fingerprint": params.fingerprint.value})
    rangeEl = _child(payload, ns.NS_SI_FILE_TRANSFER, "range")
    if rangeEl is None:
        return e2eHeaders
    offset = _nonNegative("offset", rangeEl.getAttribute("offset"))
    length = _nonNegative("length", rangeEl.getAttribute("length"))
    if offset is None and length is None:
        return e2eHeaders
    headers: Headers = {"offset": offset or "0"}
    if length is not None:
        headers["length"] = length
    headers.update(e2eHeaders)
    return headers


#: Profile namespace -> codec.  A profile without a codec cannot be enabled.
PROFILES: Dict[str, Type[Profile]] = {
    ns.NS_LINK_PROFILE: LinkProfile,
    ns.NS_SI_FILE_TRANSFER: FileProfile,
}


def headersFromPayload(profile: str, payload: Optional[domish.Element]) -> Headers:
    """Decode an offer's profile element; MalformedSI if it is wrong."""
    try:
        codec = PROFILES[profile]
    except KeyError:
        raise MalformedSI("no codec for profile %s" % (profile,))
    return codec.fromElement(payload).headers()


def payloadFromHeaders(profile: str, headers: Mapping[str, object]) -> domish.Element:
    """Encode headers as the profile element of an offer."""
    try:
        codec = PROFILES[profile]
    except KeyError:
        raise MalformedSI("no codec for profile %s" % (profile,))
    return codec.fromHeaders(headers).toElement()
