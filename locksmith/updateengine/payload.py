"""Payloads: a gzip-compressed USR filesystem image plus a detached signature, streamed into a slot.

The format (release.json, the signature over the payload's SHA-256) is locksmith.protocol.release;
keys on disk are keys.py; the bounded, threaded writes into the slot are slotwriter.py.

Retry, not resume: a `PayloadInstaller` always writes the slot from its first byte. A failed, aborted or
interrupted install leaves the slot marked unbootable (it is marked so before the first byte is written);
the caller retries by creating a new installer, which re-marks the slot and starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from locksmith.disk.gpt import GptError
from locksmith.disk.slots import Slot, SlotError, mark_installed, mark_unbootable, read_slots
from locksmith.protocol import release
from locksmith.updateengine.errors import (
    BadKey,
    BadSignature,
    CorruptPayload,
    HashMismatch,
    ImageTooLarge,
    PayloadError,
    SizeMismatch,
    TargetWriteError,
)
from locksmith.updateengine.keys import load_public_key
from locksmith.updateengine.slotwriter import SlotWriter, write_error

# The installer's errors, importable from here with it.
__all__ = [
    "BadKey",
    "BadSignature",
    "CorruptPayload",
    "HashMismatch",
    "ImageTooLarge",
    "InstalledImage",
    "PayloadError",
    "PayloadInstaller",
    "SizeMismatch",
    "TargetWriteError",
    "install_file",
]

# Writes are batched to this size: large enough for sequential throughput, small enough to stay bounded.
WRITE_BATCH = 1024 * 1024
# Upper bound on what one decompression step may produce, so a gzip bomb cannot balloon memory.
INFLATE_STEP = 1024 * 1024


@dataclass(frozen=True)
class InstalledImage:
    image_size: int
    image_sha256_hex: str
    payload_sha256_b64: str


class PayloadInstaller:
    """Streams one payload into one slot: feed() the compressed bytes as they arrive, then finish().

    The slot is re-read from the disk's GPT (the passed Slot only names it) and marked unbootable before
    anything is written; writes are bounded to the slot's byte range. Use as a context manager to get
    abort() on any exception. One installer per disk at a time (the caller serialises installs)."""

    def __init__(
        self,
        disk: Path | str,
        slot: Slot,
        expected_size: int,
        expected_sha256_b64: str,
        public_key_path: Path | str,
        verify_readback: bool = True,
    ) -> None:
        self.disk = disk
        if expected_size <= 0:
            raise SizeMismatch(f"announced payload size {expected_size} is not positive")
        self.expected_size = expected_size
        self.expected_sha256_b64 = expected_sha256_b64
        try:
            self._expected_digest = release.decode_sha256(expected_sha256_b64)
        except release.ReleaseFormatError as exc:
            raise PayloadError(str(exc)) from None
        self._public_key = load_public_key(public_key_path)
        self._verify_readback = verify_readback
        self.received = 0
        self.image_size = 0
        self._payload_hash = hashlib.sha256()
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._fd: int | None = None
        self._writer: SlotWriter | None = None
        self._failed: PayloadError | None = None
        self._done = False
        try:
            current = {s.number: s for s in read_slots(disk)}
        except (GptError, SlotError) as exc:
            raise TargetWriteError(f"cannot use {disk} as an update target: {exc}") from None
        fresh = current.get(slot.number)
        if fresh is None or fresh.partuuid != slot.partuuid:
            raise TargetWriteError(f"slot {slot.name} ({slot.partuuid}) is not an A/B slot of {disk}")
        self.slot = fresh
        try:
            # O_RDWR without O_CREAT: a missing device must fail, never become a new regular file.
            self._fd = os.open(disk, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise write_error(exc, disk, fresh) from None
        try:
            self.slot = mark_unbootable(disk, fresh)
        except (GptError, SlotError) as exc:
            self._close()
            raise TargetWriteError(f"cannot mark slot {fresh.name} unbootable before writing: {exc}") from None
        slot_ = self.slot
        self._writer = SlotWriter(
            self._fd, slot_.offset, slot_.offset + slot_.size, lambda exc: write_error(exc, disk, slot_)
        )

    # -- public

    @property
    def progress(self) -> float:
        """Fraction of the announced payload bytes received so far (0.0 to 1.0)."""
        return min(self.received / self.expected_size, 1.0)

    def feed(self, chunk: bytes) -> None:
        self._check_usable()
        try:
            self._feed(chunk)
        except PayloadError as exc:
            self._fail(exc)
            raise

    def finish(self, signature: bytes) -> InstalledImage:
        """Verify size, SHA-256, signature and (optionally) the written bytes, then mark the slot installed."""
        self._check_usable()
        try:
            result = self._finish(signature)
        except PayloadError as exc:
            self._fail(exc)
            raise
        self._done = True
        return result

    def abort(self) -> None:
        """Stop; the slot stays (or is again) marked unbootable. Safe to call more than once."""
        if self._done:
            return
        self._done = True
        self._close()
        # It was marked unbootable before the first write, so if this fails nothing points at the slot anyway.
        with contextlib.suppress(GptError, SlotError):
            mark_unbootable(self.disk, self.slot)

    def __enter__(self) -> PayloadInstaller:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()

    # -- internals

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise type(self._failed)(str(self._failed))
        if self._done:
            raise PayloadError("this install is already finished or aborted; start a new PayloadInstaller")

    def _fail(self, exc: PayloadError) -> None:
        self._failed = exc
        self.abort()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()  # before closing the fd, so no write can land on a recycled descriptor
            self._writer = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _feed(self, chunk: bytes) -> None:
        if self.received + len(chunk) > self.expected_size:
            raise SizeMismatch(f"payload is larger than the announced {self.expected_size} bytes")
        self.received += len(chunk)
        self._payload_hash.update(chunk)
        data = chunk
        while True:
            try:
                out = self._inflate.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                raise CorruptPayload(f"payload is not a valid gzip stream ({exc})") from None
            self._stage(out)
            if self._inflate.eof:
                # gzip allows several members back to back; anything else after the end is corrupt.
                data = self._inflate.unused_data
                if not data:
                    return
                self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            else:
                data = self._inflate.unconsumed_tail
                # A full output step may leave output inside zlib even with no input left: go round again.
                if not data and len(out) < INFLATE_STEP:
                    return

    def _stage(self, out: bytes) -> None:
        if not out:
            return
        if self.image_size + len(out) > self.slot.size:
            raise ImageTooLarge(f"image is larger than slot {self.slot.name} ({self.slot.size} bytes)")
        self._pending.append(out)
        self._pending_len += len(out)
        self.image_size += len(out)
        if self._pending_len >= WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        assert self._writer is not None
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_len = [], 0
        self._writer.submit(self.slot.offset + self.image_size - len(data), data)

    def _finish(self, signature: bytes) -> InstalledImage:
        if self.received != self.expected_size:
            raise SizeMismatch(f"payload truncated: received {self.received} of {self.expected_size} bytes")
        if not self._inflate.eof or self._inflate.unconsumed_tail:
            raise SizeMismatch("payload truncated: the gzip stream ends early")
        # Drain the writer first, so a write error (disk full…) is reported as such, whatever else is wrong.
        self._flush()
        assert self._fd is not None and self._writer is not None
        self._writer.close()
        digest = self._payload_hash.digest()
        if digest != self._expected_digest:
            got = release.encode_sha256(digest)
            raise HashMismatch(f"payload SHA-256 is {got}, expected {self.expected_sha256_b64}")
        if not release.verify_digest(self._public_key, digest, signature):
            raise BadSignature("payload signature does not verify with the configured public key")
        image_hex = self._writer.image_hash.hexdigest()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise write_error(exc, self.disk, self.slot) from None
        if self._verify_readback and self._read_back_sha256() != image_hex:
            raise TargetWriteError(f"slot {self.slot.name} does not read back what was written (I/O error?)")
        self._close()
        try:
            self.slot = mark_installed(self.disk, self.slot)
        except (GptError, SlotError) as exc:
            raise TargetWriteError(f"image written but slot {self.slot.name} could not be marked: {exc}") from None
        return InstalledImage(self.image_size, image_hex, release.encode_sha256(digest))

    def _read_back_sha256(self) -> str:
        """SHA-256 of what the slot holds now. The written range is synced, then dropped from the page
        cache, so this reads the storage rather than our own cached pages (and a 1 GiB update does not
        evict the host's working set)."""
        assert self._fd is not None
        h = hashlib.sha256()
        position, remaining = self.slot.offset, self.image_size
        try:
            os.posix_fadvise(self._fd, position, remaining, os.POSIX_FADV_DONTNEED)
            while remaining:
                block = os.pread(self._fd, min(WRITE_BATCH, remaining), position)
                if not block:
                    break
                h.update(block)
                position += len(block)
                remaining -= len(block)
        except OSError as exc:
            raise write_error(exc, self.disk, self.slot) from None
        return h.hexdigest()


def install_file(
    disk: Path | str,
    slot: Slot,
    payload: Path | str,
    signature: bytes,
    expected_sha256_b64: str,
    public_key_path: Path | str,
    chunk_size: int = 256 * 1024,
) -> InstalledImage:
    """Install a payload that is already a local file (tests, the benchmark, manual recovery)."""
    size = os.stat(payload).st_size
    with (
        PayloadInstaller(disk, slot, size, expected_sha256_b64, public_key_path) as installer,
        open(payload, "rb") as f,
    ):
        while chunk := f.read(chunk_size):
            installer.feed(chunk)
        return installer.finish(signature)
