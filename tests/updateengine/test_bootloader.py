"""locksmith-bootloader as a command: choose, mark-successful, status, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from locksmith.disk.layout import make_coreos_disk
from locksmith.disk.slots import mark_installed, mark_unbootable, read_slots


def run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "locksmith.disk.bootloader", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def template_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_coreos_disk(tmp_path_factory.mktemp("template") / "disk.img", usr_size_mib=1, small=True)


@pytest.fixture
def disk(template_disk: Path, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(template_disk, tmp_path / "disk.img"))


def test_rollback_through_the_command(disk: Path) -> None:
    _, b = read_slots(disk)
    mark_installed(disk, mark_unbootable(disk, b))

    first = run("choose", "--disk", str(disk))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("USR-B partition=4 ")
    assert "priority=2 tries=0 successful=0" in first.stdout
    record = json.loads(disk.with_name("disk.img.boot").read_text())
    assert (record["slot"], record["partuuid"]) == ("USR-B", b.partuuid)

    status = run("status", "--disk", str(disk))
    assert status.returncode == 0
    assert "USR-B partition=4" in status.stdout and status.stdout.strip().endswith("(booted)")

    second = run("choose", "--disk", str(disk))  # B never marked successful: back to A
    assert second.stdout.startswith("USR-A partition=3 ")


def test_mark_successful_booted_sticks(disk: Path, tmp_path: Path) -> None:
    _, b = read_slots(disk)
    mark_installed(disk, mark_unbootable(disk, b))
    rec = tmp_path / "boot.json"
    assert run("choose", "--disk", str(disk), "--boot-record", str(rec)).returncode == 0
    ok = run("mark-successful", "--disk", str(disk), "--booted", "--boot-record", str(rec))
    assert ok.returncode == 0, ok.stderr
    assert "USR-B" in ok.stdout and "successful=1" in ok.stdout
    for _ in range(2):
        assert run("choose", "--disk", str(disk)).stdout.startswith("USR-B")
    explicit = run("mark-successful", "--disk", str(disk), "--slot", "USR-A")
    assert explicit.returncode == 0 and "USR-A" in explicit.stdout


def test_errors_and_exit_codes(disk: Path, tmp_path: Path) -> None:
    missing = run("choose", "--disk", str(tmp_path / "nope.img"))
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "cannot open disk" in missing.stderr

    no_record = run("mark-successful", "--disk", str(disk))
    assert no_record.returncode == 1 and "no boot record" in no_record.stderr

    a, _ = read_slots(disk)
    mark_unbootable(disk, a)
    none = run("choose", "--disk", str(disk))
    assert none.returncode == 1 and "no bootable USR partition" in none.stderr
    assert "Traceback" not in none.stderr

    usage = run("mark-successful", "--disk", str(disk), "--slot", "USR-C")
    assert usage.returncode == 2
    assert run("frobnicate").returncode == 2
