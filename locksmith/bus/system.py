"""The system bus: connecting (DBUS_SYSTEM_BUS_ADDRESS honoured), the shared lazily (re)connecting
connection, the one place a method call is built and sent with a deadline, and the small service
side (own a name, answer calls on one object, emit a signal) that locksmithctl and the fakes share.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import structlog
from dbus_fast import BusType, Message, MessageType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

DEFAULT_SYSTEM_BUS_ADDRESS: Final = "unix:path=/var/run/dbus/system_bus_socket"

DBUS_NAME: Final = "org.freedesktop.DBus"
DBUS_PATH: Final = "/org/freedesktop/DBus"
DBUS_INTERFACE: Final = "org.freedesktop.DBus"
#: The errors a call to a well-known name nobody owns comes back with.
NO_OWNER_ERRORS: Final = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")

#: dbus-daemon's own default reply timeout: a call never waits longer than the daemon would.
DEFAULT_CALL_TIMEOUT: Final = 25.0
BUS_RETRY_MAX: Final = 30.0
_DETAIL_MAX = 200

_log = structlog.get_logger("locksmith.bus")


class BusUnavailableError(Exception):
    """The system bus cannot be reached. str() is one line naming the address and the fix."""


class CallError(Exception):
    """A method call failed: an error reply (`error_name` set), no answer in time (`timed_out`), or
    the connection broke. str() is one line: what was called, the error name, the peer's text."""

    def __init__(self, member: str, destination: str, error_name: str | None, detail: str, *, timed_out: bool = False):
        self.member = member
        self.destination = destination
        self.error_name = error_name
        self.detail = _one_line(detail)
        self.timed_out = timed_out
        what = error_name or ("timeout" if timed_out else "connection failed")
        super().__init__(f"{member} on {destination} failed: {what}{': ' + self.detail if self.detail else ''}")


class NameTakenError(Exception):
    """Another connection owns the well-known name we wanted. str() is one line."""

    def __init__(self, name: str, owner: str | None, *, hint: str = "") -> None:
        self.name = name
        self.owner = owner
        by = f" (by {owner})" if owner else ""
        super().__init__(f"{name} is already owned on the system bus{by}{'; ' + hint if hint else ''}")


