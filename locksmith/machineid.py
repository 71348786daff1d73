"""This host's identity in the semaphore: the contents of /etc/machine-id, as CoreOS used it."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_MACHINE_ID_PATH = Path("/etc/machine-id")

_MACHINE_ID = re.compile(r"[0-9a-f]{32}")
# A machine-id file is 33 bytes; read no more than this of whatever the path names (/dev/zero …).
_READ_LIMIT = 4096


class MachineIdError(Exception):
    """The machine id file is missing, unreadable or not a machine id; the message names the file."""


def read_machine_id(path: str | Path = DEFAULT_MACHINE_ID_PATH) -> str:
    """Return the 32 lowercase hex characters of the machine id file at `path`."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(_READ_LIMIT)
    except FileNotFoundError:
        raise MachineIdError(
            f"cannot read machine id: {path} does not exist (create it with systemd-machine-id-setup, "
            "or pass the id explicitly)"
        ) from None
    except OSError as exc:
        raise MachineIdError(f"cannot read machine id from {path}: {exc.strerror or exc}") from None
    text = raw.decode("ascii", errors="replace").strip()
    if not _MACHINE_ID.fullmatch(text):
        shown = text if len(text) <= 40 else text[:37] + "..."  # and !r escapes what is not printable
        raise MachineIdError(
            f"{path} does not hold a machine id (expected 32 lowercase hex characters, got {shown!r}); "
            "regenerate it with systemd-machine-id-setup"
        )
    return text
