"""The dev update server as a console script: real HTTP on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.devtools.omaha_server import DevServer, newest_release, version_key
from locksmith.protocol import omaha

from .ue_support import World, make_world

BIN = Path(sys.executable).parent


def test_version_ordering() -> None:
    assert version_key("1068.10.0") > version_key("1068.9.0") > version_key("1068.9")


def test_newest_release_per_channel(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.add_release("stable", "2.10.0", filler=0)
    world.add_release("stable", "2.9.0", filler=0)
    (world.root / "stable" / "junk").mkdir()  # no release.json: skipped
    release = newest_release(world.root, "stable")
    assert release is not None and release.version == "2.10.0"
    assert newest_release(world.root, "nosuch") is None
    assert newest_release(world.root, "..") is None


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def test_console_script_serves_omaha_payload_and_events(world: World, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [str(BIN / "locksmith-update-server"), "--root", str(world.root), "--port", "0", "--events-file", str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/update/")
        app = omaha.AppInfo("1.0.0", "stable", "amd64-usr", "m" * 32, "b" * 32, "x86_64")
        reply = httpx.post(url, content=omaha.build_request(app), headers={"Content-Type": "text/xml"})
        offer = omaha.parse_response(reply.content)
        assert isinstance(offer, omaha.UpdateOffer) and offer.version == "2.0.0"
        payload = httpx.get(offer.payload_urls()[0]).content
        meta = json.loads((world.root / "stable" / "2.0.0" / "release.json").read_text())
        assert len(payload) == offer.size == meta["size"] and offer.sha256_b64 == meta["sha256"]
        assert httpx.get(offer.payload_urls()[0] + ".sig").status_code == 200
        assert httpx.get(url.replace("/v1/update/", "/stable/../../etc/passwd")).status_code == 404

        current = omaha.AppInfo("2.0.0", "stable", "amd64-usr", "m" * 32, "b" * 32, "x86_64")
        reply = httpx.post(url, content=omaha.build_request(current, events=[omaha.Event(3, 2, None, "1.0.0")]))
        assert isinstance(omaha.parse_response(reply.content), omaha.NoUpdate)
        logged = httpx.get(url.replace("/v1/update/", "/events")).json()
        assert logged[-1]["previousversion"] == "1.0.0" and logged[-1]["eventresult"] == 2
        assert json.loads(events.read_text().splitlines()[-1]) == logged[-1]

        bad = httpx.post(url, content=b"<request")
        assert bad.status_code == 400
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_refuses_non_loopback(world: World) -> None:
    with pytest.raises(ValueError, match="not a loopback"):
        DevServer(world.root, host="0.0.0.0")
    result = subprocess.run(
        [str(BIN / "locksmith-update-server"), "--root", str(world.root), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "not a loopback" in result.stderr
