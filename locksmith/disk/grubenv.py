"""The GRUB environment block that mirrors the GPT slot attributes, and folding GRUB's spent tries back.

Upstream GRUB cannot read the GPT priority/tries/successful bits, so the image's GRUB decides from a copy
of them in an environment block on the ESP (RAUC's documented pattern). The GPT stays the record: every
attribute write on a booted host rewrites the block from it (`mirror`), and early in each boot
`fold_spent_tries` copies the try GRUB consumed (it can only save a lower `tries`) back into the GPT.
"""

from __future__ import annotations

import os
from pathlib import Path

from locksmith.disk.gpt import Gpt, update_attributes
from locksmith.disk.slots import Slot, SlotError, encode_attributes, read_slots, slot_from_partition

ENV_PATH = "/EFI/locksmith/grubenv"  # on the ESP
HOST_ENV = Path("/boot") / ENV_PATH.lstrip("/")  # the ESP is mounted at /boot, as on CoreOS
ENV_SIZE = 1024
_HEADER = "# GRUB Environment Block\n"
_MAX_VALUE = 64  # our values are UUIDs and small numbers; anything longer is not ours


def encode_env(values: dict[str, str]) -> bytes:
    """A GRUB environment block (grub-editenv's format): header, key=value lines, '#' padding to 1 KiB."""
    body = _HEADER + "".join(f"{k}={v}\n" for k, v in values.items())
    data = body.encode()
    if len(data) > ENV_SIZE:
        raise ValueError("GRUB environment block overflows 1024 bytes")
    return data + b"#" * (ENV_SIZE - len(data))


def decode_env(data: bytes) -> dict[str, str]:
    """The block's values; ValueError if it is not an environment block (never trusted beyond that)."""
    text = data[:ENV_SIZE].decode(errors="replace")
    if not text.startswith(_HEADER):
        raise ValueError("not a GRUB environment block")
    values = {}
    for line in text[len(_HEADER) :].split("\n"):
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value[:_MAX_VALUE]
    return values


def slot_env(slots: tuple[Slot, Slot]) -> dict[str, str]:
    """The env block's mirror of the two slots' GPT attributes (keys usr_a_* and usr_b_*)."""
    values = {}
    for key, slot in zip(("a", "b"), slots, strict=True):
        values |= {
            f"usr_{key}_partuuid": slot.partuuid,
            f"usr_{key}_number": str(slot.number),
            f"usr_{key}_priority": str(slot.priority),
            f"usr_{key}_tries": str(slot.tries),
            f"usr_{key}_successful": str(int(slot.successful)),
        }
    return values


def write_env(env: Path, values: dict[str, str]) -> None:
    """Replace the block whole: written beside it, flushed, then renamed over it."""
    tmp = env.with_name(env.name + ".new")
    with open(tmp, "wb") as f:
        f.write(encode_env(values))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, env)


def mirror(disk: Path | str, env: Path) -> None:
    """Rewrite the environment block from the GPT (the record); SlotError names the block if it cannot."""
    try:
        write_env(env, slot_env(read_slots(disk)))
    except OSError as exc:
        raise SlotError(f"cannot rewrite the GRUB environment block {env} from the GPT: {exc.strerror}") from None


def _spent_tries(env_values: dict[str, str], slots: tuple[Slot, Slot]) -> dict[int, int]:
    """{partition number: tries left} for each slot whose mirrored tries GRUB lowered since the last mirror.

    Only a block that names the same partition with the same priority counts: GRUB never changes those,
    so a mismatch means the block is stale or foreign and is simply rewritten."""
    spent = {}
    for key, slot in zip(("a", "b"), slots, strict=True):
        same_partition = env_values.get(f"usr_{key}_partuuid") == slot.partuuid
        same_priority = env_values.get(f"usr_{key}_priority") == str(slot.priority)
        tries = env_values.get(f"usr_{key}_tries", "")
        if same_partition and same_priority and tries.isdigit() and int(tries) < slot.tries:
            spent[slot.number] = int(tries)
    return spent


def fold_spent_tries(disk: Path | str, env: Path) -> dict[int, int]:
    """Early in boot: copy the tries GRUB consumed into the GPT, then re-mirror; returns what was folded.

    A missing or unreadable block is rewritten from the GPT (the next boot then decides from the record)."""
    try:
        values = decode_env(env.read_bytes())
    except (OSError, ValueError):
        values = {}
    spent = _spent_tries(values, read_slots(disk))
    if spent:

        def compute(gpt: Gpt) -> dict[int, int]:
            changes = {}
            for number, tries in spent.items():
                part = gpt.partition(number)
                slot = slot_from_partition(part)
                if tries < slot.tries:  # re-checked under the GPT lock
                    changes[number] = encode_attributes(part.attributes, slot.priority, tries, slot.successful)
            return changes

        update_attributes(disk, compute)
    mirror(disk, env)
    return spent
