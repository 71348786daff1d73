"""The coordinator file: exact content, atomic replacement, directory creation, clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from locksmith.agent.coordinator import CoordinatorFileError, read_coordinator, write_coordinator


def test_content_and_directory_creation(tmp_path: Path) -> None:
    path = tmp_path / "run" / "update-engine" / "coordinator.conf"
    write_coordinator("etcd-lock", "starting", path)
    assert path.read_text() == "NAME=locksmithd\nSTRATEGY=etcd-lock\nSTATE=starting\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert read_coordinator(path) == {"NAME": "locksmithd", "STRATEGY": "etcd-lock", "STATE": "starting"}


def test_replacement_is_atomic_rename(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.conf"
    write_coordinator("reboot", "running", path)
    # A reader holding the old file keeps the complete old content: the file was replaced, not rewritten.
    with path.open() as old:
        inode = os.fstat(old.fileno()).st_ino
        write_coordinator("reboot", "rebooting", path)
        assert old.read() == "NAME=locksmithd\nSTRATEGY=reboot\nSTATE=running\n"
    assert path.stat().st_ino != inode
    assert read_coordinator(path)["STATE"] == "rebooting"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coordinator.conf"]  # no temp files left


@pytest.mark.parametrize(
    ("strategy", "state"), [("reboot", "sleeping"), ("a\nSTATE=rebooting", "running"), ("", "running")]
)
def test_bad_values_refused_and_file_untouched(tmp_path: Path, strategy: str, state: str) -> None:
    path = tmp_path / "coordinator.conf"
    write_coordinator("off", "running", path)
    with pytest.raises(ValueError):
        write_coordinator(strategy, state, path)  # type: ignore[arg-type]
    assert read_coordinator(path)["STRATEGY"] == "off"


def test_unwritable_location_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(CoordinatorFileError, match=r"cannot write the coordinator file .*not-a-dir/coordinator.conf"):
        write_coordinator("reboot", "running", blocker / "coordinator.conf")


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert read_coordinator(tmp_path / "nope") == {}
