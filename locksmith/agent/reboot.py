"""The reboot action: logind's Reboot(false) over D-Bus (production), or a command (tests, demo,
hosts without logind). Either way, success means "the reboot was accepted", not "we are down":
the agent then waits to be stopped by the shutdown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from dbus_fast.aio import MessageBus

from locksmith.agent.hooks import run_command
from locksmith.bus.logind import request_reboot


class RebootFailed(Exception):
    """The reboot was not accepted; the message is one line for the log."""


class Rebooter(Protocol):
    description: str

    async def reboot(self) -> None: ...


class LogindRebooter:
    """org.freedesktop.login1.Manager.Reboot(false) on the system bus."""

    description = "logind Reboot(false)"

    def __init__(self, bus: Callable[[], Awaitable[MessageBus]]) -> None:
        self._bus = bus

    async def reboot(self) -> None:
        try:
            await request_reboot(await self._bus())
        except Exception as exc:  # any D-Bus failure means the same thing here: not rebooting
            raise RebootFailed(f"logind refused or failed Reboot(false): {exc}") from exc


class CommandRebooter:
    """A configured command (shell line or argv); exit 0 means the reboot was accepted."""

    def __init__(self, command: str | Sequence[str], timeout: float = 60.0) -> None:
        self.command = command
        self.timeout = timeout
        self.description = f"command {command!r}"

    async def reboot(self) -> None:
        result = await run_command(self.command, self.timeout, env={"LOCKSMITH_HOOK": "reboot"})
        if not result.ok:
            tail = result.output.strip()[-200:]
            raise RebootFailed(f"reboot command {self.command!r} failed: {result.detail} {tail}".rstrip())
