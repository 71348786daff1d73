"""coreos.update, coreos.locksmith, coreos.etcd2 and coreos.oem: settings for the image's own services.

- `coreos.update` edits `/etc/coreos/update.conf` in place (each key replaced where it stands, new ones
  appended, every other line kept) and then, as CoreOS did, restarts update-engine when the channel or
  server changed, and restarts locksmithd when the strategy changed, or stops it and masks it for this
  boot (`/run`) when the strategy is `off` (done again every boot, since `/run` is emptied).
- `coreos.locksmith` and `coreos.etcd2` become `/run/systemd/system/<unit>.d/20-cloudinit.conf`, one
  `Environment="KEY=value"` line per set field; a running service is restarted only if its drop-in
  changed (`try-restart`: at boot, before it starts, nothing to do). The locksmithd drop-in is
  readable by root only when it holds the etcd password.
"""

from __future__ import annotations

from typing import Any

from locksmith.cloudconfig import schema
from locksmith.cloudconfig.context import Context, SectionFailed
from locksmith.cloudconfig.envtext import edit_env_file, environment_line, quote_value
from locksmith.cloudconfig.units import reload_and, write_drop_in
from locksmith.settings.envfile import EnvFileError, parse_env

UPDATE_CONF = "/etc/coreos/update.conf"
DROP_IN = "20-cloudinit.conf"
LOCKSMITHD = "locksmithd.service"
UPDATE_ENGINE = "update-engine.service"
# Debian's etcd-server package (the image's etcd 3.4) names its unit etcd.service; CoreOS had etcd2.service.
ETCD_UNIT = "etcd.service"
LOCKSMITHD_RUNTIME_MASK = f"/run/systemd/system/{LOCKSMITHD}"


def apply_update(ctx: Context, update: dict[str, Any]) -> list[str]:
    wanted = {spec.env: update[key] for key, spec in schema.UPDATE.items() if key in update and spec.env}
    old = ctx.root.read_text(UPDATE_CONF) or ""
    try:
        before = {e.key: e.value for e in parse_env(old, UPDATE_CONF)}
    except EnvFileError as exc:
        # Never rewrite a file we cannot read: the admin's other settings might be lost.
        raise SectionFailed(f"{exc}; fix {UPDATE_CONF} by hand, it was left as it is") from None
    changes = []
    if wanted and ctx.root.write(UPDATE_CONF, edit_env_file(old, wanted).encode()):
        changes.append(f"updated {UPDATE_CONF} ({', '.join(sorted(wanted))})")
    if any(before.get(k) != wanted[k] for k in ("GROUP", "SERVER") if k in wanted):
        ctx.unit_job("restart", UPDATE_ENGINE)
        changes.append(f"restarted {UPDATE_ENGINE}")
    strategy = wanted.get("REBOOT_STRATEGY")
    if strategy is None:
        return changes
    if strategy.lower() == "off":
        if ctx.root.symlink(LOCKSMITHD_RUNTIME_MASK, "/dev/null"):
            ctx.unit_job("stop", LOCKSMITHD)
            ctx.systemctl("daemon-reload")
            changes.append(f"stopped and masked {LOCKSMITHD} (reboot_strategy off)")
        return changes
    unmasked = ctx.root.remove_link_to(LOCKSMITHD_RUNTIME_MASK, "/dev/null")
    if unmasked or before.get("REBOOT_STRATEGY") != strategy:
        reload_and(ctx, "restart", LOCKSMITHD)
        changes.append(f"restarted {LOCKSMITHD} (reboot_strategy {strategy})")
    return changes


def _env_text(fields: dict[str, schema.Field], values: dict[str, Any]) -> str:
    lines = ["[Service]"]
    for key, spec in fields.items():
        if key in values and spec.env:
            value = values[key]
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            lines.append(environment_line(spec.env, text))
    return "\n".join(lines) + "\n"


def apply_locksmith(ctx: Context, locksmith: dict[str, Any]) -> list[str]:
    secret = "etcd_password" in locksmith
    text = _env_text(schema.LOCKSMITH, locksmith)
    if not write_drop_in(ctx, LOCKSMITHD, DROP_IN, text, runtime=True, mode=0o600 if secret else 0o644):
        return []
    changes = [f"wrote the {LOCKSMITHD} drop-in"]
    if ctx.root.resolve(LOCKSMITHD_RUNTIME_MASK).is_symlink():
        ctx.systemctl("daemon-reload")  # masked by reboot_strategy off: nothing to restart
    else:
        reload_and(ctx, "try-restart", LOCKSMITHD)
    return changes


def _as_etcd3(etcd2: dict[str, Any]) -> dict[str, Any]:
    """etcd 2's ca_file / peer_ca_file as the keys etcd 3.4 reads (an explicit newer key wins)."""
    values = dict(etcd2)
    for old, (trusted, client_auth) in schema.ETCD2_DEPRECATED_CA.items():
        if old in values:
            values.setdefault(trusted, values.pop(old))
            values.setdefault(client_auth, True)
    return values


def apply_etcd2(ctx: Context, etcd2: dict[str, Any]) -> list[str]:
    if not write_drop_in(ctx, ETCD_UNIT, DROP_IN, _env_text(schema.ETCD2, _as_etcd3(etcd2)), runtime=True):
        return []
    reload_and(ctx, "try-restart", ETCD_UNIT)
    return [f"wrote the {ETCD_UNIT} drop-in"]


def apply_oem(ctx: Context, oem: dict[str, Any]) -> list[str]:
    def quoted(key: str) -> str:
        return quote_value(oem.get(key, "")) if oem.get(key) else '""'

    text = (
        f"ID={quote_value(oem.get('id', ''))}\nVERSION_ID={quote_value(oem.get('version_id', ''))}\n"
        f"NAME={quoted('name')}\nHOME_URL={quoted('home_url')}\nBUG_REPORT_URL={quoted('bug_report_url')}\n"
    )
    return ["wrote /etc/oem-release"] if ctx.root.write("/etc/oem-release", text.encode()) else []
