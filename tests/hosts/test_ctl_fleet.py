"""locksmithctl's fleet commands on a real (embedded) store: set-spacing, and status --hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from locksmith.protocol.hostrecord import HostRecord

CTL = [sys.executable, "-m", "locksmith.ctl"]


def ctl(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "LOCKSMITHCTL_ENDPOINT": f"file://{store}"}
    return subprocess.run([*CTL, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_set_spacing_round_trip_and_bad_durations(tmp_path: Path) -> None:
    store = tmp_path / "kv.db"
    done = ctl(store, "set-spacing", "5m")
    assert done.returncode == 0 and done.stdout == "Old-Spacing: 0s\nSpacing: 5m0s\n", done.stderr
    assert ctl(store, "set-spacing", "90s").stdout == "Old-Spacing: 5m0s\nSpacing: 1m30s\n"
    shown = ctl(store, "status", "--hosts")
    assert shown.returncode == 0 and "Spacing: 1m30s" in shown.stdout
    assert "No host records" in shown.stdout
    assert ctl(store, "status").stdout == "Available: 1\nMax: 1\n"  # the Go tool's output is unchanged
    for bad in ("soon", "-5m", "5 minutes"):
        refused = ctl(store, "set-spacing", bad)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_status_hosts_lists_records_and_marks_the_bad_and_the_stale(tmp_path: Path) -> None:
    import asyncio

    from locksmith.kv.embedded import EmbeddedStore
    from locksmith.protocol.hostrecord import record_key
    from locksmith.protocol.semaphore import DEFAULT_KEY

    now = time.time()
    records = {
        "a" * 32: HostRecord(state="holding", slot=True, since=now - 30, updated=now, version="2.0.0").encode(),
        "b" * 32: HostRecord(state="waiting", waiting_for="lock", since=now - 20, updated=now).encode(),
        "c" * 32: HostRecord(state="idle", since=now - 9999, updated=now - 9999).encode(),
        "d" * 32: b'{"state":"holding\\nFAKE LINE"}',
    }

    async def seed() -> None:
        kv = EmbeddedStore(tmp_path / "kv.db")
        try:
            for host, value in records.items():
                assert await kv.create(record_key(DEFAULT_KEY, host), value) is not None
        finally:
            await kv.aclose()

    asyncio.run(seed())
    data = json.loads(ctl(tmp_path / "kv.db", "status", "--hosts", "--json").stdout)
    rows = {row["host"]: row for row in data["hosts"]}
    assert rows["a" * 32]["state"] == "holding" and rows["a" * 32]["slot"] is True
    assert rows["b" * 32]["reason"] == "waiting for lock"
    assert rows["c" * 32]["state"] == "stale (idle)"
    assert rows["d" * 32]["state"] == "unreadable"
    table = ctl(tmp_path / "kv.db", "status", "--hosts").stdout
    assert "FAKE LINE" not in table and len(table.splitlines()) == 2 + 1 + 1 + 4  # status, blank, header, rows
