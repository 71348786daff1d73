"""The process managers the rest of the suite depends on really start working daemons."""

from __future__ import annotations

import base64

import httpx

from harness.devtools.dbus import PrivateBus
from harness.devtools.etcd import EtcdCluster


def test_single_etcd_serves_v3_and_v2(etcd: EtcdCluster) -> None:
    url = etcd.endpoints[0]
    key = base64.b64encode(b"devtools/probe").decode()
    r = httpx.post(f"{url}/v3/kv/put", json={"key": key, "value": base64.b64encode(b"x").decode()})
    assert r.status_code == 200
    r = httpx.put(f"{url}/v2/keys/devtools/probe2", data={"value": "y"})
    assert r.status_code in (200, 201)
    assert r.json()["node"]["value"] == "y"


def test_three_member_cluster_survives_leader_loss(etcd_cluster3: EtcdCluster) -> None:
    leader = etcd_cluster3.leader()
    assert leader is not None
    leader.kill()
    survivors = [m for m in etcd_cluster3.members if m is not leader]
    etcd_cluster3.wait_healthy(members=survivors, timeout=30)
    key = base64.b64encode(b"devtools/after-leader").decode()
    r = httpx.post(f"{survivors[0].client_url}/v3/kv/put", json={"key": key, "value": key}, timeout=5)
    assert r.status_code == 200
    leader.start()
    etcd_cluster3.wait_healthy(timeout=30)


async def test_private_bus_answers(dbus_bus: PrivateBus) -> None:
    from locksmith.bus.system import call_daemon, connect_system_bus, disconnect

    bus = await connect_system_bus()
    reply = await call_daemon(bus, "ListNames")
    assert "org.freedesktop.DBus" in reply.body[0]
    await disconnect(bus)
