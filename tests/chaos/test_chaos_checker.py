"""The checker must pass a correct history and FAIL each kind of violation; otherwise a chaos run's
"0 violations" would prove nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.chaos.checker import check
from harness.chaos.history import History, Recorder
from locksmith.protocol.semaphore import INITIAL, Semaphore, encode


class Builder:
    """Writes histories the way a run would: revisions grow, times grow."""

    def __init__(self, hosts: list[str], k: int, bound: float = 30.0) -> None:
        self.k = k
        self.rev = 10
        self.t = 1000.0
        self.holders: set[str] = set()
        self.records: list[dict[str, Any]] = [
            {"kind": "meta", "t": self.t, "key": "k", "max": k, "hosts": hosts, "bound": bound}
        ]
        self.write(INITIAL.set_max(k))

    def tick(self, dt: float = 0.1) -> float:
        self.t += dt
        return self.t

    def write(self, sem: Semaphore) -> None:
        self.raw(encode(sem).decode())
        self.holders = set(sem.holders)

    def raw(self, value: str | None) -> None:
        self.rev += 1
        self.records.append({"kind": "sem", "t": self.tick(), "rev": self.rev, "value": value})

    def beside(self, key: str, present: bool, *, in_last_write: bool = False) -> None:
        """A key beside the semaphore written (or deleted) on its own, or in the last semaphore write."""
        if not in_last_write:
            self.rev += 1
        self.records.append({"kind": "aux", "t": self.tick(), "rev": self.rev, "key": key, "present": present})

    def sem(self) -> Semaphore:
        return Semaphore(self.k - len(self.holders), self.k, tuple(self.holders))

    def lock(self, host: str) -> None:
        self.write(self.sem().lock(host))

    def unlock(self, host: str) -> None:
        self.write(self.sem().unlock(host))

    def event(self, host: str, what: str, rev: int | None = -1) -> None:
        stamp = self.rev if rev == -1 else rev
        self.records.append({"kind": "event", "t": self.tick(), "host": host, "event": what, "rev": stamp})

    def cycle(self, host: str) -> None:
        self.lock(host)
        self.event(host, "rebooting")
        self.event(host, "booted")
        self.unlock(host)

    def finish(self, **end: Any) -> History:
        self.records.append({"kind": "faults_end", "t": self.tick()})
        self.records.append({"kind": "end", "t": self.tick(1), **end})
        return History(self.records)


def rules(history: History) -> set[str]:
    return {v.rule for v in check(history).violations}


def test_a_correct_rolling_reboot_passes() -> None:
    b = Builder(["a", "b", "c"], k=1)
    for h in "abc":
        b.cycle(h)
    report = check(b.finish())
    assert report.ok, report.violations
    assert report.reboots == 3 and report.max_in_critical == 1 and report.finished_hosts == 3


def test_two_hosts_inside_with_max_two_passes_but_not_with_max_one() -> None:
    b = Builder(["a", "b"], k=2)
    b.lock("a")
    b.lock("b")
    b.event("a", "rebooting")
    b.event("b", "rebooting")
    b.event("a", "booted")
    b.event("b", "booted")
    b.unlock("a")
    b.unlock("b")
    report = check(b.finish())
    assert report.ok and report.max_in_critical == 2


def test_reboot_without_a_slot_is_a_violation() -> None:
    b = Builder(["a", "b"], k=1)
    b.lock("a")
    b.event("a", "rebooting")
    b.event("b", "rebooting")  # b never took the lock
    b.event("a", "booted")
    b.unlock("a")
    b.event("b", "booted")
    got = rules(b.finish())
    assert "unlocked-reboot" in got
    assert "over-max-critical" in got


def test_hosts_that_reboot_without_ever_locking_are_violations_not_a_crash() -> None:
    """An agent that skips the lock: every reboot unlocked, all hosts down at once, and no
    section ever ends (nobody releases what it never took)."""
    b = Builder(["a", "b", "c"], k=1)
    for h in "abc":
        b.event(h, "rebooting")
    for h in "abc":
        b.event(h, "booted")
    report = check(b.finish())
    got = [v.rule for v in report.violations]
    assert got.count("unlocked-reboot") == 3 and "over-max-critical" in got
    assert report.max_in_critical == 3
    assert "unfinished" not in got  # they did finish; what they did wrong is reported above


def test_slot_released_while_rebooting_is_a_violation() -> None:
    b = Builder(["a", "b"], k=1)
    b.lock("a")
    b.event("a", "rebooting")
    b.unlock("a")  # released before the host came back: its slot was lost
    b.lock("b")
    b.event("b", "rebooting")
    b.event("a", "booted")
    b.event("b", "booted")
    b.unlock("b")
    got = rules(b.finish())
    assert "released-before-boot" in got
    assert "over-max-critical" not in got  # sections end at the release; rule 3 is what catches it


def test_lost_update_is_a_violation() -> None:
    b = Builder(["a", "b", "c"], k=2)
    b.lock("a")
    b.write(Semaphore(1, 2, ("b",)))  # a vanished and b appeared in one write: a lost update
    assert "lost-update" in rules(b.finish())


def test_a_release_handing_its_slot_to_the_host_in_line_is_no_lost_update() -> None:
    b = Builder(["a", "b"], k=1)
    b.cycle("a")
    b.lock("a")
    b.event("a", "rebooting")
    b.event("a", "booted")
    b.beside("k-line/b", present=True)  # b queues
    b.write(Semaphore(0, 1, ("b",)))  # a's release hands its slot to b
    b.beside("k-line/b", present=False)  # b takes it
    b.event("b", "rebooting")
    b.event("b", "booted")
    b.unlock("b")
    report = check(b.finish())
    assert report.ok, report.violations


def test_releases_settled_together_need_each_host_s_request_to_leave() -> None:
    def run(asked: bool) -> set[str]:
        b = Builder(["a", "c"], k=2)
        for h in "ac":
            b.lock(h)
            b.event(h, "rebooting")
            b.event(h, "booted")
        if asked:
            b.beside("k-leaving/c", present=True)  # c's release lost its compare-and-swap and asked
        b.write(Semaphore(2, 2, ()))  # a's release settles both
        if asked:
            b.beside("k-leaving/c", present=False, in_last_write=True)
        return rules(b.finish())

    assert "lost-update" not in run(asked=True)
    assert "lost-update" in run(asked=False)


def test_over_max_value_is_a_violation() -> None:
    b = Builder(["a", "b", "c"], k=2)
    b.raw('{"semaphore":-1,"max":2,"holders":["a","b","c"]}')
    assert "over-max" in rules(b.finish())


def test_corrupt_inconsistent_deleted_and_stranger_values_are_violations() -> None:
    b = Builder(["a"], k=1)
    b.raw("not json")
    b.raw('{"semaphore":1,"max":1,"holders":["a"]}')
    b.raw('{"semaphore":0,"max":1,"holders":["zz"]}')
    b.raw('{"semaphore":0,"max":2,"holders":["a","a"]}')
    b.raw(None)
    got = rules(b.finish())
    assert {"json", "stranger", "deleted"} <= got


def test_unfinished_and_slow_hosts_are_violations() -> None:
    b = Builder(["a", "b", "c"], k=1, bound=5)
    b.cycle("a")
    b.lock("b")
    b.event("b", "rebooting")
    b.event("b", "booted")  # b never releases
    h = b.finish()
    assert "unfinished" in rules(h)

    b = Builder(["a"], k=1, bound=5)
    b.records.append({"kind": "faults_end", "t": b.tick()})
    b.lock("a")
    b.event("a", "rebooting")
    b.tick(60)
    b.event("a", "booted")
    b.unlock("a")
    b.records.append({"kind": "end", "t": b.tick()})
    assert "slow" in rules(History(b.records))


def _dies_rebooting(b: Builder, host: str) -> None:
    b.lock(host)
    b.event(host, "rebooting")
    b.records.append({"kind": "died", "t": b.tick(), "host": host, "state": "rebooting"})


def test_a_host_dead_for_good_owes_no_reboot_once_its_slot_is_freed() -> None:
    b = Builder(["a", "b", "c"], k=1)
    _dies_rebooting(b, "a")
    b.tick(8)
    b.unlock("a")  # the others judged its lease expired
    b.cycle("b")
    b.cycle("c")
    report = check(b.finish())
    assert report.ok, report.violations
    assert report.dead_hosts == 1 and report.finished_hosts == 2
    assert report.expiries and 8 <= report.expiries[0] < 9


def test_a_dead_holder_never_freed_or_back_again_is_a_violation() -> None:
    b = Builder(["a", "b"], k=1)
    _dies_rebooting(b, "a")  # and its slot is never freed: b cannot go
    assert "unfinished" in rules(b.finish())

    b = Builder(["a", "b"], k=2)
    _dies_rebooting(b, "a")
    b.unlock("a")
    b.cycle("b")
    b.lock("a")  # a dead host cannot take a slot: something wrote in its name
    b.unlock("a")
    assert "revived" in rules(b.finish())


def test_a_run_cut_short_is_a_violation() -> None:
    b = Builder(["a"], k=1)
    b.cycle("a")
    assert "incomplete" in rules(History(b.records))


def test_unstamped_events_are_counted_not_passed_silently() -> None:
    b = Builder(["a"], k=1)
    b.lock("a")
    b.event("a", "rebooting", rev=None)
    b.event("a", "booted")
    b.unlock("a")
    report = check(b.finish())
    assert report.unverified_events == 1
    assert "unverified" in {v.rule for v in report.violations}  # a hole in the proof fails the run


def test_an_observer_that_missed_the_last_writes_is_a_violation() -> None:
    b = Builder(["a"], k=1)
    b.cycle("a")
    assert check(b.finish(key_rev=b.rev)).ok
    b = Builder(["a"], k=1)
    b.cycle("a")
    assert "observer-gap" in rules(b.finish(key_rev=b.rev + 3))


def test_a_reboot_the_supervisor_counted_but_the_history_lacks_is_a_violation() -> None:
    b = Builder(["a", "b"], k=1)
    b.cycle("a")
    b.cycle("b")
    assert check(b.finish(reboots={"a": 1, "b": 1}, boots={"a": 1, "b": 1})).ok
    b = Builder(["a", "b"], k=1)
    b.cycle("a")
    b.cycle("b")
    got = check(b.finish(reboots={"a": 1, "b": 2}, boots={"a": 1, "b": 2})).violations
    assert [v.rule for v in got] == ["unrecorded", "unrecorded"] and all("b:" in v.detail for v in got)


def test_history_round_trips_through_the_recorder(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "h.jsonl")
    b = Builder(["a"], k=1)
    b.cycle("a")
    for r in b.finish().records:
        rec.add(r.pop("kind"), **{k: v for k, v in r.items() if k != "t"})
    assert check(rec.history()).ok


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 3),
    order=st.lists(st.sampled_from("abcde"), min_size=5, max_size=40),
    data=st.data(),
)
def test_any_schedule_a_correct_semaphore_allows_passes_and_a_stolen_slot_fails(
    k: int, order: list[str], data: st.DataObject
) -> None:
    """Drive hosts through lock → reboot → boot → unlock in a random interleaving that respects
    the semaphore; it must pass. Then make one host reboot without its slot: it must fail."""
    b = Builder(list("abcde"), k=k)
    phase = dict.fromkeys("abcde", 0)
    for h in order:
        p = phase[h]
        if p == 0 and len(b.holders) < k:
            b.lock(h)
        elif p == 1:
            b.event(h, "rebooting")
        elif p == 2:
            b.event(h, "booted")
        elif p == 3:
            b.unlock(h)
        else:
            continue
        phase[h] += 1
    steps = [b.lock, lambda x: b.event(x, "rebooting"), lambda x: b.event(x, "booted"), b.unlock]
    # Let the holders finish first, then everyone else one by one.
    for h in sorted("abcde", key=lambda x: phase[x] == 0):
        while phase[h] < 4:
            steps[phase[h]](h)
            phase[h] += 1
    assert check(b.finish()).ok

    intruder = data.draw(st.sampled_from("abcde"))
    b.records.insert(-2, {"kind": "event", "t": b.t, "host": intruder, "event": "rebooting", "rev": b.rev})
    b.records.insert(-2, {"kind": "event", "t": b.t, "host": intruder, "event": "booted", "rev": b.rev})
    assert "unlocked-reboot" in rules(History(b.records))
