"""The image boots for real under qemu: multi-user with no failed unit, /usr read-only from USR-A.

Builds the image (the Debian tree comes from the cache outside the clone after the first run) and boots
it with OVMF. KVM only if a probe guest proves it works, else TCG; either way the test runs, never skips.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from locksmith.disk.slots import read_slots
from locksmith.image.build import BuildOptions, BuildResult, build
from locksmith.image.session import Shell, booted, with_autologin

pytestmark = pytest.mark.timeout(3600)
VERSION = "1.0.0-test"
LOGIN_SECONDS = 1500  # TCG on two shared cores: ~1-2 min when idle, far longer under the other suites' load


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    out = tmp_path_factory.mktemp("image") / "out"
    return build(BuildOptions(version=VERSION, out=out, channel="beta", formats=["ami"]))


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
