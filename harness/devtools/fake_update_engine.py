"""A minimal test update engine: a real D-Bus service owning com.coreos.update1.

It answers GetStatus with its current status and emits StatusUpdate when told to — enough for
agent tests until the real engine (locksmith/updateengine/) is used. In-process::

    engine = await FakeUpdateEngine().start()
    await engine.set_status(UPDATE_STATUS_UPDATED_NEED_REBOOT)   # stores it and emits StatusUpdate
    await engine.stop()                                         # releases the name (disconnects)

As a process (`python -m harness.devtools.fake_update_engine`): prints `ready` once it owns the
name; SIGUSR1 = updated, need reboot; SIGUSR2 = back to idle; SIGTERM/SIGINT = exit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dbus_fast import Message, MessageType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

from locksmith.bus.system import connect_system_bus
from locksmith.bus.update_engine import (
    STATUS_SIGNAL,
    STATUS_SIGNATURE,
    UPDATE_ENGINE_INTERFACE,
    UPDATE_ENGINE_NAME,
    UPDATE_ENGINE_PATH,
    UPDATE_STATUS_IDLE,
    UPDATE_STATUS_UPDATED_NEED_REBOOT,
    UpdateStatus,
)

IDLE_STATUS = UpdateStatus(0, 0.0, UPDATE_STATUS_IDLE, "0.0.0.0", 0)


class FakeUpdateEngine:
    """Owns com.coreos.update1 on its own system-bus connection."""

    def __init__(self, status: UpdateStatus = IDLE_STATUS) -> None:
        self.status = status
        self.get_status_calls = 0
        self._bus: MessageBus | None = None

    @property
    def unique_name(self) -> str:
        assert self._bus is not None and self._bus.unique_name is not None, "start() first"
        return self._bus.unique_name

    async def start(self) -> FakeUpdateEngine:
        bus = await connect_system_bus()
        reply = await bus.request_name(UPDATE_ENGINE_NAME, NameFlag.DO_NOT_QUEUE)
        if reply is not RequestNameReply.PRIMARY_OWNER:
            bus.disconnect()
            raise RuntimeError(f"{UPDATE_ENGINE_NAME} is already owned on this bus")
        bus.add_message_handler(self._on_message)
        self._bus = bus
        return self

    async def stop(self) -> None:
        """Disconnect, which drops the name as a crashing engine would."""
        if self._bus is not None:
            self._bus.disconnect()
            await self._bus.wait_for_disconnect()
            self._bus = None

    async def set_status(self, operation: str | UpdateStatus, *, emit: bool = True) -> UpdateStatus:
        """Change the status (an operation string or a whole status) and emit StatusUpdate."""
        if isinstance(operation, UpdateStatus):
            self.status = operation
        else:
            progress = 1.0 if operation == UPDATE_STATUS_UPDATED_NEED_REBOOT else 0.0
            self.status = replace(self.status, current_operation=operation, progress=progress)
        if emit:
            await self.emit_raw(STATUS_SIGNATURE, self.status.to_dbus())
        return self.status

    async def emit_raw(self, signature: str, body: list[Any], path: str = UPDATE_ENGINE_PATH) -> None:
        """Emit a StatusUpdate with any body — for tests of malformed signals."""
        assert self._bus is not None, "start() first"
        await self._bus.send(Message.new_signal(path, UPDATE_ENGINE_INTERFACE, STATUS_SIGNAL, signature, body))

    async def __aenter__(self) -> FakeUpdateEngine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_message(self, msg: Message) -> Message | None:
        if (
            msg.message_type is MessageType.METHOD_CALL
            and msg.path == UPDATE_ENGINE_PATH
            and msg.interface in (UPDATE_ENGINE_INTERFACE, None)
            and msg.member == "GetStatus"
        ):
            self.get_status_calls += 1
            return Message.new_method_return(msg, STATUS_SIGNATURE, self.status.to_dbus())
        return None


async def _serve() -> None:
    engine = await FakeUpdateEngine().start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks: set[asyncio.Task[UpdateStatus]] = set()

    def later(operation: str) -> None:
        task = loop.create_task(engine.set_status(operation))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGUSR1, later, UPDATE_STATUS_UPDATED_NEED_REBOOT)
    loop.add_signal_handler(signal.SIGUSR2, later, UPDATE_STATUS_IDLE)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await engine.stop()


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="fake_update_engine", description=__doc__.splitlines()[0]).parse_args(argv)
    try:
        asyncio.run(_serve())
    except Exception as exc:
        print(f"fake_update_engine: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
