"""The boot units: every datasource CoreOS read, in its order, each before update-engine and locksmithd,
and each ExecStart a command line coreos-cloudinit accepts. (`systemd-analyze verify` of every unit in
systemd/ is in tests/adapters/test_systemd_files.py.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from harness.devtools.unitfile import directives
from locksmith.cloudconfig.main import _parser

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
ORDER = ["oem-cloudinit", "user-configdrive", "user-cloudinit-install", "user-cloudinit-proc-cmdline"]


def words(unit: Path, key: str) -> set[str]:
    return {w for value in directives(unit).get(key, []) for w in value.split()}


@pytest.mark.parametrize("name", ORDER)
def test_each_source_runs_before_the_services_that_read_its_settings(name: str) -> None:
    unit = SYSTEMD / f"{name}.service"
    assert {"update-engine.service", "locksmithd.service", "user-config.target"} <= words(unit, "Before")
    (exec_start,) = directives(unit)["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/usr/bin/coreos-cloudinit"
    args = _parser().parse_args(argv[1:])  # exits (SystemExit) on a flag we do not have
    assert any((args.from_file, args.from_configdrive, args.from_proc_cmdline))


def test_sources_are_read_in_coreos_order() -> None:
    for i, name in enumerate(ORDER):
        after = words(SYSTEMD / f"{name}.service", "After")
        assert {f"{earlier}.service" for earlier in ORDER[:i]} <= after, name


def test_the_target_pulls_every_source_in_at_boot() -> None:
    target = SYSTEMD / "user-config.target"
    assert {f"{n}.service" for n in ORDER} <= words(target, "Wants")
    assert {"update-engine.service", "locksmithd.service"} <= words(target, "Before")
    assert directives(target)["WantedBy"] == ["multi-user.target"]


def test_the_sources_read_what_the_issue_names() -> None:
    execs = " ".join(directives(SYSTEMD / f"{n}.service")["ExecStart"][0] for n in ORDER)
    for expected in (
        "--from-file=/usr/share/oem/cloud-config.yml",
        "--from-configdrive=/media/configdrive",
        "--from-file=/var/lib/coreos-install/user_data",
        "--from-proc-cmdline",
    ):
        assert expected in execs
    assert directives(SYSTEMD / "user-cloudinit-proc-cmdline.service")["ConditionKernelCommandLine"] == [
        "cloud-config-url"
    ]


def test_a_late_config_drive_triggers_the_configdrive_service() -> None:
    rule = (SYSTEMD / "90-configdrive.rules").read_text()
    assert 'ENV{ID_FS_LABEL}=="config-2"' in rule and 'ENV{SYSTEMD_WANTS}+="user-configdrive.service"' in rule
    assert 'ENV{ID_FS_TYPE}=="iso9660|vfat"' in rule
