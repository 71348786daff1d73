"""Stopping the chaos harness early: a SIGTERM stops the run, and a SIGINT that arrives while it is
cleaning up must not cut that short — every process the run started (etcd, the hosts' buses, engines
and agents, each host in sessions of its own) is gone when the harness exits."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def _processes_of(run_dir: Path) -> set[int]:
    """Every process whose command line or environment names `run_dir` (all of a run's do)."""
    marker = str(run_dir).encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in seen:
            found.add(int(entry.name))
    return found


def _until(condition: Callable[[], bool], seconds: float, what: str, harness: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if harness.poll() is not None:
            out, err = harness.communicate()
            pytest.fail(f"the harness exited {harness.returncode} before {what}:\n{out[-2000:]}\n{err[-2000:]}")
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_a_second_signal_during_the_clean_up_leaves_nothing_running(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Reboots long enough that the run is still going when the signals come.
    argv = ["--short", "--iterations", "1", "--agent", "locksmithd", "--reboot-time", "20", "--keep-history", str(runs)]
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness.chaos.main", *argv, "--failures-dir", str(tmp_path / "failures")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until(lambda: len(list(runs.glob("run-0000/*/agent.log"))) >= 3, 120, "every host's agent started", harness)
        started = _processes_of(runs) - {harness.pid}
        assert len(started) >= 3 + 3, f"three etcd members and three agents at least: {sorted(started)}"
        harness.send_signal(signal.SIGTERM)
        _until(lambda: bool(started - _processes_of(runs)), 60, "the clean-up stopping a first process", harness)
        harness.send_signal(signal.SIGINT)  # while the rest is still being stopped
        _, err = harness.communicate(timeout=120)
    finally:
        if harness.poll() is None:  # the test failed before the harness ended: let it clean up, then make sure
            harness.send_signal(signal.SIGTERM)
            try:
                harness.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                harness.kill()
                harness.communicate()
            _kill(_processes_of(runs))
    # 130 from the harness; killed by the SIGINT itself when it came as the interpreter was already exiting.
    assert harness.returncode in (130, -signal.SIGINT), err[-8000:]
    assert "everything started was stopped" in err
    # A hook's child (the agents' "sleep 0.2" drain) may outlive its agent by that long; nothing else may.
    deadline = time.monotonic() + 5
    while (left := _processes_of(runs)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = {pid: _command_of(pid) for pid in left}
    _kill(left)  # not to leave them to the next test either
    assert not left, f"still running after the harness exited: {described}"


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
