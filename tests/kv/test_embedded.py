"""Embedded-store behaviour beyond the shared contract: bad files, durability settings, the
polling fallback when inotify is unavailable."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from locksmith.kv import Change, KVOptions, KVProtocolError, KVUnavailable, embedded, open_store, parse_endpoints
from locksmith.kv.embedded import EmbeddedStore


async def test_a_file_that_is_not_a_store_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    content = b"these are someone else's notes, not SQLite\n" * 100
    path.write_bytes(content)
    store = EmbeddedStore(path)
    with pytest.raises(KVProtocolError) as info:
        await store.create("k", b"v")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    await store.aclose()
    assert path.read_bytes() == content


async def test_unwritable_location_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = EmbeddedStore(blocker / "sub" / "kv.db")  # a parent that is a file
    with pytest.raises(KVUnavailable) as info:
        await store.get("k")
    assert str(blocker / "sub" / "kv.db") in str(info.value)
    await store.aclose()


async def test_store_uses_wal_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    store = open_store(KVOptions(parse_endpoints([f"file://{path}"])))
    entry = await store.create("k", b"v")
    await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = EmbeddedStore(path)
    assert await again.get("k") == entry
    later = await again.create("other", b"w")
    assert later is not None and entry is not None and later.revision > entry.revision
    await again.aclose()


async def test_watch_falls_back_to_polling_without_inotify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify(_path: Path) -> embedded._Waker:
        raise OSError("inotify unavailable")

    monkeypatch.setattr(embedded, "_InotifyWaker", no_inotify)
    path = tmp_path / "kv.db"
    watcher, writer = EmbeddedStore(path), EmbeddedStore(path)
    entry = await writer.create("k", b"1")
    assert entry is not None
    changes = aiter(watcher.watch("k", entry.revision))
    pending = asyncio.ensure_future(anext(changes))
    updated = await writer.compare_and_swap("k", b"2", entry.revision)
    assert updated is not None
    async with asyncio.timeout(15):
        assert await pending == Change("k", b"2", updated.revision)
    await changes.aclose()  # type: ignore[attr-defined]
    await watcher.aclose()
    await writer.aclose()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "kv.db")
    await store.ping()
    await store.aclose()
    with pytest.raises(KVUnavailable):
        await store.get("k")
