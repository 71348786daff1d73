"""sd_notify against a real AF_UNIX datagram socket (path and abstract addresses)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.agent import sdnotify


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_each_call_sends_one_datagram(receiver: socket.socket) -> None:
    assert sdnotify.ready("idle")
    assert receiver.recv(4096) == b"READY=1\nSTATUS=idle"
    assert sdnotify.status("waiting for the reboot window\nThu 04:00")
    assert receiver.recv(4096) == b"STATUS=waiting for the reboot window Thu 04:00"
    assert sdnotify.watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"
    assert sdnotify.stopping()
    assert receiver.recv(4096) == b"STOPPING=1"


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"locksmith-test-{os.getpid()}-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False


def test_unreachable_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.watchdog() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "1", None),  # meant for another process
        ("0", None, None),
        ("abc", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert sdnotify.watchdog_interval() == expected


def test_the_agents_observer_sends_ready_then_a_status_per_state(receiver: socket.socket) -> None:
    from datetime import UTC, datetime

    from locksmith.agent.ports import LockAttempt, Ready, StateEntered
    from locksmith.agent.states import State
    from locksmith.agent.wiring import SystemdStatus

    observe = SystemdStatus("etcd-lock")
    now = datetime(2024, 1, 10, tzinfo=UTC)
    observe(Ready())
    assert receiver.recv(4096) == b"READY=1\nSTATUS=started (etcd-lock)"
    observe(LockAttempt())  # not a state: systemd is not told
    observe(StateEntered(State.WAITING_FOR_WINDOW, State.NEED_REBOOT, now, {"next_open": "03:00"}))
    assert receiver.recv(4096) == b"STATUS=waiting-for-window (next_open=03:00)"
    observe(StateEntered(State.STOPPING, State.IDLE, now, {"was": "idle"}))
    assert receiver.recv(4096) == b"STATUS=stopping (was=idle)"
    assert receiver.recv(4096) == b"STOPPING=1"
