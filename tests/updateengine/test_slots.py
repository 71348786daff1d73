"""A/B slots on real sgdisk-made CoreOS disk images: attributes, boot choice, rollback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from locksmith.disk.gpt import read_gpt, write_partition_attributes
from locksmith.disk.layout import DiskError, make_coreos_disk
from locksmith.disk.slots import (
    SlotError,
    booted_slot,
    choose_boot,
    decode_attributes,
    inactive_slot,
    mark_installed,
    mark_successful,
    mark_unbootable,
    partuuid_from_cmdline,
    read_slots,
    write_boot_record,
)


def sgdisk_verify(disk: Path) -> None:
    out = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "No problems found" in out, out


def sgdisk_fields(disk: Path, number: int) -> tuple[int, int, bool]:
    out = subprocess.run(["sgdisk", f"-i={number}", str(disk)], capture_output=True, text=True, check=True).stdout
    flags = int(re.search(r"Attribute flags: ([0-9a-fA-F]+)", out).group(1), 16)  # type: ignore[union-attr]
    return decode_attributes(flags)


@pytest.fixture(scope="module")
def template_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # sgdisk sleeps a second after every write, so build once and copy per test.
    return make_coreos_disk(tmp_path_factory.mktemp("template") / "disk.img", usr_size_mib=2, small=True)


@pytest.fixture
def disk(template_disk: Path, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(template_disk, tmp_path / "disk.img"))


def test_fresh_disk_layout(disk: Path) -> None:
    a, b = read_slots(disk)
    assert (a.name, a.number, a.priority, a.tries, a.successful) == ("USR-A", 3, 1, 0, True)
    assert (b.name, b.number, b.priority, b.tries, b.successful) == ("USR-B", 4, 0, 0, False)
    assert a.size == b.size == 2 * 1024 * 1024 and a.offset + a.size <= b.offset
    names = {p.number: p.name for p in read_gpt(disk).partitions}
    assert names == {1: "EFI-SYSTEM", 2: "BIOS-BOOT", 3: "USR-A", 4: "USR-B", 6: "OEM", 7: "OEM-CONFIG", 9: "ROOT"}
    with pytest.raises(DiskError, match="already exists"):
        make_coreos_disk(disk, usr_size_mib=2, small=True)


def test_fresh_disk_boots_a_without_writing(disk: Path) -> None:
    before = disk.read_bytes()
    assert choose_boot(disk).name == "USR-A"
    assert disk.read_bytes() == before  # successful slot: no try consumed, nothing written


def test_rollback_cycle(disk: Path) -> None:
    _a, b = read_slots(disk)
    mark_unbootable(disk, b)
    installed = mark_installed(disk, b)
    assert (installed.priority, installed.tries, installed.successful) == (2, 1, False)
    sgdisk_verify(disk)
    assert sgdisk_fields(disk, 4) == (2, 1, False)

    first = choose_boot(disk)  # boots the new slot on trial, consuming its only try
    assert (first.name, first.tries) == ("USR-B", 0)
    assert sgdisk_fields(disk, 4) == (2, 0, False)
    sgdisk_verify(disk)

    second = choose_boot(disk)  # never marked successful: rolled back
    assert second.name == "USR-A"
    assert choose_boot(disk).name == "USR-A"
    assert sgdisk_fields(disk, 3) == (1, 0, True)


def test_mark_successful_makes_new_slot_stick(disk: Path) -> None:
    _, b = read_slots(disk)
    mark_installed(disk, mark_unbootable(disk, b))
    booted = choose_boot(disk)
    assert booted.name == "USR-B"
    done = mark_successful(disk, booted)
    assert (done.priority, done.tries, done.successful) == (2, 0, True)
    sgdisk_verify(disk)
    for _ in range(3):
        assert choose_boot(disk).name == "USR-B"
    # The next update goes to A and outranks B.
    a, _ = read_slots(disk)
    again = mark_installed(disk, mark_unbootable(disk, a))
    assert (again.name, again.priority) == ("USR-A", 3)
    assert choose_boot(disk).name == "USR-A"


def test_priority_capped_at_15_and_other_lowered(disk: Path) -> None:
    _a, b = read_slots(disk)
    write_partition_attributes(disk, 3, (15 << 48) | (1 << 56) | (1 << 60) | 1)
    new = mark_installed(disk, b)
    a_after, _ = read_slots(disk)
    assert new.priority == 15 and a_after.priority == 14 and a_after.successful
    # Bits outside priority/tries/successful survive.
    assert read_gpt(disk).partition(3).attributes & ((1 << 60) | 1) == (1 << 60) | 1
    sgdisk_verify(disk)


def test_no_bootable_slot_is_a_clear_error(disk: Path) -> None:
    a, _b = read_slots(disk)
    mark_unbootable(disk, a)
    with pytest.raises(SlotError, match="no bootable USR partition"):
        choose_boot(disk)
    # successful but priority 0 is not bootable either (GRUB gptprio semantics)
    write_partition_attributes(disk, 4, 1 << 56)
    with pytest.raises(SlotError, match="no bootable"):
        choose_boot(disk)


def test_booted_and_inactive_slot_from_boot_record(disk: Path, tmp_path: Path) -> None:
    with pytest.raises(SlotError, match="locksmith-bootloader choose"):
        booted_slot(disk)
    a, b = read_slots(disk)
    record = write_boot_record(disk, choose_boot(disk))
    assert record == disk.with_name("disk.img.boot")
    assert json.loads(record.read_text())["slot"] == "USR-A"
    assert booted_slot(disk) == a
    assert inactive_slot(disk) == b

    other = tmp_path / "elsewhere.json"
    write_boot_record(disk, b, other)
    assert booted_slot(disk, other).name == "USR-B"
    assert inactive_slot(disk, other).name == "USR-A"

    record.write_text("{not json")
    with pytest.raises(SlotError, match="is not JSON"):
        booted_slot(disk)
    record.write_text(json.dumps({"slot": "USR-A", "partuuid": "00000000-0000-0000-0000-000000000000"}))
    with pytest.raises(SlotError, match="neither USR-A nor USR-B"):
        booted_slot(disk)


def test_slot_from_another_disk_is_refused(disk: Path, tmp_path: Path) -> None:
    other = make_coreos_disk(tmp_path / "other.img", usr_size_mib=2, small=True)
    _, foreign_b = read_slots(other)
    before = disk.read_bytes()
    with pytest.raises(SlotError, match="not on"):
        mark_installed(disk, foreign_b)
    assert disk.read_bytes() == before


def test_kernel_cmdline_parsing() -> None:
    uuid = "7130C94A-213A-4E5A-8E26-6CCE9662F132"
    assert partuuid_from_cmdline(f"root=LABEL=ROOT usr=PARTUUID={uuid} ro") == uuid.lower()
    assert partuuid_from_cmdline(f"mount.usr=PARTUUID={uuid}\n") == uuid.lower()
    assert partuuid_from_cmdline(f"mount.usrflags=ro xusr=PARTUUID={uuid}") is None
    assert partuuid_from_cmdline("usr=/dev/sda3") is None
