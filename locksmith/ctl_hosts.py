"""The fleet view of `locksmithctl status --hosts`: records (or unreadable values) into rows and a table.

Pure: ctl.py reads the `-hosts/` prefix from the store and hands the values here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from locksmith.protocol.hostrecord import HostRecord, Unreadable, decode, is_stale


@dataclass(frozen=True)
class Row:
    host: str
    state: str
    slot: bool
    reason: str
    since: float
    version: str
    last_error: str


def _safe(text: str) -> str:
    return text if text.isprintable() else repr(text)


def rows(values: dict[str, bytes], now: float, refresh_seconds: float) -> list[Row]:
    """One row per stored record, sorted by host id; stale and unreadable records say so."""
    out: list[Row] = []
    for host in sorted(values):
        parsed: HostRecord | Unreadable = decode(values[host])
        if isinstance(parsed, Unreadable):
            out.append(Row(_safe(host), "unreadable", False, parsed.reason, 0.0, "", ""))
            continue
        state = f"stale ({parsed.state})" if is_stale(parsed, now, refresh_seconds) else parsed.state
        reason = f"waiting for {parsed.waiting_for}" if parsed.waiting_for else ""
        out.append(Row(_safe(host), state, parsed.slot, reason, parsed.since, parsed.version, parsed.last_error))
    return out


def table(found: list[Row], now: float) -> str:
    """A plain-text table; times shown as age in seconds from `now` (the reader's clock)."""
    header = ("HOST", "STATE", "SLOT", "REASON", "FOR", "VERSION", "LAST ERROR")
    lines = [header]
    for r in found:
        age = f"{max(now - r.since, 0):.0f}s" if r.since else "-"
        lines.append((r.host, r.state, "yes" if r.slot else "", r.reason, age, r.version, r.last_error))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def as_json(found: list[Row], now: float) -> list[dict[str, object]]:
    """The rows for `status --hosts --json`, with the age in whole seconds beside the writer's time."""
    return [asdict(r) | {"for_seconds": int(max(now - r.since, 0)) if r.since else None} for r in found]
