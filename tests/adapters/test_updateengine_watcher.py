"""The update-engine watcher on a real dbus-daemon: trust only the owner of the engine's name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import structlog
from dbus_fast import Message
from dbus_fast.aio import MessageBus
from hypothesis import given
from hypothesis import strategies as st

from harness.devtools.dbus import PrivateBus
from harness.devtools.fake_update_engine import FakeUpdateEngine
from harness.devtools.unprivileged import status_update_as_nobody, verdict
from locksmith.bus.system import DBUS_INTERFACE, DBUS_PATH, get_name_owner
from locksmith.bus.update_engine import (
    UpdateEngineRunningError,
    UpdateEngineWatcher,
    send_need_reboot,
)
from locksmith.protocol import update1
from locksmith.protocol.update1 import STATUS_SIGNAL, STATUS_SIGNATURE, MalformedStatus, Operation, Status

UPDATE_ENGINE_NAME = update1.SERVICE
UPDATE_ENGINE_PATH = update1.OBJECT_PATH
UPDATE_ENGINE_INTERFACE = update1.INTERFACE
UPDATE_STATUSES = [op.value for op in Operation]
UPDATE_STATUS_IDLE = Operation.IDLE.value
UPDATE_STATUS_UPDATED_NEED_REBOOT = Operation.UPDATED_NEED_REBOOT.value
NEED_REBOOT = Status(1700000000, 1.0, Operation.UPDATED_NEED_REBOOT, "3815.2.0", 123456)


async def next_status(it: AsyncIterator[Status]) -> Status:
    # The timeout only guards against a hang; no test depends on timing.
    return await asyncio.wait_for(anext(it), 20)


async def flushed(peer: MessageBus) -> None:
    """Return once dbus-daemon has routed everything `peer` sent before (it handles a peer in order)."""
    await get_name_owner(peer, "org.freedesktop.DBus")


@pytest.fixture
async def engine(dbus_bus: object) -> AsyncIterator[FakeUpdateEngine]:
    async with FakeUpdateEngine() as eng:
        yield eng


@pytest.fixture
async def watcher(system_bus: MessageBus) -> AsyncIterator[UpdateEngineWatcher]:
    w = UpdateEngineWatcher(system_bus)
    yield w
    await w.stop()


def test_constants_match_the_coreos_interface() -> None:
    assert UPDATE_STATUSES[0] == "UPDATE_STATUS_IDLE"
    assert UPDATE_STATUSES[6] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
    assert UPDATE_STATUSES[7] == "UPDATE_STATUS_REPORTING_ERROR_EVENT"
    assert len(set(UPDATE_STATUSES)) == 8
    assert (UPDATE_ENGINE_NAME, UPDATE_ENGINE_PATH, UPDATE_ENGINE_INTERFACE) == (
        "com.coreos.update1",
        "/com/coreos/update1",
        "com.coreos.update1.Manager",
    )


@pytest.mark.parametrize(
    ("signature", "body", "reason"),
    [
        ("xdss", [0, 0.0, UPDATE_STATUS_IDLE, ""], "signature"),
        ("xdssx", [0, 0.0, UPDATE_STATUS_IDLE, ""], "5"),
        ("xdssx", [True, 0.0, UPDATE_STATUS_IDLE, "", 0], "last_checked_time"),
        ("xdssx", [0, 1, UPDATE_STATUS_IDLE, "", 0], "progress"),
        ("xdssx", [0, 1.5, UPDATE_STATUS_IDLE, "", 0], "progress"),
        ("xdssx", [0, float("nan"), UPDATE_STATUS_IDLE, "", 0], "progress"),
        ("xdssx", [0, 0.0, "UPDATE_STATUS_REBOOT_NOW", "", 0], "current_operation"),
        ("xdssx", [0, 0.0, UPDATE_STATUS_IDLE, 7, 0], "new_version"),
        ("xdssx", [0, 0.0, UPDATE_STATUS_IDLE, "", -1], "new_size"),
    ],
)
def test_parser_rejects_with_a_reason(signature: str, body: list[object], reason: str) -> None:
    with pytest.raises(MalformedStatus, match=reason):
        Status.from_dbus(signature, body)


@given(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(0.0, 1.0),
    st.sampled_from(UPDATE_STATUSES),
    st.text(),
    st.integers(0, 2**63 - 1),
)
def test_parser_round_trips_every_valid_status(checked: int, progress: float, op: str, version: str, size: int) -> None:
    status = Status(checked, progress, Operation(op), version, size)
    assert Status.from_dbus(STATUS_SIGNATURE, status.to_dbus()) == status
    assert status.needs_reboot == (op == UPDATE_STATUS_UPDATED_NEED_REBOOT)


@given(st.lists(st.one_of(st.integers(), st.floats(), st.text(), st.booleans(), st.none()), max_size=7))
def test_parser_never_raises_anything_but_malformed(body: list[object]) -> None:
    with contextlib.suppress(MalformedStatus):
        Status.from_dbus(STATUS_SIGNATURE, body)


async def test_get_status_then_signals_from_the_owner(engine: FakeUpdateEngine, watcher: UpdateEngineWatcher) -> None:
    await watcher.start()
    assert watcher.owner == engine.unique_name
    it = watcher.statuses()
    assert (await next_status(it)).current_operation is Operation.IDLE
    assert engine.get_status_calls == 1
    await engine.set_status(NEED_REBOOT)
    assert await next_status(it) == NEED_REBOOT
    assert watcher.latest == NEED_REBOOT


async def test_spoofed_status_update_from_an_unprivileged_peer_is_ignored(
    engine: FakeUpdateEngine, watcher: UpdateEngineWatcher, dbus_bus: PrivateBus
) -> None:
    await watcher.start()
    it = watcher.statuses()
    assert (await next_status(it)).current_operation is Operation.IDLE
    with structlog.testing.capture_logs() as logs:
        # Right path, interface, member and body — only the sender is wrong: a peer running as nobody.
        await status_update_as_nobody(dbus_bus.address, NEED_REBOOT)
        ignored = await verdict(logs, "ignored-status-update-from-non-owner")
        await engine.set_status(Operation.DOWNLOADING)
        # The spoof was judged before the engine's next status: had it been believed, it would come first.
        assert (await next_status(it)).current_operation is Operation.DOWNLOADING
    assert watcher.latest is not None and not watcher.latest.needs_reboot
    # dbus-send is gone by the time the daemon is asked (None: no one to vouch for), or it is nobody.
    assert ignored["uid"] in (None, 65534) and ignored["owner"] == engine.unique_name


async def test_who_sent_it_is_the_daemons_answer_not_the_senders(
    engine: FakeUpdateEngine, system_bus: MessageBus, other_peer: MessageBus
) -> None:
    """A live peer whose user is not trusted (here: trusting only uid 12345, the peers being root)."""
    watcher = UpdateEngineWatcher(system_bus, trusted_uids=frozenset({12345}))
    await watcher.start()
    it = watcher.statuses()
    assert (await next_status(it)).current_operation is Operation.IDLE
    with structlog.testing.capture_logs() as logs:
        await other_peer.send(
            Message.new_signal(
                UPDATE_ENGINE_PATH, UPDATE_ENGINE_INTERFACE, STATUS_SIGNAL, STATUS_SIGNATURE, NEED_REBOOT.to_dbus()
            )
        )
        ignored = await verdict(logs, "ignored-status-update-from-non-owner")
        await engine.set_status(Operation.DOWNLOADING)
        assert (await next_status(it)).current_operation is Operation.DOWNLOADING
    assert ignored["uid"] == 0 and ignored["sender"] == other_peer.unique_name
    await watcher.stop()


async def test_a_status_update_from_root_is_believed_and_said_so(
    engine: FakeUpdateEngine, watcher: UpdateEngineWatcher, other_peer: MessageBus
) -> None:
    """locksmithctl send-need-reboot while an engine runs: root can reboot the host anyway."""
    await watcher.start()
    it = watcher.statuses()
    assert (await next_status(it)).current_operation is Operation.IDLE
    with structlog.testing.capture_logs() as logs:
        await send_need_reboot(other_peer)  # the tests run as root
        assert await next_status(it) == update1.NEED_REBOOT
    accepted = await verdict(logs, "accepted-status-update-from-root")
    assert accepted["uid"] == 0 and accepted["sender"] == other_peer.unique_name
    assert await get_name_owner(other_peer, UPDATE_ENGINE_NAME) == engine.unique_name  # the engine kept its name


async def test_spoofed_name_owner_change_cannot_hand_over_trust(
    engine: FakeUpdateEngine, system_bus: MessageBus, other_peer: MessageBus
) -> None:
    # Only the engine is trusted here (not root, which the test peers are): the name's hand-over is what is tested.
    watcher = UpdateEngineWatcher(system_bus, trusted_uids=frozenset())
    await watcher.start()
    it = watcher.statuses()
    await next_status(it)
    assert other_peer.unique_name and watcher.owner
    with structlog.testing.capture_logs() as logs:
        # Unicast signals bypass match rules: claim the name moved to us, then send NEED_REBOOT.
        fake_noc = Message.new_signal(
            DBUS_PATH,
            DBUS_INTERFACE,
            "NameOwnerChanged",
            "sss",
            [UPDATE_ENGINE_NAME, watcher.owner, other_peer.unique_name],
        )
        fake_noc.destination = engine_watcher_name(watcher)
        await other_peer.send(fake_noc)
        await other_peer.send(
            Message.new_signal(
                UPDATE_ENGINE_PATH, UPDATE_ENGINE_INTERFACE, STATUS_SIGNAL, STATUS_SIGNATURE, NEED_REBOOT.to_dbus()
            )
        )
        await flushed(other_peer)
        await engine.set_status(Operation.DOWNLOADING)
        assert (await next_status(it)).current_operation is Operation.DOWNLOADING
    assert watcher.owner == engine.unique_name
    assert any(e["event"] == "ignored-spoofed-name-owner-changed" for e in logs)
    await watcher.stop()


def engine_watcher_name(watcher: UpdateEngineWatcher) -> str:
    name = watcher._bus.unique_name
    assert name is not None
    return name


async def test_malformed_signals_from_the_owner_are_ignored(
    engine: FakeUpdateEngine, watcher: UpdateEngineWatcher
) -> None:
    await watcher.start()
    it = watcher.statuses()
    await next_status(it)
    with structlog.testing.capture_logs() as logs:
        await engine.emit_raw("s", [UPDATE_STATUS_UPDATED_NEED_REBOOT])
        await engine.emit_raw("xdss", [0, 1.0, UPDATE_STATUS_UPDATED_NEED_REBOOT, "1"])
        await engine.emit_raw(STATUS_SIGNATURE, [0, 7.0, UPDATE_STATUS_UPDATED_NEED_REBOOT, "1", 0])
        await engine.emit_raw(STATUS_SIGNATURE, [0, 1.0, "UPDATE_STATUS_REBOOT_NOW", "1", 0])
        await engine.emit_raw(STATUS_SIGNATURE, NEED_REBOOT.to_dbus(), path="/elsewhere")
        await engine.set_status(Operation.DOWNLOADING)
        assert (await next_status(it)).current_operation is Operation.DOWNLOADING
    reasons = [e for e in logs if e["event"] in ("ignored-malformed-status", "ignored-status-update-wrong-path")]
    assert len(reasons) == 5


async def test_engine_absent_at_start_then_appearing(dbus_bus: object, watcher: UpdateEngineWatcher) -> None:
    await watcher.start()
    assert watcher.owner is None and watcher.latest is None
    it = watcher.statuses()
    pending = asyncio.ensure_future(next_status(it))
    async with FakeUpdateEngine(NEED_REBOOT) as engine:
        assert await pending == NEED_REBOOT
        assert engine.get_status_calls == 1
        assert watcher.owner == engine.unique_name


async def test_engine_restart_is_followed_and_get_status_called_again(
    dbus_bus: object, watcher: UpdateEngineWatcher
) -> None:
    first = await FakeUpdateEngine().start()
    await watcher.start()
    it = watcher.statuses()
    assert (await next_status(it)).current_operation is Operation.IDLE
    old_owner = first.unique_name
    await first.stop()
    async with FakeUpdateEngine(NEED_REBOOT) as second:
        assert await next_status(it) == NEED_REBOOT
        assert second.get_status_calls == 1
        assert watcher.owner == second.unique_name != old_owner
        await second.set_status(Operation.IDLE)
        assert (await next_status(it)).current_operation is Operation.IDLE


async def test_callback_and_stop_end_the_iteration(engine: FakeUpdateEngine, system_bus: MessageBus) -> None:
    seen: list[Status] = []
    watcher = UpdateEngineWatcher(system_bus, on_status=seen.append)
    await watcher.start()
    it = watcher.statuses()
    await next_status(it)
    await watcher.stop()
    with pytest.raises(StopAsyncIteration):
        await next_status(it)
    assert [s.current_operation for s in seen] == [Operation.IDLE]


async def test_send_need_reboot_without_an_engine_reaches_the_watcher(
    dbus_bus: object, watcher: UpdateEngineWatcher, other_peer: MessageBus
) -> None:
    await watcher.start()
    it = watcher.statuses()
    pending = asyncio.ensure_future(next_status(it))
    await send_need_reboot(other_peer)
    assert (await pending).needs_reboot
    assert await get_name_owner(other_peer, UPDATE_ENGINE_NAME) is None  # the name was released


async def test_send_need_reboot_is_refused_to_non_root_while_an_engine_runs(
    engine: FakeUpdateEngine, other_peer: MessageBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("locksmith.bus.update_engine.os.geteuid", lambda: 1000)
    with pytest.raises(UpdateEngineRunningError, match="run send-need-reboot as root") as err:
        await send_need_reboot(other_peer)
    assert engine.unique_name in str(err.value)
    assert "\n" not in str(err.value)
    assert await get_name_owner(other_peer, UPDATE_ENGINE_NAME) == engine.unique_name
