"""What the validator reports: `line N: error|warning|info: message`, as coreos-cloudinit printed it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True, order=True)
class Finding:
    line: int
    level: Level
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.level}: {self.message}"


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)
