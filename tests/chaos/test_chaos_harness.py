"""The chaos harness end to end: the short mode (CI length) with the real `locksmithd` on a
three-member etcd under faults must pass its checker; and a failing run is kept for a person."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.chaos.history import Recorder
from harness.chaos.main import HISTORY, judge, parse_args
from locksmith.protocol.semaphore import Semaphore, encode


def _summary(output: str) -> dict[str, str]:
    """The figures of the summary block `locksmith-chaos` prints at the end."""
    m = re.search(r"^chaos: (\d+) runs, agent (\S+), (\d+) hosts each, max=(\d+), seed (\d+)", output, re.M)
    assert m, f"no summary in the output:\n{output[-3000:]}"
    figures = dict(zip(("runs", "agent", "hosts", "max", "seed"), m.groups(), strict=True))
    for name in (
        "reboots checked",
        "faults injected",
        "harness errors",
        "violations",
        "max hosts in section",
        "holders dead for good",
    ):
        line = re.search(rf"^  {name} +(\d+)(.*)$", output, re.M)
        assert line, f"no {name!r} line in the summary:\n{output[-3000:]}"
        figures[name] = line.group(1)
        figures[name + " detail"] = line.group(2)
    return figures


@pytest.mark.timeout(900)
def test_short_mode_with_the_real_agent_passes_under_faults(tmp_path: Path) -> None:
    argv = ["--short", "--agent", "locksmithd", "--failures-dir", str(tmp_path / "failures")]
    proc = subprocess.run(
        [sys.executable, "-m", "harness.chaos.main", *argv],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    tail = output[-6000:]
    assert proc.returncode == 0, tail
    got = _summary(proc.stdout)
    assert got["agent"] == "locksmithd"
    assert int(got["runs"]) >= 20
    assert len(re.findall(r"^run +\d+/\d+ .* violations=0 ", proc.stdout, re.M)) == int(got["runs"]), tail
    assert got["violations"] == "0" and got["harness errors"] == "0", tail
    # Every host rebooted once, but those that died for good holding a slot (planned every third run).
    dead = int(got["holders dead for good"])
    assert dead >= 1, got["holders dead for good detail"]
    assert int(got["reboots checked"]) >= int(got["runs"]) * int(got["hosts"]) - dead
    assert "(unverified events: 0)" in got["reboots checked detail"]
    assert int(got["max hosts in section"]) <= int(got["max"])

    # Faults of several kinds really happened: etcd members (the leader too) and agents.
    kinds = dict(re.findall(r"([a-z-]+) (\d+)", got["faults injected detail"]))
    assert int(got["faults injected"]) >= 20, kinds
    assert sum(int(n) for n in kinds.values()) == int(got["faults injected"])
    assert len(kinds) >= 4, kinds
    assert int(kinds.get("etcd-kill-leader", 0)) + int(kinds.get("etcd-kill-follower", 0)) >= 1, kinds
    assert int(kinds.get("agent-kill", 0)) + int(kinds.get("agent-kill-holder", 0)) >= 1, kinds
    assert int(kinds.get("holder-dies-for-good", 0)) == dead, kinds
    assert not (tmp_path / "failures").exists()


def _write_history(run_dir: Path, *, stolen: bool) -> Path:
    """A two-host run; with `stolen`, host b reboots while a holds the only slot."""
    rec = Recorder(run_dir / HISTORY)
    rec.add("meta", key="k", max=1, hosts=["a", "b"], bound=30.0)
    rev = 10

    def sem(*holders: str) -> None:
        nonlocal rev
        rev += 1
        rec.add("sem", rev=rev, value=encode(Semaphore(1 - len(holders), 1, holders)).decode())

    sem()
    sem("a")
    rec.add("event", host="a", event="rebooting", rev=rev)
    if stolen:
        rec.add("event", host="b", event="rebooting", rev=rev)
    rec.add("event", host="a", event="booted", rev=rev)
    sem()
    sem("b")
    if not stolen:
        rec.add("event", host="b", event="rebooting", rev=rev)
    rec.add("event", host="b", event="booted", rev=rev)
    sem()
    rec.add("faults_end")
    rec.add("end", key_rev=rev)
    (run_dir / "b").mkdir()
    (run_dir / "b" / "agent.log").write_text("what the agent said\n")
    return run_dir / HISTORY


def test_a_failing_runs_history_and_logs_are_kept(tmp_path: Path) -> None:
    settings = parse_args(["--short", "--failures-dir", str(tmp_path / "failures"), "--seed", "7"])
    history = _write_history(tmp_path / "work" / "run-0003", stolen=True)

    report, kept = judge(history.parent, settings)

    assert {"unlocked-reboot", "over-max-critical"} <= {v.rule for v in report.violations}
    assert kept == (tmp_path / "failures" / "seed-7" / "run-0003").resolve()
    assert (kept / HISTORY).read_bytes() == history.read_bytes()
    assert (kept / "b" / "agent.log").read_text() == "what the agent said\n"


def test_a_passing_run_is_not_kept(tmp_path: Path) -> None:
    settings = parse_args(["--short", "--failures-dir", str(tmp_path / "failures")])
    history = _write_history(tmp_path / "work" / "run-0000", stolen=False)

    report, kept = judge(history.parent, settings)

    assert report.ok, report.violations
    assert kept is None and not (tmp_path / "failures").exists()
