"""The demo's releases: a fresh signing key pair, USR images v1 and v2, packed for the update server.

Done with the project's own commands (`locksmith-pack-release keygen|make-image|pack`), exactly as a
user would, so the demo also exercises them. v1 is published on the channel at once (the fleet runs
it); v2 is packed beside the server root and moved in by `publish` — one rename, so the server never
lists a half-written release (pack writes release.json last, and the rename is atomic anyway).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACK = [sys.executable, "-m", "locksmith.updateengine.pack"]


class ReleaseError(Exception):
    """Packing failed; the message is one line."""


@dataclass(frozen=True)
class Releases:
    root: Path  # the update server's --root
    channel: str
    public_key: Path
    old_version: str
    new_version: str
    old_image: Path  # written into every host's USR-A at build time
    staged: Path  # the packed new release, outside the server root until published

    @property
    def published(self) -> Path:
        return self.root / self.channel / self.new_version

    def publish(self) -> Path:
        """Make the new release visible on the channel (one atomic rename)."""
        self.published.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.staged, self.published)
        return self.published


def _run(*args: str) -> None:
    proc = subprocess.run([*PACK, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise ReleaseError(lines[-1] if lines else f"locksmith-pack-release {args[0]} failed ({proc.returncode})")


def prepare(
    workdir: Path, channel: str, old_version: str = "1.0.0", new_version: str = "2.0.0", filler_mib: int = 1
) -> Releases:
    """Key pair, both images, v1 published and v2 staged, all under `workdir/release`."""
    base = workdir / "release"
    keys = base / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    private, public = keys / "payload-key.pem", keys / "payload-key.pub.pem"
    _run("keygen", "--private", str(private), "--public", str(public))
    images = {}
    for version in (old_version, new_version):
        image = base / f"usr-{version}.squashfs"
        # Some incompressible filler so the download takes long enough to show progress.
        _run("make-image", str(image), "--version", version, "--filler-mib", str(filler_mib))
        images[version] = image
    root = base / "server"
    _run("pack", str(images[old_version]), "--version", old_version, "--key", str(private),
         "--root", str(root), "--channel", channel)  # fmt: skip
    staged = base / "staged" / new_version
    _run("pack", str(images[new_version]), "--version", new_version, "--key", str(private), "--out", str(staged))
    return Releases(root, channel, public, old_version, new_version, images[old_version], staged)
