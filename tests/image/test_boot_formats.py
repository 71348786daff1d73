"""The pxe and qemu formats boot for real under qemu, each its own way (the disk tests are in test_boot.py).

The pxe kernel and initramfs boot with no disk to multi-user; the qemu format's qcow2 boots through the
launcher script shipped beside it. KVM only if a probe guest proves it works, else TCG; either way the
tests run, never skip. A file of its own so that it runs on the other test worker beside test_boot.py
(tests/conftest.py starts both boot files first).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from locksmith.image.build import BuildOptions, BuildResult, build
from locksmith.image.session import LOGIN_PROMPT, booted_pxe

pytestmark = pytest.mark.timeout(3600)
VERSION = "1.0.0-test"
LOGIN_SECONDS = 1500  # TCG on two shared cores: ~1-2 min when idle, far longer under the other suites' load


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    out = tmp_path_factory.mktemp("image") / "out"
    return build(BuildOptions(version=VERSION, out=out, channel="stable", formats=["pxe", "qemu"]))


def test_the_pxe_kernel_and_initramfs_boot_all_in_memory(image: BuildResult, tmp_path: Path) -> None:
    """No disk at all: the boot server's kernel, initramfs and command line (PXE_CMDLINE)."""
    kernel, initramfs = (
        image.out / "locksmith_production_pxe.vmlinuz",
        image.out / "locksmith_production_pxe_image.cpio.gz",
    )
    with booted_pxe(kernel, initramfs, tmp_path, LOGIN_SECONDS) as (sh, why):
        print(f"pxe boot under {why}")
        _, state = sh.run("systemctl is-system-running --wait", 900)
        _, failed = sh.run("systemctl --failed --no-legend --plain", 60)
        assert state.strip() == "running", f"system state {state.strip()!r}; failed units:\n{failed}"
        _, active = sh.run("systemctl is-active multi-user.target update-engine.service locksmithd.service", 60)
        assert active.split() == ["active", "active", "active"], active
        # No disk at all: / is the tmpfs, /usr the initramfs's usr.squashfs on a loop device, read-only.
        _, mounts = sh.run("findmnt -no FSTYPE /; findmnt -no SOURCE,FSTYPE,OPTIONS /usr; ls /sys/block", 60)
        root_fs, usr_source, usr_fs, usr_options, *disks = mounts.split()
        assert (root_fs, usr_fs) == ("tmpfs", "squashfs") and usr_source.startswith("/dev/loop"), mounts
        assert "ro" in usr_options.split(",") and not [d for d in disks if d.startswith(("vd", "sd"))], mounts
        status, err = sh.run("touch /usr/locksmith-write-test 2>&1", 60)
        assert status != 0 and "Read-only file system" in err
        _, release = sh.run("cat /usr/share/coreos/release", 60)
        assert f"COREOS_RELEASE_VERSION={VERSION}" in release


def test_the_qemu_format_boots_through_its_own_launcher(image: BuildResult, tmp_path: Path) -> None:
    """The qcow2 and the script beside it, as a user runs them: the accelerator named on the first line, then
    UEFI → GRUB → the kernel and /usr of USR-A → the serial console's login prompt (read from its log)."""
    launcher, log, out = image.out / "locksmith_production_qemu.sh", tmp_path / "serial.log", tmp_path / "launcher.out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # locksmith-image
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(launcher), "--serial-log", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # qemu is its grandchild: the whole group is stopped below
        )
    try:
        deadline = time.monotonic() + LOGIN_SECONDS
        while not (log.is_file() and LOGIN_PROMPT.search(log.read_bytes())):
            assert proc.poll() is None, (
                f"the launcher exited {proc.returncode}: {out.read_text(errors='replace')[-2000:]}"
            )
            assert time.monotonic() < deadline, f"no login prompt within {LOGIN_SECONDS} s; see {log}"
            time.sleep(1)  # polling a file another process writes
        assert out.read_text(errors="replace").startswith("locksmith-image: qemu with ")
        assert b"locksmith: booting USR-A" in log.read_bytes()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
