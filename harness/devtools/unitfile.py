"""Reading a systemd unit file the simple way tests need: each directive's values, in order."""

from __future__ import annotations

from pathlib import Path


def directives(unit: Path) -> dict[str, list[str]]:
    """KEY -> every value given to it (sections flattened; comments and section headers skipped)."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out
