"""Writing values the way systemd reads them back: EnvironmentFile lines and `Environment=` settings.

The reading side is `locksmith.settings.envfile` (systemd's parser); tests read our output with it.
"""

from __future__ import annotations

import re

from locksmith.settings.envfile import parse_env

_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")
_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def quote_value(value: str) -> str:
    """An EnvironmentFile value: bare when safe, else double-quoted with systemd's escapes."""
    if _PLAIN.fullmatch(value):
        return value
    return '"' + re.sub(r'(["\\`$])', r"\\\1", value) + '"'


def environment_line(key: str, value: str) -> str:
    """`Environment="KEY=value"` for a unit file: `%` is a specifier there, `"` and `\\` need escapes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{key}={escaped}"'


def edit_env_file(text: str, updates: dict[str, str]) -> str:
    """`text` with each key of `updates` set: replaced where it stands (every assignment of it), else
    appended; every other line, comment and blank kept as it was."""
    lines = text.splitlines(keepends=True)
    placed: set[str] = set()
    out: list[str] = []
    for line in lines:
        match = _ASSIGNMENT.match(line)
        key = match.group(1) if match else None
        if key in updates:
            if key not in placed:
                out.append(f"{key}={quote_value(updates[key])}\n")
                placed.add(key)
            continue  # a second assignment of a key we set would override ours: drop it
        out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    out.extend(f"{key}={quote_value(value)}\n" for key, value in updates.items() if key not in placed)
    result = "".join(out)
    parse_env(result)  # what we write must read back (raises EnvFileError otherwise)
    return result
