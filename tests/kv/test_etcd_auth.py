"""Username/password against a private etcd with auth enabled: v3 token auth and v2 basic auth."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from harness.devtools.etcd import EtcdCluster
from locksmith.kv import Change, KVAuthError, KVOptions, KVStore, open_store, parse_endpoints

V3_PASSWORD = "v3-secret"
V2_PASSWORD = "v2-secret"
PREFIX = {"etcd3": "", "etcd2": "etcd2+"}
PASSWORD = {"etcd3": V3_PASSWORD, "etcd2": V2_PASSWORD}


@pytest.fixture(scope="module")
def auth_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A private etcd (auth changes must not touch the session one) with both v3 auth and
    v2 auth on; v2's guest role loses its default access so v2 really needs the password."""
    with EtcdCluster(tmp_path_factory.mktemp("etcd-auth"), enable_v2=True) as cluster:
        url = cluster.endpoints[0]
        for path, body in [
            ("/v3/auth/role/add", {"name": "root"}),
            ("/v3/auth/user/add", {"name": "root", "password": V3_PASSWORD}),
            ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
            ("/v3/auth/enable", {}),
        ]:
            httpx.post(url + path, json=body, timeout=5).raise_for_status()
        httpx.put(url + "/v2/auth/users/root", json={"user": "root", "password": V2_PASSWORD}).raise_for_status()
        httpx.put(url + "/v2/auth/enable").raise_for_status()
        revoke = {"role": "guest", "revoke": {"kv": {"read": ["/*"], "write": ["/*"]}}}
        httpx.put(url + "/v2/auth/roles/guest", json=revoke, auth=("root", V2_PASSWORD)).raise_for_status()
        yield cluster


def open_with(backend: str, cluster: EtcdCluster, username: str | None, password: str | None) -> KVStore:
    endpoints = parse_endpoints([PREFIX[backend] + u for u in cluster.endpoints])
    return open_store(KVOptions(endpoints, username=username, password=password, retry_budget=2.0))


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_good_password_reads_writes_and_watches(backend: str, auth_etcd: EtcdCluster, unique_key: str) -> None:
    store = open_with(backend, auth_etcd, "root", PASSWORD[backend])
    try:
        key = f"{unique_key}/sem"
        created = await store.create(key, b"1")
        assert created is not None
        changes = aiter(store.watch(key, created.revision))
        pending = asyncio.ensure_future(anext(changes))
        updated = await store.compare_and_swap(key, b"2", created.revision)
        assert updated is not None
        async with asyncio.timeout(15):
            assert await pending == Change(key, b"2", updated.revision)
        await changes.aclose()  # type: ignore[attr-defined]
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
@pytest.mark.parametrize(("username", "password"), [("root", "wrong"), (None, None)])
async def test_bad_or_missing_credentials_are_a_clear_auth_error(
    backend: str, username: str | None, password: str | None, auth_etcd: EtcdCluster
) -> None:
    store = open_with(backend, auth_etcd, username, password)
    try:
        with pytest.raises(KVAuthError) as info:
            await store.get("k")
        message = str(info.value)
        assert "\n" not in message
        assert ("check the etcd username" if username else "set the etcd username") in message
    finally:
        await store.aclose()


async def test_v3_authenticates_again_when_the_token_is_rejected(auth_etcd: EtcdCluster, unique_key: str) -> None:
    store = open_with("etcd3", auth_etcd, "root", V3_PASSWORD)
    try:
        created = await store.create(f"{unique_key}/k", b"1")
        assert created is not None
        store._token = "NotAValidTokenAb.1"  # type: ignore[attr-defined]  # as after a token expiry
        assert await store.get(f"{unique_key}/k") == created
        assert store._token not in (None, "NotAValidTokenAb.1")  # type: ignore[attr-defined]
    finally:
        await store.aclose()


async def test_v3_credentials_against_an_etcd_without_auth_still_work(etcd: EtcdCluster, unique_key: str) -> None:
    store = open_with("etcd3", etcd, "root", "anything")
    try:
        assert await store.create(f"{unique_key}/k", b"1") is not None
    finally:
        await store.aclose()
