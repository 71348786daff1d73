"""hostname, manage_etc_hosts and write_files."""

from __future__ import annotations

import socket
from typing import Any

from locksmith.cloudconfig import accounts, content
from locksmith.cloudconfig.context import Context, SectionFailed


def apply_hostname(ctx: Context, name: str) -> list[str]:
    changes = []
    if ctx.root.write("/etc/hostname", f"{name}\n".encode()):
        changes.append(f"wrote /etc/hostname ({name})")
    if ctx.root.is_live and socket.gethostname() != name:
        ctx.runner.run(["hostname", name], live=True)
        changes.append(f"set the running host name to {name}")
    return changes


def current_hostname(ctx: Context) -> str:
    text = (ctx.root.read_text("/etc/hostname") or "").strip()
    return text or (socket.gethostname() if ctx.root.is_live else "localhost")


def apply_etc_hosts(ctx: Context, hostname: str) -> list[str]:
    # CoreOS wrote only `127.0.0.1 <hostname>`; the localhost lines keep `localhost` resolvable.
    text = f"127.0.0.1 {hostname}\n127.0.0.1 localhost\n::1 localhost\n"
    return ["wrote /etc/hosts"] if ctx.root.write("/etc/hosts", text.encode()) else []


def apply_write_files(ctx: Context, files: list[dict[str, Any]]) -> list[str]:
    # Decode, resolve and look up owners for every file first: a bad entry fails the section before any
    # file of it is written.
    plan = []
    for i, entry in enumerate(files):
        path = entry["path"]
        try:
            data = content.decode(entry.get("content", ""), entry.get("encoding"))
        except content.ContentError as exc:
            raise SectionFailed(f"write_files[{i}] {path}: content {exc}") from None
        ctx.root.resolve(path)  # PathRefused names the path
        mode = int(entry.get("permissions", "0644"), 8)
        uid, gid = accounts.owner_ids(ctx, entry["owner"]) if entry.get("owner") else (-1, -1)
        plan.append((path, data, mode, uid, gid))
    changes = []
    for path, data, mode, uid, gid in plan:
        if ctx.root.write(path, data, mode, uid, gid):
            changes.append(f"wrote {path}")
    return changes
