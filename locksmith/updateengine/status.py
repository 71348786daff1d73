"""The update engine's status as CoreOS exposes it on D-Bus: five values, signature `xdssx`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

DBUS_SIGNATURE = "xdssx"
NO_VERSION = "0.0.0.0"


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
    def parse(cls, text: str) -> Operation:
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown update engine operation {text!r}") from None


@dataclass(frozen=True)
class Status:
    last_checked_time: int = 0
    progress: float = 0.0
    current_operation: Operation = Operation.IDLE
    # CoreOS reported "0.0.0.0" until a check found an update.
    new_version: str = NO_VERSION
    new_size: int = 0

    def to_dbus(self) -> list[Any]:
        return [
            int(self.last_checked_time),
            float(self.progress),
            self.current_operation.value,
            self.new_version,
            int(self.new_size),
        ]

    @classmethod
    def from_dbus(cls, body: list[Any]) -> Status:
        if len(body) != 5:
            raise ValueError(f"a status has 5 values (xdssx), got {len(body)}")
        checked, progress, op, version, size = body
        return cls(int(checked), float(progress), Operation.parse(op), str(version), int(size))

    def evolve(self, **changes: Any) -> Status:
        return replace(self, **changes)

    def as_lines(self) -> str:
        """The `update_engine_client -status` output, byte for byte as CoreOS printed it."""
        return (
            f"LAST_CHECKED_TIME={self.last_checked_time}\n"
            f"PROGRESS={self.progress:f}\n"
            f"CURRENT_OP={self.current_operation.value}\n"
            f"NEW_VERSION={self.new_version}\n"
            f"NEW_SIZE={self.new_size}\n"
        )
