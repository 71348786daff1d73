"""Partition contents made from directories with file-level tools only (no loop devices, no mounts).

USR is squashfs: read-only by construction (a write fails with EROFS whatever the mount flags), about a
third of the tree's size so it fits the 1 GiB slot with room to grow, bit-reproducible with fixed times,
the same file the PXE initramfs carries, and readable by GRUB's squash4 module, which lets GRUB load the
kernel from the slot itself. gzip, not zstd or xz: GRUB 2.06 reads gzip/xz/lzo only, and xz costs minutes
on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

from locksmith.image.errors import require, run

MIB = 1024 * 1024


def make_squashfs(src: Path, out: Path, epoch: int) -> None:
    require("mksquashfs")
    # Level 1: on two shared cores the default level 9 costs minutes for a few percent of size.
    args = ["mksquashfs", str(src), str(out), "-noappend", "-comp", "gzip", "-Xcompression-level", "1"]
    args += ["-no-progress", "-quiet"]
    args += ["-mkfs-time", str(epoch), "-all-time", str(epoch), "-processors", "2"]
    run(args, f"mksquashfs of {src}")


def make_ext4(src: Path | None, out: Path, size_mib: int, label: str, epoch: int) -> None:
    """ext4 of exactly `size_mib` filled from `src` (mke2fs -d); 'Could not allocate' = partition too small."""
    require("mke2fs")
    args = ["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-m", "0", "-E", "lazy_itable_init=1"]
    if src is not None:
        args += ["-d", str(src)]
    with open(out, "wb") as f:
        f.truncate(size_mib * MIB)
    what = f"mke2fs of {label} ({size_mib} MiB; a bigger ROOT may be needed)"
    run([*args, str(out), f"{size_mib}M"], what, env={"E2FSPROGS_FAKE_TIME": str(epoch)})


def make_vfat(out: Path, size_mib: int, label: str, files: dict[str, Path], fat32: bool = True) -> None:
    """A FAT image holding `files` (target path inside → source file), written with mtools. FAT32 (what
    an ESP should be) needs at least 32 MiB; `fat32=False` lets mkfs.vfat pick FAT12/16 for small ones."""
    require("mkfs.vfat", "mcopy")
    with open(out, "wb") as f:
        f.truncate(size_mib * MIB)
    bits = ["-F", "32"] if fat32 else []
    run(["mkfs.vfat", *bits, "-n", label, "--invariant", "-i", "4c4f434b", str(out)], f"mkfs.vfat of {label}")
    dirs = sorted({str(Path(p).parent) for p in files} - {"/"}, key=len)
    made: set[str] = set()
    for d in dirs:
        parts = Path(d).parts[1:]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if sub not in made:
                run(["mmd", "-i", str(out), f"::{sub}"], f"mmd {sub}", nice=False)
                made.add(sub)
    for target, source in files.items():
        run(["mcopy", "-i", str(out), str(source), f"::{target}"], f"mcopy {target}", nice=False)
