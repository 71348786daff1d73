"""users[], ssh_authorized_keys and the account lookups other sections need, read from the target tree.

Accounts are created with the real `useradd` (`--root` into a tree), as CoreOS did; an existing
account gets only its password hash and keys. Keys go to `~/.ssh/authorized_keys.d/<ssh-key-name>`
(CoreOS's layout) and are added to `~/.ssh/authorized_keys`, which sshd reads; keys already there are
kept, so keys an admin added by hand are never lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from locksmith.cloudconfig.context import Context, SectionFailed
from locksmith.cloudconfig.runner import CommandFailed


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def _table(ctx: Context, path: str) -> list[list[str]]:
    text = ctx.root.read_text(path) or ""
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def account(ctx: Context, name: str) -> Account | None:
    for row in _table(ctx, "/etc/passwd"):
        if len(row) >= 6 and row[0] == name and row[2].isdigit() and row[3].isdigit():
            return Account(name, int(row[2]), int(row[3]), row[5])
    return None


def group_id(ctx: Context, name: str) -> int | None:
    if name.isdigit():
        return int(name)
    for row in _table(ctx, "/etc/group"):
        if len(row) >= 3 and row[0] == name and row[2].isdigit():
            return int(row[2])
    return None


def owner_ids(ctx: Context, owner: str) -> tuple[int, int]:
    """`user[:group]` -> (uid, gid) as the target system names them."""
    user, _, group = owner.partition(":")
    found = account(ctx, user)
    if found is None and not user.isdigit():
        raise SectionFailed(f"owner {owner!r}: no user {user!r} in /etc/passwd; create it under users: first")
    uid = found.uid if found else int(user)
    gid = found.gid if found else 0
    if group:
        found_gid = group_id(ctx, group)
        if found_gid is None:
            raise SectionFailed(f"owner {owner!r}: no group {group!r} in /etc/group")
        gid = found_gid
    return uid, gid


def _shadow_hash(ctx: Context, name: str) -> str | None:
    for row in _table(ctx, "/etc/shadow"):
        if len(row) >= 2 and row[0] == name:
            return row[1]
    return None


def _root_args(ctx: Context) -> list[str]:
    return [] if ctx.root.is_live else ["--root", str(ctx.root.path)]


def _useradd(ctx: Context, user: dict[str, Any]) -> None:
    args = ["useradd", *_root_args(ctx), "--password", user.get("passwd") or "*"]
    for key, flag in (("gecos", "--comment"), ("homedir", "--home-dir"), ("primary_group", "--gid")):
        if user.get(key):
            args += [flag, user[key]]
    args.append("--no-create-home" if user.get("no_create_home") else "--create-home")
    if user.get("groups"):
        args += ["--groups", ",".join(user["groups"])]
    for key, flag in (("no_user_group", "--no-user-group"), ("system", "--system"), ("no_log_init", "--no-log-init")):
        if user.get(key):
            args.append(flag)
    if user.get("shell"):
        args += ["--shell", user["shell"]]
    args.append(user["name"])
    ctx.runner.run(args, shown=f"useradd {user['name']}")


def apply_users(ctx: Context, users: list[dict[str, Any]]) -> list[str]:
    changes: list[str] = []
    failures: list[str] = []
    for user in users:
        name = user["name"]
        try:
            if account(ctx, name) is None:
                _useradd(ctx, user)
                changes.append(f"created user {name}")
            elif user.get("passwd") and _shadow_hash(ctx, name) != user["passwd"]:
                ctx.runner.run(
                    ["usermod", *_root_args(ctx), "-p", user["passwd"], name], shown=f"usermod -p *** {name}"
                )
                changes.append(f"set the password of {name}")
            if user.get("ssh_authorized_keys"):
                changes += authorize_keys(ctx, name, user["ssh_authorized_keys"])
        except (CommandFailed, SectionFailed, OSError) as exc:
            failures.append(f"user {name}: {exc}")
    if failures:
        raise SectionFailed("; ".join(failures))
    return changes


def authorize_keys(ctx: Context, name: str, keys: list[str]) -> list[str]:
    """Install `keys` for user `name`; the changes made (none when they are all there already)."""
    found = account(ctx, name)
    if found is None:
        raise SectionFailed(f"no user {name!r} to give SSH keys to (create it under users:)")
    keys = [k.strip() for k in keys if k.strip()]
    ssh = f"{found.home.rstrip('/')}/.ssh"
    changes: list[str] = []
    for directory in (ssh, f"{ssh}/authorized_keys.d"):
        host = ctx.root.resolve(directory)
        if not host.is_dir():
            host.mkdir(mode=0o700, parents=True)
            os.chown(host, found.uid, found.gid)
    own = f"{ssh}/authorized_keys.d/{ctx.ssh_key_name}"
    if ctx.root.write(own, "".join(f"{k}\n" for k in keys).encode(), 0o600, found.uid, found.gid):
        changes.append(f"wrote {len(keys)} SSH key(s) for {name}")
    current = ctx.root.read_text(f"{ssh}/authorized_keys") or ""
    have = {line.strip() for line in current.splitlines()}
    missing = [k for k in keys if k not in have]
    if missing or not ctx.root.resolve(f"{ssh}/authorized_keys").exists():
        text = current + ("\n" if current and not current.endswith("\n") else "") + "".join(f"{k}\n" for k in missing)
        ctx.root.write(f"{ssh}/authorized_keys", text.encode(), 0o600, found.uid, found.gid)
        changes.append(f"authorized {len(missing)} new SSH key(s) for {name}")
    return changes
