"""`com.coreos.update1`, the update engine's D-Bus interface, as pure data: names, the eight
operations and the five-value status (`xdssx`) with its strict codec.

Both ends import this one module: the engine (service), locksmithd and `update_engine_client`
(watchers), `locksmithctl send-need-reboot` and the harness. Nothing here touches a bus.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Any, Final

SERVICE: Final = "com.coreos.update1"
OBJECT_PATH: Final = "/com/coreos/update1"
INTERFACE: Final = "com.coreos.update1.Manager"
STATUS_SIGNAL: Final = "StatusUpdate"
STATUS_SIGNATURE: Final = "xdssx"
METHODS: Final = ("AttemptUpdate", "ResetStatus", "GetStatus")
#: The D-Bus error the engine answers ResetStatus with while it may not reset.
RESET_NOT_ALLOWED: Final = "com.coreos.update1.Error.ResetNotAllowed"
FAILED: Final = "com.coreos.update1.Error.Failed"

#: CoreOS reported this version until a check found an update.
NO_VERSION: Final = "0.0.0.0"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Operation(enum.Enum):
    """CoreOS's operations, declared in CoreOS's enum order (the order is part of the interface)."""

    IDLE = "UPDATE_STATUS_IDLE"
    CHECKING_FOR_UPDATE = "UPDATE_STATUS_CHECKING_FOR_UPDATE"
    UPDATE_AVAILABLE = "UPDATE_STATUS_UPDATE_AVAILABLE"
    DOWNLOADING = "UPDATE_STATUS_DOWNLOADING"
    VERIFYING = "UPDATE_STATUS_VERIFYING"
    FINALIZING = "UPDATE_STATUS_FINALIZING"
    UPDATED_NEED_REBOOT = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
    REPORTING_ERROR_EVENT = "UPDATE_STATUS_REPORTING_ERROR_EVENT"

    @classmethod
    def parse(cls, text: object) -> Operation:
        """The operation named by `text` (the wire string); MalformedStatus for anything else."""
        try:
            return cls(text)
        except ValueError:
            shown = repr(text)[:80]
            raise MalformedStatus(f"current_operation {shown} is not one of the UPDATE_STATUS_* values") from None

    @property
    def short(self) -> str:
        """A word for people: "idle", "downloading", "updated-need-reboot"."""
        return self.name.lower().replace("_", "-")


class MalformedStatus(ValueError):
    """A GetStatus reply or StatusUpdate body that is not a valid `xdssx` status; str() is the reason."""


@dataclass(frozen=True, slots=True)
class Status:
    """One update-engine status: the five values of GetStatus and of the StatusUpdate signal."""

    last_checked_time: int = 0
    progress: float = 0.0
    current_operation: Operation = Operation.IDLE
    new_version: str = NO_VERSION
    new_size: int = 0

    @property
    def needs_reboot(self) -> bool:
        """True only for UPDATE_STATUS_UPDATED_NEED_REBOOT — the one status that leads to a reboot."""
        return self.current_operation is Operation.UPDATED_NEED_REBOOT

    def evolve(self, **changes: Any) -> Status:
        return replace(self, **changes)

    def to_dbus(self) -> list[Any]:
        """The body to send with signature STATUS_SIGNATURE."""
        return [
            int(self.last_checked_time),
            float(self.progress),
            self.current_operation.value,
            self.new_version,
            int(self.new_size),
        ]

    @classmethod
    def from_dbus(cls, signature: str, body: list[Any]) -> Status:
        """Parse a D-Bus body strictly; MalformedStatus names what is wrong. Every value from the
        bus is untrusted: types are checked exactly (a bool is not an int) and ranges too."""
        if signature != STATUS_SIGNATURE:
            raise MalformedStatus(f"signature is {signature[:40]!r}, expected {STATUS_SIGNATURE!r}")
        if len(body) != 5:
            raise MalformedStatus(f"body has {len(body)} values, expected 5")
        checked, progress, operation, version, size = body
        for name, value in (("last_checked_time", checked), ("new_size", size)):
            if type(value) is not int or not _INT64_MIN <= value <= _INT64_MAX:
                raise MalformedStatus(f"{name} is {repr(value)[:40]}, expected a 64-bit integer")
        if size < 0:
            raise MalformedStatus(f"new_size is {size}, expected >= 0")
        if type(progress) is not float or not math.isfinite(progress) or not 0.0 <= progress <= 1.0:
            raise MalformedStatus(f"progress is {repr(progress)[:40]}, expected a number from 0.0 to 1.0")
        if type(version) is not str:
            raise MalformedStatus(f"new_version is {repr(version)[:40]}, expected a string")
        return cls(checked, progress, Operation.parse(operation), version, size)

    def as_lines(self) -> str:
        """The `update_engine_client -status` output, byte for byte as CoreOS printed it."""
        return (
            f"LAST_CHECKED_TIME={self.last_checked_time}\n"
            f"PROGRESS={self.progress:f}\n"
            f"CURRENT_OP={self.current_operation.value}\n"
            f"NEW_VERSION={self.new_version}\n"
            f"NEW_SIZE={self.new_size}\n"
        )


#: What `locksmithctl send-need-reboot` announces: an installed update, no version known.
NEED_REBOOT: Final = Status(0, 1.0, Operation.UPDATED_NEED_REBOOT, "", 0)
