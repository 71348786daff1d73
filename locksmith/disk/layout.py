"""Build CoreOS-layout GPT disk image files with sgdisk (for tests, the demo and the benchmark)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from locksmith.disk.gpt import SECTOR_SIZE, GptError, read_gpt

MIB = 1024 * 1024

# CoreOS partition type GUIDs (REFERENCE.md, "Disk layout and A/B selection").
EFI_SYSTEM_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
BIOS_BOOT_TYPE = "21686148-6449-6e6f-744e-656564454649"
USR_TYPE = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"
LINUX_DATA_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"
# REFERENCE.md gives no type for OEM-CONFIG; CoreOS used its "reserved" type for it.
COREOS_RESERVED_TYPE = "c95dc21a-df0e-4340-8d7b-26cbfa9a03e0"
ROOT_RESIZE_TYPE = "3884dd41-8582-4404-b9a8-e9b84f2df50e"


@dataclass(frozen=True)
class PartitionSpec:
    number: int
    name: str
    type_guid: str
    size_mib: int


class DiskError(Exception):
    """The disk image could not be built; the message is one line."""


def coreos_layout(usr_size_mib: int = 1024, root_size_mib: int = 1024, small: bool = False) -> list[PartitionSpec]:
    """The CoreOS partitions in on-disk order; `small` shrinks everything except USR for quick tests."""
    efi, bios, oem, oem_config = (2, 1, 2, 1) if small else (128, 2, 128, 64)
    return [
        PartitionSpec(1, "EFI-SYSTEM", EFI_SYSTEM_TYPE, efi),
        PartitionSpec(2, "BIOS-BOOT", BIOS_BOOT_TYPE, bios),
        PartitionSpec(3, "USR-A", USR_TYPE, usr_size_mib),
        PartitionSpec(4, "USR-B", USR_TYPE, usr_size_mib),
        PartitionSpec(6, "OEM", LINUX_DATA_TYPE, oem),
        PartitionSpec(7, "OEM-CONFIG", COREOS_RESERVED_TYPE, oem_config),
        PartitionSpec(9, "ROOT", ROOT_RESIZE_TYPE, root_size_mib),
    ]


def _sgdisk(path: Path, *args: str) -> str:
    if shutil.which("sgdisk") is None:
        raise DiskError("sgdisk not found; install the 'gdisk' package (scripts/bootstrap does)")
    proc = subprocess.run(["sgdisk", *args, str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DiskError(f"sgdisk {' '.join(args)} failed on {path}: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def make_coreos_disk(
    path: Path | str,
    usr_size_mib: int = 1024,
    root_size_mib: int | None = None,
    small: bool = False,
    initial_image: Path | str | None = None,
) -> Path:
    """Create a sparse GPT disk image in the CoreOS layout; USR-A successful=1 priority=1, USR-B all zero.

    `root_size_mib` defaults to 1024 (4 with `small`): ROOT "grows to fill the disk", so the image is sized
    to end right after it. `initial_image`, if given, is copied into USR-A. An existing file is refused."""
    path = Path(path)
    if usr_size_mib < 1:
        raise DiskError(f"USR size {usr_size_mib} MiB is too small; give at least 1 MiB")
    if root_size_mib is None:
        root_size_mib = 4 if small else 1024
    layout = coreos_layout(usr_size_mib, root_size_mib, small)
    # 1 MiB before the first partition (alignment, primary GPT) and 1 MiB after the last (backup GPT).
    total = (sum(p.size_mib for p in layout) + 2) * MIB
    try:
        with open(path, "xb") as f:
            f.truncate(total)
    except FileExistsError:
        raise DiskError(f"{path} already exists; remove it or choose another path") from None
    except OSError as exc:
        raise DiskError(f"cannot create {path}: {exc.strerror}") from None
    try:
        args = ["--clear", "--disk-guid=R"]
        for p in layout:
            args += [
                f"--new={p.number}:0:+{p.size_mib}M",
                f"--typecode={p.number}:{p.type_guid}",
                f"--change-name={p.number}:{p.name}",
            ]
        # USR-A: priority 1 (bit 48) and successful (bit 56), as the CoreOS image builder leaves it.
        args += ["--attributes=3:set:48", "--attributes=3:set:56"]
        _sgdisk(path, *args)
        if initial_image is not None:
            write_image_to_partition(path, 3, Path(initial_image))
    except (DiskError, GptError):
        path.unlink(missing_ok=True)
        raise
    return path


def write_image_to_partition(disk: Path | str, number: int, image: Path) -> None:
    """Copy a filesystem image into a partition of a disk image (build time only, not the update path)."""
    part = read_gpt(disk).partition(number)
    size = image.stat().st_size
    if size > part.size:
        raise DiskError(f"image {image} ({size} bytes) does not fit partition {number} ({part.size} bytes)")
    with open(image, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(part.first_lba * SECTOR_SIZE)
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
