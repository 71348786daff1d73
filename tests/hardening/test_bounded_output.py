"""Class 4 of issue 9: text from outside reaches a log line or an error only bounded and escaped.

One helper does it (`locksmith.safe_text.outside_text`); these tests check it directly (property
tests) and at the places the issue found unbounded: a D-Bus status body, a config line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from dbus_fast import Message, MessageType
from hypothesis import given
from hypothesis import strategies as st

from locksmith.bus.update_engine import UpdateEngineWatcher
from locksmith.protocol import update1
from locksmith.protocol.update1 import STATUS_SIGNAL, STATUS_SIGNATURE, Operation
from locksmith.safe_text import OUTSIDE_TEXT_LIMIT, outside_text
from locksmith.settings.config import ConfigError, load_config
from locksmith.settings.sources import shown

HUGE = "A" * 5_000_000


@given(st.text(max_size=2000), st.integers(min_value=1, max_value=500))
def test_outside_text_is_one_printable_bounded_line(text: str, limit: int) -> None:
    out = outside_text(text, limit)
    assert out.isprintable()  # no newline, no escape sequence, no line separator
    # Each kept character is at most 10 once escaped (\U0010ffff), plus the note of what was cut.
    assert len(out) <= 10 * limit + 40
    if len(text) <= limit and text.isprintable():
        assert out == text
    if len(text) > limit:
        assert out.endswith(f"...({len(text) - limit} more characters)")


def test_outside_text_of_a_huge_value_is_short() -> None:
    out = outside_text(HUGE)
    assert len(out) < OUTSIDE_TEXT_LIMIT + 40 and out.startswith("AAAA")
    assert outside_text("a\nb\x1b[2J\u2028") == "a\\nb\\x1b[2J\\u2028"


class _NoBus:
    """The watcher's bus, never used by the code under test (a status accepted from the owner)."""

    unique_name = ":1.99"


def owner_signal(body: list[Any], signature: str = STATUS_SIGNATURE) -> Message:
    return Message(
        message_type=MessageType.SIGNAL,
        path=update1.OBJECT_PATH,
        interface=update1.INTERFACE,
        member=STATUS_SIGNAL,
        signature=signature,
        body=body,
        sender=":1.7",
    )


@pytest.mark.parametrize(
    ("signature", "body"),
    [
        (STATUS_SIGNATURE, [0, 1.0, HUGE, "1.0", 0]),  # a 5 MB operation name
        (STATUS_SIGNATURE, [0, 1.0, Operation.UPDATED_NEED_REBOOT.value, HUGE, 0]),  # a 5 MB version
        (STATUS_SIGNATURE, [0, 1.0, Operation.UPDATED_NEED_REBOOT.value, "1\nlevel=error forged", 0]),
        ("s", [HUGE]),
    ],
    ids=["operation", "version", "forged-version", "signature"],
)
def test_a_huge_or_forged_status_body_gives_a_short_log_line(signature: str, body: list[Any]) -> None:
    watcher = UpdateEngineWatcher(_NoBus())  # type: ignore[arg-type]
    watcher._owner = ":1.7"  # the status comes from the owner: the trusted path, still bounded
    with structlog.testing.capture_logs() as logs:
        watcher._on_message(owner_signal(body, signature))
    assert watcher.latest is None
    (event,) = [e for e in logs if e["event"] == "ignored-malformed-status"]
    line = " ".join(f"{k}={v}" for k, v in event.items())
    assert len(line) < 1000 and "\n" not in line


def test_shown_config_values_are_one_short_line() -> None:
    assert shown("30m", False) == '"30m"'
    long = shown("x" * 1_000_000, False)
    assert len(long) < OUTSIDE_TEXT_LIMIT + 40 and long.endswith("(999800 more characters)")
    assert "\n" not in shown("a\nb\u2028c", False) and "\u2028" not in shown("a\u2028", False)


@pytest.mark.parametrize(
    "line",
    [
        "LOCKSMITHD_REBOOT_WINDOW_LENGTH=" + "1h" * 500_000,
        "LOCKSMITHD_REBOOT_WINDOW_START=" + "9" * 1_000_000,
        "REBOOT_STRATEGY='" + "x" * 1_000_000,  # not even parseable: the file reader's message
    ],
    ids=["duration", "window", "unterminated"],
)
def test_a_megabyte_config_line_is_not_echoed_whole(tmp_path: Path, line: str) -> None:
    conf = tmp_path / "update.conf"
    conf.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        load_config("locksmithd", paths=[conf], environ={})
    message = str(info.value)
    assert len(message) < 2000 and "\n" not in message


def test_a_megabyte_unknown_key_is_warned_about_briefly(tmp_path: Path) -> None:
    conf = tmp_path / "update.conf"
    conf.write_text("LOCKSMITHD_" + "X" * 1_000_000 + "=1\n")
    config = load_config("locksmithd", paths=[conf], environ={})
    assert config.warnings and all(len(w) < 1000 for w in config.warnings)
