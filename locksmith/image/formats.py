"""Output formats (CoreOS names): each turns the raw disk into the files a platform takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from locksmith.image.errors import require, run

PREFIX = "locksmith_production"
LAUNCHER = """\
#!/bin/sh
# Boots {image} under qemu the way CoreOS's coreos_production_qemu.sh did: UEFI, user-mode networking,
# SSH forwarded from 127.0.0.1 (-p PORT, default 2222), serial console on this terminal.
here=$(cd "$(dirname "$0")" && pwd)
exec locksmith-image run "$here/{image}" "$@"
"""


def _raw(disk: Path, out: Path, name: str) -> list[Path]:
    target = out / name
    # A sparse copy: the disk is mostly empty (USR-B, free ROOT), a plain copy would write gigabytes.
    run(["cp", "--sparse=always", str(disk), str(target)], f"copying the disk to {name}", nice=False)
    return [target]


def _qcow2(disk: Path, target: Path) -> Path:
    require("qemu-img")
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", str(disk), str(target)], "qemu-img convert")
    return target


def qemu(disk: Path, out: Path) -> list[Path]:
    image = _qcow2(disk, out / f"{PREFIX}_qemu_image.img")
    launcher = out / f"{PREFIX}_qemu.sh"
    launcher.write_text(LAUNCHER.format(image=image.name))
    launcher.chmod(0o755)
    return [image, launcher]


def ami(disk: Path, out: Path) -> list[Path]:
    return _raw(disk, out, f"{PREFIX}_ami_image.bin")


def openstack(disk: Path, out: Path) -> list[Path]:
    return [_qcow2(disk, out / f"{PREFIX}_openstack_image.img")]


FORMATS: dict[str, Callable[[Path, Path], list[Path]]] = {"qemu": qemu, "ami": ami, "openstack": openstack}
