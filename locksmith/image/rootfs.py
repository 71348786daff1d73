"""The Debian root tree as a tarball from mmdebstrap, cached outside the clone by the recipe's hash."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from locksmith.image.errors import ImageError, require, run
from locksmith.image.recipe import DPKG_OPTIONS, DRACUT_CONF, Recipe, cache_key, candidate_versions


def rootfs_path(recipe: Recipe, cache_dir: Path) -> Path:
    return cache_dir / f"rootfs-{cache_key(recipe, candidate_versions(recipe.packages))}.tar"


def ensure_rootfs(recipe: Recipe, cache_dir: Path, log: bool = True) -> tuple[Path, bool]:
    """The cached tarball for `recipe`, building it first if needed; (path, built now)."""
    target = rootfs_path(recipe, cache_dir)
    if target.is_file():
        return target, False
    require("mmdebstrap")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create the cache {cache_dir}: {exc.strerror}; set LOCKSMITH_IMAGE_CACHE") from None
    # mmdebstrap picks its output format from the name: keep ".tar" last, or it writes a directory.
    partial = target.with_name(f"{target.stem}.partial-{os.getpid()}.tar")
    conf = cache_dir / f"dracut-{os.getpid()}.conf"
    conf.write_text(DRACUT_CONF)
    # The dracut config is in place before the kernel's postinst runs dracut, so the initrd is made once.
    setup = f'mkdir -p "$1/etc/dracut.conf.d" && cp {conf} "$1/etc/dracut.conf.d/10-locksmith.conf"'
    args = ["mmdebstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}", f"--setup-hook={setup}"]
    args += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    args += [recipe.suite, str(partial)]
    if log:
        print(f"locksmith-image: building the Debian {recipe.suite} root tree (mmdebstrap, a few minutes)", flush=True)
    try:
        run(args, "mmdebstrap (check the package names and the machine's apt sources)")
        partial.rename(target)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        partial.unlink(missing_ok=True)
        conf.unlink(missing_ok=True)
    return target, True
