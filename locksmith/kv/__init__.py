"""The KV layer: one small protocol (base.py) and three backends, chosen by endpoint scheme."""

from __future__ import annotations

from locksmith.kv.base import (
    BACKEND_EMBEDDED,
    BACKEND_ETCD2,
    BACKEND_ETCD3,
    ENDPOINT_HELP,
    Change,
    Committed,
    Endpoint,
    Entry,
    ExpiringKeys,
    Heads,
    InLine,
    KVAuthError,
    KVError,
    KVOptions,
    KVProtocolError,
    KVStore,
    KVUnavailable,
    NoTransactions,
    Place,
    Transactions,
    parse_endpoint,
    parse_endpoints,
)


def open_store(options: KVOptions, decisive_key: str | None = None) -> KVStore:
    """Build the backend the endpoints name. Nothing connects until the first operation.

    `decisive_key` (the semaphore's key): for plain http(s):// etcd endpoints, the API is the one whose
    keyspace holds it (kv/choose.py), so a host replacing a Go locksmith joins the same semaphore."""
    # Imported here so a host on the embedded store never loads the HTTP stack, and back.
    if options.backend == BACKEND_EMBEDDED:
        from locksmith.kv.embedded import EmbeddedStore

        return EmbeddedStore(
            options.endpoints[0].address, busy_timeout=options.retry_budget, read_only=options.read_only
        )
    if options.backend == BACKEND_ETCD3 and decisive_key is not None and not options.endpoints[0].api_named:
        from locksmith.kv.choose import ApiChoosingStore

        return ApiChoosingStore(options, decisive_key)
    if options.backend == BACKEND_ETCD3:
        from locksmith.kv.etcd3 import Etcd3Store

        return Etcd3Store(options)
    if options.backend == BACKEND_ETCD2:
        from locksmith.kv.etcd2 import Etcd2Store

        return Etcd2Store(options)
    raise ValueError(f"unknown KV backend {options.backend!r}: {ENDPOINT_HELP}")


__all__ = [
    "BACKEND_EMBEDDED",
    "BACKEND_ETCD2",
    "BACKEND_ETCD3",
    "ENDPOINT_HELP",
    "Change",
    "Committed",
    "Endpoint",
    "Entry",
    "ExpiringKeys",
    "Heads",
    "InLine",
    "KVAuthError",
    "KVError",
    "KVOptions",
    "KVProtocolError",
    "KVStore",
    "KVUnavailable",
    "NoTransactions",
    "Place",
    "Transactions",
    "open_store",
    "parse_endpoint",
    "parse_endpoints",
]
