"""`locksmith-demo` end to end, as a user runs it: real dbus-daemons, update engines, disk images and
agents. Each test checks the outcome against the parts themselves (disk images, the KV store, the
process table), not only against what the demo printed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.devtools.interruptible import finish
from locksmith.disk.slots import booted_slot, read_slots
from locksmith.updateengine.pack import read_release_from_slot

DEMO = [sys.executable, "-m", "harness.demo.main"]
CTL = [sys.executable, "-m", "locksmith.ctl"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.timeout(180)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOCKSMITH", "REBOOT_"))}


def demo(out: Path, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    argv = [*DEMO, "--out", str(out), *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    stdout, stderr = finish(proc, timeout, "locksmith-demo", stop_seconds=60)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def processes_under(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (every host process names its folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def holders(out: Path) -> list[str]:
    env = {"PATH": os.environ["PATH"], "LOCKSMITHCTL_ENDPOINT": f"file://{out / 'kv.db'}"}
    r = subprocess.run([*CTL, "status", "--json"], capture_output=True, text=True, env=env, check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    return [h["id"] for h in json.loads(r.stdout)["holders"]]


def summary_value(stdout: str, label: str) -> str:
    m = re.search(rf"^  {re.escape(label)} +(.*)$", stdout, re.M)
    assert m, f"no {label!r} in the summary:\n{stdout}"
    return m.group(1)


def test_three_hosts_update_one_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = demo(out, "--hosts", "3", "--reboot-time", "0.3")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert summary_value(r.stdout, "hosts updated").startswith("3/3 ")
    assert summary_value(r.stdout, "most lock holders").startswith("1 (max 1)")
    assert summary_value(r.stdout, "most rebooting at once") == "1"
    assert summary_value(r.stdout, "reboots") == "3"
    # Every disk booted the new slot, committed it, and it holds the new release.
    for disk in sorted(out.glob("hosts/host-*/disk.img")):
        slot = booted_slot(disk)
        assert slot.name == "USR-B" and slot.successful
        assert read_release_from_slot(disk, slot)["COREOS_RELEASE_VERSION"] == "2.0.0"
        a, _b = read_slots(disk)
        assert a.successful  # the old slot stays bootable: the fallback if the new one ever fails
    picture = Path(summary_value(r.stdout, "timeline picture"))
    assert picture == out / "timeline.png" and picture.read_bytes()[:8] == PNG_MAGIC
    assert picture.stat().st_size > 10_000  # axes, rows, legend: not an empty canvas
    assert holders(out) == []
    assert processes_under(out) == []


def test_broken_update_stops_at_the_first_host_which_keeps_its_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = demo(out, "--hosts", "3", "--reboot-time", "0.2", "--broken-update", "--health-timeout", "3s")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    halted = summary_value(r.stdout, "halted")
    assert "failed its health gate and kept its lock" in halted
    assert summary_value(r.stdout, "hosts updated").startswith("0/3 ")
    assert summary_value(r.stdout, "reboots") == "1"
    on_trial = [d for d in sorted(out.glob("hosts/host-*/disk.img")) if booted_slot(d).name == "USR-B"]
    assert len(on_trial) == 1 and not booted_slot(on_trial[0]).successful  # never committed: rolls back
    # The demo is over, so it gave the kept slot back rather than leave the store locked.
    assert "gave back the lock slot(s) of" in r.stdout
    assert holders(out) == []
    assert processes_under(out) == []


def test_ctrl_c_stops_everything_and_leaves_no_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*DEMO, "--out", str(out), "--hosts", "3", "--reboot-time", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    # Interrupt while a host is down for its reboot and holds the lock: the hardest moment to stop.
    for line in proc.stdout:
        seen.append(line)
        if re.search(r"host-\d +rebooting .* lock HELD", line) or time.monotonic() > deadline:
            break
    assert any("lock HELD" in s for s in seen), "".join(seen)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(seen) + rest + err
    assert "interrupted" in err
    assert processes_under(out) == []
    assert holders(out) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--hosts", "0"], "--hosts 0"),
        (["--max", "0"], "--max 0"),
        (["--kv", "ftp://x"], "--kv 'ftp://x'"),
        (["--window", "Mon 02:00"], "--window 'Mon 02:00'"),
        (["--health-timeout", "soon"], "--health-timeout 'soon'"),
        (["--strategy", "nope"], "invalid choice"),
    ],
)
def test_bad_options_are_one_line_usage_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    r = demo(tmp_path / "out", *args, timeout=30)
    assert r.returncode == 2
    assert needle in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def _holding(seen: set[tuple[str, bool, str]]) -> bool:
    return any(state == "holding" and slot for state, slot, _ in seen)


def test_status_hosts_shows_each_hosts_state_and_reason_while_the_demo_runs(tmp_path: Path) -> None:
    """The fleet view: every agent publishes its record; `status --hosts --json` sees who holds, who waits."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*DEMO, "--out", str(out), "--hosts", "3", "--reboot-time", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    env = {"PATH": os.environ["PATH"], "LOCKSMITHCTL_ENDPOINT": f"file://{out / 'kv.db'}"}
    seen: set[tuple[str, bool, str]] = set()
    hosts: set[str] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "kv.db").exists():
                r = subprocess.run([*CTL, "status", "--hosts", "--json"], capture_output=True, text=True, env=env)
                if r.returncode == 0:
                    rows = json.loads(r.stdout)["hosts"]
                    hosts |= {row["host"] for row in rows}
                    seen |= {(row["state"], row["slot"], row["reason"]) for row in rows}
                    if ("holding", True, "") in seen and ("waiting", False, "waiting for lock") in seen:
                        break
            time.sleep(0.2)  # a poll of a running demo: each round is a fresh look at the store
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    assert len(hosts) == 3, (hosts, seen)
    # One host holds the slot (before its reboot, or after it while its health gate runs); another waits.
    assert _holding(seen) and ("waiting", False, "waiting for lock") in seen, seen
    assert proc.returncode == 0, stdout[-2000:] + stderr[-2000:]
    table = subprocess.run([*CTL, "status", "--hosts"], capture_output=True, text=True, env=env, check=True).stdout
    assert "HOST" in table and "STATE" in table and len([ln for ln in table.splitlines() if "idle" in ln]) == 3
