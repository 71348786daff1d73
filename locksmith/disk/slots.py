"""The A/B USR slots: gptprio attributes, which slot is booted, and the bootloader's choice.

Attribute bits as ChromeOS/CoreOS gptprio: priority = 4 bits at 48, tries = 4 bits at 52, successful = bit 56.
All other attribute bits are preserved on every write. As in CoreOS's GRUB `gptprio.next`, a slot with
priority 0 is never booted, whatever its other bits say.
"""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from locksmith.disk.gpt import Gpt, Partition, update_attributes
from locksmith.disk.gpt import read_gpt as _read_gpt
from locksmith.disk.layout import USR_TYPE

PRIORITY_SHIFT, TRIES_SHIFT, SUCCESSFUL_SHIFT = 48, 52, 56
MAX_PRIORITY = MAX_TRIES = 15
_GPTPRIO_MASK = (0xF << PRIORITY_SHIFT) | (0xF << TRIES_SHIFT) | (1 << SUCCESSFUL_SHIFT)
SLOT_NAMES = ("USR-A", "USR-B")
_USR_TYPE = uuid.UUID(USR_TYPE)


class SlotError(Exception):
    """The slots cannot be read, identified or chosen; the message is one line."""


@dataclass(frozen=True)
class Slot:
    name: str
    number: int
    partuuid: str  # lower case, as in /dev/disk/by-partuuid and usr=PARTUUID=
    offset: int  # bytes from the start of the disk
    size: int  # bytes
    priority: int
    tries: int
    successful: bool

    @property
    def bootable(self) -> bool:
        return self.priority > 0 and (self.tries > 0 or self.successful)


def decode_attributes(attributes: int) -> tuple[int, int, bool]:
    """(priority, tries, successful) from 64 GPT attribute bits."""
    return (
        (attributes >> PRIORITY_SHIFT) & 0xF,
        (attributes >> TRIES_SHIFT) & 0xF,
        bool((attributes >> SUCCESSFUL_SHIFT) & 1),
    )


def encode_attributes(attributes: int, priority: int, tries: int, successful: bool) -> int:
    """Replace the gptprio fields of `attributes`, keeping every other bit."""
    if not (0 <= priority <= MAX_PRIORITY and 0 <= tries <= MAX_TRIES):
        raise SlotError(f"priority {priority} / tries {tries} out of range 0..15")
    return (
        (attributes & ~_GPTPRIO_MASK)
        | (priority << PRIORITY_SHIFT)
        | (tries << TRIES_SHIFT)
        | (int(successful) << SUCCESSFUL_SHIFT)
    )


def slot_from_partition(part: Partition) -> Slot:
    priority, tries, successful = decode_attributes(part.attributes)
    return Slot(part.name, part.number, str(part.unique_guid), part.offset, part.size, priority, tries, successful)


def _usr_partitions(gpt: Gpt) -> list[Partition]:
    return [p for p in gpt.partitions if p.type_guid == _USR_TYPE]


def _ab(gpt: Gpt, disk: Path | str) -> tuple[Partition, Partition]:
    usr = {p.name: p for p in _usr_partitions(gpt)}
    if not all(name in usr for name in SLOT_NAMES):
        found = ", ".join(sorted(usr)) or "none"
        raise SlotError(f"{disk} has no USR-A and USR-B partitions of the CoreOS usr type (found: {found})")
    return usr["USR-A"], usr["USR-B"]


def read_slots(disk: Path | str) -> tuple[Slot, Slot]:
    """USR-A and USR-B as they are on disk now."""
    a, b = _ab(_read_gpt(disk), disk)
    return slot_from_partition(a), slot_from_partition(b)


def _other(slots: tuple[Slot, Slot], slot: Slot) -> Slot:
    for candidate in slots:
        if candidate.number != slot.number:
            return candidate
    raise SlotError(f"slot {slot.name} is not one of the disk's A/B slots")


