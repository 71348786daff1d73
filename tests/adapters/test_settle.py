"""Settled reports: a burst of state changes is one STATUS= datagram and one coordinator-file write
showing the newest state; STOPPING and exit are never left pending. Real socket, real file."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from locksmith.agent.coordinator import read_agent_state
from locksmith.agent.ports import LockReleased, StateEntered
from locksmith.agent.settle import Settling
from locksmith.agent.states import State
from locksmith.agent.wiring import CoordinatorPublisher, SystemdStatus

NOW = datetime(2024, 1, 10, tzinfo=UTC)
# The reboot strategy's burst: what used to be four writes before the reboot call.
BURST = [
    StateEntered(State.NEED_REBOOT, State.IDLE, NOW),
    StateEntered(State.ACQUIRING, State.NEED_REBOOT, NOW),
    StateEntered(State.PRE_REBOOT, State.ACQUIRING, NOW),
    StateEntered(State.REBOOTING, State.PRE_REBOOT, NOW),
]


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


async def _datagram(sock: socket.socket) -> bytes:
    async with asyncio.timeout(10):
        return await asyncio.get_running_loop().sock_recv(sock, 4096)


def _nothing_queued(sock: socket.socket) -> bool:
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    return False


async def test_a_burst_of_states_is_one_status_line_with_the_newest_state(receiver: socket.socket) -> None:
    observe = SystemdStatus("reboot")
    for event in BURST:
        observe(event)
    assert observe.settling.pending and _nothing_queued(receiver)  # nothing in front of the reboot call
    assert await _datagram(receiver) == b"STATUS=rebooting"
    assert not observe.settling.pending and _nothing_queued(receiver)


async def test_stopping_is_told_at_once_replacing_a_pending_status(receiver: socket.socket) -> None:
    observe = SystemdStatus("reboot")
    observe(StateEntered(State.ACQUIRING, State.NEED_REBOOT, NOW))
    observe(StateEntered(State.STOPPING, State.ACQUIRING, NOW, {"was": "acquiring"}))
    assert receiver.recv(4096) == b"STATUS=stopping (was=acquiring)"
    assert receiver.recv(4096) == b"STOPPING=1"
    assert not observe.settling.pending


async def test_a_burst_is_one_file_write_and_the_file_shows_the_newest_state(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.conf"
    publish = CoordinatorPublisher(path, "reboot")
    written = asyncio.Event()
    writes: list[str] = []
    real = publish.file.publish

    def counting(*args: object, **kwargs: object) -> bool:
        writes.append(str(kwargs["phase"]))
        written.set()
        return real(*args, **kwargs)  # type: ignore[arg-type]

    publish.file.publish = counting  # type: ignore[method-assign]
    for event in BURST:
        publish(event)
    assert not path.exists()
    async with asyncio.timeout(10):
        await written.wait()
    assert writes == ["rebooting"]
    state = read_agent_state(path)
    assert state is not None and state.phase == "rebooting" and state.state == "rebooting"


async def test_after_stopping_every_change_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.conf"
    publish = CoordinatorPublisher(path, "etcd-lock")
    publish(StateEntered(State.ACQUIRING, State.NEED_REBOOT, NOW))
    publish(StateEntered(State.STOPPING, State.ACQUIRING, NOW))
    assert read_agent_state(path).phase == "stopping"  # type: ignore[union-attr]
    publish.lock_kept = "health-gate"  # as if a kept lock had been reported before
    publish(LockReleased("stopped before rebooting"))
    assert read_agent_state(path).lock_kept is None  # type: ignore[union-attr]
    assert not publish.settling.pending


async def test_the_exit_job_writes_what_is_pending_when_cancelled() -> None:
    writes: list[int] = []
    settling = Settling(lambda: writes.append(1), delay=3600)  # the timer alone would never fire in this test
    job = asyncio.create_task(settling.flush_at_exit())
    await asyncio.sleep(0)  # let the job start, as the agent's background jobs do long before exit
    settling.changed()
    settling.changed()
    assert writes == [] and settling.pending
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert writes == [1] and not settling.pending


def test_outside_an_event_loop_each_change_is_written_at_once() -> None:
    writes: list[int] = []
    settling = Settling(lambda: writes.append(1))
    settling.changed()
    settling.changed()
    assert writes == [1, 1] and not settling.pending
