"""The D-Bus policy and unit file as shipped."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.devtools.dbus import PrivateBus

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"


def test_unit_is_type_dbus_with_our_bus_name() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(SYSTEMD / "update-engine.service")
    assert unit["Service"]["Type"] == "dbus" and unit["Service"]["BusName"] == "com.coreos.update1"
    if shutil.which("systemd-analyze"):
        result = subprocess.run(
            ["systemd-analyze", "verify", str(SYSTEMD / "update-engine.service")], capture_output=True, text=True
        )
        # The only complaint allowed here: the binary is not installed on this test machine.
        problems = [line for line in result.stderr.splitlines() if "/usr/bin/update_engine" not in line]
        assert problems == []


def test_policy_root_owns_admin_group_calls_three_methods() -> None:
    root = ET.parse(SYSTEMD / "com.coreos.update1.conf").getroot()
    policies = {(p.get("user"), p.get("group"), p.get("context")): p for p in root.findall("policy")}
    root_policy = policies[("root", None, None)]
    assert root_policy.find("allow[@own='com.coreos.update1']") is not None
    admin = policies[(None, "core", None)]
    members = sorted(a.get("send_member") or "" for a in admin.findall("allow"))
    assert members == ["AttemptUpdate", "GetStatus", "ResetStatus"]
    assert all(a.get("send_interface") == "com.coreos.update1.Manager" for a in admin.findall("allow"))
    default = policies[(None, None, "default")]
    assert default.find("deny[@send_destination='com.coreos.update1']") is not None


def test_dbus_daemon_accepts_the_policy(tmp_path: Path) -> None:
    include = tmp_path / "system.d"
    include.mkdir()
    shutil.copy(SYSTEMD / "com.coreos.update1.conf", include)
    bus = PrivateBus(tmp_path / "bus", include_dirs=[include])
    bus.start()
    try:
        assert bus.process is not None and bus.process.poll() is None
    finally:
        bus.stop()
    log = (tmp_path / "bus" / "dbus.log").read_text()
    assert "com.coreos.update1.conf" not in log  # no parse error mentioning our file
