"""Acceptance (issue 10 §2): a holder SIGKILLed for good, with LOCKSMITHD_LOCK_TTL of a few seconds, on
etcd v3 and v2. Real `locksmithd` processes: the waiting host frees the dead one's slot within TTL and a
small margin, reboots, and the semaphore stays the Go tool's valid JSON, never above max, throughout."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.procs import Host, reboot_lines, wait_until
from harness.devtools.etcd import EtcdCluster
from locksmith.kv import KVOptions, open_store, parse_endpoints
from locksmith.protocol import holder_lease
from locksmith.protocol.semaphore import decode, encode, semaphore_key

TTL = 3
# The waiter looks every TTL/4; a judgement and a lock are a few round trips. Generous for a loaded machine.
MARGIN = 6.0


class SemaphoreSampler:
    """Reads the raw semaphore every 20 ms in its own thread and keeps every distinct value seen; the
    last read starts after the test left the `with` block, so the last value is the one current then."""

    def __init__(self, endpoints: list[str], key: str) -> None:
        self.endpoints, self.key = endpoints, key
        self.values: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        kv = open_store(KVOptions(parse_endpoints(self.endpoints)))
        try:
            while True:
                stopping = self._stop.is_set()
                entry = await kv.get(self.key)
                if entry is not None and (not self.values or self.values[-1] != entry.value):
                    self.values.append(entry.value)
                if stopping:
                    break
                await asyncio.sleep(0.02)
        finally:
            await kv.aclose()

    def __enter__(self) -> SemaphoreSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def read(endpoints: list[str], key: str) -> bytes | None:
    async def get() -> bytes | None:
        kv = open_store(KVOptions(parse_endpoints(endpoints)))
        try:
            entry = await kv.get(key)
            return None if entry is None else entry.value
        finally:
            await kv.aclose()

    return asyncio.run(get())


@pytest.fixture(params=["etcd3+", "etcd2+"], ids=["v3", "v2"])
def hosts(request: pytest.FixtureRequest, etcd: EtcdCluster, tmp_path: Path) -> Iterator[list[Host]]:
    endpoints = [request.param + url for url in etcd.endpoints]
    group = f"ttl-{uuid.uuid4().hex[:8]}"
    made = [
        Host(
            f"host{i}",
            tmp_path,
            endpoints,
            group,
            tmp_path / "reboots",
            extra_env={"LOCKSMITHD_LOCK_TTL": f"{TTL}s", "LOCKSMITHD_METRICS": f"unix:{tmp_path / f'm{i}.sock'}"},
        )
        for i in range(2)
    ]
    yield made
    for host in made:
        host.close()


def _start_then_reboot_the_first(hosts: list[Host], reboots: Path) -> None:
    """Every host's engine and agent up and idle, then host0 needs a reboot and takes the slot for it."""
    for host in hosts:
        host.start_engine()
        host.start_agent()
    for host in hosts:
        host.wait_state("idle")
    hosts[0].need_reboot()
    wait_until(lambda: reboot_lines(reboots) == ["host0"], 30, "host0's reboot")


@pytest.mark.timeout(120)
def test_a_holder_killed_for_good_is_freed_within_its_ttl(hosts: list[Host], tmp_path: Path) -> None:
    dead, survivor = hosts
    key = semaphore_key(dead.group)
    reboots = tmp_path / "reboots"
    with SemaphoreSampler(dead.endpoints, key) as sampler:
        _start_then_reboot_the_first(hosts, reboots)
        alive = holder_lease.alive_key(key, dead.machine_id)
        assert alive is not None and read(dead.endpoints, alive) is not None  # its lease was written first

        # host0 dies for good while it holds the slot; host1 needs a reboot too and waits for that slot.
        dead.agent.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        killed = time.monotonic()
        survivor.need_reboot()
        wait_until(lambda: reboot_lines(reboots) == ["host0", "host1"], TTL + MARGIN, "host1 to free host0's slot")
        freed_after = time.monotonic() - killed

        events = survivor.events()
        removed = [e for e in events if e.get("event") == "lock.expired-holder-removed"]
        assert [e["holder"] for e in removed] == [dead.machine_id]
        assert any(e.get("event") == "lock.wait.woken" and e.get("via") == "lease-check" for e in events)
        assert metric(tmp_path / "m1.sock", "locksmith_expired_holders_removed_total") == 1

        # host1 comes back and releases; the dead host's keys are gone with its slot.
        assert survivor.stop_agent() == 0
        survivor.idle()
        survivor.start_agent()
        survivor.wait_state("idle")
        wait_until(lambda: decode(read(dead.endpoints, key) or b"", key).holders == (), 15, "host1's release")
        assert read(dead.endpoints, holder_lease.lease_key(key, dead.machine_id) or "") is None
        assert read(dead.endpoints, holder_lease.lease_key(key, survivor.machine_id) or "") is None

    assert freed_after <= TTL + MARGIN
    # Every value the semaphore took was the Go tool's exact JSON, with never more than max=1 holder.
    assert sampler.values, "the sampler saw nothing"
    for raw in sampler.values:
        sem = decode(raw, key)
        assert encode(sem) == raw
        assert len(sem.holders) <= sem.max == 1
    holders_seen = [decode(raw, key).holders for raw in sampler.values]
    assert (dead.machine_id,) in holders_seen and (survivor.machine_id,) in holders_seen
    assert decode(sampler.values[-1], key).holders == ()


@pytest.mark.timeout(120)
def test_an_idle_agent_frees_a_dead_holder_when_no_one_waits(hosts: list[Host], tmp_path: Path) -> None:
    """With slots to spare nobody waits for the dead host's: the idle agents must free it all the same
    (every half TTL), or it would keep its slot, and show as holding, until the next rollout."""
    dead, survivor = hosts
    key = semaphore_key(dead.group)
    asyncio.run(_create(dead.endpoints, key, b'{"semaphore":2,"max":2,"holders":[]}'))
    _start_then_reboot_the_first(hosts, tmp_path / "reboots")
    dead.agent.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    # TTL, then the idle judge's period (TTL/2, jittered up to 1.25x), then a judgement.
    wait_until(lambda: decode(read(dead.endpoints, key) or b"", key).holders == (), TTL * 1.7 + MARGIN, "the expiry")
    removed = [e for e in survivor.events() if e.get("event") == "lock.expired-holder-removed"]
    assert [e["holder"] for e in removed] == [dead.machine_id]
    assert survivor.states()[-1] == "idle"  # it judged without needing a slot
    assert read(dead.endpoints, key) == b'{"semaphore":2,"max":2,"holders":[]}'


async def _create(endpoints: list[str], key: str, value: bytes) -> None:
    kv = open_store(KVOptions(parse_endpoints(endpoints)))
    try:
        assert await kv.create(key, value) is not None
    finally:
        await kv.aclose()


def metric(socket: Path, name: str) -> float:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as client:
        text = client.get("http://localhost/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")
