"""The embedded store: one SQLite file shared by every agent and locksmithctl on a host.

Why SQLite in WAL mode: readers never block the writer, `synchronous=FULL` makes each commit
durable before we report it, and `BEGIN IMMEDIATE` takes the write lock up front so a
compare-and-swap reads and writes under one lock — across processes, not just threads.

A store-wide revision counter (table `meta`) is bumped by every write, so revisions are
monotonic and > 0. A deleted key leaves a tombstone row (value NULL) carrying the delete's
revision, which lets `watch` report deletions with a proper revision.

All SQLite calls run on one dedicated thread per store (the connection lives there), so the
event loop never blocks and the connection is never shared between threads.

The file may be anyone's (an endpoint is one mistyped path away from another program's
database), so a store is known by its mark: `PRAGMA application_id` = APPLICATION_ID, set when we
create it (a store made before the mark is known by its exact tables, and marked on its next write
open). Nothing is changed — no WAL switch, no table — before the file is known to be ours or empty.
A read-only store (`read_only=True`, what `locksmithctl status` opens) uses SQLite's `mode=ro`: it
creates nothing, never writes, and never waits for a writer (WAL readers do not block).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from locksmith.kv.base import Change, Entry, KVError, KVProtocolError, KVUnavailable

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB,              -- NULL marks a tombstone: the key was deleted at `revision`
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
"""

# "LKSM": marks a SQLite file as a locksmith store; user_version is the layout of its tables.
APPLICATION_ID = 0x4C4B534D
SCHEMA_VERSION = 1
_OUR_TABLES = frozenset({"kv", "meta"})

# How often a watcher re-reads its key when inotify cannot tell it about writes.
POLL_INTERVAL = 0.05
# With inotify, a re-read this often anyway: a safety net should an event be lost.
RECHECK_INTERVAL = 5.0


class EmbeddedStore:
    """KVStore over a SQLite file. Safe for many processes on one host sharing the file."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 10.0, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._busy_ms = max(1, int(busy_timeout * 1000))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kv-sqlite:{self.path.name}")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # --- the SQLite thread ---------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        return self._open_read_only() if self.read_only else self._open_read_write()

    def _open_read_write(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise KVUnavailable(f"cannot open the embedded store {self.path}: {exc}") from None
        with _closed_on_error(conn, self.path):
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            _check_ours(conn, self.path, empty_ok=True)  # before WAL: a foreign file is left as it was
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise KVUnavailable(f"the embedded store {self.path} cannot use WAL mode (got {mode}): use a local fs")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                _check_ours(conn, self.path, empty_ok=True)  # again under the lock: another creator may have won
                # One statement at a time: executescript would commit our open transaction first.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise KVUnavailable(
                f"the embedded store {self.path} does not exist: check the file:// endpoint "
                "(a read-only command never creates a store; locksmithd or 'locksmithctl lock' does)"
            )
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self._busy_ms / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise KVUnavailable(f"cannot open the embedded store {self.path}: {exc}") from None
        with _closed_on_error(conn, self.path):
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            _check_ours(conn, self.path, empty_ok=False)
        return conn

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` inside one BEGIN IMMEDIATE transaction (the cross-process write lock)."""
        if self.read_only:
            raise KVUnavailable(f"the embedded store {self.path} was opened read-only; this command cannot write")
        conn = self._connection()
        try:
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        if conn.total_changes != before:
            self._announce()
        return result

    def _announce(self) -> None:
        """Tell watchers in every process that a commit is now visible.

        Inotify events on the WAL itself arrive while the commit is still being written, so
        a watcher woken by them may read the old state and then hear nothing more. Closing
        the sibling notify file after COMMIT gives an event that comes strictly later."""
        try:
            with open(notify_path(self.path), "ab"):
                pass
        except OSError:
            pass  # watchers still wake from the WAL events or their periodic re-check

    def _read(self, key: str) -> tuple[bytes | None, int] | None:
        try:
            row = self._connection().execute("SELECT value, revision FROM kv WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        return None if row is None else (row[0], int(row[1]))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise KVUnavailable(f"the embedded store {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- KVStore -------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        row = await self._run(self._read, key)
        if row is None or row[0] is None:
            return None
        return Entry(key, bytes(row[0]), row[1])

    async def create(self, key: str, value: bytes) -> Entry | None:
        def op(conn: sqlite3.Connection) -> Entry | None:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] is not None:
                return None
            return _put(conn, key, value)

        return await self._run(self._write, op)

    async def compare_and_swap(self, key: str, value: bytes, revision: int) -> Entry | None:
        def op(conn: sqlite3.Connection) -> Entry | None:
            row = conn.execute("SELECT value, revision FROM kv WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] is None or int(row[1]) != revision:
                return None
            return _put(conn, key, value)

        return await self._run(self._write, op)

    async def delete(self, key: str, revision: int | None = None) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT value, revision FROM kv WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] is None:
                return False
            if revision is not None and int(row[1]) != revision:
                return False
            conn.execute("UPDATE kv SET value = NULL, revision = ? WHERE key = ?", (_next_revision(conn), key))
            return True

        return await self._run(self._write, op)

    async def list_prefix(self, prefix: str, limit: int) -> list[Entry]:
        def read() -> list[tuple[str, bytes, int]]:
            # substr, not LIKE: a prefix may hold % or _, and keys compare as exact text.
            query = (
                "SELECT key, value, revision FROM kv WHERE substr(key, 1, ?) = ? AND value IS NOT NULL"
                " ORDER BY key LIMIT ?"
            )
            try:
                return self._connection().execute(query, (len(prefix), prefix, limit)).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from None

        return [Entry(key, bytes(value), int(rev)) for key, value, rev in await self._run(read)]

    async def ping(self) -> None:
        await self._run(self._connection)

    async def watch(self, key: str, after_revision: int) -> AsyncIterator[Change]:
        await self._run(self._connection)  # the directory must exist before it can be watched
        # Arm the wake-up source before the first read, so a write between the two is not missed.
        waker = _make_waker(self.path)
        try:
            last = after_revision
            while True:
                row = await self._run(self._read, key)
                if row is not None and row[1] > last:
                    last = row[1]
                    value = None if row[0] is None else bytes(row[0])
                    yield Change(key, value, row[1])
                    continue
                await waker.wait()
        finally:
            waker.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)


