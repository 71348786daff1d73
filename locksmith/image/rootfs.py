"""The Debian root tree as a tarball from mmdebstrap, cached outside the clone by the recipe's hash."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from locksmith.image.errors import ImageError, require, run
from locksmith.image.recipe import DPKG_OPTIONS, DRACUT_CONF, Recipe, cache_key, candidate_versions


def rootfs_path(recipe: Recipe, cache_dir: Path) -> Path:
    return cache_dir / f"rootfs-{cache_key(recipe, candidate_versions(recipe.packages))}.tar"


LOCK_WAIT_SECONDS = 3600.0  # a cold tree takes minutes; an hour means a stuck builder, not a slow one


@contextmanager
def cache_lock(cache_dir: Path, seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """One builder fills the cache at a time (two test workers may start cold builds together); another
    waits, bounded, and then finds what the first one built."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = open(cache_dir / ".lock", "a")  # noqa: SIM115 - closed below, after the unlock
    except OSError as exc:
        raise ImageError(f"cannot create the cache {cache_dir}: {exc.strerror}; set LOCKSMITH_IMAGE_CACHE") from None
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ImageError(
                        f"another locksmith-image build held {cache_dir}/.lock for {seconds / 60:.0f} min;"
                        " wait for it to finish or stop it"
                    ) from None
                time.sleep(1)  # flock has no timeout of its own
        yield
    finally:
        lock.close()  # releases the lock


def ensure_rootfs(recipe: Recipe, cache_dir: Path, log: bool = True) -> tuple[Path, bool]:
    """The cached tarball for `recipe`, building it first if needed; (path, built now)."""
    target = rootfs_path(recipe, cache_dir)
    if target.is_file():
        return target, False
    require("mmdebstrap")
    with cache_lock(cache_dir):
        if target.is_file():  # built by the builder we waited for
            return target, False
        _build_rootfs(recipe, cache_dir, target, log)
    return target, True


def _build_rootfs(recipe: Recipe, cache_dir: Path, target: Path, log: bool) -> None:
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
