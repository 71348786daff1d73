"""The update engine's section of the settings: its keys are declared in locksmith.settings.schema
(program `update_engine`) and read by the same loader as locksmithd's, with CoreOS's precedence.

Files, lowest precedence first: /usr/share/coreos/release (the release facts COREOS_RELEASE_*),
/usr/share/coreos/update.conf, /etc/coreos/update.conf; then command-line flags. The engine reads no
environment variables, as CoreOS's did not: GROUP and SERVER are too generic as variable names to trust
from whatever shell started it. Durations are Go durations (`45m`); plain seconds (`600`) are still
accepted, as the first version of these files had them.
"""

from __future__ import annotations

import platform
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from locksmith.settings.load import Builder, read_sources
from locksmith.settings.schema import default_of
from locksmith.settings.sources import ConfigError, FlagValue

__all__ = ["DEFAULT_FILES", "ConfigError", "EngineConfig", "load"]

PROGRAM = "update_engine"
# Lowest precedence first, like every other program's files.
DEFAULT_FILES = (
    Path("/usr/share/coreos/release"),
    Path("/usr/share/coreos/update.conf"),
    Path("/etc/coreos/update.conf"),
)
DEFAULT_SERVER: str = default_of(PROGRAM, "SERVER")
DEFAULT_STATE_DIR: Path = default_of(PROGRAM, "UPDATE_ENGINE_STATE_DIR")


@dataclass(frozen=True)
class EngineConfig:
    group: str
    server: str
    version: str
    board: str
    appid: str
    arch: str
    disk: Path | None
    boot_record: Path | None
    public_key: Path
    state_dir: Path
    initial_delay: float
    check_interval: float
    check_fuzz: float
    max_backoff: float
    # Not newer than the booted version is refused unless this is set (see versions.py).
    allow_downgrade: bool = False


def load(
    files: Sequence[Path] = DEFAULT_FILES,
    flags: Mapping[str, FlagValue] | None = None,
    required: Collection[Path] = (),
) -> EngineConfig:
    """Read `files` (lowest precedence first) and `flags` (variable name → text); raises ConfigError.
    `required`: the files the admin named explicitly, which must exist (the defaults may be absent)."""
    b = Builder(PROGRAM, read_sources(PROGRAM, flags or {}, {}, tuple(files), required))
    return EngineConfig(
        group=b.get("GROUP"),
        server=b.get("SERVER"),
        version=b.get("COREOS_RELEASE_VERSION"),
        board=b.get("COREOS_RELEASE_BOARD"),
        appid=b.get("COREOS_RELEASE_APPID"),
        arch=platform.machine() or "x86_64",
        disk=b.get("UPDATE_ENGINE_DISK"),
        boot_record=b.get("UPDATE_ENGINE_BOOT_RECORD"),
        public_key=b.get("UPDATE_ENGINE_PUBLIC_KEY"),
        state_dir=b.get("UPDATE_ENGINE_STATE_DIR"),
        initial_delay=b.get("UPDATE_ENGINE_INITIAL_DELAY"),
        check_interval=b.get("UPDATE_ENGINE_CHECK_INTERVAL"),
        check_fuzz=b.get("UPDATE_ENGINE_CHECK_FUZZ"),
        max_backoff=b.get("UPDATE_ENGINE_MAX_BACKOFF"),
        allow_downgrade=b.get("UPDATE_ENGINE_ALLOW_DOWNGRADE"),
    )
