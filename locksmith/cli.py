"""The end of every command's `main()`: expected errors become one line on stderr and an exit code.

Each program names the errors it expects (bad config, an unreachable bus, a refused lock …) and the
exit code each one ends with; anything else is a bug and still ends in one line, with the traceback
only when asked for (--debug, or a debug log level). Ctrl-C ends with the program's own code (130 by
default, as a shell reports SIGINT). Every line goes through the log redactor first, so a password
inside an error's text (an endpoint URL, a refused credential) is never printed either.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from locksmith.safe_text import scrub

EXIT_INTERRUPTED = 130


def one_line(exc: BaseException) -> str:
    """The exception's text with its white space folded onto one line (its type name if it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def file_error(fallback: object = "") -> Callable[[BaseException], str]:
    """An OSError's detail as `<file>: <reason>`: the file it names, else `fallback` (e.g. the disk)."""

    def detail(exc: BaseException) -> str:
        name = getattr(exc, "filename", None) or fallback
        return f"{name}: {getattr(exc, 'strerror', None) or one_line(exc)}"

    return detail


@dataclass(frozen=True)
class Expected:
    """Errors a program expects: each ends it with one line on stderr and exit `code`."""

    errors: type[BaseException] | tuple[type[BaseException], ...]
    code: int = 1
    # The text after "<label>: ".
    detail: Callable[[BaseException], str] = one_line
    # None: the program's label; "" for an error whose text is already the whole line.
    label: str | None = None


def fail(label: str, detail: str, code: int) -> int:
    """Print `label: detail` (or `detail` alone for an empty label) on stderr, redacted; return `code`."""
    print(scrub(f"{label}: {detail}" if label else detail), file=sys.stderr)
    return code


def run_main(
    label: str,
    body: Callable[[], int],
    *expected: Expected,
    debug: bool | Callable[[], bool] = False,
    hint: str = "rerun with --debug",
    interrupted: int = EXIT_INTERRUPTED,
    interrupted_detail: str | None = None,
) -> int:
    """`body()`'s exit code, or the code of the first `expected` entry matching what it raised.

    label: what every line starts with (usually the program's name);
    debug: print the traceback of an unexpected error (a callable is asked only then, so a daemon can
    answer from the log level it configured inside `body`); hint: how the user gets that traceback;
    interrupted / interrupted_detail: the exit code on Ctrl-C and the line printed then (none if None)."""
    try:
        return body()
    except KeyboardInterrupt:
        if interrupted_detail is not None:
            fail(label, interrupted_detail, interrupted)
        return interrupted
    except Exception as exc:
        for entry in expected:
            if isinstance(exc, entry.errors):
                return fail(label if entry.label is None else entry.label, entry.detail(exc), entry.code)
        if debug() if callable(debug) else debug:
            sys.stderr.write(scrub(traceback.format_exc()))
        return fail(label, f"unexpected {type(exc).__name__}: {one_line(exc)} ({hint})", 1)
