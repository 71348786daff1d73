"""Every network exchange has a total deadline (issue 9, class 3).

A server that accepts, answers the headers and then sends one byte at a time never trips a per-read
timeout; each client we ship must still give up on it within its own deadline, with one line that says so
(the update engine's Omaha client: tests/updateengine/test_engine_deadline.py). A frozen etcd member
(SIGSTOP: the kernel still accepts connections, nobody answers) must not keep a watch deaf: the watch moves
to another member and reports the change made there.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from harness.devtools.etcd import EtcdCluster
from harness.devtools.trickle import trickling_server
from locksmith.fleetlock import FleetLockClient, FleetLockUnavailableError
from locksmith.kv import Change, KVOptions, KVStore, KVUnavailable, open_store, parse_endpoints


@pytest.mark.parametrize("prefix", ["", "etcd2+"])
async def test_a_trickling_kv_endpoint_fails_the_request_within_its_deadline(prefix: str) -> None:
    async with trickling_server("application/json") as url:
        options = KVOptions(parse_endpoints([prefix + url]), request_timeout=1.0, retry_budget=1.0)
        store: KVStore = open_store(options)
        try:
            async with asyncio.timeout(60):
                with pytest.raises(KVUnavailable) as info:
                    await store.get("locksmith/k")
        finally:
            await store.aclose()
    assert "no complete reply within" in str(info.value) and url in str(info.value)


async def test_locksmithctl_timeout_bounds_a_trickling_endpoint(tmp_path: Path) -> None:
    ctl = Path(sys.executable).with_name("locksmithctl")
    async with trickling_server("application/json") as url:
        proc = await asyncio.create_subprocess_exec(
            str(ctl), "--endpoint", url, "--timeout", "2", "status",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )  # fmt: skip
        async with asyncio.timeout(90):
            _, err = await proc.communicate()
    lines = err.decode().strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, lines
    assert "no complete reply within" in lines[0]


async def test_a_trickling_fleetlock_server_fails_the_request_within_its_deadline() -> None:
    async with trickling_server("application/json") as url:
        client = FleetLockClient(url, "a" * 32, request_timeout=1.0, attempts=1)
        try:
            async with asyncio.timeout(60):
                with pytest.raises(FleetLockUnavailableError) as info:
                    await client.pre_reboot()
        finally:
            await client.aclose()
    assert "no complete reply within 1s" in str(info.value)


@pytest.mark.parametrize("prefix", ["", "etcd2+"])
async def test_a_watch_on_a_frozen_member_moves_to_another(
    prefix: str, etcd_cluster3: EtcdCluster, unique_key: str
) -> None:
    urls = etcd_cluster3.endpoints
    watcher = open_store(KVOptions(parse_endpoints([prefix + u for u in urls]), retry_budget=15.0))
    writer = open_store(KVOptions(parse_endpoints([prefix + u for u in urls[1:]]), retry_budget=15.0))
    key = f"{unique_key}/sem"
    try:
        created = await watcher.create(key, b"0")
        assert created is not None
        assert watcher._http.current == urls[0]  # type: ignore[attr-defined]
        changes = aiter(watcher.watch(key, created.revision))
        pending = asyncio.ensure_future(anext(changes))
        etcd_cluster3.members[0].pause()
        try:
            updated = await writer.compare_and_swap(key, b"1", created.revision)
            assert updated is not None
            # Without a liveness bound the watch would wait on the frozen member for as long as it is frozen.
            async with asyncio.timeout(60):
                assert await pending == Change(key, b"1", updated.revision)
            assert watcher._http.current != urls[0]  # type: ignore[attr-defined]
        finally:
            etcd_cluster3.members[0].resume()
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await watcher.aclose()
        await writer.aclose()
