"""Release packing, squashfs USR images and reading the release back out of an installed slot."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from locksmith.disk.layout import make_coreos_disk
from locksmith.disk.slots import choose_boot, inactive_slot, read_slots, write_boot_record
from locksmith.protocol.release import verify_digest
from locksmith.updateengine.keys import load_public_key
from locksmith.updateengine.pack import (
    PackError,
    load_release,
    main,
    make_usr_image,
    pack_release,
    read_release_from_slot,
)
from locksmith.updateengine.payload import install_file


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    assert main(["keygen", "--private", str(d / "k.pem"), "--public", str(d / "k.pub")]) == 0
    return d / "k.pem", d / "k.pub"


def test_pack_release_files_and_metadata(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    image = make_usr_image(tmp_path / "usr.squashfs", "2.1.0", filler_bytes=200_000)
    release = pack_release(image, "2.1.0", keys[0], tmp_path / "rel")
    payload = (tmp_path / "rel" / "update.gz").read_bytes()
    meta = json.loads((tmp_path / "rel" / "release.json").read_text())
    assert meta == {
        "version": "2.1.0",
        "name": "update.gz",
        "size": len(payload),
        "sha256": base64.b64encode(hashlib.sha256(payload).digest()).decode(),
        "image_size": image.stat().st_size,
        "image_sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
    }
    assert load_release(tmp_path / "rel") == release
    assert gzip.decompress(payload) == image.read_bytes()
    signature = (tmp_path / "rel" / "update.gz.sig").read_bytes()
    pub = load_public_key(keys[1])
    assert verify_digest(pub, hashlib.sha256(payload).digest(), signature)
    assert not verify_digest(pub, hashlib.sha256(payload + b"x").digest(), signature)
    with pytest.raises(PackError, match="already holds a release"):
        pack_release(image, "2.1.0", keys[0], tmp_path / "rel")


def test_a_stored_payload_is_plain_gzip_the_installer_takes(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Level 0, as the image build packs its already compressed squashfs: gzip framing around the image
    as it is (nothing to decode but a copy), and the installer writes it like any other payload."""
    image = make_usr_image(tmp_path / "usr.squashfs", "1.1.0", filler_bytes=300_000)
    stored = pack_release(image, "1.1.0", keys[0], tmp_path / "stored", compresslevel=0)
    deflated = pack_release(image, "1.1.0", keys[0], tmp_path / "deflated")
    payload = (tmp_path / "stored" / stored.name).read_bytes()
    assert gzip.decompress(payload) == image.read_bytes()
    assert stored.size > stored.image_size >= deflated.size  # framing only, no deflate
    disk = make_coreos_disk(tmp_path / "disk.img", usr_size_mib=2, small=True, initial_image=image)
    write_boot_record(disk, choose_boot(disk))
    target = inactive_slot(disk)
    sig = (tmp_path / "stored" / "update.gz.sig").read_bytes()
    installed = install_file(disk, target, tmp_path / "stored" / stored.name, sig, stored.sha256, keys[1])
    assert installed.image_sha256_hex == stored.image_sha256
    assert read_release_from_slot(disk, target)["COREOS_RELEASE_VERSION"] == "1.1.0"
    with pytest.raises(PackError, match="compression level 10 is not 0-9"):
        pack_release(image, "1.1.0", keys[0], tmp_path / "bad", compresslevel=10)


