"""What the benchmarks share: percentiles, host facts for the JSON, a private etcd, quiet logs,
and a counting/stamping wrapper around a KV store (instrumentation without touching the product)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from locksmith.kv import Change, Committed, Entry, ExpiringKeys, Heads, KVStore, Transactions

T = TypeVar("T")

RESULTS_DIR = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (NumPy's default); nan if empty."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary_ms(values_s: Iterable[float]) -> dict[str, float | int]:
    """min / median / p90 / p99 / max / mean of durations in seconds, reported in milliseconds."""
    data = list(values_s)
    if not data:
        return {"n": 0}
    return {
        "n": len(data),
        "min_ms": round(min(data) * 1000, 3),
        "median_ms": round(percentile(data, 50) * 1000, 3),
        "p90_ms": round(percentile(data, 90) * 1000, 3),
        "p99_ms": round(percentile(data, 99) * 1000, 3),
        "max_ms": round(max(data) * 1000, 3),
        "mean_ms": round(sum(data) / len(data) * 1000, 3),
    }


def host_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_result(
    path: Path, benchmark: str, measured: str, figures: dict[str, Any], load_before: list[float]
) -> dict[str, Any]:
    """Write one benchmark's results JSON, every file in the same envelope: its name, what it measured,
    its parameters and figures, then the host and the load average before and after (other work on
    the machine skews the figures; the load says how much). Returns what was written."""
    result = {
        "benchmark": benchmark,
        "measured": measured,
        **figures,
        "host": host_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return result


def quiet_logs() -> None:
    """Drop the product's structured log lines (a benchmark prints its own table)."""
    import structlog

    def drop(_logger: Any, _name: str, _event: dict[str, Any]) -> dict[str, Any]:
        raise structlog.DropEvent

    structlog.configure(processors=[drop])


def raise_fd_limit() -> int:
    """Raise this process's soft open-files limit to the hard one (children inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def now_ns() -> int:
    """CLOCK_MONOTONIC: one clock for every process on the machine, so stamps compare across them."""
    return time.monotonic_ns()


def python_child_env() -> dict[str, str]:
    """The environment for `python -c "from bench… import …"` children: the repository on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def console_script(name: str) -> str:
    """The venv's console script (e.g. locksmithd) next to this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install the project into this venv (pip install -e .)")
    return str(path)


@dataclass
class KVCounters:
    """What one wrapped store saw: failed compare-and-swaps (a conflict: someone wrote between our
    read and our write) per key, and when the last successful write to a key was acknowledged."""

    conflicts: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    last_write_ns: dict[str, int] = field(default_factory=dict)


class InstrumentedKV:
    """A KVStore that forwards every call and counts/stamps writes. LockStore.kv is public, so a
    benchmark swaps this in (`locks.kv = InstrumentedKV(locks.kv)`) and the product runs unchanged:
    a `create`/`compare_and_swap` answering None is exactly the conflict LockStore retries."""

    def __init__(self, inner: KVStore, counters: KVCounters | None = None) -> None:
        self.inner = inner
        self.counters = counters or KVCounters()
        if isinstance(inner, Transactions):
            # Only a store with transactions offers them: LockStore picks its write path by what it finds.
            self.read_together = inner.read_together
            self.commit = self._commit
            self.join_line = inner.join_line
            self.stay_in_line = inner.stay_in_line
            self.follow = inner.follow
            self.place_in_line = inner.place_in_line
            self.heads = inner.heads
            self.commit_or_queue = self._commit_or_queue

    async def _commit(
        self, expect: Mapping[str, int], put: Mapping[str, bytes], delete: Sequence[str] = ()
    ) -> Committed:
        assert isinstance(self.inner, Transactions)
        committed = await self.inner.commit(expect, put, delete)
        # The semaphore is the first key a LockStore transaction compares; its ages record only ever
        # changes with it, so a failed transaction is one conflict on the semaphore.
        for key in list(expect)[:1] or list(put)[:1]:
            self._wrote(key, None if committed.revision is None else Entry(key, b"", committed.revision))
        return committed

    async def _commit_or_queue(
        self,
        expect: Mapping[str, int],
        put: Mapping[str, bytes],
        delete: Sequence[str],
        *,
        otherwise_put: Mapping[str, bytes],
        counts: Mapping[str, int],
        read: Sequence[str],
    ) -> int | Heads:
        assert isinstance(self.inner, Transactions)
        answer = await self.inner.commit_or_queue(
            expect, put, delete, otherwise_put=otherwise_put, counts=counts, read=read
        )
        for key in list(expect)[:1]:
            self._wrote(key, Entry(key, b"", answer) if isinstance(answer, int) else None)
        return answer

    async def list_prefix(self, prefix: str, limit: int) -> list[Entry]:
        return await self.inner.list_prefix(prefix, limit)

    async def put_expiring(self, key: str, value: bytes, ttl_seconds: int, *, only_if_present: bool = False) -> bool:
        assert isinstance(self.inner, ExpiringKeys)
        return await self.inner.put_expiring(key, value, ttl_seconds, only_if_present=only_if_present)

    def _wrote(self, key: str, entry: Entry | None) -> Entry | None:
        c = self.counters
        if entry is None:
            c.conflicts[key] = c.conflicts.get(key, 0) + 1
        else:
            c.writes[key] = c.writes.get(key, 0) + 1
            c.last_write_ns[key] = now_ns()
        return entry

    async def get(self, key: str) -> Entry | None:
        return await self.inner.get(key)

    async def create(self, key: str, value: bytes) -> Entry | None:
        return self._wrote(key, await self.inner.create(key, value))

    async def compare_and_swap(self, key: str, value: bytes, revision: int) -> Entry | None:
        return self._wrote(key, await self.inner.compare_and_swap(key, value, revision))

    async def delete(self, key: str, revision: int | None = None) -> bool:
        return await self.inner.delete(key, revision)

    def watch(self, key: str, after_revision: int) -> AsyncIterator[Change]:
        return self.inner.watch(key, after_revision)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


def run_in_workdir(
    prefix: str,
    parent: Path | None,
    main: Callable[[Path], Coroutine[Any, Any, T]],
    interrupted: str,
    keep: bool = False,
) -> T | None:
    """Run `main(work)` in a fresh temporary folder, removed afterwards unless `keep`. On Ctrl-C
    print `interrupted` and return None: the benchmark's own `finally` blocks stopped what it started."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        return asyncio.run(main(work))
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return None
    finally:
        if keep:
            print(f"kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
