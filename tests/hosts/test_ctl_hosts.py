"""The fleet table: holders, waiters with their reason, stale and unreadable records."""

from __future__ import annotations

from locksmith import ctl_hosts
from locksmith.protocol.hostrecord import HostRecord


def test_table_shows_holder_waiter_stale_and_unreadable() -> None:
    values = {
        "aaa": HostRecord(state="holding", slot=True, since=900, updated=990).encode(),
        "bbb": HostRecord(state="waiting", waiting_for="lock", since=950, updated=995).encode(),
        "ccc": HostRecord(state="waiting", waiting_for="window", since=100, updated=100).encode(),
        "ddd": b"\xff not json",
    }
    found = ctl_hosts.rows(values, now=1000, refresh_seconds=30)
    assert [(r.host, r.state) for r in found] == [
        ("aaa", "holding"),
        ("bbb", "waiting"),
        ("ccc", "stale (waiting)"),
        ("ddd", "unreadable"),
    ]
    text = ctl_hosts.table(found, now=1000)
    assert "waiting for lock" in text and "waiting for window" in text
    assert text.splitlines()[0].startswith("HOST")
