"""The image boots for real under qemu: multi-user with no failed unit, /usr read-only from USR-A.

Builds the image (the Debian tree comes from the cache outside the clone after the first run) and boots
it with OVMF. KVM only if a probe guest proves it works, else TCG; either way the test runs, never skips.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.disk.slots import read_slots
from locksmith.image.build import USR_IMAGE, BuildOptions, BuildResult, build
from locksmith.image.session import Shell, booted, with_autologin
from locksmith.updateengine.keys import generate_keypair
from locksmith.updateengine.pack import load_release

pytestmark = pytest.mark.timeout(3600)
VERSION = "1.0.0-test"
LOGIN_SECONDS = 1500  # TCG on two shared cores: ~1-2 min when idle, far longer under the other suites' load


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    base = tmp_path_factory.mktemp("image")
    generate_keypair(base / "release.key", base / "release.pub")
    opts = BuildOptions(version=VERSION, out=base / "out", channel="beta", formats=["ami"])
    opts.release_key = base / "release.key"
    return build(opts)


@pytest.fixture(scope="module")
def shell(image: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Shell, Path]]:
    work = tmp_path_factory.mktemp("boot")
    disk = with_autologin(image.out / "locksmith_production_ami_image.bin", work)
    with booted(disk, work, LOGIN_SECONDS) as (sh, why):
        print(f"boot test under {why}")
        yield sh, disk


def test_reaches_multi_user_with_no_failed_unit(shell: tuple[Shell, Path]) -> None:
    sh, _ = shell
    _, state = sh.run("systemctl is-system-running --wait", 900)
    _, failed = sh.run("systemctl --failed --no-legend --plain", 60)
    assert state.strip() == "running", f"system state {state.strip()!r}; failed units:\n{failed}"
    assert failed.strip() == ""
    status, active = sh.run("systemctl is-active multi-user.target update-engine.service locksmithd.service", 60)
    assert active.split() == ["active", "active", "active"], active
    assert status == 0


def test_usr_is_read_only_squashfs_from_usr_a(shell: tuple[Shell, Path]) -> None:
    sh, disk = shell
    _, mount = sh.run("findmnt -no SOURCE,FSTYPE,OPTIONS /usr", 60)
    source, fstype, options = mount.split()
    assert fstype == "squashfs" and "ro" in options.split(",")
    _, partuuid = sh.run(f"blkid -s PARTUUID -o value {source}", 60)
    usr_a = read_slots(disk)[0]
    assert usr_a.name == "USR-A" and partuuid.strip() == usr_a.partuuid
    status, err = sh.run("touch /usr/locksmith-write-test 2>&1", 60)
    assert status != 0 and "Read-only file system" in err


def test_release_files_carry_version_and_channel(shell: tuple[Shell, Path]) -> None:
    sh, _ = shell
    _, release = sh.run("cat /usr/share/coreos/release /usr/share/coreos/update.conf", 60)
    assert f"COREOS_RELEASE_VERSION={VERSION}" in release.splitlines()
    assert "GROUP=beta" in release.splitlines()
    _, root = sh.run("findmnt -no FSTYPE,OPTIONS /", 60)
    assert root.split()[0] == "ext4" and re.search(r"(^|,)rw(,|$)", root.split()[1])


def test_release_is_the_signed_usr_image_and_the_image_trusts_its_key(
    image: BuildResult, shell: tuple[Shell, Path]
) -> None:
    release = load_release(image.out / "release")
    usr = image.out / USR_IMAGE
    assert release.version == VERSION and release.image_size == usr.stat().st_size
    assert release.image_sha256 == hashlib.sha256(usr.read_bytes()).hexdigest()
    sh, _ = shell
    _, pem = sh.run("cat /usr/share/update_engine/update-payload-key.pub.pem", 60)
    public = (image.out.parent / "release.pub").read_text()
    assert pem.strip() == public.strip()


def test_docker_runs_a_locally_imported_image(shell: tuple[Shell, Path]) -> None:
    sh, _ = shell
    # No registry: an image made on the spot from the guest's own dash and libc, imported, then run.
    libs = "usr/lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 usr/lib64/ld-linux-x86-64.so.2"
    status, out = sh.run(f"tar -C / -ch usr/bin/dash {libs} 2>/dev/null | docker import - local/dash 2>&1", 600)
    assert status == 0, out
    status, out = sh.run("docker run --rm --network none local/dash /usr/bin/dash -c 'echo hello from docker'", 600)
    assert status == 0 and "hello from docker" in out, out


def test_lxc_runs_a_container(shell: tuple[Shell, Path]) -> None:
    sh, _ = shell
    # An application container on the host's root (no template download): own namespaces, no network.
    config = "lxc.include = /usr/share/lxc/config/common.conf\nlxc.net.0.type = empty\nlxc.rootfs.path = dir:/\n"
    sh.run(f"printf '{config}' > /tmp/smoke.conf", 60)
    status, out = sh.run("lxc-execute -n smoke -f /tmp/smoke.conf -- /bin/echo hello from lxc 2>&1", 300)
    assert status == 0 and "hello from lxc" in out, out
