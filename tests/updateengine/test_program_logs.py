"""A secret given to a program never reaches what it prints: its log lines and its one-line errors.

Every entry point sets up logging through locksmith.logging and ends through locksmith.cli, so both
paths pass the redactor: registered secrets (the etcd password), and passwords inside URLs
(`scheme://user:pw@host`) by structure. Each case gives the program a secret it really prints
somewhere (a debug line, an error naming the endpoint, the engine's `ready` line naming its
server), so without the redactor the secret would be in the output."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from harness.devtools.dbus import PrivateBus
from locksmith.logging import reset_logging
from locksmith.safe_text import REDACTED
from locksmith.settings.config import load_config

from .ue_support import MACHINE_ID, make_world

BIN = Path(sys.executable).parent
SECRET = "Zq9-not-for-logs"
OTHER = "Xw7-neither"
URL = f"http://root:{SECRET}@127.0.0.1:9"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=full, timeout=60)


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, text
    assert REDACTED in text, text  # the secret was there to hide, and was hidden


def test_locksmithctl_hides_the_password_in_debug_lines_and_errors(tmp_path: Path) -> None:
    mid = tmp_path / "machine-id"
    mid.write_text(MACHINE_ID + "\n")
    r = run(
        "locksmithctl", "--endpoint", URL, "--etcd-username", "root", "--etcd-password", OTHER,
        "--debug", "--timeout", "0.5", "status",
    )  # fmt: skip
    assert r.returncode == 1
    assert "debug: backend=etcd3" in r.stderr and r.stderr.splitlines()[-1].startswith("Error getting status: ")
    assert_hidden(r.stdout + r.stderr, SECRET, OTHER)


def test_locksmithd_hides_the_password_in_its_error_line() -> None:
    r = run("locksmithd", "--config", "/dev/null", env={"LOCKSMITHD_ENDPOINT": f"http://root:{SECRET}@127.0.0.1:x"})
    assert r.returncode == 1 and r.stderr.startswith("locksmithd: ") and r.stderr.count("\n") == 1
    assert_hidden(r.stderr, SECRET)


def test_locksmithd_registers_the_etcd_password_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from locksmith.agent.main import _setup_logging

    env = {"LOCKSMITHD_ETCD_USERNAME": "root", "LOCKSMITHD_ETCD_PASSWORD": OTHER, "LOCKSMITHD_LOG_LEVEL": "debug"}
    config = load_config("locksmithd", {}, env, ())
    _setup_logging(config)
    structlog.get_logger("locksmith.agent").warning(f"etcd refused root:{OTHER}", endpoint=URL)
    logging.getLogger("httpx").warning("request with %s", OTHER)
    assert_hidden(capsys.readouterr().err, SECRET, OTHER)


def test_update_engine_hides_the_server_password_in_its_log(tmp_path: Path, dbus_bus: PrivateBus) -> None:
    world = make_world(tmp_path)
    world.config(f"http://updates:{SECRET}@127.0.0.1:9/v1/update/")
    (tmp_path / "machine-id").write_text(MACHINE_ID + "\n")
    log_path = tmp_path / "update_engine.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "update_engine"), "-v", "--no-periodic",
                "--update-conf", str(tmp_path / "update.conf"), "--usr-update-conf", "/dev/null",
                "--release-file", str(tmp_path / "release"), "--machine-id-file", str(tmp_path / "machine-id"),
            ],
            env=dbus_bus.env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "event=ready" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "update_engine logged no ready line"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    assert_hidden(log_path.read_text(), SECRET)


@pytest.mark.parametrize(
    "argv",
    [
        ("locksmith-bootloader", "status", "--disk", f"/nonexistent/password={SECRET}"),
        (
            "locksmith-pack-release",
            "pack",
            "/nonexistent",
            "--version",
            "1",
            "--key",
            f"/x/token={SECRET}",
            "--out",
            "/x",
        ),
        ("locksmith-update-server", "--root", f"/nonexistent/password={SECRET}"),
    ],
)
def test_tools_error_lines_pass_the_redactor(argv: tuple[str, ...]) -> None:
    # These tools are given no credentials; what they print still goes through the same redactor.
    r = run(*argv)
    assert r.returncode == 1 and r.stderr.startswith(f"{argv[0]}: ") and r.stderr.count("\n") == 1
    assert_hidden(r.stderr, SECRET)


def test_update_server_request_log_is_redacted(tmp_path: Path) -> None:
    from harness.devtools.omaha_server import DevServer

    out = io.StringIO()
    server = DevServer(tmp_path, log=out)
    try:
        server.write_log(f"GET /?url=http://u:{SECRET}@h/")
    finally:
        server._httpd.server_close()
    assert_hidden(out.getvalue(), SECRET)


def test_main_tail_one_line_codes_and_traceback_only_with_debug(capsys: pytest.CaptureFixture[str]) -> None:
    from locksmith.cli import Expected, run_main

    def boom() -> int:
        raise RuntimeError(f"broken\n  at {URL}")

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_main("prog", boom, Expected(RuntimeError, code=3)) == 3
    assert capsys.readouterr().err == f"prog: broken at http://root:{REDACTED}@127.0.0.1:9\n"
    assert run_main("prog", boom, Expected(ValueError)) == 1
    assert capsys.readouterr().err == (
        f"prog: unexpected RuntimeError: broken at http://root:{REDACTED}@127.0.0.1:9 (rerun with --debug)\n"
    )
    assert run_main("prog", boom, debug=lambda: True) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and SECRET not in err and err.count("\n") > 2
    assert run_main("prog", interrupted) == 130 and capsys.readouterr().err == ""
    assert run_main("prog", interrupted, interrupted=0, interrupted_detail="stopped") == 0
    assert capsys.readouterr().err == "prog: stopped\n"
