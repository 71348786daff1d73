"""Command-line flags generated from the schema: every setting with a `flag` becomes an option that
names its variable in [brackets]; flags left out stay None so files and the environment apply."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from locksmith.settings.schema import Program, settings_of
from locksmith.settings.sources import FlagValue


def _dest(key: str) -> str:
    return "config_" + key.lower()


def _flagged(program: Program) -> list[tuple[str, str, str | None, str, bool, str | None]]:
    out = []
    for s in settings_of(program).values():
        if s.has_flag(program):
            default = s.default if s.default not in (None, "off") else s.doc_default
            assert s.flag is not None
            text, shown = s.help.replace("`", ""), default.replace("`", "") if default else None
            out.append((s.key(program), s.flag, s.metavar, text, s.repeat, shown))
    return out


def add_config_arguments(parser: argparse.ArgumentParser, program: Program) -> None:
    """Add the configuration flags of `program` to `parser` (as an argument group). Read them back
    with `flags_from_args`."""
    sources = "update.conf" if program == "update_engine" else "the environment and update.conf"
    group = parser.add_argument_group(f"configuration (flags override {sources})")
    for key, flag, metavar, text, repeat, default in _flagged(program):
        help_text = f"{text} (default {default}) [{key}]" if default else f"{text} [{key}]"
        help_text = help_text.replace("%", "%%")
        if repeat:
            group.add_argument(flag, dest=_dest(key), action="append", metavar=metavar, help=help_text)
        elif metavar is None:
            group.add_argument(flag, dest=_dest(key), action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(flag, dest=_dest(key), metavar=metavar, help=help_text)


def flags_from_args(args: argparse.Namespace, program: Program) -> dict[str, FlagValue]:
    """The flags `add_config_arguments` added, as the mapping `load_config` takes."""
    out: dict[str, FlagValue] = {}
    for key, *_rest in _flagged(program):
        value = getattr(args, _dest(key), None)
        if value is not None:
            out[key] = value
    return out


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:  # argparse has no public walk of its options
        found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _long_options(sub)
    return found


def go_style_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> list[str]:
    """`argv` (None: the process's arguments) with `-endpoint URL` and `-endpoint=URL` read as
    `--endpoint`: the CoreOS tools parsed their flags with Go's flag package, which takes one dash or two,
    so an admin's scripts wrote one. Only names that are our long options are rewritten, and nothing
    after `--`."""
    argv = sys.argv[1:] if argv is None else argv
    longs = _long_options(parser)
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[i:])
        name = arg.split("=", 1)[0]
        out.append("-" + arg if len(name) > 2 and not name.startswith("--") and "-" + name in longs else arg)
    return out
