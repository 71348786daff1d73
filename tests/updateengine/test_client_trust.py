"""update_engine_client follows the engine like locksmithd does: a StatusUpdate counts only when it
comes from the owner of the engine's name; one sent by any other connection is ignored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog
from dbus_fast.aio import MessageBus

from harness.devtools.dbus import PrivateBus
from harness.devtools.fake_update_engine import FakeUpdateEngine
from harness.devtools.unprivileged import status_update_as_nobody, verdict
from locksmith.bus.system import connect_system_bus, disconnect
from locksmith.protocol.update1 import NEED_REBOOT, Operation
from locksmith.updateengine import client

pytestmark = pytest.mark.timeout(60)


class Blocks:
    """A stdout stand-in that lets the test await each status block the client prints."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self._changed = asyncio.Event()

    def write(self, text: str) -> None:
        self.blocks.append(text)
        self._changed.set()

    def flush(self) -> None:
        pass

    async def wait_for(self, count: int) -> list[str]:
        async with asyncio.timeout(20):
            while len(self.blocks) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.blocks


@pytest.fixture
async def engine(dbus_bus: PrivateBus) -> AsyncIterator[FakeUpdateEngine]:
    async with FakeUpdateEngine() as eng:
        yield eng


@pytest.fixture
async def peers(dbus_bus: PrivateBus) -> AsyncIterator[tuple[MessageBus, MessageBus]]:
    """The client's connection and an attacker's."""
    mine, attacker = await connect_system_bus(), await connect_system_bus()
    yield mine, attacker
    await disconnect(mine)
    await disconnect(attacker)


async def test_update_ignores_a_spoofed_need_reboot(
    engine: FakeUpdateEngine,
    peers: tuple[MessageBus, MessageBus],
    dbus_bus: PrivateBus,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mine, _ = peers
    with structlog.testing.capture_logs() as logs:
        run = asyncio.create_task(client._update(mine))
        async with asyncio.timeout(20):
            await engine.attempted.wait()
        # A StatusUpdate right in every way but its sender: a peer that is neither the engine nor root.
        await status_update_as_nobody(dbus_bus.address, NEED_REBOOT)
        await verdict(logs, "ignored-status-update-from-non-owner")
        await engine.set_status(Operation.CHECKING_FOR_UPDATE)
        await engine.set_status(Operation.IDLE)
        assert await asyncio.wait_for(run, 20) == 1
    out = capsys.readouterr().out
    assert "No update available." in out and "Update installed" not in out
    ignored = [e for e in logs if e["event"] == "ignored-status-update-from-non-owner"]
    assert ignored and ignored[0]["owner"] == engine.unique_name


async def test_update_believes_the_owner(engine: FakeUpdateEngine, peers: tuple[MessageBus, MessageBus]) -> None:
    mine, _attacker = peers
    run = asyncio.create_task(client._update(mine))
    async with asyncio.timeout(20):
        await engine.attempted.wait()
    await engine.set_status(NEED_REBOOT)
    assert await asyncio.wait_for(run, 20) == 0


async def test_watch_prints_only_the_owners_statuses(
    engine: FakeUpdateEngine, peers: tuple[MessageBus, MessageBus], dbus_bus: PrivateBus
) -> None:
    mine, _ = peers
    out = Blocks()
    watch = asyncio.create_task(client._watch(mine, out))  # type: ignore[arg-type]
    try:
        first = (await out.wait_for(1))[0]
        assert "CURRENT_OP=UPDATE_STATUS_IDLE\n" in first
        with structlog.testing.capture_logs() as logs:
            await status_update_as_nobody(dbus_bus.address, NEED_REBOOT)
            await verdict(logs, "ignored-status-update-from-non-owner")
        await engine.set_status(Operation.DOWNLOADING)
        blocks = await out.wait_for(2)
        assert "CURRENT_OP=UPDATE_STATUS_DOWNLOADING\n" in blocks[1]
        assert not any("NEED_REBOOT" in block for block in blocks)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)


async def test_update_without_an_engine_is_one_line(peers: tuple[MessageBus, MessageBus]) -> None:
    mine, _attacker = peers
    with pytest.raises(client.ClientError) as err:
        await client._update(mine)
    assert str(err.value) == client.NOT_RUNNING
