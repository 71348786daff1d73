"""The image's file tree: the cached Debian tarball unpacked, then made into a CoreOS-shaped system.

CoreOS shape: the whole OS including the kernel and initramfs lives in /usr (`/usr/boot/vmlinuz`), so a
slot carries its own kernel; /etc, /var, /home live on ROOT. Units the product needs are enabled in /usr
(they come and go with the slot); machine-specific state (machine-id, SSH host keys) is made at first boot.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from locksmith.image import files
from locksmith.image.errors import ImageError, run
from locksmith.image.project import install_project, install_units
from locksmith.protocol.omaha import COREOS_APPID

# Enabled by Debian's postinst scripts but not wanted at boot: docker starts on its socket (as on CoreOS),
# etcd is configured by the operator (cloud-config), lxc-net is a bridge with a DHCP server (dnsmasq) on
# every host, and lxc.service (autostart of containers marked so) wants it, so it goes too; apt timers
# make no sense here. Each is a unit an admin may start or enable from cloud-config.
_DISABLE = (
    "multi-user.target.wants/docker.service",
    "multi-user.target.wants/containerd.service",
    "multi-user.target.wants/etcd.service",
    "multi-user.target.wants/lxc-net.service",
    "multi-user.target.wants/lxc.service",
    "timers.target.wants/apt-daily.timer",
    "timers.target.wants/apt-daily-upgrade.timer",
)
_ENABLE_IN_USR = {
    "multi-user.target.wants": ["systemd-networkd.service"],
    "sockets.target.wants": ["systemd-networkd.socket"],
    "network-online.target.wants": ["systemd-networkd-wait-online.service"],
}


@dataclass(frozen=True)
class Release:
    version: str
    channel: str
    server: str
    board: str = "amd64-usr"

    def release_file(self) -> str:
        return (
            f"COREOS_RELEASE_VERSION={self.version}\nCOREOS_RELEASE_BOARD={self.board}\n"
            f"COREOS_RELEASE_APPID={COREOS_APPID}\n"
        )

    def update_conf(self) -> str:
        return f"GROUP={self.channel}\nSERVER={self.server}\n"


_OURS = ("PRETTY_NAME=", "IMAGE_ID=", "IMAGE_VERSION=")


def os_release(debian: str, version: str) -> str:
    """Debian's os-release naming this image and its version. It lives in /usr (Debian's /etc/os-release
    links to it), so it follows the slot booted, and systemd's "Welcome to …!" on the console says which
    version came up, as CoreOS's did."""
    lines = debian.splitlines()
    base = next((line.split("=", 1)[1].strip('"') for line in lines if line.startswith("PRETTY_NAME=")), "Debian")
    kept = [line for line in lines if not line.startswith(_OURS)]
    return "\n".join(
        [f'PRETTY_NAME="Locksmith OS {version} ({base})"', *kept, "IMAGE_ID=locksmith", f"IMAGE_VERSION={version}", ""]
    )


def unpack(tarball: Path, tree: Path) -> None:
    tree.mkdir(parents=True)
    run(["tar", "-xf", str(tarball), "-C", str(tree), "--numeric-owner", "--xattrs", "--xattrs-include=*"], "unpack")


def _move_kernel(tree: Path) -> str:
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageError(f"expected one kernel in the root tree's /boot, found {len(kernels)}; rebuild the cache")
    kver = kernels[0].name.removeprefix("vmlinuz-")
    initrd = tree / "boot" / f"initrd.img-{kver}"
    if not initrd.is_file():
        raise ImageError(f"the root tree has no initramfs for {kver}; dracut failed in the cached build")
    usr_boot = tree / "usr/boot"
    usr_boot.mkdir(exist_ok=True)
    shutil.move(kernels[0], usr_boot / "vmlinuz")
    shutil.move(initrd, usr_boot / "initrd.img")
    (usr_boot / "initrd.img").chmod(0o644)
    for leftover in (tree / "boot").iterdir():
        leftover.unlink()
    # /vmlinuz and /initrd.img symlinks from Debian's kernel postinst point into /boot: gone with it.
    for link in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        (tree / link).unlink(missing_ok=True)
    return kver


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# CoreOS's admin account: cloud-config's top-level ssh_authorized_keys are for it. It has no password (the
# shadow entry is locked): it logs in by key, and sudo asks it for none, as CoreOS's sudoers did.
CORE_USER = ["--uid", "500", "--user-group", "--create-home", "--shell", "/bin/bash", "--comment", "CoreOS Admin"]
CORE_GROUPS = "sudo,docker,systemd-journal,adm"
CORE_SUDOERS = "# The admin account has no password to type (it logs in by SSH key).\n%sudo ALL=(ALL) NOPASSWD: ALL\n"


def _add_core_user(tree: Path) -> None:
    run(["useradd", "--root", str(tree), *CORE_USER, "--groups", CORE_GROUPS, "core"], "adding the user core")
    _write(tree / "etc/sudoers.d/coreos", CORE_SUDOERS, 0o440)


def customise(tree: Path, release: Release, cache_dir: Path, work: Path) -> str:
    """Turn the Debian tree into the image's tree; returns the kernel version."""
    kver = _move_kernel(tree)
    install_project(tree, cache_dir, work)
    ours = install_units(tree)
    usr_units = tree / "usr/lib/systemd/system"
    enable = dict(_ENABLE_IN_USR)
    for target, names in ours.items():
        enable[f"{target}.wants"] = [*enable.get(f"{target}.wants", []), *names]
    for wants, names in enable.items():
        for name in names:
            link = usr_units / wants / name
            link.parent.mkdir(exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(f"../{name}")
    for rel in _DISABLE:
        (tree / "etc/systemd/system" / rel).unlink(missing_ok=True)
    _write(tree / "usr/share/coreos/release", release.release_file())
    _write(tree / "usr/lib/os-release", os_release((tree / "usr/lib/os-release").read_text(), release.version))
    _write(tree / "usr/share/coreos/update.conf", release.update_conf())
    _write(tree / "usr/lib/systemd/system-generators/locksmith-autologin-generator", files.AUTOLOGIN_GENERATOR, 0o755)
    _write(tree / "usr/lib/systemd/network/80-locksmith-dhcp.network", files.DHCP_NETWORK)
    _write(usr_units / "ssh.service.d/10-keygen.conf", files.SSH_KEYGEN_DROPIN)
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Empty machine-id: systemd makes a new one on first boot (every machine its own).
    _write(tree / "etc/machine-id", "", 0o444)
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    _write(tree / "etc/hostname", "locksmith\n")
    _add_core_user(tree)
    # The ESP at /boot, as on CoreOS: the A/B environment block GRUB reads lives there.
    _write(tree / "etc/fstab", "LABEL=ROOT / ext4 defaults 0 1\nPARTLABEL=EFI-SYSTEM /boot vfat umask=0077 0 2\n")
    return kver
