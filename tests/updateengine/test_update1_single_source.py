"""The update engine's D-Bus names and the need-reboot operation are written in one module only:
locksmith/protocol/update1.py. Everyone else (engine, agent, clients, harness) imports them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = Path("locksmith/protocol/update1.py")
# The same pattern as the acceptance check: grep -rn "com.coreos.update1\b\|UPDATED_NEED_REBOOT".
PATTERN = re.compile(r"com.coreos.update1\b|UPDATED_NEED_REBOOT")


# Rewritten on the `agent` branch to use Status.needs_reboot (this branch may not edit them):
# delete these entries once that branch is merged.
def _hits() -> dict[Path, list[int]]:
    hits: dict[Path, list[int]] = {}
    for top in ("locksmith", "strategies", "harness"):
        for path in sorted((ROOT / top).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            found = [n for n, line in enumerate(lines, 1) if PATTERN.search(line)]
            if found:
                hits[path.relative_to(ROOT)] = found
    return hits


def test_update1_names_live_in_one_module() -> None:
    hits = _hits()
    assert HOME in hits  # the scan itself works
    others = {f"{path}:{lines}" for path, lines in hits.items() if path != HOME}
    assert not others, f"use locksmith.protocol.update1 instead of repeating its names: {sorted(others)}"


def test_the_pattern_catches_each_spelling() -> None:
    for text in ('"com.coreos.update1"', "/com/coreos/update1", "com.coreos.update1.Manager", "Op.UPDATED_NEED_REBOOT"):
        assert PATTERN.search(text), text
    assert not PATTERN.search("update1.SERVICE, update1.NEED_REBOOT, status.needs_reboot")
