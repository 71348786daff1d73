"""The systemd EnvironmentFile format, as `/etc/coreos/update.conf` is written in it.

We follow systemd's own parser (src/basic/env-file.c) character for character, so a file means the
same to us as to the `EnvironmentFile=` of our unit:
- `KEY=VALUE` lines; whitespace around the key and before the value is ignored, trailing
  whitespace of an unquoted value is dropped.
- A line whose first non-blank character is `#` or `;` is a comment (comments are whole lines only:
  `A=b # c` sets A to `b # c`). A comment never continues onto the next line.
- Unquoted values: a backslash takes the next character literally; backslash-newline joins lines.
- `'single quotes'`: everything literal up to the closing quote, newlines included.
- `"double quotes"`: backslash escapes only `"`, `\\`, `` ` `` and `$` (other backslashes stay, as
  in the shell); backslash-newline joins lines; a raw newline is kept.
- Quoted and unquoted parts right after each other are concatenated (`A="x"y` is `xy`).
- A later assignment of the same key wins (the caller decides; we return them all, in order).

Where systemd silently drops a line we cannot use, we raise `EnvFileError` naming the file and the
line instead, because a config typo must not pass unnoticed: a non-comment line without `=`, a key
that is not a valid variable name, a quote left open at the end of the file, invalid UTF-8 or a
NUL byte. One leniency: a leading `export ` (as in a file that is also `source`d by a shell) is
accepted and dropped. Note that systemd itself ignores such a line, so the variable reaches us
only through this parser, not through the unit's environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EnvEntry", "EnvFileError", "load_env_file", "parse_env"]

_NEWLINE = "\n\r"
_WHITESPACE = " \t\n\r"
_COMMENTS = "#;"
_SHELL_NEED_ESCAPE = '"\\`$'
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class EnvEntry:
    key: str
    value: str
    line: int  # where the assignment starts (1-based)


class EnvFileError(ValueError):
    """A file we cannot read as KEY=VALUE lines; str() is one line `PATH line N: problem: fix`."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(f"{path} line {line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


def load_env_file(path: str | Path) -> list[EnvEntry]:
    """Read and parse a file. OSError (missing, unreadable) propagates for the caller to judge."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EnvFileError(str(path), line, "invalid UTF-8: save the file as UTF-8 text") from None
    return parse_env(text, str(path))


def parse_env(text: str, path: str = "<string>") -> list[EnvEntry]:
    """Parse EnvironmentFile text; see the module docstring for the exact rules."""
    if "\0" in text:
        raise EnvFileError(path, text[: text.index("\0")].count("\n") + 1, "NUL byte in file: remove it")
    entries: list[EnvEntry] = []
    state = "PRE_KEY"
    key: list[str] = []
    value: list[str] = []
    last_key_ws: int | None = None
    last_value_ws: int | None = None
    line = 1
    entry_line = 1
    quote_line = 1

    def push() -> None:
        name = "".join(key[:last_key_ws] if last_key_ws is not None else key)
        if name.startswith("export") and name[6:7] in (" ", "\t"):
            name = name[6:].lstrip(" \t")
        if not _KEY.fullmatch(name):
            raise EnvFileError(
                path,
                entry_line,
                f"{name!r} is not a valid variable name: use letters, digits and _ (not starting with a digit)",
            )
        entries.append(EnvEntry(name, "".join(value), entry_line))

    for c in text:
        if state == "PRE_KEY":
            if c in _COMMENTS:
                state = "COMMENT"
            elif c not in _WHITESPACE:
                state = "KEY"
                entry_line = line
                last_key_ws = None
                key = [c]
                value = []
        elif state == "KEY":
            if c in _NEWLINE:
                raise EnvFileError(
                    path, entry_line, f"{''.join(key).strip()!r} is not KEY=VALUE: add '=' or comment it out with #"
                )
            if c == "=":
                state = "PRE_VALUE"
                last_value_ws = None
            else:
                if c not in _WHITESPACE:
                    last_key_ws = None
                elif last_key_ws is None:
                    last_key_ws = len(key)
                key.append(c)
        elif state == "PRE_VALUE":
            if c in _NEWLINE:
                push()
                state = "PRE_KEY"
            elif c == "'":
                state = "SINGLE"
                quote_line = line
            elif c == '"':
                state = "DOUBLE"
                quote_line = line
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif c not in _WHITESPACE:
                state = "VALUE"
                value.append(c)
        elif state == "VALUE":
            if c in _NEWLINE:
                if last_value_ws is not None:
                    del value[last_value_ws:]
                push()
                state = "PRE_KEY"
            elif c == "\\":
                state = "VALUE_ESCAPE"
                last_value_ws = None
            else:
                if c not in _WHITESPACE:
                    last_value_ws = None
                elif last_value_ws is None:
                    last_value_ws = len(value)
                value.append(c)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c not in _NEWLINE:  # an escaped newline is a line continuation
                value.append(c)
        elif state == "SINGLE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value.append(c)
        elif state == "DOUBLE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_ESCAPE"
            else:
                value.append(c)
        elif state == "DOUBLE_ESCAPE":
            state = "DOUBLE"
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value.extend(("\\", c))
        elif state == "COMMENT":
            if c == "\\":
                state = "COMMENT_ESCAPE"
            elif c in _NEWLINE:
                state = "PRE_KEY"
        elif state == "COMMENT_ESCAPE":
            # Since systemd v254 a backslash does not continue a comment onto the next line.
            state = "PRE_KEY" if c in _NEWLINE else "COMMENT"
        if c == "\n":
            line += 1

    if state in ("SINGLE", "DOUBLE", "DOUBLE_ESCAPE"):
        quote = "'" if state == "SINGLE" else '"'
        raise EnvFileError(path, quote_line, f"the {quote} opened here is never closed: add the closing {quote}")
    if state == "KEY":
        raise EnvFileError(
            path, entry_line, f"{''.join(key).strip()!r} is not KEY=VALUE: add '=' or comment it out with #"
        )
    if state in ("PRE_VALUE", "VALUE", "VALUE_ESCAPE"):
        if state == "VALUE" and last_value_ws is not None:
            del value[last_value_ws:]
        push()
    return entries
