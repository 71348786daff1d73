"""load_config: TLS files, credentials and unreadable files — and passwords never shown."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locksmith.settings.config import (
    Config,
    ConfigError,
    load_config,
)

from .conftest import error_of

# --- TLS and credentials -----------------------------------------------------------------------


def test_tls_files(conf: Callable[..., Config], tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    for f in (ca, cert, key):
        f.write_text("-----BEGIN-----\n")
    https = "https://10.0.0.1:2379"
    c = conf(env={"LOCKSMITHD_ENDPOINT": https, "LOCKSMITHD_ETCD_CAFILE": str(ca)})
    assert (c.kv.ca_file, c.kv.cert_file, c.kv.key_file) == (str(ca), None, None)  # CA alone is fine
    c = conf(
        env={
            "LOCKSMITHD_ENDPOINT": https,
            "LOCKSMITHD_ETCD_CAFILE": str(ca),
            "LOCKSMITHD_ETCD_CERTFILE": str(cert),
            "LOCKSMITHD_ETCD_KEYFILE": str(key),
        }
    )
    assert (c.kv.cert_file, c.kv.key_file) == (str(cert), str(key))
    assert c.warnings == ()

    message = error_of(lambda: conf(env={"LOCKSMITHD_ETCD_CERTFILE": str(cert)}))
    assert message.startswith(f'LOCKSMITHD_ETCD_CERTFILE="{cert}" is set but LOCKSMITHD_ETCD_KEYFILE is not')
    message = error_of(lambda: conf(env={"LOCKSMITHD_ETCD_KEYFILE": str(key)}))
    assert "LOCKSMITHD_ETCD_KEYFILE" in message and "set both or neither" in message
    message = error_of(lambda: conf(etc_text=f"LOCKSMITHD_ETCD_CAFILE={tmp_path}/nope.pem\n"))
    assert message == (
        f'LOCKSMITHD_ETCD_CAFILE="{tmp_path}/nope.pem" (from {conf.etc} line 1): '  # type: ignore[attr-defined]
        "the file does not exist: fix the path"
    )
    message = error_of(lambda: conf(env={"LOCKSMITHD_ETCD_CAFILE": str(tmp_path)}))
    assert "is a directory" in message

    # TLS files with plain http endpoints are a likely mistake: warned, not fatal.
    assert conf(env={"LOCKSMITHD_ETCD_CAFILE": str(ca)}).warnings


def _as_unprivileged(fn: Callable[[], object]) -> str:
    """Run fn in a child process as `nobody` (when we are root) and return its ConfigError text."""
    if os.geteuid() != 0:
        try:
            fn()
        except ConfigError as exc:
            return str(exc)
        return "no error"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                fn()
                result = "no error"
            except ConfigError as exc:
                result = str(exc)
            os.write(write, result.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_unreadable_files_are_errors() -> None:
    base = Path(tempfile.mkdtemp(prefix="locksmith-cfg-"))
    try:
        base.chmod(0o755)
        secret = base / "key.pem"
        secret.write_text("key")
        secret.chmod(0o600)
        cert = base / "cert.pem"
        cert.write_text("cert")
        cert.chmod(0o644)
        env = {"LOCKSMITHD_ETCD_CERTFILE": str(cert), "LOCKSMITHD_ETCD_KEYFILE": str(secret)}
        message = _as_unprivileged(lambda: load_config("locksmithd", {}, env, paths=()))
        assert message.startswith(f'LOCKSMITHD_ETCD_KEYFILE="{secret}" (from the environment): ')
        assert "not readable by uid" in message

        conf_file = base / "update.conf"
        conf_file.write_text("REBOOT_STRATEGY=off\n")
        conf_file.chmod(0o600)
        message = _as_unprivileged(lambda: load_config("locksmithd", {}, {}, paths=(conf_file,)))
        assert message.startswith(f"config file {conf_file} is not readable by uid")
    finally:
        for p in base.iterdir():
            p.unlink()
        base.rmdir()


def test_password_rules(conf: Callable[..., Config]) -> None:
    c = conf(env={"LOCKSMITHD_ETCD_USERNAME": "root", "LOCKSMITHD_ETCD_PASSWORD": " s p "})
    assert (c.kv.username, c.kv.password) == ("root", " s p ")  # used exactly as given
    message = error_of(lambda: conf(etc_text="LOCKSMITHD_ETCD_PASSWORD=hunter2\n"))
    assert "hunter2" not in message
    assert message.startswith('LOCKSMITHD_ETCD_PASSWORD="***" is set but LOCKSMITHD_ETCD_USERNAME is not')
    assert conf(env={"LOCKSMITHD_ETCD_USERNAME": "root"}).warnings  # likely to fail auth: say so


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20))
def test_password_never_shown(conf: Callable[..., Config], tail: str) -> None:
    password = "S3cr3t-" + tail
    c = conf(env={"LOCKSMITHD_ETCD_USERNAME": "u", "LOCKSMITHD_ETCD_PASSWORD": password})
    assert c.kv.password == password
    for text in (repr(c), str(c), repr(c.kv), "\n".join(c.describe()), repr(c.given), repr(c.sources)):
        assert password not in text
    message = error_of(
        lambda: conf(
            env={
                "LOCKSMITHD_ETCD_PASSWORD": password,
                "LOCKSMITHD_ETCD_USERNAME": "u",
                "LOCKSMITHD_METRICS": "bad",
            }
        )
    )
    assert password not in message
