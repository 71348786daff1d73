"""Omaha request/response: CoreOS's shape byte for byte, and a parser that never crashes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locksmith.protocol import omaha
from locksmith.protocol.omaha import AppInfo, Event, NoUpdate, OmahaError, UpdateOffer

APP = AppInfo(version="1.0.0", track="beta", board="amd64-usr", machineid="m" * 32, bootid="b" * 32, arch="x86_64")
SHA = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # sha256 of b""
OFFER = UpdateOffer("2.0.0", ("http://127.0.0.1:1/a/", "http://127.0.0.1:1/b/"), "update.gz", 123, SHA)


def test_request_has_coreos_shape() -> None:
    root = ET.fromstring(omaha.build_request(APP, events=[Event(3, 2, previousversion="0.9.0")]))
    assert root.tag == "request" and root.get("protocol") == "3.0" and root.get("ismachine") == "1"
    assert root.get("version", "").startswith("update_engine-")
    os_el = root.find("os")
    assert os_el is not None and os_el.attrib == {"platform": "CoreOS", "version": "Chateau", "sp": "1.0.0_x86_64"}
    app = root.find("app")
    assert app is not None
    assert app.get("appid") == "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
    assert (app.get("version"), app.get("track"), app.get("board")) == ("1.0.0", "beta", "amd64-usr")
    assert app.get("machineid") == "m" * 32 and app.get("bootid") == "b" * 32
    assert app.find("ping").attrib == {"active": "1"}  # type: ignore[union-attr]
    assert app.find("updatecheck") is not None
    assert app.find("event").attrib == {"eventtype": "3", "eventresult": "2", "previousversion": "0.9.0"}  # type: ignore[union-attr]


def test_error_event_carries_errorcode_and_no_updatecheck() -> None:
    body = omaha.build_request(APP, updatecheck=False, ping=False, events=[Event(3, 0, errorcode=10)])
    parsed = omaha.parse_request(body)
    assert not parsed.updatecheck and parsed.events == [Event(3, 0, 10, None)]


def test_response_roundtrip() -> None:
    assert omaha.parse_response(omaha.build_response(omaha.COREOS_APPID, OFFER)) == OFFER
    assert OFFER.payload_urls() == ["http://127.0.0.1:1/a/update.gz", "http://127.0.0.1:1/b/update.gz"]
    assert isinstance(omaha.parse_response(omaha.build_response("x", NoUpdate())), NoUpdate)


def test_coreos_style_reply_parses() -> None:
    reply = f"""<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="update.core-os.net"><daystart elapsed_seconds="0"></daystart>
 <app appid="{{e96281a6-d1af-4bde-9a0a-97b76e56dc57}}" status="ok"><updatecheck status="ok">
  <urls><url codebase="https://update.release.core-os.net/amd64-usr/1068.9.0/"></url></urls>
  <manifest version="1068.9.0"><packages><package hash="x" name="update.gz" size="212555113" required="false">
  </package></packages><actions><action event="postinstall" sha256="{SHA}" needsadmin="false" IsDelta="false"
  DisablePayloadBackoff="true"></action></actions></manifest></updatecheck><event status="ok"></event></app>
</response>""".encode()
    offer = omaha.parse_response(reply)
    assert isinstance(offer, UpdateOffer)
    assert offer.version == "1068.9.0" and offer.size == 212555113 and offer.package_name == "update.gz"


def _mutate(attr: str, value: str | None) -> bytes:
    root = ET.fromstring(omaha.build_response("x", OFFER))
    for el in root.iter():
        if attr in el.attrib and el.tag not in ("app", "event"):
            if value is None:
                del el.attrib[attr]
            else:
                el.set(attr, value)
            break
    return ET.tostring(root)


@pytest.mark.parametrize(
    ("attr", "value", "needle"),
    [
        ("size", "0", "greater than 0"),
        ("size", "-5", "greater than 0"),
        ("size", "ten", "not a number"),
        ("sha256", None, "postinstall"),
        ("sha256", "bm90IGEgaGFzaA==", "not a base64 SHA-256"),
        ("codebase", "file:///etc/", "not an http(s) URL"),
        ("name", "../../etc/passwd", "plain file name"),
        ("version", None, "<manifest> has no version"),
        ("status", "error-osnotsupported", "expected ok or noupdate"),
    ],
)
def test_invalid_reply_is_one_line_error(attr: str, value: str | None, needle: str) -> None:
    with pytest.raises(OmahaError) as err:
        omaha.parse_response(_mutate(attr, value))
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE r [<!ENTITY a "a"><!ENTITY b "&a;&a;">]><response>&b;</response>',
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><response>&x;</response>',
        b"<response>" + b" " * (omaha.MAX_DOCUMENT_BYTES + 1) + b"</response>",
        b"\xff\xfe garbage",
        b"",
    ],
)
def test_hostile_documents_rejected(data: bytes) -> None:
    with pytest.raises(OmahaError):
        omaha.parse_response(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_bytes_never_crash(data: bytes) -> None:
    try:
        omaha.parse_response(data)
    except OmahaError as exc:
        assert "\n" not in str(exc)


_attr_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(["ok", "noupdate", "", "OK"]) | _attr_text,
    size=st.integers(-5, 10**12).map(str) | _attr_text,
    sha=st.sampled_from([SHA, ""]) | _attr_text,
    codebase=st.sampled_from(["http://h/", "https://h/x/"]) | _attr_text,
    drop=st.sets(st.sampled_from(["urls", "manifest", "packages", "actions", "app"])),
)
def test_fuzz_structured_replies(status: str, size: str, sha: str, codebase: str, drop: set[str]) -> None:
    root = ET.fromstring(omaha.build_response("x", OFFER))
    for el in root.iter():
        if el.tag == "updatecheck":
            el.set("status", status)
        elif el.tag == "package":
            el.set("size", size)
        elif el.tag == "action":
            el.set("sha256", sha)
        elif el.tag == "url":
            el.set("codebase", codebase)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in drop:
                parent.remove(child)
    try:
        result = omaha.parse_response(ET.tostring(root))
    except OmahaError:
        return
    if isinstance(result, UpdateOffer):
        assert result.size > 0 and len(result.codebases) >= 1 and result.sha256_b64
    else:
        assert status.strip() == "noupdate"
