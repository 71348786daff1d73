"""Applying into a --root tree: every top-level key, idempotence, failing sections, secrets, confinement."""

from __future__ import annotations

import base64
import gzip
import os
import stat
from pathlib import Path

import pytest

from locksmith.cloudconfig.rootfs import PathRefused, Root

from .conftest import Cli, snapshot

KEY_CORE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcore core@laptop"
KEY_ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIalice alice@laptop"
CONF_B64 = base64.b64encode(b"secret=1\n").decode()
BLOB_B64 = base64.b64encode(gzip.compress(b"zipped\n")).decode()
HASH = "$6$rounds=4096$salt$Qq1vY0Qq1vY0Qq1vY0Qq1vY0Qq1vY0Qq1vY0Qq1vY0Qq1vY0"

FULL = f"""#cloud-config
hostname: web1
manage_etc_hosts: localhost
ssh_authorized_keys:
  - {KEY_CORE}
users:
  - name: alice
    passwd: {HASH}
    gecos: Alice Admin
    groups: [wheel, docker]
    shell: /bin/sh
    ssh_authorized_keys: [{KEY_ALICE}]
  - name: svc
    system: true
    no_create_home: true
    homedir: /var/lib/svc
write_files:
  - path: /etc/motd
    content: "hello\\n"
  - path: /etc/app/conf
    permissions: 0600
    owner: core:wheel
    encoding: b64
    content: {CONF_B64}
  - path: /var/lib/blob
    encoding: gzip+base64
    content: {BLOB_B64}
"""


def test_every_top_level_key_lands_in_the_tree(cli: Cli, target: Path) -> None:
    result = cli(FULL)
    assert result.code == 0, result.out
    assert (target / "etc/hostname").read_text() == "web1\n"
    assert (target / "etc/hosts").read_text().splitlines()[0] == "127.0.0.1 web1"
    passwd = (target / "etc/passwd").read_text()
    alice = next(line for line in passwd.splitlines() if line.startswith("alice:")).split(":")
    assert alice[4:] == ["Alice Admin", "/home/alice", "/bin/sh"]
    assert f"alice:{HASH}:" in (target / "etc/shadow").read_text()
    groups = {line.split(":")[0]: line.split(":")[3] for line in (target / "etc/group").read_text().splitlines()}
    assert "alice" in groups["wheel"].split(",") and "alice" in groups["docker"].split(",")
    svc = next(line for line in passwd.splitlines() if line.startswith("svc:")).split(":")
    assert int(svc[2]) < 1000 and svc[5] == "/var/lib/svc" and not (target / "var/lib/svc").exists()
    core_keys = target / "home/core/.ssh/authorized_keys"
    assert core_keys.read_text() == KEY_CORE + "\n"
    assert (target / "home/core/.ssh/authorized_keys.d/coreos-cloudinit").read_text() == KEY_CORE + "\n"
    assert (core_keys.stat().st_uid, stat.S_IMODE(core_keys.stat().st_mode)) == (500, 0o600)
    assert (target / "home/alice/.ssh/authorized_keys").read_text() == KEY_ALICE + "\n"
    assert (target / "etc/motd").read_text() == "hello\n"
    conf = target / "etc/app/conf"
    assert conf.read_bytes() == b"secret=1\n"
    assert (stat.S_IMODE(conf.stat().st_mode), conf.stat().st_uid, conf.stat().st_gid) == (0o600, 500, 10)
    assert (target / "var/lib/blob").read_bytes() == b"zipped\n"


def test_a_second_run_changes_nothing(cli: Cli, target: Path) -> None:
    assert cli(FULL).code == 0
    before = snapshot(target)
    again = cli(FULL)
    assert again.code == 0
    assert again.out == ""  # nothing to report: no change, no command
    assert snapshot(target) == before


@pytest.mark.parametrize("encoding", ["b64", "base64", "gz+base64", "gzip+base64", "gz+b64", "gzip+b64"])
def test_every_base64_encoding(cli: Cli, target: Path, encoding: str) -> None:
    payload = b"\x00\x01binary\xff"
    data = gzip.compress(payload) if "gz" in encoding else payload
    encoded = base64.b64encode(data).decode()
    text = f"#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: {encoding}\n    content: {encoded}\n"
    assert cli(text).code == 0
    assert (target / "etc/x").read_bytes() == payload


@pytest.mark.parametrize("encoding", ["gz", "gzip"])
def test_raw_gzip_content_through_yaml_binary_escapes(cli: Cli, target: Path, encoding: str) -> None:
    # Raw gzip can only travel in YAML as escaped code points below 256 ("\\x1f\\x8b...").
    raw = gzip.compress(b"plain\n")
    escaped = "".join(f"\\x{b:02x}" for b in raw)
    text = f'#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: {encoding}\n    content: "{escaped}"\n'
    assert cli(text).code == 0
    assert (target / "etc/x").read_bytes() == b"plain\n"


