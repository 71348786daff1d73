"""`locksmithd`: parse flags, load the configuration once, wire the state machine to the world.

Exit codes: 0 after SIGTERM/SIGINT (or at once under the `off` strategy), 1 for a bad
configuration, an unknown strategy or an unreadable machine id — always one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from locksmith.agent.host_publisher import HostPublisher
from locksmith.agent.machine import Agent
from locksmith.agent.ports import Ports
from locksmith.agent.reboot import CommandRebooter, LogindRebooter, Rebooter
from locksmith.agent.settings import agent_settings
from locksmith.agent.wiring import BusHealthGate, LoginSessions, observers_for
from locksmith.bus.system import LazyBus
from locksmith.bus.update_engine import update_statuses
from locksmith.cli import Expected, run_main
from locksmith.kv import KVStore, open_store
from locksmith.logging import configure_logging, debug_enabled
from locksmith.machineid import MachineIdError, read_machine_id
from locksmith.protocol import update1
from locksmith.protocol.semaphore import semaphore_key
from locksmith.settings.config import (
    DEFAULT_PATHS,
    Config,
    ConfigError,
    add_config_arguments,
    flags_from_args,
    load_config,
)
from locksmith.settings.flags import go_style_flags
from locksmith.settings.sources import require_file
from locksmith.strategy import StrategyContext, StrategyError, load_strategy

DESCRIPTION = f"""\
Reboot this host when the update engine reports {update1.NEED_REBOOT.current_operation.value}, as the reboot
strategy allows: at once (reboot), holding a slot of the semaphore in etcd or the embedded store
(etcd-lock), etcd-lock when the store answers else reboot (best-effort, the default), through a
FleetLock server (fleetlock), or never (off: locksmithd exits 0 at once, as CoreOS's did).

Settings come from /usr/share/coreos/update.conf, /etc/coreos/update.conf, LOCKSMITHD_* variables
and these flags, each overriding the one before. Every flag names its variable in [brackets].
"""

EPILOG = """\
after boot, a lock held from before is released (also when another update is already pending),
once the post-boot hook ran and the health gate passed; if the gate times out the lock is KEPT so a
broken update goes no further. SIGTERM before the reboot gives a lock back; during it, it is kept
and released after boot. See examples/locksmithd.env for every variable, commented.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locksmithd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        dest="config_files",
        action="append",
        type=Path,
        metavar="PATH",
        help="read this EnvironmentFile-style file instead of the update.conf pair; repeat for several, "
        "later ones win (default: " + ", ".join(str(p) for p in DEFAULT_PATHS) + ")",
    )
    add_config_arguments(parser, "locksmithd")
    parser.add_argument("--version", action="version", version=f"locksmithd {_version()}")
    return parser


def _version() -> str:
    from locksmith import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(go_style_flags(parser, argv))
    return run_main(
        "locksmithd",
        lambda: _main(args),
        Expected((ConfigError, StrategyError, MachineIdError)),
        debug=debug_enabled,
        hint="LOCKSMITHD_LOG_LEVEL=debug shows the traceback",
        interrupted=0,  # a second Ctrl-C while stopping
    )


def _main(args: argparse.Namespace) -> int:
    # A file named with --config must be there: a typo must not leave the host on defaults.
    for path in args.config_files or ():
        require_file(path, "--config")
    config = load_config(
        "locksmithd",
        flags_from_args(args, "locksmithd"),
        os.environ,
        tuple(args.config_files) if args.config_files else DEFAULT_PATHS,
    )
    strategy = load_strategy(config.strategy)
    machine_id = read_machine_id(config.machine_id_file)
    _setup_logging(config)
    log = structlog.get_logger("locksmith.agent")
    for warning in config.warnings:
        log.warning("config.warning", detail=warning)
    return asyncio.run(_serve(config, strategy, machine_id))


def _setup_logging(config: Config) -> None:
    settings = agent_settings(config)
    secrets = [config.kv.password] if config.kv.password else []
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=secrets)


async def _serve(config: Config, strategy: object, machine_id: str) -> int:
    from locksmith.strategy import Strategy

    assert isinstance(strategy, Strategy)
    settings = agent_settings(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus = LazyBus()
    rebooter: Rebooter = (
        CommandRebooter(settings.reboot_command) if settings.reboot_command else LogindRebooter(bus.get)
    )
    ctx = StrategyContext(
        machine_id=machine_id,
        group=config.lock_group,
        kv=config.kv,
        options=config.strategy_options,
        log=structlog.get_logger("locksmith.strategy").bind(strategy=strategy.name),
    )
    observers, background = observers_for(settings, strategy.name)
    record_store: KVStore | None = None
    if strategy.uses_kv_store:
        record_store = open_store(config.kv, semaphore_key(config.lock_group))
        publisher = HostPublisher(record_store, semaphore_key(config.lock_group), machine_id)
        observers.append(publisher)
        background.append(publisher.publish())
    ports = Ports(
        updates=update_statuses(bus),
        rebooter=rebooter,
        sessions=LoginSessions(bus) if settings.login_check else None,
        health=BusHealthGate(settings.health, bus) if settings.health is not None else None,
        observers=observers,
    )
    agent = Agent(settings, strategy, ctx, ports)
    tasks = [asyncio.create_task(job) for job in background]
    try:
        return await agent.run(stop)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        if record_store is not None:
            await record_store.aclose()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
