"""A bus peer that is not root, for the tests of who is trusted: Debian's dbus-send run as `nobody`.

Tests run as root, and locksmithd trusts a StatusUpdate from root (as it does from the engine), so an
attacker in a test must really be another user. The private bus listens on an abstract socket (no file
to be denied), so nobody can reach it.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from locksmith.protocol import update1
from locksmith.protocol.update1 import Status

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


async def status_update_as_nobody(address: str, status: Status) -> None:
    """Emit StatusUpdate(status) from the engine's object path as nobody; returns once it was sent."""
    checked, progress, operation, version, size = status.to_dbus()
    args = [f"int64:{checked}", f"double:{progress}", f"string:{operation}", f"string:{version}", f"int64:{size}"]
    member = f"{update1.INTERFACE}.{update1.STATUS_SIGNAL}"
    cmd = [*NOBODY, "dbus-send", f"--bus={address}", "--type=signal", update1.OBJECT_PATH, member, *args]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"dbus-send as nobody failed: {err.decode(errors='replace')[-300:]}")


async def verdict(logs: list[dict[str, Any]], event: str, within: float = 20.0) -> dict[str, Any]:
    """The first entry named `event` in a structlog.testing.capture_logs() list, once it is there.

    A watcher judges a stranger's signal only after asking the daemon who sent it; a test must wait for
    that verdict before it can tell "ignored" from "not yet believed"."""
    async with asyncio.timeout(within):
        # capture_logs() fills a list and notifies no one, so the list is looked at until the entry is in.
        while not (found := [e for e in logs if e["event"] == event]):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return found[0]
