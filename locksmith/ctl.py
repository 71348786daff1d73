"""locksmithctl: manage the cluster-wide reboot lock, with the Go tool's flags and output.

Exit codes: 0 ok, 1 the operation failed, 2 usage or configuration error. Every error is one line
on stderr (`Error locking: <cause>`, ...); a traceback only with --debug.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TextIO

from locksmith import __version__, ctl_hosts, ctl_leases
from locksmith.cli import Expected, fail, one_line, run_main
from locksmith.kv import KVError, KVStore, open_store
from locksmith.lockstore import LockStore, Status
from locksmith.logging import configure_logging
from locksmith.machineid import MachineIdError, read_machine_id
from locksmith.protocol.hostrecord import REFRESH_SECONDS
from locksmith.protocol.semaphore import HOLDER_RULE, SemaphoreError, holder_problem, semaphore_key
from locksmith.safe_text import OUTSIDE_TEXT_LIMIT, add_secret, outside_text, scrub
from locksmith.settings.config import Config, ConfigError, add_config_arguments, flags_from_args, load_config
from locksmith.settings.duration import format_duration, parse_duration
from locksmith.settings.flags import go_style_flags

PROG = "locksmithctl"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_TIMEOUT = 10.0
# An error line may quote a store's or a server's reply: long enough for any message of ours.
_ERROR_TEXT_LIMIT = 5 * OUTSIDE_TEXT_LIMIT

# What the Go tool printed before the cause, per command.
_ERROR_PREFIX = {
    "status": "Error getting status",
    "lock": "Error locking",
    "unlock": "Error unlocking",
    "set-max": "Error setting max",
    "set-spacing": "Error setting spacing",
    "reboot": "Error rebooting",
    "send-need-reboot": "Error sending need-reboot",
}


class CommandFailed(Exception):
    """Ends a command with exit 1; str() is the whole one-line message."""


# --- argument parsing -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse's own format, minus the full usage block: one line, exit 2.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{PROG} --help')\n")


def _max_value(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid maximum value {text!r}: use a whole number, 0 or more") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid maximum value {text!r}: it cannot be negative")
    return value


def _spacing(text: str) -> float:
    try:
        value = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; 0 means no spacing") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid spacing {text!r}: it cannot be negative")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: use seconds between 0 and 3600, e.g. 10")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Manage the cluster wide reboot lock.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="print debug information to stderr")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on an unreachable store after this long (default {DEFAULT_TIMEOUT:g})",
    )
    add_config_arguments(parser, "locksmithctl")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    status = commands.add_parser("status", help="show the semaphore: free slots, max and holders")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.add_argument(
        "--hosts", action="store_true", help="also show every host's own record: state, slot, what it waits for"
    )
    for name, verb in (("lock", "Lock"), ("unlock", "Unlock")):
        p = commands.add_parser(name, help=f"{verb} this machine or a given machine id for reboot")
        p.add_argument("id", nargs="?", metavar="MACHINE-ID", help="default: this machine's id")
    set_max = commands.add_parser("set-max", help="set the maximum number of lock holders")
    set_max.add_argument("max", type=_max_value, metavar="N")
    set_spacing = commands.add_parser(
        "set-spacing", help="set the fleet's minimum gap between one host's release and the next lock (0: none)"
    )
    set_spacing.add_argument("spacing", type=_spacing, metavar="DURATION")
    commands.add_parser("reboot", help="take the lock, then reboot via logind (root only)")
    commands.add_parser("send-need-reboot", help="tell locksmithd an update is installed and needs a reboot")
    return parser


# --- output -------------------------------------------------------------------------------------


def format_age(seconds: float | None) -> str:
    """Go-duration-like, coarse enough to read at a glance: 45s, 3m12s, 2h05m, 3d04h."""
    if seconds is None:
        return "unknown"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def print_status(status: Status, now: datetime, out: TextIO) -> None:
    sem = status.semaphore
    print(f"Available: {sem.semaphore}", file=out)
    print(f"Max: {sem.max}", file=out)
    if status.holders:
        width = max(len("MACHINE ID"), *(len(h.id) for h in status.holders)) + 3
        print(file=out)
        print(f"{'MACHINE ID':<{width}}HELD FOR", file=out)
        for h in status.holders:
            print(f"{h.id:<{width}}{format_age(h.held_for(now))}", file=out)


def status_json(status: Status, now: datetime, leases: ctl_leases.LeaseView) -> dict[str, object]:
    sem = status.semaphore
    return {
        "key": status.key,
        "available": sem.semaphore,
        "max": sem.max,
        "holders": [
            {
                "id": h.id,
                "since": None if h.since is None else h.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "held_for_seconds": None if h.since is None else int(h.held_for(now) or 0),
                **leases.as_json(h.id),
            }
            for h in status.holders
        ],
    }


# --- commands -----------------------------------------------------------------------------------


async def cmd_status(store: LockStore, config: Config, args: argparse.Namespace) -> None:
    status = await store.status()
    now = datetime.now(UTC)
    hosts = ctl_hosts.rows(await store.host_records(), now.timestamp(), REFRESH_SECONDS) if args.hosts else None
    leases, leases_problem = await ctl_leases.view(store)
    if status.ages_problem:
        print(f"Warning: holder ages unknown: {status.ages_problem}", file=sys.stderr)
    for warning in ([leases_problem] if leases_problem else []) + ctl_leases.expired_warnings(leases):
        print(f"Warning: {warning}", file=sys.stderr)
    if args.json:
        data = status_json(status, now, leases)
        if hosts is not None:
            data["hosts"] = ctl_hosts.as_json(hosts, now.timestamp())
        print(json.dumps(data, indent=2))
        return
    print_status(status, now, sys.stdout)
    if hosts is not None:
        paced, problem = await store.read_pacing()
        if problem:
            print(f"Warning: {problem}", file=sys.stderr)
        if paced.spacing_seconds > 0:
            print(f"Spacing: {format_duration(timedelta(seconds=paced.spacing_seconds))}")
        print()
        print(ctl_hosts.table(hosts, now.timestamp()) if hosts else "No host records (agents publish them).")


def _holder_id(args: argparse.Namespace, config: Config) -> str:
    if args.id is not None:
        if not args.id.strip():
            raise CommandFailed("the machine id given is empty")
        why = holder_problem(args.id)
        if why:
            # Refused here, where it enters: an id with a newline would forge lines in `status`.
            raise CommandFailed(f"the machine id given is not valid: {why} (an id is {HOLDER_RULE})")
        return str(args.id)
    return read_machine_id(config.machine_id_file)


async def cmd_lock(store: LockStore, config: Config, args: argparse.Namespace) -> None:
    holder = _holder_id(args, config)
    await ctl_leases.free_expired(store, sys.stderr)
    await ctl_leases.forget(store, holder)  # an admin's lock never expires
    await store.lock(holder)


async def cmd_unlock(store: LockStore, config: Config, args: argparse.Namespace) -> None:
    holder = _holder_id(args, config)
    if holder in await ctl_leases.free_expired(store, sys.stderr):
        return  # its slot is free, as asked
    await store.unlock(holder)
    await ctl_leases.forget(store, holder)


async def cmd_set_max(store: LockStore, config: Config, args: argparse.Namespace) -> None:
    await ctl_leases.free_expired(store, sys.stderr)
    old, new = await store.set_max(args.max)
    print(f"Old-Max: {old}")
    print(f"Max: {new}")


async def cmd_set_spacing(store: LockStore, config: Config, args: argparse.Namespace) -> None:
    old = await store.set_spacing(args.spacing)
    print(f"Old-Spacing: {format_duration(timedelta(seconds=old))}")
    print(f"Spacing: {format_duration(timedelta(seconds=args.spacing))}")


async def cmd_reboot(store: LockStore, config: Config, args: argparse.Namespace) -> None:
    from locksmith.bus.logind import RebootRequestError, request_reboot
    from locksmith.bus.system import BusUnavailableError, connect_system_bus

    if os.geteuid() != 0:
        raise CommandFailed("Error rebooting: reboot must be run as root (try sudo locksmithctl reboot)")
    machine_id = read_machine_id(config.machine_id_file)
    await ctl_leases.free_expired(store, sys.stderr)
    held_before = (await store.get()).semaphore.holds(machine_id)
    try:
        await store.lock(machine_id)
    except (SemaphoreError, KVError) as exc:
        raise CommandFailed(f"Error locking: {exc}") from None
    try:
        bus = await connect_system_bus()
        try:
            await request_reboot(bus)
        finally:
            bus.disconnect()
    except (BusUnavailableError, RebootRequestError) as exc:
        # The reboot will not happen: give the slot back so the fleet is not blocked by us.
        released = ""
        if not held_before:
            try:
                await store.unlock(machine_id)
                released = "; the lock was released"
            except (SemaphoreError, KVError) as unlock_exc:
                released = f"; releasing the lock failed too ({unlock_exc}): run '{PROG} unlock'"
        raise CommandFailed(f"Error rebooting: {exc}{released}") from None


async def cmd_send_need_reboot(config: Config, args: argparse.Namespace) -> None:
    from locksmith.bus.system import BusUnavailableError, connect_system_bus
    from locksmith.bus.update_engine import SendNeedRebootError, UpdateEngineRunningError, send_need_reboot

    try:
        bus = await connect_system_bus()
        try:
            await send_need_reboot(bus)
        finally:
            bus.disconnect()
    except (BusUnavailableError, SendNeedRebootError, UpdateEngineRunningError) as exc:
        raise CommandFailed(f"{_ERROR_PREFIX['send-need-reboot']}: {one_line(exc)}") from None


_STORE_COMMANDS: dict[str, Callable[[LockStore, Config, argparse.Namespace], Awaitable[None]]] = {
    "status": cmd_status,
    "lock": cmd_lock,
    "unlock": cmd_unlock,
    "set-max": cmd_set_max,
    "set-spacing": cmd_set_spacing,
    "reboot": cmd_reboot,
}


# --- main ---------------------------------------------------------------------------------------


def _debug(args: argparse.Namespace, message: str) -> None:
    if args.debug:
        print(scrub(f"debug: {message}"), file=sys.stderr)


async def _run(args: argparse.Namespace, config: Config) -> None:
    if args.command == "send-need-reboot":
        await cmd_send_need_reboot(config, args)
        return
    # One --timeout bounds both a single request and the retries across endpoints. `status` only
    # reads: it must not create or convert an embedded store (a mistyped path, another program's file).
    options = dataclasses.replace(
        config.kv,
        retry_budget=args.timeout,
        request_timeout=min(config.kv.request_timeout, args.timeout),
        read_only=args.command == "status",
    )
    kv: KVStore = open_store(options, semaphore_key(config.lock_group))
    try:
        store = LockStore(kv, config.lock_group)
        _debug(args, f"backend={options.backend} endpoints={','.join(e.original for e in options.endpoints)}")
        _debug(args, f"key={store.key}")
        await _STORE_COMMANDS[args.command](store, config, args)
    finally:
        await kv.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(go_style_flags(parser, argv))
    if args.version:
        print(f"{PROG} version {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.error("a command is required: status, lock, unlock, set-max, reboot or send-need-reboot")
    # Library warnings (e.g. holder ages not recorded) go to stderr, never into our stdout output.
    configure_logging(level="debug" if args.debug else "warning")
    try:
        config = load_config("locksmithctl", flags=flags_from_args(args, "locksmithctl"))
        semaphore_key(config.lock_group)  # refuses groups Go would map onto another key
    except (ConfigError, ValueError) as exc:
        return fail("Error", _bounded(exc), EXIT_USAGE)
    if config.kv.password:
        add_secret(config.kv.password)
    for warning in config.warnings:
        print(scrub(f"Warning: {warning}"), file=sys.stderr)

    return run_main(
        _ERROR_PREFIX[args.command],
        lambda: _command(args, config),
        Expected(CommandFailed, detail=_bounded, label=""),
        Expected((SemaphoreError, KVError, MachineIdError, OSError), detail=_bounded),
        debug=args.debug,
        interrupted_detail="interrupted",
    )


def _bounded(exc: BaseException) -> str:
    """The error's one line, bounded and escaped: it may carry what a store or a file said."""
    return outside_text(one_line(exc), limit=_ERROR_TEXT_LIMIT)


def _command(args: argparse.Namespace, config: Config) -> int:
    asyncio.run(_run(args, config))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
