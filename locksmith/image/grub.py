"""The bootloader inside the image: a standalone GRUB EFI binary whose script does CoreOS's A/B choice.

Upstream GRUB cannot read the GPT priority/tries/successful bits (CoreOS carried a `gptprio` patch), so the
slot attributes are mirrored into a GRUB environment block on the ESP (`/EFI/locksmith/grubenv`), the way
RAUC documents for GRUB. The script below applies the same rule as `locksmith.disk.slots.choose_boot`
(highest priority among slots with priority > 0 and tries > 0 or successful; tie → USR-A; a try is consumed
and saved before the kernel starts) and loads kernel and initramfs from the chosen slot's own squashfs, so
kernel and /usr always come from the same slot. The GPT stays the record: the env block is rewritten from it
whenever slot attributes are written, and the consumed try is folded back into the GPT early in boot
(`locksmith.disk.grubenv`, run by `locksmith-boot-sync.service`). An unreadable block leaves every variable
unset; the script then boots USR-A, the slot the image shipped with, rather than no slot at all.
"""

from __future__ import annotations

from pathlib import Path

from locksmith.disk.grubenv import ENV_PATH
from locksmith.disk.slots import MAX_TRIES
from locksmith.image.errors import require, run

GRUB_MODULES = "part_gpt fat ext2 squash4 gzio xzio linux normal echo test regexp loadenv configfile sleep reboot probe"


def _decrement(key: str) -> str:
    # GRUB's script has no arithmetic: one branch per possible value of the 4-bit tries field.
    var = f"usr_{key}_tries"
    lines = [f'    if [ "${var}" = 1 ]; then set {var}=0']
    lines += [f'    elif [ "${var}" = {n} ]; then set {var}={n - 1}' for n in range(2, MAX_TRIES + 1)]
    return "\n".join([*lines, "    fi", f"    save_env -f $envfile {var}"])


def grub_cfg(cmdline: str) -> str:
    """The script embedded in the EFI binary; `cmdline` is appended for every slot."""
    pick = []
    for key in ("a", "b"):
        better = "" if key == "a" else ' -a "$usr_b_priority" -gt "$best"'
        pick.append(
            f'set ok_{key}=0\nif [ "$usr_{key}_priority" -gt 0 ]; then\n'
            f'  if [ "$usr_{key}_tries" -gt 0 ]; then set ok_{key}=1; fi\n'
            f'  if [ "$usr_{key}_successful" = 1 ]; then set ok_{key}=1; fi\nfi\n'
            f'if [ "$ok_{key}" = 1{better} ]; then set slot={key}; set best="$usr_{key}_priority"; fi'
        )
    boot = []
    for key, name in (("a", "USR-A"), ("b", "USR-B")):
        boot.append(
            f'if [ "$slot" = {key} ]; then\n'
            f'  if [ "$usr_{key}_tries" -gt 0 ]; then\n{_decrement(key)}\n  fi\n'
            f"  set usr=($disk,gpt$usr_{key}_number)\n"
            f'  echo "locksmith: booting {name} (priority $usr_{key}_priority, tries left $usr_{key}_tries)"\n'
            f"  linux $usr/boot/vmlinuz mount.usr=PARTUUID=$usr_{key}_partuuid mount.usrfstype=squashfs "
            f"mount.usrflags=ro {cmdline} $linux_append\n"
            f"  initrd $usr/boot/initrd.img\n  boot\nfi"
        )
    return "\n".join(
        [
            "set timeout=0",
            "regexp --set=1:disk '^\\(([^,]+),' \"$cmdpath\"",
            f"set envfile=($disk,gpt1){ENV_PATH}",
            "load_env -f $envfile",
            'if [ -z "$usr_a_number" ]; then set usr_a_number=3; set usr_a_priority=1; set usr_a_successful=1;'
            " probe --part-uuid --set=usr_a_partuuid ($disk,gpt3); fi",
            'if [ -z "$usr_b_number" ]; then set usr_b_number=4; set usr_b_priority=0; set usr_b_tries=0; fi',
            "# CoreOS: the OEM partition may add kernel arguments (set linux_append=...).",
            "if [ -f ($disk,gpt6)/grub.cfg ]; then source ($disk,gpt6)/grub.cfg; fi",
            "set slot=none",
            "set best=0",
            *pick,
            *boot,
            'echo "locksmith: no bootable USR slot (every slot has priority 0 or no tries left); rebooting in 30 s"',
            "sleep 30",
            "reboot",
            "",
        ]
    )


def make_efi_binary(out: Path, cmdline: str, work: Path) -> None:
    """grub-mkstandalone: GRUB, its modules and the script in one EFI file (no core.img or MBR patching)."""
    require("grub-mkstandalone")
    cfg = work / "grub.cfg"
    cfg.write_text(grub_cfg(cmdline))
    args = ["grub-mkstandalone", "-O", "x86_64-efi", "-o", str(out), f"--modules={GRUB_MODULES}"]
    args += ["--locales=", "--fonts=", "--themes=", f"boot/grub/grub.cfg={cfg}"]
    run(args, "grub-mkstandalone")
