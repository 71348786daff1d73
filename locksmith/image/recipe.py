"""What goes into the Debian root tree, and the cache key that names a built tree.

The key hashes the package list, the candidate versions apt would install today (so a kernel or security
update makes a new tree) and this recipe's text, so a rebuild where only the project changed reuses the tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
KERNEL_PACKAGE = "linux-image-cloud-amd64"
PACKAGES: tuple[str, ...] = (
    KERNEL_PACKAGE,
    "systemd",
    "systemd-sysv",
    "systemd-resolved",
    "udev",
    "dbus",
    "libpam-systemd",  # logind sessions for the reboot path
    "openssh-server",
    "sudo",  # the admin account `core` administers the host with it, as on CoreOS
    "etcd-server",
    "etcd-client",  # etcdctl, as CoreOS shipped it: the admin's view of the member cloud-config made
    "docker.io",
    "lxc",
    "apparmor",  # the kernel enables AppArmor: docker and lxc refuse to start containers without its parser
    "python3",
    "python3-venv",  # the project's venv in /usr/lib/locksmith
    "dracut",  # its systemd initrd honours mount.usr= (initramfs-tools does not)
    "iproute2",
    "ca-certificates",
    "kmod",
    "e2fsprogs",
    "gdisk",
    "util-linux",
    "procps",
    "less",
)
# Non-hostonly, so the initrd boots any qemu/cloud machine; squashfs for USR, ext4 for ROOT.
DRACUT_CONF = """\
hostonly="no"
add_drivers+=" squashfs ext4 virtio_blk virtio_pci virtio_scsi sd_mod "
compress="gzip"
"""
DPKG_OPTIONS: tuple[str, ...] = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
)
DEFAULT_CACHE = Path(os.environ.get("LOCKSMITH_IMAGE_CACHE", "/var/cache/locksmith-image"))


@dataclass(frozen=True)
class Recipe:
    packages: tuple[str, ...] = PACKAGES
    suite: str = SUITE

    def text(self) -> str:
        """Everything that shapes the tree except package versions, as one string to hash."""
        return "\n".join(
            [f"suite={self.suite}", "variant=minbase", *self.packages, DRACUT_CONF, *DPKG_OPTIONS, "recipe=2"]
        )


def candidate_versions(packages: tuple[str, ...]) -> str:
    """`pkg=version` lines from the machine's apt lists (no network); empty if apt-cache is missing."""
    try:
        proc = subprocess.run(
            ["apt-cache", "policy", *packages], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines, name = [], ""
    for line in proc.stdout.splitlines():
        if line and not line.startswith(" "):
            name = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            lines.append(f"{name}={line.split(':', 1)[1].strip()}")
    return "\n".join(lines)


def cache_key(recipe: Recipe, versions: str) -> str:
    return hashlib.sha256(f"{recipe.text()}\n--\n{versions}".encode()).hexdigest()[:16]
