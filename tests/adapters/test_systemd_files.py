"""The unit files pass `systemd-analyze verify`, and the D-Bus policy grants what locksmith needs.

`systemd-analyze verify` refuses a unit whose ExecStart binary does not exist, and /usr/bin/locksmithd
is only there on an installed host. So each unit in systemd/ is verified as a copy whose
`/usr/bin/<name>` commands are rewritten to this virtualenv's console script of the same name
(same entry point, installed by `pip install -e .`); everything else is verified byte for byte.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbus_fast import BusType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from harness.devtools.dbus import accepts_connections
from harness.devtools.unitfile import directives

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
VENV_BIN = Path(sys.executable).parent


def with_local_binaries(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        name = match.group(2)
        local = VENV_BIN / name
        if not Path(f"/usr/bin/{name}").exists() and local.exists():
            return f"{match.group(1)}{local}"
        return match.group(0)

    return re.sub(r"^(Exec\w+=[-+!@:]*)/usr/bin/([\w.-]+)", swap, text, flags=re.M)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (scripts/bootstrap)")
def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    units = sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.timer")) + sorted(SYSTEMD.glob("*.socket"))
    units += sorted(SYSTEMD.glob("*.target"))
    assert any(u.name == "locksmithd.service" for u in units)
    copies = []
    for unit in units:
        copy = tmp_path / unit.name
        copy.write_text(with_local_binaries(unit.read_text()))
        copies.append(str(copy))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *copies], capture_output=True, text=True, timeout=60
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if any(u.name in line for u in units)]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_marking_the_slot_runs_only_where_boot_sync_does() -> None:
    # Not on a PXE/ISO boot (no USR slot): it would fail there and leave the system degraded.
    mark = directives(SYSTEMD / "locksmith-mark-successful.service")
    sync = directives(SYSTEMD / "locksmith-boot-sync.service")
    assert mark["ConditionPathExists"] == sync["ConditionPathExists"] == ["/boot/EFI/locksmith/grubenv"]


def test_locksmithd_unit_contract() -> None:
    d = directives(SYSTEMD / "locksmithd.service")
    assert d["Type"] == ["notify"]
    assert d["ExecStart"] == ["/usr/bin/locksmithd"]
    assert d["EnvironmentFile"] == ["-/usr/share/coreos/update.conf", "-/etc/coreos/update.conf"]
    # Not ordered after the engine (Type=dbus): the release after a reboot must not wait for it to start.
    assert "update-engine.service" not in " ".join(d["After"] + d.get("Requires", [])).split()
    assert "dbus.service" in d["After"][0].split()
    assert d["Restart"] == ["on-failure"]
    assert d["WatchdogSec"] and d["ProtectSystem"] == ["strict"]
    assert set(d["ReadWritePaths"][0].split()) == {"/run/update-engine", "/var/lib/locksmith"}
    assert d["NoNewPrivileges"] == ["yes"] and d["PrivateTmp"] == ["yes"]


_RESTRICTIVE_BUS = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <includedir>{includes}</includedir>
</busconfig>
"""


@pytest.fixture
def restrictive_bus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A dbus-daemon with the stock system bus's deny-by-default policy plus our policy files."""
    includes = tmp_path / "system.d"
    includes.mkdir()
    for conf in SYSTEMD.glob("*.conf"):
        shutil.copy(conf, includes)
    socket_path = tmp_path / "bus.sock"
    (tmp_path / "bus.conf").write_text(_RESTRICTIVE_BUS.format(socket=socket_path, includes=includes))
    log = tmp_path / "dbus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={tmp_path / 'bus.conf'}", "--nofork", "--nopidfile"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(500):
            if accepts_connections(socket_path) or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert socket_path.exists(), log.read_text()
        yield f"unix:path={socket_path}", log
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(os.geteuid() != 0, reason="the policy grants root; run as root")
async def test_dbus_policy_parses_and_lets_root_own_the_update_engine_name(restrictive_bus: tuple[str, Path]) -> None:
    address, log = restrictive_bus
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        assert await bus.request_name("com.coreos.update1", NameFlag.DO_NOT_QUEUE) is RequestNameReply.PRIMARY_OWNER
        # The same daemon denies names nobody granted: the policy is in force, not a permissive default.
        with pytest.raises(DBusError, match="not allowed to own"):
            await bus.request_name("org.example.NotGranted", NameFlag.DO_NOT_QUEUE)
    finally:
        bus.disconnect()
    assert "while parsing" not in log.read_text()
