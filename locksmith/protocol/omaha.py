"""The Omaha protocol 3.0 as CoreOS spoke it: request builder and response parser (client side),
request parser and response builder (our development server).

XML is built with the stdlib and parsed with defusedxml: a hostile or malformed document becomes an
`OmahaError` with one line of explanation, never a crash.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from locksmith.protocol import release

COREOS_APPID = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
CLIENT_VERSION = "update_engine-0.4.10"
# A real reply is a few hundred bytes; anything far bigger is a mistake or an attack.
MAX_DOCUMENT_BYTES = 256 * 1024


class EventType:
    DOWNLOAD_COMPLETE = 1
    INSTALL_COMPLETE = 2
    UPDATE_COMPLETE = 3
    UPDATE_DOWNLOAD_STARTED = 13
    UPDATE_DOWNLOAD_FINISHED = 14


class EventResult:
    ERROR = 0
    SUCCESS = 1
    SUCCESS_REBOOT = 2


class ErrorCode:
    """The subset of update_engine's ErrorCode values we report."""

    ERROR = 1
    OMAHA_REQUEST_ERROR = 2
    OMAHA_RESPONSE_HANDLER_ERROR = 3
    SET_BOOTABLE_FLAG_ERROR = 6
    INSTALL_DEVICE_OPEN_ERROR = 7
    DOWNLOAD_TRANSFER_ERROR = 9
    PAYLOAD_HASH_MISMATCH = 10
    PAYLOAD_SIZE_MISMATCH = 11
    DOWNLOAD_PAYLOAD_VERIFICATION_ERROR = 12
    DOWNLOAD_WRITE_ERROR = 14
    DOWNLOAD_PAYLOAD_PUBKEY_VERIFICATION_ERROR = 18
    OMAHA_REQUEST_XML_PARSE_ERROR = 31
    OMAHA_RESPONSE_INVALID = 34
    OMAHA_UPDATE_IGNORED_PER_POLICY = 35  # we send it for a refused downgrade


class OmahaError(Exception):
    """A reply (or request) that does not follow the protocol; the message is one line."""

    def __init__(self, message: str, code: int = ErrorCode.OMAHA_RESPONSE_INVALID) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Event:
    type: int
    result: int
    errorcode: int | None = None
    previousversion: str | None = None


@dataclass(frozen=True)
class AppInfo:
    """What the client says about itself in every request."""

    version: str
    track: str
    board: str
    machineid: str
    bootid: str
    arch: str
    appid: str = COREOS_APPID


def build_request(app: AppInfo, *, updatecheck: bool = True, ping: bool = True, events: list[Event] = ()) -> bytes:
    root = ET.Element("request", protocol="3.0", version=CLIENT_VERSION, updaterversion=CLIENT_VERSION)
    root.set("installsource", "scheduler")
    root.set("ismachine", "1")
    ET.SubElement(root, "os", platform="CoreOS", version="Chateau", sp=f"{app.version}_{app.arch}")
    app_el = ET.SubElement(
        root,
        "app",
        appid=app.appid,
        version=app.version,
        track=app.track,
        bootid=app.bootid,
        machineid=app.machineid,
        oem="",
        oemversion="",
        alephversion=app.version,
        lang="en-US",
        board=app.board,
        hardware_class="",
        delta_okay="false",
    )
    if ping:
        ET.SubElement(app_el, "ping", active="1")
    if updatecheck:
        ET.SubElement(app_el, "updatecheck")
    for event in events:
        attrs = {"eventtype": str(event.type), "eventresult": str(event.result)}
        if event.errorcode is not None:
            attrs["errorcode"] = str(event.errorcode)
        if event.previousversion is not None:
            attrs["previousversion"] = event.previousversion
        ET.SubElement(app_el, "event", attrs)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


@dataclass(frozen=True)
class UpdateOffer:
    """An `ok` updatecheck: where to fetch which payload, and what it must hash to."""

    version: str
    codebases: tuple[str, ...]
    package_name: str
    size: int
    sha256_b64: str

    def payload_urls(self) -> list[str]:
        return [base + self.package_name for base in self.codebases]


@dataclass(frozen=True)
class NoUpdate:
    pass


