"""The coordinator file the update engine reads: which agent coordinates reboots, and in what state.

    NAME=locksmithd
    STRATEGY=etcd-lock
    STATE=running

Written atomically (temp file in the same directory, fsync, rename, fsync of the directory), so a
reader never sees a half-written file and a crash leaves either the old or the new content.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Final, Literal, get_args

DEFAULT_PATH: Final = Path("/run/update-engine/coordinator.conf")
COORDINATOR_NAME: Final = "locksmithd"

CoordinatorState = Literal["starting", "running", "reboot-planned", "rebooting"]
COORDINATOR_STATES: Final[tuple[str, ...]] = get_args(CoordinatorState)


class CoordinatorFileError(Exception):
    """The coordinator file could not be written; str() is one line naming the path."""


def render(strategy: str, state: CoordinatorState) -> str:
    """The file's content. Raises ValueError for an unknown state or a strategy that would break the format."""
    if state not in COORDINATOR_STATES:
        raise ValueError(f"coordinator state {state!r} is not one of {', '.join(COORDINATOR_STATES)}")
    if not strategy or any(c in strategy for c in "\n\r\0=") or strategy != strategy.strip():
        raise ValueError(f"strategy name {strategy!r} cannot be written to the coordinator file")
    return f"NAME={COORDINATOR_NAME}\nSTRATEGY={strategy}\nSTATE={state}\n"


def write_coordinator(strategy: str, state: CoordinatorState, path: Path = DEFAULT_PATH) -> None:
    """Atomically replace `path` (creating its directory, mode 0755) with the coordinator content."""
    content = render(strategy, state).encode()
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the update engine and admins read it
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CoordinatorFileError(
            f"cannot write the coordinator file {path}: {exc.strerror or exc}"
            " (set its path in the config, or make the directory writable)"
        ) from None


def read_coordinator(path: Path = DEFAULT_PATH) -> dict[str, str]:
    """The KEY=value pairs of `path` ({} if it does not exist)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}
