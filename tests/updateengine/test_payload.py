"""PayloadInstaller on real disk image files: exact writes into the inactive slot, and every failure mode."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from locksmith.disk.layout import make_coreos_disk
from locksmith.disk.slots import Slot, choose_boot, read_slots
from locksmith.protocol.release import sign_digest
from locksmith.updateengine.keys import generate_keypair, load_private_key
from locksmith.updateengine.payload import (
    BadKey,
    BadSignature,
    CorruptPayload,
    HashMismatch,
    ImageTooLarge,
    PayloadError,
    PayloadInstaller,
    SizeMismatch,
    TargetWriteError,
    install_file,
)

USR_MIB = 4


@dataclass(frozen=True)
class Payload:
    image: bytes
    data: bytes  # gzip-compressed image
    sha256_b64: str
    signature: bytes


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    generate_keypair(d / "key.pem", d / "key.pub.pem")
    return d / "key.pem", d / "key.pub.pem"


@pytest.fixture(scope="module")
def template_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # sgdisk sleeps a second per write: build once, copy per test. USR-A gets a recognisable "old" image.
    d = tmp_path_factory.mktemp("template")
    old = d / "old.img"
    old.write_bytes(hashlib.shake_256(b"old").digest(USR_MIB * 1024 * 1024 - 4096))
    return make_coreos_disk(d / "disk.img", usr_size_mib=USR_MIB, small=True, initial_image=old)


@pytest.fixture
def disk(template_disk: Path, tmp_path: Path) -> Path:
    return Path(shutil.copyfile(template_disk, tmp_path / "disk.img"))


def make_payload(private_key: Path, image: bytes) -> Payload:
    data = gzip.compress(image, compresslevel=1)
    digest = hashlib.sha256(data).digest()
    return Payload(image, data, base64.b64encode(digest).decode(), sign_digest(load_private_key(private_key), digest))


@pytest.fixture(scope="module")
def payload(keys: tuple[Path, Path]) -> Payload:
    # Half random, half zeros: compresses, and is big enough to cross several write batches.
    image = hashlib.shake_256(b"new image").digest(1536 * 1024) + bytes(1536 * 1024) + b"tail"
    return make_payload(keys[0], image)


def slot_bytes(disk: Path, slot: Slot, length: int | None = None) -> bytes:
    with open(disk, "rb") as f:
        f.seek(slot.offset)
        return f.read(slot.size if length is None else length)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def state(disk: Path) -> Iterator[tuple[Slot, Slot, str]]:
    """(active A, inactive B, hash of A's bytes) — and after the test, A must be untouched and still boot."""
    a, b = read_slots(disk)
    a_hash = sha(slot_bytes(disk, a))
    yield a, b, a_hash
    assert sha(slot_bytes(disk, a)) == a_hash, "the active slot was modified"
    a_after, _ = read_slots(disk)
    assert (a_after.priority, a_after.successful) == (1, True)


def feed_all(installer: PayloadInstaller, data: bytes, chunk: int = 65536) -> None:
    for i in range(0, len(data), chunk):
        installer.feed(data[i : i + chunk])


def assert_unbootable(disk: Path) -> None:
    _, b = read_slots(disk)
    assert (b.priority, b.tries, b.successful) == (0, 0, False)
    assert choose_boot(disk).name == "USR-A"


def test_installs_exactly_the_image_into_the_inactive_slot(
    disk: Path, state: tuple[Slot, Slot, str], payload: Payload, keys: tuple[Path, Path]
) -> None:
    _, b, _ = state
    installer = PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, keys[1])
    assert installer.progress == 0.0
    feed_all(installer, payload.data[: len(payload.data) // 2], chunk=7919)
    assert 0.49 < installer.progress < 0.51
    assert read_slots(disk)[1].priority == 0  # unbootable while being written
    feed_all(installer, payload.data[len(payload.data) // 2 :], chunk=7919)
    assert installer.progress == 1.0
    result = installer.finish(payload.signature)

    assert result.image_size == len(payload.image)
    assert result.image_sha256_hex == sha(payload.image)
    assert result.payload_sha256_b64 == payload.sha256_b64
    assert sha(slot_bytes(disk, b, result.image_size)) == sha(payload.image)
    _, b_after = read_slots(disk)
    assert (b_after.priority, b_after.tries, b_after.successful) == (2, 1, False)
    out = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "No problems found" in out
    assert choose_boot(disk).name == "USR-B"


def test_multi_member_gzip_and_tiny_chunks(disk: Path, state: tuple[Slot, Slot, str], keys: tuple[Path, Path]) -> None:
    _, b, _ = state
    image = b"first member " * 1000 + b"second member " * 1000
    data = gzip.compress(image[:13000]) + gzip.compress(image[13000:])
    digest = hashlib.sha256(data).digest()
    sig = sign_digest(load_private_key(keys[0]), digest)
    installer = PayloadInstaller(disk, b, len(data), base64.b64encode(digest).decode(), keys[1])
    feed_all(installer, data, chunk=1)
    assert installer.finish(sig).image_sha256_hex == sha(image)
    assert slot_bytes(disk, b, len(image)) == image


def test_wrong_sha256(disk: Path, state: tuple[Slot, Slot, str], payload: Payload, keys: tuple[Path, Path]) -> None:
    _, b, _ = state
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    installer = PayloadInstaller(disk, b, len(payload.data), wrong, keys[1])
    feed_all(installer, payload.data)
    with pytest.raises(HashMismatch, match="payload SHA-256 is"):
        installer.finish(payload.signature)
    assert_unbootable(disk)


def test_bad_signature(
    disk: Path, state: tuple[Slot, Slot, str], payload: Payload, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    _, b, _ = state
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    forged = make_payload(tmp_path / "other.pem", payload.image)  # right hash, signed by the wrong key
    installer = PayloadInstaller(disk, b, len(forged.data), forged.sha256_b64, keys[1])
    feed_all(installer, forged.data)
    with pytest.raises(BadSignature, match="does not verify"):
        installer.finish(forged.signature)
    assert_unbootable(disk)
    with pytest.raises(BadSignature):  # a failed installer stays failed
        installer.finish(payload.signature)


def test_truncated_payload_then_clean_retry(
    disk: Path, state: tuple[Slot, Slot, str], payload: Payload, keys: tuple[Path, Path]
) -> None:
    _, b, _ = state
    installer = PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, keys[1])
    feed_all(installer, payload.data[: len(payload.data) - 1000])
    with pytest.raises(SizeMismatch, match="truncated: received"):
        installer.finish(payload.signature)
    assert_unbootable(disk)

    # Retry from scratch with a new installer: it re-marks the slot and writes from the first byte.
    retry = PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, keys[1])
    feed_all(retry, payload.data)
    assert retry.finish(payload.signature).image_sha256_hex == sha(payload.image)
    assert choose_boot(disk).name == "USR-B"


def test_payload_longer_than_announced(
    disk: Path, state: tuple[Slot, Slot, str], payload: Payload, keys: tuple[Path, Path]
) -> None:
    _, b, _ = state
    installer = PayloadInstaller(disk, b, len(payload.data) - 10, payload.sha256_b64, keys[1])
    with pytest.raises(SizeMismatch, match="larger than the announced"):
        feed_all(installer, payload.data)
    assert_unbootable(disk)


def test_gzip_stream_cut_short(disk: Path, state: tuple[Slot, Slot, str], keys: tuple[Path, Path]) -> None:
    _, b, _ = state
    data = gzip.compress(b"x" * 100000)[:-12]  # the announced size matches, but the stream is incomplete
    digest = hashlib.sha256(data).digest()
    installer = PayloadInstaller(disk, b, len(data), base64.b64encode(digest).decode(), keys[1])
    feed_all(installer, data)
    with pytest.raises(SizeMismatch, match="gzip stream ends early"):
        installer.finish(sign_digest(load_private_key(keys[0]), digest))
    assert_unbootable(disk)


def test_not_gzip(disk: Path, state: tuple[Slot, Slot, str], keys: tuple[Path, Path]) -> None:
    _, b, _ = state
    data = b"<html>404 not found</html>"
    installer = PayloadInstaller(disk, b, len(data), base64.b64encode(hashlib.sha256(data).digest()).decode(), keys[1])
    with pytest.raises(CorruptPayload, match="not a valid gzip stream"):
        installer.feed(data)
    assert_unbootable(disk)


def test_image_larger_than_slot_never_spills_into_next_partition(
    disk: Path, state: tuple[Slot, Slot, str], keys: tuple[Path, Path]
) -> None:
    _, b, _ = state
    gpt_next = disk.read_bytes()[b.offset + b.size : b.offset + b.size + 1024 * 1024]
    big = make_payload(keys[0], bytes(b.size + 1))  # one byte too many; compresses to almost nothing
    with PayloadInstaller(disk, b, len(big.data), big.sha256_b64, keys[1]) as installer:  # noqa: SIM117
        with pytest.raises(ImageTooLarge, match="larger than slot USR-B"):
            feed_all(installer, big.data)
    assert disk.read_bytes()[b.offset + b.size : b.offset + b.size + 1024 * 1024] == gpt_next
    assert_unbootable(disk)


def test_abort_and_context_manager_leave_slot_unbootable(
    disk: Path, state: tuple[Slot, Slot, str], payload: Payload, keys: tuple[Path, Path]
) -> None:
    _, b, _ = state
    installer = PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, keys[1])
    feed_all(installer, payload.data[:100000])
    installer.abort()
    installer.abort()
    assert_unbootable(disk)
    with pytest.raises(PayloadError, match="already finished or aborted"):
        installer.feed(b"more")
    with pytest.raises(RuntimeError), PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, keys[1]) as i2:
        i2.feed(payload.data[:5000])
        raise RuntimeError("download interrupted")
    assert_unbootable(disk)


def test_bad_inputs_are_refused_before_touching_the_disk(
    disk: Path, state: tuple[Slot, Slot, str], payload: Payload, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    _, b, _ = state
    before = disk.read_bytes()
    with pytest.raises(PayloadError, match="not a base64 SHA-256"):
        PayloadInstaller(disk, b, len(payload.data), "bm90IGEgaGFzaA==", keys[1])
    with pytest.raises(BadKey, match="cannot read payload public key"):
        PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, tmp_path / "missing.pub")
    (tmp_path / "garbage.pub").write_text("-----BEGIN PUBLIC KEY-----\nnope\n")
    with pytest.raises(BadKey, match="not a PEM public key"):
        PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, tmp_path / "garbage.pub")
    with pytest.raises(SizeMismatch, match="not positive"):
        PayloadInstaller(disk, b, 0, payload.sha256_b64, keys[1])
    assert disk.read_bytes() == before


