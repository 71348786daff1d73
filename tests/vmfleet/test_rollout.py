"""Two VMs from our image roll V1 → V2 end to end: the VM demo with --vms 2, its facts read from what it
measured outside the VMs (the etcd watch on the semaphore, the serial consoles, the update server's log,
each host's slot table read over SSH at the end), as summary.json holds them.

Minutes under TCG (two boots, two downloads of V2, two reboots one after the other); KVM when a probe
guest proves it works. The images are the set tests/image/test_boot.py also boots, built once per source.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.devtools.interruptible import finish
from harness.vmfleet import netns

from .conftest import PREFIX, qemu_pids

pytestmark = pytest.mark.timeout(3000)
RUN_SECONDS = 2700  # cold: both images built (~5 min), then ~12 min of rollout under TCG on two busy cores
ROLLOUT = """
import sys
from pathlib import Path
from harness.vmfleet.demo import VmDemoOptions, run
try:
    sys.exit(run(VmDemoOptions(vms=2, out=Path(sys.argv[1]), memory_mib=768, namespace_prefix=sys.argv[2])))
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_two_vms_update_one_at_a_time_and_both_stick_on_usr_b(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-c", ROLLOUT, str(out), PREFIX],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Past the deadline, Ctrl-C: the demo removes its VMs and namespace, then the test fails.
    said, _ = finish(demo, RUN_SECONDS, "the 2-VM rollout", stop_seconds=120)
    assert demo.returncode == 0, said[-6000:]
    summary = json.loads((out / "summary.json").read_text())
    # The independent etcd watch saw a holder, and never two at once.
    assert summary["max"] == 1 and summary["max_holders_seen"] == 1, said[-6000:]
    hosts = summary["hosts"]
    assert sorted(hosts) == ["vm1", "vm2"]
    for name, host in hosts.items():
        # The serial console saw exactly one reboot; the watch one turn under the lock, given back.
        assert host["reboots"] == 1 and host["lock_holds"] == 1 and len(host["turn_seconds"]) == 1, (name, host)
        # The console's last boot: V2 from USR-B; the slot table (over SSH) marks USR-B good and booted.
        assert host["final"] == "2.0.0 from USR-B", (name, host)
        assert host["marked_successful"] and "priority=2 tries=0 successful=1 (booted)" in host["usr_b"], host
    assert summary["publish_to_first_download_seconds"] is not None
    assert (out / "timeline.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Nothing left running or configured: no VM, no namespace (nor its bridge, which lives inside it).
    assert qemu_pids(str(out)) == []
    assert [n for n in netns.namespaces() if n.startswith(f"{PREFIX}-{demo.pid}-")] == []
