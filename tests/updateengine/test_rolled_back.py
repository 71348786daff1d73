"""A version that did not stick (the bootloader went back to the old slot after its trial boot) is not
installed again on the engine's own schedule, so a rolled-back host does not loop through the same bad
release; asked explicitly (AttemptUpdate) it is, and its new trial decides again."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from harness.devtools.omaha_server import DevServer
from locksmith.protocol.update1 import Operation
from locksmith.updateengine import trial
from locksmith.updateengine.engine import Identity, UpdateEngine
from locksmith.updateengine.target import SlotTarget

from .ue_support import MACHINE_ID, World, make_world

BOOT_1, BOOT_2, BOOT_3 = "a" * 32, "b" * 32, "c" * 32


def _engine(world: World, server: DevServer, version: str, boot_id: str) -> UpdateEngine:
    config = world.config(server.update_url, version=version)
    return UpdateEngine(config, Identity(MACHINE_ID, boot_id), SlotTarget(config.disk, None, config.public_key))


def _downloads(server: DevServer) -> int:
    return len([d for d in server.downloads if "2.0.0" in str(d["file"])])


async def _installed_in_first_boot(world: World, server: DevServer) -> None:
    first = _engine(world, server, "1.0.0", BOOT_1)
    assert await first.check_for_update() is Operation.UPDATED_NEED_REBOOT
    await first.aclose()


async def test_a_rolled_back_version_waits_to_be_asked_for(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with DevServer(world.root) as server:
        await _installed_in_first_boot(world, server)
        assert _downloads(server) == 1
        # The trial boot of 2.0.0 failed and the bootloader went back: 1.0.0 runs again, in a new boot.
        with capture_logs() as logs:
            back = _engine(world, server, "1.0.0", BOOT_2)
        assert any(e["event"] == "update did not stick" and e["installed"] == "2.0.0" for e in logs), logs
        assert (world.state_dir / trial.FAILED_FILE).read_text().strip() == "2.0.0"
        with capture_logs() as logs:
            assert await back.check_for_update(asked=False) is Operation.IDLE  # the schedule's check
        assert _downloads(server) == 1  # not fetched again
        assert any("rolled back on this host" in e["event"] for e in logs), logs
        # An admin asks: installed again, and no longer remembered as failed.
        assert await back.check_for_update(asked=True) is Operation.UPDATED_NEED_REBOOT
        assert _downloads(server) == 2
        assert not (world.state_dir / trial.FAILED_FILE).exists()
        await back.aclose()


async def test_a_version_that_boots_is_never_counted_as_failed(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with DevServer(world.root) as server:
        await _installed_in_first_boot(world, server)
        restarted = _engine(world, server, "1.0.0", BOOT_1)  # a daemon restart in the same boot
        await restarted.aclose()
        on_trial = _engine(world, server, "2.0.0", BOOT_2)  # the reboot came: 2.0.0 runs
        await on_trial.aclose()
        later = _engine(world, server, "2.0.0", BOOT_3)
        await later.aclose()
    assert not (world.state_dir / trial.FAILED_FILE).exists()


async def test_a_reset_update_is_not_a_failed_trial(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with DevServer(world.root) as server:
        first = _engine(world, server, "1.0.0", BOOT_1)
        assert await first.check_for_update() is Operation.UPDATED_NEED_REBOOT
        first.reset_status()  # ResetStatus: the admin took the update back before any reboot
        await first.aclose()
        _engine(world, server, "1.0.0", BOOT_2)
    assert not (world.state_dir / trial.FAILED_FILE).exists()


def test_a_damaged_install_record_is_ignored(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / trial.INSTALLED_FILE).write_bytes(b"\xff{not json" * 1000)
    assert trial.settle(tmp_path, "1.0.0", BOOT_2) is None
    assert not (tmp_path / trial.INSTALLED_FILE).exists()
