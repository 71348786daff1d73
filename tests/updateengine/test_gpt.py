"""GPT reading and attribute writing, cross-checked against sgdisk on real image files."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locksmith.disk.gpt import SECTOR_SIZE, GptError, read_gpt, update_attributes, write_partition_attributes
from locksmith.disk.layout import USR_TYPE, make_coreos_disk


def sgdisk(*args: str) -> str:
    return subprocess.run(["sgdisk", *args], capture_output=True, text=True, check=True).stdout


def sgdisk_verify(disk: Path) -> str:
    out = sgdisk("-v", str(disk))
    assert "No problems found" in out, out
    return out


def sgdisk_info(disk: Path, number: int) -> dict[str, str]:
    out = sgdisk(f"--info={number}", str(disk))
    return dict(re.findall(r"^([^:\n]+): (.*)$", out, re.M))


@pytest.fixture(scope="module")
def template_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # sgdisk sleeps a second after every write, so build once and copy per test.
    return make_coreos_disk(tmp_path_factory.mktemp("template") / "disk.img", usr_size_mib=4, small=True)


@pytest.fixture
def disk(template_disk: Path, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(template_disk, tmp_path / "disk.img"))


def test_read_matches_sgdisk(disk: Path) -> None:
    gpt = read_gpt(disk)
    assert [p.number for p in gpt.partitions] == [1, 2, 3, 4, 6, 7, 9]
    assert f"Disk identifier (GUID): {str(gpt.disk_guid).upper()}" in sgdisk("-p", str(disk))
    for part in gpt.partitions:
        info = sgdisk_info(disk, part.number)
        assert info["Partition GUID code"].split()[0] == str(part.type_guid).upper()
        assert info["Partition unique GUID"] == str(part.unique_guid).upper()
        assert info["First sector"].split()[0] == str(part.first_lba)
        assert info["Last sector"].split()[0] == str(part.last_lba)
        assert int(info["Attribute flags"], 16) == part.attributes
        assert info["Partition name"] == f"'{part.name}'"
    usr_a = gpt.partition(3)
    assert (usr_a.name, str(usr_a.type_guid), usr_a.size) == ("USR-A", USR_TYPE, 4 * 1024 * 1024)
    assert usr_a.attributes == (1 << 48) | (1 << 56)


def test_write_attributes_verifies_clean_and_sgdisk_agrees(disk: Path) -> None:
    before = read_gpt(disk)
    value = (0xF << 48) | (0x3 << 52) | (1 << 60) | 1
    after = write_partition_attributes(disk, 4, value)
    sgdisk_verify(disk)
    assert int(sgdisk_info(disk, 4)["Attribute flags"], 16) == value
    assert read_gpt(disk) == after
    assert after.partition(4).attributes == value
    # Nothing else changed.
    assert [p for p in after.partitions if p.number != 4] == [p for p in before.partitions if p.number != 4]
    assert after.disk_guid == before.disk_guid


def test_update_several_partitions_in_one_write(disk: Path) -> None:
    update_attributes(disk, lambda gpt: {3: 0, 4: 1 << 56})
    sgdisk_verify(disk)
    assert int(sgdisk_info(disk, 3)["Attribute flags"], 16) == 0
    assert int(sgdisk_info(disk, 4)["Attribute flags"], 16) == 1 << 56


def test_write_to_missing_partition_changes_nothing(disk: Path) -> None:
    before = disk.read_bytes()
    with pytest.raises(GptError, match="partition 5 does not exist"):
        write_partition_attributes(disk, 5, 1)
    with pytest.raises(GptError, match="64 bits"):
        write_partition_attributes(disk, 3, 1 << 64)
    assert disk.read_bytes() == before


def _flip(disk: Path, offset: int) -> None:
    with open(disk, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_corrupt_primary_header_crc(disk: Path) -> None:
    _flip(disk, SECTOR_SIZE + 40)  # inside first usable LBA
    with pytest.raises(GptError, match="primary GPT header CRC32 mismatch"):
        read_gpt(disk)


def test_corrupt_entries_crc(disk: Path) -> None:
    _flip(disk, 2 * SECTOR_SIZE + 56)  # partition 1's name
    with pytest.raises(GptError, match="primary GPT partition entries CRC32 mismatch"):
        read_gpt(disk)


def test_corrupt_backup_is_refused_and_never_written(disk: Path) -> None:
    size = disk.stat().st_size
    _flip(disk, size - SECTOR_SIZE + 30)
    before = disk.read_bytes()
    with pytest.raises(GptError, match="backup GPT header"):
        read_gpt(disk)
    with pytest.raises(GptError):
        write_partition_attributes(disk, 3, 0)
    assert disk.read_bytes() == before


def test_copies_that_disagree_are_refused(disk: Path) -> None:
    # sgdisk rewrites both copies; patch only the backup entry array (with valid CRCs) to disagree.
    gpt = read_gpt(disk)
    data = bytearray(disk.read_bytes())
    entries_off = gpt.backup_entries_lba * SECTOR_SIZE
    entries_len = gpt.num_entries * gpt.entry_size
    struct.pack_into("<Q", data, entries_off + 2 * gpt.entry_size + 48, 0)  # partition 3 attributes
    header_off = gpt.backup_header_lba * SECTOR_SIZE
    struct.pack_into("<I", data, header_off + 88, zlib.crc32(data[entries_off : entries_off + entries_len]))
    struct.pack_into("<I", data, header_off + 16, 0)
    struct.pack_into("<I", data, header_off + 16, zlib.crc32(data[header_off : header_off + 92]))
    disk.write_bytes(bytes(data))
    with pytest.raises(GptError, match="primary and backup GPT disagree"):
        read_gpt(disk)


def test_not_a_gpt_and_missing(tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1024 * 1024))
    with pytest.raises(GptError, match="not a GPT disk"):
        read_gpt(blank)
    with pytest.raises(GptError, match="cannot open disk"):
        read_gpt(tmp_path / "nope.img")
    tiny = tmp_path / "tiny.img"
    tiny.write_bytes(b"x" * 700)
    with pytest.raises(GptError, match="512-byte sectors"):
        read_gpt(tiny)


# ---- fuzzing: whatever the bytes, read_gpt either parses or raises GptError ------------------------------


@pytest.fixture(scope="module")
def small_disk_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "small.img"
    path.write_bytes(bytes(2 * 1024 * 1024))
    sgdisk("--clear", "--new=1:0:+256K", f"--typecode=1:{USR_TYPE}", "--change-name=1:USR-A", "--new=2:0:0", str(path))
    read_gpt(path)  # the base image must parse
    return path.read_bytes()


_GPT_REGIONS = st.one_of(st.integers(0, 34 * SECTOR_SIZE - 1), st.integers(-33 * SECTOR_SIZE, -1))


def _fix_crcs(data: bytearray) -> None:
    """Recompute both headers' CRCs from whatever the (mutated) fields say, so the fuzzer gets past them."""
    for header_off in (SECTOR_SIZE, len(data) - SECTOR_SIZE):
        size = struct.unpack_from("<I", data, header_off + 12)[0]
        entries_lba, count, entry_size = struct.unpack_from("<QII", data, header_off + 72)
        start, length = entries_lba * SECTOR_SIZE, count * entry_size
        if start + length <= len(data) and length <= 1 << 20:
            struct.pack_into("<I", data, header_off + 88, zlib.crc32(data[start : start + length]))
        if 92 <= size <= SECTOR_SIZE:
            struct.pack_into("<I", data, header_off + 16, 0)
            struct.pack_into("<I", data, header_off + 16, zlib.crc32(data[header_off : header_off + size]))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(st.tuples(_GPT_REGIONS, st.integers(0, 255)), min_size=1, max_size=12),
    fix_crcs=st.booleans(),
    truncate=st.one_of(st.none(), st.integers(1, 4096)),
)
def test_fuzz_read_gpt_only_raises_gpterror(
    small_disk_bytes: bytes, mutations: list[tuple[int, int]], fix_crcs: bool, truncate: int | None
) -> None:
    data = bytearray(small_disk_bytes)
    for offset, value in mutations:
        data[offset] = value
    if fix_crcs:
        _fix_crcs(data)
    if truncate:
        del data[-truncate:]
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        try:
            gpt = read_gpt(f.name)
        except GptError as exc:
            assert "\n" not in str(exc)
            return
        for part in gpt.partitions:
            assert 0 <= part.first_lba <= part.last_lba
            assert isinstance(part.type_guid, uuid.UUID) and isinstance(part.name, str)
