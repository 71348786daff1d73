"""The settings schema: the `Setting` declaration type, and the lookups every program uses.

A `Setting` says which programs read it, under which variable (a suffix takes the program's prefix,
`LOCKSMITHD_` or `LOCKSMITHCTL_`; an unprefixed name is read as is), its flag, its parser, its default
(as text, the way a user writes it and the README shows it), its help and whether it is secret.
The loader (`locksmith.settings.config`), the flags (`locksmith.settings.flags`), `check()` and the
README's settings table (`locksmith.settings.doc`) are all generated from `keys.SETTINGS`.

The declarations themselves are in `locksmith.settings.keys`. Adding a setting: one `Setting(...)`
there, then read it where it is used (the agent's section takes it by name) — plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from locksmith.settings import values as v

Program = Literal["locksmithd", "locksmithctl", "update_engine"]
PROGRAMS: tuple[Program, ...] = ("locksmithd", "locksmithctl", "update_engine")
# The update engine's keys are unprefixed (CoreOS's own, and ours spelled UPDATE_ENGINE_*).
PREFIX: dict[Program, str] = {"locksmithd": "LOCKSMITHD_", "locksmithctl": "LOCKSMITHCTL_"}
WARN_PREFIXES: dict[Program, tuple[str, ...]] = {
    "locksmithd": ("LOCKSMITHD_", "LOCKSMITHCTL_"),
    "locksmithctl": ("LOCKSMITHD_", "LOCKSMITHCTL_"),
    "update_engine": ("UPDATE_ENGINE_",),
}

_AGENT: frozenset[Program] = frozenset({"locksmithd"})


@dataclass(frozen=True)
class Setting:
    """One setting. `name` is a suffix when `prefixed`, else the whole variable name."""

    name: str
    help: str
    parse: Callable[[str], Any] = v.parse_text
    default: str | None = None  # as text; None: not set (the feature is off / computed at run time)
    programs: frozenset[Program] = _AGENT
    prefixed: bool = True
    flag: str | None = None
    metavar: str | None = None  # None with a flag: an on/off switch (--x / --no-x)
    flag_programs: frozenset[Program] | None = None  # None: every program that reads it
    repeat: bool = False  # the flag may be given several times; values are comma-joined
    secret: bool = False
    strip: bool = True  # passwords are used exactly as given
    required: bool = False  # a strategy's setting that must be set when that strategy is in use
    doc_default: str | None = None  # how the docs show a default computed at run time

    def key(self, program: Program) -> str:
        return PREFIX[program] + self.name if self.prefixed else self.name

    def has_flag(self, program: Program) -> bool:
        return self.flag is not None and program in (self.flag_programs or self.programs)

    def parsed_default(self) -> Any:
        return None if self.default is None else self.parse(self.default)


def static_settings_of(program: Program) -> dict[str, Setting]:
    """The settings of `program` declared here, by variable name (no plugin loaded)."""
    from locksmith.settings.keys import SETTINGS  # the declarations import this module

    return {s.key(program): s for s in SETTINGS if program in s.programs}


def settings_of(program: Program) -> dict[str, Setting]:
    """Every setting `program` reads, by variable name: those declared here and, for locksmithd,
    those each installed strategy declares (`Strategy.settings`)."""
    found = static_settings_of(program)
    if program == "locksmithd":
        from locksmith.strategy import installed_settings  # the strategies import this module

        found.update((s.key(program), s) for s in installed_settings())
    return found


def known_keys(program: Program) -> frozenset[str]:
    return frozenset(settings_of(program))


def lookup(program: Program, key: str) -> Setting:
    try:
        return settings_of(program)[key]
    except KeyError:
        raise KeyError(f"{key} is not a setting {program} reads") from None


def default_of(program: Program, key: str) -> Any:
    """The typed default of one setting (for types built outside the loader, e.g. in tests)."""
    return static_settings_of(program)[key].parsed_default()


def default_seconds(program: Program, key: str) -> float:
    """The default of a duration setting in float seconds, the unit the agent's timers use."""
    value = default_of(program, key)
    return value if isinstance(value, float | int) else value.total_seconds()


def check(program: Program, key: str, value: str) -> str | None:
    """Is `KEY=value` valid for `program`? None if so, else the problem and its fix, one line.

    Checks one value alone with the loader's parser; rules across keys (a certificate needs its key,
    a window start needs its length) are the loader's. An empty value is valid: it means the default."""
    setting = settings_of(program).get(key)
    if setting is None:
        return f"{key} is not a setting {program} reads: check the spelling"
    text = value.strip() if setting.strip else value
    if text == "":
        return None
    try:
        setting.parse(text)
    except ValueError as exc:
        return str(exc)
    return None
