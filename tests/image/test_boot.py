"""The image boots for real under qemu: multi-user with no failed unit, /usr read-only from USR-A; then A/B.

Builds the image (the Debian tree comes from the cache outside the clone after the first run) and boots
it with OVMF. KVM only if a probe guest proves it works, else TCG; either way the test runs, never skips.
The last tests (in file order, on the same VM) update it through its own update engine from a dev Omaha
server on the host's loopback: a version whose health gate fails is booted once, then rolled back; the
same version with a passing gate sticks.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.devtools.omaha_server import DevServer
from locksmith.disk.slots import read_slots
from locksmith.image.build import USR_IMAGE, BuildOptions, BuildResult, build
from locksmith.image.session import Shell, booted, booted_pxe, with_autologin
from locksmith.updateengine.keys import generate_keypair
from locksmith.updateengine.pack import load_release

pytestmark = pytest.mark.timeout(3600)
VERSION = "1.0.0-test"
V2 = "2.0.0-test"
GUEST_SERVER = "10.0.2.100:8080"  # qemu guestfwd to the dev server on the host's loopback
LOGIN_SECONDS = 1500  # TCG on two shared cores: ~1-2 min when idle, far longer under the other suites' load


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    base = tmp_path_factory.mktemp("image")
    generate_keypair(base / "release.key", base / "release.pub")
    opts = BuildOptions(version=VERSION, out=base / "out", channel="beta", formats=["ami", "pxe", "qemu"])
    opts.release_key = base / "release.key"
    return build(opts)


@pytest.fixture(scope="module")
def update_server(image: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """The dev Omaha server offering V2 (signed with the key V1 trusts), reachable from the guest only."""
    base = image.out.parent
    opts = BuildOptions(version=V2, out=base / "out-v2", channel="beta", formats=[])
    opts.release_key = base / "release.key"
    v2 = build(opts)
    root = tmp_path_factory.mktemp("releases")
    shutil.copytree(v2.out / "release", root / "beta" / V2)
    with DevServer(root, public_url=f"http://{GUEST_SERVER}", log=io.StringIO()) as server:
        yield server


@pytest.fixture(scope="module")
def shell(
    image: BuildResult, update_server: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Shell, Path]]:
    work = tmp_path_factory.mktemp("boot")
    disk = with_autologin(image.out / "locksmith_production_ami_image.bin", work)
    with booted(disk, work, LOGIN_SECONDS, forwards=((GUEST_SERVER, update_server.port),)) as (sh, why):
        print(f"boot test under {why}")
        yield sh, disk


def test_the_pxe_kernel_and_initramfs_boot_all_in_memory(image: BuildResult, tmp_path: Path) -> None:
    """First in the file: it boots and stops its own guest before the disk guest of the tests below."""
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


# systemd stops printing its status lines to the console once a getty owns it: the prompt is the sign.
LOGIN_PROMPT = re.compile(rb"locksmith login: ")


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


def test_the_ab_units_ran_and_update_engine_client_answers(shell: tuple[Shell, Path]) -> None:
    sh, _ = shell
    _, boot = sh.run("findmnt -no FSTYPE /boot", 60)
    assert boot.strip() == "vfat"  # the ESP, where GRUB's environment block lives
    status, _ = sh.run("systemctl is-active locksmith-boot-sync.service", 60)
    assert status == 0
    # locksmithd starts locksmith-healthy.target after its after-boot step: wait for it (bounded).
    wait = "timeout 300 sh -c 'until systemctl is-active -q locksmith-mark-successful.service; do sleep 1; done'"
    status, out = sh.run(wait, 330)
    assert status == 0, sh.run("systemctl status locksmith-mark-successful.service locksmithd.service", 60)[1]
    _, slots = sh.run("locksmith-bootloader status", 60)
    assert "USR-A partition=3" in slots and "successful=1 (booted)" in slots, slots
    _, env = sh.run("head -c 1024 /boot/EFI/locksmith/grubenv | grep -a '^usr_'", 60)
    assert "usr_a_successful=1" in env.split() and "usr_b_priority=0" in env.split(), env
    status, out = sh.run("update_engine_client -status", 120)
    assert status == 0 and "CURRENT_OP=UPDATE_STATUS_IDLE" in out, out


REBOOT_SECONDS = 1500  # download + verify under TCG, the agent's reboot, then a full boot


def _configure(sh: Shell, health_command: str | None, restart: bool = True) -> None:
    """The guest's /etc/coreos/update.conf: our server, reboot as soon as the engine says so, maybe a gate."""
    lines = [
        "GROUP=beta",
        f"SERVER=http://{GUEST_SERVER}/v1/update/",
        "REBOOT_STRATEGY=reboot",
        "LOCKSMITHD_LOGIN_CHECK=false",  # the test's own console session is a logged-in user
    ]
    if health_command:
        lines += [f"LOCKSMITHD_HEALTH_COMMAND={health_command}", "LOCKSMITHD_HEALTH_TIMEOUT=15s"]
    sh.run(f"mkdir -p /etc/coreos && printf '%s\\n' {' '.join(repr(x) for x in lines)} > /etc/coreos/update.conf", 60)
    if restart:
        status, out = sh.run("systemctl restart update-engine.service locksmithd.service", 300)
        assert status == 0, out


