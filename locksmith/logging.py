"""Structured logging for locksmith: one event per line, logfmt or JSON, journald priorities, no secrets.

Both structlog loggers and stdlib loggers (dbus-fast, httpx, …) go through the same formatter, so
every line has the same shape. Under systemd (stderr is the journal, per $JOURNAL_STREAM) each line
starts with `<N>`, the syslog priority journald turns into the entry's PRIORITY, and the timestamp is
left to journald.

Secrets: values under keys named like a secret (password, token, private key material, …) are
replaced; every occurrence of a registered secret value (e.g. the etcd password once the config is
parsed: `add_secret(...)`) is replaced inside any string, however short, including exception text;
PEM private-key blocks and the password part of `scheme://user:pass@host` URLs are replaced too.
The redactor runs after exceptions are formatted and just before rendering.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

LogFormat = Literal["logfmt", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("logfmt", "json")
REDACTED = "[REDACTED]"

# syslog priorities, as journald reads them from a `<N>` prefix.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_SECRET_KEY = re.compile(
    r"(?i)(passw(or)?d|passphrase|secret|token|credential|authorization|cookie|api[_-]?key"
    r"|private[_-]?key|key[_-]?(material|data|pem|contents?)$|^pem$)"
)
_PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
# `password='x'` / `"token": "x"` inside reprs and messages.
_INLINE_SECRET = re.compile(
    r"(?i)\b(\w*(?:passw(?:or)?d|passphrase|secret|token|api[_-]?key)\w*['\"]?\s*[=:]\s*)(['\"]?)[^'\"\s,)}\]]+\2"
)


class SecretRedactor:
    """A structlog processor removing secrets from an event dict (see the module docstring)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []  # longest first, so a secret containing another is replaced whole
        self._secret_keys: dict[str, bool] = {}  # a program logs a few dozen key names: each judged once
        for value in secrets:
            self.add(value)

    def add(self, value: str) -> None:
        """Redact every occurrence of `value` from now on (empty values are ignored)."""
        if value and value not in self._secrets:
            self._secrets = sorted([*self._secrets, value], key=len, reverse=True)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._clean(key, value) for key, value in event_dict.items()}

    def _clean(self, key: str, value: Any) -> Any:
        secret_key = self._secret_keys.get(key)
        if secret_key is None:
            secret_key = self._secret_keys[key] = bool(_SECRET_KEY.search(key))
        if secret_key and value not in (None, ""):
            return REDACTED
        if type(value) is str:  # nearly every value: checked first, before the slower ABC checks below
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(key, v) for v in value]
        return self.scrub(value if isinstance(value, str) else str(value))

    def scrub(self, text: str) -> str:
        """`text` with registered secrets, PEM private keys and URL passwords replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        # Each pattern only where it could match (every log line passes here, most values are short
        # words): a PEM block has its dashes, a URL password its '@', an inline secret its '=' or ':'.
        if "-----" in text:
            text = _PEM_PRIVATE_KEY.sub("[REDACTED PRIVATE KEY]", text)
        if "@" in text:
            text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
        if "=" in text or ":" in text:
            text = _INLINE_SECRET.sub(rf"\1\2{REDACTED}\2", text)
        return text


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


_redactor = SecretRedactor()
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
        _redactor.add(value)

    before_render: list[structlog.types.Processor] = [structlog.processors.format_exc_info, _redactor]
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


def add_secret(value: str) -> None:
    """Never print `value` (e.g. a password read from the config) from now on, in any log line."""
    _redactor.add(value)


def debug_enabled() -> bool:
    """True when the process logs at debug level (then an unexpected error shows its traceback)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def scrub(text: str) -> str:
    """`text` without the registered secrets, PEM private keys and URL passwords: for what a program
    prints itself (an error line on stderr) rather than logs."""
    return _redactor.scrub(text)


# How much of a text from outside (a D-Bus body, a config line, a stored value) a log line or an error
# message carries: enough to recognise it, never enough to flood the journal or forge lines.
OUTSIDE_TEXT_LIMIT = 200


def outside_text(value: object, limit: int = OUTSIDE_TEXT_LIMIT) -> str:
    """`value` as text safe to put in a log line or a one-line message: every character that is not
    printable (newlines, escape sequences, line separators, lone surrogates) is shown escaped, and
    anything past `limit` characters is cut, saying how much was dropped."""
    text = value if isinstance(value, str) else str(value)
    # Escape only what we keep: a 5 MB body is cut before any work on all of it.
    head = text[:limit]
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in head)
    if len(text) > limit:
        shown += f"...({len(text) - limit} more characters)"
    return shown


def get_logger(name: str) -> Any:
    """A structlog logger named `name` (e.g. "locksmith.agent")."""
    return structlog.get_logger(name)
