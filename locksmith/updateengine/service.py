"""The com.coreos.update1 D-Bus adapter: three methods and one signal over an `UpdateEngine`."""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus signatures from the annotations.

from collections.abc import Callable
from typing import Any

from dbus_fast import DBusError, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_method, dbus_signal

from locksmith.updateengine.busutil import INTERFACE, OBJECT_PATH, SERVICE_NAME
from locksmith.updateengine.status import Status

RESET_NOT_ALLOWED = "com.coreos.update1.Error.ResetNotAllowed"


class NameTaken(Exception):
    pass


class ManagerInterface(ServiceInterface):
    """`com.coreos.update1.Manager`. The engine does the work; this only translates."""

    def __init__(
        self,
        get_status: Callable[[], Status],
        attempt_update: Callable[[], None],
        reset_status: Callable[[], None],
    ) -> None:
        super().__init__(INTERFACE)
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
            raise DBusError(RESET_NOT_ALLOWED, str(exc)) from None
        except Exception as exc:  # e.g. the GPT cannot be written: tell the caller in one line
            raise DBusError("com.coreos.update1.Error.Failed", str(exc)) from None

    @dbus_method()
    def GetStatus(self) -> "xdssx":  # noqa: F821
        return self._get_status().to_dbus()

    @dbus_signal()
    def StatusUpdate(self, status: Any) -> "xdssx":  # noqa: F821
        return status.to_dbus()


async def export(bus: MessageBus, interface: ManagerInterface) -> None:
    """Export the object and own the well-known name (fail if another engine owns it)."""
    bus.export(OBJECT_PATH, interface)
    reply = await bus.request_name(SERVICE_NAME)
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        raise NameTaken(f"{SERVICE_NAME} is already owned on the system bus; is another update_engine running?")
