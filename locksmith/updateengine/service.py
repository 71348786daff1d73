"""The engine's D-Bus adapter (`update1.INTERFACE`): three methods and one signal over an `UpdateEngine`."""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus signatures from the annotations.

from collections.abc import Callable
from typing import Any

from dbus_fast import DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_method, dbus_signal

from locksmith.bus.system import NameTakenError, own_name
from locksmith.protocol import update1
from locksmith.protocol.update1 import Status


class ManagerInterface(ServiceInterface):
    """`update1.INTERFACE`. The engine does the work; this only translates."""

    def __init__(
        self,
        get_status: Callable[[], Status],
        attempt_update: Callable[[], None],
        reset_status: Callable[[], None],
    ) -> None:
        super().__init__(update1.INTERFACE)
        self._get_status = get_status
        self._attempt_update = attempt_update
        self._reset_status = reset_status

    @dbus_method()
    def AttemptUpdate(self) -> None:
        self._attempt_update()

    @dbus_method()
    def ResetStatus(self) -> None:
        try:
            self._reset_status()
        except ValueError as exc:
            raise DBusError(update1.RESET_NOT_ALLOWED, str(exc)) from None
        except Exception as exc:  # e.g. the GPT cannot be written: tell the caller in one line
            raise DBusError(update1.FAILED, str(exc)) from None

    @dbus_method()
    def GetStatus(self) -> "xdssx":  # noqa: F821
        return self._get_status().to_dbus()

    @dbus_signal()
    def StatusUpdate(self, status: Any) -> "xdssx":  # noqa: F821
        return status.to_dbus()


async def export(bus: MessageBus, interface: ManagerInterface) -> None:
    """Export the object and own the well-known name; NameTakenError if another engine owns it."""
    bus.export(update1.OBJECT_PATH, interface)
    try:
        await own_name(bus, update1.SERVICE)
    except NameTakenError as exc:
        raise NameTakenError(exc.name, exc.owner, hint="is another update_engine running?") from None
