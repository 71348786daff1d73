"""The payload signing keys on disk: P-256 key pairs as PEM files (`locksmith-pack-release keygen`).

The signature scheme itself is locksmith.protocol.release (sign_digest / verify_digest)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from locksmith.updateengine.errors import BadKey


def generate_keypair(private_path: Path | str, public_path: Path | str) -> None:
    """Write a new P-256 key pair as PEM (private: PKCS#8, mode 0600; public: SubjectPublicKeyInfo)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    Path(public_path).write_bytes(public_pem)


def load_private_key(path: Path | str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise BadKey(f"cannot read private key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise BadKey(f"private key {path} is not an unencrypted PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BadKey(f"private key {path} is not an EC key; make one with 'locksmith-pack-release keygen'")
    return key


def load_public_key(path: Path | str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise BadKey(f"cannot read payload public key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise BadKey(f"payload public key {path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BadKey(f"payload public key {path} is not an EC key; make one with 'locksmith-pack-release keygen'")
    return key
