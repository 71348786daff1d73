"""Where an update is written: the inactive A/B slot of a disk (block device or GPT image file).

The engine talks to this small interface; `SlotTarget` maps it onto `slots` and `payload`. Only the
inactive slot is ever opened for writing; it is marked unbootable before the first byte lands.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

from locksmith.updateengine import slots
from locksmith.updateengine.omaha import ErrorCode


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
        self._installer: object | None = None

    def _disk(self) -> Path:
        if self.disk is None:
            raise TargetError("no disk configured; set UPDATE_ENGINE_DISK=/dev/… or an image file (or --disk)")
        return self.disk

    def prepare(self) -> None:
        disk = self._disk()
        try:
            inactive = slots.inactive_slot(disk, self.boot_record)
            self.slot = slots.mark_unbootable(disk, inactive)
        except (slots.SlotError, OSError) as exc:
            raise TargetError(f"cannot prepare the inactive slot on {disk}: {exc}") from None
        except Exception as exc:  # GptError and friends: still one line, never a traceback
            raise TargetError(f"cannot prepare the inactive slot on {disk}: {exc}") from None

    def begin(self, size: int, sha256_b64: str) -> None:
        from locksmith.updateengine.payload import PayloadInstaller

        self._abort()
        if self.slot is None:
            raise TargetError("begin() before prepare()")
        try:
            self._installer = PayloadInstaller(self._disk(), self.slot, size, sha256_b64, self.public_key)
        except Exception as exc:
            raise _translate(exc, f"cannot open {self.slot.name} on {self.disk} for writing") from None

    def feed(self, chunk: bytes) -> None:
        try:
            self._installer.feed(chunk)  # type: ignore[union-attr]
        except Exception as exc:
            raise _translate(exc, "writing the payload failed") from None

    def verify(self, signature: bytes) -> None:
        try:
            self._installer.finish(signature)  # type: ignore[union-attr]
        except Exception as exc:
            raise _translate(exc, "verifying the payload failed") from None
        self._installer = None

    def commit(self) -> None:
        assert self.slot is not None
        try:
            self.slot = slots.mark_installed(self._disk(), self.slot)
        except Exception as exc:
            raise TargetError(f"cannot mark {self.slot.name} on {self.disk} installed: {exc}") from None

    def _abort(self) -> None:
        installer, self._installer = self._installer, None
        if installer is not None:
            # Best effort: the slot is already unbootable.
            with contextlib.suppress(Exception):
                installer.abort()  # type: ignore[attr-defined]

    def discard(self) -> None:
        self._abort()
        if self.slot is None or self.disk is None:
            return
        try:
            self.slot = slots.mark_unbootable(self.disk, self.slot)
        except Exception as exc:
            raise TargetError(f"cannot mark {self.slot.name} on {self.disk} unbootable: {exc}") from None


def _translate(exc: Exception, context: str) -> TargetError:
    """Map payload errors onto verification (the bytes are wrong) or target (we cannot write) errors."""
    from locksmith.updateengine import payload

    codes = {
        "SizeMismatch": ErrorCode.PAYLOAD_SIZE_MISMATCH,
        "HashMismatch": ErrorCode.PAYLOAD_HASH_MISMATCH,
        "SignatureError": ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR,
    }
    for name, code in codes.items():
        cls = getattr(payload, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return VerificationError(f"{context}: {exc}", code)
    return TargetError(f"{context}: {exc}")
