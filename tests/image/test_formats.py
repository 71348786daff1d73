"""Every output format from a small CoreOS-layout disk, each checked by the real tool for its kind."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import defusedxml.ElementTree as ET
import pytest

from locksmith.disk.layout import make_coreos_disk
from locksmith.image.formats import FORMATS, Artifacts

pytestmark = pytest.mark.timeout(600)
OVF_NS = "{http://schemas.dmtf.org/ovf/envelope/1}"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    work = tmp_path_factory.mktemp("formats")
    disk = make_coreos_disk(work / "disk.raw", usr_size_mib=8, small=True)
    tree = work / "usr"
    (tree / "share/coreos").mkdir(parents=True)
    (tree / "share/coreos/release").write_text("COREOS_RELEASE_VERSION=9.9.9\n")
    usr = work / "usr.squashfs"
    subprocess.run(["mksquashfs", str(tree), str(usr), "-noappend", "-quiet", "-no-progress"], check=True)
    kernel = work / "vmlinuz"
    kernel.write_bytes(b"MZ kernel stand-in")
    initrd_dir = work / "initrd"
    initrd_dir.mkdir()
    (initrd_dir / "init").write_text("#!/bin/sh\n")
    initrd = work / "initrd.img"
    script = f"cd {initrd_dir} && echo init | cpio -o -H newc --quiet | gzip > {initrd}"
    subprocess.run(["sh", "-c", script], check=True)
    root_tree = work / "root"
    (root_tree / "etc").mkdir(parents=True)
    (root_tree / "etc/hostname").write_text("locksmith\n")
    (root_tree / "usr").mkdir()
    (root_tree / "bin").symlink_to("usr/bin")
    art = Artifacts(disk, usr, kernel, initrd, root_tree)
    out = work / "out"
    out.mkdir()
    result = {name: make(art, out) for name, make in FORMATS.items()}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for ps in result.values() for p in ps)
    return result


def _qemu_img_info(path: Path) -> dict:
    subprocess.run(["qemu-img", "check", str(path)], check=True, capture_output=True)
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True).stdout)


def test_qcow2_formats(outputs: dict[str, list[Path]]) -> None:
    image, launcher = outputs["qemu"]
    assert _qemu_img_info(image)["format"] == "qcow2"
    assert "locksmith-image run" in launcher.read_text() and launcher.stat().st_mode & 0o111
    assert _qemu_img_info(outputs["openstack"][0])["format"] == "qcow2"


def test_ami_is_the_raw_disk(outputs: dict[str, list[Path]]) -> None:
    (raw,) = outputs["ami"]
    out = subprocess.run(["sgdisk", "-p", str(raw)], capture_output=True, text=True, check=True).stdout
    assert "USR-A" in out and "ROOT" in out


def test_gce_is_disk_raw_in_a_tar_gz(outputs: dict[str, list[Path]]) -> None:
    (tgz,) = outputs["gce"]
    listing = subprocess.run(["tar", "-tzf", str(tgz)], capture_output=True, text=True, check=True).stdout
    assert listing.split() == ["disk.raw"]


def test_vmware_vmdk_lsilogic_and_vmx(outputs: dict[str, list[Path]]) -> None:
    vmdk, vmx = outputs["vmware"]
    info = _qemu_img_info(vmdk)
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    fields = dict(line.split(" = ", 1) for line in vmx.read_text().splitlines())
    assert fields["scsi0.virtualDev"] == '"lsilogic"' and fields["scsi0:0.fileName"] == f'"{vmdk.name}"'


def test_virtualbox_ovf_and_ova(outputs: dict[str, list[Path]]) -> None:
    vmdk, ovf, ova = outputs["virtualbox"]
    assert _qemu_img_info(vmdk)["format"] == "vmdk"
    root = ET.parse(ovf).getroot()
    ref = root.find(f"{OVF_NS}References/{OVF_NS}File")
    assert ref is not None and ref.get(f"{OVF_NS}href") == vmdk.name
    assert int(ref.get(f"{OVF_NS}size") or 0) == vmdk.stat().st_size
    with tarfile.open(ova) as tar:
        names = tar.getnames()
        manifest = tar.extractfile(names[-1]).read().decode()  # type: ignore[union-attr]
    assert names == [ovf.name, vmdk.name, ovf.with_suffix(".mf").name]
    assert f"SHA1({vmdk.name})= " in manifest


def test_vagrant_box(outputs: dict[str, list[Path]]) -> None:
    (box,) = outputs["vagrant"]
    listing = subprocess.run(["tar", "-tzf", str(box)], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(listing) == ["Vagrantfile", "box-disk1.vmdk", "box.ovf", "metadata.json"]
    with tarfile.open(box) as tar:
        assert json.load(tar.extractfile("metadata.json")) == {"provider": "virtualbox"}  # type: ignore[arg-type]


def test_pxe_initramfs_carries_usr_squashfs(outputs: dict[str, list[Path]]) -> None:
    kernel, image = outputs["pxe"]
    assert kernel.read_bytes() == b"MZ kernel stand-in"
    data = image.read_bytes()
    # Two gzipped newc archives back to back: the initramfs as dracut made it, then ours: usr.squashfs, ROOT's
    # tree for the in-memory root, and the initramfs unit that copies it there.
    second = (image.parent.parent / "initrd.img").stat().st_size
    first_list = subprocess.run(["cpio", "-t", "--quiet"], input=_gunzip(data[:second]), capture_output=True)
    second_list = subprocess.run(["cpio", "-tv", "--quiet"], input=_gunzip(data[second:]), capture_output=True)
    assert first_list.stdout.split() == [b"init"]
    listing = {
        line.split()[-1] if b" -> " not in line else line.split()[-3]: line for line in second_list.stdout.splitlines()
    }
    assert {b"usr.squashfs", b"pxe-root/etc/hostname", b"pxe-root/usr", b"pxe-root/bin"} <= set(listing)
    assert listing[b"pxe-root/bin"].startswith(b"l") and listing[b"pxe-root/bin"].endswith(b"-> usr/bin")
    unit = b"etc/systemd/system/locksmith-pxe-root.service"
    assert unit in listing and b"etc/systemd/system/initrd-root-fs.target.wants/locksmith-pxe-root.service" in listing


def _gunzip(data: bytes) -> bytes:
    return subprocess.run(["gzip", "-dc"], input=data, capture_output=True, check=True).stdout
