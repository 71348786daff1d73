"""Issue 9, class 7: a release not newer than the booted one is refused (a signed old release is still a
rollback attack), reported once, never downloaded; UPDATE_ENGINE_ALLOW_DOWNGRADE=true allows it, logged."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from harness.devtools.dbus import PrivateBus
from harness.devtools.omaha_server import DevServer, newest_release
from locksmith.disk import slots
from locksmith.protocol import omaha
from locksmith.protocol.omaha import COREOS_APPID, ErrorCode
from locksmith.protocol.update1 import Operation
from locksmith.updateengine import engineconfig

from .ue_support import World, ends_in_error_then_idle, make_world, running_service

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


class HostileServer:
    """The dev server made to offer stable's 2.0.0 whatever the client runs (a replayed old reply)."""

    def __init__(self, world: World) -> None:
        self.log = io.StringIO()
        self.dev = DevServer(world.root, log=self.log)

    def __enter__(self) -> HostileServer:
        self.dev.start()
        release = newest_release(self.dev.root, "stable")
        assert release is not None
        offer = omaha.UpdateOffer(
            version=release.version,
            codebases=(f"{self.dev.base_url}/stable/{release.version}/",),
            package_name=release.release.name,
            size=release.release.size,
            sha256_b64=release.release.sha256,
        )
        self.dev.reply_override = omaha.build_response(COREOS_APPID, offer)
        return self

    def __exit__(self, *exc: object) -> None:
        self.dev.stop()

    def downloads(self) -> int:
        return sum(1 for line in self.log.getvalue().splitlines() if '"GET /stable/' in line)

    def error_codes(self) -> list[int | None]:
        return [e["errorcode"] for e in self.dev.events if e["eventresult"] == 0]


async def events_arrived(server: DevServer, count: int) -> None:
    async with asyncio.timeout(10):
        while len(server.events) < count:  # noqa: ASYNC110 - the server runs in another thread
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("booted", ["3.0.0", "2.0.0", "2.0", "2.0.0+other-build", "10.0.0"])
async def test_not_newer_is_refused_reported_once_and_never_downloaded(
    world: World, dbus_bus: PrivateBus, booted: str
) -> None:
    before = world.usr_a_fingerprint()
    # USR-B as the previous release a host keeps as its fallback: a refusal must not disarm it.
    b_before = slots.mark_installed(world.disk, world.slot("USR-B"))
    assert b_before.bootable
    with HostileServer(world) as server, capture_logs() as logs:
        async with running_service(world.config(server.dev.update_url, version=booted)) as (engine, rec):
            await rec.call("AttemptUpdate")
            ops = await rec.wait_for(ends_in_error_then_idle)
            assert ops == [Operation.CHECKING_FOR_UPDATE, Operation.REPORTING_ERROR_EVENT, Operation.IDLE]
            assert engine.last_error is None  # the server answered: no back-off, a newer release comes soon
            assert engine.status.new_version == "0.0.0.0"
            # The server keeps offering it: checked again, not reported again, not downloaded.
            requests = server.dev.requests
            await rec.call("AttemptUpdate")
            ops = await rec.wait_for(lambda o: len(o) >= 5 and o[-1] is Operation.IDLE)
            assert ops[3:] == [Operation.CHECKING_FOR_UPDATE, Operation.IDLE]
            assert server.dev.requests == requests + 1  # the update check only, no event
        assert server.error_codes() == [ErrorCode.OMAHA_UPDATE_IGNORED_PER_POLICY]
        assert server.downloads() == 0
    assert world.usr_a_fingerprint() == before
    assert world.slot("USR-B") == b_before
    refused = [e for e in logs if e["event"] == "update refused"]
    assert len(refused) == 1 and refused[0]["log_level"] == "error"
    assert "not newer than the booted" in refused[0]["error"]
    same = booted != "3.0.0" and booted != "10.0.0"
    assert ("it is the booted version" in refused[0]["error"]) == same
    assert ("UPDATE_ENGINE_ALLOW_DOWNGRADE=true" in refused[0]["error"]) == (not same)
    assert [e["offered"] for e in logs if e["event"] == "update refused again"] == ["2.0.0"]


async def test_unorderable_offer_is_refused(world: World, dbus_bus: PrivateBus) -> None:
    with HostileServer(world) as server:
        server.dev.reply_override = server.dev.reply_override.replace(b'version="2.0.0"', b'version="latest"')
        assert b'version="latest"' in server.dev.reply_override
        async with running_service(world.config(server.dev.update_url)) as (_engine, rec):
            await rec.call("AttemptUpdate")
            await rec.wait_for(ends_in_error_then_idle)
        assert server.error_codes() == [ErrorCode.OMAHA_UPDATE_IGNORED_PER_POLICY]
        assert server.downloads() == 0


async def test_allow_downgrade_installs_and_says_so(world: World, dbus_bus: PrivateBus) -> None:
    with HostileServer(world) as server, capture_logs() as logs:
        config = world.config(server.dev.update_url, version="3.0.0", allow_downgrade=True)
        async with running_service(config) as (_engine, rec):
            await rec.call("AttemptUpdate")
            ops = await rec.wait_for(lambda o: o[-1] is Operation.UPDATED_NEED_REBOOT)
            await events_arrived(server.dev, 1)
        assert Operation.DOWNLOADING in ops
        assert [(e["eventtype"], e["eventresult"]) for e in server.dev.events] == [(3, 1)]
    b = world.slot("USR-B")
    assert (b.tries, b.successful) == (1, False)
    warned = [e for e in logs if "UPDATE_ENGINE_ALLOW_DOWNGRADE=true" in e["event"]]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert (warned[0]["offered"], warned[0]["booted"]) == ("2.0.0", "3.0.0")


@pytest.mark.parametrize("booted", ["2.0.0", "2.0.0+other-build"])
async def test_allow_downgrade_never_reinstalls_the_booted_version(
    world: World, dbus_bus: PrivateBus, booted: str
) -> None:
    # After a deliberate rollback the server still offers the old release, now the booted one: no loop.
    with HostileServer(world) as server:
        config = world.config(server.dev.update_url, version=booted, allow_downgrade=True)
        async with running_service(config) as (_engine, rec):
            await rec.call("AttemptUpdate")
            await rec.wait_for(ends_in_error_then_idle)
        assert server.error_codes() == [ErrorCode.OMAHA_UPDATE_IGNORED_PER_POLICY]
        assert server.downloads() == 0


def test_allow_downgrade_is_one_declared_setting(tmp_path: Path) -> None:
    conf = tmp_path / "update.conf"
    assert engineconfig.load((tmp_path / "absent",)).allow_downgrade is False
    conf.write_text("UPDATE_ENGINE_ALLOW_DOWNGRADE=true\n")
    assert engineconfig.load((conf,)).allow_downgrade is True
    conf.write_text("UPDATE_ENGINE_ALLOW_DOWNGRADE=maybe\n")
    with pytest.raises(engineconfig.ConfigError, match=r"UPDATE_ENGINE_ALLOW_DOWNGRADE=\"maybe\" \(from .* line 1\)"):
        engineconfig.load((conf,))
    assert engineconfig.load((), {"UPDATE_ENGINE_ALLOW_DOWNGRADE": True}).allow_downgrade is True
