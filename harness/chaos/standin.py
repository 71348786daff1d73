"""A stand-in agent at the LockStore level, for `--agent standin` runs (and the makespan bench's
fallback): on every boot give back a slot it holds; on the first boot take a slot (waiting with
the KV watch) and run the reboot command. No D-Bus, no strategies: it exercises the semaphore
and the KV layer under faults, not locksmithd — the harness says which agent a run used.

Reads the same LOCKSMITHD_* variables the simulated host sets, plus LOCKSMITH_SIMHOST_BOOT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from locksmith.kv import KVError, KVOptions, open_store, parse_endpoints
from locksmith.lockstore import LockStore
from locksmith.machineid import read_machine_id
from locksmith.protocol.semaphore import NotHeld, SemaphoreError, SemaphoreFull

P = ParamSpec("P")
T = TypeVar("T")


def _state(path: Path | None, state: str) -> None:
    if path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"NAME=standin\nSTRATEGY=etcd-lock\nSTATE={state}\n")
        tmp.replace(path)


async def _retry_kv(op: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    while True:
        try:
            return await op(*args, **kwargs)
        except KVError:
            await asyncio.sleep(0.1)


async def run() -> int:
    env = os.environ
    kv = open_store(KVOptions(parse_endpoints(env["LOCKSMITHD_ENDPOINT"].split(",")), retry_budget=3.0))
    store = LockStore(kv, env.get("LOCKSMITHD_GROUP") or None)
    me = read_machine_id(env["LOCKSMITHD_MACHINE_ID_FILE"])
    coord = Path(env["LOCKSMITHD_COORDINATOR_FILE"]) if env.get("LOCKSMITHD_COORDINATOR_FILE") else None
    boot = int(env.get("LOCKSMITH_SIMHOST_BOOT", "0"))

    _state(coord, "releasing")
    with contextlib.suppress(NotHeld):
        await _retry_kv(store.unlock, me)
    if boot == 0:
        _state(coord, "acquiring")
        while True:
            try:
                await _retry_kv(store.lock, me)
                break
            except SemaphoreFull:
                snap = await _retry_kv(store.get)
                if me in snap.semaphore.holders:
                    break
                try:
                    async with asyncio.timeout(2.0):
                        await store.wait_for_change(snap.revision)
                except (TimeoutError, KVError, SemaphoreError):
                    pass
        _state(coord, "rebooting")
        proc = await asyncio.create_subprocess_shell(env["LOCKSMITHD_REBOOT_COMMAND"])
        if await proc.wait() != 0:
            return 1
    _state(coord, "idle")
    await asyncio.Event().wait()
    return 0


def main() -> int:
    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
