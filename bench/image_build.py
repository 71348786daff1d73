"""Image builder figures: cold and warm build time, reproducibility (USR sha256 twice), sizes per format, and
boot time under qemu (TCG, or KVM when a probe guest proves it) to the root prompt and to locksmithd READY,
and of the qcow2 and vmdk images as built to their login prompt (the vmdk boots too: qemu reads it).

`python -m bench.image_build [--cold] [--no-boot]`; --cold builds the Debian tree into a fresh cache first
(mmdebstrap, minutes). Writes bench/results/image_build.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench._common import RESULTS_DIR, host_info
from locksmith.image.build import USR_IMAGE, BuildOptions, build
from locksmith.image.formats import FORMATS
from locksmith.image.qemu import Console, VmOptions, choose_accel, kvm_works, qemu_command, stop
from locksmith.image.recipe import DEFAULT_CACHE
from locksmith.image.session import LOGIN_PROMPT, booted, with_autologin

QUICK_ARGV = ["--no-boot"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _build(work: Path, name: str, cache: Path, formats: list[str]) -> tuple[float, dict, Path]:
    started = time.monotonic()
    result = build(BuildOptions(version="1.0.0", out=work / name, formats=formats, cache_dir=cache))
    return time.monotonic() - started, result.timings, result.out


def _boot(out: Path, work: Path) -> dict:
    boot_work = work / "boot"
    boot_work.mkdir()
    disk = with_autologin(out / "locksmith_production_ami_image.bin", boot_work)
    started = time.monotonic()
    with booted(disk, boot_work, 1800) as (shell, why):
        prompt = time.monotonic() - started
        shell.run("systemctl is-system-running --wait", 900)
        _, ready = shell.run("systemctl show -P ActiveEnterTimestampMonotonic locksmithd.service", 60)
        _, firmware = shell.run("systemd-analyze time | head -1", 60)
    return {
        "accel": why,
        "wall_to_root_prompt_s": round(prompt, 1),
        "locksmithd_ready_after_kernel_start_s": round(int(ready.strip()) / 1e6, 1),
        "systemd_analyze": firmware.strip(),
    }


def _boot_to_login(image: Path, work: Path) -> dict:
    """Wall time from qemu's start to the serial console's login prompt, for an image as built (no autologin):
    the qcow2 and the vmdk boot the same OS through the same firmware and GRUB."""
    work.mkdir()
    accel, why = choose_accel("auto")
    cmd = qemu_command(VmOptions(image, snapshot=True), accel, work)
    proc = subprocess.Popen([*cmd, "-serial", "stdio"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    console = Console(proc, work / "serial.log")
    started = time.monotonic()
    try:
        found = console.wait_for(LOGIN_PROMPT, 1800)
    finally:
        stop(proc)
        console.close()
    return {"accel": why, "wall_to_login_prompt_s": round(time.monotonic() - started, 1) if found else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.image_build")
    parser.add_argument("--cold", action="store_true", help="build the Debian tree into a fresh cache first")
    parser.add_argument("--no-boot", action="store_true")
    args = parser.parse_args(argv)
    figures: dict = {"host": host_info()}
    with tempfile.TemporaryDirectory(prefix="bench-image-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        cache = work / "cache" if args.cold else DEFAULT_CACHE
        if args.cold:
            # The dependency wheels too would be fetched again; keep them (PyPI time is not the builder's).
            cache.mkdir()
            for house in DEFAULT_CACHE.glob("wheels-*"):
                shutil.copytree(house, cache / house.name)
        first, timings, out1 = _build(work, "first", cache, ["all"])
        figures["first_build_s" if not args.cold else "cold_build_s"] = round(first, 1)
        figures["first_build_steps_s"] = {k: round(v, 1) for k, v in timings.items()}
        figures["sizes_bytes"] = {p.name: p.stat().st_size for p in sorted(out1.iterdir())}
        figures["formats"] = list(FORMATS)
        warm, timings, out2 = _build(work, "warm", cache, ["qemu", "ami"])
        figures["warm_build_s"] = round(warm, 1)
        figures["warm_build_steps_s"] = {k: round(v, 1) for k, v in timings.items()}
        sums = [_sha256(out1 / USR_IMAGE), _sha256(out2 / USR_IMAGE)]
        figures["usr_sha256"] = sums
        figures["usr_reproducible"] = sums[0] == sums[1]
        if not args.no_boot:
            figures["kvm_probe_booted"] = kvm_works()
            if not figures["kvm_probe_booted"]:
                figures["kvm_boot"] = "not measured: the KVM probe guest did not print (nested KVM here), so TCG"
            figures["boot"] = _boot(out2, work)
            for name in ("locksmith_production_qemu_image.img", "locksmith_production_vmware_image.vmdk"):
                figures.setdefault("boot_to_login", {})[name] = _boot_to_login(out1 / name, work / name)
    RESULTS_DIR.mkdir(exist_ok=True)
    target = RESULTS_DIR / ("image_build_quick.json" if args.no_boot else "image_build.json")
    target.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0 if figures["usr_reproducible"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
