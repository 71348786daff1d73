"""Commands that act on the running system (systemctl, useradd, systemd-run) go through one runner.

On the live system (`/`) they run, each with a deadline. Into a `--root` tree, commands that only edit
files there (`useradd --root`, `systemctl --root`) still run, while those that act on the running
system (start a unit, reload systemd) are recorded and skipped: the tree is not the machine we run on.
Tests pass their own runner to watch the calls (`RecordingRunner`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 90.0  # a unit's start may take a while, but cloud-init must not hang the boot


class CommandFailed(RuntimeError):
    """A command exited non-zero or timed out; str() is one line without the arguments' secrets."""


@dataclass
class Runner:
    """Runs commands. `live` is False for a --root tree: then `run(..., live=True)` commands are skipped."""

    live: bool = True
    skipped: list[tuple[str, ...]] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    #: whether systemd is still bringing the system up; asked once, on first need (None: not yet asked)
    at_boot: bool | None = None

    def booting(self) -> bool:
        """True while systemd is still starting the system (cloud-config's boot units run then)."""
        if self.at_boot is None:
            try:
                state = subprocess.run(
                    ["systemctl", "is-system-running"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                state = b""
            self.at_boot = state.decode(errors="replace").strip() in ("initializing", "starting")
        return self.at_boot

    def run(self, argv: Sequence[str], *, live: bool = False, shown: str | None = None) -> None:
        """Run `argv`. `live=True` marks a command acting on the running system. `shown` replaces the
        argv in messages when it carries a secret (a password hash)."""
        if live and not self.live:
            self.skipped.append(tuple(argv))
            return
        self._execute(tuple(argv), shown or " ".join(argv))

    def _execute(self, argv: tuple[str, ...], shown: str) -> None:
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise CommandFailed(f"{shown}: {argv[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"{shown}: no answer within {self.timeout:.0f} s") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise CommandFailed(f"{shown}: exit {done.returncode}" + (f": {detail[-1]}" if detail else ""))


@dataclass
class RecordingRunner(Runner):
    """For tests: records every command; runs only those confined to a tree by `--root` (useradd,
    systemctl enable), never one that would act on this machine."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    at_boot: bool | None = False  # never asks this machine's systemd

    def _execute(self, argv: tuple[str, ...], shown: str) -> None:
        self.calls.append(argv)
        if any(a == "--root" or a.startswith("--root=") for a in argv[1:]):
            super()._execute(argv, shown)