def system_bus_address() -> str:
    """The address we connect to: $DBUS_SYSTEM_BUS_ADDRESS, else the standard system socket."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS_ADDRESS


async def connect_system_bus(address: str | None = None) -> MessageBus:
    """Connect to the system bus (or the system-type bus at `address`, e.g. a simulated host's).

    Raises BusUnavailableError with one line on any failure; the caller decides whether to retry."""
    address = address or system_bus_address()
    try:
        return await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    except Exception as exc:  # OSError, dbus-fast's AuthError, address parse errors: all mean "no bus"
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise BusUnavailableError(
            f"cannot connect to the system bus at {address}: {detail}"
            " (is dbus-daemon running? set DBUS_SYSTEM_BUS_ADDRESS to use another bus)"
        ) from None


def method_call(
    destination: str, path: str, interface: str, member: str, signature: str = "", body: Sequence[Any] = ()
) -> Message:
    """The one builder of method-call messages (`call` sends it; the update-engine watcher sends
    its own without awaiting, to handle the reply in arrival order)."""
    return Message(
        destination=destination, path=path, interface=interface, member=member, signature=signature, body=list(body)
    )


async def call(
    bus: MessageBus,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
    *,
    within: float = DEFAULT_CALL_TIMEOUT,
) -> Message:
    """Call `member` and return the method return; CallError (one line) for anything else."""
    if not bus.connected:
        raise CallError(member, destination, None, "not connected to the bus")
    try:
        async with asyncio.timeout(within):
            reply = await bus.call(method_call(destination, path, interface, member, signature, body))
    except TimeoutError:
        raise CallError(member, destination, None, f"no answer within {within:g}s", timed_out=True) from None
    except Exception as exc:  # the connection itself failed (EOFError, OSError, dbus-fast's errors)
        raise CallError(member, destination, None, f"{exc.__class__.__name__}: {exc}") from None
    if reply is None:
        raise CallError(member, destination, None, "no reply")
    if reply.message_type is MessageType.ERROR:
        raise CallError(member, destination, reply.error_name, first_string(reply.body))
    return reply


async def call_daemon(
    bus: MessageBus, member: str, signature: str = "", body: Sequence[Any] = (), *, within: float = DEFAULT_CALL_TIMEOUT
) -> Message:
    """A call to the bus daemon itself (AddMatch, GetNameOwner, NameHasOwner, …)."""
    return await call(bus, DBUS_NAME, DBUS_PATH, DBUS_INTERFACE, member, signature, body, within=within)


async def get_name_owner(bus: MessageBus, name: str) -> str | None:
    """The unique name owning `name`, or None if nobody owns it."""
    try:
        reply = await call_daemon(bus, "GetNameOwner", "s", [name])
    except CallError as exc:
        if exc.error_name is None:
            raise
        return None
    return str(reply.body[0])


async def name_has_owner(bus: MessageBus, name: str) -> bool:
    reply = await call_daemon(bus, "NameHasOwner", "s", [name])
    return bool(reply.body and reply.body[0])


def first_string(body: Sequence[Any]) -> str:
    """The text of an error reply: its first body value, if it is a string."""
    return body[0] if body and isinstance(body[0], str) else ""


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


# -- the service side ----------------------------------------------------------------------


async def own_name(bus: MessageBus, name: str) -> None:
    """Become the primary owner of `name`, never queueing behind another owner: NameTakenError if
    someone has it. (A queued request would silently make us the owner later.)"""
    reply = await bus.request_name(name, NameFlag.DO_NOT_QUEUE)
    if reply is RequestNameReply.EXISTS:
        raise NameTakenError(name, await get_name_owner(bus, name))
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        raise NameTakenError(name, None)


class MethodError(Exception):
    """Raised by a served method to answer with the D-Bus error `name` and `text`."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


#: A served method: the call in, (signature, body) of the method return out (or MethodError).
Method = Callable[[Message], tuple[str, list[Any]]]


def serve_methods(bus: MessageBus, path: str, interface: str, methods: Mapping[str, Method]) -> Callable[[], None]:
    """Answer method calls on object `path` (addressed to `interface`, or to no interface) from
    `methods`; returns the function that stops answering. Other messages are left alone."""

    def handler(msg: Message) -> Message | None:
        if msg.message_type is not MessageType.METHOD_CALL or msg.path != path:
            return None
        method = methods.get(msg.member) if msg.interface in (interface, None) else None
        if method is None:
            return None
        try:
            signature, body = method(msg)
        except MethodError as exc:
            return Message.new_error(msg, exc.name, exc.text)
        return Message.new_method_return(msg, signature, body)

    bus.add_message_handler(handler)
    return lambda: bus.remove_message_handler(handler)


async def emit_signal(bus: MessageBus, path: str, interface: str, member: str, signature: str, body: list[Any]) -> None:
    """Broadcast a signal from object `path` on our connection."""
    await bus.send(Message.new_signal(path, interface, member, signature, body))


async def disconnect(bus: MessageBus) -> None:
    """Disconnect and wait until the connection is closed (names it owned are released by then)."""
    bus.disconnect()
    with contextlib.suppress(Exception):
        await bus.wait_for_disconnect()


class LazyBus:
    """One system-bus connection, made on first use and remade if it drops; waits (with a capped
    back-off) while the bus is absent instead of crash-looping."""

    def __init__(self) -> None:
        self._bus: MessageBus | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> MessageBus:
        if self._bus is not None and self._bus.connected:  # the usual case, e.g. the reboot call: no lock to take
            return self._bus
        async with self._lock:
            if self._bus is not None and self._bus.connected:
                return self._bus
            delay = 0.5
            while True:
                try:
                    self._bus = await connect_system_bus()
                    return self._bus
                except BusUnavailableError as exc:
                    _log.warning("bus.unavailable", reason=str(exc), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BUS_RETRY_MAX)

    async def close(self) -> None:
        if self._bus is not None:
            await disconnect(self._bus)
            self._bus = None
