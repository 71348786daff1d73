"""The VM demo's two releases: V1 as a bootable disk, V2 as a signed release the update server offers.

Both are built from this checkout and kept in the image cache (outside the clone) under a key of their
inputs: the product's source files, the versions and the signing key, so a second run with the same
source boots at once, and a changed source is never shown running old code. One set is kept (the
images take gigabytes): building a new one removes the others.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locksmith.image.build import BuildOptions, build
from locksmith.image.formats import PREFIX
from locksmith.image.project import project_root
from locksmith.image.recipe import DEFAULT_CACHE
from locksmith.image.rootfs import cache_lock
from locksmith.updateengine.keys import generate_keypair

V1 = "1.0.0"
V2 = "2.0.0"
CHANNEL = "stable"
_SOURCES = ("locksmith", "strategies", "systemd", "pyproject.toml")


@dataclass(frozen=True)
class Releases:
    image: Path  # V1's raw disk (the ami format's file)
    v2: Path  # V2's signed release folder, as the update server serves it
    v1_version: str = V1
    v2_version: str = V2


def source_digest(root: Path) -> str:
    """sha256 over the product's files (paths and bytes): what the images are built from."""
    digest = hashlib.sha256()
    for top in _SOURCES:
        base = root / top
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure(cache_dir: Path = DEFAULT_CACHE, say: Callable[[str], None] = print) -> Releases:
    """V1 and V2 from the cache, built first if this source has none."""
    key = hashlib.sha256(f"{source_digest(project_root())} {V1} {V2} {CHANNEL}".encode()).hexdigest()[:16]
    home = cache_dir / "vmfleet"
    folder = home / key
    releases = Releases(folder / "v1" / f"{PREFIX}_ami_image.bin", folder / "v2" / "release")
    if (folder / "complete").is_file():
        say(f"images: V1 {V1} and V2 {V2} from the cache ({folder})")
        return releases
    # Two test workers (the boot test and the fleet's) may both find the set missing: one builds, the
    # other waits and then reads it. The lock is this folder's own; build() takes the cache's.
    with cache_lock(home):
        if not (folder / "complete").is_file():
            _build(home, key, say)
    return releases


def _build(home: Path, key: str, say: Callable[[str], None]) -> None:
    for old in home.iterdir():
        if old.name != ".lock":
            shutil.rmtree(old, ignore_errors=True)
    partial = home / f".{key}.partial"
    partial.mkdir(parents=True)
    generate_keypair(partial / "release.key", partial / "release.pub")
    for version, formats, out in ((V1, ["ami"], "v1"), (V2, [], "v2")):
        say(f"images: building {version} (a few minutes; cached for the next run)")
        opts = BuildOptions(version=version, out=partial / out, channel=CHANNEL, formats=formats)
        opts.release_key = partial / "release.key"
        build(opts)
    (partial / "complete").write_text(key + "\n")
    partial.rename(home / key)
