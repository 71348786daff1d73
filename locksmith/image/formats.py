"""Output formats (CoreOS names and shapes): each turns the build's artifacts into what a platform takes."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locksmith.image.errors import require, run
from locksmith.image.ovf import ovf_xml, vmx_text

PREFIX = "locksmith_production"
LAUNCHER = """\
#!/bin/sh
# Boots {image} under qemu the way CoreOS's coreos_production_qemu.sh did: UEFI, user-mode networking,
# SSH forwarded from 127.0.0.1 (--ssh-port PORT), serial console on this terminal.
here=$(cd "$(dirname "$0")" && pwd)
exec locksmith-image run "$here/{image}" "$@"
"""
VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.ssh.username = "core"
  config.vm.base_mac = nil
end
"""


# PXE has no bootloader to choose a slot: the boot server gives the kernel these (plus console= and the
# host's own, e.g. coreos.autologin=ttyS0 or cloud-config-url=).
PXE_CMDLINE = "root=tmpfs mount.usr=/usr.squashfs mount.usrfstype=squashfs mount.usrflags=ro,loop"
# Runs in the initramfs: fills the empty tmpfs root with ROOT's tree (/etc, /var, /home and the merged-/usr
# links) before /usr is mounted over it, as ROOT's partition holds them on a disk boot.
PXE_ROOT_UNIT = """\
[Unit]
Description=Locksmith PXE: the in-memory root from the initramfs
DefaultDependencies=no
Requires=sysroot.mount
After=sysroot.mount
Before=sysroot-usr.mount initrd-root-fs.target
ConditionPathIsDirectory=/pxe-root

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=cp -a /pxe-root/. /sysroot/
"""
# /usr is a file here, not a device: nothing orders its mount after the modules a loop mount of squashfs needs.
PXE_MODULES_UNIT = """\
[Unit]
Description=Locksmith PXE: modules for the loop-mounted /usr
DefaultDependencies=no

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=modprobe -a loop squashfs
"""
PXE_USR_DROP_IN = """\
[Unit]
Wants=locksmith-pxe-modules.service
After=locksmith-pxe-modules.service
"""


@dataclass(frozen=True)
class Artifacts:
    disk: Path  # the raw GPT image
    usr: Path  # the USR squashfs
    kernel: Path
    initrd: Path
    root_tree: Path  # ROOT's file tree (/usr an empty mount point)
    name: str = "locksmith"


def _raw(art: Artifacts, target: Path) -> Path:
    # A sparse copy: the disk is mostly empty (USR-B, free ROOT), a plain copy would write gigabytes.
    run(["cp", "--sparse=always", str(art.disk), str(target)], f"copying the disk to {target.name}", nice=False)
    return target


def _convert(art: Artifacts, target: Path, fmt: str, *options: str) -> Path:
    require("qemu-img")
    args = ["qemu-img", "convert", "-f", "raw", "-O", fmt, *options, str(art.disk), str(target)]
    run(args, f"qemu-img convert to {fmt}")
    return target


def _vmdk(art: Artifacts, target: Path, adapter: str) -> Path:
    return _convert(art, target, "vmdk", "-o", f"adapter_type={adapter},subformat=streamOptimized")


def qemu(art: Artifacts, out: Path) -> list[Path]:
    image = _convert(art, out / f"{PREFIX}_qemu_image.img", "qcow2", "-c")
    launcher = out / f"{PREFIX}_qemu.sh"
    launcher.write_text(LAUNCHER.format(image=image.name))
    launcher.chmod(0o755)
    return [image, launcher]


def ami(art: Artifacts, out: Path) -> list[Path]:
    return [_raw(art, out / f"{PREFIX}_ami_image.bin")]


def openstack(art: Artifacts, out: Path) -> list[Path]:
    return [_convert(art, out / f"{PREFIX}_openstack_image.img", "qcow2", "-c")]


def gce(art: Artifacts, out: Path) -> list[Path]:
    target = out / f"{PREFIX}_gce.tar.gz"
    work = out / ".gce"
    work.mkdir()
    _raw(art, work / "disk.raw")
    # GNU sparse tar, as GCE's import expects: the gigabytes of zeros are not stored.
    run(["tar", "-Szcf", str(target), "--format=oldgnu", "-C", str(work), "disk.raw"], "tar of disk.raw")
    shutil.rmtree(work)
    return [target]


