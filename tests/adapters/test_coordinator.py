"""The coordinator file: exact content, atomic replacement, directory creation, clear errors, our
fine-grained lines after the Go agent's, the one reader, and no rewrite of identical content."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from locksmith.agent.coordinator import (
    AgentState,
    CoordinatorFile,
    CoordinatorFileError,
    on_volatile_file_system,
    read_agent_state,
    read_coordinator,
    write_coordinator,
)
from locksmith.agent.ports import LockFailure, LockKept, LockReleased, StateEntered
from locksmith.agent.states import State
from locksmith.agent.wiring import CoordinatorPublisher


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


def test_our_lines_follow_the_go_agents_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.conf"
    file = CoordinatorFile(path, "etcd-lock")
    assert file.publish("reboot-planned", phase="acquiring", since=1733112000.7, lock_kept=None)
    lines = path.read_text().splitlines()
    # The Go agent's three lines first and unchanged: its readers look only at these keys.
    assert lines[:3] == ["NAME=locksmithd", "STRATEGY=etcd-lock", "STATE=reboot-planned"]
    assert lines[3:] == ["LOCKSMITHD_STATE=acquiring", "LOCKSMITHD_SINCE=1733112000", f"LOCKSMITHD_PID={os.getpid()}"]
    assert read_agent_state(path) == AgentState(
        name="locksmithd",
        strategy="etcd-lock",
        state="reboot-planned",
        phase="acquiring",
        since=1733112000.0,
        pid=os.getpid(),
    )


def test_identical_content_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.conf"
    file = CoordinatorFile(path, "reboot")
    assert file.publish("running", phase="idle", since=5.0)
    inode = path.stat().st_ino
    assert not file.publish("running", phase="idle", since=5.0)
    assert path.stat().st_ino == inode  # not replaced
    assert file.publish("running", phase="idle", since=5.0, lock_kept="health-gate")
    assert read_agent_state(path).lock_kept == "health-gate"  # type: ignore[union-attr]


def test_a_go_era_file_reads_with_its_state_word_as_the_phase(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.conf"
    write_coordinator("etcd-lock", "rebooting", path)
    state = read_agent_state(path)
    assert state is not None and state.phase == "rebooting" and state.pid is None and state.since is None
    assert read_agent_state(tmp_path / "nope") is None
    (tmp_path / "garbled").write_text("NAME=x\nLOCKSMITHD_PID=abc\n")
    assert read_agent_state(tmp_path / "garbled") is None  # no STATE=: nothing published yet


def test_the_observer_publishes_each_state_once_with_the_time_it_was_entered(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.conf"
    publish = CoordinatorPublisher(path, "etcd-lock")
    t0 = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
    publish(StateEntered(State.STARTING, None, t0))
    assert read_agent_state(path).phase == "starting"  # type: ignore[union-attr]
    publish(StateEntered(State.ACQUIRING, State.NEED_REBOOT, t0 + timedelta(seconds=5)))
    inode = path.stat().st_ino
    publish(LockFailure("store unreachable"))  # not a state: nothing to write
    publish(StateEntered(State.ACQUIRING, State.ACQUIRING, t0 + timedelta(seconds=9)))  # after a back-off
    assert path.stat().st_ino == inode
    state = read_agent_state(path)
    assert (
        state is not None and state.state == "reboot-planned" and state.since == (t0 + timedelta(seconds=5)).timestamp()
    )

    publish(StateEntered(State.IDLE, State.RELEASING_AFTER_BOOT, t0 + timedelta(seconds=20)))
    publish(LockKept("health-gate", "the health gate did not pass within 5s"))
    assert read_agent_state(path).lock_kept == "health-gate"  # type: ignore[union-attr]
    publish(LockReleased("after boot"))
    assert read_agent_state(path).lock_kept is None  # type: ignore[union-attr]


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    return calls


def test_on_disk_the_content_is_synced_once_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if on_volatile_file_system(tmp_path):
        pytest.skip("the temporary directory is on tmpfs here")
    calls = _fsyncs(monkeypatch)
    file = CoordinatorFile(tmp_path / "coordinator.conf", "reboot")
    file.publish("running", phase="idle", since=1.0)
    file.publish("reboot-planned", phase="acquiring", since=2.0)
    assert len(calls) == 2  # one per write: the file's data, not the directory as well
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_on_tmpfs_nothing_is_synced(monkeypatch: pytest.MonkeyPatch) -> None:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK) and on_volatile_file_system(shm)):
        pytest.skip("no writable tmpfs at /dev/shm")
    calls = _fsyncs(monkeypatch)
    directory = shm / f"locksmith-test-{os.getpid()}"
    try:
        file = CoordinatorFile(directory / "coordinator.conf", "reboot")
        file.publish("running", phase="idle", since=1.0)
        assert read_agent_state(directory / "coordinator.conf") is not None
        assert calls == []
    finally:
        for p in directory.iterdir():
            p.unlink()
        directory.rmdir()
