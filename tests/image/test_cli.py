"""`locksmith-image` bad input: one line on stderr, exit 1, nothing left where the output should be."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from locksmith.cloudconfig.datasource import from_configdrive
from locksmith.image.build import BuildOptions, build
from locksmith.image.cli import main
from locksmith.image.errors import ImageError
from locksmith.image.qemu import VmOptions, config_drive, qemu_command
from locksmith.image.recipe import Recipe
from locksmith.image.rootfs import cache_lock


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("locksmith-image: ")
    return err


def test_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    err = _fails(capsys, ["build", "--version", "1.0.0", "--format", "qemu", "--format", "floppy", "--out", str(out)])
    assert "unknown format 'floppy'" in err and "qemu" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_version_and_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is not a version" in _fails(capsys, ["build", "--version", "../1", "--out", str(tmp_path / "o")])
    err = _fails(capsys, ["build", "--version", "1", "--channel", "a b", "--out", str(tmp_path / "o")])
    assert "not a channel name" in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    err = _fails(capsys, ["build", "--version", "1.0.0", "--out", str(blocker / "out")])
    assert "cannot write the output folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_non_empty_out_dir_is_not_touched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("data")
    assert "exists and is not empty" in _fails(capsys, ["build", "--version", "1.0.0", "--out", str(out)])
    assert [p.name for p in out.iterdir()] == ["keep"] and (out / "keep").read_text() == "data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_run_missing_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(capsys, ["run", str(tmp_path / "nope.img"), "--accel", "tcg"])
    assert "not found" in err


@pytest.mark.timeout(600)
def test_missing_package_fails_cleanly(tmp_path: Path) -> None:
    """apt cannot find a package: a one-line error naming apt's complaint; no output, no cached tree."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    opts = BuildOptions("1.0.0", out, cache_dir=cache, recipe=Recipe(packages=("locksmith-no-such-package",)))
    with pytest.raises(ImageError) as info:
        build(opts)
    message = str(info.value)
    assert "\n" not in message and "locksmith-no-such-package" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert [p.name for p in cache.iterdir() if p.name.startswith("rootfs-")] == []


@pytest.mark.timeout(1200)
def test_a_usr_slot_too_small_for_the_os_fails_cleanly(tmp_path: Path) -> None:
    """The USR squashfs does not fit its slot: one line saying so, and no output folder at all."""
    out = tmp_path / "out"
    with pytest.raises(ImageError) as info:
        build(BuildOptions("1.0.0", out, formats=["ami"], usr_mib=16))
    message = str(info.value)
    assert "\n" not in message and "too small" in message, message
    assert list(tmp_path.iterdir()) == []


def test_run_user_data_becomes_a_config_2_drive_coreos_cloudinit_reads(tmp_path: Path) -> None:
    """What `run --user-data` attaches: a VFAT drive labelled config-2 with OpenStack's layout, read back
    with mtools (no loop mount) and handed to coreos-cloudinit's own config-drive reader."""
    user_data = tmp_path / "cloud-config.yml"
    user_data.write_text("#cloud-config\nhostname: node-a\n")
    drive = config_drive(user_data, tmp_path / "config-2.img")
    probe = subprocess.run(["blkid", "-o", "export", str(drive)], capture_output=True, text=True, check=True)
    assert {"LABEL=config-2", "TYPE=vfat"} <= set(probe.stdout.split())
    copy = tmp_path / "mounted"
    copy.mkdir()
    subprocess.run(["mcopy", "-s", "-i", str(drive), "::/openstack", str(copy)], check=True)
    assert from_configdrive(copy).user_data == user_data.read_bytes()


def test_run_user_data_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="give --user-data a cloud-config file"):
        config_drive(tmp_path / "missing.yml", tmp_path / "config-2.img")
    assert not (tmp_path / "config-2.img").exists()


@pytest.mark.parametrize(("magic", "fmt"), [(b"QFI\xfb", "qcow2"), (b"KDMV", "vmdk"), (b"\0\0\0\0", "raw")])
def test_run_reads_the_disk_format_from_the_file(tmp_path: Path, magic: bytes, fmt: str) -> None:
    """The vmware/virtualbox vmdk boots under qemu as the qcow2 does; a raw image is never probed."""
    image = tmp_path / "disk"
    image.write_bytes(magic + bytes(508))
    drive = next(a for a in qemu_command(VmOptions(image), "tcg", tmp_path) if a.startswith("if=virtio,format="))
    assert drive == f"if=virtio,format={fmt},file={image}"


def test_a_second_builder_waits_for_the_cache_then_gives_up_in_one_line(tmp_path: Path) -> None:
    """Two builders (two test workers on a cold machine) fill the cache one at a time; a wait is bounded."""
    held = pytest.raises(ImageError, match=r"another locksmith-image build held .*\.lock")
    with cache_lock(tmp_path), held, cache_lock(tmp_path, seconds=1.5):
        pass
    with cache_lock(tmp_path, seconds=1.5):  # released: taken at once
        pass
