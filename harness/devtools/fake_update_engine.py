"""A minimal test update engine: a real D-Bus service owning `update1.SERVICE`.

It answers GetStatus with its current status, counts AttemptUpdate calls, and emits StatusUpdate
when told to — enough for agent and client tests without the real engine. In-process::

    engine = await FakeUpdateEngine().start()
    await engine.set_status(Operation.DOWNLOADING)   # stores it and emits StatusUpdate
    await engine.set_status(NEED_REBOOT)             # a whole status
    await engine.stop()                              # releases the name (disconnects)

As a process (`python -m harness.devtools.fake_update_engine [--status OP] [--new-version V]`):
prints `ready` once it owns the name with that status; SIGUSR1 = need reboot; SIGUSR2 = back to
idle; SIGTERM/SIGINT = exit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from dbus_fast import Message

from harness.devtools.fake_service import FakeService, serve_until_stopped
from locksmith.bus.system import Method
from locksmith.bus.update_engine import status_methods
from locksmith.protocol import update1
from locksmith.protocol.update1 import NEED_REBOOT, Operation, Status


class FakeUpdateEngine(FakeService):
    """Owns `update1.SERVICE` on its own system-bus connection."""

    name, path, interface = update1.SERVICE, update1.OBJECT_PATH, update1.INTERFACE

    def __init__(self, status: Status | None = None) -> None:
        self.status = status or Status()
        self.get_status_calls = 0
        self.attempt_update_calls = 0
        self.attempted = asyncio.Event()

    def methods(self) -> Mapping[str, Method]:
        get_status = status_methods(self._get_status)
        return {**get_status, "AttemptUpdate": self._attempt_update}

    def _get_status(self) -> Status:
        self.get_status_calls += 1
        return self.status

    def _attempt_update(self, _msg: Message) -> tuple[str, list[Any]]:
        self.attempt_update_calls += 1
        self.attempted.set()
        return "", []

    async def set_status(self, status: Operation | Status, *, emit: bool = True) -> Status:
        """Change the status (an operation, or a whole status) and emit StatusUpdate."""
        if isinstance(status, Status):
            self.status = status
        else:
            progress = 1.0 if status is NEED_REBOOT.current_operation else 0.0
            self.status = self.status.evolve(current_operation=status, progress=progress)
        if emit:
            await self.emit_raw(update1.STATUS_SIGNATURE, self.status.to_dbus())
        return self.status

    async def emit_raw(self, signature: str, body: list[Any], path: str = update1.OBJECT_PATH) -> None:
        """Emit a StatusUpdate with any body — for tests of malformed signals."""
        await self.emit(update1.STATUS_SIGNAL, signature, body, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_update_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--status", type=Operation.parse, default=Operation.IDLE, help="the operation to start in")
    parser.add_argument("--new-version", default=update1.NO_VERSION)
    args = parser.parse_args(argv)
    progress = 1.0 if args.status is NEED_REBOOT.current_operation else 0.0
    engine = FakeUpdateEngine(Status(0, progress, args.status, args.new_version, 0))
    return serve_until_stopped(
        "fake_update_engine",
        engine,
        {
            signal.SIGUSR1: lambda: engine.set_status(NEED_REBOOT.current_operation),
            signal.SIGUSR2: lambda: engine.set_status(Operation.IDLE),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
