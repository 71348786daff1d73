"""GUID partition tables in pure Python: read both copies, check every CRC, rewrite attributes.

Only 512-byte logical sectors are supported (what image files and virtual disks use). The protective
MBR is never touched. Reads are strict: a primary and a backup copy that do not both check out — or that
disagree — raise `GptError`, because an update engine must never write to a disk it cannot fully parse.
"""

from __future__ import annotations

import fcntl
import os
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SECTOR_SIZE = 512
SIGNATURE = b"EFI PART"
REVISION = 0x00010000
HEADER_SIZE = 92
# Header fields after the signature, little endian (UEFI spec 2.10, table 5-5).
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")
# Bounds that keep a hostile header from making us allocate or read absurd amounts.
MAX_ENTRIES = 1024
MAX_ENTRY_SIZE = 4096


class GptError(Exception):
    """The partition table is missing, corrupt, or cannot be written; the message is one line."""


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based index in the entry array, as sgdisk and the kernel number partitions
    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int
    attributes: int  # all 64 bits
    name: str

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR_SIZE

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR_SIZE


@dataclass(frozen=True)
class Gpt:
    disk_guid: uuid.UUID
    first_usable_lba: int
    last_usable_lba: int
    primary_header_lba: int
    backup_header_lba: int
    primary_entries_lba: int
    backup_entries_lba: int
    num_entries: int
    entry_size: int
    partitions: tuple[Partition, ...]  # only used entries (non-zero type GUID), by number

    def partition(self, number: int) -> Partition:
        for part in self.partitions:
            if part.number == number:
                return part
        raise GptError(f"partition {number} does not exist on this disk")


@dataclass(frozen=True)
class _Header:
    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: bytes
    entries_lba: int
    num_entries: int
    entry_size: int
    entries_crc: int
    header_size: int
    raw: bytes  # the whole sector, so fields beyond 92 bytes survive a rewrite


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _device_size(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_END)


def _pread_exact(fd: int, length: int, offset: int, what: str) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise GptError(f"{what} lies beyond the end of the disk (truncated image?)")
    return data


def _parse_header(sector: bytes, lba: int, which: str) -> _Header:
    (sig, revision, header_size, header_crc, _reserved, my_lba, alt_lba, first, last, disk_guid, entries_lba, n, esz,
     entries_crc) = _HEADER.unpack_from(sector)  # fmt: skip
    if sig != SIGNATURE:
        raise GptError(f"{which} GPT header at LBA {lba} has no 'EFI PART' signature (not a GPT disk?)")
    if revision >> 16 != 1:
        raise GptError(f"{which} GPT header has unsupported revision {revision:#010x}")
    if not HEADER_SIZE <= header_size <= SECTOR_SIZE:
        raise GptError(f"{which} GPT header size {header_size} is out of range")
    check = bytearray(sector[:header_size])
    check[16:20] = b"\0\0\0\0"
    if _crc(bytes(check)) != header_crc:
        raise GptError(f"{which} GPT header CRC32 mismatch; repair with 'sgdisk -v' / 'gdisk'")
    if my_lba != lba:
        raise GptError(f"{which} GPT header claims to be at LBA {my_lba}, found at LBA {lba}")
    if not 1 <= n <= MAX_ENTRIES or esz < _ENTRY.size or esz > MAX_ENTRY_SIZE or esz % 8:
        raise GptError(f"{which} GPT header has an implausible entry array ({n} entries of {esz} bytes)")
    if first > last:
        raise GptError(f"{which} GPT header has first usable LBA {first} after last usable LBA {last}")
    return _Header(my_lba, alt_lba, first, last, disk_guid, entries_lba, n, esz, entries_crc, header_size, sector)


def _read_entries(fd: int, header: _Header, disk_sectors: int, which: str) -> bytes:
    length = header.num_entries * header.entry_size
    end_lba = header.entries_lba + (length + SECTOR_SIZE - 1) // SECTOR_SIZE
    if header.entries_lba < 2 or end_lba > disk_sectors:
        raise GptError(f"{which} GPT entry array at LBA {header.entries_lba} lies outside the disk")
    data = _pread_exact(fd, length, header.entries_lba * SECTOR_SIZE, f"{which} GPT entry array")
    if _crc(data) != header.entries_crc:
        raise GptError(f"{which} GPT partition entries CRC32 mismatch; repair with 'sgdisk -v' / 'gdisk'")
    return data


def _parse_entries(data: bytes, header: _Header, disk_sectors: int) -> tuple[Partition, ...]:
    parts = []
    for index in range(header.num_entries):
        type_guid, unique, first, last, attrs, raw_name = _ENTRY.unpack_from(data, index * header.entry_size)
        if type_guid == bytes(16):
            continue
        number = index + 1
        if first > last or last >= disk_sectors:
            raise GptError(f"partition {number} spans LBA {first}..{last}, outside a {disk_sectors}-sector disk")
        try:
            name = raw_name.decode("utf-16-le").split("\0", 1)[0]
        except UnicodeDecodeError:
            raise GptError(f"partition {number} has a name that is not valid UTF-16") from None
        parts.append(
            Partition(number, uuid.UUID(bytes_le=type_guid), uuid.UUID(bytes_le=unique), first, last, attrs, name)
        )
    return tuple(parts)


