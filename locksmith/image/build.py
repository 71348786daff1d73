"""`locksmith-image build`: root tree → USR squashfs + ROOT ext4 + ESP → CoreOS GPT disk → formats.

Everything is written into a temporary folder beside the output folder and renamed into place at the end,
so a failed build leaves nothing half-written where the output should be.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from locksmith.disk.grubenv import encode_env, slot_env
from locksmith.disk.layout import DiskError, make_coreos_disk, write_image_to_partition
from locksmith.disk.slots import read_slots
from locksmith.image.errors import ImageError
from locksmith.image.filesystems import make_ext4, make_squashfs, make_vfat
from locksmith.image.formats import FORMATS, PREFIX, Artifacts
from locksmith.image.grub import make_efi_binary
from locksmith.image.qemu import PROBE_KERNEL
from locksmith.image.recipe import DEFAULT_CACHE, Recipe
from locksmith.image.release import check_release_key, install_public_key, pack
from locksmith.image.rootfs import ensure_rootfs
from locksmith.image.tree import Release, customise, unpack

CMDLINE = "root=LABEL=ROOT rootflags=rw console=ttyS0,115200n8"
DEFAULT_SERVER = "https://public.update.core-os.net/v1/update/"
ESP_MIB, OEM_MIB = 128, 128
USR_IMAGE = f"{PREFIX}_update.bin"  # CoreOS's name for the USR partition image of a release
RAW_IMAGE = f"{PREFIX}_image.bin"


@dataclass
class BuildOptions:
    version: str
    out: Path
    channel: str = "stable"
    server: str = DEFAULT_SERVER
    formats: list[str] = field(default_factory=lambda: ["qemu"])
    cache_dir: Path = DEFAULT_CACHE
    root_mib: int = 1024
    usr_mib: int = 1024
    epoch: int = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
    recipe: Recipe = field(default_factory=Recipe)
    release_key: Path | None = None  # sign a release (release/) and trust its public half in the image


@dataclass
class BuildResult:
    out: Path
    files: list[Path]
    timings: dict[str, float]
    rootfs_built: bool


def check_formats(formats: list[str]) -> list[str]:
    chosen = list(FORMATS) if "all" in formats else formats
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise ImageError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)} or all")
    return list(dict.fromkeys(chosen))


def _temp_beside(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImageError(f"output folder {out} exists and is not empty; remove it or choose another --out")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise ImageError(f"cannot write the output folder {out}: {exc.strerror}; choose a writable --out") from None


def _disk(opts: BuildOptions, work: Path, tree: Path, usr: Path) -> Path:
    root_img = work / "root.ext4"
    shutil.move(tree / "usr", work / "usr-tree")
    (tree / "usr").mkdir()  # the mount point for the slot
    make_ext4(tree, root_img, opts.root_mib, "ROOT", opts.epoch)
    oem_img = work / "oem.ext4"
    make_ext4(None, oem_img, OEM_MIB, "OEM", opts.epoch)
    disk = work / RAW_IMAGE
    try:
        make_coreos_disk(disk, usr_size_mib=opts.usr_mib, root_size_mib=opts.root_mib, initial_image=usr)
    except DiskError as exc:
        raise ImageError(f"{exc} (USR needs a bigger slot: the disk is too small)") from None
    efi = work / "BOOTX64.EFI"
    make_efi_binary(efi, CMDLINE, work)
    env = work / "grubenv"
    env.write_bytes(encode_env(slot_env(read_slots(disk))))
    esp = work / "esp.vfat"
    make_vfat(esp, ESP_MIB, "EFI-SYSTEM", {"/EFI/BOOT/BOOTX64.EFI": efi, "/EFI/locksmith/grubenv": env})
    for number, image in ((1, esp), (6, oem_img), (9, root_img)):
        write_image_to_partition(disk, number, image)
    return disk


def _keep_probe_kernel(kernel: Path, cache_dir: Path) -> None:
    """`locksmith-image run` boots this kernel to probe whether KVM works before trusting it."""
    probe = cache_dir / PROBE_KERNEL
    partial = probe.with_name(f"{probe.name}.partial-{os.getpid()}")
    shutil.copyfile(kernel, partial)
    partial.rename(probe)


def build(opts: BuildOptions) -> BuildResult:
    formats = check_formats(opts.formats)
    if opts.root_mib < 64:
        raise ImageError(f"ROOT of {opts.root_mib} MiB is too small for /etc and /var; give at least 64")
    if opts.release_key is not None:
        check_release_key(opts.release_key)  # before minutes of work, not after
    timings: dict[str, float] = {}
    start = time.monotonic()
    tmp = _temp_beside(opts.out)
    try:
        tarball, built = ensure_rootfs(opts.recipe, opts.cache_dir)
        timings["rootfs"] = time.monotonic() - start
        work = tmp / ".work"
        tree = work / "tree"
        work.mkdir()
        step = time.monotonic()
        unpack(tarball, tree)
        customise(tree, Release(opts.version, opts.channel, opts.server), opts.cache_dir, work)
        if opts.release_key is not None:
            install_public_key(tree, opts.release_key)
        timings["tree"] = time.monotonic() - step
        step = time.monotonic()
        usr = tmp / USR_IMAGE
        make_squashfs(tree / "usr", usr, opts.epoch)
        if opts.release_key is not None:
            pack(usr, opts.version, opts.release_key, tmp / "release")
        timings["usr"] = time.monotonic() - step
        step = time.monotonic()
        disk = _disk(opts, work, tree, usr)
        timings["disk"] = time.monotonic() - step
        step = time.monotonic()
        files = [usr, *sorted((tmp / "release").glob("*"))]
        boot = work / "usr-tree/boot"
        artifacts = Artifacts(disk, usr, boot / "vmlinuz", boot / "initrd.img", tree)
        for name in formats:
            files += FORMATS[name](artifacts, tmp)
        timings["formats"] = time.monotonic() - step
        _keep_probe_kernel(work / "usr-tree/boot/vmlinuz", opts.cache_dir)
        shutil.rmtree(work)
        tmp.chmod(0o755)
        if opts.out.exists():
            opts.out.rmdir()
        tmp.rename(opts.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["total"] = time.monotonic() - start
    return BuildResult(opts.out, [opts.out / f.relative_to(tmp) for f in files], timings, built)
