"""Connecting to the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured by dbus-fast) with a one-line error."""

from __future__ import annotations

import os

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

SERVICE_NAME = "com.coreos.update1"
OBJECT_PATH = "/com/coreos/update1"
INTERFACE = "com.coreos.update1.Manager"
SYSTEM_BUS_DEFAULT = "unix:path=/var/run/dbus/system_bus_socket"


class BusUnavailable(Exception):
    """The system bus cannot be reached; the message is one line."""


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS_DEFAULT


async def connect_system_bus() -> MessageBus:
    try:
        return await MessageBus(bus_type=BusType.SYSTEM).connect()
    except (OSError, EOFError, ValueError) as exc:
        raise BusUnavailable(
            f"cannot connect to the system bus at {system_bus_address()} ({exc.__class__.__name__}: {exc});"
            " is dbus running, or DBUS_SYSTEM_BUS_ADDRESS set right?"
        ) from None
    except Exception as exc:  # dbus-fast raises its own AuthError and friends
        raise BusUnavailable(
            f"cannot connect to the system bus at {system_bus_address()} ({exc.__class__.__name__}: {exc})"
        ) from None
