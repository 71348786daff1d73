"""Class 2 of issue 9: the embedded store touches only what it owns.

A read-only open (what `locksmithctl status` uses) is SQLite's mode=ro: it creates no folder, no
file, no table, never switches a file to WAL, and does not wait for a writer. Any open refuses, in
one line and without changing a byte, a file that is not a locksmith store."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.kv import KVOptions, KVProtocolError, KVUnavailable, open_store, parse_endpoints
from locksmith.kv.embedded import APPLICATION_ID, SCHEMA_VERSION, EmbeddedStore


def foreign_db(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('someone else''s')")
    conn.close()
    return path


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("read_only", [True, False])
async def test_another_programs_database_is_refused_unchanged(tmp_path: Path, read_only: bool) -> None:
    path = foreign_db(tmp_path / "app.db")
    before = digest(tmp_path)
    store = EmbeddedStore(path, read_only=read_only)
    with pytest.raises(KVProtocolError) as info:
        await store.get("k")
    await store.aclose()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "not a locksmith store" in message
    assert digest(tmp_path) == before  # no WAL switch, no table, no side file
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
    conn.close()


async def test_a_database_marked_by_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    with sqlite3.connect(path) as conn:  # same table names, someone else's mark
        conn.execute("PRAGMA application_id = 42")
        conn.execute("CREATE TABLE kv (key TEXT)")
        conn.execute("CREATE TABLE meta (name TEXT)")
    conn.close()
    with pytest.raises(KVProtocolError, match="application id 0x2a"):
        await EmbeddedStore(path).create("k", b"v")


async def test_a_read_only_open_of_a_mistyped_path_creates_nothing(tmp_path: Path) -> None:
    for path in (tmp_path / "kv.bd", tmp_path / "no" / "such" / "kv.db"):
        store = EmbeddedStore(path, read_only=True)
        with pytest.raises(KVUnavailable) as info:
            await store.get("k")
        await store.aclose()
        assert str(path) in str(info.value) and "does not exist" in str(info.value)
        assert "check the file:// endpoint" in str(info.value)
    assert digest(tmp_path) == {}


async def test_a_read_only_open_of_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    path.touch()
    with pytest.raises(KVProtocolError, match="empty database"):
        await EmbeddedStore(path, read_only=True).get("k")
    assert path.read_bytes() == b""


async def test_our_store_is_marked_and_readable_read_only(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    writer = EmbeddedStore(path)
    entry = await writer.create("k", b"v")
    await writer.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    reader = open_store(KVOptions(parse_endpoints([f"file://{path}"]), read_only=True))
    assert await reader.get("k") == entry
    with pytest.raises(KVUnavailable, match="read-only"):
        await reader.create("other", b"w")
    await reader.aclose()


async def test_a_store_made_before_the_mark_is_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    with sqlite3.connect(path) as conn:  # the layout of earlier releases, no application id
        conn.executescript(
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB, revision INTEGER NOT NULL);"
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO meta VALUES ('revision', 7); INSERT INTO kv VALUES ('k', x'76', 7);"
        )
    conn.close()
    reader = EmbeddedStore(path, read_only=True)
    entry = await reader.get("k")
    assert entry is not None and entry.revision == 7
    await reader.aclose()
    writer = EmbeddedStore(path)
    assert await writer.compare_and_swap("k", b"w", 7) is not None
    await writer.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


@pytest.fixture
def held_write_lock(tmp_path: Path) -> Iterator[Path]:
    """Our store, with another process-like connection inside a write transaction."""
    path = tmp_path / "kv.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        "PRAGMA journal_mode = WAL;"
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB, revision INTEGER NOT NULL);"
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO meta VALUES ('revision', 1); INSERT INTO kv VALUES ('k', x'76', 1);"
    )
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE kv SET value = x'77', revision = 2 WHERE key = 'k'")
    yield path
    conn.execute("ROLLBACK")
    conn.close()


async def test_a_read_only_read_does_not_wait_for_a_writer(held_write_lock: Path) -> None:
    reader = EmbeddedStore(held_write_lock, busy_timeout=30.0, read_only=True)
    started = time.monotonic()
    entry = await reader.get("k")
    elapsed = time.monotonic() - started
    await reader.aclose()
    assert entry is not None and entry.value == b"v"  # the last committed state
    assert elapsed < 10  # far below the 30 s busy timeout it would otherwise have waited
