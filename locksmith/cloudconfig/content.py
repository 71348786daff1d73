"""write_files content encodings (b64, gzip and both), decoded with a size cap against gzip bombs."""

from __future__ import annotations

import base64
import binascii
import zlib

MAX_FILE_BYTES = 32 * 1024 * 1024


class ContentError(ValueError):
    """Content that does not decode as its declared encoding."""


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ContentError("is not valid base64") from None


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_FILE_BYTES + 1)
    except zlib.error:
        raise ContentError("is not valid gzip data") from None
    if len(out) > MAX_FILE_BYTES:
        raise ContentError(f"inflates to more than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if not inflater.eof:
        raise ContentError("is truncated gzip data")
    return out


def _raw(text: str) -> bytes:
    # A YAML string holding raw gzip can only carry bytes below 256; latin-1 gives them back one to one.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def decode(text: str, encoding: str | None) -> bytes:
    """The file's bytes for `content` written in `encoding` (None: plain UTF-8 text)."""
    if not encoding:
        return text.encode()
    if encoding in ("b64", "base64"):
        return _b64(text.encode())
    if encoding in ("gz", "gzip"):
        return _gunzip(_raw(text))
    return _gunzip(_b64(text.encode()))
