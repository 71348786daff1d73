"""The disk image boots for real under qemu: multi-user with no failed unit, /usr read-only from USR-A; then A/B.

Builds the image (the Debian tree comes from the cache outside the clone after the first run) and boots
its raw (ami) disk with OVMF. KVM only if a probe guest proves it works, else TCG; either way the tests
run, never skip. (The pxe and qemu formats boot in test_boot_formats.py, on the other test worker.)
The disk guest boots with a config-2 drive: its cloud-config names the host, adds a user with an SSH key
(the test logs in with it on a loopback-forwarded port), writes a file, starts a unit, makes the guest's
etcd a one-member cluster and points the update engine (channel, server) and locksmithd (etcd-lock, that
etcd, a group) at what the later tests use. The last tests (in file order, on the same VM) update it
through its own update engine from a dev Omaha server on the host's loopback: a version whose health
gate fails is booted once, then rolled back by locksmithd, which keeps the lock; the engine will not install
it again by itself, but does when asked. Every reboot goes through locksmithd's etcd lock, and every boot
re-applies the cloud-config without changing a thing. (A V2 whose gate passes, sticking on USR-B, is the
two-VM rollout's: tests/vmfleet/test_rollout.py.) V1 and V2 are the VM fleet's set from the image cache,
built once per source for both tests.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.devtools.guest_ssh import GuestSsh, new_guest_ssh
from harness.devtools.omaha_server import DevServer
from harness.vmfleet import releases
from harness.vmfleet.releases import Releases
from locksmith.disk.slots import read_slots
from locksmith.image.build import USR_IMAGE
from locksmith.image.session import Shell, booted, with_autologin
from locksmith.updateengine.pack import load_release

from .guest_checks import (
    CTL,
    ETCD,
    GROUP,
    await_reboot,
    health_gate,
    holders,
    machine_id,
    slot_line,
    until,
    version,
    wait_journal,
)

pytestmark = pytest.mark.timeout(3600)
VERSION = releases.V1
V2 = releases.V2
GUEST_SERVER = "10.0.2.100:8080"  # qemu guestfwd to the dev server on the host's loopback
LOGIN_SECONDS = 1500  # TCG on two shared cores: ~1-2 min when idle, far longer under the other suites' load
# What the cloud-config writes outside /run: a second boot must leave every one of them as it was.
PERSISTENT = "/etc/hostname /etc/passwd /etc/shadow /etc/group /etc/coreos/update.conf /etc/cloud-config-test"
PERSISTENT += " /home/alice/.ssh/authorized_keys /home/core/.ssh/authorized_keys /etc/systemd/system/hello.service"
PERSISTENT += " /etc/systemd/system/locksmithd.service.d/40-console.conf"
USER_DATA = """#cloud-config
hostname: node-a
ssh_authorized_keys:
  - {key}
users:
  - name: alice
    gecos: Alice Admin
    groups: [sudo]
    ssh_authorized_keys:
      - {key}
write_files:
  - path: /etc/cloud-config-test
    owner: alice:alice
    permissions: "0640"
    content: |
      written by cloud-config
  - path: /etc/systemd/system/locksmithd.service.d/40-console.conf
    content: |
      [Service]
      # the test's console autologin is a logged-in user, who would hold up every reboot
      Environment=LOCKSMITHD_LOGIN_CHECK=false
