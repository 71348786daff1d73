"""locksmithctl end to end: the installed console script run as a subprocess against real stores."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.devtools.etcd import EtcdCluster
from locksmith.kv import KVOptions, open_store, parse_endpoints
from locksmith.protocol.semaphore import semaphore_key

LOCKSMITHCTL = str(Path(sys.executable).with_name("locksmithctl"))
MACHINE_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Ctl:
    """Runs locksmithctl with a clean environment pointed at one store."""

    endpoints: list[str]
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOCKSMITHCTL, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def kv_options(self) -> KVOptions:
        return KVOptions(endpoints=parse_endpoints(self.endpoints), retry_budget=5.0)

    async def raw(self, group: str | None = None) -> bytes | None:
        store = open_store(self.kv_options())
        try:
            entry = await store.get(semaphore_key(group))
            return None if entry is None else entry.value
        finally:
            await store.aclose()

    async def put(self, value: bytes, group: str | None = None) -> None:
        store = open_store(self.kv_options())
        try:
            assert await store.create(semaphore_key(group), value) is not None
        finally:
            await store.aclose()


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKSMITH", "REBOOT_"))}
    machine_id = tmp_path / "machine-id"
    machine_id.write_text(MACHINE_ID + "\n")
    env["LOCKSMITHCTL_MACHINE_ID_FILE"] = str(machine_id)
    return env


@pytest.fixture
def ctl(tmp_path: Path) -> Ctl:
    """On the embedded store (the fast default for most CLI behaviour)."""
    endpoints = [f"file://{tmp_path}/kv.db"]
    env = clean_env(tmp_path)
    env["LOCKSMITHCTL_ENDPOINT"] = endpoints[0]
    ctl = Ctl(endpoints, env)
    # On its own thread: async tests request this fixture from inside their running event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _create_store(ctl)).result(timeout=30)
    return ctl


async def _create_store(ctl: Ctl) -> None:
    """The empty store a host has once locksmithd ran (it opens the store at start): `status` reads
    an existing file only, it never creates one."""
    store = open_store(ctl.kv_options())
    await store.ping()
    await store.aclose()


@pytest.fixture(params=["etcd3", "etcd2"])
def etcd_ctl(request: pytest.FixtureRequest, etcd: EtcdCluster, tmp_path: Path) -> Iterator[Ctl]:
    prefix = "etcd2+" if request.param == "etcd2" else ""
    endpoints = [prefix + u for u in etcd.endpoints]
    env = clean_env(tmp_path)
    env["LOCKSMITHCTL_ENDPOINT"] = ",".join(endpoints)
    env["LOCKSMITHCTL_GROUP"] = f"cli-{request.node.name}-{os.urandom(4).hex()}"
    yield Ctl(endpoints, env)


async def test_status_of_a_fresh_store_writes_nothing(ctl: Ctl) -> None:
    r = ctl("status")
    assert (r.returncode, r.stdout, r.stderr) == (0, "Available: 1\nMax: 1\n", "")
    assert await ctl.raw() is None


def test_status_on_a_missing_store_file_is_one_line_and_creates_nothing(ctl: Ctl, tmp_path: Path) -> None:
    # No store at all is a mistyped path, not a free semaphore (issue 9, class 2).
    for created in tmp_path.glob("kv.db*"):
        created.unlink()
    before = sorted(tmp_path.iterdir())
    r = ctl("status")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and f"{tmp_path}/kv.db does not exist" in r.stderr
    assert sorted(tmp_path.iterdir()) == before


async def test_lock_unlock_set_max_status_round(ctl: Ctl) -> None:
    assert await ctl.raw() is None
    r = ctl("set-max", "3")
    assert (r.returncode, r.stdout) == (0, "Old-Max: 1\nMax: 3\n")
    assert ctl("lock").returncode == 0  # this machine's id
    assert ctl("lock", "zz-other").returncode == 0
    assert ctl("lock", "zz-other").returncode == 0  # idempotent
    assert await ctl.raw() == f'{{"semaphore":1,"max":3,"holders":["{MACHINE_ID}","zz-other"]}}'.encode()
    r = ctl("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["Available: 1", "Max: 3", "", "MACHINE ID                         HELD FOR"]
    assert re.fullmatch(MACHINE_ID + r"   \d+s", lines[4])
    assert re.fullmatch(r"zz-other {27}\d+s", lines[5])
    assert len(lines) == 6

    r = ctl("status", "--json")
    data = json.loads(r.stdout)
    assert data["available"] == 1 and data["max"] == 3 and data["key"] == semaphore_key(None)
    assert [h["id"] for h in data["holders"]] == [MACHINE_ID, "zz-other"]
    assert all(isinstance(h["held_for_seconds"], int) and h["since"].endswith("Z") for h in data["holders"])

    assert ctl("unlock").returncode == 0
    assert ctl("unlock", "zz-other").returncode == 0
    assert await ctl.raw() == b'{"semaphore":3,"max":3,"holders":[]}'
    assert ctl("status").stdout == "Available: 3\nMax: 3\n"


def test_operation_failures_exit_1_with_the_cause(ctl: Ctl) -> None:
    assert ctl("lock", "a").returncode == 0
    r = ctl("lock", "b")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "Error locking: semaphore is at 0 (max 1, held by a)\n"
    r = ctl("unlock", "b")
    assert (r.returncode, r.stderr) == (1, "Error unlocking: 'b' does not hold the lock\n")
    r = ctl("set-max", "0")
    assert r.returncode == 1
    assert r.stderr.startswith("Error setting max: max 0 is below the 1 current holder(s) (a)")


def test_bad_machine_id_file_is_named(ctl: Ctl, tmp_path: Path) -> None:
    bad = tmp_path / "bad-id"
    bad.write_text("not-an-id\n")
    r = ctl("--machine-id-file", str(bad), "lock")
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error locking: {bad} does not hold a machine id")
    assert r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bogus", "status"], "unrecognized arguments: --bogus"),
        (["status", "extra"], "unrecognized arguments: extra"),
        ([], "a command is required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["set-max"], "the following arguments are required: N"),
        (["set-max", "abc"], "invalid maximum value 'abc'"),
        (["set-max", "-2"], "cannot be negative"),
        (["--endpoint", "ftp://host", "status"], "endpoint 'ftp://host' has no supported scheme"),
        (["--timeout", "0", "status"], "invalid timeout"),
        (["--group", "..", "status"], "lock group '..' is not allowed"),
    ],
)
def test_usage_errors_exit_2_in_one_line(ctl: Ctl, args: list[str], needle: str) -> None:
    r = ctl(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_version(ctl: Ctl) -> None:
    r = ctl("--version")
    assert (r.returncode, r.stdout) == (0, "locksmithctl version 0.1.0\n")


@pytest.mark.parametrize("corrupt", [b'{"semaphore":1,"max":1,"holders":["a"]}', b"\x00garbage"])
async def test_corrupt_semaphore_every_command_fails_and_nothing_is_overwritten(ctl: Ctl, corrupt: bytes) -> None:
    await ctl.put(corrupt)
    for args, prefix in (
        (["lock", "a"], "Error locking"),
        (["unlock", "a"], "Error unlocking"),
        (["set-max", "4"], "Error setting max"),
        (["status"], "Error getting status"),
    ):
        r = ctl(*args)
        assert r.returncode == 1, args
        assert r.stderr.startswith(f"{prefix}: the semaphore at '{semaphore_key(None)}' is not valid")
        assert r.stderr.count("\n") == 1
        assert r.stdout == ""
    assert await ctl.raw() == corrupt


def test_unreachable_endpoint_is_one_line_within_the_timeout(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for endpoint in ("http://127.0.0.1:9", "etcd2+http://127.0.0.1:9"):
        r = Ctl([endpoint], env)("--endpoint", endpoint, "--timeout", "1", "lock", "a", timeout=30)
        assert r.returncode == 1
        assert r.stderr.startswith("Error locking: ")
        assert "127.0.0.1:9" in r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


async def test_etcd_backends_speak_the_go_shape_under_a_group(etcd_ctl: Ctl) -> None:
    group = etcd_ctl.env["LOCKSMITHCTL_GROUP"]
    # As a Go locksmith would have left it.
    await etcd_ctl.put(b'{"semaphore":1,"max":2,"holders":["gogo"]}', group)
    assert etcd_ctl("lock").returncode == 0
    assert await etcd_ctl.raw(group) == f'{{"semaphore":0,"max":2,"holders":["{MACHINE_ID}","gogo"]}}'.encode()
    r = etcd_ctl("status")
    lines = r.stdout.splitlines()
    assert lines[:4] == ["Available: 0", "Max: 2", "", "MACHINE ID                         HELD FOR"]
    assert lines[5] == "gogo                               unknown"
    r = etcd_ctl("lock", "third")
    assert r.returncode == 1 and "semaphore is at 0" in r.stderr
    # The flag replaces the variable's endpoint list; the group flag wins over the variable.
    r = etcd_ctl("--group", group, "--endpoint", etcd_ctl.endpoints[0], "unlock")
    assert r.returncode == 0, r.stderr
    assert await etcd_ctl.raw(group) == b'{"semaphore":1,"max":2,"holders":["gogo"]}'
    # The global key was never touched.
    assert etcd_ctl("--group", "", "status").stdout.startswith("Available: ")


async def test_corrupt_value_on_etcd_is_left_unchanged(etcd_ctl: Ctl) -> None:
    group = etcd_ctl.env["LOCKSMITHCTL_GROUP"]
    await etcd_ctl.put(b"{oops", group)
    r = etcd_ctl("lock")
    assert r.returncode == 1 and semaphore_key(group) in r.stderr
    assert await etcd_ctl.raw(group) == b"{oops"


def test_debug_names_the_backend_and_key_on_stderr(ctl: Ctl) -> None:
    r = ctl("--debug", "--group", "prod/db", "status")
    assert r.returncode == 0 and r.stdout == "Available: 1\nMax: 1\n"
    assert "backend=embedded" in r.stderr
    assert "key=coreos.com/updateengine/rebootlock/groups/prod%2Fdb/semaphore" in r.stderr


async def _run_all(ctl: Ctl, argvs: list[list[str]]) -> list[tuple[int, str]]:
    async def one(argv: list[str]) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            LOCKSMITHCTL, *argv, env=ctl.env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, err.decode()

    return await asyncio.gather(*(one(a) for a in argvs))


@pytest.mark.parametrize("store", ["embedded", "etcd3"])
async def test_concurrent_processes_get_exactly_max_slots(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """12 separate locksmithctl processes race for 4 slots: exactly 4 win, the rest are told it is full."""
    if store == "embedded":
        c = request.getfixturevalue("ctl")
    else:
        etcd = request.getfixturevalue("etcd")
        env = clean_env(tmp_path)
        env["LOCKSMITHCTL_ENDPOINT"] = etcd.endpoints[0]
        env["LOCKSMITHCTL_GROUP"] = f"race-{os.urandom(4).hex()}"
        c = Ctl(etcd.endpoints, env)
    assert c("set-max", "4").returncode == 0
    results = await _run_all(c, [["lock", f"host-{i:02d}"] for i in range(12)])
    winners = [i for i, (code, _err) in enumerate(results) if code == 0]
    losers = [err for code, err in results if code != 0]
    assert len(winners) == 4, results
    assert all(err.startswith("Error locking: semaphore is at 0 (max 4") for err in losers), losers
    data = json.loads(c("status", "--json").stdout)
    assert data["available"] == 0
    assert sorted(h["id"] for h in data["holders"]) == [f"host-{i:02d}" for i in winners]


def test_status_refuses_another_programs_database_in_one_line(ctl: Ctl, tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    before = other.read_bytes()
    for command in (["status"], ["lock"]):
        r = ctl("--endpoint", f"file://{other}", *command)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert f"{other} is not a locksmith store" in r.stderr and "Traceback" not in r.stderr
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.glob("app.db*")) == ["app.db"]


def test_lock_refuses_an_id_that_would_forge_status_lines(ctl: Ctl) -> None:
    for forged in ("m1\nAvailable: 99", "a b", "\x1b[2J", "x" * 300):
        r = ctl("lock", forged)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "is not valid" in r.stderr, r.stderr
        assert forged not in r.stderr
    r = ctl("status")
    assert (r.returncode, r.stdout) == (0, "Available: 1\nMax: 1\n")


@pytest.mark.parametrize(
    "record",
    [b'{"x":"0001-01-01T00:00:00+01:00"}', b"[" * 100_000, b'{"x":"9999-12-31T23:59:59-23:59"}', b"\xff\xfe"],
    ids=["overflow", "nesting", "overflow-up", "not-utf8"],
)
async def test_a_garbage_ages_record_never_changes_an_exit_status(ctl: Ctl, record: bytes) -> None:
    store = open_store(ctl.kv_options())
    try:
        assert await store.create(semaphore_key(None) + "-holders", record) is not None
    finally:
        await store.aclose()
    r = ctl("lock")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr  # the slot was taken: success
    assert "Traceback" not in r.stderr and len(r.stderr) < 1000
    assert await ctl.raw() == f'{{"semaphore":0,"max":1,"holders":["{MACHINE_ID}"]}}'.encode()
    r = ctl("status")
    assert r.returncode == 0 and r.stdout.startswith("Available: 0\nMax: 1\n")
    assert re.search(MACHINE_ID + r"\s+unknown$", r.stdout, re.M)
    assert r.stderr.startswith("Warning: holder ages unknown: ") and r.stderr.count("\n") == 1
    assert ctl("unlock").returncode == 0


def test_go_style_single_dash_flags_work_as_the_go_tool_took_them(etcd_ctl: Ctl) -> None:
    """Scripts written for the Go locksmithctl say `-endpoint URL` or `-group=G` (Go's flag package)."""
    env = {k: v for k, v in etcd_ctl.env.items() if k not in ("LOCKSMITHCTL_ENDPOINT", "LOCKSMITHCTL_GROUP")}
    group = etcd_ctl.env["LOCKSMITHCTL_GROUP"]
    bare = Ctl(etcd_ctl.endpoints, env)
    endpoint = ",".join(etcd_ctl.endpoints)
    assert bare("-endpoint", endpoint, f"-group={group}", "set-max", "3").returncode == 0
    r = bare("--endpoint", endpoint, "--group", group, "status")
    assert (r.returncode, r.stdout) == (0, "Available: 3\nMax: 3\n"), r.stderr
    # Not a long option of ours: still an error, not guessed at.
    r = bare("-endpoints", endpoint, "status")
    assert r.returncode != 0 and r.stdout == ""