def _current(slots: tuple[Slot, Slot], slot: Slot, disk: Path | str) -> Slot:
    """The on-disk state of `slot`, refusing a Slot object that belongs to another disk."""
    for candidate in slots:
        if candidate.number == slot.number:
            if candidate.partuuid != slot.partuuid:
                raise SlotError(f"slot {slot.name} ({slot.partuuid}) is not on {disk}; re-read the slots")
            return candidate
    raise SlotError(f"slot {slot.name} (partition {slot.number}) is not one of {disk}'s A/B slots")


# ---- which slot is booted -------------------------------------------------------------------------------

_CMDLINE_USR = re.compile(r"(?:^|\s)(?:mount\.)?usr=PARTUUID=([0-9A-Fa-f-]{36})(?:\s|$)")


def boot_record_path(disk: Path | str) -> Path:
    """Where the bootloader records its choice for a disk image file: `<disk>.boot` beside it."""
    disk = Path(disk)
    return disk.with_name(disk.name + ".boot")


def write_boot_record(disk: Path | str, slot: Slot, path: Path | None = None) -> Path:
    """Record, for an image file, which slot 'was booted' (the image-file stand-in for the kernel cmdline)."""
    path = path or boot_record_path(disk)
    record = {
        "slot": slot.name,
        "number": slot.number,
        "partuuid": slot.partuuid,
        "booted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _is_block_device(disk: Path | str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(disk).st_mode)
    except OSError as exc:
        raise SlotError(f"cannot stat disk {disk}: {exc.strerror}") from None


def partuuid_from_cmdline(cmdline: str) -> str | None:
    """The USR partition UUID from a kernel command line (`usr=PARTUUID=` or `mount.usr=PARTUUID=`)."""
    match = _CMDLINE_USR.search(cmdline)
    return match.group(1).lower() if match else None


def _booted_partuuid(disk: Path | str, boot_record: Path | None, cmdline: Path) -> str:
    if _is_block_device(disk):
        try:
            text = cmdline.read_text()
        except OSError as exc:
            raise SlotError(f"cannot read kernel command line {cmdline}: {exc.strerror}") from None
        partuuid = partuuid_from_cmdline(text)
        if partuuid is None:
            raise SlotError(f"{cmdline} has no usr=PARTUUID=… or mount.usr=PARTUUID=…; cannot tell the booted slot")
        return partuuid
    record_path = boot_record or boot_record_path(disk)
    try:
        record = json.loads(record_path.read_text())
        partuuid = record["partuuid"]
        if not isinstance(partuuid, str):
            raise TypeError
        return partuuid.lower()
    except FileNotFoundError:
        raise SlotError(
            f"no boot record {record_path}; run 'locksmith-bootloader choose --disk {disk}' to 'boot' the image"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        msg = f"boot record {record_path} is not JSON with a 'partuuid'; re-run locksmith-bootloader choose"
        raise SlotError(msg) from None


def booted_disk(cmdline: Path = Path("/proc/cmdline"), dev: Path = Path("/dev"), sys: Path = Path("/sys")) -> Path:
    """On a booted host: the whole disk holding the USR partition named on the kernel command line."""
    try:
        partuuid = partuuid_from_cmdline(cmdline.read_text())
    except OSError as exc:
        raise SlotError(f"cannot read kernel command line {cmdline}: {exc.strerror}") from None
    if partuuid is None:
        raise SlotError(f"{cmdline} names no USR partition (mount.usr=PARTUUID=…); give the disk with --disk")
    link = dev / "disk/by-partuuid" / partuuid
    # sysfs: /sys/class/block/<partition> is a symlink into the disk's own folder.
    part = (sys / "class/block" / link.resolve().name).resolve()
    disk = dev / part.parent.name
    if not (part / "partition").is_file() or not _is_block_device(disk):
        raise SlotError(f"cannot find the disk holding USR partition {partuuid}; give the disk with --disk")
    return disk


def booted_slot(disk: Path | str, boot_record: Path | None = None, cmdline: Path = Path("/proc/cmdline")) -> Slot:
    """The slot the running system booted from.

    Block device: `usr=PARTUUID=` / `mount.usr=PARTUUID=` on the kernel command line. Image file: the JSON
    boot record the bootloader wrote (`<disk>.boot` unless `boot_record` is given)."""
    partuuid = _booted_partuuid(disk, boot_record, cmdline)
    for slot in read_slots(disk):
        if slot.partuuid == partuuid:
            return slot
    raise SlotError(f"booted partition {partuuid} is neither USR-A nor USR-B of {disk}")


def inactive_slot(disk: Path | str, boot_record: Path | None = None, cmdline: Path = Path("/proc/cmdline")) -> Slot:
    """The A/B slot we did not boot from: the only one an update may write."""
    booted = booted_slot(disk, boot_record, cmdline)
    return _other(read_slots(disk), booted)


# ---- attribute changes ---------------------------------------------------------------------------------


_Fields = tuple[int, int, bool]  # priority, tries, successful


def _set(disk: Path | str, slot: Slot, change: Callable[[Slot, Slot], dict[int, _Fields]]) -> Slot:
    """Apply change(current, other) -> {number: (priority, tries, successful)} under the GPT lock."""

    def compute(gpt: Gpt) -> dict[int, int]:
        a, b = _ab(gpt, disk)
        slots = (slot_from_partition(a), slot_from_partition(b))
        current = _current(slots, slot, disk)
        wanted = change(current, _other(slots, current))
        parts = {a.number: a, b.number: b}
        return {n: encode_attributes(parts[n].attributes, *fields) for n, fields in wanted.items()}

    gpt = update_attributes(disk, compute)
    _mirror_for_grub(disk)
    return slot_from_partition(gpt.partition(slot.number))


def _mirror_for_grub(disk: Path | str) -> None:
    """On a booted host whose GRUB reads the slots from an environment block, keep it equal to the GPT.

    Image files (tests, the process demo) have no such block: their 'bootloader' reads the GPT itself."""
    from locksmith.disk import grubenv  # grubenv builds on this module's types

    if _is_block_device(disk) and grubenv.HOST_ENV.is_file():
        grubenv.mirror(disk, grubenv.HOST_ENV)


def mark_unbootable(disk: Path | str, slot: Slot) -> Slot:
    """priority 0, tries 0, successful 0 — done before a single byte is written into the slot."""
    return _set(disk, slot, lambda cur, _other: {cur.number: (0, 0, False)})


def mark_installed(disk: Path | str, slot: Slot) -> Slot:
    """A freshly installed slot: one try, not yet successful, and the highest priority (max 15)."""

    def change(cur: Slot, other: Slot) -> dict[int, _Fields]:
        priority = min(other.priority + 1, MAX_PRIORITY)
        wanted = {cur.number: (priority, 1, False)}
        if other.priority >= priority:
            wanted[other.number] = (priority - 1, other.tries, other.successful)
        return wanted

    return _set(disk, slot, change)


def mark_successful(disk: Path | str, slot: Slot) -> Slot:
    """After a good boot: successful=1, tries=0 — the slot now sticks."""
    return _set(disk, slot, lambda cur, _other: {cur.number: (cur.priority, 0, True)})


def choose_boot(disk: Path | str) -> Slot:
    """The bootloader's choice (CoreOS GRUB gptprio.next), consuming one try if the slot is on trial.

    Among USR-type partitions with priority > 0 and (tries > 0 or successful), the highest priority wins;
    a tie goes to the lower partition number. A chosen slot with tries left has them decremented on disk."""
    chosen: list[Slot] = []

    def compute(gpt: Gpt) -> dict[int, int]:
        candidates = [slot_from_partition(p) for p in _usr_partitions(gpt)]
        bootable = [s for s in candidates if s.bootable]
        if not bootable:
            raise SlotError(f"no bootable USR partition on {disk}: every slot has priority 0 or no tries left")
        best = max(bootable, key=lambda s: (s.priority, -s.number))
        chosen.append(best)
        if best.tries == 0:
            return {}
        part = gpt.partition(best.number)
        return {best.number: encode_attributes(part.attributes, best.priority, best.tries - 1, best.successful)}

    gpt = update_attributes(disk, compute)
    return slot_from_partition(gpt.partition(chosen[0].number))