def test_usr_image_is_reproducible_and_readable_from_a_slot(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    one = make_usr_image(tmp_path / "one.squashfs", "1.0.0")
    two = make_usr_image(tmp_path / "two.squashfs", "1.0.0")
    assert one.read_bytes() == two.read_bytes()
    disk = make_coreos_disk(tmp_path / "disk.img", usr_size_mib=2, small=True, initial_image=one)
    a, b = read_slots(disk)
    release = read_release_from_slot(disk, a)
    assert release["COREOS_RELEASE_VERSION"] == "1.0.0"
    assert release["COREOS_RELEASE_BOARD"] == "amd64-usr"
    assert release["COREOS_RELEASE_APPID"] == "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
    with pytest.raises(PackError, match="holds no readable squashfs"):
        read_release_from_slot(disk, b)

    # Through the installer: the new version lands in B and is read back from there.
    new = make_usr_image(tmp_path / "new.squashfs", "1.1.0")
    rel = pack_release(new, "1.1.0", keys[0], tmp_path / "rel")
    write_boot_record(disk, choose_boot(disk))
    target = inactive_slot(disk)
    sig = (tmp_path / "rel" / "update.gz.sig").read_bytes()
    install_file(disk, target, tmp_path / "rel" / rel.name, sig, rel.sha256, keys[1])
    assert read_release_from_slot(disk, target)["COREOS_RELEASE_VERSION"] == "1.1.0"
    assert read_release_from_slot(disk, a)["COREOS_RELEASE_VERSION"] == "1.0.0"


def test_cli_pack_into_server_root(tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "usr.squashfs"
    assert main(["make-image", str(image), "--version", "3.0.0"]) == 0
    root = tmp_path / "releases"
    args = ["pack", str(image), "--version", "3.0.0", "--key", str(keys[0]), "--root", str(root), "--channel", "beta"]
    assert main(args) == 0
    assert load_release(root / "beta" / "3.0.0").version == "3.0.0"
    assert "update.gz" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pack", "{image}", "--version", "../evil", "--key", "{key}", "--out", "{out}"], "version '../evil'"),
        (["pack", "{image}", "--version", "1", "--key", "{image}", "--out", "{out}"], "not an unencrypted PEM"),
        (["pack", "{tmp}/nope", "--version", "1", "--key", "{key}", "--out", "{out}"], "is not a file"),
        (["keygen", "--private", "{key}", "--public", "{tmp}/x.pub"], "refusing to overwrite a key"),
        (["make-image", "{tmp}/x", "--version", "1", "--filler-mib", "-1"], "--filler-mib"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    image = tmp_path / "image"
    image.write_bytes(b"not really squashfs")
    values = {"image": image, "key": keys[0], "out": tmp_path / "out", "tmp": tmp_path}
    assert main([a.format(**values) for a in argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "release.json").exists()


def test_load_release_rejects_bad_json(tmp_path: Path) -> None:
    (tmp_path / "release.json").write_text('{"version": "1"}')
    with pytest.raises(PackError, match=r"is not a release\.json"):
        load_release(tmp_path)


def test_release_format_round_trips_and_names_its_files() -> None:
    from locksmith.protocol import release as fmt

    rel = fmt.Release("1.2.3", "update.gz", 10, fmt.encode_sha256(b"\x01" * 32), 20, "ab" * 32)
    assert fmt.parse_release(rel.to_json()) == rel
    assert fmt.decode_sha256(rel.sha256) == b"\x01" * 32
    assert fmt.payload_name("update") == "update.gz" and fmt.signature_name("update.gz") == "update.gz.sig"
    assert fmt.is_payload_file("update.gz") and not fmt.is_payload_file("update.gz.sig")
    assert not fmt.is_payload_file(fmt.RELEASE_FILE)


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"version": "1"}',
        '{"version": "1", "name": "u.gz", "size": true, "sha256": "x", "image_size": 1, "image_sha256": "y"}',
        '{"version": "1", "name": "u.gz", "size": 0, "sha256": "x", "image_size": 1, "image_sha256": "y"}',
        '{"version": 1, "name": "u.gz", "size": 1, "sha256": "x", "image_size": 1, "image_sha256": "y"}',
    ],
)
def test_release_format_refuses_bad_release_json(text: str) -> None:
    from locksmith.protocol.release import ReleaseFormatError, parse_release

    with pytest.raises(ReleaseFormatError):
        parse_release(text)


@pytest.mark.parametrize("bad", ["", "../evil", "a" * 65, "-1"])
def test_release_format_refuses_bad_versions_and_names(bad: str) -> None:
    from locksmith.protocol.release import ReleaseFormatError, check_version, decode_sha256, payload_name

    with pytest.raises(ReleaseFormatError):
        check_version(bad)
    with pytest.raises(ReleaseFormatError):
        payload_name(bad)
    with pytest.raises(ReleaseFormatError, match="not a base64 SHA-256"):
        decode_sha256(bad or "AAAA")
