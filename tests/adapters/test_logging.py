"""Log lines: one event per line, logfmt/JSON, journald priority prefix, secrets never printed."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from locksmith.logging import configure_logging, reset_logging, stream_is_journal
from locksmith.safe_text import REDACTED, SecretRedactor, add_secret

PASSWORD = "s3cr3t-Pa55"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_logfmt_one_event_per_line() -> None:
    out = io.StringIO()
    configure_logging(stream=out, journal=False)
    log = structlog.get_logger("locksmith.test")
    log.info("state-change", old="idle", new="need-reboot", detail="two\nlines")
    log.debug("hidden")
    (line,) = lines(out)
    assert line.startswith("timestamp=")
    assert "level=info logger=locksmith.test event=state-change old=idle new=need-reboot detail=two\\nlines" in line


def test_json_format_and_stdlib_loggers_share_it() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", level="debug", stream=out, journal=False)
    structlog.get_logger("locksmith.test").debug("hello", n=1)
    logging.getLogger("dbus_fast.test").warning("from %s", "a library")
    first, second = (json.loads(line) for line in lines(out))
    assert first["event"] == "hello" and first["n"] == 1 and first["level"] == "debug"
    assert second["event"] == "from a library" and second["logger"] == "dbus_fast.test"


def test_journal_priority_prefix_and_no_timestamp() -> None:
    out = io.StringIO()
    configure_logging(stream=out, journal=True, level="debug")
    log = structlog.get_logger("locksmith.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert [line[:3] for line in lines(out)] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert "timestamp=" not in out.getvalue()


def test_exception_is_one_line_with_priority() -> None:
    out = io.StringIO()
    configure_logging(stream=out, journal=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("locksmith.test").exception("failed")
    (line,) = lines(out)
    assert line.startswith("<3>") and "RuntimeError: boom" in line


def test_journal_detected_from_journal_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "log").open("w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert stream_is_journal(f)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not stream_is_journal(f)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not stream_is_journal(io.StringIO())


def test_password_never_appears_in_output() -> None:
    out = io.StringIO()
    configure_logging(stream=out, journal=False, secrets=[PASSWORD])
    log = structlog.get_logger("locksmith.test")
    log.info("etcd-connect", password=PASSWORD, etcd_password="other", token="t0k", username="root")
    log.info(f"auth failed for root:{PASSWORD}", endpoint=f"https://root:{PASSWORD}@127.0.0.1:2379")
    log.info("config", options={"endpoint": "x", "password": PASSWORD}, args=["--pw", PASSWORD])
    logging.getLogger("httpx").warning("request with %s", PASSWORD)
    try:
        raise ValueError(f"bad credentials {PASSWORD}")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert PASSWORD not in text
    assert "other" not in text and "t0k" not in text
    assert "username=root" in text  # ordinary values survive
    assert text.count(REDACTED) >= 8


def test_password_registered_after_configuration_is_redacted() -> None:
    out = io.StringIO()
    configure_logging(stream=out, journal=False)
    add_secret("late-secret")
    structlog.get_logger("locksmith.test").info("connecting with late-secret")
    assert "late-secret" not in out.getvalue()


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQ", "MIIEvQ"),
        ("KVOptions(username='root', password='hunter2x')", "hunter2x"),
        ('{"token": "abcdef123"}', "abcdef123"),
        ("http://u:pw1234@h:2379/v2", "pw1234"),
    ],
)
def test_scrub_patterns(text: str, hidden: str) -> None:
    assert hidden not in SecretRedactor().scrub(text)


def test_key_material_keys_redacted_but_paths_kept() -> None:
    redactor = SecretRedactor()
    out = redactor(
        None, "info", {"event": "x", "private_key": "MII", "keyfile": "/etc/ssl/k.pem", "key": "coreos.com/x"}
    )
    assert out == {"event": "x", "private_key": REDACTED, "keyfile": "/etc/ssl/k.pem", "key": "coreos.com/x"}


def test_bad_format_or_level_is_one_clear_line() -> None:
    with pytest.raises(ValueError, match="log format 'xml' is not one of logfmt, json"):
        configure_logging(fmt="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level 'loud'"):
        configure_logging(level="loud")


def test_http_libraries_only_warn_even_at_debug() -> None:
    out = io.StringIO()
    configure_logging(stream=out, journal=False, level="debug")
    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1:2379/v2/keys")
    logging.getLogger("httpcore.connection").debug("connect_tcp.started")
    logging.getLogger("httpx").warning("a real problem")
    (line,) = lines(out)
    assert "a real problem" in line
