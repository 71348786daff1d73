"""The release format: what `locksmith-pack-release` writes and the update server and engine read.

A release directory holds the payload `<name>.gz` (the gzip-compressed USR image), its detached
signature `<name>.gz.sig` and `release.json`:

    {"version": "1.2.3", "name": "update.gz", "size": <payload bytes>,
     "sha256": "<base64 SHA-256 of the payload, as Omaha's postinstall action carries it>",
     "image_size": <image bytes>, "image_sha256": "<hex SHA-256 of the image>"}

The signature is DER ECDSA (any NIST curve; keys made by `keygen` are P-256) over the SHA-256 of the
compressed payload, computed with `Prehashed(SHA256)`: the one streaming hash that checks Omaha's
`sha256` also feeds the signature check, so neither end ever holds the payload in memory.

Pure code, no I/O: pack.py writes these files, the dev Omaha server and the engine read them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

RELEASE_FILE: Final = "release.json"
DEFAULT_NAME: Final = "update"  # CoreOS's payload was update.gz
PAYLOAD_SUFFIX: Final = ".gz"
SIGNATURE_SUFFIX: Final = ".sig"
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


class ReleaseFormatError(ValueError):
    """A release field or release.json that breaks the format; the message is one line."""


@dataclass(frozen=True)
class Release:
    version: str
    name: str  # payload file name, e.g. update.gz
    size: int
    sha256: str  # base64
    image_size: int
    image_sha256: str  # hex

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


FIELDS: Final = tuple(f.name for f in fields(Release))


def parse_release(text: str | bytes) -> Release:
    """A release.json's Release; ReleaseFormatError naming what is missing or of the wrong type (its
    message a predicate: "<the file> " + message reads as a sentence)."""
    try:
        data = json.loads(text)
        release = Release(**{k: data[k] for k in FIELDS})
    except (ValueError, KeyError, TypeError):
        raise ReleaseFormatError(f"is not a release.json with {', '.join(FIELDS)}") from None
    ints_ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (release.size, release.image_size))
    strings = (release.version, release.name, release.sha256, release.image_sha256)
    if not ints_ok or not all(isinstance(v, str) for v in strings):
        raise ReleaseFormatError("has fields of the wrong type; re-pack the release")
    return release


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise ReleaseFormatError(
            f"version {version!r} must be 1-64 characters of letters, digits and ._+- (e.g. 1.2.3)"
        )
    return version


def payload_name(base: str) -> str:
    """The payload file for a base name (`update` → `update.gz`); ReleaseFormatError for a bad one."""
    if not _NAME.match(base):
        raise ReleaseFormatError(f"payload name {base!r} must be letters, digits and ._- (e.g. update)")
    return base + PAYLOAD_SUFFIX


def signature_name(payload: str) -> str:
    """The detached signature's file name (and URL tail) beside payload `payload`."""
    return payload + SIGNATURE_SUFFIX


def is_payload_file(name: str) -> bool:
    """True for a payload in a release directory, False for its signature or release.json."""
    return not name.endswith((SIGNATURE_SUFFIX, ".json"))


def encode_sha256(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def decode_sha256(value: str) -> bytes:
    """The 32 bytes of a base64 SHA-256; ReleaseFormatError for anything else."""
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise ReleaseFormatError(f"expected SHA-256 {value!r} is not a base64 SHA-256 (32 bytes)")
    return digest


def sign_digest(private_key: ec.EllipticCurvePrivateKey, sha256_digest: bytes) -> bytes:
    """DER ECDSA signature over an already computed SHA-256 of the payload."""
    return private_key.sign(sha256_digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def verify_digest(public_key: ec.EllipticCurvePublicKey, sha256_digest: bytes, signature: bytes) -> bool:
    try:
        public_key.verify(signature, sha256_digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True
