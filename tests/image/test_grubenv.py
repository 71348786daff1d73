"""The GRUB environment block the ESP carries: GRUB's own grub-editenv reads and writes our format, and it
mirrors the GPT slot attributes the update engine writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from locksmith.disk.layout import make_coreos_disk
from locksmith.disk.slots import mark_installed, read_slots
from locksmith.image.grub import ENV_SIZE, decode_env, encode_env, grub_cfg, slot_env


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