def test_a_failing_section_is_reported_and_the_others_still_apply(cli: Cli, target: Path) -> None:
    text = (
        "#cloud-config\nhostname: web1\nusers:\n  - name: eve\n    groups: [no-such-group]\n"
        "write_files:\n  - path: /etc/ok\n    content: ok\n"
    )
    result = cli(text)
    assert result.code == 1
    assert "coreos-cloudinit: failed: users: user eve: useradd eve: exit" in result.out
    assert (target / "etc/hostname").read_text() == "web1\n"
    assert (target / "etc/ok").read_text() == "ok"
    assert "eve:" not in (target / "etc/passwd").read_text()


def test_a_bad_file_fails_its_section_before_any_file_of_it_is_written(cli: Cli, target: Path) -> None:
    (target / "etc/link").symlink_to("/usr/lib")
    text = (
        "#cloud-config\nwrite_files:\n  - path: /etc/first\n    content: a\n  - path: /etc/link/evil\n    content: b\n"
    )
    result = cli(text)
    assert result.code == 1
    assert "write_files: /etc/link/evil: /usr is read-only" in result.out
    assert not (target / "etc/first").exists()


def test_errors_stop_everything_before_anything_is_applied(cli: Cli, target: Path) -> None:
    result = cli("#cloud-config\nhostname: web1\nusers: nobody\n")
    assert result.code == 1
    assert result.out.splitlines() == [
        "line 3: error: incorrect type for users (want list of structs)",
        "coreos-cloudinit: not applied: fix the errors above",
    ]
    assert not (target / "etc/hostname").exists()


def test_warnings_are_printed_and_the_rest_applied(cli: Cli, target: Path) -> None:
    result = cli("#cloud-config\nhostname: web1\ncolour: blue\n")
    assert result.code == 0
    assert result.out.splitlines()[0] == "line 3: warning: unrecognized key 'colour'"
    assert (target / "etc/hostname").exists()


def test_secrets_never_reach_the_output(cli: Cli, target: Path) -> None:
    text = (
        f"#cloud-config\nusers:\n  - name: core\n    passwd: {HASH}\nwrite_files:\n  - path: /etc/app\n"
        "    content: topsecret-content\ncoreos:\n  locksmith:\n    etcd_username: u\n    etcd_password: pw-hunter2\n"
    )
    result = cli(text)
    assert result.code == 0, result.out
    for secret in (HASH, "topsecret-content", "pw-hunter2"):
        assert secret not in result.out
    assert f"core:{HASH}:" in (target / "etc/shadow").read_text()  # an existing user gets its password


def test_ignore_failure_exits_0_but_still_reports(cli: Cli) -> None:
    result = cli("#cloud-config\nusers: 3\n", "--ignore-failure")
    assert result.code == 0
    assert "error: incorrect type for users" in result.out


def test_existing_authorized_keys_are_kept(cli: Cli, target: Path) -> None:
    ssh = target / "home/core/.ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "authorized_keys").write_text("ssh-rsa HANDADDED admin\n")
    assert cli(f"#cloud-config\nssh_authorized_keys: ['{KEY_CORE}']\n").code == 0
    assert (ssh / "authorized_keys").read_text() == f"ssh-rsa HANDADDED admin\n{KEY_CORE}\n"


def test_the_ssh_key_name_flag_names_the_keys_file(cli: Cli, target: Path) -> None:
    assert cli(f"#cloud-config\nssh_authorized_keys: ['{KEY_CORE}']\n", "--ssh-key-name", "ops").code == 0
    assert (target / "home/core/.ssh/authorized_keys.d/ops").read_text() == KEY_CORE + "\n"


# --- confinement ---------------------------------------------------------------------------


def test_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "etc/abs").symlink_to(outside)  # absolute: means <root>/<outside> inside the tree
    (root / "etc/up").symlink_to("../../../../../..")
    tree = Root(root)
    assert tree.resolve("/etc/abs/f") == root / str(outside).lstrip("/") / "f"
    assert tree.resolve("/etc/up/etc/f") == root / "etc/f"
    tree.write("/etc/abs/f", b"x")
    assert list(outside.iterdir()) == []


def test_dotdot_and_usr_and_relative_paths_are_refused(tmp_path: Path) -> None:
    tree = Root(tmp_path)
    for path, why in (("/etc/../x", "'..'"), ("/usr/bin/x", "/usr is read-only"), ("etc/x", "not an absolute")):
        with pytest.raises(PathRefused, match=why):
            tree.resolve(path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/sneaky").symlink_to("/usr/share")
    with pytest.raises(PathRefused, match="/usr is read-only"):
        tree.resolve("/etc/sneaky/x")


def test_a_symlink_as_the_last_component_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "r/etc").mkdir(parents=True)
    (tmp_path / "r/etc/hosts").symlink_to(victim)
    Root(tmp_path / "r").write("/etc/hosts", b"new")
    assert victim.read_text() == "keep"
    assert not (tmp_path / "r/etc/hosts").is_symlink() and (tmp_path / "r/etc/hosts").read_text() == "new"
    assert os.listdir(tmp_path / "r/etc") == ["hosts"]  # no temporary file left behind
