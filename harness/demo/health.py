"""The simulated host's health check, run by locksmithd's health gate after boot
(LOCKSMITHD_HEALTH_COMMAND): healthy means the booted /usr is readable and the update engine answers
on the bus. Once healthy, the booted slot is marked successful — the boot is committed, as
`update_engine` marks a good boot on CoreOS — so a slot never found healthy is rolled back at the
next boot, and the lock stays held (the agent's gate times out), stopping the rollout there.

    python -m harness.demo.health --disk DISK [--broken-version V]

Exit 0 healthy (slot marked), 1 not (yet) healthy; one line either way. `--broken-version` (or
LOCKSMITH_DEMO_BROKEN_VERSION) makes that release fail the check: the demo's rollback scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from locksmith.bus.system import BusUnavailableError, CallError, connect_system_bus, disconnect
from locksmith.bus.update_engine import get_status
from locksmith.disk.gpt import GptError
from locksmith.disk.slots import SlotError, booted_slot, mark_successful
from locksmith.protocol.update1 import MalformedStatus, Operation
from locksmith.updateengine.pack import PackError, read_release_from_slot


class Unhealthy(Exception):
    pass


async def _engine_answers() -> str:
    try:
        bus = await connect_system_bus()
    except BusUnavailableError as exc:
        raise Unhealthy(f"no system bus: {exc}") from None
    try:
        status = await get_status(bus, within=2.0)
    except (CallError, MalformedStatus) as exc:
        raise Unhealthy(f"update engine does not answer GetStatus: {exc}") from None
    finally:
        await disconnect(bus)
    if status.current_operation is Operation.REPORTING_ERROR_EVENT:
        raise Unhealthy("update engine is reporting an error")
    return status.current_operation.short


def check(disk: Path, broken_version: str | None) -> str:
    try:
        slot = booted_slot(disk)
        version = read_release_from_slot(disk, slot).get("COREOS_RELEASE_VERSION", "")
    except (SlotError, PackError, GptError, OSError) as exc:
        raise Unhealthy(str(exc)) from None
    if broken_version and version == broken_version:
        raise Unhealthy(f"release {version} is broken (the demo's fault: --broken-version)")
    operation = asyncio.run(_engine_answers())
    if not slot.successful:
        slot = mark_successful(disk, slot)
    return f"healthy: {slot.name} version {version}, update engine {operation}; slot marked successful"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="locksmith-demo-health", description=__doc__.splitlines()[0])
    p.add_argument("--disk", type=Path, required=True, help="the host's GPT disk image")
    p.add_argument("--broken-version", default=os.environ.get("LOCKSMITH_DEMO_BROKEN_VERSION") or None)
    args = p.parse_args(argv)
    try:
        print(check(args.disk, args.broken_version))
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    except (SlotError, GptError, OSError) as exc:
        print(f"unhealthy: cannot mark the slot successful: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
