"""The VM launcher for real (qemu on a tap in the fleet's namespace, a copy-on-write disk each), the update
server on the fleet's bridge, and that Ctrl-C during the VM demo leaves nothing behind.

The disk here is blank: the firmware finds nothing to boot and waits, which is all these tests need (the
image's own boots are tests/image's)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.devtools.omaha_server import DevServer, in_private_network_namespace
from harness.vmfleet import hostconfig, netns
from harness.vmfleet.machines import launch, mac_address
from harness.vmfleet.netns import FleetNetwork

from .conftest import PREFIX, qemu_pids

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVYaJpN0mXuQwAO2T0cBnq9PpY1DcEQ2GcJ1l5pV9Xz test"


def _blank_disk(path: Path) -> Path:
    with path.open("wb") as f:
        f.truncate(64 << 20)
    return path


def test_macs_are_distinct_and_locally_administered() -> None:
    macs = {mac_address(i) for i in range(1, 300)}
    assert len(macs) == 299 and all(m.startswith("52:54:00:") for m in macs)
    with pytest.raises(ValueError, match="VM index 0"):
        mac_address(0)


def test_vms_run_on_taps_with_their_own_disks_and_stop_with_the_namespace(tmp_path: Path) -> None:
    image = _blank_disk(tmp_path / "image.raw")
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    fleet = hostconfig.plan(2, ssh_public_key=KEY, update_server="http://10.77.0.1:8080/v1/update/", members=1)
    with FleetNetwork(PREFIX) as net:
        machines = launch(net, fleet, image, tmp_path / "vms", "tcg", memory_mib=256)
        assert all(m.running for m in machines)
        links = net.ip("-o", "link", "show", "master", net.bridge).stdout
        assert "tap1" in links and "tap2" in links
        assert (machines[0].directory / "user_data").stat().st_mode & 0o777 == 0o600  # it holds TLS keys
        assert "hostname: vm2" in (machines[1].directory / "user_data").read_text()
        info = subprocess.run(
            ["qemu-img", "info", "-U", str(machines[0].directory / "disk.qcow2")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "qcow2" in info and str(image) in info
        pids = [m.process.pid for m in machines if m.process]
    assert not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in pids)
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before  # only the overlays were written


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_update_server_listens_on_the_bridge_only_inside_the_namespace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback"):
        DevServer(tmp_path, host="10.77.0.1")
    with FleetNetwork(PREFIX) as net, netns.inside(net.name):
        assert in_private_network_namespace()
        with DevServer(tmp_path, host=str(net.host_address.ip), log=io.StringIO()) as server:
            reply = httpx.post(f"{server.base_url}/v1/update/", content=b"<request", timeout=10)
            assert reply.status_code == 400  # reached, and it refused the bad body
    assert not in_private_network_namespace()  # back home afterwards


CTRL_C_RUN = """
import faulthandler, signal, sys
from pathlib import Path
faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it is, if it does not exit
# Ctrl-C as in a shell, whatever the test process's earlier tests left it (an inherited blocked or
# ignored SIGINT would make this wait forever; a full run once hung here after passing alone).
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
signal.signal(signal.SIGINT, signal.default_int_handler)
from harness.vmfleet.demo import VmDemoOptions, run
from harness.vmfleet.releases import Releases
out, image = Path(sys.argv[1]), Path(sys.argv[2])
try:
    run(VmDemoOptions(vms=2, out=out, memory_mib=256, accel="tcg", namespace_prefix=sys.argv[3]), Releases(image, out))
except KeyboardInterrupt:
    sys.exit(130)
"""


def _signal_state() -> str:
    lines = Path("/proc/self/status").read_text().splitlines()
    return " ".join(line.replace("\t", "") for line in lines if line.startswith(("SigBlk", "SigIgn")))


def test_ctrl_c_during_the_vm_demo_leaves_no_vm_namespace_or_bridge(tmp_path: Path) -> None:
    image = _blank_disk(tmp_path / "image.raw")
    out = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_RUN, str(out), str(image), PREFIX],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "VMs started" not in seen and time.monotonic() < deadline:
            seen += demo.stdout.readline()
        assert "VMs started" in seen, seen
        assert len(qemu_pids(str(out))) == 2
        ours = [n for n in netns.namespaces() if n.startswith(f"{PREFIX}-{demo.pid}-")]
        assert len(ours) == 1
        demo.send_signal(signal.SIGINT)
        try:
            # Read while waiting: a demo blocked writing to a full pipe would never exit.
            printed, _ = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGUSR1)  # its threads' stacks, then gone
            with contextlib.suppress(subprocess.TimeoutExpired):
                demo.wait(5)
            demo.kill()
            printed, _ = demo.communicate()
            pytest.fail(
                f"the demo did not exit within 60 s of Ctrl-C (this test process: {_signal_state()}); "
                f"it printed:\n{seen}{printed}"
            )
        assert demo.returncode == 130, seen + printed
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        netns.sweep(PREFIX)  # a demo killed here leaves its VMs in its namespace: stop them, whatever failed
    assert qemu_pids(str(out)) == []
    assert [n for n in netns.namespaces() if n.startswith(f"{PREFIX}-{demo.pid}-")] == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "tap1" not in links and "br0" not in links  # nothing ever reached the machine's own network