@contextlib.contextmanager
def _closed_on_error(conn: sqlite3.Connection, path: Path) -> Iterator[None]:
    """Set-up of a new connection: on any failure close it (a half-opened store is not kept), and say
    a SQLite error in our own one-line words."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _translate(exc, path) from None
    except BaseException:
        conn.close()
        raise


def _check_ours(conn: sqlite3.Connection, path: Path, *, empty_ok: bool) -> None:
    """Refuse, with one line, a SQLite file that is not a locksmith store (and, unless `empty_ok`,
    one that is empty: a read-only command has nothing to read there)."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id == APPLICATION_ID:
        return
    if app_id == 0 and tables == _OUR_TABLES:
        return  # a store created before the mark
    if app_id == 0 and not tables:
        if empty_ok:
            return
        raise KVProtocolError(f"{path} is an empty database, not a locksmith store yet: check the file:// endpoint")
    what = f"application id {app_id:#x}" if app_id else f"{len(tables)} table(s) of its own"
    raise KVProtocolError(
        f"{path} is not a locksmith store (an SQLite database with {what}): "
        "point the file:// endpoint at locksmith's own file; it was not changed"
    )


def _next_revision(conn: sqlite3.Connection) -> int:
    return int(conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value").fetchone()[0])


def _put(conn: sqlite3.Connection, key: str, value: bytes) -> Entry:
    rev = _next_revision(conn)
    conn.execute(
        "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
        (key, bytes(value), rev),
    )
    return Entry(key, bytes(value), rev)


def _translate(exc: sqlite3.Error, path: Path) -> KVError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return KVUnavailable(f"the embedded store {path} stayed locked by another process: {text}")
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return KVProtocolError(f"{path} is not a usable locksmith store ({text}): move it aside; it was not changed")
    return KVUnavailable(f"the embedded store {path} failed: {text}")


# --- Waking watchers ------------------------------------------------------------------------


def notify_path(db_path: Path) -> Path:
    return db_path.with_name(f"{db_path.name}-notify")


class _Waker:
    async def wait(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PollWaker(_Waker):
    """Fallback when inotify is unavailable: the caller re-reads its key every POLL_INTERVAL."""

    async def wait(self) -> None:
        await asyncio.sleep(POLL_INTERVAL)


class _InotifyWaker(_Waker):
    """Wakes when any process commits to the store.

    Our writers close `<db>-notify` after each commit (see EmbeddedStore._announce): that is
    the event that guarantees the new state is visible. Writes to `<db>-wal` and the db also
    wake us, so a foreign writer (an admin with the sqlite3 shell) is usually seen at once too.
    The `-shm` index is mmapped and raises no events. The fd is watched with the event loop's
    reader callback: no thread, no polling.
    """

    def __init__(self, db_path: Path) -> None:
        import inotify_simple

        self._names = {db_path.name, f"{db_path.name}-wal", f"{db_path.name}-journal", notify_path(db_path).name}
        self._overflow = int(inotify_simple.flags.Q_OVERFLOW)
        self._inotify = inotify_simple.INotify(nonblocking=True)
        flags = inotify_simple.flags
        try:
            self._inotify.add_watch(
                db_path.parent,
                flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.CLOSE_WRITE | flags.DELETE,
            )
        except BaseException:
            self._inotify.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._loop.add_reader(self._inotify.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            events = []
        if any(e.name in self._names or e.mask & self._overflow for e in events):
            self._event.set()

    async def wait(self) -> None:
        # Also re-check now and then: a safety net should an event ever be lost (queue overflow).
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives as
        # the event fires, and a waiter cancelled by its caller's deadline would carry on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECHECK_INTERVAL):
                await self._event.wait()
        self._event.clear()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()


def _make_waker(db_path: Path) -> _Waker:
    try:
        return _InotifyWaker(db_path)
    except (ImportError, OSError):
        return _PollWaker()
