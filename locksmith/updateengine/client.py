"""`update_engine_client`: CoreOS's flags (`-flag` or `--flag`) over the engine's D-Bus interface.

`-update` and `-watch_for_updates` follow the engine through the same watcher as locksmithd: a
StatusUpdate counts only when it comes from the owner of `update1.SERVICE`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from dbus_fast.aio import MessageBus

from locksmith.bus.system import NO_OWNER_ERRORS, BusUnavailableError, CallError, connect_system_bus
from locksmith.bus.update_engine import UpdateEngineWatcher, call_engine, get_status
from locksmith.cli import Expected, run_main
from locksmith.logging import configure_logging
from locksmith.protocol import update1
from locksmith.protocol.update1 import MalformedStatus, Operation, Status

# Signals carry the news; this poll only guards against a lost signal.
POLL_SECONDS = 5.0
NOT_RUNNING = f"{update1.SERVICE} is not running on the system bus; start update-engine.service"


class ClientError(Exception):
    """Ends the command with one line on stderr and exit status 1."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="update_engine_client", allow_abbrev=False, description="Talk to the update engine on the system bus."
    )
    actions = {
        "check_for_update": "ask the engine to check for an update now (AttemptUpdate) and return",
        "status": "print the engine's status as KEY=VALUE lines",
        "reset_status": "reset an engine that waits for a reboot to IDLE (ResetStatus)",
        "update": "check for an update and follow it; exit 0 once a reboot is needed, 1 otherwise",
        "watch_for_updates": "print every StatusUpdate signal until interrupted",
    }
    for name, text in actions.items():
        p.add_argument(f"-{name}", f"--{name}", dest=name, action="store_true", help=text)
    p.add_argument("--debug", action="store_true", help="log debug lines; show the traceback of an unexpected error")
    return p


def _client_error(exc: CallError) -> ClientError:
    if exc.error_name in NO_OWNER_ERRORS:
        return ClientError(NOT_RUNNING)
    return ClientError(f"{exc.member} failed: {exc.error_name or 'no answer'}: {exc.detail}")


async def _call(bus: MessageBus, member: str) -> None:
    try:
        await call_engine(bus, member)
    except CallError as exc:
        raise _client_error(exc) from None


async def _status(bus: MessageBus) -> Status:
    try:
        return await get_status(bus)
    except CallError as exc:
        raise _client_error(exc) from None
    except MalformedStatus as exc:
        raise ClientError(f"GetStatus returned an unexpected reply: {exc}") from None


async def _follow(bus: MessageBus) -> asyncio.Queue[Status]:
    """Every status the engine's owner reports from now on, its GetStatus answer first."""
    queue: asyncio.Queue[Status] = asyncio.Queue()
    watcher = UpdateEngineWatcher(bus, on_status=queue.put_nowait)
    try:
        await watcher.start()
    except (CallError, TimeoutError) as exc:
        raise ClientError(f"cannot follow the update engine's status: {exc}") from None
    if watcher.owner is None:
        raise ClientError(NOT_RUNNING)
    return queue


async def _next(bus: MessageBus, queue: asyncio.Queue[Status]) -> Status:
    try:
        return await asyncio.wait_for(queue.get(), timeout=POLL_SECONDS)
    except TimeoutError:
        return await _status(bus)


async def _update(bus: MessageBus) -> int:
    queue = await _follow(bus)
    before = await _next(bus, queue)
    if before.needs_reboot:
        print("Update already applied; reboot to use it.")
        return 0
    await _call(bus, "AttemptUpdate")
    print("Initiating update check and install.")
    started = before.current_operation is not Operation.IDLE
    failed = False
    while True:
        status = await _next(bus, queue)
        op = status.current_operation
        if status.needs_reboot:
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


async def _watch(bus: MessageBus, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    queue = await _follow(bus)
    status = await _next(bus, queue)  # the current status first
    while True:
        out.write(status.as_lines())
        out.flush()
        status = await queue.get()


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
    # Our stdout is the status lines: the watcher's warnings (a spoofed signal, …) go to stderr.
    configure_logging(level="debug" if args.debug else "warning")
    return run_main(
        "update_engine_client",
        lambda: asyncio.run(_run(args)),
        Expected((ClientError, BusUnavailableError)),
        debug=args.debug,
    )


if __name__ == "__main__":
    sys.exit(main())
