"""Acceptance: three real `locksmithd` processes on one real etcd with etcd-lock and max=1, each
told NEED_REBOOT at once. Reboots happen strictly one at a time, each release wakes the next
through the KV watch (not a timed re-check), and all three finish."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.procs import Host, reboot_lines, wait_until
from harness.devtools.etcd import EtcdCluster
from locksmith.kv import KVOptions, open_store, parse_endpoints
from locksmith.lockstore import LockStore


@pytest.fixture
def hosts(etcd: EtcdCluster, tmp_path: Path) -> Iterator[list[Host]]:
    group = f"acceptance-{uuid.uuid4().hex[:8]}"
    made = [Host(f"host{i}", tmp_path, etcd.endpoints, group, tmp_path / "reboots") for i in range(3)]
    yield made
    for host in made:
        host.close()


def holders(endpoints: list[str], group: str) -> tuple[str, ...]:
    async def read() -> tuple[str, ...]:
        kv = open_store(KVOptions(endpoints=parse_endpoints(endpoints)))
        try:
            return (await LockStore(kv, group).get()).semaphore.holders
        finally:
            await kv.aclose()

    return asyncio.run(read())


@pytest.mark.timeout(120)
def test_three_agents_reboot_one_at_a_time_woken_by_the_watch(hosts: list[Host], tmp_path: Path) -> None:
    reboots = tmp_path / "reboots"
    by_name = {h.name: h for h in hosts}
    for host in hosts:
        host.start_engine()
        host.start_agent()
    for host in hosts:
        host.wait_state("idle")
    for host in hosts:
        host.need_reboot()

    order: list[str] = []
    for step in range(1, 4):
        wait_until(lambda step=step: len(reboot_lines(reboots)) >= step, 60, f"reboot {step}")
        lines = reboot_lines(reboots)
        assert len(lines) == step, f"two hosts rebooted at once: {lines}"
        current = by_name[lines[-1]]
        assert current.name not in order
        order.append(current.name)
        assert holders(current.endpoints, current.group) == (current.machine_id,)
        time.sleep(0.3)  # while it holds the lock, nobody else reboots
        assert len(reboot_lines(reboots)) == step
        # "The host comes back": the shutdown stops the agent (it keeps the lock), the new boot
        # has no pending update, and the restarted agent releases the lock after boot.
        assert current.stop_agent() == 0
        assert holders(current.endpoints, current.group) == (current.machine_id,)
        current.idle()
        current.start_agent()
        current.wait_state("idle")

    assert sorted(order) == ["host0", "host1", "host2"]
    assert holders(hosts[0].endpoints, hosts[0].group) == ()
    # Every host but the first waited for the lock and was woken by the watch, never by a re-check.
    for name in order[1:]:
        events = by_name[name].events(boot=1)
        wakes = [e.get("via") for e in events if e.get("event") == "lock.wait.woken"]
        assert "watch" in wakes, f"{name} was not woken by the KV watch: {wakes}"
        assert "recheck" not in wakes
        assert any(e.get("event") == "lock.wait" for e in events)
