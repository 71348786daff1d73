"""Shared fixtures: real etcd processes and a private dbus-daemon, started and stopped here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.devtools.dbus import PrivateBus
from harness.devtools.etcd import EtcdCluster

# The files that boot VMs take most of the run: started first, with xdist's --no-loadscope-reorder
# (pyproject), they run beside the rest instead of after it. One worker boots the disk; the other boots
# the pxe and qemu formats and then the 2-VM rollout, whose V1/V2 the first worker builds meanwhile.
_FIRST = ("tests/image/test_boot.py", "tests/image/test_boot_formats.py", "tests/vmfleet/test_rollout.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return _FIRST.index(path) if path in _FIRST else len(_FIRST)

    items.sort(key=rank)  # stable: every file keeps its own order


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member with both the v3 gateway and the v2 keys API enabled, shared by the session.

    Tests keep apart by using their own key prefixes (see `unique_key`)."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=1, enable_v2=True)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd_cluster3(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A private three-member cluster for fault tests (members may be killed and restarted)."""
    cluster = EtcdCluster(tmp_path / "etcd3", size=3, enable_v2=True)
    cluster.start(timeout=60)
    yield cluster
    cluster.stop()


@pytest.fixture
def dbus_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """A private bus, set as this process's system bus for the duration of the test."""
    bus = PrivateBus(tmp_path / "dbus")
    bus.start()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    yield bus
    bus.stop()


@pytest.fixture
def unique_key(request: pytest.FixtureRequest) -> str:
    """A key prefix no other test uses, so tests can share one etcd."""
    import uuid

    return f"test/{request.node.name.replace('[', '_').replace(']', '')}/{uuid.uuid4().hex[:8]}"
