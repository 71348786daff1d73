"""SSH into a booted guest from the host: a fresh key pair for its cloud-config, a free loopback port for
qemu's forward, and commands run with bounded retries while the guest's sshd is still coming up."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The guest's host key is new on every boot of a fresh image: nothing to pin it against.
_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes")
_OPTIONS += ("-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR")
SSH_FAILED = 255  # ssh's own failure (no connection, refused key), as opposed to the command's status


@dataclass(frozen=True)
class GuestSsh:
    key: Path
    port: int
    user: str
    host: str = "127.0.0.1"  # a qemu forward on loopback, or a VM's own address inside a fleet's namespace

    @property
    def public_key(self) -> str:
        return self.key.with_name(self.key.name + ".pub").read_text().strip()

    def run(self, command: str, seconds: float = 300) -> subprocess.CompletedProcess[str]:
        """`command` as the user on host:port, asked again (within `seconds`) while ssh cannot connect."""
        argv = ["ssh", *_OPTIONS, "-i", str(self.key), "-p", str(self.port), f"{self.user}@{self.host}", command]
        deadline = time.monotonic() + seconds
        while True:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds, check=False)
            if done.returncode != SSH_FAILED or time.monotonic() > deadline:
                return done
            time.sleep(3)  # sshd not listening yet: ask again


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_guest_ssh(directory: Path, user: str) -> GuestSsh:
    """A new ed25519 key pair in `directory` (no passphrase) and a free port for the guest's SSH forward."""
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "locksmith-test", "-f", str(key)], check=True)
    return GuestSsh(key, free_loopback_port(), user)
