"""Which release is newer: the order of CoreOS/Flatcar versions, for the engine's downgrade refusal.

A version is `N(.N)*`, optionally `-PRERELEASE` and `+BUILD`, as CoreOS's semver-shaped versions are
(`1688.5.3`, `1745.0.0-rc1`, `2345.0.0+2020-01-06-0153`). Decisions:
- numeric parts compare as numbers, a missing part counts as 0 (`1688.5` == `1688.5.0`);
- a pre-release sorts before its release (`1745.0.0-rc1` < `1745.0.0`), pre-releases compare as
  SemVer 2.0 §11 says (dot-separated identifiers, numbers numerically and below words);
- `+BUILD` is ignored, as SemVer says: two builds of one version are the same version, so neither is
  an upgrade of the other;
- anything else (letters in the numeric part, a leading `v`, empty parts) cannot be ordered:
  `parse` raises ValueError and the engine refuses it, since "newer" cannot be proved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION = re.compile(r"(?P<core>[0-9]+(?:\.[0-9]+)*)(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?")
_IDENT = re.compile(r"[0-9A-Za-z-]+")
MAX_LENGTH = 128  # versions come from the update server: bound the work


@total_ordering
@dataclass(frozen=True)
class Version:
    core: tuple[int, ...]  # trailing zeros dropped, so 1.2 == 1.2.0
    pre: tuple[int | str, ...]  # empty: a release

    def _key(self) -> tuple[tuple[int, ...], int, tuple[tuple[int, int | str], ...]]:
        # A release (no pre-release) sorts after every pre-release of the same core; among
        # identifiers, numbers come before words (SemVer 2.0 §11.4.3).
        idents = tuple((0, i) if isinstance(i, int) else (1, i) for i in self.pre)
        return (self.core, 0 if self.pre else 1, idents)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()


def parse(text: str) -> Version:
    """The version in `text`; ValueError (one line) when it is not an orderable version."""
    match = _VERSION.fullmatch(text) if len(text) <= MAX_LENGTH else None
    if match is None:
        raise ValueError(f"{text[:MAX_LENGTH]!r} is not a version of dotted numbers (e.g. 1745.0.0)")
    core = [int(part) for part in match["core"].split(".")]
    while len(core) > 1 and core[-1] == 0:
        core.pop()
    pre: list[int | str] = []
    if match["pre"]:
        for ident in match["pre"].split("."):
            if not _IDENT.fullmatch(ident):
                raise ValueError(f"{text!r} has an empty pre-release part: write e.g. 1745.0.0-rc.1")
            pre.append(int(ident) if ident.isdigit() else ident)
    return Version(tuple(core), tuple(pre))


def is_newer(offered: str, booted: str) -> bool:
    """Is `offered` strictly newer than `booted`? ValueError if either cannot be ordered."""
    return parse(offered) > parse(booted)


def not_newer(offered: str, booted: str) -> tuple[str, bool] | None:
    """None if `offered` is newer than `booted`; else the problem (one line) and whether it is the
    booted version itself (equal, or unorderable and spelled the same)."""
    try:
        if is_newer(offered, booted):
            return None
        return f"the offered version {offered} is not newer than the booted {booted}", parse(offered) == parse(booted)
    except ValueError as exc:
        problem = f"cannot tell whether the offered version is newer than the booted {booted[:MAX_LENGTH]!r}: {exc}"
        return problem, offered == booted
