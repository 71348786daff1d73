"""Structured logging for locksmith: one event per line, logfmt or JSON, journald priorities, no secrets.

Both structlog loggers and stdlib loggers (dbus-fast, httpx, …) go through the same formatter, so
every line has the same shape. Under systemd (stderr is the journal, per $JOURNAL_STREAM) each line
starts with `<N>`, the syslog priority journald turns into the entry's PRIORITY, and the timestamp is
left to journald.

Secrets never reach a line: the redactor of `locksmith.safe_text` (its rules are written there) runs
after exceptions are formatted and just before rendering.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from locksmith.safe_text import SECRETS

LogFormat = Literal["logfmt", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("logfmt", "json")

# syslog priorities, as journald reads them from a `<N>` prefix.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Renderer:
    """logfmt or JSON, optionally prefixed with the journald priority of the event's level."""

    def __init__(self, fmt: LogFormat, journal: bool) -> None:
        self._journal = journal
        self._inner: structlog.types.Processor
        if fmt == "json":
            self._inner = structlog.processors.JSONRenderer(sort_keys=False, default=str)
        else:
            self._inner = structlog.processors.LogfmtRenderer(
                key_order=["timestamp", "level", "logger", "event"], drop_missing=True, bool_as_flag=False
            )

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        priority = _PRIORITY.get(str(event_dict.get("level", "info")), 6)  # read first: renderers may pop keys
        line = self._inner(logger, method_name, event_dict)
        assert isinstance(line, str)
        return f"<{priority}>{line}" if self._journal else line


_CHATTY_LIBRARIES = ("httpx", "httpcore", "asyncio")
_HANDLER_MARK = "_locksmith_handler"


def stream_is_journal(stream: TextIO) -> bool:
    """True when `stream` is connected to journald: $JOURNAL_STREAM names its device and inode."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # io.StringIO and closed streams have no fd
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def configure_logging(
    *,
    fmt: LogFormat = "logfmt",
    level: str = "info",
    stream: TextIO | None = None,
    journal: bool | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Set up structlog and stdlib logging for the process; safe to call again (replaces the setup).

    fmt: "logfmt" or "json"; level: debug/info/warning/error; stream: default stderr;
    journal: force the `<N>` prefix on/off, default auto-detected from $JOURNAL_STREAM;
    secrets: values never to print (more can be added later with add_secret).
    Raises ValueError with one line for an unknown format or level."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    if level.lower() not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    stream = stream if stream is not None else sys.stderr
    journal = stream_is_journal(stream) if journal is None else journal
    for value in secrets:
        SECRETS.add(value)

    before_render: list[structlog.types.Processor] = [structlog.processors.format_exc_info, SECRETS]
    if not journal:  # journald stamps entries itself; ours holds no secret, so it is added after the redactor
        before_render.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.stdlib.add_log_level],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *before_render,
            _Renderer(fmt, journal),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    _skip_record_fields_we_never_print(True)
    root.setLevel(_LEVELS[level.lower()])
    # httpx logs every request at info and httpcore every socket step at debug: noise even when
    # debugging (an etcd watch polls forever); our own KV layer logs what matters.
    for chatty in _CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(logging.WARNING)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # tests reconfigure; the lookup cost is negligible here
    )


def reset_logging() -> None:
    """Undo configure_logging (tests that configure logging restore the defaults after them)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
    structlog.reset_defaults()
    _skip_record_fields_we_never_print(False)


_STDLIB_SOURCE_FILE = logging._srcfile


def _skip_record_fields_we_never_print(skip: bool) -> None:
    # No line we print names the caller's file and line, thread or process, yet the stdlib finds them
    # for every record: a walk up the stack and a few lookups, ~12% of a log line's cost, and the agent
    # logs several lines between the update engine's signal and the reboot call. These are the switches
    # the logging HOWTO's "Optimization" section documents.
    logging._srcfile = None if skip else _STDLIB_SOURCE_FILE
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = not skip


def debug_enabled() -> bool:
    """True when the process logs at debug level (then an unexpected error shows its traceback)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def get_logger(name: str) -> Any:
    """A structlog logger named `name` (e.g. "locksmith.agent")."""
    return structlog.get_logger(name)
