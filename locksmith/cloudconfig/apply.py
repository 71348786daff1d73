"""Apply a validated document, section by section: a failing section is reported, the others still run.

Order as CoreOS: the host's identity and accounts first, files next, then the services' settings, and
the units last, so a unit started here sees the files, users and settings written before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from locksmith.cloudconfig import accounts, services, system, units
from locksmith.cloudconfig.context import Context, SectionFailed
from locksmith.cloudconfig.runner import CommandFailed


@dataclass
class Outcome:
    changes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _sections(ctx: Context, doc: dict[str, Any]) -> list[tuple[str, Callable[[], list[str]]]]:
    coreos = doc.get("coreos", {})
    hostname = doc.get("hostname") or ctx.metadata_hostname
    keys = [*doc.get("ssh_authorized_keys", []), *ctx.metadata_keys]
    plan: list[tuple[str, Callable[[], list[str]]]] = []
    if hostname:
        plan.append(("hostname", lambda: system.apply_hostname(ctx, hostname)))
    if doc.get("manage_etc_hosts"):
        plan.append(("manage_etc_hosts", lambda: system.apply_etc_hosts(ctx, hostname or system.current_hostname(ctx))))
    if doc.get("users"):
        plan.append(("users", lambda: accounts.apply_users(ctx, doc["users"])))
    if keys:
        plan.append(("ssh_authorized_keys", lambda: accounts.authorize_keys(ctx, "core", keys)))
    if doc.get("write_files"):
        plan.append(("write_files", lambda: system.apply_write_files(ctx, doc["write_files"])))
    for name, apply in (
        ("oem", services.apply_oem),
        ("update", services.apply_update),
        ("locksmith", services.apply_locksmith),
        ("etcd2", services.apply_etcd2),
        ("units", units.apply_units),
    ):
        if coreos.get(name):
            plan.append((f"coreos.{name}", lambda apply=apply, value=coreos[name]: apply(ctx, value)))  # type: ignore[misc]
    return plan


def apply_document(ctx: Context, doc: dict[str, Any]) -> Outcome:
    outcome = Outcome()
    for name, apply in _sections(ctx, doc):
        try:
            changes = apply()
        except (SectionFailed, CommandFailed, OSError, ValueError) as exc:
            outcome.failures.append(f"{name}: {exc}")
            ctx.say(f"{name}: failed: {exc}")
            continue
        except Exception as exc:  # one section's bug must not stop the others; say what broke
            outcome.failures.append(f"{name}: internal error {exc.__class__.__name__}: {exc}")
            ctx.say(f"{name}: failed: internal error {exc.__class__.__name__}: {exc}")
            continue
        outcome.changes += [f"{name}: {c}" for c in changes]
        for change in changes:
            ctx.say(f"{name}: {change}")
    return outcome


def run_script(ctx: Context, text: str) -> Outcome:
    """A `#!` user-data script: saved in the workspace and run as a transient unit, as CoreOS did."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    guest = f"{ctx.workspace.rstrip('/')}/scripts/{digest}"
    outcome = Outcome()
    try:
        if ctx.root.write(guest, text.encode(), 0o700):
            outcome.changes.append(f"saved the user-data script as {guest}")
        ctx.runner.run(["systemd-run", f"--unit=coreos-cloudinit-{digest}.service", guest], live=True)
    except (OSError, ValueError, CommandFailed) as exc:
        outcome.failures.append(f"script: {exc}")
    return outcome