def test_missing_disk(tmp_path: Path, disk: Path, payload: Payload, keys: tuple[Path, Path]) -> None:
    _, b = read_slots(disk)
    with pytest.raises(TargetWriteError, match=r"cannot use .* as an update target"):
        PayloadInstaller(tmp_path / "gone.img", b, len(payload.data), payload.sha256_b64, keys[1])
    assert not (tmp_path / "gone.img").exists()


_FSIZE_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from locksmith.updateengine.payload import PayloadInstaller, TargetWriteError
    from locksmith.disk.slots import read_slots
    disk, payload, sha, pub, sig = sys.argv[1:6]
    _, b = read_slots(disk)
    installer = PayloadInstaller(disk, b, Path(payload).stat().st_size, sha, pub)  # marks B unbootable first
    # From here the kernel refuses writes past 1 MiB into slot B (EFBIG), as a full or capped disk would.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = b.offset + 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        data = Path(payload).read_bytes()
        for i in range(0, len(data), 65536):
            installer.feed(data[i : i + 65536])
        installer.finish(Path(sig).read_bytes())
    except TargetWriteError as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_unwritable_target_file_size_limit(
    disk: Path, state: tuple[Slot, Slot, str], payload: Payload, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    payload_file = tmp_path / "update.gz"
    payload_file.write_bytes(payload.data)
    (tmp_path / "update.gz.sig").write_bytes(payload.signature)
    args = [str(disk), str(payload_file), payload.sha256_b64, str(keys[1]), str(tmp_path / "update.gz.sig")]
    proc = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "cannot write slot USR-B of " + str(disk) + ": file size limit reached"
    assert_unbootable(disk)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the RLIMIT_FSIZE test still runs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full(
    small_tmpfs: Path, template_disk: Path, payload: Payload, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    # A sparse disk image on a 3 MiB tmpfs: the GPT fits, the 3 MiB image does not.
    disk = small_tmpfs / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(template_disk.stat().st_size)
    with open(template_disk, "rb") as src, open(disk, "r+b") as dst:
        dst.write(src.read(64 * 1024))  # MBR + primary GPT
        src.seek(-64 * 1024, os.SEEK_END)
        dst.seek(-64 * 1024, os.SEEK_END)
        dst.write(src.read())  # backup GPT
    _, b = read_slots(disk)
    installer = PayloadInstaller(disk, b, len(payload.data), payload.sha256_b64, keys[1], verify_readback=False)
    with pytest.raises(TargetWriteError, match="disk full"):
        feed_all(installer, payload.data)
        installer.finish(payload.signature)
    _, b_after = read_slots(disk)
    assert (b_after.priority, b_after.tries, b_after.successful) == (0, 0, False)
    # And a retry of the whole file with install_file fails the same clean way.
    with pytest.raises(TargetWriteError, match="disk full"):
        payload_file = tmp_path / "update.gz"
        payload_file.write_bytes(payload.data)
        install_file(disk, b, payload_file, payload.signature, payload.sha256_b64, keys[1])
