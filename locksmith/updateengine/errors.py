"""What installing a payload can fail with; every message is one line.

A failed install leaves the target slot marked unbootable (see payload.py); target.py maps these onto
Omaha error codes (the bytes are wrong → verification errors; we cannot write → target errors)."""

from __future__ import annotations


class PayloadError(Exception):
    """An install failed; the message is one line. The target slot is left marked unbootable."""


class HashMismatch(PayloadError):
    pass


class BadSignature(PayloadError):
    pass


class SizeMismatch(PayloadError):
    """The payload is shorter (truncated) or longer than announced, or its gzip stream is cut short."""


class ImageTooLarge(PayloadError):
    pass


class CorruptPayload(PayloadError):
    """The bytes are not a valid gzip stream."""


class TargetWriteError(PayloadError):
    """The slot could not be written: disk full, read-only, missing device, file size limit."""


class BadKey(PayloadError):
    pass
