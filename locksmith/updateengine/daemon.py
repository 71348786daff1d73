"""`update_engine`: the `update1.SERVICE` D-Bus service on the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import structlog

from locksmith.bus.system import BusUnavailableError, NameTakenError, connect_system_bus
from locksmith.cli import Expected, run_main
from locksmith.logging import configure_logging
from locksmith.machineid import DEFAULT_MACHINE_ID_PATH, MachineIdError, read_machine_id
from locksmith.protocol import update1
from locksmith.settings.flags import add_config_arguments, flags_from_args
from locksmith.settings.sources import require_file
from locksmith.updateengine import engineconfig
from locksmith.updateengine.engine import Identity, UpdateEngine
from locksmith.updateengine.scheduler import Scheduler
from locksmith.updateengine.service import ManagerInterface, export
from locksmith.updateengine.target import SlotTarget

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="update_engine", description=f"The {update1.SERVICE} update engine (Omaha client, A/B USR installer)."
    )
    # No argparse default: a file named here must exist, a default one may be absent.
    release, usr, etc = engineconfig.DEFAULT_FILES
    p.add_argument("--update-conf", type=Path, help=f"admin config, wins over the others (default {etc})")
    p.add_argument("--usr-update-conf", type=Path, help=f"vendor config (default {usr})")
    p.add_argument("--release-file", type=Path, help=f"release facts (default {release})")
    p.add_argument("--machine-id-file", type=Path, default=DEFAULT_MACHINE_ID_PATH)
    add_config_arguments(p, "update_engine")
    p.add_argument("--no-periodic", action="store_true", help="check only on AttemptUpdate (tests, demo)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _boot_id() -> str:
    try:
        return BOOT_ID_PATH.read_text().strip().replace("-", "")
    except OSError:
        return ""


def _load_config(args: argparse.Namespace) -> engineconfig.EngineConfig:
    given = (
        ("--release-file", args.release_file),
        ("--usr-update-conf", args.usr_update_conf),
        ("--update-conf", args.update_conf),
    )
    for option, path in given:
        if path is not None:
            require_file(path, option)
    files = tuple(path or default for (_, path), default in zip(given, engineconfig.DEFAULT_FILES, strict=True))
    named = {path for _, path in given if path is not None}
    config = engineconfig.load(files, flags_from_args(args, "update_engine"), required=named)
    if config.allow_downgrade:
        log = structlog.get_logger("update_engine")
        log.warning("downgrades allowed: a release not newer than the booted one will be installed if offered")
    return config


async def _serve(args: argparse.Namespace) -> int:
    config = _load_config(args)
    identity = Identity(machine_id=read_machine_id(args.machine_id_file), boot_id=_boot_id())
    engine = UpdateEngine(config, identity, SlotTarget(config.disk, config.boot_record, config.public_key))
    scheduler = Scheduler(
        engine,
        initial_delay=config.initial_delay,
        interval=config.check_interval,
        fuzz=config.check_fuzz,
        max_backoff=config.max_backoff,
        periodic=not args.no_periodic,
    )
    bus = await connect_system_bus()
    interface = ManagerInterface(lambda: engine.status, scheduler.request_check, engine.reset_status)
    engine.add_listener(interface.StatusUpdate)
    await export(bus, interface)
    log = structlog.get_logger("update_engine")
    log.info("ready", group=config.group, server=config.server, version=config.version, disk=str(config.disk))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(scheduler.run()),
        asyncio.create_task(stop.wait()),
        asyncio.create_task(bus.wait_for_disconnect()),
    ]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await engine.aclose()
    bus.disconnect()
    return 0 if stop.is_set() else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(level="debug" if args.verbose else "info")
    return run_main(
        "update_engine",
        lambda: asyncio.run(_serve(args)),
        Expected((engineconfig.ConfigError, MachineIdError, BusUnavailableError, NameTakenError)),
        debug=args.verbose,
        hint="rerun with --verbose",
    )


if __name__ == "__main__":
    sys.exit(main())
