"""coreos.units: unit files, drop-ins, masks, enablement, then the units' commands.

Placement as CoreOS: `/etc/systemd/system/` (`/run/...` with `runtime: true`); network units
(`.network`, `.netdev`, `.link`) under `/etc/systemd/network/` (`/run/...`) for systemd-networkd, which
is restarted before any other unit's command runs, so a unit started here already has its network.
"""

from __future__ import annotations

from typing import Any

from locksmith.cloudconfig.context import Context, SectionFailed
from locksmith.cloudconfig.rootfs import PathRefused
from locksmith.cloudconfig.runner import CommandFailed

NETWORK_SUFFIXES = (".network", ".netdev", ".link")


def is_network(name: str) -> bool:
    return name.endswith(NETWORK_SUFFIXES)


def unit_dir(name: str, runtime: bool) -> str:
    base = "/run" if runtime else "/etc"
    return f"{base}/systemd/network" if is_network(name) else f"{base}/systemd/system"


def write_drop_in(ctx: Context, unit: str, name: str, text: str, runtime: bool = True, mode: int = 0o644) -> bool:
    return ctx.root.write(f"{unit_dir(unit, runtime)}/{unit}.d/{name}", text.encode(), mode)


def reload_and(ctx: Context, command: str, unit: str) -> None:
    """After a drop-in changed: reload systemd, then `command` the unit (on the live system only)."""
    ctx.systemctl("daemon-reload")
    ctx.unit_job(command, unit)


def _files(ctx: Context, unit: dict[str, Any]) -> list[str]:
    name, runtime = unit["name"], bool(unit.get("runtime"))
    where = f"{unit_dir(name, runtime)}/{name}"
    changes = []
    if unit.get("mask"):
        if ctx.root.symlink(where, "/dev/null"):
            changes.append(f"masked {name}")
    else:
        if unit.get("mask") is False and ctx.root.remove_link_to(where, "/dev/null"):
            changes.append(f"unmasked {name}")
        if "content" in unit and ctx.root.write(where, unit["content"].encode()):
            changes.append(f"wrote {where}")
    for drop_in in unit.get("drop_ins", []):
        if write_drop_in(ctx, name, drop_in["name"], drop_in.get("content", ""), runtime):
            changes.append(f"wrote drop-in {name}.d/{drop_in['name']}")
    return changes


def _enable(ctx: Context, unit: dict[str, Any]) -> None:
    args = ["systemctl"]
    if not ctx.root.is_live:
        args.append(f"--root={ctx.root.path}")
    if unit.get("runtime"):
        args.append("--runtime")
    # Enabling only writes symlinks, so it is done inside a --root tree too (systemctl --root).
    ctx.runner.run([*args, "enable", unit["name"]])


def apply_units(ctx: Context, units: list[dict[str, Any]]) -> list[str]:
    changes: list[str] = []
    failures: list[str] = []
    network_changed = False
    for unit in units:
        try:
            written = _files(ctx, unit)
            if unit.get("enable") and not is_network(unit["name"]) and not unit.get("mask"):
                _enable(ctx, unit)
        except (OSError, PathRefused, CommandFailed) as exc:
            failures.append(f"unit {unit['name']}: {exc}")
            continue
        changes += written
        network_changed |= bool(written) and is_network(unit["name"])
    try:
        if changes:
            ctx.systemctl("daemon-reload")
        if network_changed:
            # Waited for even at boot (networkd is not ordered after us): the units below may need the network.
            ctx.systemctl("restart", "systemd-networkd.service")
            changes.append("restarted systemd-networkd")
    except CommandFailed as exc:
        failures.append(str(exc))
    for unit in units:
        command = unit.get("command")
        if command and not is_network(unit["name"]):
            try:
                # Run on every boot (start is how a unit comes up), so not counted as a change.
                ctx.unit_job(command, unit["name"])
            except CommandFailed as exc:
                failures.append(f"unit {unit['name']}: {exc}")
    if failures:
        raise SectionFailed("; ".join(failures))
    return changes
