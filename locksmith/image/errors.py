"""The one error type of the image builder: its message is one line naming the problem and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess


class ImageError(Exception):
    """The image could not be built or run; the message is one line."""


def require(*tools: str) -> None:
    """Fail early, naming the Debian package, when a build tool is missing (scripts/bootstrap installs them)."""
    packages = {
        "mmdebstrap": "mmdebstrap",
        "mksquashfs": "squashfs-tools",
        "mke2fs": "e2fsprogs",
        "mkfs.vfat": "dosfstools",
        "mcopy": "mtools",
        "grub-mkstandalone": "grub-common and grub-efi-amd64-bin",
        "qemu-img": "qemu-utils",
        "qemu-system-x86_64": "qemu-system-x86",
        "sgdisk": "gdisk",
        "cpio": "cpio",
        "xorriso": "xorriso",
    }
    for tool in tools:
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} not found; install {packages.get(tool, tool)} (scripts/bootstrap does)")


def run(
    args: list[str],
    what: str,
    *,
    nice: bool = True,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 1800,
) -> str:
    """Run a build tool (niced: the machine is shared), returning stdout; failure is one ImageError line."""
    cmd = ["nice", "-n", "19", *args] if nice else args
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            env=env and {**os.environ, **env},
            cwd=cwd,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ImageError(f"{what}: {args[0]} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("E:", "Error", "error"))]
        # The first error is the cause (apt: "Unable to locate package X"); later ones are its consequences.
        detail = errors[0] if errors else (lines or [f"exit {proc.returncode}"])[-1]
        detail = detail.strip()
        raise ImageError(f"{what} failed: {detail}")
    return proc.stdout
