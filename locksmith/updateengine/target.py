"""Where an update is written: the inactive A/B slot of a disk (block device or GPT image file).

The engine talks to this small interface; `SlotTarget` maps it onto `slots` and `payload`. Only the
inactive slot is ever opened for writing; it is marked unbootable before the first byte lands.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

from locksmith.disk import slots
from locksmith.protocol.omaha import ErrorCode
from locksmith.updateengine import errors
from locksmith.updateengine.payload import PayloadInstaller


class TargetError(Exception):
    """The target cannot be prepared or written (missing disk, full disk, permissions); one line."""


class VerificationError(TargetError):
    """The payload is not what the server promised (size, SHA-256, signature)."""

    def __init__(self, message: str, code: int = ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR) -> None:
        super().__init__(message)
        self.code = code


class InstallTarget(Protocol):
    def prepare(self) -> None: ...
    def begin(self, size: int, sha256_b64: str) -> None: ...
    def feed(self, chunk: bytes) -> None: ...
    def verify(self, signature: bytes) -> None: ...
    def commit(self) -> None: ...
    def discard(self) -> None: ...


class SlotTarget:
    def __init__(self, disk: Path | None, boot_record: Path | None, public_key: Path) -> None:
        self.disk = disk
        self.boot_record = boot_record
        self.public_key = public_key
        self.slot: slots.Slot | None = None
        self._installer: PayloadInstaller | None = None

    def _disk(self) -> Path:
        if self.disk is None:
            # A booted host: the disk holding the USR partition the kernel command line names, as CoreOS's
            # engine found its root device; an explicit UPDATE_ENGINE_DISK always wins.
            try:
                self.disk = slots.booted_disk()
            except slots.SlotError as exc:
                raise TargetError(f"no disk configured ({exc}); set UPDATE_ENGINE_DISK=/dev/… or --disk") from None
        return self.disk

    def prepare(self) -> None:
        """Find the inactive slot and mark it unbootable before anything is written to it."""
        disk = self._disk()
        try:
            inactive = slots.inactive_slot(disk, self.boot_record)
            self.slot = slots.mark_unbootable(disk, inactive)
        except Exception as exc:  # SlotError, GptError, OSError: one line, never a traceback
            raise TargetError(f"cannot prepare the inactive slot on {disk}: {exc}") from None

    def begin(self, size: int, sha256_b64: str) -> None:
        """A fresh installer: a retried download starts from byte 0, never from a half-written state."""
        self._abort()
        if self.slot is None:
            raise TargetError("begin() before prepare()")
        try:
            self._installer = PayloadInstaller(self._disk(), self.slot, size, sha256_b64, self.public_key)
        except Exception as exc:
            raise _translate(exc, f"cannot open {self.slot.name} on {self.disk} for writing") from None

    def feed(self, chunk: bytes) -> None:
        assert self._installer is not None
        try:
            self._installer.feed(chunk)
        except Exception as exc:
            raise _translate(exc, "writing the payload failed") from None

    def verify(self, signature: bytes) -> None:
        """Size, SHA-256, signature and read-back; PayloadInstaller.finish() then sets the boot flags."""
        assert self._installer is not None
        try:
            self._installer.finish(signature)
        except Exception as exc:
            raise _translate(exc, "verifying the payload failed") from None
        self._installer = None

    def commit(self) -> None:
        """Confirm the new slot is what the bootloader will pick next (tries=1, highest priority)."""
        assert self.slot is not None
        try:
            current = {s.number: s for s in slots.read_slots(self._disk())}
        except Exception as exc:
            raise TargetError(f"cannot re-read the slots of {self.disk}: {exc}") from None
        mine = current[self.slot.number]
        other = next(s for n, s in current.items() if n != mine.number)
        if not (mine.tries > 0 and not mine.successful and mine.priority > other.priority):
            raise TargetError(
                f"{mine.name} on {self.disk} is not marked for the next boot"
                f" (priority {mine.priority}, tries {mine.tries}); did another tool change the GPT?"
            )
        self.slot = mine

    def _abort(self) -> None:
        installer, self._installer = self._installer, None
        if installer is not None:
            # Best effort: the slot is already unbootable.
            with contextlib.suppress(Exception):
                installer.abort()

    def discard(self) -> None:
        """After a failure or ResetStatus: the inactive slot must not be booted."""
        self._abort()
        if self.disk is None:
            return
        try:
            # After a daemon restart we hold no slot: the one to disarm is the one we did not boot.
            slot = self.slot or slots.inactive_slot(self.disk, self.boot_record)
            self.slot = slots.mark_unbootable(self.disk, slot)
        except Exception as exc:
            raise TargetError(f"cannot mark the inactive slot on {self.disk} unbootable: {exc}") from None


def _translate(exc: Exception, context: str) -> TargetError:
    """Map payload errors onto verification (the bytes are wrong) or target (we cannot write) errors."""
    codes: list[tuple[type[Exception], int]] = [
        (errors.HashMismatch, ErrorCode.PAYLOAD_HASH_MISMATCH),
        (errors.SizeMismatch, ErrorCode.PAYLOAD_SIZE_MISMATCH),
        (errors.ImageTooLarge, ErrorCode.PAYLOAD_SIZE_MISMATCH),
        (errors.BadSignature, ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR),
        (errors.CorruptPayload, ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR),
        (errors.BadKey, ErrorCode.DOWNLOAD_PAYLOAD_PUBKEY_VERIFICATION_ERROR),
    ]
    for cls, code in codes:
        if isinstance(exc, cls):
            return VerificationError(f"{context}: {exc}", code)
    return TargetError(f"{context}: {exc}")
