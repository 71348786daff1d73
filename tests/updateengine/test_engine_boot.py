"""After a reboot into a new version the engine reports 3/2 with previousversion, once."""

from __future__ import annotations

from pathlib import Path

from harness.devtools.omaha_server import DevServer
from locksmith.updateengine.engine import LAST_VERSION_FILE, Identity, UpdateEngine
from locksmith.updateengine.target import SlotTarget

from .ue_support import MACHINE_ID, make_world


async def test_boot_into_new_version_reports_update_complete(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with DevServer(world.root) as server:

        def engine(version: str) -> UpdateEngine:
            config = world.config(server.update_url, version=version)
            return UpdateEngine(
                config, Identity(MACHINE_ID, "c" * 32), SlotTarget(config.disk, None, config.public_key)
            )

        first = engine("1.0.0")
        await first.report_boot()  # first boot ever: nothing to report, just remember
        await first.aclose()
        assert (world.state_dir / LAST_VERSION_FILE).read_text().strip() == "1.0.0"
        assert server.events == []

        rebooted = engine("2.0.0")
        await rebooted.report_boot()
        await rebooted.report_boot()  # once per boot
        await rebooted.aclose()
        assert [(e["eventtype"], e["eventresult"], e["previousversion"], e["version"]) for e in server.events] == [
            (3, 2, "1.0.0", "2.0.0")
        ]
        assert (world.state_dir / LAST_VERSION_FILE).read_text().strip() == "2.0.0"


async def test_undelivered_boot_report_is_retried(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.state_dir.mkdir()
    (world.state_dir / LAST_VERSION_FILE).write_text("1.0.0\n")
    config = world.config("http://127.0.0.1:9/v1/update/", version="2.0.0")  # nothing listens on port 9
    engine = UpdateEngine(config, Identity(MACHINE_ID, "c" * 32), SlotTarget(config.disk, None, config.public_key))
    await engine.report_boot()
    await engine.aclose()
    assert (world.state_dir / LAST_VERSION_FILE).read_text().strip() == "1.0.0"
