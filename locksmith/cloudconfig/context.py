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
        """A systemctl call acting on the running system (skipped into a --root tree)."""
        self.runner.run(["systemctl", *args], live=True)