coreos:
  etcd2:
    name: node-a
    initial_cluster: node-a=http://127.0.0.1:2380
    initial_cluster_state: new
    initial_cluster_token: boot-test
    initial_advertise_peer_urls: http://127.0.0.1:2380
    listen_peer_urls: http://127.0.0.1:2380
    listen_client_urls: {etcd}
    advertise_client_urls: {etcd}
  update:
    group: beta
    server: http://{server}/v1/update/
    reboot_strategy: etcd-lock
  locksmith:
    endpoint: {etcd}
    group: {group}
  units:
    - name: etcd2.service
      command: start
    - name: hello.service
      command: start
      content: |
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/sh -c 'hostname > /run/hello'
"""


@dataclass
class Access:
    """How the test reaches the guest besides its console (SSH with the key the cloud-config authorised),
    and what the first boot left in the files the cloud-config wrote."""

    user_data: Path
    ssh: GuestSsh
    first_boot_files: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> Access:
    base = tmp_path_factory.mktemp("access")
    ssh = new_guest_ssh(base, "alice")
    user_data = base / "user_data"
    user_data.write_text(USER_DATA.format(key=ssh.public_key, etcd=ETCD, server=GUEST_SERVER, group=GROUP))
    return Access(user_data, ssh)


@pytest.fixture(scope="module")
def image() -> Releases:
    # Channel stable in the image; the cloud-config moves the host to beta, where the update server offers V2.
    return releases.ensure(say=print)


@dataclass
class UpdateServer:
    """The dev Omaha server, reachable from the guest only, offering V2 on beta from the start (the guest
    checks only when a test asks it to)."""

    server: DevServer


@pytest.fixture(scope="module")
def update_server(image: Releases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpdateServer]:
    root = tmp_path_factory.mktemp("releases")
    shutil.copytree(image.v2, root / "beta" / V2)
    with DevServer(root, public_url=f"http://{GUEST_SERVER}", log=io.StringIO()) as server:
        yield UpdateServer(server)


@pytest.fixture(scope="module")
def shell(
    image: Releases, update_server: UpdateServer, access: Access, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Shell, Path]]:
    work = tmp_path_factory.mktemp("boot")
    disk = with_autologin(image.image, work)
    forwards = ((GUEST_SERVER, update_server.server.port),)
    with booted(disk, work, LOGIN_SECONDS, forwards, access.user_data, access.ssh.port) as (sh, why):
        print(f"boot test under {why}")
        _time_each_command(sh, work / "commands.log")
        yield sh, disk


def _time_each_command(sh: Shell, log: Path) -> None:
    """Write how long each guest command took beside the serial log: under TCG a step can take minutes,
    and the serial log has no host-side times."""
    run = sh.run

    def timed(command: str, seconds: float) -> tuple[int, str]:
        started = time.monotonic()
        try:
            return run(command, seconds)
        finally:
            with log.open("a") as out:
                out.write(f"{time.strftime('%H:%M:%S')} {time.monotonic() - started:7.1f} s  {command[:160]}\n")

    sh.run = timed  # type: ignore[method-assign]


def test_reaches_multi_user_with_no_failed_unit(shell: tuple[Shell, Path]) -> None:
    sh, _ = shell
    _, state = sh.run("systemctl is-system-running --wait", 900)
    _, failed = sh.run("systemctl --failed --no-legend --plain", 60)
    assert state.strip() == "running", f"system state {state.strip()!r}; failed units:\n{failed}"
    assert failed.strip() == ""
    status, active = sh.run("systemctl is-active multi-user.target update-engine.service locksmithd.service", 60)
    assert active.split() == ["active", "active", "active"], active
    assert status == 0
    # Nothing the admin did not ask for: no bridge with a DHCP server (lxc-net, also wanted by lxc.service).
    _, started = sh.run("systemctl is-active lxc-net.service lxc.service", 60)
    assert started.split() == ["inactive", "inactive"], started


def _persistent_files(sh: Shell) -> list[str]:
    status, out = sh.run(f"sha256sum {PERSISTENT}; stat -c '%n %i %Y' {PERSISTENT}", 60)
    assert status == 0, out
    return out.splitlines()


def test_the_config_drive_cloud_config_was_applied_at_first_boot(shell: tuple[Shell, Path], access: Access) -> None:
    sh, _ = shell
    _, journal = sh.run("journalctl -b -u user-configdrive.service -o cat", 60)
    assert "coreos.etcd2: wrote the etcd.service drop-in" in journal and "failed" not in journal, journal
    # In as the user it made, with the key it gave: the host name, the file and the unit are there.
    done = access.ssh.run("hostname; id -nG; cat /etc/cloud-config-test; systemctl is-active hello.service")
    assert done.returncode == 0, done.stderr
    name, groups, text, active = done.stdout.splitlines()
    assert (name, text, active) == ("node-a", "written by cloud-config", "active") and "sudo" in groups.split()
    # The top-level keys are for the image's admin account, core, who may use sudo without a password.
    core = GuestSsh(access.ssh.key, access.ssh.port, "core").run("id -nG; sudo -n id -u")
    assert core.returncode == 0, core.stderr
    groups, uid = core.stdout.splitlines()
    assert uid == "0", core.stdout
    assert set(groups.split()) == {"core", "adm", "sudo", "systemd-journal", "docker"}, groups
    _, hello = sh.run("cat /run/hello; stat -c '%a %U' /etc/cloud-config-test", 60)
    assert hello.split() == ["node-a", "640", "alice"], hello
    # update.conf edited in place: the image's SERVER line replaced, our keys there once each.
    _, conf = sh.run("cat /etc/coreos/update.conf", 60)
    wanted = ["GROUP=beta", f"SERVER=http://{GUEST_SERVER}/v1/update/", "REBOOT_STRATEGY=etcd-lock"]
    assert sorted(line for line in conf.splitlines() if "=" in line) == sorted(wanted), conf
    # The guest's etcd is the member the cloud-config described, and answers.
    _, member = sh.run(f"ETCDCTL_API=3 etcdctl --endpoints={ETCD} member list -w simple", 120)
    assert "node-a, http://127.0.0.1:2380, " + ETCD in member, member
    status, health = sh.run(f"ETCDCTL_API=3 etcdctl --endpoints={ETCD} endpoint status -w simple", 120)
    assert status == 0 and ETCD in health, health
    # locksmithd runs with that strategy, endpoint and group, from its first start (never restarted).
    _, state = sh.run("cat /run/update-engine/coordinator.conf; systemctl show -p NRestarts locksmithd", 60)
    assert "STRATEGY=etcd-lock" in state.splitlines() and "NRestarts=0" in state.splitlines(), state
    _, env = sh.run("systemctl show -p Environment locksmithd", 60)
    assert f"LOCKSMITHD_ENDPOINT={ETCD}" in env and f"LOCKSMITHD_GROUP={GROUP}" in env, env
    status, locks = sh.run(f"{CTL} status", 120)
    assert status == 0 and "Available: 1" in locks and "Max: 1" in locks, locks
    access.first_boot_files = _persistent_files(sh)


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
    assert "GROUP=stable" in release.splitlines()  # the image's; the cloud-config's beta is in /etc
    _, os_release = sh.run(". /etc/os-release; echo $IMAGE_VERSION", 60)
    assert os_release.strip() == VERSION  # from /usr, so it follows the slot (the console's welcome line)
    _, root = sh.run("findmnt -no FSTYPE,OPTIONS /", 60)
    assert root.split()[0] == "ext4" and re.search(r"(^|,)rw(,|$)", root.split()[1])


def test_release_is_the_signed_usr_image_and_the_image_trusts_its_key(
    image: Releases, shell: tuple[Shell, Path]
) -> None:
    release = load_release(image.image.parent / "release")
    usr = image.image.parent / USR_IMAGE
    assert release.version == VERSION and release.image_size == usr.stat().st_size
    assert release.image_sha256 == hashlib.sha256(usr.read_bytes()).hexdigest()
    sh, _ = shell
    _, pem = sh.run("cat /usr/share/update_engine/update-payload-key.pub.pem", 60)
    public = (image.image.parent.parent / "release.pub").read_text()
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
    marked = "systemctl is-active -q locksmith-mark-successful.service"
    until(sh, marked, 300, "systemctl status locksmith-mark-successful.service locksmithd.service")
    _, slots = sh.run("locksmith-bootloader status", 60)
    assert "USR-A partition=3" in slots and "successful=1 (booted)" in slots, slots
    _, env = sh.run("head -c 1024 /boot/EFI/locksmith/grubenv | grep -a '^usr_'", 60)
    assert "usr_a_successful=1" in env.split() and "usr_b_priority=0" in env.split(), env
    status, out = sh.run("update_engine_client -status", 120)
    assert status == 0 and "CURRENT_OP=UPDATE_STATUS_IDLE" in out, out


def _check_for_update(sh: Shell) -> None:
    """Ask the guest's engine to check now, once it is on the bus (right after a boot it may still be
    starting, and a check asked of nobody would leave the test waiting for its own schedule). The unit is
    Type=dbus: active once the name is taken; systemctl asks that without a Python start per poll."""
    until(sh, "systemctl is-active -q update-engine.service", 300, "systemctl status update-engine.service")
    status, out = sh.run("update_engine_client -check_for_update", 120)
    assert status == 0, out


def test_a_version_failing_its_health_gate_is_booted_once_then_rolled_back_keeping_the_lock(
    shell: tuple[Shell, Path], update_server: UpdateServer
) -> None:
    sh, _ = shell
    health_gate(sh, "/bin/false")
    _check_for_update(sh)
    # The engine (channel and server from the cloud-config) writes V2 into USR-B; locksmithd takes the
    # group's slot in the guest's etcd and asks logind; GRUB picks USR-B.
    assert await_reboot(sh) == "USR-B"
    assert version(sh) == V2
    # The gate fails: locksmithd reboots by itself, keeping the slot, and GRUB goes back (USR-B's one try
    # is spent and it was never marked good).
    assert await_reboot(sh) == "USR-A"
    assert version(sh) == VERSION
    assert "successful=1 (booted)" in slot_line(sh, "USR-A")
    assert "priority=2 tries=0 successful=0" in slot_line(sh, "USR-B")  # why USR-B was skipped
    wait_journal(sh, "locksmithd", "rolled-back", 300)
    assert holders(sh) == (0, [machine_id(sh)])  # the rollback's boot keeps the slot: the rollout stops
    _, journal = sh.run("journalctl -b -u update-engine -o cat | grep -a 'did not stick'", 60)
    assert V2 in journal, journal  # the engine knows V2 failed here: it will not install it on its own
    # The admin fixes the cause and says so: the gate goes, the slot is given back by hand.
    status, out = sh.run(f"{CTL} unlock {machine_id(sh)}", 120)
    assert status == 0, out
    health_gate(sh, None)  # restarted: the agent sees the unlock and forgets the rollback
    wait_journal(sh, "locksmithd", "rollback.acknowledged", 300)


def test_every_boot_re_applies_the_cloud_config_and_changes_nothing(shell: tuple[Shell, Path], access: Access) -> None:
    """Three boots so far (V1, V2 from USR-B, V1 again): each ran the same cloud-config."""
    sh, _ = shell
    assert access.first_boot_files, "the first boot's files were not recorded"
    assert _persistent_files(sh) == access.first_boot_files  # same bytes, same inodes, same times
    _, journal = sh.run("journalctl -b -u user-configdrive.service -o cat", 60)
    persistent = ("hostname:", "users:", "ssh_authorized_keys:", "write_files:", "coreos.update:", "coreos.units:")
    assert not [line for line in journal.splitlines() if line.startswith(persistent)], journal
    assert "failed" not in journal and "coreos.etcd2:" in journal, journal  # /run was empty: drop-ins again


def test_the_failed_version_is_fetched_again_when_asked(shell: tuple[Shell, Path], update_server: UpdateServer) -> None:
    """The engine remembers V2 did not stick and leaves it on its own schedule (tests/updateengine), but an
    admin's explicit check (AttemptUpdate) takes it again for a new trial: the server sees the guest fetch
    V2's payload once more (what follows is the first install's path, tested above)."""
    sh, _ = shell
    fetched = len(update_server.server.downloads)
    _check_for_update(sh)
    deadline = time.monotonic() + 600
    while len(update_server.server.downloads) == fetched:
        if time.monotonic() > deadline:
            said = sh.run("update_engine_client -status; journalctl -b -u update-engine -o cat | tail -n 30", 120)
            pytest.fail(f"the guest did not fetch V2 again within 600 s:\n{said[1]}")
        time.sleep(0.5)  # polling the server's record (a host-side list), bounded by the deadline above
    assert update_server.server.downloads[-1]["file"].startswith(f"/beta/{V2}/"), update_server.server.downloads
    # From outside: the server's event log shows the guest's reports (download, install) from V1, all on
    # the channel the cloud-config chose (the image's own is stable).
    assert any(e["version"] == VERSION for e in update_server.server.events), update_server.server.events
    assert {e["track"] for e in update_server.server.events} == {"beta"}, update_server.server.events
