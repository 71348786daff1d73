"""The update engine's configuration, read like CoreOS: KEY=VALUE files, first file holding a key wins.

Files, in order: /etc/coreos/update.conf, /usr/share/coreos/update.conf, /usr/share/coreos/release.
CoreOS keys: GROUP, SERVER, COREOS_RELEASE_VERSION, COREOS_RELEASE_BOARD, COREOS_RELEASE_APPID.
Ours (same files, so one place configures everything): UPDATE_ENGINE_DISK, UPDATE_ENGINE_BOOT_RECORD,
UPDATE_ENGINE_PUBLIC_KEY, UPDATE_ENGINE_STATE_DIR, UPDATE_ENGINE_CHECK_INTERVAL,
UPDATE_ENGINE_CHECK_FUZZ, UPDATE_ENGINE_INITIAL_DELAY, UPDATE_ENGINE_MAX_BACKOFF (seconds).
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, replace
from pathlib import Path

from locksmith.protocol.omaha import COREOS_APPID
from locksmith.settings.envfile import EnvFileError, load_env_file

DEFAULT_FILES = (
    Path("/etc/coreos/update.conf"),
    Path("/usr/share/coreos/update.conf"),
    Path("/usr/share/coreos/release"),
)
DEFAULT_SERVER = "https://public.update.core-os.net/v1/update/"
DEFAULT_PUBLIC_KEY = Path("/usr/share/update_engine/update-payload-key.pub.pem")
DEFAULT_STATE_DIR = Path("/var/lib/update_engine")
# CoreOS's timings: first check 7 min after start, then every 45 min ± 5 min, back-off capped at 4 h.
DEFAULT_INITIAL_DELAY = 7 * 60.0
DEFAULT_INTERVAL = 45 * 60.0
DEFAULT_FUZZ = 10 * 60.0
DEFAULT_MAX_BACKOFF = 4 * 60 * 60.0

_GROUP_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming key, value, file and fix."""


def read_env_file(path: Path) -> dict[str, str]:
    """systemd EnvironmentFile syntax (the shared parser); within one file a later assignment wins."""
    try:
        return {entry.key: entry.value for entry in load_env_file(path)}
    except EnvFileError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class EngineConfig:
    group: str = "stable"
    server: str = DEFAULT_SERVER
    version: str = "0.0.0"
    board: str = "amd64-usr"
    appid: str = COREOS_APPID
    arch: str = platform.machine() or "x86_64"
    disk: Path | None = None
    boot_record: Path | None = None
    public_key: Path = DEFAULT_PUBLIC_KEY
    state_dir: Path = DEFAULT_STATE_DIR
    initial_delay: float = DEFAULT_INITIAL_DELAY
    check_interval: float = DEFAULT_INTERVAL
    check_fuzz: float = DEFAULT_FUZZ
    max_backoff: float = DEFAULT_MAX_BACKOFF


def _merged(files: tuple[Path, ...]) -> tuple[dict[str, str], dict[str, Path]]:
    values: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for path in files:
        try:
            found = read_env_file(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__}: {exc}); fix its permissions") from None
        for key, value in found.items():
            if key not in values:  # the first file holding a key wins
                values[key] = value
                origin[key] = path
    return values, origin


def load(files: tuple[Path, ...] = DEFAULT_FILES, **overrides: object) -> EngineConfig:
    """Read the files; `overrides` (already typed, e.g. from command-line flags) win over them."""
    values, origin = _merged(files)

    def where(key: str) -> str:
        return str(origin.get(key, "<default>"))

    def seconds(key: str, default: float) -> float:
        if key not in values:
            return default
        text = values[key]
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        if not number >= 0 or number == float("inf"):
            raise ConfigError(f"{key}={text!r} in {where(key)} is not a number of seconds; use e.g. {key}=600")
        return number

    def path(key: str, default: Path | None) -> Path | None:
        text = values.get(key)
        if text is None:
            return default
        if not text.startswith("/"):
            raise ConfigError(f"{key}={text!r} in {where(key)} must be an absolute path; write {key}=/full/path")
        return Path(text)

    group = values.get("GROUP", "stable") or "stable"
    if not _GROUP_RE.fullmatch(group):
        raise ConfigError(
            f"GROUP={group!r} in {where('GROUP')} is not a channel name; use letters, digits, '.', '_' or '-'"
            " (e.g. GROUP=stable)"
        )
    server = values.get("SERVER", DEFAULT_SERVER) or DEFAULT_SERVER
    if not server.startswith(("http://", "https://")):
        raise ConfigError(f"SERVER={server!r} in {where('SERVER')} is not an http(s) URL; e.g. SERVER={DEFAULT_SERVER}")
    config = EngineConfig(
        group=group,
        server=server,
        version=values.get("COREOS_RELEASE_VERSION", "0.0.0") or "0.0.0",
        board=values.get("COREOS_RELEASE_BOARD", "amd64-usr") or "amd64-usr",
        appid=values.get("COREOS_RELEASE_APPID", COREOS_APPID) or COREOS_APPID,
        disk=path("UPDATE_ENGINE_DISK", None),
        boot_record=path("UPDATE_ENGINE_BOOT_RECORD", None),
        public_key=path("UPDATE_ENGINE_PUBLIC_KEY", DEFAULT_PUBLIC_KEY) or DEFAULT_PUBLIC_KEY,
        state_dir=path("UPDATE_ENGINE_STATE_DIR", DEFAULT_STATE_DIR) or DEFAULT_STATE_DIR,
        initial_delay=seconds("UPDATE_ENGINE_INITIAL_DELAY", DEFAULT_INITIAL_DELAY),
        check_interval=seconds("UPDATE_ENGINE_CHECK_INTERVAL", DEFAULT_INTERVAL),
        check_fuzz=seconds("UPDATE_ENGINE_CHECK_FUZZ", DEFAULT_FUZZ),
        max_backoff=seconds("UPDATE_ENGINE_MAX_BACKOFF", DEFAULT_MAX_BACKOFF),
    )
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
