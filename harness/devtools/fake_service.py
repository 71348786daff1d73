"""What the test bus services (fake logind, fake update engine) share: own a well-known name on a
connection of their own, answer method calls on one object, stop as a crashing service would, and
the `python -m …` entry point that prints `ready` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self

from dbus_fast.aio import MessageBus

from locksmith.bus.system import (
    Method,
    NameTakenError,
    connect_system_bus,
    disconnect,
    emit_signal,
    own_name,
    serve_methods,
)


class FakeService:
    """Owns `name` on its own connection to the system bus (DBUS_SYSTEM_BUS_ADDRESS) and answers
    `methods()` on `path`. Subclasses set the three names and implement `methods`."""

    name: str
    path: str
    interface: str

    _bus: MessageBus | None = None

    def methods(self) -> Mapping[str, Method]:
        raise NotImplementedError

    @property
    def unique_name(self) -> str:
        assert self._bus is not None and self._bus.unique_name is not None, "start() first"
        return self._bus.unique_name

    async def start(self) -> Self:
        bus = await connect_system_bus()
        try:
            await own_name(bus, self.name)
        except NameTakenError as exc:
            await disconnect(bus)
            raise RuntimeError(f"{exc}; is a real service running on this bus?") from None
        serve_methods(bus, self.path, self.interface, self.methods())
        self._bus = bus
        return self

    async def stop(self) -> None:
        """Disconnect, which drops the name as a crashing service would."""
        if self._bus is not None:
            await disconnect(self._bus)
            self._bus = None

    async def emit(self, member: str, signature: str, body: list[Any], path: str | None = None) -> None:
        assert self._bus is not None, "start() first"
        await emit_signal(self._bus, path or self.path, self.interface, member, signature, body)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def serve_until_stopped(
    prog: str,
    service: FakeService,
    on_signals: Mapping[signal.Signals, Callable[[], Awaitable[object]]] | None = None,
) -> int:
    """Run `service`, print `ready` once it owns its name, serve until SIGTERM/SIGINT; `on_signals`
    maps other signals to coroutines to run (e.g. SIGUSR1 → change the status). Exit status 0/1."""

    async def serve() -> None:
        await service.start()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        tasks: set[asyncio.Task[object]] = set()

        def later(action: Callable[[], Awaitable[object]]) -> None:
            task = loop.create_task(_run(action))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        for sig, action in (on_signals or {}).items():
            loop.add_signal_handler(sig, later, action)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await service.stop()

    try:
        asyncio.run(serve())
    except Exception as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(action: Callable[[], Awaitable[object]]) -> object:
    return await action()
