"""Running the administrator's hook commands (pre-reboot: e.g. drain; post-boot: e.g. uncordon).

A hook is a shell command line run with /bin/sh -c (or an argv sequence). It gets
LOCKSMITH_HOOK=<pre-reboot|post-boot> in its environment, must exit 0 within its timeout, and
is killed with its whole process group when it overruns — a hung drain must not hold the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OUTPUT_TAIL = 2000  # characters of a failing hook's output kept for the log


@dataclass(frozen=True, slots=True)
class HookResult:
    ok: bool
    detail: str  # one line for the log: "exit 0", "exit 3", "timed out after 30s", "cannot run: …"
    output: str = ""


async def run_command(
    command: str | Sequence[str],
    limit: float,
    env: Mapping[str, str] | None = None,
) -> HookResult:
    """Run `command` to completion or until `limit` seconds; never raises for the command's failures."""
    full_env = {**os.environ, **(env or {})}
    try:
        if isinstance(command, str):
            proc = await asyncio.create_subprocess_shell(
                command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        else:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
    except OSError as exc:
        return HookResult(False, f"cannot run: {exc.strerror or exc}")
    try:
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        return HookResult(False, f"timed out after {limit:g}s")
    except asyncio.CancelledError:
        _kill_group(proc)
        await asyncio.shield(proc.wait())
        raise
    text = out.decode("utf-8", errors="replace")[-OUTPUT_TAIL:]
    return HookResult(proc.returncode == 0, f"exit {proc.returncode}", text)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_hook(name: str, command: str | Sequence[str], limit: float) -> HookResult:
    return await run_command(command, limit, env={"LOCKSMITH_HOOK": name})
