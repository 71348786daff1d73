"""The coordinator file: which agent coordinates reboots, and in what state — the one channel
through which the agent's state is published, and `read_agent_state`, its one reader.

    NAME=locksmithd
    STRATEGY=etcd-lock
    STATE=reboot-planned            the Go agent's four words, for the update engine and old tools
    LOCKSMITHD_STATE=acquiring      ours: the machine's state (locksmith.agent.states.State)
    LOCKSMITHD_SINCE=1733112000     Unix time the agent entered that state
    LOCKSMITHD_PID=4242             which process wrote it (a reader can tell a stale file)
    LOCKSMITHD_LOCK_KEPT=health-gate  only while a lock is kept on purpose after boot

The Go-era readers take KEY=value lines and look only at the first three keys, so the extra lines
are harmless to them. Written atomically (a temporary file in the same directory, renamed over the
old one), so a reader never sees a half-written file; on a disk-backed file system the new content
is fsynced before the rename, so a crash leaves either the old or the new content. Nothing more is
synced: on tmpfs (/run on every systemd host, the default path) a crash leaves no file at all, and
the agent rewrites the file at every start, so the directory entry need not outlive a power cut.
Each state change of the agent is one write on the path from NEED_REBOOT to the reboot call, which
is why it costs a rename and not three fsyncs. `CoordinatorFile` skips the write when the content
would not change.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

DEFAULT_PATH: Final = Path("/run/update-engine/coordinator.conf")
COORDINATOR_NAME: Final = "locksmithd"
#: File systems whose content does not outlive the machine: an fsync there buys nothing.
VOLATILE_FILE_SYSTEMS: Final = frozenset({"tmpfs", "ramfs"})

CoordinatorState = Literal["starting", "running", "reboot-planned", "rebooting"]
COORDINATOR_STATES: Final[tuple[str, ...]] = get_args(CoordinatorState)


class CoordinatorFileError(Exception):
    """The coordinator file could not be written; str() is one line naming the path."""


@dataclass(frozen=True, slots=True)
class AgentState:
    """What the coordinator file says. `phase` is the fine-grained state: LOCKSMITHD_STATE when
    the writer gave it, else the STATE word (a Go agent, a stand-in)."""

    name: str
    strategy: str
    state: str
    phase: str
    since: float | None = None
    pid: int | None = None
    lock_kept: str | None = None


def render(
    strategy: str,
    state: CoordinatorState,
    *,
    phase: str | None = None,
    since: float | None = None,
    pid: int | None = None,
    lock_kept: str | None = None,
) -> str:
    """The file's content. Raises ValueError for an unknown state or a value that would break the format."""
    if state not in COORDINATOR_STATES:
        raise ValueError(f"coordinator state {state!r} is not one of {', '.join(COORDINATOR_STATES)}")
    lines = [f"NAME={COORDINATOR_NAME}", f"STRATEGY={_word('strategy name', strategy)}", f"STATE={state}"]
    if phase is not None:
        lines.append(f"LOCKSMITHD_STATE={_word('agent state', phase)}")
    if since is not None:
        lines.append(f"LOCKSMITHD_SINCE={int(since)}")
    if pid is not None:
        lines.append(f"LOCKSMITHD_PID={int(pid)}")
    if lock_kept is not None:
        lines.append(f"LOCKSMITHD_LOCK_KEPT={_word('lock-kept cause', lock_kept)}")
    return "\n".join(lines) + "\n"


def _word(what: str, value: str) -> str:
    if not value or any(c in value for c in "\n\r\0=") or value != value.strip():
        raise ValueError(f"{what} {value!r} cannot be written to the coordinator file")
    return value


def write_coordinator(
    strategy: str,
    state: CoordinatorState,
    path: Path = DEFAULT_PATH,
) -> None:
    """Atomically replace `path` (creating its directory, mode 0755) with the Go agent's three lines."""
    _replace(Path(path), render(strategy, state).encode())


class CoordinatorFile:
    """The agent's writer: remembers what it last wrote and does not rewrite identical content
    (the write is on the signal → reboot path, and fsyncs)."""

    def __init__(self, path: Path, strategy: str) -> None:
        self.path = Path(path)
        self.strategy = strategy
        self._written: bytes | None = None
        self._sync: bool | None = None  # whether its file system keeps data across a crash; asked once

    def publish(self, state: CoordinatorState, *, phase: str, since: float, lock_kept: str | None = None) -> bool:
        """Write if the content changed; True if it was written. CoordinatorFileError on failure."""
        content = render(self.strategy, state, phase=phase, since=since, pid=os.getpid(), lock_kept=lock_kept).encode()
        if content == self._written:
            return False
        self._sync = _replace(self.path, content, self._sync)
        self._written = content
        return True


_TEMP_NAMES = itertools.count()


def _replace(path: Path, content: bytes, sync: bool | None = None) -> bool:
    """Atomically replace `path` with `content`; fsync first unless its file system is volatile (`sync`:
    what an earlier call found, None to find out). Returns whether it synced."""
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if sync is None:
            sync = not on_volatile_file_system(path.parent)
        # O_EXCL on a name no other writer uses (our pid, a counter): the stdlib's tempfile module
        # would do the same at the cost of ~0.8 MiB resident in the agent for its whole life.
        tmp = path.parent / f".{path.name}.{os.getpid()}.{next(_TEMP_NAMES)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            try:
                view = memoryview(content)
                while view:  # short only on a full disk, where the next write raises ENOSPC
                    view = view[os.write(fd, view) :]
                if sync:
                    os.fsync(fd)
                os.fchmod(fd, 0o644)  # whatever the umask: the update engine and admins read it
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise CoordinatorFileError(
            f"cannot write the coordinator file {path}: {exc.strerror or exc}"
            " (set its path in the config, or make the directory writable)"
        ) from None
    return sync


def on_volatile_file_system(directory: Path) -> bool:
    """Whether `directory` is on tmpfs or ramfs (by its device in /proc/self/mountinfo); False when unsure."""
    try:
        dev = os.stat(directory).st_dev
        wanted = f"{os.major(dev)}:{os.minor(dev)}"
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                # id parent major:minor root mountpoint options [optional…] - fstype source options
                if len(fields) > 2 and fields[2] == wanted and "-" in fields[3:-1]:
                    return fields[fields.index("-", 3) + 1] in VOLATILE_FILE_SYSTEMS
    except OSError:
        pass
    return False


def read_coordinator(path: Path = DEFAULT_PATH) -> dict[str, str]:
    """The KEY=value pairs of `path` ({} if it does not exist)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def read_agent_state(path: Path = DEFAULT_PATH) -> AgentState | None:
    """The agent's published state; None if there is no file or no STATE= in it (not written yet)."""
    try:
        pairs = read_coordinator(path)
    except OSError:
        return None
    state = pairs.get("STATE")
    if not state:
        return None
    return AgentState(
        name=pairs.get("NAME", ""),
        strategy=pairs.get("STRATEGY", ""),
        state=state,
        phase=pairs.get("LOCKSMITHD_STATE") or state,
        since=_number(pairs.get("LOCKSMITHD_SINCE"), float),
        pid=int(pid) if (pid := _number(pairs.get("LOCKSMITHD_PID"), int)) is not None else None,
        lock_kept=pairs.get("LOCKSMITHD_LOCK_KEPT") or None,
    )


def _number(text: str | None, kind: type[int] | type[float]) -> float | None:
    try:
        return kind(text) if text else None
    except ValueError:
        return None
