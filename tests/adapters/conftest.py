"""Fixtures for the adapter tests: bus connections on the private dbus-daemon of `dbus_bus`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dbus_fast.aio import MessageBus

from harness.devtools.dbus import PrivateBus
from locksmith.bus.system import connect_system_bus


@pytest.fixture
async def system_bus(dbus_bus: PrivateBus) -> AsyncIterator[MessageBus]:
    """A connection to the private bus, as locksmithd would open it (via DBUS_SYSTEM_BUS_ADDRESS)."""
    bus = await connect_system_bus()
    yield bus
    bus.disconnect()


@pytest.fixture
async def other_peer(dbus_bus: PrivateBus) -> AsyncIterator[MessageBus]:
    """A second, unprivileged-looking peer on the same bus (an attacker in the spoofing tests)."""
    bus = await connect_system_bus()
    yield bus
    bus.disconnect()
