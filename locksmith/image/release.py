"""The release output: the USR image of version V packed and signed the way `locksmith-pack-release` does,
so the dev Omaha server and the update engine take it as it is; the image trusts the matching public key."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from locksmith.image.errors import ImageError
from locksmith.updateengine.keys import load_private_key
from locksmith.updateengine.pack import PackError, pack_release

PUBLIC_KEY_IN_IMAGE = "usr/share/update_engine/update-payload-key.pub.pem"  # engineconfig's DEFAULT_PUBLIC_KEY


def check_release_key(private_key: Path) -> ec.EllipticCurvePrivateKey:
    try:
        return load_private_key(private_key)
    except Exception as exc:  # the loader's own errors vary by cause; one line is what the user needs
        raise ImageError(f"release key {private_key}: {exc}".splitlines()[0]) from None


def install_public_key(tree: Path, private_key: Path) -> None:
    """The update engine in the image verifies payloads with the public half of the release key."""
    key = check_release_key(private_key)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    target = tree / PUBLIC_KEY_IN_IMAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pem)


def pack(usr_image: Path, version: str, private_key: Path, out_dir: Path) -> None:
    try:
        # Stored, not deflated: USR is a gzip squashfs, which deflate shrinks by 0.6% at the price of a build
        # step (~7 s for 286 MB) and a Huffman decode of the whole payload on every host that installs it.
        pack_release(usr_image, version, private_key, out_dir, compresslevel=0)
    except PackError as exc:
        raise ImageError(str(exc)) from None
