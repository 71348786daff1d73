"""Acceptance: `update_engine_client -update` (a subprocess) drives the `update_engine` daemon (a subprocess)
on a real bus to UPDATED_NEED_REBOOT against the dev server; the inactive slot holds exactly the image."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.devtools.dbus import PrivateBus
from harness.devtools.omaha_server import DevServer

from .ue_support import MACHINE_ID, World, image_sha256, make_world

pytestmark = pytest.mark.timeout(90)
BIN = Path(sys.executable).parent


def client(bus: PrivateBus, *flags: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "update_engine_client"), *flags], env=bus.env(), capture_output=True, text=True, timeout=timeout
    )


def parse_status(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def server(world: World) -> Iterator[DevServer]:
    with DevServer(world.root) as srv:
        yield srv


def start_daemon(world: World, bus: PrivateBus, server: DevServer, version: str = "1.0.0") -> subprocess.Popen[bytes]:
    world.config(server.update_url, version=version)  # writes update.conf and release
    machine_id = world.tmp / "machine-id"
    machine_id.write_text(MACHINE_ID + "\n")
    log = (world.tmp / "update_engine.log").open("ab")
    proc = subprocess.Popen(
        [
            str(BIN / "update_engine"),
            "--update-conf", str(world.tmp / "update.conf"),
            "--usr-update-conf", "/dev/null",
            "--release-file", str(world.tmp / "release"),
            "--machine-id-file", str(machine_id),
            "--no-periodic",
        ],
        env=bus.env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 20
    while client(bus, "-status").returncode != 0:
        assert proc.poll() is None, (world.tmp / "update_engine.log").read_text()
        assert time.monotonic() < deadline, "update_engine did not appear on the bus"
        time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    assert proc.wait(10) == 0


def test_update_drives_daemon_to_need_reboot(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    daemon = start_daemon(world, dbus_bus, server)
    try:
        before = parse_status(client(dbus_bus, "--status").stdout)
        assert before == {
            "LAST_CHECKED_TIME": "0",
            "PROGRESS": "0.000000",
            "CURRENT_OP": "UPDATE_STATUS_IDLE",
            "NEW_VERSION": "0.0.0.0",
            "NEW_SIZE": "0",
        }
        result = client(dbus_bus, "-update")
        assert result.returncode == 0, result.stdout + result.stderr
        after = parse_status(client(dbus_bus, "-status").stdout)
        assert after["CURRENT_OP"] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
        assert after["NEW_VERSION"] == "2.0.0" and int(after["LAST_CHECKED_TIME"]) > 0
        # Checking again until reboot is a no-op that still reports success.
        assert client(dbus_bus, "-update").returncode == 0
    finally:
        stop(daemon)
    image = world.images["2.0.0"]
    assert world.slot_sha256("USR-B", image.stat().st_size) == image_sha256(image)

    # A daemon restart within the same boot remembers that a reboot is pending.
    daemon = start_daemon(world, dbus_bus, server)
    try:
        assert parse_status(client(dbus_bus, "-status").stdout)["CURRENT_OP"] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
        assert client(dbus_bus, "-reset_status").returncode == 0
        assert parse_status(client(dbus_bus, "-status").stdout)["CURRENT_OP"] == "UPDATE_STATUS_IDLE"
    finally:
        stop(daemon)
    assert not world.slot("USR-B").bootable


def test_update_exits_1_on_noupdate_and_on_error(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    daemon = start_daemon(world, dbus_bus, server, version="2.0.0")
    try:
        result = client(dbus_bus, "-update")
        assert result.returncode == 1 and "No update available" in result.stdout
        server.reply_override = b"<not-omaha/>"
        result = client(dbus_bus, "--update")
        assert result.returncode == 1 and "Update failed" in result.stderr
    finally:
        stop(daemon)


def test_watch_for_updates_prints_each_signal(world: World, server: DevServer, dbus_bus: PrivateBus) -> None:
    daemon = start_daemon(world, dbus_bus, server, version="2.0.0")
    watcher = subprocess.Popen(
        [str(BIN / "update_engine_client"), "-watch_for_updates"],
        env=dbus_bus.env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().startswith("LAST_CHECKED_TIME=")  # the current status first
        for _ in range(4):
            watcher.stdout.readline()
        assert client(dbus_bus, "-check_for_update").returncode == 0
        seen = []
        while len(seen) < 2:
            line = watcher.stdout.readline()
            if line.startswith("CURRENT_OP="):
                seen.append(line.strip())
        assert seen == ["CURRENT_OP=UPDATE_STATUS_CHECKING_FOR_UPDATE", "CURRENT_OP=UPDATE_STATUS_IDLE"]
    finally:
        watcher.terminate()
        watcher.wait(10)
        stop(daemon)


def test_no_service_is_one_line(dbus_bus: PrivateBus) -> None:
    result = client(dbus_bus, "-status")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "com.coreos.update1 is not running" in result.stderr


def test_no_bus_is_one_line(tmp_path: Path) -> None:
    env_bus = PrivateBus(tmp_path)  # never started: its socket does not exist
    result = client(env_bus, "-status")
    assert result.returncode == 1
    assert result.stderr.startswith("update_engine_client: cannot connect to the system bus")
    assert result.stderr.strip().count("\n") == 0
