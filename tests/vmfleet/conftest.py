"""What the vmfleet tests share: a namespace prefix of their own, a check that no test leaves a namespace
behind, and a target tree shaped like the image before its first boot."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.vmfleet import netns

# Never the demo's prefix: a test's sweep must not touch a demo running on the same machine.
PREFIX = "lsvmtest"
COREOS_CLOUDINIT = str(Path(sys.executable).with_name("coreos-cloudinit"))

# The accounts the image has when cloud-config first runs: Debian's root and sudo, and the etcd user and
# group etcd-server's package made (its unit runs etcd as that user). No `core`: the cloud-config makes it.
# (tests/cloudconfig/conftest.py's tree has core already and no etcd, so it is not reused here.)
ETCD_UID, ETCD_GID = 102, 105
ACCOUNTS = {
    "passwd": (
        f"root:x:0:0:root:/root:/bin/bash\netcd:x:{ETCD_UID}:{ETCD_GID}::/var/lib/etcd/:/usr/sbin/nologin\n",
        0o644,
    ),
    "group": (f"root:x:0:\nsudo:x:27:\netcd:x:{ETCD_GID}:\n", 0o644),
    "shadow": ("root:*:19000:0:99999:7:::\netcd:*:19000:0:99999:7:::\n", 0o600),
    "gshadow": ("root:*::\nsudo:*::\netcd:!::\n", 0o600),
}


@pytest.fixture(autouse=True)
def no_namespace_left() -> Iterator[None]:
    yield
    ours = re.compile(rf"{PREFIX}-{os.getpid()}-")
    left = [name for name in netns.namespaces() if ours.match(name)]
    netns.remove(left)  # so one failure does not spill into the next test
    assert left == [], f"namespaces left behind: {left}"


def image_tree(path: Path) -> Path:
    """An empty root tree with the image's accounts, for `coreos-cloudinit --root`."""
    etc = path / "etc"
    etc.mkdir(parents=True)
    for name, (text, mode) in ACCOUNTS.items():
        (etc / name).write_text(text)
        (etc / name).chmod(mode)
    return path


def apply(text: str, tree: Path) -> subprocess.CompletedProcess[str]:
    """`coreos-cloudinit --root tree --from-file` on `text` (the services it would start are skipped)."""
    data = tree.with_name(tree.name + ".yml")
    data.write_text(text)
    return subprocess.run(
        [COREOS_CLOUDINIT, "--root", str(tree), "--from-file", str(data)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def validate(text: str, where: Path) -> subprocess.CompletedProcess[str]:
    where.write_text(text)
    return subprocess.run(
        [COREOS_CLOUDINIT, "--validate", "--from-file", str(where)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def drop_in_environment(path: Path) -> dict[str, str]:
    """The `Environment="KEY=value"` settings of a unit drop-in, as systemd reads them (our values
    carry no specifiers, so `%%` is the only one undone)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            for word in shlex.split(line.removeprefix("Environment=")):
                key, _, value = word.partition("=")
                found[key] = value.replace("%%", "%")
    return found


def qemu_pids(marker: str) -> list[int]:
    """qemu processes whose command line mentions `marker` (each VM names its own folder)."""
    found = subprocess.run(["pgrep", "-f", f"qemu-system-x86_64.*{marker}"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]