def _slot_line(sh: Shell, name: str) -> str:
    _, out = sh.run("locksmith-bootloader status", 60)
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def _version(sh: Shell) -> str:
    _, out = sh.run(". /usr/share/coreos/release; echo $COREOS_RELEASE_VERSION", 60)
    return out.strip()


def _check_for_update(sh: Shell) -> None:
    """Ask the guest's engine to check now, once it is on the bus (right after a boot it may still be
    starting, and a check asked of nobody would leave the test waiting for the engine's own schedule)."""
    wait = "timeout 300 sh -c 'until update_engine_client -status >/dev/null 2>&1; do sleep 1; done'"
    status, _ = sh.run(wait, 330)
    assert status == 0, sh.run("systemctl status update-engine.service", 60)[1]
    status, out = sh.run("update_engine_client -check_for_update", 120)
    assert status == 0, out


def _wait_journal(sh: Shell, unit: str, word: str, seconds: int) -> None:
    cmd = f"timeout {seconds} sh -c 'until journalctl -b -u {unit} -o cat | grep -q {word}; do sleep 2; done'"
    status, _ = sh.run(cmd, seconds + 30)
    assert status == 0, sh.run(f"journalctl -b -u {unit} -o cat | tail -n 30", 60)[1]


def test_a_version_failing_its_health_gate_is_booted_once_then_rolled_back(shell: tuple[Shell, Path]) -> None:
    sh, _ = shell
    _configure(sh, "/bin/false")
    _check_for_update(sh)
    # The engine writes V2 into USR-B; locksmithd (strategy reboot) asks logind; GRUB picks USR-B.
    assert sh.await_reboot(REBOOT_SECONDS) == "USR-B"
    assert _version(sh) == V2
    _wait_journal(sh, "locksmithd", "after-boot.unhealthy", 300)
    assert "priority=2 tries=0 successful=0 (booted)" in _slot_line(sh, "USR-B")
    status, _ = sh.run("systemctl is-active locksmith-mark-successful.service", 60)
    assert status != 0  # never marked good
    # Fixed in /etc for the next boots (not restarting the agent, which would mark this boot good);
    # USR-B's try is spent whatever /etc says.
    _configure(sh, None, restart=False)
    sh.console.send("systemctl reboot\n")
    assert sh.await_reboot(REBOOT_SECONDS) == "USR-A"  # spent try, never successful: rollback
    assert _version(sh) == VERSION
    assert "successful=1 (booted)" in _slot_line(sh, "USR-A")
    assert "priority=2 tries=0 successful=0" in _slot_line(sh, "USR-B")  # why USR-B was skipped


def test_the_same_version_with_a_passing_gate_sticks(shell: tuple[Shell, Path], update_server: DevServer) -> None:
    sh, _ = shell
    _check_for_update(sh)
    assert sh.await_reboot(REBOOT_SECONDS) == "USR-B"
    assert _version(sh) == V2
    wait = "timeout 300 sh -c 'until systemctl is-active -q locksmith-mark-successful.service; do sleep 1; done'"
    status, _ = sh.run(wait, 330)
    assert status == 0, sh.run("journalctl -b -u locksmithd -o cat | tail -n 30", 60)[1]
    b = _slot_line(sh, "USR-B")
    assert "priority=2 tries=0 successful=1 (booted)" in b, b
    _, mount = sh.run("findmnt -no SOURCE /usr", 60)
    assert mount.strip() == "/dev/vda4"
    # From outside: the server's event log shows the guest's reports (download, install) from V1.
    assert any(e["version"] == VERSION for e in update_server.events), update_server.events
