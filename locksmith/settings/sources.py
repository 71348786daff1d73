"""Where raw settings come from, and which one wins: defaults → files → environment → flags.

Each value remembers its source (`Source`). When the environment holds exactly the value a file gave
(systemd's `EnvironmentFile=` put it there), the file stays the source: that is where an admin goes to
change it. A missing default file is fine (systemd's `EnvironmentFile=-`); a file the user named
(`required`, e.g. `locksmithd --config`) must exist; a file we cannot read or parse is a `ConfigError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from locksmith.safe_text import OUTSIDE_TEXT_LIMIT, outside_text
from locksmith.settings.envfile import EnvFileError, load_env_file


@dataclass(frozen=True, slots=True)
class Source:
    """The origin of one value: `default`, `file` (with path and line), `environment` or `flag`."""

    kind: Literal["default", "file", "environment", "flag"]
    path: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.kind == "file":
            return f"{self.path} line {self.line}"
        if self.kind == "environment":
            return "the environment"
        if self.kind == "flag":
            return "the command line"
        return "the built-in default"


DEFAULT_SOURCE = Source("default")


class ConfigError(Exception):
    """An invalid configuration. str() is one line naming key, value, source and the fix."""

    def __init__(self, message: str, key: str | None = None, source: Source | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


def shown(value: str, secret: bool) -> str:
    """`value` quoted for a message: one line whatever it holds, and short whatever its length (a
    1 MB line is named by its first characters, not repeated whole)."""
    if secret:
        return '"***"'
    # json.dumps quotes and escapes newlines; outside_text also escapes what it leaves (U+2028, DEL).
    quoted = json.dumps(value[:OUTSIDE_TEXT_LIMIT], ensure_ascii=False)
    quoted = outside_text(quoted, limit=len(quoted))
    if len(value) > OUTSIDE_TEXT_LIMIT:
        quoted += f"...({len(value) - OUTSIDE_TEXT_LIMIT} more characters)"
    return quoted


FlagValue = str | bool | int | Sequence[str] | None


def missing_file(path: Path, named_by: str = "") -> str:
    by = f" (given with {named_by})" if named_by else ""
    return f"config file {path}{by} does not exist: fix the path, or leave the option out to use the defaults"


def require_file(path: Path, named_by: str) -> None:
    """A file the user named (with the option `named_by`) must exist and be readable, else ConfigError.

    Checked before anything is read, so a typo in a unit file stops the program instead of leaving it
    running on defaults the admin did not choose."""
    try:
        with path.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise ConfigError(missing_file(path, named_by)) from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} (given with {named_by}) is a directory: point to a file") from None
    except PermissionError:
        raise ConfigError(
            f"config file {path} (given with {named_by}) is not readable by uid {os.geteuid()}: "
            "fix its permissions (chmod 644)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} (given with {named_by}) cannot be read ({exc.strerror}): fix it"
        ) from None


class RawValues:
    """The merged raw settings: for each key its winning value and source."""

    def __init__(self, known: frozenset[str], is_ours: frozenset[str], prefixes: tuple[str, ...]) -> None:
        self.known = known  # what this program reads
        self.ours = is_ours  # what any of our programs reads (others' keys are not "unknown")
        self.prefixes = prefixes
        self.values: dict[str, tuple[str, Source]] = {}
        self.warnings: list[str] = []
        self._warned: set[str] = set()

    def get(self, key: str) -> tuple[str, Source] | None:
        """The value if set to something non-empty (empty means: back to the default)."""
        item = self.values.get(key)
        if item is None or item[0] == "":
            return None
        return item

    def _unknown(self, key: str, source: Source) -> None:
        if key in self._warned or not key.startswith(self.prefixes) or key in self.ours:
            return
        self._warned.add(key)
        self.warnings.append(
            f"{outside_text(key)} (from {source}) is not a setting this version of locksmith knows; ignored "
            "(check the spelling, or it is meant for a newer version)"
        )

    def read_files(self, paths: Sequence[Path], required: Collection[Path] = ()) -> None:
        """Read `paths` in order; one missing is skipped unless it is in `required` (named by the user)."""
        for path in paths:
            try:
                entries = load_env_file(path)
            except FileNotFoundError:
                if path in required:
                    raise ConfigError(missing_file(path)) from None
                continue  # optional, like systemd's EnvironmentFile=-/path
            except EnvFileError as exc:
                # The parser's message may quote the offending line: bounded, escaped.
                raise ConfigError(
                    outside_text(exc, limit=2 * OUTSIDE_TEXT_LIMIT), source=Source("file", str(path), exc.line)
                ) from None
            except IsADirectoryError:
                raise ConfigError(f"config file {path} is a directory: remove it or point to a file") from None
            except PermissionError:
                raise ConfigError(
                    f"config file {path} is not readable by uid {os.geteuid()}: fix its permissions (chmod 644)"
                ) from None
            except OSError as exc:
                raise ConfigError(f"config file {path} cannot be read ({exc.strerror}): fix or remove it") from None
            for entry in entries:
                source = Source("file", str(path), entry.line)
                if entry.key in self.known:
                    self.values[entry.key] = (entry.value, source)
                else:
                    self._unknown(entry.key, source)

    def read_environ(self, environ: Mapping[str, str]) -> None:
        for key, value in environ.items():
            if key in self.known:
                previous = self.values.get(key)
                if previous is not None and previous[0] == value and previous[1].kind == "file":
                    continue  # the same value systemd loaded from that file: keep naming the file
                self.values[key] = (value, Source("environment"))
            else:
                self._unknown(key, Source("environment"))

    def read_flags(self, flags: Mapping[str, FlagValue]) -> None:
        for key, value in flags.items():
            if key not in self.known:
                raise ConfigError(f"unknown configuration key {key!r} given as a flag: use one of {sorted(self.known)}")
            if value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str | int):
                text = str(value)
            else:
                text = ",".join(value)
            self.values[key] = (text, Source("flag"))
