"""What a datasource hands us, told apart: a `#cloud-config` document, a `#!` script, or gzip of either."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from locksmith.cloudconfig.findings import Finding

# Clouds cap user data far lower (OpenStack 64 KiB, EC2 16 KiB); this leaves room for embedded files
# while refusing a runaway document before YAML parsing spends minutes and memory on it (2 MiB
# take about 5 s to check).
MAX_USER_DATA = 2 * 1024 * 1024
HEADER = "#cloud-config"

Kind = Literal["cloud-config", "script", "empty"]


class UserDataError(ValueError):
    """User data we cannot use; str() is one line naming the problem and the fix."""


@dataclass(frozen=True)
class UserData:
    kind: Kind
    text: str


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_USER_DATA + 1)
    except zlib.error as exc:
        raise UserDataError(f"user data is corrupt gzip ({exc}); recompress it with gzip") from None
    if len(out) > MAX_USER_DATA:
        raise UserDataError(f"user data inflates to more than {MAX_USER_DATA // 1024 // 1024} MiB; make it smaller")
    if not inflater.eof:
        raise UserDataError("user data is truncated gzip; recompress it with gzip")
    return out


def parse(data: bytes) -> UserData:
    """Classify raw user data; raises UserDataError for anything we would not apply."""
    if len(data) > MAX_USER_DATA:
        raise UserDataError(
            f"user data is {len(data)} bytes, over the {MAX_USER_DATA // 1024 // 1024} MiB limit; make it smaller"
        )
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserDataError(
            f"user data is not UTF-8 text (byte {exc.start}); give a #cloud-config or #! file"
        ) from None
    if "\x00" in text:
        raise UserDataError("user data contains NUL bytes (binary?); give a #cloud-config or #! file")
    if not text.strip():
        return UserData("empty", "")
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    if first.startswith(HEADER):
        return UserData("cloud-config", text.lstrip("\ufeff"))
    if first.startswith("#!"):
        return UserData("script", text)
    raise UserDataError('user data must start with "#cloud-config" or "#!"; add the header line')


def header_finding(error: UserDataError) -> Finding:
    return Finding(1, "error", str(error))
