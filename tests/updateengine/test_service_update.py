"""The service on a real bus, updating a real GPT image from the real dev server, observed via signals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness.devtools.dbus import PrivateBus
from harness.devtools.omaha_server import DevServer
from locksmith.protocol import update1
from locksmith.protocol.omaha import ErrorCode
from locksmith.protocol.release import sign_digest
from locksmith.protocol.update1 import Operation
from locksmith.updateengine.keys import generate_keypair, load_private_key

from .ue_support import (
    World,
    corrupt_release,
    ends_in_error_then_idle,
    image_sha256,
    make_world,
    running_service,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def server(world: World):
    with DevServer(world.root) as srv:
        yield srv


async def events_arrived(server: DevServer, count: int) -> None:
    """Events are sent after the state change that announces them; wait for the server to log them."""
    async with asyncio.timeout(10):
        while len(server.events) < count:  # noqa: ASYNC110 - the server runs in another thread
            await asyncio.sleep(0.02)


def error_codes(server: DevServer) -> list[int | None]:
    return [e["errorcode"] for e in server.events if e["eventresult"] == 0]


async def test_happy_path_installs_into_inactive_slot(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    before = world.usr_a_fingerprint()
    async with running_service(world.config(server.update_url)) as (_engine, rec):
        await rec.call("AttemptUpdate")
        ops = await rec.wait_for(lambda o: o[-1] is Operation.UPDATED_NEED_REBOOT)
        reply = await rec.call("GetStatus")
        await events_arrived(server, 1)  # sent after the state that announces it
    assert ops == [
        Operation.CHECKING_FOR_UPDATE,
        Operation.UPDATE_AVAILABLE,
        Operation.DOWNLOADING,
        Operation.VERIFYING,
        Operation.FINALIZING,
        Operation.UPDATED_NEED_REBOOT,
    ]
    progress = [s.progress for s in rec.statuses if s.current_operation is Operation.DOWNLOADING]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) > 3
    assert reply.body[2] == "UPDATE_STATUS_UPDATED_NEED_REBOOT" and reply.body[3] == "2.0.0"
    image = world.images["2.0.0"]
    assert world.slot_sha256("USR-B", image.stat().st_size) == image_sha256(image)
    b = world.slot("USR-B")
    assert (b.tries, b.successful) == (1, False) and b.priority > world.slot("USR-A").priority
    assert world.usr_a_fingerprint()[0] == before[0]
    assert [(e["eventtype"], e["eventresult"]) for e in server.events] == [(3, 1)]


async def test_need_reboot_is_sticky_and_reset_forgets(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    async with running_service(world.config(server.update_url)) as (engine, rec):
        await rec.call("AttemptUpdate")
        await rec.wait_for(lambda o: o[-1] is Operation.UPDATED_NEED_REBOOT)
        await events_arrived(server, 1)
        requests = server.requests
        await rec.call("AttemptUpdate")
        await asyncio.sleep(0.2)
        assert server.requests == requests and engine.status.current_operation is Operation.UPDATED_NEED_REBOOT
        assert await rec.error_of("ResetStatus") is None
        await rec.wait_for(lambda o: o[-1] is Operation.IDLE)
    assert not world.slot("USR-B").bootable


async def test_noupdate_when_current(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    async with running_service(world.config(server.update_url, version="2.0.0")) as (engine, rec):
        await rec.call("AttemptUpdate")
        ops = await rec.wait_for(lambda o: o[-1] is Operation.IDLE)
    assert ops == [Operation.CHECKING_FOR_UPDATE, Operation.IDLE]
    assert engine.status.last_checked_time > 0 and server.events == []
    assert world.slot("USR-B").priority == 0


async def test_channel_switch_gets_beta_release(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    world.add_release("beta", "3.0.0")
    async with running_service(world.config(server.update_url, group="beta")) as (engine, rec):
        await rec.call("AttemptUpdate")
        await rec.wait_for(lambda o: o[-1] is Operation.UPDATED_NEED_REBOOT)
        assert engine.status.new_version == "3.0.0"
        await events_arrived(server, 1)
    image = world.images["3.0.0"]
    assert world.slot_sha256("USR-B", image.stat().st_size) == image_sha256(image)
    assert server.events[0]["track"] == "beta"


async def _expect_error(world: World, server: DevServer, code: int) -> None:
    before = world.usr_a_fingerprint()
    async with running_service(world.config(server.update_url)) as (engine, rec):
        await rec.call("AttemptUpdate")
        ops = await rec.wait_for(ends_in_error_then_idle)
        assert Operation.CHECKING_FOR_UPDATE in ops
        assert engine.status.new_version == "0.0.0.0"
        await events_arrived(server, 1)
    assert world.usr_a_fingerprint() == before
    assert not world.slot("USR-B").bootable
    assert error_codes(server) == [code]


async def test_wrong_sha256(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    corrupt_release(world.root / "stable" / "2.0.0", sha256="A" * 43 + "=")
    await _expect_error(world, server, ErrorCode.PAYLOAD_HASH_MISMATCH)


async def test_bad_signature(world: World, server: DevServer, dbus_bus: PrivateBus, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    generate_keypair(other, tmp_path / "other.pub.pem")
    sig = world.root / "stable" / "2.0.0" / "update.gz.sig"
    sig.write_bytes(sign_digest(load_private_key(other), b"\x00" * 32))
    await _expect_error(world, server, ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR)


async def test_truncated_download_then_clean_retry(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    server.truncate_downloads = 1
    async with running_service(world.config(server.update_url)) as (_engine, rec):
        await rec.call("AttemptUpdate")
        ops = await rec.wait_for(lambda o: o[-1] is Operation.UPDATED_NEED_REBOOT)
    assert Operation.REPORTING_ERROR_EVENT not in ops
    image = world.images["2.0.0"]
    assert world.slot_sha256("USR-B", image.stat().st_size) == image_sha256(image)
    assert server.truncate_downloads == 0


async def test_truncated_every_time_is_an_error(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    server.truncate_downloads = 100
    await _expect_error(world, server, ErrorCode.DOWNLOAD_TRANSFER_ERROR)


@pytest.mark.parametrize(
    "reply",
    [
        b"<response><app><updatecheck status='ok'>",  # malformed
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><response>&b;</response>',
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><response>&x;</response>',
        b"<html><body>captive portal</body></html>",  # wrong root
        b"<response><app><updatecheck status='ok'><urls/></updatecheck></app></response>",  # missing parts
        b"<response><app><updatecheck status='error-internal'/></app></response>",
        b"<response>" + b"x" * 300_000 + b"</response>",  # huge
    ],
    ids=["malformed", "billion-laughs", "external-entity", "wrong-root", "incomplete", "bad-status", "huge"],
)
async def test_hostile_or_malformed_reply(world: World, server: DevServer, dbus_bus: PrivateBus, reply: bytes) -> None:
    server.reply_override = reply
    before = world.usr_a_fingerprint()
    async with running_service(world.config(server.update_url)) as (_engine, rec):
        await rec.call("AttemptUpdate")
        ops = await rec.wait_for(ends_in_error_then_idle)
    assert ops == [Operation.CHECKING_FOR_UPDATE, Operation.REPORTING_ERROR_EVENT, Operation.IDLE]
    assert world.usr_a_fingerprint() == before
    codes = error_codes(server)
    assert len(codes) == 1 and codes[0] in (
        ErrorCode.OMAHA_REQUEST_XML_PARSE_ERROR,
        ErrorCode.OMAHA_RESPONSE_INVALID,
    )


async def test_unwritable_target(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    # A payload bigger than the slot is what a full target looks like from the writer's side.
    world.add_release("stable", "2.1.0", filler=6 * 1024 * 1024)
    before = world.usr_a_fingerprint()
    async with running_service(world.config(server.update_url)) as (_engine, rec):
        await rec.call("AttemptUpdate")
        await rec.wait_for(ends_in_error_then_idle)
    assert world.usr_a_fingerprint() == before
    assert not world.slot("USR-B").bootable
    assert len(error_codes(server)) == 1


async def test_reset_not_allowed_while_busy_is_a_dbus_error(world: World, dbus_bus: PrivateBus) -> None:
    async with running_service(world.config("http://127.0.0.1:9/v1/update/")) as (engine, rec):
        engine._status = engine.status.evolve(current_operation=Operation.DOWNLOADING)
        assert await rec.error_of("ResetStatus") == "com.coreos.update1.Error.ResetNotAllowed"
        assert await rec.error_of("ResetStatus") == update1.RESET_NOT_ALLOWED
        engine._status = engine.status.evolve(current_operation=Operation.IDLE)
        assert await rec.error_of("ResetStatus") is None


async def test_missing_target_disk_is_an_error_event(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    config = world.config(server.update_url, disk=world.tmp / "gone.img")
    async with running_service(config) as (_engine, rec):
        await rec.call("AttemptUpdate")
        await rec.wait_for(ends_in_error_then_idle)
        await events_arrived(server, 1)
    assert error_codes(server) == [ErrorCode.INSTALL_DEVICE_OPEN_ERROR]
