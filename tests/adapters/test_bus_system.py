"""locksmith.bus.system on a real dbus-daemon: the one method-call path (deadline, one-line
errors) and the service side the fakes and send-need-reboot share."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dbus_fast import Message
from dbus_fast.aio import MessageBus

from locksmith.bus.system import (
    CallError,
    MethodError,
    NameTakenError,
    call,
    get_name_owner,
    own_name,
    serve_methods,
)

NAME, PATH, IFACE = "org.example.Probe", "/org/example/Probe", "org.example.Probe"


async def test_an_error_reply_is_one_bounded_line(system_bus: MessageBus, other_peer: MessageBus) -> None:
    await own_name(other_peer, NAME)

    def fail(_msg: Message) -> tuple[str, list[Any]]:
        raise MethodError("org.example.Error.Nope", "first line\nsecond line " + "x" * 1000)

    serve_methods(other_peer, PATH, IFACE, {"Fail": fail, "Echo": lambda msg: ("s", [msg.body[0]])})
    reply = await call(system_bus, NAME, PATH, IFACE, "Echo", "s", ["hi"])
    assert reply.body == ["hi"]
    with pytest.raises(CallError) as err:
        await call(system_bus, NAME, PATH, IFACE, "Fail")
    text = str(err.value)
    assert err.value.error_name == "org.example.Error.Nope"
    assert text.startswith("Fail on org.example.Probe failed: org.example.Error.Nope: first line second line")
    assert "\n" not in text and len(text) < 300


async def test_no_answer_in_time_is_a_call_error(system_bus: MessageBus, other_peer: MessageBus) -> None:
    await own_name(other_peer, NAME)
    other_peer.add_message_handler(lambda msg: msg.member == "Anything")  # claimed, never answered
    with pytest.raises(CallError) as err:
        await call(system_bus, NAME, PATH, IFACE, "Anything", within=0.2)
    assert err.value.timed_out and err.value.error_name is None
    assert "no answer within 0.2s" in str(err.value)


async def test_a_call_on_a_closed_connection_fails_at_once(system_bus: MessageBus) -> None:
    system_bus.disconnect()
    await system_bus.wait_for_disconnect()
    with pytest.raises(CallError, match="not connected"):
        await call(system_bus, NAME, PATH, IFACE, "Anything")


async def test_own_name_never_queues_behind_an_owner(system_bus: MessageBus, other_peer: MessageBus) -> None:
    await own_name(other_peer, NAME)
    with pytest.raises(NameTakenError) as err:
        await own_name(system_bus, NAME)
    assert err.value.owner == other_peer.unique_name and "\n" not in str(err.value)
    # Our side of the socket closing is not the daemon having dropped the peer's names (under load the
    # owner was still the peer): wait for the daemon's NameOwnerChanged, with a deadline.
    dropped = asyncio.Event()

    def on_signal(msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.body[0] == NAME and msg.body[2] == "":
            dropped.set()

    system_bus.add_message_handler(on_signal)
    rule = f"type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{NAME}'"
    await call(
        system_bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", [rule]
    )
    other_peer.disconnect()
    await asyncio.wait_for(dropped.wait(), 10)
    # Had we queued, the name would now be ours; DO_NOT_QUEUE leaves it free.
    assert await get_name_owner(system_bus, NAME) is None
