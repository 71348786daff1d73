"""The default reboot action: logind Reboot(false) on the (private) system bus."""

from __future__ import annotations

import asyncio

import pytest

from harness.devtools.dbus import PrivateBus
from harness.devtools.fake_logind import FakeLogind
from locksmith.agent.reboot import LogindRebooter, RebootFailed
from locksmith.bus.system import connect_system_bus


async def test_logind_reboot_false_is_called(dbus_bus: PrivateBus) -> None:
    logind = await FakeLogind().start()
    bus = await connect_system_bus()

    async def get_bus():  # type: ignore[no-untyped-def]
        return bus

    try:
        await LogindRebooter(get_bus).reboot()
        call = await asyncio.wait_for(logind.wait_for_reboot(), 5)
        assert call.interactive is False
        assert call.sender == bus.unique_name
    finally:
        bus.disconnect()
        await logind.stop()


async def test_logind_refusal_is_reboot_failed(dbus_bus: PrivateBus) -> None:
    logind = await FakeLogind(refuse_reboot="org.freedesktop.DBus.Error.AccessDenied").start()
    bus = await connect_system_bus()

    async def get_bus():  # type: ignore[no-untyped-def]
        return bus

    try:
        with pytest.raises(RebootFailed, match="AccessDenied"):
            await LogindRebooter(get_bus).reboot()
    finally:
        bus.disconnect()
        await logind.stop()
