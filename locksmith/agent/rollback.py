"""The record of a rollback this agent started: after a boot under the lock failed its health gate,
locksmithd reboots once more so the bootloader goes back to the old slot (the new one was never marked
good), and keeps the lock through it, so the rollout stops at this host.

The record is what tells the next boot that it is the rollback's: it keeps the lock then even though the
old OS is healthy, and it never rolls back twice (a record already there means this is the second
unhealthy boot in a row: stay up, keep the lock, say why). It goes once the lock was given back by
someone else (`locksmithctl unlock`, the admin's "fixed, go on"). It is our own file, read with a bound.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_MAX_BYTES = 4096


@dataclass(frozen=True)
class Rollback:
    at: str  # when the rollback reboot was asked for (UTC, ISO 8601)
    reason: str


class RollbackRecord:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Rollback | None:
        """The rollback recorded, or None; a damaged record still counts (never roll back twice)."""
        try:
            with self.path.open("rb") as f:
                raw = f.read(_MAX_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return Rollback("?", f"the rollback record {self.path} cannot be read: {exc}")
        try:
            data = json.loads(raw)
            return Rollback(str(data["at"])[:64], str(data["reason"])[:300])
        except (ValueError, KeyError, TypeError):
            return Rollback("?", f"the rollback record {self.path} is damaged")

    def write(self, reason: str) -> None:
        """Durably, before the reboot is asked for: the next boot must find it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        text = json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"), "reason": reason})
        with tmp.open("w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def clear(self) -> bool:
        """Forget it; True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
