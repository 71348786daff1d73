"""Whether the last installed version stuck, and the one that did not.

The engine writes what it installed, and in which boot (`installed.json`, at the end of an install). At a
later boot, running another version than that one means its trial boot did not stick: the bootloader went
back to the old slot because the new one was never marked good (its health gate failed, or it never came
up). That version is remembered (`failed-version`), and the engine does not install it again on its own
schedule: a rolled-back host would otherwise loop through the same bad release, taking the fleet's reboot
slot each time. Asked explicitly (AttemptUpdate, `update_engine_client -check_for_update`), it installs it
again: an admin who fixed the cause says so by asking.

Both files are the engine's own, in its state directory; they are still read with bounds and checks, as
anything on disk that a crash may have cut short.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

log = structlog.get_logger("update_engine")

INSTALLED_FILE = "installed.json"
FAILED_FILE = "failed-version"
_MAX_BYTES = 4096


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return f.read(_MAX_BYTES).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read update record", path=str(path), error=str(exc))
        return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # a reboot follows: the record must be on disk by then
    tmp.replace(path)


def record_install(state_dir: Path, version: str, boot_id: str) -> None:
    """An install finished: `version` boots next (on trial)."""
    _write(state_dir / INSTALLED_FILE, json.dumps({"version": version, "boot_id": boot_id}) + "\n")


def forget_install(state_dir: Path) -> None:
    """The install was taken back (ResetStatus): the next boot is not its trial."""
    (state_dir / INSTALLED_FILE).unlink(missing_ok=True)


def settle(state_dir: Path, booted_version: str, boot_id: str) -> str | None:
    """At start: the version that did not stick on this host (found now or earlier), or None."""
    text = _read(state_dir / INSTALLED_FILE)
    if text is not None:
        try:
            installed = json.loads(text)
            version, in_boot = str(installed["version"]), str(installed["boot_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("install record unreadable; ignored", path=str(state_dir / INSTALLED_FILE))
            forget_install(state_dir)
        else:
            if in_boot != boot_id and version != booted_version:
                log.error(
                    "update did not stick",
                    installed=version[:128],
                    booted=booted_version,
                    detail="the bootloader went back to the old slot; not installing it again unless asked",
                )
                _write(state_dir / FAILED_FILE, version + "\n")
                forget_install(state_dir)
    failed = _read(state_dir / FAILED_FILE)
    if failed is None:
        return None
    return failed.strip()[:128] or None


def retry_asked(state_dir: Path, version: str) -> None:
    """Installing `version` again because it was asked for: forget that it failed (its new trial decides)."""
    log.warning("installing a version that was rolled back on this host, as asked", version=version)
    (state_dir / FAILED_FILE).unlink(missing_ok=True)