def _parse(data: bytes, what: str) -> ET.Element:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise OmahaError(
            f"Omaha {what} is {len(data)} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit; check the SERVER url",
            ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR,
        )
    if not data.strip():
        raise OmahaError(f"Omaha {what} is empty; check the SERVER url", ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR)
    try:
        return SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise OmahaError(
            f"Omaha {what} refused as hostile XML ({type(exc).__name__}); check the SERVER url",
            ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR,
        ) from None
    except (ET.ParseError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OmahaError(
            f"Omaha {what} is not well-formed XML ({detail}); check the SERVER url",
            ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR,
        ) from None


def _required(element: ET.Element, attr: str, where: str) -> str:
    value = element.get(attr)
    if value is None or not value.strip():
        raise OmahaError(f"Omaha response: {where} has no {attr} attribute")
    return value.strip()


def parse_response(data: bytes) -> UpdateOffer | NoUpdate:
    root = _parse(data, "response")
    if root.tag != "response":
        raise OmahaError(f"Omaha response: root element is <{root.tag[:40]}>, expected <response>")
    app = root.find("app")
    if app is None:
        raise OmahaError("Omaha response: no <app> element")
    check = app.find("updatecheck")
    if check is None:
        raise OmahaError("Omaha response: <app> has no <updatecheck> element")
    status = _required(check, "status", "<updatecheck>")
    if status == "noupdate":
        return NoUpdate()
    if status != "ok":
        raise OmahaError(f"Omaha response: updatecheck status is {status[:60]!r} (expected ok or noupdate)")

    codebases = tuple(
        _required(url, "codebase", "<url>") for url in check.findall("urls/url") if url.get("codebase") is not None
    )
    if not codebases:
        raise OmahaError("Omaha response: no urls/url@codebase to download from")
    for base in codebases:
        if not base.startswith(("http://", "https://")):
            raise OmahaError(f"Omaha response: codebase {base[:80]!r} is not an http(s) URL")
    manifest = check.find("manifest")
    if manifest is None:
        raise OmahaError("Omaha response: updatecheck has no <manifest>")
    version = _required(manifest, "version", "<manifest>")
    package = manifest.find("packages/package")
    if package is None:
        raise OmahaError("Omaha response: manifest has no packages/package")
    name = _required(package, "name", "<package>")
    if "/" in name or name in (".", ".."):
        raise OmahaError(f"Omaha response: package name {name[:80]!r} is not a plain file name")
    size_text = _required(package, "size", "<package>")
    try:
        size = int(size_text)
    except ValueError:
        raise OmahaError(f"Omaha response: package size {size_text[:40]!r} is not a number") from None
    if size <= 0:
        raise OmahaError(f"Omaha response: package size {size} must be greater than 0")
    sha256 = None
    for action in manifest.findall("actions/action"):
        if action.get("event") == "postinstall":
            sha256 = _required(action, "sha256", '<action event="postinstall">')
            break
    if sha256 is None:
        raise OmahaError('Omaha response: no <action event="postinstall" sha256=…>; the payload cannot be verified')
    try:
        release.decode_sha256(sha256)
    except release.ReleaseFormatError:
        raise OmahaError(f"Omaha response: sha256 {sha256[:60]!r} is not a base64 SHA-256 digest") from None
    return UpdateOffer(version=version, codebases=codebases, package_name=name, size=size, sha256_b64=sha256)


# ---- server side (the development update server) ----


@dataclass(frozen=True)
class ParsedRequest:
    appid: str
    version: str
    track: str
    machineid: str
    board: str
    updatecheck: bool
    events: list[Event] = field(default_factory=list)


def _int_attr(element: ET.Element, attr: str) -> int | None:
    value = element.get(attr)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise OmahaError(f"Omaha request: <event> {attr}={value[:20]!r} is not a number") from None


def parse_request(data: bytes) -> ParsedRequest:
    root = _parse(data, "request")
    if root.tag != "request":
        raise OmahaError(f"Omaha request: root element is <{root.tag[:40]}>, expected <request>")
    if root.get("protocol") != "3.0":
        raise OmahaError(f"Omaha request: protocol {root.get('protocol')!r} is not 3.0")
    app = root.find("app")
    if app is None:
        raise OmahaError("Omaha request: no <app> element")
    events = []
    for ev in app.findall("event"):
        etype, eresult = _int_attr(ev, "eventtype"), _int_attr(ev, "eventresult")
        if etype is None or eresult is None:
            raise OmahaError("Omaha request: <event> needs eventtype and eventresult")
        events.append(Event(etype, eresult, _int_attr(ev, "errorcode"), ev.get("previousversion")))
    return ParsedRequest(
        appid=app.get("appid", ""),
        version=app.get("version", ""),
        track=app.get("track", "") or "stable",
        machineid=app.get("machineid", ""),
        board=app.get("board", ""),
        updatecheck=app.find("updatecheck") is not None,
        events=events,
    )


def build_response(appid: str, offer: UpdateOffer | NoUpdate | None, *, server: str = "locksmith-dev") -> bytes:
    """A reply for one app; `offer=None` answers a request that only carried events."""
    root = ET.Element("response", protocol="3.0", server=server)
    ET.SubElement(root, "daystart", elapsed_seconds="0")
    app = ET.SubElement(root, "app", appid=appid, status="ok")
    if isinstance(offer, NoUpdate):
        ET.SubElement(app, "updatecheck", status="noupdate")
    elif isinstance(offer, UpdateOffer):
        check = ET.SubElement(app, "updatecheck", status="ok")
        urls = ET.SubElement(check, "urls")
        for base in offer.codebases:
            ET.SubElement(urls, "url", codebase=base)
        manifest = ET.SubElement(check, "manifest", version=offer.version)
        packages = ET.SubElement(manifest, "packages")
        ET.SubElement(packages, "package", name=offer.package_name, size=str(offer.size), required="false")
        actions = ET.SubElement(manifest, "actions")
        ET.SubElement(
            actions,
            "action",
            event="postinstall",
            sha256=offer.sha256_b64,
            needsadmin="false",
            IsDelta="false",
            DisablePayloadBackoff="true",
        )
    ET.SubElement(app, "event", status="ok")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)
