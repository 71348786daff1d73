"""FleetLock client against the real loopback FleetLock server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.devtools.fleetlock_server import FleetLockServer, RecordedOperation
from locksmith.fleetlock import FleetLockClient, FleetLockError, FleetLockUnavailableError
from locksmith.protocol.fleetlock import validate_group


@pytest.fixture
def server() -> Iterator[FleetLockServer]:
    with FleetLockServer(max_slots=1, group_slots={"workers": 2}) as s:
        yield s


async def test_slots_are_limited_and_calls_idempotent(server: FleetLockServer) -> None:
    async with FleetLockClient(server.url, "node-a") as a, FleetLockClient(server.url + "/", "node-b") as b:
        await a.pre_reboot()
        await a.pre_reboot()  # idempotent: still one slot
        assert server.holders() == ["node-a"]
        with pytest.raises(FleetLockError) as err:
            await b.pre_reboot()
        assert (err.value.status, err.value.kind) == (409, "failed_lock")
        assert str(err.value) == (
            "FleetLock pre-reboot refused (HTTP 409, failed_lock): all 1 reboot slots of group default are taken"
            " (by node-a)"
        )
        await a.steady_state()
        await a.steady_state()  # idempotent release
        await b.pre_reboot()
    assert server.holders() == ["node-b"]
    assert [(op.action, op.node_id, op.status) for op in server.operations] == [
        ("pre-reboot", "node-a", 200),
        ("pre-reboot", "node-a", 200),
        ("pre-reboot", "node-b", 409),
        ("steady-state", "node-a", 200),
        ("steady-state", "node-a", 200),
        ("pre-reboot", "node-b", 200),
    ]


async def test_groups_are_separate_with_their_own_limits(server: FleetLockServer) -> None:
    for node in ("w1", "w2"):
        async with FleetLockClient(server.url, node, "workers") as client:
            await client.pre_reboot()
    async with FleetLockClient(server.url, "db1", "db.prod-1") as client:
        await client.pre_reboot()
    assert server.holders("workers") == ["w1", "w2"]
    assert server.holders("db.prod-1") == ["db1"]
    assert server.operations[0] == RecordedOperation("pre-reboot", "w1", "workers", 200)


async def test_wire_format(server: FleetLockServer) -> None:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    transport = httpx.AsyncHTTPTransport()
    async with FleetLockClient(server.url, "node-a", "g1", transport=transport) as client:
        client._http.event_hooks["request"].append(record)
        await client.pre_reboot()
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/v1/pre-reboot"
    assert request.headers["fleet-lock-protocol"] == "true"
    assert request.content == b'{"client_params":{"id":"node-a","group":"g1"}}'


async def test_server_errors_surface_as_one_line(server: FleetLockServer) -> None:
    server.fail_with = (503, "unavailable", "maintenance\nuntil noon")
    async with FleetLockClient(server.url, "node-a") as client:
        with pytest.raises(
            FleetLockError, match=r"^FleetLock steady-state refused \(HTTP 503, unavailable\): maintenance until noon$"
        ):
            await client.steady_state()


async def test_server_rejects_protocol_violations(server: FleetLockServer) -> None:
    async with httpx.AsyncClient() as http:
        no_header = await http.post(server.url + "/v1/pre-reboot", json={"client_params": {"id": "a", "group": "g"}})
        bad_group = await http.post(
            server.url + "/v1/pre-reboot",
            headers={"fleet-lock-protocol": "true"},
            json={"client_params": {"id": "a", "group": "a/b"}},
        )
        bad_body = await http.post(
            server.url + "/v1/pre-reboot", headers={"fleet-lock-protocol": "true"}, content=b"[]"
        )
    assert (no_header.status_code, no_header.json()["kind"]) == (400, "missing_header")
    assert (bad_group.status_code, bad_group.json()["kind"]) == (400, "bad_group")
    assert (bad_body.status_code, bad_body.json()["kind"]) == (400, "bad_request")
    assert server.holders("g") == []


async def test_non_fleetlock_error_body() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    async with FleetLockClient("http://127.0.0.1:9", "n", transport=httpx.MockTransport(reply)) as client:
        with pytest.raises(FleetLockError, match=r"HTTP 502, not_fleetlock\): unexpected reply: <html>Bad Gateway"):
            await client.pre_reboot()


async def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with FleetLockClient(f"http://127.0.0.1:{port}", "n", attempts=3, max_backoff=0.01) as client:
        with pytest.raises(FleetLockUnavailableError, match="after 3 attempts"):
            await client.pre_reboot()


async def test_connection_error_then_success_is_retried(server: FleetLockServer) -> None:
    calls = 0
    real = httpx.AsyncHTTPTransport()

    class Flaky(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise httpx.ConnectError("connection refused", request=request)
            return await real.handle_async_request(request)

    async with FleetLockClient(server.url, "node-a", transport=Flaky(), max_backoff=0.01) as client:
        await client.pre_reboot()
    assert calls == 3 and server.holders() == ["node-a"]


@pytest.mark.parametrize("group", ["", "a/b", "white space", "ü"])
def test_invalid_group(group: str) -> None:
    with pytest.raises(ValueError, match="FleetLock group"):
        validate_group(group)


@pytest.mark.parametrize(("url", "node"), [("ftp://x", "n"), ("not a url", "n"), ("http://127.0.0.1", "")])
def test_invalid_client_settings(url: str, node: str) -> None:
    with pytest.raises(ValueError, match="FleetLock"):
        FleetLockClient(url, node)


def test_wire_format_round_trips_between_the_two_ends() -> None:
    from locksmith.protocol import fleetlock as wire

    body = json.dumps(wire.request_body(wire.ClientParams("node-a", "workers"))).encode()
    assert json.loads(body) == {"client_params": {"id": "node-a", "group": "workers"}}
    assert wire.parse_request_body(body) == wire.ClientParams("node-a", "workers")
    assert wire.operation_of("/v1/pre-reboot") == "pre-reboot" and wire.operation_of("/v1/other") is None
    assert wire.has_protocol_header({"fleet-lock-protocol": "True"}) and not wire.has_protocol_header({})
    error = json.dumps(wire.error_body("failed_lock", "all\n slots taken")).encode()
    assert wire.parse_error_body(error) == ("failed_lock", "all slots taken")
    assert wire.parse_error_body(b"<html>") is None and wire.parse_error_body(b'{"kind": 1}') is None


@pytest.mark.parametrize(
    ("raw", "kind", "node_id"),
    [
        (b"not json", "bad_request", ""),
        (b'{"client_params": {"id": ""}}', "bad_request", ""),
        (b'{"client_params": {"id": "", "group": "g"}}', "bad_request", ""),
        (b'{"client_params": {"id": "n1", "group": "a/b"}}', "bad_group", "n1"),
    ],
)
def test_bad_request_bodies_name_their_kind(raw: bytes, kind: str, node_id: str) -> None:
    from locksmith.protocol.fleetlock import FleetLockFormatError, parse_request_body

    with pytest.raises(FleetLockFormatError) as caught:
        parse_request_body(raw)
    assert (caught.value.kind, caught.value.node_id) == (kind, node_id)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["kind", "value", "x"]), inner),
    max_leaves=12,
)


@given(st.one_of(st.binary(max_size=300), _JSON.map(lambda v: json.dumps(v).encode())))
def test_error_replies_from_the_network_parse_to_one_bounded_line_or_none(raw: bytes) -> None:
    from locksmith.protocol import fleetlock as wire

    parsed = wire.parse_error_body(raw)
    if parsed is not None:
        kind, value = parsed
        assert len(kind) <= wire.MAX_KIND_CHARS and len(value) <= wire.MAX_VALUE_CHARS
        assert kind.isprintable() and value.isprintable()


@given(st.one_of(st.binary(max_size=300), _JSON.map(lambda v: json.dumps({"client_params": v}).encode())))
def test_request_bodies_parse_or_fail_with_a_format_error(raw: bytes) -> None:
    from locksmith.protocol import fleetlock as wire

    try:
        params = wire.parse_request_body(raw)
    except wire.FleetLockFormatError as exc:
        assert "\n" not in str(exc)
    else:
        assert params.id and wire.GROUP_PATTERN.match(params.group)


def test_hostile_error_replies_are_refused_or_cut() -> None:
    from locksmith.protocol import fleetlock as wire

    assert wire.parse_error_body(b"[" * 100_000 + b"]" * 100_000) is None  # too large, and too deep
    assert wire.parse_error_body(b"[" * 20_000 + b"]" * 20_000) is None  # too deep for the parser
    long = json.dumps({"kind": "k" * 10_000, "value": "v\x1b[2J" * 2_000}).encode()
    kind, value = wire.parse_error_body(long) or ("", "")
    assert len(kind) == wire.MAX_KIND_CHARS and len(value) == wire.MAX_VALUE_CHARS and "\x1b" not in value
