"""The one loader: read a program's sources, then hand out typed values with one-line errors.

`read_sources` merges defaults → files (lowest precedence first) → environment → flags for the keys
`program` reads; a `Builder` parses each with its declared parser and remembers each value's source.
Every section (locksmith's `Config`, the update engine's `EngineConfig`, a strategy's options) is built
through it, so every invalid value reads `KEY="value" (from source): problem: fix`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from locksmith.safe_text import OUTSIDE_TEXT_LIMIT, outside_text
from locksmith.settings.schema import PREFIX, PROGRAMS, WARN_PREFIXES, Program, known_keys, settings_of
from locksmith.settings.sources import ConfigError, FlagValue, RawValues, Source, shown


def read_sources(
    program: Program,
    flags: Mapping[str, FlagValue],
    environ: Mapping[str, str],
    paths: Sequence[Path],
    required: Collection[Path] = (),
) -> RawValues:
    """`required`: the files among `paths` the user named, which must exist (the defaults may be absent)."""
    every_key = frozenset().union(*(known_keys(p) for p in PROGRAMS))
    values = RawValues(known_keys(program), every_key, WARN_PREFIXES[program])
    values.read_files(paths, required)
    values.read_environ(environ)
    values.read_flags(flags)
    return values


def shown_value(key: str, value: str) -> str:
    secret = any(s.secret for p in PROGRAMS if (s := settings_of(p).get(key)) is not None)
    return shown(value, secret)


class Builder:
    """Typed values of one program's settings out of the merged raw ones; remembers what it read."""

    def __init__(self, program: Program, values: RawValues) -> None:
        self.program = program
        self.prefix = PREFIX.get(program, "")
        self.settings = settings_of(program)
        self.values = values
        self.sources: dict[str, Source] = {}

    def raw(self, key: str) -> tuple[str, Source] | None:
        item = self.values.get(key)
        if item is not None:
            self.sources[key] = item[1]
        return item

    def fail(self, key: str, value: str, source: Source, problem: str) -> ConfigError:
        # A parser's problem may quote the value again: bounded like the value itself.
        problem = outside_text(problem, limit=2 * OUTSIDE_TEXT_LIMIT)
        return ConfigError(f"{key}={shown_value(key, value)} (from {source}): {problem}", key, source)

    def get(self, name: str) -> Any:
        """The typed value of a setting (by suffix or unprefixed name), its declared default if unset."""
        key = name if name in self.settings else self.prefix + name
        setting = self.settings[key]
        item = self.raw(key)
        text = None if item is None else (item[0].strip() if setting.strip else item[0])
        if item is None or not text:
            return setting.parsed_default()
        try:
            return setting.parse(text)
        except ValueError as exc:
            raise self.fail(key, item[0], item[1], str(exc)) from None
