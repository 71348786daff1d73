"""What every section applier gets: the target root, the command runner and the run's options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from locksmith.cloudconfig.rootfs import Root
from locksmith.cloudconfig.runner import Runner

DEFAULT_WORKSPACE = "/var/lib/coreos-cloudinit"
DEFAULT_SSH_KEY_NAME = "coreos-cloudinit"


class SectionFailed(RuntimeError):
    """A section could not be applied; str() is one line naming what and why (never a secret)."""


@dataclass
class Context:
    root: Root
    runner: Runner
    workspace: str = DEFAULT_WORKSPACE
    ssh_key_name: str = DEFAULT_SSH_KEY_NAME
    say: Callable[[str], None] = print
    # Filled from the datasource: hostname and SSH keys the metadata gave.
    metadata_hostname: str | None = None
    metadata_keys: list[str] = field(default_factory=list)

    def systemctl(self, *args: str) -> None:
        """A systemctl call acting on the running system (skipped into a --root tree), waited for."""
        self.runner.run(["systemctl", *args], live=True)

    def unit_job(self, command: str, unit: str) -> None:
        """Start, stop, restart … a unit. At boot the job is queued, not waited for: update-engine,
        locksmithd and etcd are ordered after cloud-config's boot units, so waiting for their job would
        wait for the very run that is waiting (a deadlock until the timeout). Run by hand later, the job is
        waited for and its failure reported."""
        queued = ("--no-block",) if self.runner.booting() else ()
        self.runner.run(["systemctl", *queued, command, unit], live=True)