def vmware(art: Artifacts, out: Path) -> list[Path]:
    vmdk = _vmdk(art, out / f"{PREFIX}_vmware_image.vmdk", "lsilogic")
    vmx = out / f"{PREFIX}_vmware.vmx"
    vmx.write_text(vmx_text(art.name, vmdk.name))
    return [vmdk, vmx]


def _ova(ova: Path, members: list[Path]) -> None:
    manifest = "".join(f"SHA1({m.name})= {hashlib.sha1(m.read_bytes()).hexdigest()}\n" for m in members)
    mf = ova.with_suffix(".mf")
    mf.write_text(manifest)
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:  # the OVF must come first
        for member in [*members, mf]:
            tar.add(member, arcname=member.name)
    mf.unlink()


def virtualbox(art: Artifacts, out: Path) -> list[Path]:
    vmdk = _vmdk(art, out / f"{PREFIX}_virtualbox_image.vmdk", "ide")
    ovf = out / f"{PREFIX}_virtualbox.ovf"
    ovf.write_text(ovf_xml(art.name, vmdk.name, vmdk.stat().st_size, art.disk.stat().st_size))
    ova = out / f"{PREFIX}_virtualbox.ova"
    _ova(ova, [ovf, vmdk])
    return [vmdk, ovf, ova]


def vagrant(art: Artifacts, out: Path) -> list[Path]:
    work = out / ".vagrant"
    work.mkdir()
    vmdk = _vmdk(art, work / "box-disk1.vmdk", "ide")
    (work / "box.ovf").write_text(ovf_xml(art.name, vmdk.name, vmdk.stat().st_size, art.disk.stat().st_size))
    (work / "metadata.json").write_text(json.dumps({"provider": "virtualbox"}) + "\n")
    (work / "Vagrantfile").write_text(VAGRANTFILE)
    box = out / f"{PREFIX}_vagrant.box"
    with tarfile.open(box, "w:gz") as tar:
        for name in ("box.ovf", "box-disk1.vmdk", "metadata.json", "Vagrantfile"):
            tar.add(work / name, arcname=name)
    shutil.rmtree(work)
    return [box]


def pxe(art: Artifacts, out: Path) -> list[Path]:
    """The kernel, and the initramfs with a second gzipped newc cpio appended (the kernel unpacks concatenated
    archives), as CoreOS's coreos_production_pxe_image.cpio.gz: `usr.squashfs`, ROOT's tree under /pxe-root
    and the initramfs unit that copies it into the tmpfs root. Boots with PXE_CMDLINE, all in memory."""
    require("cpio")
    kernel = out / f"{PREFIX}_pxe.vmlinuz"
    shutil.copyfile(art.kernel, kernel)
    work = out / ".pxe"
    work.mkdir()
    shutil.copyfile(art.usr, work / "usr.squashfs")
    run(["cp", "-a", f"{art.root_tree}/.", str(work / "pxe-root")], "copying ROOT's tree for pxe")
    # No ROOT or ESP partition to mount or remount: / is the tmpfs, /usr came up in the initramfs.
    (work / "pxe-root/etc").mkdir(exist_ok=True)
    (work / "pxe-root/etc/fstab").write_text("# pxe: / is a tmpfs and /usr the initramfs's usr.squashfs\n")
    units = work / "etc/systemd/system"
    (units / "initrd-root-fs.target.wants").mkdir(parents=True)
    (units / "locksmith-pxe-root.service").write_text(PXE_ROOT_UNIT)
    (units / "initrd-root-fs.target.wants/locksmith-pxe-root.service").symlink_to("../locksmith-pxe-root.service")
    (units / "locksmith-pxe-modules.service").write_text(PXE_MODULES_UNIT)
    (units / "sysusr-usr.mount.d").mkdir()
    (units / "sysusr-usr.mount.d/locksmith-pxe.conf").write_text(PXE_USR_DROP_IN)
    script = "find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible | gzip -1 > ../usr.cpio.gz"
    run(["sh", "-c", script], "cpio of usr.squashfs and ROOT's tree", cwd=str(work))
    image = out / f"{PREFIX}_pxe_image.cpio.gz"
    with open(image, "wb") as dst:
        for part in (art.initrd, out / "usr.cpio.gz"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1024 * 1024)
    shutil.rmtree(work)
    (out / "usr.cpio.gz").unlink()
    return [kernel, image]


FORMATS: dict[str, Callable[[Artifacts, Path], list[Path]]] = {
    "qemu": qemu,
    "ami": ami,
    "openstack": openstack,
    "gce": gce,
    "vmware": vmware,
    "virtualbox": virtualbox,
    "vagrant": vagrant,
    "pxe": pxe,
}
