"""Datasources and bad input: config drive with metadata, URL, kernel command line, gzip, scripts,
and what must fail cleanly (malformed YAML, 10 MB, binary garbage, unreachable URL, corrupt gzip)."""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cli, snapshot

USER_DATA = (
    "#cloud-config\nhostname: from-$private_ipv4\n"
    "write_files:\n  - path: /etc/ip\n    content: \\$public_ipv4 is $public_ipv4\n"
)


def configdrive(tmp_path: Path, user_data: bytes | None) -> Path:
    drive = tmp_path / "config-2"
    latest = drive / "openstack/latest"
    latest.mkdir(parents=True)
    if user_data is not None:
        (latest / "user_data").write_bytes(user_data)
    meta = {"hostname": "meta-host", "public_keys": {"mykey": "ssh-ed25519 AAAAmeta meta@x"}}
    (latest / "meta_data.json").write_text(json.dumps(meta))
    ec2 = drive / "ec2/2009-04-04"
    ec2.mkdir(parents=True)
    (ec2 / "meta-data.json").write_text(json.dumps({"local-ipv4": "10.0.0.7", "public-ipv4": "203.0.113.7"}))
    return drive


def test_configdrive_user_data_with_metadata_substitution(cli: Cli, target: Path, tmp_path: Path) -> None:
    drive = configdrive(tmp_path, USER_DATA.encode())
    result = cli(None, "--from-configdrive", str(drive))
    assert result.code == 0, result.out
    assert (target / "etc/hostname").read_text() == "from-10.0.0.7\n"
    assert (target / "etc/ip").read_text() == "$public_ipv4 is 203.0.113.7"
    # the metadata's SSH keys go to core, as CoreOS did
    assert "ssh-ed25519 AAAAmeta meta@x" in (target / "home/core/.ssh/authorized_keys").read_text()


def test_configdrive_without_user_data_applies_the_metadata(cli: Cli, target: Path, tmp_path: Path) -> None:
    result = cli(None, "--from-configdrive", str(configdrive(tmp_path, None)))
    assert result.code == 0, result.out
    assert result.out.startswith("coreos-cloudinit: no user data\n")
    assert (target / "etc/hostname").read_text() == "meta-host\n"
    assert (target / "home/core/.ssh/authorized_keys").read_text() == "ssh-ed25519 AAAAmeta meta@x\n"


def test_environment_gives_the_addresses_when_there_is_no_metadata(
    cli: Cli, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COREOS_PRIVATE_IPV4", "192.168.1.5")
    monkeypatch.setenv("COREOS_PUBLIC_IPV4", "198.51.100.5")
    assert cli(USER_DATA).code == 0
    assert (target / "etc/hostname").read_text() == "from-192.168.1.5\n"


def test_gzipped_user_data(cli: Cli, target: Path) -> None:
    assert cli(gzip.compress(b"#cloud-config\nhostname: zipped\n")).code == 0
    assert (target / "etc/hostname").read_text() == "zipped\n"


def test_a_script_is_saved_in_the_workspace_and_run_as_a_transient_unit(cli: Cli, target: Path) -> None:
    result = cli("#!/bin/sh\necho hi\n", "--workspace", "/var/lib/ci")
    assert result.code == 0, result.out
    (script,) = (target / "var/lib/ci/scripts").iterdir()
    assert script.read_text() == "#!/bin/sh\necho hi\n" and script.stat().st_mode & 0o777 == 0o700
    (call,) = [c for c in result.runner.calls if c[0] == "systemd-run"]
    assert call[1].startswith("--unit=coreos-cloudinit-") and call[2] == f"/var/lib/ci/scripts/{script.name}"


class _Handler(http.server.BaseHTTPRequestHandler):
    bodies: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.bodies.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.bodies = {"/user-data": b"#cloud-config\nhostname: by-url\n"}
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join(timeout=10)
    httpd.server_close()


def test_from_url(cli: Cli, target: Path, server: str) -> None:
    assert cli(None, "--from-url", f"{server}/user-data").code == 0
    assert (target / "etc/hostname").read_text() == "by-url\n"


def test_from_url_404_is_no_user_data(cli: Cli, server: str) -> None:
    result = cli(None, "--from-url", f"{server}/nothing")
    assert (result.code, result.out) == (0, "coreos-cloudinit: no user data\n")


def test_from_proc_cmdline(cli: Cli, target: Path, server: str) -> None:
    (target / "proc").mkdir()
    (target / "proc/cmdline").write_text(f"root=LABEL=ROOT console=ttyS0 cloud-config-url={server}/user-data\n")
    assert cli(None, "--from-proc-cmdline").code == 0
    assert (target / "etc/hostname").read_text() == "by-url\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_url_fails_cleanly(cli: Cli, target: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/user-data"
    before = snapshot(target)
    result = cli(None, "--from-url", url)
    assert result.code == 1
    assert result.out.startswith(f"coreos-cloudinit: {url}: unreachable after 3 attempts (ConnectError")
    assert len(result.out.splitlines()) == 1
    assert snapshot(target) == before


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"#cloud-config\nhostname: [unclosed\n", "line 3: error: invalid YAML:"),
        (b"#cloud-config\n" + b"# padding\n" * 1_100_000, "user_data: over the 2 MiB user data limit; make it smaller"),
        (bytes(range(256)) * 64, "coreos-cloudinit: user data is not UTF-8 text"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "coreos-cloudinit: user data is corrupt gzip"),
        (gzip.compress(b"#cloud-config\nhostname: x\n")[:-6], "coreos-cloudinit: user data is truncated gzip"),
        (gzip.compress(b"#cloud-config\n" + b"#" * (3 * 1024 * 1024)), "coreos-cloudinit: user data inflates to more"),
        (b"just some text\n", 'coreos-cloudinit: user data must start with "#cloud-config" or "#!"'),
    ],
    ids=["malformed-yaml", "10MB", "binary", "corrupt-gzip", "truncated-gzip", "gzip-bomb", "no-header"],
)
def test_bad_input_is_reported_and_nothing_is_written(cli: Cli, target: Path, data: bytes, expected: str) -> None:
    before = snapshot(target)
    result = cli(data)
    assert result.code == 1
    assert expected in result.out.splitlines()[0], result.out
    assert "Traceback" not in result.out
    assert snapshot(target) == before


def test_a_missing_file_and_no_datasource_are_clear(cli: Cli, tmp_path: Path) -> None:
    missing = cli(None, "--from-file", str(tmp_path / "nope"))
    expected = f"coreos-cloudinit: {tmp_path / 'nope'}: no such file; give the path of the user data\n"
    assert (missing.code, missing.out) == (1, expected)
    none = cli(None)
    assert none.code == 2 and "give a datasource" in none.out


def test_an_unknown_oem_names_the_known_ones(cli: Cli) -> None:
    result = cli(None, "--oem", "marsupial")
    assert result.code == 1 and "--oem marsupial: unknown; use one of ec2-compat, openstack" in result.out


def test_empty_user_data_is_nothing_to_do(cli: Cli) -> None:
    result = cli("")
    assert (result.code, result.out) == (0, "coreos-cloudinit: the user data is empty\n")
