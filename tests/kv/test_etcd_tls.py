"""TLS against real etcd servers: CA-only (server verified, no client certificate) and
CA + client certificate + key (mutual TLS), for both etcd backends; bad CAs give one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.devtools import pki as test_pki
from harness.devtools.etcd import EtcdCluster, EtcdTLS
from locksmith.kv import KVAuthError, KVOptions, KVStore, KVUnavailable, open_store, parse_endpoints

PREFIX = {"etcd3": "", "etcd2": "etcd2+"}


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    # The server certificate is a member's: serverAuth and clientAuth (etcd's HTTP gateway dials its own
    # gRPC port with it, so under client-cert-auth it must be good for client auth too), for 127.0.0.1.
    ours = test_pki.write(test_pki.generate({"localhost": "127.0.0.1"}), d)
    other = test_pki.write(test_pki.generate({}), d / "other")
    server = ours.members["localhost"]
    return PKI(ours.ca, server.cert, server.key, ours.client.cert, ours.client.key, other.ca)


@pytest.fixture(scope="module")
def tls_etcd(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """Server TLS only: clients verify the server, and need no certificate of their own."""
    with EtcdCluster(
        tmp_path_factory.mktemp("etcd-tls"), enable_v2=True, tls=EtcdTLS(pki.server_cert, pki.server_key)
    ) as c:
        yield c


@pytest.fixture(scope="module")
def mtls_etcd(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """Mutual TLS: clients must present a certificate signed by the CA."""
    tls = EtcdTLS(pki.server_cert, pki.server_key, client_ca=pki.ca)
    with EtcdCluster(tmp_path_factory.mktemp("etcd-mtls"), enable_v2=True, tls=tls) as c:
        yield c


def open_tls(
    backend: str, cluster: EtcdCluster, ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> KVStore:
    endpoints = parse_endpoints([PREFIX[backend] + u for u in cluster.endpoints])
    return open_store(
        KVOptions(
            endpoints,
            ca_file=str(ca) if ca else None,
            cert_file=str(cert) if cert else None,
            key_file=str(key) if key else None,
            retry_budget=2.0,
        )
    )


async def round_trip(store: KVStore, key: str) -> None:
    created = await store.create(key, b"v")
    assert created is not None
    updated = await store.compare_and_swap(key, b"w", created.revision)
    assert updated is not None
    assert await store.get(key) == updated


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_ca_only_verifies_server_without_client_cert(
    backend: str, pki: PKI, tls_etcd: EtcdCluster, unique_key: str
) -> None:
    store = open_tls(backend, tls_etcd, pki.ca)
    try:
        await round_trip(store, f"{unique_key}/k")
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_ca_cert_and_key_for_mutual_tls(backend: str, pki: PKI, mtls_etcd: EtcdCluster, unique_key: str) -> None:
    store = open_tls(backend, mtls_etcd, pki.ca, pki.client_cert, pki.client_key)
    try:
        await round_trip(store, f"{unique_key}/k")
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_missing_client_cert_is_a_clear_auth_error(backend: str, pki: PKI, mtls_etcd: EtcdCluster) -> None:
    store = open_tls(backend, mtls_etcd, pki.ca)
    try:
        # Usually a TLS alert (KVAuthError); under TLS 1.3 the server may instead just drop the
        # connection, which reads as unavailable — either way the line must point at the fix.
        with pytest.raises((KVAuthError, KVUnavailable)) as info:
            await store.get("k")
        assert "client certificate" in str(info.value) and "\n" not in str(info.value)
    finally:
        await store.aclose()


@pytest.mark.parametrize("backend", ["etcd3", "etcd2"])
async def test_wrong_ca_names_the_ca_file(backend: str, pki: PKI, tls_etcd: EtcdCluster) -> None:
    store = open_tls(backend, tls_etcd, pki.other_ca)
    try:
        with pytest.raises(KVAuthError) as info:
            await store.get("k")
        message = str(info.value)
        assert str(pki.other_ca) in message and "verif" in message and "\n" not in message
    finally:
        await store.aclose()


def test_unloadable_ca_file_is_named(tmp_path: Path, tls_etcd: EtcdCluster) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("this is not a certificate\n")
    with pytest.raises(KVAuthError) as info:
        open_tls("etcd3", tls_etcd, bogus)
    assert str(bogus) in str(info.value)


def test_key_without_certificate_is_refused(pki: PKI, tls_etcd: EtcdCluster) -> None:
    with pytest.raises(KVAuthError, match="certificate file"):
        open_tls("etcd3", tls_etcd, pki.ca, None, pki.client_key)
