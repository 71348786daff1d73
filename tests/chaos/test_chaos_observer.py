"""The observer records every change of the key with its revision, resuming without gaps."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx

from harness.chaos.history import Recorder
from harness.chaos.observer import Observer, read_key, read_revision
from harness.devtools.etcd import EtcdCluster


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def test_every_change_is_recorded_in_revision_order(etcd: EtcdCluster, unique_key: str, tmp_path: Path) -> None:
    url = etcd.endpoints[0]
    rec = Recorder(tmp_path / "h.jsonl")
    async with httpx.AsyncClient() as client:
        start = await read_revision(client, [url], unique_key)
        assert start is not None and start[1] is None
        obs = Observer([url], unique_key, rec)
        await obs.start(start[0] + 1)
        revs = []
        for i in range(5):
            r = await client.post(f"{url}/v3/kv/put", json={"key": _b64(unique_key), "value": _b64(f"v{i}")})
            revs.append(int(r.json()["header"]["revision"]))
        await client.post(f"{url}/v3/kv/put", json={"key": _b64(unique_key + "-other"), "value": _b64("x")})
        await client.post(f"{url}/v3/kv/deleterange", json={"key": _b64(unique_key)})
        assert await obs.wait_for(lambda v: v is None and obs.last_rev > revs[-1], 5)
        await obs.stop()
        stamp = await read_revision(client, [url], unique_key)
    sems = rec.history().of_kind("sem")
    assert [s["rev"] for s in sems[:5]] == revs
    assert [s["value"] for s in sems] == ["v0", "v1", "v2", "v3", "v4", None]
    assert stamp is not None and stamp[0] > revs[-1]


async def test_keys_beside_the_semaphore_are_recorded_with_the_revision_that_wrote_them(
    etcd: EtcdCluster, unique_key: str, tmp_path: Path
) -> None:
    url, line, asked = etcd.endpoints[0], unique_key + "-line/w", unique_key + "-leaving/c"
    rec = Recorder(tmp_path / "h.jsonl")
    async with httpx.AsyncClient() as client:
        start = await read_revision(client, [url], unique_key)
        assert start is not None
        obs = Observer([url], unique_key, rec)
        await obs.start(start[0] + 1)
        await client.post(f"{url}/v3/kv/put", json={"key": _b64(line), "value": _b64("t")})
        together = {  # one transaction: the semaphore, a line key and a request to leave
            "success": [
                {"request_put": {"key": _b64(unique_key), "value": _b64("v")}},
                {"request_put": {"key": _b64(asked), "value": _b64("t")}},
                {"request_delete_range": {"key": _b64(line)}},
            ]
        }
        r = await client.post(f"{url}/v3/kv/txn", json=together)
        rev = int(r.json()["header"]["revision"])
        assert await obs.wait_for(lambda v: v == "v", 5)
        await obs.stop()
    aux = [(a["rev"], a["key"], a["present"]) for a in rec.history().of_kind("aux")]
    assert aux[0] == (rev - 1, line, True)
    assert sorted(aux[1:]) == sorted(
        [(rev, asked, True), (rev, line, False)]
    )  # the order within one revision is etcd's
    assert [s["rev"] for s in rec.history().of_kind("sem")] == [rev]


async def test_an_unreachable_cluster_gives_no_stamp() -> None:
    async with httpx.AsyncClient() as client:
        assert await read_revision(client, ["http://127.0.0.1:9"], "k", budget=0.3) is None


async def test_a_quiet_spell_longer_than_the_liveness_check_does_not_end_the_watch(
    etcd: EtcdCluster, unique_key: str, tmp_path: Path
) -> None:
    """Nothing changes for a while (a long reboot): the watch must still record what comes next."""
    url = etcd.endpoints[0]
    rec = Recorder(tmp_path / "h.jsonl")
    async with httpx.AsyncClient() as client:
        start = await read_revision(client, [url], unique_key)
        assert start is not None
        obs = Observer([url], unique_key, rec, quiet_check=0.2)
        await obs.start(start[0] + 1)
        await client.post(f"{url}/v3/kv/put", json={"key": _b64(unique_key), "value": _b64("before")})
        assert await obs.wait_for(lambda v: v == "before", 5)
        await asyncio.sleep(1.0)  # five quiet spells
        await client.post(f"{url}/v3/kv/put", json={"key": _b64(unique_key), "value": _b64("after")})
        seen = await obs.wait_for(lambda v: v == "after", 5)
        reconnects = obs.reconnects
        await obs.stop()
    assert seen, "the observer stopped recording after a quiet spell"
    assert reconnects == 0  # the same stream carried on
    assert [s["value"] for s in rec.history().of_kind("sem")] == ["before", "after"]


async def test_read_key_gives_the_keys_own_revision(etcd: EtcdCluster, unique_key: str) -> None:
    url = etcd.endpoints[0]
    async with httpx.AsyncClient() as client:
        absent = await read_key(client, [url], unique_key)
        assert absent is not None and absent.mod_revision == 0 and absent.value is None
        put = await client.post(f"{url}/v3/kv/put", json={"key": _b64(unique_key), "value": _b64("v")})
        written = int(put.json()["header"]["revision"])
        await client.post(f"{url}/v3/kv/put", json={"key": _b64(unique_key + "-other"), "value": _b64("x")})
        state = await read_key(client, [url], unique_key)
    assert state is not None
    assert state.mod_revision == written and state.revision > written and state.value == "v"
