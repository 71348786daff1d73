"""Every file the applier touches goes through here: paths confined to the target root, atomic writes.

With `--root DIR` the tree is another system's `/`, so a symlink in it is resolved as that system would
see it (an absolute link starts again at DIR, `..` stops at DIR): nothing is ever written outside the
root. `..` in a configured path is refused outright, and so is anything under `/usr` (read-only on
CoreOS: the OS image, replaced by updates). A file is written to a temporary name beside it, flushed
and renamed, so a reader sees the old content or the new, never half of it; a symlink in the last
component is replaced, not followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_MAX_LINKS = 40  # as the kernel's ELOOP limit


class PathRefused(ValueError):
    """A configured path the applier will not touch; str() says which and why."""


@dataclass(frozen=True)
class Root:
    path: Path

    @property
    def is_live(self) -> bool:
        """True when applying to the running system (`/`), where services may be started."""
        return self.path.resolve() == Path("/")

    def resolve(self, guest: str) -> Path:
        """The host path for the target system's absolute path `guest`, all its links resolved inside
        the root except the last component's own."""
        pure = PurePosixPath(guest)
        if not pure.is_absolute():
            raise PathRefused(f"{guest}: not an absolute path")
        if ".." in pure.parts:
            raise PathRefused(f"{guest}: a path may not contain '..'")
        parents = self._follow(list(pure.parts[1:-1]))
        parts = [*parents, pure.name] if pure.name else parents
        if parts[:1] == ["usr"]:
            raise PathRefused(f"{guest}: /usr is read-only (the OS image); write under /etc or /var instead")
        return self.path.joinpath(*parts)

    def _follow(self, todo: list[str]) -> list[str]:
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            here = self.path.joinpath(*done, part)
            try:
                info = os.lstat(here)
            except FileNotFoundError:
                done.append(part)
                continue
            if not stat.S_ISLNK(info.st_mode):
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_LINKS:
                raise PathRefused(f"/{'/'.join(done)}/{part}: too many levels of symbolic links")
            target = PurePosixPath(os.readlink(here))
            if target.is_absolute():
                done = []
            todo = [*target.parts[1 if target.is_absolute() else 0 :], *todo]
        return done

    def read_text(self, guest: str) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.resolve(guest).read_text()
        except FileNotFoundError:
            return None

    def write(self, guest: str, data: bytes, mode: int = 0o644, uid: int = -1, gid: int = -1) -> bool:
        """Write `data` atomically; True if anything changed (content, mode or owner)."""
        host = self.resolve(guest)
        try:
            info = os.lstat(host)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode):
            same_owner = (uid in (-1, info.st_uid)) and (gid in (-1, info.st_gid))
            if stat.S_IMODE(info.st_mode) == mode and same_owner and host.read_bytes() == data:
                return False
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise PathRefused(f"{guest}: is a directory")
        host.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = host.with_name(f".{host.name}.cloudinit-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if uid != -1 or gid != -1:
                    os.fchown(f.fileno(), uid, gid)
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, host)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return True

    def symlink(self, guest: str, target: str) -> bool:
        """Make `guest` a symlink to `target` (replacing a file there); True if it changed."""
        host = self.resolve(guest)
        with contextlib.suppress(OSError):
            if os.readlink(host) == target:
                return False
        host.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = host.with_name(f".{host.name}.cloudinit-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, host)
        return True

    def remove_link_to(self, guest: str, target: str) -> bool:
        """Remove `guest` if it is a symlink to `target`; True if it was."""
        host = self.resolve(guest)
        try:
            if os.readlink(host) != target:
                return False
        except OSError:
            return False
        os.unlink(host)
        return True
