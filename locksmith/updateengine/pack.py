"""Release packing (`locksmith-pack-release`): compress, hash and sign a USR image into a release directory.

The directory's files and release.json are locksmith.protocol.release; release.json is written last,
so a server that lists directories holding it never sees a half-written release. The dev update
server serves `<root>/<channel>/<version>/`.

Also the demo's USR images: small squashfs files carrying `share/coreos/release`, and reading that file
back out of a slot.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from locksmith.cli import Expected, file_error, run_main
from locksmith.disk.slots import Slot
from locksmith.logging import configure_logging
from locksmith.protocol.release import (
    DEFAULT_NAME,
    RELEASE_FILE,
    Release,
    ReleaseFormatError,
    check_version,
    encode_sha256,
    parse_release,
    payload_name,
    sign_digest,
    signature_name,
)
from locksmith.updateengine.errors import PayloadError
from locksmith.updateengine.keys import generate_keypair, load_private_key

DEFAULT_APPID = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
_CHUNK = 1024 * 1024


class PackError(Exception):
    """A release could not be packed or read; the message is one line."""


def load_release(directory: Path | str) -> Release:
    """Read and validate a release directory's release.json."""
    path = Path(directory) / RELEASE_FILE
    try:
        return parse_release(path.read_text())
    except OSError as exc:
        raise PackError(f"cannot read {path}: {exc.strerror}") from None
    except ReleaseFormatError as exc:
        raise PackError(f"{path} {exc}") from None


def pack_release(
    image: Path | str,
    version: str,
    private_key: Path | str,
    out_dir: Path | str,
    name: str = DEFAULT_NAME,
    compresslevel: int = 6,
) -> Release:
    """Compress `image` to `<out_dir>/<name>.gz`, sign it, and write release.json (streaming throughout).

    compresslevel: gzip's 0-9; 0 stores the image in gzip framing, for an image already compressed."""
    if not 0 <= compresslevel <= 9:
        raise PackError(f"compression level {compresslevel} is not 0-9")
    check_version(version)
    payload = payload_name(name)
    key = load_private_key(private_key)
    image, out = Path(image), Path(out_dir)
    if not image.is_file():
        raise PackError(f"image {image} is not a file; build one (e.g. 'locksmith-pack-release make-image')")
    if (out / RELEASE_FILE).exists():
        raise PackError(f"{out} already holds a release; choose a new directory or version")
    out.mkdir(parents=True, exist_ok=True)
    tmp_payload = out / f".{payload}.tmp"
    image_hash, payload_hash = hashlib.sha256(), hashlib.sha256()
    image_size = payload_size = 0
    deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(image, "rb") as src, open(tmp_payload, "wb") as dst:

        def emit(data: bytes) -> None:
            nonlocal payload_size
            payload_hash.update(data)
            payload_size += len(data)
            dst.write(data)

        while block := src.read(_CHUNK):
            image_hash.update(block)
            image_size += len(block)
            emit(deflate.compress(block))
        emit(deflate.flush())
        dst.flush()
        os.fsync(dst.fileno())
    if image_size == 0:
        tmp_payload.unlink()
        raise PackError(f"image {image} is empty")
    digest = payload_hash.digest()
    os.replace(tmp_payload, out / payload)
    (out / signature_name(payload)).write_bytes(sign_digest(key, digest))
    release = Release(version, payload, payload_size, encode_sha256(digest), image_size, image_hash.hexdigest())
    tmp_json = out / f".{RELEASE_FILE}.tmp"
    tmp_json.write_text(release.to_json())
    os.replace(tmp_json, out / RELEASE_FILE)
    return release


# ---- USR images for the demo and tests -----------------------------------------------------------------


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PackError(f"{tool} not found; install the 'squashfs-tools' package (scripts/bootstrap does)")
    return path


