"""GetStatus on a host's bus: the one D-Bus call the demo makes itself (health check and live view)."""

from __future__ import annotations

from dataclasses import dataclass

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

NAME, PATH, INTERFACE = "com.coreos.update1", "/com/coreos/update1", "com.coreos.update1.Manager"
PREFIX = "UPDATE_STATUS_"


@dataclass(frozen=True)
class EngineStatus:
    operation: str  # without the UPDATE_STATUS_ prefix, lower case: "idle", "downloading", …
    progress: float
    new_version: str


async def get_status(bus: MessageBus, within: float = 2.0) -> EngineStatus | None:
    """The engine's status, or None when no engine answers (down, rebooting, or a bad reply)."""
    import asyncio

    try:
        async with asyncio.timeout(within):
            reply = await bus.call(
                Message(destination=NAME, path=PATH, interface=INTERFACE, member="GetStatus", signature="")
            )
    except (TimeoutError, OSError, EOFError):
        return None
    if reply is None or reply.message_type is not MessageType.METHOD_RETURN or reply.signature != "xdssx":
        return None
    _checked, progress, operation, new_version, _size = reply.body
    op = str(operation).removeprefix(PREFIX).lower().replace("_", "-")
    return EngineStatus(op, float(progress), str(new_version))
