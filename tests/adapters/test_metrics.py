"""The metrics endpoint, scraped over loopback TCP and over a unix socket."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from locksmith.agent.metrics import ListenAddress, Metrics, MetricsServer, parse_listen


def samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def busy_metrics() -> Metrics:
    m = Metrics(states=["idle", "need-reboot", "acquiring"])
    m.set_strategy("etcd-lock")
    m.set_state("idle", now=1700000000.0)
    m.set_state("acquiring", now=1700000060.5)
    m.lock_attempt()
    m.lock_attempt()
    m.lock_failure()
    m.add_lock_wait(2.5)
    m.add_lock_wait(1.0)
    return m


async def test_scrape_over_loopback_tcp() -> None:
    async with MetricsServer(busy_metrics(), parse_listen("127.0.0.1:0")) as server, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
        missing = await client.get(f"http://127.0.0.1:{server.port}/")
        post = await client.post(f"http://127.0.0.1:{server.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = samples(response.text)
    assert values['locksmith_state{state="acquiring"}'] == 1
    assert values['locksmith_state{state="idle"}'] == 0
    assert values['locksmith_state{state="need-reboot"}'] == 0
    assert values['locksmith_strategy_info{strategy="etcd-lock"}'] == 1
    assert values["locksmith_lock_attempts_total"] == 2
    assert values["locksmith_lock_failures_total"] == 1
    assert values["locksmith_lock_wait_seconds_total"] == 3.5
    assert values["locksmith_last_transition_timestamp_seconds"] == 1700000060.5
    assert "# TYPE locksmith_lock_attempts_total counter" in response.text
    assert (missing.status_code, post.status_code) == (404, 405)


async def test_scrape_over_unix_socket_and_live_values(tmp_path: Path) -> None:
    metrics = Metrics()
    socket_path = tmp_path / "metrics.sock"
    socket_path.touch()  # ordinary file in the way: must not be deleted
    with pytest.raises(OSError):
        await MetricsServer(metrics, parse_listen(str(socket_path))).start()
    assert socket_path.exists()
    socket_path.unlink()
    async with MetricsServer(metrics, parse_listen(str(socket_path))):
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        async with httpx.AsyncClient(transport=transport) as client:
            before = samples((await client.get("http://localhost/metrics")).text)
            metrics.set_state('we"ird\\')
            after = samples((await client.get("http://localhost/metrics")).text)
    assert before == {
        "locksmith_lock_attempts_total": 0,
        "locksmith_lock_failures_total": 0,
        "locksmith_lock_wait_seconds_total": 0,
        "locksmith_expired_holders_removed_total": 0,
    }
    assert after['locksmith_state{state="we\\"ird\\\\"}'] == 1
    assert not socket_path.exists()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("9100", ListenAddress("127.0.0.1", 9100)),
        ("127.0.0.1:9100", ListenAddress("127.0.0.1", 9100)),
        ("localhost:9100", ListenAddress("127.0.0.1", 9100)),
        ("[::1]:9100", ListenAddress("::1", 9100)),
        ("/run/locksmith/metrics.sock", ListenAddress(unix_path=Path("/run/locksmith/metrics.sock"))),
    ],
)
def test_parse_listen(spec: str, expected: ListenAddress) -> None:
    assert parse_listen(spec) == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [("0.0.0.0:9100", "only loopback"), ("10.0.0.1:1", "only loopback"), ("x", "bad port"), ("1:99999", "bad port")],
)
def test_parse_listen_rejects(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_listen(spec)


def test_the_agents_observer_counts_attempts_failures_and_follows_the_state() -> None:
    from datetime import UTC, datetime

    from locksmith.agent.ports import LockAttempt, LockFailure, LockReleased, StateEntered
    from locksmith.agent.states import State
    from locksmith.agent.wiring import metrics_observer

    m = Metrics(states=[s.value for s in State])
    observe = metrics_observer(m)
    now = datetime(2024, 1, 10, tzinfo=UTC)
    observe(StateEntered(State.ACQUIRING, State.NEED_REBOOT, now))
    observe(LockAttempt())
    observe(LockFailure("busy"))
    observe(LockAttempt())
    observe(LockReleased("dropped"))  # not counted
    observe(StateEntered(State.PRE_REBOOT, State.ACQUIRING, now))
    values = samples(m.render())
    assert values["locksmith_lock_attempts_total"] == 2 and values["locksmith_lock_failures_total"] == 1
    assert values['locksmith_state{state="pre-reboot"}'] == 1 and values['locksmith_state{state="acquiring"}'] == 0