def make_usr_image(
    path: Path | str,
    version: str,
    board: str = "amd64-usr",
    appid: str = DEFAULT_APPID,
    filler_bytes: int = 0,
) -> Path:
    """Build a small squashfs USR image holding share/coreos/release (and optional incompressible filler)."""
    check_version(version)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="usr-image-") as tmp:
        root = Path(tmp)
        (root / "share" / "coreos").mkdir(parents=True)
        (root / "share" / "coreos" / "release").write_text(
            f"COREOS_RELEASE_VERSION={version}\nCOREOS_RELEASE_BOARD={board}\nCOREOS_RELEASE_APPID={appid}\n"
        )
        if filler_bytes:
            # Seeded by the version, so the same version always builds the same image.
            with open(root / "share" / "filler.bin", "wb") as f:
                for counter, start in enumerate(range(0, filler_bytes, _CHUNK)):
                    block = hashlib.shake_256(f"{version}/{counter}".encode()).digest(min(_CHUNK, filler_bytes - start))
                    f.write(block)
        cmd = [_need("mksquashfs"), str(root), str(path), "-noappend", "-all-root", "-quiet", "-no-progress"]
        cmd += ["-mkfs-time", "0", "-all-time", "0"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise PackError(f"mksquashfs failed for {path}: {lines[-1] if lines else proc.returncode}")
    return path


def parse_release_text(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip().strip('"')
    return values


def read_release_from_slot(disk: Path | str, slot: Slot) -> dict[str, str]:
    """share/coreos/release of the squashfs in `slot`, read in place with `unsquashfs -o <offset> -cat`."""
    cmd = [_need("unsquashfs"), "-o", str(slot.offset), "-cat", str(disk), "share/coreos/release"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise PackError(f"slot {slot.name} of {disk} holds no readable squashfs with share/coreos/release")
    return parse_release_text(proc.stdout.decode("utf-8", "replace"))


# ---- the command ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locksmith-pack-release", description="Pack signed update payloads for the dev update server."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="compress, hash and sign an image into a release directory")
    pack.add_argument("image", type=Path, help="the USR filesystem image")
    pack.add_argument("--version", required=True, help="release version, e.g. 1.2.3")
    pack.add_argument("--key", required=True, type=Path, help="private key PEM (from 'keygen')")
    where = pack.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="release directory to create")
    where.add_argument("--root", type=Path, help="server root: writes <root>/<channel>/<version>/")
    pack.add_argument("--channel", default="stable", help="channel under --root (default stable)")
    pack.add_argument("--name", default=DEFAULT_NAME, help="payload base name (default update → update.gz)")
    keygen = sub.add_parser("keygen", help="generate a P-256 signing key pair")
    keygen.add_argument("--private", required=True, type=Path, help="where to write the private key (0600)")
    keygen.add_argument("--public", required=True, type=Path, help="where to write the public key")
    image = sub.add_parser("make-image", help="build a small squashfs USR image with share/coreos/release")
    image.add_argument("output", type=Path)
    image.add_argument("--version", required=True)
    image.add_argument("--board", default="amd64-usr")
    image.add_argument("--filler-mib", type=int, default=0, help="add this much incompressible data")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(level="debug" if args.debug else "warning")
    return run_main(
        "locksmith-pack-release",
        lambda: _run(args),
        Expected((PackError, PayloadError, ReleaseFormatError)),
        Expected(OSError, detail=file_error()),
        debug=args.debug,
    )


def _run(args: argparse.Namespace) -> int:
    if args.command == "keygen":
        for p in (args.private, args.public):
            if p.exists():
                raise PackError(f"{p} already exists; refusing to overwrite a key")
        generate_keypair(args.private, args.public)
        print(f"private key: {args.private}\npublic key: {args.public}")
    elif args.command == "make-image":
        if args.filler_mib < 0:
            raise PackError("--filler-mib must be 0 or more")
        make_usr_image(args.output, args.version, args.board, filler_bytes=args.filler_mib * 1024 * 1024)
        print(args.output)
    else:
        out = args.out or args.root / check_version(args.channel) / check_version(args.version)
        release = pack_release(args.image, args.version, args.key, out, args.name)
        print(f"{out}: {release.name} {release.size} bytes sha256={release.sha256} version={release.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
