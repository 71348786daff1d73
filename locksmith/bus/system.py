"""Connecting to the system bus, honouring DBUS_SYSTEM_BUS_ADDRESS, with a one-line error."""

from __future__ import annotations

import os

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

DEFAULT_SYSTEM_BUS_ADDRESS = "unix:path=/var/run/dbus/system_bus_socket"

DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
DBUS_INTERFACE = "org.freedesktop.DBus"


class BusUnavailableError(Exception):
    """The system bus cannot be reached. str() is one line naming the address and the fix."""


def system_bus_address() -> str:
    """The address we connect to: $DBUS_SYSTEM_BUS_ADDRESS, else the standard system socket."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS_ADDRESS


async def connect_system_bus() -> MessageBus:
    """Connect to the system bus (dbus-fast reads DBUS_SYSTEM_BUS_ADDRESS itself for BusType.SYSTEM).

    Raises BusUnavailableError with one line on any failure; the caller decides whether to retry."""
    address = system_bus_address()
    try:
        return await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    except Exception as exc:  # OSError, dbus-fast's AuthError, address parse errors: all mean "no bus"
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise BusUnavailableError(
            f"cannot connect to the system bus at {address}: {detail}"
            " (is dbus-daemon running? set DBUS_SYSTEM_BUS_ADDRESS to use another bus)"
        ) from None
