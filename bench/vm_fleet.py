"""The VM fleet's rollout as figures (issue 13): `locksmith-demo --vms N` run for real, measured from outside
the VMs (serial consoles, an etcd watch on the semaphore, the update server's log).

Figures: the makespan (first lock taken → last lock given back) against the hosts' turns back to back (each
host's lock from taken to given back after its healthy boot; goal: ratio ≤ 1.2), the time from publishing V2
to the first download, and each boot's time (GRUB's choice → login prompt). Root and qemu; KVM only when a
probe guest boots, else TCG (said in the result). Writes bench/results/vm_fleet.json (vm_fleet_quick.json
for the 2-VM quick run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench._common import RESULTS_DIR, load_average, write_result
from harness.vmfleet.demo import VmDemoOptions
from harness.vmfleet.demo import run as run_demo

QUICK_ARGV = ["--vms", "2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.vm_fleet")
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--memory", type=int, default=1024, help="MiB per VM")
    args = parser.parse_args(argv)
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-vmfleet-", dir="/var/tmp") as tmp:
        out = Path(tmp) / "demo"
        status = run_demo(VmDemoOptions(vms=args.vms, out=out, memory_mib=args.memory))
        summary = json.loads((out / "summary.json").read_text())
    target = RESULTS_DIR / ("vm_fleet.json" if args.vms >= 3 else "vm_fleet_quick.json")
    measured = "locksmith-demo --vms N: V1 -> V2 with real reboots, seen from outside the VMs"
    write_result(target, "vm_fleet", measured, summary, load)
    print(f"written: {target}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