@dataclass(frozen=True)
class _Both:
    primary: _Header
    backup: _Header
    entries: bytes
    disk_sectors: int


def _read_both(fd: int) -> _Both:
    size = _device_size(fd)
    if size % SECTOR_SIZE or size < 4 * SECTOR_SIZE:
        raise GptError(f"disk size {size} bytes is not a whole number of 512-byte sectors (or is too small)")
    sectors = size // SECTOR_SIZE
    primary = _parse_header(_pread_exact(fd, SECTOR_SIZE, SECTOR_SIZE, "primary GPT header"), 1, "primary")
    if primary.alternate_lba >= sectors or primary.alternate_lba < 2:
        raise GptError(f"primary GPT header points at a backup at LBA {primary.alternate_lba}, outside the disk")
    backup_lba = primary.alternate_lba
    backup_sector = _pread_exact(fd, SECTOR_SIZE, backup_lba * SECTOR_SIZE, "backup GPT header")
    backup = _parse_header(backup_sector, backup_lba, "backup")
    entries = _read_entries(fd, primary, sectors, "primary")
    backup_entries = _read_entries(fd, backup, sectors, "backup")
    if backup.alternate_lba != 1:
        raise GptError(f"backup GPT header points at LBA {backup.alternate_lba} instead of 1 for the primary")
    same = (
        primary.disk_guid == backup.disk_guid
        and primary.first_usable_lba == backup.first_usable_lba
        and primary.last_usable_lba == backup.last_usable_lba
        and primary.num_entries == backup.num_entries
        and primary.entry_size == backup.entry_size
        and entries == backup_entries
    )
    if not same:
        raise GptError("primary and backup GPT disagree; repair with 'sgdisk -v' / 'gdisk' before updating")
    if primary.last_usable_lba >= sectors:
        raise GptError(f"GPT last usable LBA {primary.last_usable_lba} is beyond the disk's {sectors} sectors")
    return _Both(primary, backup, entries, sectors)


def _to_gpt(both: _Both) -> Gpt:
    p, b = both.primary, both.backup
    return Gpt(
        disk_guid=uuid.UUID(bytes_le=p.disk_guid),
        first_usable_lba=p.first_usable_lba,
        last_usable_lba=p.last_usable_lba,
        primary_header_lba=p.my_lba,
        backup_header_lba=b.my_lba,
        primary_entries_lba=p.entries_lba,
        backup_entries_lba=b.entries_lba,
        num_entries=p.num_entries,
        entry_size=p.entry_size,
        partitions=_parse_entries(both.entries, p, both.disk_sectors),
    )


def _open(path: Path | str, writable: bool) -> int:
    try:
        return os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
    except OSError as exc:
        raise GptError(f"cannot open disk {path}: {exc.strerror}") from None


@contextmanager
def _locked(path: Path | str, writable: bool) -> Iterator[int]:
    """Open the disk and hold an advisory lock, so the bootloader and the engine never interleave writes."""
    fd = _open(path, writable)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if writable else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)


def read_gpt(path: Path | str) -> Gpt:
    """Parse and cross-check both GPT copies of a disk or disk image."""
    with _locked(path, writable=False) as fd:
        try:
            return _to_gpt(_read_both(fd))
        except OSError as exc:
            raise GptError(f"cannot read disk {path}: {exc.strerror}") from None


def _header_sector(header: _Header, entries_crc: int) -> bytes:
    sector = bytearray(header.raw)
    struct.pack_into("<I", sector, 88, entries_crc)
    sector[16:20] = b"\0\0\0\0"
    struct.pack_into("<I", sector, 16, _crc(bytes(sector[: header.header_size])))
    return bytes(sector)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def update_attributes(path: Path | str, compute: Callable[[Gpt], Mapping[int, int]]) -> Gpt:
    """Read the GPT, let `compute` choose new attributes {partition number: 64-bit value}, write both copies.

    The read and the write happen under one exclusive lock. The backup copy is written and synced first,
    then the primary: if we die in between, the primary still checks out and a repair tool restores the
    backup from it. Returns the table as written."""
    with _locked(path, writable=True) as fd:
        try:
            both = _read_both(fd)
            gpt = _to_gpt(both)
            changes = compute(gpt)
            if not changes:
                return gpt
            entries = bytearray(both.entries)
            for number, attributes in changes.items():
                gpt.partition(number)  # must exist and be in use
                if not 0 <= attributes < 1 << 64:
                    raise GptError(f"attributes {attributes:#x} for partition {number} do not fit in 64 bits")
                struct.pack_into("<Q", entries, (number - 1) * both.primary.entry_size + 48, attributes)
            new_entries = bytes(entries)
            entries_crc = _crc(new_entries)
            for header in (both.backup, both.primary):
                _pwrite_all(fd, new_entries, header.entries_lba * SECTOR_SIZE)
                _pwrite_all(fd, _header_sector(header, entries_crc), header.my_lba * SECTOR_SIZE)
                os.fsync(fd)
            return _to_gpt(_Both(both.primary, both.backup, new_entries, both.disk_sectors))
        except OSError as exc:
            raise GptError(f"cannot write the GPT of {path}: {exc.strerror}") from None


def write_partition_attributes(path: Path | str, number: int, attributes: int) -> Gpt:
    """Set all 64 attribute bits of one partition in both GPT copies."""
    return update_attributes(path, lambda _gpt: {number: attributes})
