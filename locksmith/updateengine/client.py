"""`update_engine_client`: CoreOS's flags (`-flag` or `--flag`) over com.coreos.update1."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from locksmith.cli import Expected, run_main
from locksmith.logging import configure_logging
from locksmith.updateengine.busutil import (
    INTERFACE,
    OBJECT_PATH,
    SERVICE_NAME,
    BusUnavailable,
    connect_system_bus,
)
from locksmith.updateengine.status import Operation, Status

MATCH_RULE = f"type='signal',interface='{INTERFACE}',member='StatusUpdate',path='{OBJECT_PATH}'"
# Signals carry the news; this poll only guards against a lost signal.
POLL_SECONDS = 5.0


class ClientError(Exception):
    """Ends the command with one line on stderr and exit status 1."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="update_engine_client", allow_abbrev=False, description="Talk to the update engine on the system bus."
    )
    actions = {
        "check_for_update": "ask the engine to check for an update now (AttemptUpdate) and return",
        "status": "print the engine's status as KEY=VALUE lines",
        "reset_status": "reset an UPDATED_NEED_REBOOT engine to IDLE (ResetStatus)",
        "update": "check for an update and follow it; exit 0 once a reboot is needed, 1 otherwise",
        "watch_for_updates": "print every StatusUpdate signal until interrupted",
    }
    for name, text in actions.items():
        p.add_argument(f"-{name}", f"--{name}", dest=name, action="store_true", help=text)
    p.add_argument("--debug", action="store_true", help="log debug lines; show the traceback of an unexpected error")
    return p


async def _call(bus: MessageBus, member: str) -> list[object]:
    reply = await bus.call(Message(destination=SERVICE_NAME, path=OBJECT_PATH, interface=INTERFACE, member=member))
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        if reply.error_name in (
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NameHasNoOwner",
        ):
            raise ClientError(f"{SERVICE_NAME} is not running on the system bus; start update-engine.service")
        detail = reply.body[0] if reply.body else ""
        raise ClientError(f"{member} failed: {reply.error_name}: {detail}")
    return list(reply.body)


async def _status(bus: MessageBus) -> Status:
    try:
        return Status.from_dbus(await _call(bus, "GetStatus"))
    except ValueError as exc:
        raise ClientError(f"GetStatus returned an unexpected reply: {exc}") from None


async def _subscribe(bus: MessageBus) -> asyncio.Queue[Status]:
    queue: asyncio.Queue[Status] = asyncio.Queue()

    def handler(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.interface == INTERFACE and msg.member == "StatusUpdate":
            # A malformed signal is not ours to crash on.
            with contextlib.suppress(ValueError):
                queue.put_nowait(Status.from_dbus(list(msg.body)))

    bus.add_message_handler(handler)
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[MATCH_RULE],
        )
    )
    if reply is None or reply.message_type == MessageType.ERROR:
        raise ClientError("cannot subscribe to StatusUpdate signals on the system bus")
    return queue


async def _next(bus: MessageBus, queue: asyncio.Queue[Status]) -> Status:
    try:
        return await asyncio.wait_for(queue.get(), timeout=POLL_SECONDS)
    except TimeoutError:
        return await _status(bus)


async def _update(bus: MessageBus) -> int:
    queue = await _subscribe(bus)
    before = await _status(bus)
    if before.current_operation is Operation.UPDATED_NEED_REBOOT:
        print("Update already applied; reboot to use it.")
        return 0
    await _call(bus, "AttemptUpdate")
    print("Initiating update check and install.")
    started = before.current_operation is not Operation.IDLE
    failed = False
    while True:
        status = await _next(bus, queue)
        op = status.current_operation
        if op is Operation.UPDATED_NEED_REBOOT:
            print(f"Update installed: {status.new_version}; reboot needed.")
            return 0
        if op is Operation.REPORTING_ERROR_EVENT:
            failed = True
        if op is Operation.IDLE and started:
            print("Update failed." if failed else "No update available.", file=sys.stderr if failed else sys.stdout)
            return 1
        if op is not Operation.IDLE:
            started = True
            if op is Operation.DOWNLOADING:
                print(f"Downloading: {status.progress * 100:.0f}%")


async def _watch(bus: MessageBus) -> int:
    queue = await _subscribe(bus)
    sys.stdout.write((await _status(bus)).as_lines())
    sys.stdout.flush()
    while True:
        status = await queue.get()
        sys.stdout.write(status.as_lines())
        sys.stdout.flush()


async def _run(args: argparse.Namespace) -> int:
    bus = await connect_system_bus()
    try:
        if args.reset_status:
            await _call(bus, "ResetStatus")
        if args.check_for_update:
            await _call(bus, "AttemptUpdate")
        if args.update:
            return await _update(bus)
        if args.watch_for_updates:
            return await _watch(bus)
        if args.status or not (args.reset_status or args.check_for_update):
            sys.stdout.write((await _status(bus)).as_lines())
        return 0
    finally:
        bus.disconnect()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(level="debug" if args.debug else "warning")
    return run_main(
        "update_engine_client",
        lambda: asyncio.run(_run(args)),
        Expected((ClientError, BusUnavailable)),
        debug=args.debug,
    )


if __name__ == "__main__":
    sys.exit(main())
