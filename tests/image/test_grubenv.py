"""The GRUB environment block the ESP carries: GRUB's own grub-editenv reads and writes our format, and it
mirrors the GPT slot attributes the update engine writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from locksmith.disk.grubenv import ENV_SIZE, decode_env, encode_env, fold_spent_tries, mirror, slot_env
from locksmith.disk.layout import make_coreos_disk
from locksmith.disk.slots import mark_installed, read_slots
from locksmith.image.grub import grub_cfg


def test_grub_editenv_reads_and_writes_our_block(tmp_path: Path) -> None:
    env = tmp_path / "grubenv"
    env.write_bytes(encode_env({"usr_a_priority": "1", "usr_b_tries": "0"}))
    listed = subprocess.run(["grub-editenv", str(env), "list"], capture_output=True, text=True, check=True).stdout
    assert listed.splitlines() == ["usr_a_priority=1", "usr_b_tries=0"]
    subprocess.run(["grub-editenv", str(env), "set", "usr_b_tries=1"], check=True)
    data = env.read_bytes()
    assert len(data) == ENV_SIZE
    assert decode_env(data) == {"usr_a_priority": "1", "usr_b_tries": "1"}


def test_env_mirrors_gpt_attributes_after_an_install(tmp_path: Path) -> None:
    disk = make_coreos_disk(tmp_path / "disk.raw", usr_size_mib=1, small=True)
    a, b = read_slots(disk)
    assert slot_env((a, b))["usr_a_priority"] == "1" and slot_env((a, b))["usr_a_successful"] == "1"
    mark_installed(disk, b)
    env = slot_env(read_slots(disk))
    assert env["usr_b_partuuid"] == b.partuuid and env["usr_b_number"] == "4"
    assert (env["usr_b_priority"], env["usr_b_tries"], env["usr_b_successful"]) == ("2", "1", "0")


def test_script_boots_kernel_and_usr_from_the_same_slot() -> None:
    cfg = grub_cfg("root=LABEL=ROOT")
    for key in ("a", "b"):
        block = cfg.split(f'if [ "$slot" = {key} ]; then', 1)[1].split("\nfi", 1)[0]
        assert f"set usr=($disk,gpt$usr_{key}_number)" in block
        assert f"linux $usr/boot/vmlinuz mount.usr=PARTUUID=$usr_{key}_partuuid" in block
        assert "initrd $usr/boot/initrd.img" in block and f"save_env -f $envfile usr_{key}_tries" in block


def _grub_spends_a_try(env: Path, key: str, left: int) -> None:
    subprocess.run(["grub-editenv", str(env), "set", f"usr_{key}_tries={left}"], check=True)


def _installed_b_with_a_try_spent(tmp_path: Path) -> tuple[Path, Path]:
    """USR-B installed (tries=1), the block mirrored, then GRUB's boot of B lowers its tries in the block."""
    disk = make_coreos_disk(tmp_path / "disk.raw", usr_size_mib=1, small=True)
    env = tmp_path / "grubenv"
    mark_installed(disk, read_slots(disk)[1])
    mirror(disk, env)
    _grub_spends_a_try(env, "b", 0)
    return disk, env


def test_the_try_grub_spent_is_folded_into_the_gpt(tmp_path: Path) -> None:
    disk, env = _installed_b_with_a_try_spent(tmp_path)
    assert fold_spent_tries(disk, env) == {4: 0}
    b = read_slots(disk)[1]
    assert (b.priority, b.tries, b.successful, b.bootable) == (2, 0, False, False)
    assert decode_env(env.read_bytes())["usr_b_tries"] == "0"
    assert fold_spent_tries(disk, env) == {}  # nothing more to fold: the block equals the GPT


def test_a_stale_or_foreign_block_is_rewritten_not_folded(tmp_path: Path) -> None:
    disk = make_coreos_disk(tmp_path / "disk.raw", usr_size_mib=1, small=True)
    env = tmp_path / "grubenv"
    mark_installed(disk, read_slots(disk)[1])
    stale = slot_env(read_slots(disk)) | {"usr_b_partuuid": "00000000-0000-0000-0000-000000000000", "usr_b_tries": "0"}
    env.write_bytes(encode_env(stale))
    assert fold_spent_tries(disk, env) == {}
    assert read_slots(disk)[1].tries == 1
    assert decode_env(env.read_bytes()) == slot_env(read_slots(disk))
    env.write_bytes(b"\x00garbage" * 100)
    assert fold_spent_tries(disk, env) == {}
    assert decode_env(env.read_bytes()) == slot_env(read_slots(disk))


def test_bootloader_sync_command(tmp_path: Path) -> None:
    disk, env = _installed_b_with_a_try_spent(tmp_path)
    cmd = [str(Path(sys.executable).with_name("locksmith-bootloader")), "sync", "--disk", str(disk), "--env", str(env)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "USR-B partition=4" in out and "tries=0" in out and "folded in" in out
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "no/such/dir/grubenv")], capture_output=True, text=True)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
